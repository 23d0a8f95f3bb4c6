//! Exactly-once CoAP ingest across a crash: devices post numbered readings
//! to the real binary, which is killed (SIGKILL) under load and restarted on
//! the same data directory. Each device keeps its socket (so its address and
//! port survive), retransmits its unanswered request and its last answered
//! one with the same message ID and token, and gets the original `2.04`.
//! Upstream, counted by the cloud's subscriber, every (device, reading)
//! arrives exactly once, under one record id.

mod support;

use coap_lite::RequestType;
use sluice_coap::client::{JSON, Request};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{Collector, Gateway, config_text, wait_until};

const DEVICES: u8 = 8;
/// Readings answered (all devices) before the kill.
const BEFORE_KILL: u64 = 400;
/// Readings each device sends after the restart, behind its retransmissions.
const AFTER: u64 = 3;
/// Between retransmissions of an unanswered request.
const RETRANSMIT: Duration = Duration::from_millis(100);

/// A device with a fixed socket, numbering its readings.
struct Device {
    index: u8,
    socket: UdpSocket,
    /// The number of its next reading (and its message ID).
    next: u64,
    /// The last request answered, with the answer.
    answered: Option<(Vec<u8>, Vec<u8>)>,
    /// A request sent and not answered yet.
    pending: Option<Vec<u8>>,
}

impl Device {
    fn new(index: u8) -> Device {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(RETRANSMIT)).expect("timeout");
        Device {
            index,
            socket,
            next: 0,
            answered: None,
            pending: None,
        }
    }

    fn name(&self) -> String {
        format!("dev{}", self.index)
    }

    /// Message ID and token of reading `n`.
    fn ids(&self, n: u64) -> (u16, Vec<u8>) {
        let mut token = vec![self.index];
        token.extend_from_slice(&(n as u32).to_be_bytes());
        (n as u16, token)
    }

    /// The CON POST of reading `n`: `{"n": n}` to `/r/dev<i>`.
    fn request(&self, n: u64) -> Vec<u8> {
        let (mid, token) = self.ids(n);
        Request::new(RequestType::Post, ["r", &self.name()])
            .with_payload(JSON, format!("{{\"n\": {n}}}").into_bytes())
            .encode(mid, &token)
            .expect("encode")
    }

    /// The piggybacked `2.04` for reading `n`, byte for byte: ACK, token
    /// length, code 2.04, message ID, token; no options, no payload.
    fn changed(&self, n: u64) -> Vec<u8> {
        let (mid, token) = self.ids(n);
        let mut bytes = vec![0x60 | token.len() as u8, 0x44];
        bytes.extend_from_slice(&mid.to_be_bytes());
        bytes.extend_from_slice(&token);
        bytes
    }

    /// Sends `request` (reading `n`) until the answer with its message ID
    /// comes, `stop` is set, or `tries` retransmissions went unanswered.
    fn exchange(
        &self,
        server: SocketAddr,
        request: &[u8],
        n: u64,
        stop: &AtomicBool,
        tries: u32,
    ) -> Option<Vec<u8>> {
        let mid = (n as u16).to_be_bytes();
        let mut buf = [0u8; 1500];
        for _ in 0..tries {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            let _ = self.socket.send_to(request, server);
            let until = Instant::now() + RETRANSMIT;
            // Late answers to earlier copies or requests are skipped.
            while Instant::now() < until {
                match self.socket.recv_from(&mut buf) {
                    Ok((len, _)) if len >= 4 && buf[2..4] == mid => {
                        return Some(buf[..len].to_vec());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        None
    }

    /// Posts readings one after another until `stop`.
    fn post_until(mut self, server: SocketAddr, stop: &AtomicBool, answered: &AtomicU64) -> Device {
        // Bounded: far more than the test needs before the kill.
        for _ in 0..100_000 {
            let n = self.next;
            let request = self.request(n);
            self.pending = Some(request.clone());
            let Some(answer) = self.exchange(server, &request, n, stop, 600) else {
                break;
            };
            assert_eq!(answer, self.changed(n), "{} reading {n}", self.name());
            self.answered = Some((request, answer));
            self.pending = None;
            self.next += 1;
            answered.fetch_add(1, Ordering::SeqCst);
        }
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_then_retransmissions_get_their_original_answers_and_no_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The broker is down until after the restart: nothing is in flight
    // upstream at the kill, so any second record id for a reading would be
    // a second ingest, not an MQTT redelivery.
    let mut broker = support::absent_broker_with_subscriber().await;
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let coap = format!("[coap]\nlisten = [\"{server}\"]\nrate_per_device = 100000\n");
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, "", &coap)).expect("write config");

    let mut gateway = Gateway::spawn(&config);
    wait_until(Duration::from_secs(20), "the CoAP server", || {
        gateway.log_count("CoAP server listening") > 0
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let devices: Vec<_> = (0..DEVICES)
        .map(|i| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || Device::new(i).post_until(server, &stop, &answered))
        })
        .collect();
    wait_until(
        Duration::from_secs(60),
        "readings answered before the kill",
        || answered.load(Ordering::SeqCst) >= BEFORE_KILL,
    )
    .await;
    gateway.kill();
    stop.store(true, Ordering::SeqCst);
    let mut devices: Vec<Device> = devices
        .into_iter()
        .map(|d| d.join().expect("device"))
        .collect();
    let pending = devices.iter().filter(|d| d.pending.is_some()).count();
    eprintln!(
        "killed after {} answered readings; {pending} devices with a request unanswered",
        answered.load(Ordering::SeqCst)
    );

    let mut gateway = Gateway::spawn(&config);
    wait_until(Duration::from_secs(20), "the restarted CoAP server", || {
        gateway.log_count("CoAP server listening") > 0
    })
    .await;
    assert_eq!(
        gateway.log_count("CoAP exchanges restored"),
        1,
        "answers loaded at start"
    );
    let restored: u64 = gateway
        .log
        .lock()
        .expect("lock")
        .iter()
        .find_map(|l| l.split("exchanges=").nth(1)?.trim().parse().ok())
        .expect("the number restored");
    let answered = answered.load(Ordering::SeqCst);
    assert!(
        restored >= answered,
        "{restored} answers restored, {answered} were sent"
    );
    eprintln!(
        "{restored} answers restored: {} requests were committed but not answered at the kill",
        restored - answered
    );

    let devices = tokio::task::spawn_blocking(move || {
        let never = AtomicBool::new(false);
        for d in &mut devices {
            // The last request answered before the crash, again: the
            // original answer (restored from the queue), no event.
            let (request, original) = d.answered.clone().expect("every device was answered once");
            let n = d.next - 1;
            let answer = d
                .exchange(server, &request, n, &never, 100)
                .expect("answered after the restart");
            assert_eq!(answer, original, "{} reading {n} retransmitted", d.name());
            // The request the crash left unanswered: committed or not, one answer, one event.
            if let Some(request) = d.pending.take() {
                let n = d.next;
                let answer = d
                    .exchange(server, &request, n, &never, 100)
                    .expect("answered after the restart");
                assert_eq!(answer, d.changed(n), "{} pending reading {n}", d.name());
                d.next += 1;
            }
            // Fresh readings behind them: once they are upstream, so is everything before.
            for _ in 0..AFTER {
                let n = d.next;
                let request = d.request(n);
                let answer = d
                    .exchange(server, &request, n, &never, 100)
                    .expect("answered");
                assert_eq!(answer, d.changed(n));
                d.next += 1;
            }
        }
        devices
    })
    .await
    .expect("devices");

    broker.resume();
    let collector = Collector::start(broker.port).await;
    let expected: u64 = devices.iter().map(|d| d.next).sum();
    wait_until(
        Duration::from_secs(60),
        "every device's last reading upstream",
        || {
            let r = collector.received.lock().expect("lock");
            devices
                .iter()
                .all(|d| r.readings_of(&d.name()).contains(&(d.next - 1)))
        },
    )
    .await;
    assert!(
        gateway.terminate().is_some_and(|s| s.success()),
        "clean stop"
    );

    let r = collector.received.lock().expect("lock");
    for d in &devices {
        assert_eq!(
            r.readings_of(&d.name()),
            (0..d.next).collect::<Vec<u64>>(),
            "{}: every reading once, under one record id",
            d.name()
        );
    }
    assert_eq!(r.unique() as u64, expected, "one record id per reading");
    assert_eq!(r.duplicates(), 0, "no record id twice");
}
