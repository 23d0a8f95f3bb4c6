//! CoAP ingest: confirmable POSTs answered with `2.04` only once durable.
//! A closed-loop load generator (N clients, one request in flight each) for
//! throughput, and an open-loop one at a fixed rate for latency. Everything on
//! loopback in this process; the uplink points at a closed port. Each
//! scenario runs twice in a row, with `durable_exchanges` on (each request's
//! `2.04` committed with its events) and off (answers in memory only), the
//! order alternating from one scenario to the next.
//!
//! `CARGO_TARGET_DIR=/tmp/sluice-bench cargo bench --bench coap`

use coap_lite::{MessageClass, Packet, RequestType, ResponseType};
use sluice::config::Config;
use sluice_coap::client::{JSON, Request};
use sluice_coap::timing::ACK_TIMEOUT;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

fn main() {
    let secs: f64 = std::env::var("SLUICE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("# CoAP benchmark\n");
    println!(
        "CON POST of a JSON reading (`{{\"temperature\": 21.5, \"humidity\": 40}}`, content format 50) to `/r/<device>`; the answer `2.04` comes after the group commit. `process` durability, databases under `/var/tmp`, tokio runtime with 2 workers, load generator in the same process (it competes for the 2 cores). {secs} s per scenario.\n"
    );
    println!("## Closed loop: N clients, one request in flight each\n");
    println!(
        "| clients | durable exchanges | requests | s | requests/s | p50 ms | p99 ms | answers other than 2.04 | MiB on disk |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (row, clients) in [1, 16, 64, 256].into_iter().enumerate() {
        for durable in order(row) {
            let r = rt.block_on(closed_loop(clients, durable, Duration::from_secs_f64(secs)));
            println!(
                "| {clients} | {} | {} | {:.2} | **{:.0}** | {:.2} | {:.2} | {} | {:.1} |",
                on_off(durable),
                r.done,
                r.secs,
                r.done as f64 / r.secs,
                r.p50_ms,
                r.p99_ms,
                r.other,
                r.disk_mib
            );
        }
    }
    println!("\n## Open loop: a fixed request rate, latency from send to `2.04`\n");
    println!(
        "| target requests/s | durable exchanges | sent | answered | achieved/s | p50 ms | p99 ms | max ms | MiB on disk |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (row, rate) in [5_000u32, 20_000].into_iter().enumerate() {
        for durable in order(row) {
            let r = rt.block_on(open_loop(rate, durable, Duration::from_secs_f64(secs)));
            println!(
                "| {rate} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
                on_off(durable),
                r.sent,
                r.done,
                r.done as f64 / r.secs,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.disk_mib
            );
        }
    }
}

/// On then off in even rows, off then on in odd ones, so neither always goes first.
fn order(row: usize) -> [bool; 2] {
    if row.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

fn on_off(durable: bool) -> &'static str {
    if durable { "on" } else { "off" }
}

/// Size of the queue database and its WAL, in MiB.
fn disk_mib(dir: &std::path::Path) -> f64 {
    ["queue.db", "queue.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / f64::from(1 << 20)
}

struct Result {
    sent: u64,
    done: u64,
    other: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    disk_mib: f64,
}

async fn start(dir: &std::path::Path, durable: bool) -> sluice::Runtime {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let text = format!(
        "[gateway]\ndata_dir = \"{}\"\n[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\nmax_records = 100000000\nmax_bytes = \"64 GiB\"\n[uplink]\nurl = \"mqtt://127.0.0.1:{closed}\"\nreconnect_min = \"1 s\"\nreconnect_max = \"60 s\"\n[coap]\nlisten = [\"127.0.0.1:0\"]\nrate_per_device = 1000000\ndurable_exchanges = {durable}\n",
        dir.display()
    );
    let config = Config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    sluice::Runtime::start(config).await.expect("starts")
}

/// The CON POST of one reading by `device`, built once per client.
fn reading(device: &str) -> Request {
    Request::new(RequestType::Post, ["r", device])
        .with_payload(JSON, br#"{"temperature": 21.5, "humidity": 40}"#.to_vec())
}

/// The request with message id (and token) `mid`.
fn request(reading: &Request, mid: u16) -> Vec<u8> {
    reading.encode(mid, &mid.to_be_bytes()).expect("encode")
}

fn is_changed(bytes: &[u8]) -> bool {
    Packet::from_bytes(bytes)
        .map(|p| p.header.code == MessageClass::Response(ResponseType::Changed))
        .unwrap_or(false)
}

async fn closed_loop(clients: usize, durable: bool, run_for: Duration) -> Result {
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let runtime = start(dir.path(), durable).await;
    let server = runtime.udp_addrs("coap")[0];
    let deadline = Instant::now() + run_for;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let reading = reading(&format!("dev-{c}"));
            let mut lat = Vec::new();
            let (mut done, mut other) = (0u64, 0u64);
            let mut buf = [0u8; 1500];
            let mut mid: u16 = 0;
            while Instant::now() < deadline {
                mid = mid.wrapping_add(1);
                let t = Instant::now();
                let _ = socket.send_to(&request(&reading, mid), server).await;
                match tokio::time::timeout(ACK_TIMEOUT, socket.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) if is_changed(&buf[..n]) => {
                        done += 1;
                        lat.push(t.elapsed());
                    }
                    _ => other += 1,
                }
            }
            (done, other, lat)
        }));
    }
    let (mut done, mut other, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (d, o, l) = t.await.expect("client");
        done += d;
        other += o;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    runtime.shutdown().await;
    lat.sort();
    Result {
        sent: done + other,
        done,
        other,
        secs,
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        disk_mib: disk_mib(dir.path()),
    }
}

async fn open_loop(rate: u32, durable: bool, run_for: Duration) -> Result {
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let runtime = start(dir.path(), durable).await;
    let server: SocketAddr = runtime.udp_addrs("coap")[0];
    // 64 sockets, requests spread round-robin; a receiver task per socket matches answers by message id.
    let sockets: Vec<Arc<UdpSocket>> = futures_sockets(64).await;
    let sent_at: Arc<Vec<std::sync::Mutex<Vec<Option<Instant>>>>> = Arc::new(
        (0..sockets.len())
            .map(|_| std::sync::Mutex::new(vec![None; 65_536]))
            .collect(),
    );
    let mut receivers = Vec::new();
    for (i, s) in sockets.iter().enumerate() {
        let (s, sent_at) = (s.clone(), sent_at.clone());
        receivers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut buf = [0u8; 1500];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(ACK_TIMEOUT, s.recv_from(&mut buf)).await
            {
                let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if p.header.code != MessageClass::Response(ResponseType::Changed) {
                    continue;
                }
                let t = sent_at[i].lock().expect("lock")[p.header.message_id as usize].take();
                if let Some(t) = t {
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    let readings: Vec<Request> = (0..sockets.len())
        .map(|i| reading(&format!("dev-{i}")))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    let mut sent = 0u64;
    let total = (run_for.as_secs_f64() * f64::from(rate)) as u64;
    while sent < total {
        let due = start + interval.mul_f64(sent as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let i = (sent % sockets.len() as u64) as usize;
        let mid = ((sent / sockets.len() as u64) % 65_536) as u16;
        sent_at[i].lock().expect("lock")[mid as usize] = Some(Instant::now());
        let _ = sockets[i]
            .send_to(&request(&readings[i], mid), server)
            .await;
        sent += 1;
    }
    let mut lat = Vec::new();
    for r in receivers {
        lat.extend(r.await.expect("receiver"));
    }
    let secs = start.elapsed().as_secs_f64() - ACK_TIMEOUT.as_secs_f64();
    runtime.shutdown().await;
    lat.sort();
    Result {
        sent,
        done: lat.len() as u64,
        other: 0,
        secs: secs.max(run_for.as_secs_f64()),
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        disk_mib: disk_mib(dir.path()),
    }
}

async fn futures_sockets(n: usize) -> Vec<Arc<UdpSocket>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Arc::new(
            UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
        ));
    }
    v
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}
