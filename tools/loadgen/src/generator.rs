//! The load generator: many simulated devices on one non-blocking UDP
//! socket, one thread, requests sent and answers read [`udp::BATCH`] at a
//! time. Closed loop (a fixed number of requests in flight) or open loop (a
//! fixed rate, latency measured from each request's scheduled time, so a
//! slow server cannot hide its queueing by slowing the generator down).

use crate::procfs::own_cpu_us;
use crate::stats::Percentiles;
use crate::udp::{self, BATCH, Datagrams};
use crate::wire::{Answer, Wire};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Requests remembered while in flight: a ring indexed by tag. At 150k
/// requests/s it spans 7 s, longer than any answer timeout.
const RING: usize = 1 << 20;
/// A ring slot not waiting for an answer.
const FREE: u64 = u64::MAX;
/// How far behind its schedule an open-loop request may go out before it
/// counts as late.
const LATE: Duration = Duration::from_millis(1);

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Pace {
    /// Always this many requests in flight.
    Closed(u32),
    /// This many requests per second, whatever the answers do.
    Open(f64),
}

/// One run of the generator.
#[derive(Clone, Debug)]
pub struct Load {
    /// Where the requests go.
    pub target: SocketAddr,
    /// Simulated devices, named `<prefix><n>`; requests go to them in turn.
    pub devices: usize,
    /// Device name prefix.
    pub prefix: String,
    /// Confirmable (CON) or not (NON).
    pub confirmable: bool,
    /// Closed or open loop.
    pub pace: Pace,
    /// How long requests are sent.
    pub duration: Duration,
    /// How long an answer is waited for before the request counts as timed out.
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// Seconds requests were sent for.
    pub secs: f64,
    /// Requests sent.
    pub sent: u64,
    /// Answered as accepted (CoAP `2.04`; GWMP PUSH_ACK, which is receipt,
    /// not durability).
    pub acked: u64,
    /// Answered with anything else, by code (`"5.03"`, `"RST"`).
    pub refused: BTreeMap<String, u64>,
    /// No answer within the timeout.
    pub timed_out: u64,
    /// Open loop: not sent because the ring was full of requests in flight.
    pub skipped: u64,
    /// Open loop: sent more than 1 ms after their scheduled time.
    pub late: u64,
    /// Answers matching no request in flight (late, duplicated or foreign).
    pub stray: u64,
    /// From send (open loop: scheduled send) to the accepting answer.
    pub ack: Percentiles,
    /// This process's CPU time over the run, µs.
    pub cpu_us: u64,
}

impl LoadReport {
    /// Requests answered other than accepted.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Microseconds since the Unix epoch, by the machine's wall clock.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs `load` to the end and reports.
pub fn run(load: &Load, wire: &dyn Wire) -> Result<LoadReport> {
    let socket = udp::socket(if load.target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .context("bind the generator's socket")?;
    socket
        .connect(load.target)
        .with_context(|| format!("connect to {}", load.target))?;
    let fd = socket.as_raw_fd();
    let devices = load.devices.max(1);
    // Answers that carry only the low bits of a tag (GWMP: 16) name the
    // request in flight with those bits, counted from the oldest: requests
    // in flight span far fewer tags than that (the timeout sees to it).
    let tag_mask = match wire.tag_bits() {
        64.. => u64::MAX,
        bits => (1u64 << bits) - 1,
    };
    let (duration_ns, timeout_ns) = (
        load.duration.as_nanos() as u64,
        load.timeout.as_nanos() as u64,
    );

    let mut report = LoadReport::default();
    let mut ring = vec![(0u64, FREE); RING];
    let mut samples: Vec<u64> = Vec::new();
    let mut seqs = vec![0u64; devices];
    let (mut out, mut inbox) = (Datagrams::default(), Datagrams::default());
    let mut body = Vec::with_capacity(96);
    let (mut next_tag, mut oldest, mut in_flight, mut issued) = (1u64, 1u64, 0u64, 0u64);
    let mut device = 0usize;
    let cpu_before = own_cpu_us();
    let wall0_us = unix_us();
    let start = Instant::now();

    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        let sending = now_ns < duration_ns;
        if !sending && (in_flight == 0 || now_ns >= duration_ns + timeout_ns) {
            break;
        }
        let mut progressed = false;
        let mut next_due_ns = now_ns + 10_000_000;
        if sending {
            let due = match load.pace {
                Pace::Closed(window) => u64::from(window).saturating_sub(in_flight),
                // Requests with a scheduled time up to now.
                Pace::Open(rate) => {
                    ((now_ns as f64 * rate / 1e9) as u64 + 1).saturating_sub(issued)
                }
            };
            for _ in 0..due.min(BATCH as u64) {
                let stamp_ns = match load.pace {
                    Pace::Closed(_) => now_ns,
                    Pace::Open(rate) => (issued as f64 * 1e9 / rate) as u64,
                };
                issued += 1;
                let slot = (next_tag as usize) & (RING - 1);
                if ring[slot].1 != FREE {
                    report.skipped += 1;
                    continue;
                }
                if now_ns.saturating_sub(stamp_ns) > LATE.as_nanos() as u64 {
                    report.late += 1;
                }
                body.clear();
                let seq = seqs[device];
                wire.body(&mut body, seq, wall0_us + stamp_ns / 1000);
                let tag = next_tag;
                let pushed = out.push(None, |buf| {
                    wire.request(device, seq, tag, load.confirmable, &body, buf)
                });
                debug_assert!(pushed);
                ring[slot] = (tag, stamp_ns);
                seqs[device] += 1;
                device = (device + 1) % devices;
                next_tag += 1;
                in_flight += 1;
            }
            if let Pace::Open(rate) = load.pace {
                next_due_ns = (issued as f64 * 1e9 / rate) as u64;
            }
            if !out.is_empty() {
                report.sent += out
                    .send(fd, Duration::from_secs(1))
                    .context("send requests")? as u64;
                progressed = true;
            }
        }

        for _ in 0..64 {
            let n = inbox.receive(fd).context("receive answers")?;
            if n == 0 {
                break;
            }
            progressed = true;
            let at_ns = start.elapsed().as_nanos() as u64;
            for i in 0..n {
                let Some(answer) = wire.answer(inbox.get(i)) else {
                    continue;
                };
                let (tag, code) = match answer {
                    Answer::Accepted(tag) => (tag, None),
                    Answer::Refused(tag, code) => (tag, Some(code)),
                };
                let tag = oldest.wrapping_add(tag.wrapping_sub(oldest) & tag_mask);
                let slot = (tag as usize) & (RING - 1);
                if ring[slot].0 != tag || ring[slot].1 == FREE {
                    report.stray += 1;
                    continue;
                }
                let sent_ns = ring[slot].1;
                ring[slot].1 = FREE;
                in_flight -= 1;
                match code {
                    None => {
                        report.acked += 1;
                        samples.push(at_ns.saturating_sub(sent_ns) / 1000);
                    }
                    Some(code) => *report.refused.entry(code_name(code)).or_default() += 1,
                }
            }
            if n < BATCH {
                break;
            }
        }

        // Expire from the oldest tag on: tags are handed out in order.
        let now_ns = start.elapsed().as_nanos() as u64;
        while oldest < next_tag {
            let (tag, sent_ns) = ring[(oldest as usize) & (RING - 1)];
            if tag == oldest && sent_ns != FREE {
                if now_ns.saturating_sub(sent_ns) < timeout_ns {
                    break;
                }
                ring[(oldest as usize) & (RING - 1)].1 = FREE;
                report.timed_out += 1;
                in_flight -= 1;
            }
            oldest += 1;
        }

        if !progressed {
            let until = if sending {
                next_due_ns.min(duration_ns)
            } else {
                duration_ns + timeout_ns
            };
            let wait = Duration::from_nanos(until.saturating_sub(now_ns).clamp(1_000, 10_000_000));
            udp::wait(fd, libc::POLLIN, wait).context("wait for answers")?;
        }
    }

    report.secs = (duration_ns as f64 / 1e9).min(start.elapsed().as_secs_f64());
    report.ack = Percentiles::of(&mut samples);
    report.cpu_us = own_cpu_us().saturating_sub(cpu_before);
    Ok(report)
}

/// A CoAP code byte as `c.dd`; 0 stands for a reset.
fn code_name(code: u8) -> String {
    if code == 0 {
        "RST".to_owned()
    } else {
        format!("{}.{:02}", code >> 5, code & 0x1f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_in_the_rfc() {
        assert_eq!(code_name((5 << 5) | 3), "5.03");
        assert_eq!(code_name((4 << 5) | 29), "4.29");
        assert_eq!(code_name(0), "RST");
    }
}
