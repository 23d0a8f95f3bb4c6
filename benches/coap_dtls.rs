//! CoAP over DTLS against plain CoAP, end to end: the release `sluice`
//! binary in its own process, its uplink draining to a real mosquitto, and
//! the load generator (this process, one thread per client) sending
//! confirmable POSTs that are answered `2.04` only once durable. Plain and
//! DTLS scenarios alternate in one run, so they share the machine's noise.
//! Also DTLS handshakes per second (pre-shared key, with the cookie round
//! trip), each on a new socket.
//!
//! `CARGO_TARGET_DIR=/tmp/sluice-bench cargo bench --bench coap_dtls`

use coap_lite::{MessageClass, Packet, ResponseType};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslOptions, SslStream};
use sluice_coap::client::{JSON, Request};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Clients with one request in flight each.
const CLIENTS: [usize; 2] = [1, 16];
/// Clients shaking hands in parallel.
const HANDSHAKERS: [usize; 2] = [1, 8];
/// How long a client waits for an answer before counting a loss.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

fn main() {
    let secs: f64 = std::env::var("SLUICE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let run_for = Duration::from_secs_f64(secs);
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt = free_port();
    let _broker = Process::spawn(
        Command::new("mosquitto").args(["-p", &mqtt.to_string()]),
        "mosquitto (apt-get install mosquitto)",
    );
    let (plain, secure) = (free_udp(), free_udp());
    let config = dir.path().join("bench.toml");
    write_config(&config, dir.path(), mqtt, plain, secure);
    let _gateway = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&config)
            .env("SLUICE_LOG", "warn"),
        "sluice",
    );
    wait_until_answering(plain);

    println!("# CoAP over DTLS against plain CoAP\n");
    println!(
        "CON POST of a JSON reading to `/r/<device>`, answered `2.04` after the group commit; the release `sluice` binary in its own process, `process` durability, uplink to mosquitto on loopback; load generator in another process (one thread per client, on the same 2 cores; DTLS clients use OpenSSL, suite PSK-AES128-CCM8). {secs} s per scenario, plain and DTLS alternating.\n"
    );
    println!("| transport | clients | requests | requests/s | p50 ms | p99 ms | lost |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for clients in CLIENTS {
        for transport in [Transport::Plain(plain), Transport::Dtls(secure)] {
            let r = closed_loop(transport, clients, run_for);
            println!(
                "| {} | {clients} | {} | **{:.0}** | {:.2} | {:.2} | {} |",
                transport.name(),
                r.done,
                r.done as f64 / r.secs,
                r.p50_ms,
                r.p99_ms,
                r.lost
            );
        }
    }
    println!("\n## DTLS handshakes (pre-shared key, cookie exchange, new socket each)\n");
    println!("| parallel clients | handshakes | handshakes/s | p50 ms | p99 ms | failed |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for clients in HANDSHAKERS {
        let r = handshakes(secure, clients, run_for);
        println!(
            "| {clients} | {} | **{:.0}** | {:.2} | {:.2} | {} |",
            r.done,
            r.done as f64 / r.secs,
            r.p50_ms,
            r.p99_ms,
            r.lost
        );
    }
}

fn write_config(path: &Path, dir: &Path, mqtt: u16, plain: u16, secure: u16) {
    let keys: Vec<String> = (0..64)
        .map(|i| format!("\"bench-{i}\" = \"bench-key-{i}\""))
        .collect();
    let text = format!(
        r#"[gateway]
id = "bench"
data_dir = "{dir}"

[uplink]
url = "mqtt://127.0.0.1:{mqtt}"

[coap]
listen = ["127.0.0.1:{plain}"]
rate_per_device = 1000000

[coap.dtls]
listen = ["127.0.0.1:{secure}"]
psk = {{ {keys} }}
"#,
        dir = dir.display(),
        keys = keys.join(", ")
    );
    std::fs::write(path, text).expect("write config");
}

#[derive(Clone, Copy)]
enum Transport {
    Plain(u16),
    Dtls(u16),
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Plain(_) => "plain",
            Transport::Dtls(_) => "DTLS",
        }
    }
}

/// One client's way to exchange a datagram with the gateway.
enum Client {
    Plain(UdpSocket),
    Dtls(Box<SslStream<Datagram>>),
}

impl Client {
    fn connect(transport: Transport, id: usize) -> io::Result<Client> {
        match transport {
            Transport::Plain(port) => Ok(Client::Plain(socket(port)?)),
            Transport::Dtls(port) => Ok(Client::Dtls(Box::new(dtls(port, id)?))),
        }
    }

    fn exchange(&mut self, request: &[u8], answer: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Plain(socket) => {
                socket.send(request)?;
                socket.recv(answer)
            }
            Client::Dtls(stream) => {
                stream.ssl_write(request).map_err(io::Error::other)?;
                stream.ssl_read(answer).map_err(io::Error::other)
            }
        }
    }
}

/// A connected UDP socket as OpenSSL's transport: one datagram per call.
#[derive(Debug)]
struct Datagram(UdpSocket);

impl Read for Datagram {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for Datagram {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn socket(port: u16) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(socket)
}

fn client_context(identity: String) -> SslContext {
    let mut b = SslContext::builder(SslMethod::dtls_client()).expect("client context");
    b.set_options(SslOptions::NO_QUERY_MTU);
    b.set_cipher_list("PSK-AES128-CCM8").expect("suite");
    let key = format!("bench-key-{}", identity.trim_start_matches("bench-"));
    b.set_psk_client_callback(move |_ssl, _hint, id, psk| {
        id[..identity.len()].copy_from_slice(identity.as_bytes());
        id[identity.len()] = 0;
        psk[..key.len()].copy_from_slice(key.as_bytes());
        Ok(key.len())
    });
    b.build()
}

/// A DTLS session as `bench-<id>`.
fn dtls(port: u16, id: usize) -> io::Result<SslStream<Datagram>> {
    let context = client_context(format!("bench-{id}"));
    let mut ssl = Ssl::new(&context).map_err(io::Error::other)?;
    ssl.set_mtu(1232).map_err(io::Error::other)?;
    ssl.connect(Datagram(socket(port)?))
        .map_err(|e| io::Error::other(e.to_string()))
}

fn reading(id: usize) -> Request {
    Request::new(
        coap_lite::RequestType::Post,
        ["r".to_owned(), format!("bench-{id}")],
    )
    .with_payload(JSON, br#"{"temperature": 21.5, "humidity": 40}"#.to_vec())
}

fn is_changed(bytes: &[u8], mid: u16) -> bool {
    Packet::from_bytes(bytes).is_ok_and(|p| {
        p.header.message_id == mid && p.header.code == MessageClass::Response(ResponseType::Changed)
    })
}

struct Outcome {
    done: u64,
    lost: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn outcome(per_thread: Vec<(u64, Vec<Duration>)>, secs: f64) -> Outcome {
    let lost = per_thread.iter().map(|(l, _)| l).sum();
    let mut times: Vec<Duration> = per_thread.into_iter().flat_map(|(_, t)| t).collect();
    times.sort_unstable();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Outcome {
        done: times.len() as u64,
        lost,
        secs,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// `clients` threads, each with one request in flight, for `run_for`.
fn closed_loop(transport: Transport, clients: usize, run_for: Duration) -> Outcome {
    let mut connected: Vec<Client> = (0..clients)
        .map(|id| Client::connect(transport, id).expect("connect"))
        .collect();
    let start = Instant::now();
    let threads: Vec<_> = connected
        .drain(..)
        .enumerate()
        .map(|(id, mut client)| {
            std::thread::spawn(move || {
                let request = reading(id);
                let mut answer = [0u8; 1500];
                let (mut lost, mut times) = (0u64, Vec::new());
                let mut mid: u16 = 0;
                while start.elapsed() < run_for {
                    mid = mid.wrapping_add(1);
                    let bytes = request.encode(mid, &mid.to_be_bytes()).expect("encode");
                    let sent = Instant::now();
                    match client.exchange(&bytes, &mut answer) {
                        Ok(n) if is_changed(&answer[..n], mid) => times.push(sent.elapsed()),
                        _ => lost += 1,
                    }
                }
                (lost, times)
            })
        })
        .collect();
    let results = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    outcome(results, start.elapsed().as_secs_f64())
}

/// `clients` threads shaking hands over and over, each time on a new socket.
fn handshakes(port: u16, clients: usize, run_for: Duration) -> Outcome {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|id| {
            std::thread::spawn(move || {
                let (mut lost, mut times) = (0u64, Vec::new());
                while start.elapsed() < run_for {
                    let began = Instant::now();
                    match dtls(port, id) {
                        Ok(mut stream) => {
                            times.push(began.elapsed());
                            let _ = stream.shutdown();
                        }
                        Err(_) => lost += 1,
                    }
                }
                (lost, times)
            })
        })
        .collect();
    let results = threads
        .into_iter()
        .map(|t| t.join().expect("handshake thread"))
        .collect();
    outcome(results, start.elapsed().as_secs_f64())
}

/// Polls the plain port until a reading is answered `2.04`.
fn wait_until_answering(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = Client::connect(Transport::Plain(port), 0).expect("socket");
    let mut answer = [0u8; 1500];
    for mid in 1.. {
        let bytes = reading(0).encode(mid, &mid.to_be_bytes()).expect("encode");
        if matches!(client.exchange(&bytes, &mut answer), Ok(n) if is_changed(&answer[..n], mid)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not answer within 20 s"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

/// A child process, killed when dropped.
struct Process(Child);

impl Process {
    fn spawn(command: &mut Command, what: &str) -> Process {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Process(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
