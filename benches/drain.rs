//! Drain throughput: queue → MQTT QoS 1 → loopback mosquitto.
//!
//! `cargo bench --bench drain` prints markdown tables:
//!
//! 1. Sluice: a queue pre-filled with N events (by a runtime whose broker is
//!    unreachable) is drained by a fresh runtime pointed at a local
//!    mosquitto. Time runs from `Runtime::start` until the `queue_records`
//!    gauge reads 0, i.e. every record was published, acknowledged by the
//!    broker (PUBACK) and deleted from the queue.
//! 2. Baseline: raw rumqttc publishing the same number of payloads of the same
//!    size (a real batch payload) with QoS 1 and the same in-flight window,
//!    waiting for every PUBACK: the upper bound for the uplink.
//!
//! Needs `mosquitto` on PATH. Environment knobs: `SLUICE_BENCH_RECORDS`
//! (default 400000), `SLUICE_BENCH_DIR` (default `/var/tmp`),
//! `SLUICE_BENCH_FILTER` (only runs whose label contains it, e.g.
//! `sluice 500/8/none` or `baseline`).

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, QoS};
use sluice::config::Config;
use sluice::record::{BatchWriter, UpstreamRecord};
use sluice_event::{Event, EventId, EventView, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest a single drain or baseline may take before the run is declared failed.
const DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    let records: u64 = env_or("SLUICE_BENCH_RECORDS", 400_000);
    let base =
        PathBuf::from(std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let filter = std::env::var("SLUICE_BENCH_FILTER").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let broker = Broker::start(&base);

    println!("# Drain benchmark\n");
    println!(
        "{records} records pre-filled per run, queue under `{}`, mosquitto {} on 127.0.0.1:{}, QoS 1, tokio multi-thread runtime with 2 workers\n",
        base.display(),
        mosquitto_version(),
        broker.port
    );
    println!("## Sluice: pre-filled queue drained until `queue_records == 0`\n");
    println!(
        "| batch_max_records | batch_max_bytes | max_inflight | subscriber | records | s | records/s | batches | records/batch | avg payload B | resent | sluice CPU s | mosquitto CPU s |"
    );
    println!("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let variants: [(usize, &str, u16, bool); 5] = [
        (500, "256 KiB", 8, false),
        (500, "256 KiB", 8, true),
        (1000, "1 MiB", 8, false),
        (2000, "1 MiB", 8, false),
        (500, "256 KiB", 32, false),
    ];
    let mut payload_500 = 0usize;
    for (batch, max_bytes, inflight, subscriber) in variants {
        let label = format!(
            "sluice {batch}/{inflight}/{}",
            if subscriber { "subscriber" } else { "none" }
        );
        if !label.contains(&filter) {
            continue;
        }
        let dir = tempfile::tempdir_in(&base).expect("tempdir for the queue");
        let r = rt.block_on(drain_run(
            dir.path(),
            &broker,
            records,
            batch,
            max_bytes,
            inflight,
            subscriber,
        ));
        if batch == 500 && !subscriber && inflight == 8 {
            payload_500 = r.avg_payload;
        }
        println!(
            "| {batch} | {max_bytes} | {inflight} | {} | {} | {:.2} | **{:.0}** | {} | {:.0} | {} | {} | {:.2} | {:.2} |",
            if subscriber { "QoS 1" } else { "none" },
            r.records,
            r.secs,
            r.records as f64 / r.secs,
            r.batches,
            r.records as f64 / r.batches.max(1) as f64,
            r.avg_payload,
            r.resent,
            r.own_cpu,
            r.broker_cpu,
        );
    }

    println!(
        "\n## Baseline: raw rumqttc, {} payloads of {payload_500} B (a real 500-record batch), QoS 1, all PUBACKs awaited\n",
        records.div_ceil(500)
    );
    println!(
        "| in-flight window | payloads | s | payloads/s | records/s equivalent (x500) | MB/s | client CPU s | mosquitto CPU s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let payload = rt.block_on(async { real_batch_payload(500) });
    assert!(payload_500 == 0 || payload.len().abs_diff(payload_500) < payload_500 / 10);
    for window in [8u16, 32] {
        if !format!("baseline {window}").contains(&filter) {
            continue;
        }
        let n = records.div_ceil(500);
        let r = rt.block_on(baseline_run(&broker, &payload, n, window));
        println!(
            "| {window} | {n} | {:.2} | {:.0} | **{:.0}** | {:.1} | {:.2} | {:.2} |",
            r.secs,
            n as f64 / r.secs,
            (n * 500) as f64 / r.secs,
            (n as f64 * payload.len() as f64) / r.secs / 1e6,
            r.own_cpu,
            r.broker_cpu,
        );
    }
    println!("\ngoal: >= 100000 records/s (batch_max_records = 500)");
    drop(broker);
}

struct DrainResult {
    records: u64,
    secs: f64,
    batches: u64,
    avg_payload: usize,
    resent: u64,
    own_cpu: f64,
    broker_cpu: f64,
}

/// Like a CoAP adapter's event: a subject, a device, one reading, one meta entry.
fn event(device: &str, n: u64) -> Event {
    Event::new(
        format!("coap/{device}"),
        device,
        1_764_000_000_000 + n as i64,
    )
    .with_number("temperature", 21.5 + (n % 10) as f64 / 10.0, "Cel")
    .with_meta("rssi", Value::Number(-87.0))
}

fn config(dir: &Path, port: u16, batch: usize, max_bytes: &str, inflight: u16) -> Config {
    let text = format!(
        r#"
[gateway]
id = "bench"
data_dir = "{dir}"

[uplink]
url = "mqtt://127.0.0.1:{port}"
batch_max_records = {batch}
batch_max_bytes = "{max_bytes}"
max_inflight = {inflight}
linger = "50 ms"
reconnect_min = "100 ms"
reconnect_max = "1 s"
"#,
        dir = dir.display(),
    );
    Config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("bench config is invalid:\n{e}"))
}

/// Commits `count` events with the uplink pointed at a closed port.
async fn prefill(dir: &Path, count: u64) {
    let runtime = sluice::Runtime::start(config(dir, closed_port(), 500, "256 KiB", 8))
        .await
        .expect("start");
    let ingest = runtime.ingest();
    let mut receipts = Vec::new();
    for start in (0..count).step_by(1000) {
        let events = (start..(start + 1000).min(count))
            .map(|n| event(&format!("dev-{}", n % 64), n))
            .collect();
        receipts.push(ingest.submit(events).await.expect("queue open"));
    }
    for r in receipts {
        r.durable().await.expect("accepted");
    }
    assert_eq!(runtime.metrics().snapshot().queue_records, count);
    runtime.shutdown().await;
}

async fn drain_run(
    dir: &Path,
    broker: &Broker,
    records: u64,
    batch: usize,
    max_bytes: &str,
    inflight: u16,
    subscriber: bool,
) -> DrainResult {
    prefill(dir, records).await;
    let sub = if subscriber {
        Some(Subscriber::start(broker.port, "sluice/+/telemetry").await)
    } else {
        None
    };
    let cpu0 = (cpu_seconds("self"), broker.cpu_seconds());
    let start = Instant::now();
    let runtime = sluice::Runtime::start(config(dir, broker.port, batch, max_bytes, inflight))
        .await
        .expect("start");
    let metrics = runtime.metrics();
    let deadline = start + DEADLINE;
    // Bounded polling loop: a drain that takes longer than DEADLINE fails the run.
    while metrics.snapshot().queue_records > 0 {
        assert!(
            Instant::now() < deadline,
            "drain did not finish within {DEADLINE:?}: {:?}",
            metrics.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = (cpu_seconds("self"), broker.cpu_seconds());
    let m = metrics.snapshot();
    if let Some(sub) = &sub {
        // Every acknowledged record reaches the subscriber (it ran during the drain).
        let until = Instant::now() + DEADLINE;
        while sub.records.load(Ordering::Relaxed) < records {
            assert!(
                Instant::now() < until,
                "subscriber got {} of {records} records",
                sub.records.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    runtime.shutdown().await;
    if let Some(sub) = sub {
        sub.stop();
    }
    assert!(m.uplink_records_acked >= records, "{m:?}");
    let avg_payload = m_payload_estimate(&m, records, batch);
    DrainResult {
        records,
        secs,
        batches: m.uplink_batches_acked,
        avg_payload,
        resent: m.uplink_batches_resent,
        own_cpu: cpu1.0 - cpu0.0,
        broker_cpu: cpu1.1 - cpu0.1,
    }
}

/// Average payload of a batch: built the way the uplink builds it, from the
/// same kind of events (the metrics do not count bytes sent).
fn m_payload_estimate(m: &sluice::metrics::MetricsSnapshot, records: u64, batch: usize) -> usize {
    let per_batch = (records as f64 / m.uplink_batches_acked.max(1) as f64).round() as usize;
    real_batch_payload(per_batch.clamp(1, batch)).len()
}

/// A batch payload of `n` records, built with the uplink's own `BatchWriter`.
fn real_batch_payload(n: usize) -> Vec<u8> {
    let events: Vec<Event> = (0..n as u64)
        .map(|i| {
            let mut e = event(&format!("dev-{}", i % 64), i);
            e.id = EventId::new(2, i + 1);
            e.gateway_time_ms = 1_764_000_000_000 + i as i64;
            e
        })
        .collect();
    let mut w = BatchWriter::new("bench", sluice::clock::now_ms(), 64 << 20);
    for e in &events {
        // Read from the stored form, as the uplink does.
        let bytes = e.encode();
        let e = EventView::parse(&bytes).expect("decodes");
        assert!(w.push(&UpstreamRecord {
            event: &e,
            stream: "telemetry",
            queued_ms: sluice::clock::now_ms(),
        }));
    }
    w.finish()
}

struct BaselineResult {
    secs: f64,
    own_cpu: f64,
    broker_cpu: f64,
}

async fn baseline_run(broker: &Broker, payload: &[u8], count: u64, window: u16) -> BaselineResult {
    let mut opts = MqttOptions::new(format!("baseline-{window}"), "127.0.0.1", broker.port);
    opts.set_clean_session(true);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(window);
    opts.set_max_packet_size(64 << 10, payload.len() + 4096);
    let (client, mut eventloop) = AsyncClient::new(opts, window as usize + 8);
    // Like the Sluice runs, the timed part includes connecting.
    let cpu0 = (cpu_seconds("self"), broker.cpu_seconds());
    let start = Instant::now();
    let payload = payload.to_vec();
    let publisher = tokio::spawn(async move {
        for _ in 0..count {
            client
                .publish(
                    "bench/baseline/telemetry",
                    QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .expect("request channel open");
        }
        client
    });
    let mut acked = 0u64;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while acked < count {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("baseline finished within the deadline")
            .expect("baseline connection works");
        if let MqttEvent::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = (cpu_seconds("self"), broker.cpu_seconds());
    let client = publisher.await.expect("publisher");
    let _ = client.try_disconnect();
    // Let the disconnect go out (bounded).
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await {
            Ok(Ok(MqttEvent::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
    BaselineResult {
        secs,
        own_cpu: cpu1.0 - cpu0.0,
        broker_cpu: cpu1.1 - cpu0.1,
    }
}

/// A QoS 1 subscriber counting records (cheaply: batches are parsed only for their record count).
struct Subscriber {
    records: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(port: u16, topic: &str) -> Subscriber {
        #[derive(serde::Deserialize)]
        struct Batch {
            records: Vec<serde::de::IgnoredAny>,
        }
        let mut opts = MqttOptions::new("bench-subscriber", "127.0.0.1", port);
        opts.set_clean_session(true);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(64 << 20, 64 << 10);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let records = Arc::new(AtomicU64::new(0));
        let count = records.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let b: Batch =
                            serde_json::from_slice(&p.payload).expect("batch is valid JSON");
                        count.fetch_add(b.records.len() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("subscriber connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("subscribed within 10 s")
            .expect("subscriber alive");
        Subscriber { records, task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// A mosquitto process on a free loopback port, without persistence.
struct Broker {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Broker {
    fn start(base: &Path) -> Broker {
        let dir = tempfile::tempdir_in(base).expect("broker tempdir");
        let port = closed_port();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n{}",
            if root { "user root\n" } else { "" }
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write broker config");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)");
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[mosquitto] {line}");
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not open port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            port,
            _dir: dir,
            child,
        }
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in seconds (`pid` may be `self`).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn mosquitto_version() -> String {
    Command::new("mosquitto")
        .arg("-h")
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("mosquitto version ")
                .to_owned()
        })
        .unwrap_or_default()
}

/// A loopback port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
