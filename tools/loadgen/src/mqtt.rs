//! The MQTT ends of the benchmark: the subscriber standing in for the cloud
//! (counts every reading by device and sequence number, end-to-end latency
//! from the device's send time), and a plain QoS 1 publisher, the broker's
//! own ceiling.

use crate::generator::unix_us;
use crate::procfs::own_cpu_us;
use crate::reading::parse_batch;
use crate::stats::Percentiles;
use crate::tally::SeqTally;
use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Telemetry of every gateway (`docs/mqtt-api.md`).
pub const TELEMETRY: &str = "sluice/+/telemetry";
/// Where the plain publisher publishes; the subscriber counts it too, so
/// the broker fans out as it does for the gateway.
pub const BASELINE_TOPIC: &str = "loadgen/baseline";
/// Between reconnect attempts of the subscriber.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What the subscriber has seen: counts since it started, latency since the
/// last `mark`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SubscriberStats {
    /// First copies of (device, seq).
    pub unique: u64,
    /// Copies beyond the first.
    pub duplicates: u64,
    /// Sequence numbers missing below each device's highest.
    pub gaps: u64,
    /// Records without `seq`/`sent_us`.
    pub others: u64,
    /// Telemetry batches.
    pub batches: u64,
    /// Telemetry payload bytes.
    pub bytes: u64,
    /// Payloads that were not a batch.
    pub malformed: u64,
    /// Messages on [`BASELINE_TOPIC`].
    pub baseline_messages: u64,
    /// From `sent_us` to arrival, readings since the last `mark`.
    pub latency: Percentiles,
    /// When the last first copy arrived, µs since the Unix epoch.
    pub last_arrival_us: u64,
    /// This process's CPU time so far, µs.
    pub cpu_us: u64,
}

#[derive(Default)]
struct State {
    tally: SeqTally,
    stats: SubscriberStats,
    latencies: Vec<u64>,
}

impl State {
    fn take(&mut self, topic: &str, payload: &[u8]) {
        if topic == BASELINE_TOPIC {
            self.stats.baseline_messages += 1;
            return;
        }
        let now = unix_us();
        self.stats.batches += 1;
        self.stats.bytes += payload.len() as u64;
        let Ok(content) = parse_batch(payload) else {
            self.stats.malformed += 1;
            return;
        };
        self.stats.others += content.others;
        for a in content.arrivals {
            if self.tally.note(&a.device, a.seq) == crate::tally::Noted::First {
                self.latencies.push(now.saturating_sub(a.sent_us));
                self.stats.last_arrival_us = now;
            }
        }
    }

    fn report(&self) -> SubscriberStats {
        SubscriberStats {
            unique: self.tally.unique,
            duplicates: self.tally.duplicates,
            gaps: self.tally.gaps(),
            latency: Percentiles::of(&mut self.latencies.clone()),
            cpu_us: own_cpu_us(),
            ..self.stats.clone()
        }
    }
}

/// Subscribes (QoS 1, persistent session) to [`TELEMETRY`] and
/// [`BASELINE_TOPIC`] on `host:port`, prints `{"ready":true}` once both are
/// acknowledged, then answers commands on stdin, one per line: `stats`
/// (a [`SubscriberStats`] as JSON), `mark` (latency starts again), `quit`.
pub fn subscribe(host: &str, port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let mut options =
            MqttOptions::new(format!("sluice-loadgen-{}", std::process::id()), host, port);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(64 << 20, 64 << 10);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client
            .subscribe(TELEMETRY, QoS::AtLeastOnce)
            .await
            .context("subscribe")?;
        client
            .subscribe(BASELINE_TOPIC, QoS::AtLeastOnce)
            .await
            .context("subscribe")?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            let _client = client;
            let mut subacks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(mut s) = shared.lock() {
                            s.take(&p.topic, &p.payload);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 2 {
                            print_line(&serde_json::json!({ "ready": true }));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
                }
            }
        });
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await.context("read a command")? {
            let Ok(mut s) = state.lock() else { break };
            match line.trim() {
                "stats" => print_line(&s.report()),
                "mark" => {
                    s.latencies.clear();
                    print_line(&serde_json::json!({ "marked": true }));
                }
                "quit" => break,
                _ => print_line(&serde_json::json!({ "error": "unknown command" })),
            }
        }
        Ok(())
    })
}

/// Writes one JSON line to stdout and flushes it (the orchestrator reads lines).
fn print_line(value: &impl Serialize) {
    let mut out = std::io::stdout().lock();
    if let Ok(text) = serde_json::to_string(value) {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// What the plain publisher measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PublishReport {
    /// Messages acknowledged by the broker (PUBACK).
    pub acked: u64,
    /// Payload bytes per message.
    pub bytes: usize,
    /// From the first publish to the last PUBACK.
    pub secs: f64,
    /// This process's CPU time, µs.
    pub cpu_us: u64,
}

/// Publishes `bytes`-byte payloads with QoS 1 to [`BASELINE_TOPIC`] for
/// `duration`, at most `in_flight` unacknowledged, and waits for the last
/// PUBACK (at most 10 s more).
pub fn publish(
    host: &str,
    port: u16,
    bytes: usize,
    in_flight: u16,
    duration: Duration,
) -> Result<PublishReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let mut options = MqttOptions::new(
            format!("sluice-loadgen-pub-{}", std::process::id()),
            host,
            port,
        );
        options.set_inflight(in_flight.max(1));
        options.set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, usize::from(in_flight.max(1)));
        // Looks like a batch: JSON text of the given size.
        let mut payload = br#"{"v":2,"records":[""#.to_vec();
        payload.resize(bytes.saturating_sub(3).max(payload.len()), b'x');
        payload.extend_from_slice(b"\"]}");
        let payload = bytes::Bytes::from(payload);
        let cpu_before = own_cpu_us();
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            let mut published = 0u64;
            while start.elapsed() < duration {
                if client
                    .publish_bytes(BASELINE_TOPIC, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    break;
                }
                published += 1;
            }
            (client, published)
        });
        let mut publisher = Some(publisher);
        let (mut acked, mut published, mut _client) = (0u64, None, None);
        let deadline = start + duration + Duration::from_secs(10);
        while published.is_none_or(|p| acked < p) && Instant::now() < deadline {
            if let Some(handle) = publisher.as_mut().filter(|h| h.is_finished())
                && let Ok((c, p)) = handle.await
            {
                published = Some(p);
                _client = Some(c);
                publisher = None;
                continue;
            }
            match tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => return Err(anyhow::anyhow!("publisher lost the broker: {e}")),
            }
        }
        Ok(PublishReport {
            acked,
            bytes: payload_len(bytes),
            secs: start.elapsed().as_secs_f64(),
            cpu_us: own_cpu_us().saturating_sub(cpu_before),
        })
    })
}

fn payload_len(bytes: usize) -> usize {
    bytes.max(r#"{"v":2,"records":[""]}"#.len())
}
