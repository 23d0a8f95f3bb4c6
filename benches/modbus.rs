//! Modbus polling costs, each slave in a process of its own on one end of a
//! socat PTY pair (a small RTU slave this binary becomes with `--slave`,
//! far quicker than pymodbus, so the gateway is what is measured):
//!
//! 1. Polls per second and CPU per poll over a PTY (no baud limit): a bare
//!    tokio-modbus client doing the same exchanges (the floor), the adapter
//!    in this process with a sink that only counts (the adapter's own
//!    overhead), and the whole gateway (`sluice run`, queue included).
//! 2. At 9600 and 115200 baud: the slave holds each answer for the time the
//!    frames and the 3.5-character gaps would take on the wire; the poll
//!    rate achieved against that limit.
//! 3. RSS of `sluice run` with 100 devices on 4 buses, against the same
//!    gateway without Modbus.
//!
//! Needs socat. `CARGO_TARGET_DIR=/tmp/sluice-bench cargo bench --bench modbus`

use sluice_adapter_common::testing::context;
use sluice_adapter_common::{Adapter, Refusal, Sink};
use sluice_event::{Event, EventId};
use sluice_loadgen::procfs::{CpuSample, Memory, own_cpu_us, ticks_to_duration};
use sluice_modbus::ModbusConfig;
use sluice_modbus::config::Parity;
use sluice_modbus::rtu::{self, Framing, READ_REQUEST_LEN};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Registers read per poll: one read of ten holding registers.
const REGISTERS: u16 = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--slave") {
        slave::run(&args[2..]);
        return;
    }
    let secs: f64 = std::env::var("SLUICE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let base = std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).expect("a bench folder");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("# Modbus benchmark\n");
    println!(
        "One read of {REGISTERS} holding registers per poll (request 8 bytes, answer {} bytes), 10 `u16` points, `publish = \"every_poll\"`, poll interval 1 ms (always due). Slaves: this binary with `--slave`, one process per bus on a socat PTY pair. Adapter in this process: tokio runtime with 2 workers. {secs} s per row.\n",
        rtu::read_response_len(sluice_modbus::config::Table::Holding, REGISTERS)
    );
    unlimited(&rt, dir.path(), secs);
    wire(&rt, dir.path(), secs);
    footprint(dir.path(), secs);
}

/// Section 1.
fn unlimited(rt: &tokio::runtime::Runtime, dir: &Path, secs: f64) {
    println!("## 1. Over a PTY, no baud limit\n");
    println!(
        "The bus is configured at 115200 baud, so the gateway keeps the 1.75 ms frame gap RTU requires above 19200 baud between exchanges; the PTY itself does not pace the bytes. CPU is user + system time of the process that polls (the slaves are other processes).\n"
    );
    println!("| what | buses | polls | polls/s | CPU µs per poll |");
    println!("|---|---:|---:|---:|---:|");
    let pty = Pty::start(dir, "floor");
    let slave = SlaveProcess::start(&pty.slave, 1, 0);
    for paced in [false, true] {
        let (polls, cpu_us, took) = rt.block_on(floor(&pty.gw, paced, secs));
        let label = if paced {
            "floor: bare tokio-modbus client, 1.75 ms gap kept (the adapter's pacer)"
        } else {
            "floor: bare tokio-modbus client, back to back"
        };
        row(label, 1, polls, took, cpu_us);
    }
    drop(slave);
    drop(pty);
    for buses in [1, 4] {
        let ptys: Vec<Pty> = (0..buses)
            .map(|i| Pty::start(dir, &format!("a{buses}-{i}")))
            .collect();
        let slaves: Vec<SlaveProcess> = ptys
            .iter()
            .map(|p| SlaveProcess::start(&p.slave, 1, 0))
            .collect();
        let config = modbus_config(&ptys, 115_200, 1, "1 ms");
        let (polls, cpu_us, took) = rt.block_on(adapter(&config, secs));
        row("the adapter, sink that counts", buses, polls, took, cpu_us);
        drop(slaves);
    }
    // The whole gateway: queue commits included, uplink to a closed port.
    let ptys: Vec<Pty> = (0..4).map(|i| Pty::start(dir, &format!("g{i}"))).collect();
    let mut slaves: Vec<SlaveProcess> = ptys
        .iter()
        .map(|p| SlaveProcess::start(&p.slave, 1, 0))
        .collect();
    let data = dir.join("gateway-1");
    let gateway = Gateway::start(&data, &modbus_config(&ptys, 115_200, 1, "1 ms"));
    wait_for_polls(&mut slaves);
    let settle = Instant::now();
    let before = (
        CpuSample::read(gateway.pid()).expect("cpu").ticks,
        total(&mut slaves),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let after = (
        CpuSample::read(gateway.pid()).expect("cpu").ticks,
        total(&mut slaves),
    );
    let took = settle.elapsed();
    let cpu = ticks_to_duration(after.0 - before.0).as_micros() as u64;
    row(
        "`sluice run` (queue in `process` durability)",
        4,
        after.1 - before.1,
        took,
        cpu,
    );
    drop(gateway);
    println!();
}

fn row(label: &str, buses: usize, polls: u64, took: Duration, cpu_us: u64) {
    println!(
        "| {label} | {buses} | {polls} | {:.0} | {:.1} |",
        polls as f64 / took.as_secs_f64(),
        cpu_us as f64 / polls.max(1) as f64
    );
}

/// The bare client: the same read back to back (or with the gap), counted.
async fn floor(path: &Path, paced: bool, secs: f64) -> (u64, u64, Duration) {
    use tokio_modbus::prelude::{Reader, Slave};
    let port =
        tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 115_200))
            .expect("open the PTY");
    let mut client = tokio_modbus::client::rtu::attach_slave(port, Slave(1));
    let gap = Duration::from_micros(1750);
    let pacer = sluice_modbus::pace::Pacer::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (start, cpu) = (Instant::now(), own_cpu_us());
    let mut polls = 0;
    let mut last = Instant::now();
    while Instant::now() < end {
        if paced {
            pacer.until(last + gap).await;
        }
        let answer = tokio::time::timeout(
            Duration::from_millis(500),
            client.read_holding_registers(0, REGISTERS),
        )
        .await;
        last = Instant::now();
        if matches!(answer, Ok(Ok(Ok(_)))) {
            polls += 1;
        }
    }
    (polls, own_cpu_us() - cpu, start.elapsed())
}

/// A sink that counts events and keeps nothing.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Sink for Counting {
    async fn accept(&self, events: Vec<Event>) -> Result<Vec<EventId>, Refusal> {
        let n = self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok((0..events.len() as u64)
            .map(|i| EventId(n + i + 1))
            .collect())
    }
}

/// The adapter with a counting sink for `secs` after its first poll.
async fn adapter(text: &str, secs: f64) -> (u64, u64, Duration) {
    let config: ModbusConfig = toml::from_str(text).expect("bench config");
    let opened = config.open().await.expect("opens");
    let sink = Counting::default();
    let (ctx, controls) = context(sink.clone());
    let task = tokio::spawn(opened.run(ctx));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.0.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no poll within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (start, cpu, before) = (Instant::now(), own_cpu_us(), sink.0.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (polls, cpu) = (sink.0.load(Ordering::Relaxed) - before, own_cpu_us() - cpu);
    let took = start.elapsed();
    let _ = controls.stop.send(true);
    let _ = task.await;
    (polls, cpu, took)
}

/// A `[modbus]` section (a whole config file for `sluice run`: the section
/// with `modbus.` prefixes) with one bus per PTY and `devices` devices on each.
fn modbus_config(ptys: &[Pty], baud: u32, devices: u8, poll: &str) -> String {
    let mut text = String::new();
    for (i, pty) in ptys.iter().enumerate() {
        text += &format!(
            "[[buses]]\nname = \"bus{i}\"\npath = \"{}\"\nbaud = {baud}\nresponse_timeout = \"500 ms\"\n\n",
            pty.gw.display()
        );
        for unit in 1..=devices {
            text += &format!(
                "[[devices]]\nid = \"d{i}-{unit}\"\nbus = \"bus{i}\"\nunit = {unit}\npoll = \"{poll}\"\nprofile = \"ten\"\n\n"
            );
        }
    }
    let points: Vec<String> = (0..REGISTERS)
        .map(|a| format!("{{ name = \"r{a}\", table = \"holding\", address = {a}, unit = \"W\" }}"))
        .collect();
    text += &format!("[profiles.ten]\npoints = [{}]\n", points.join(", "));
    text
}

/// Section 2.
fn wire(rt: &tokio::runtime::Runtime, dir: &Path, secs: f64) {
    println!("## 2. Against the wire-time limit\n");
    println!(
        "The slave holds each answer until the request, the gap that ends it and the answer would have crossed the wire (it sleeps, then spins the last millisecond); the gateway then keeps the frame gap before its next request. Limit: one exchange per `2 × gap + (8 + {}) characters`, 8N1 (10 bits per character). One device, one bus. {} s per row at 115200, {} s at 9600.\n",
        rtu::read_response_len(sluice_modbus::config::Table::Holding, REGISTERS),
        secs,
        secs * 2.0
    );
    println!(
        "| baud | exchange on the wire ms | limit polls/s | polls | achieved polls/s | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (baud, factor) in [(9600u32, 2.0), (115_200, 1.0)] {
        let framing = Framing {
            baud,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        };
        let exchange = framing.exchange_time(
            READ_REQUEST_LEN,
            rtu::read_response_len(sluice_modbus::config::Table::Holding, REGISTERS),
        );
        let pty = Pty::start(dir, &format!("w{baud}"));
        let _slave = SlaveProcess::start(&pty.slave, 1, baud);
        let config = modbus_config(std::slice::from_ref(&pty), baud, 1, "1 ms");
        let (polls, _, took) = rt.block_on(adapter(&config, secs * factor));
        let achieved = polls as f64 / took.as_secs_f64();
        let limit = 1.0 / exchange.as_secs_f64();
        println!(
            "| {baud} | {:.2} | {limit:.1} | {polls} | {achieved:.1} | {:.3} |",
            exchange.as_secs_f64() * 1000.0,
            achieved / limit
        );
    }
    println!();
}

/// Section 3.
fn footprint(dir: &Path, secs: f64) {
    println!("## 3. Memory: 100 devices on 4 buses\n");
    println!(
        "`sluice run` (the bench build), 4 buses with 25 devices each (units 1–25, the ten-register profile, polled every second), uplink to a closed port; against the same gateway without `[modbus]`, started right before. RSS read after {} s.\n",
        secs * 2.0
    );
    println!("| gateway | VmRSS MiB | VmHWM MiB |");
    println!("|---|---:|---:|");
    let idle = Gateway::start(&dir.join("idle"), "");
    std::thread::sleep(Duration::from_secs_f64(secs * 2.0));
    let m = Memory::read(idle.pid()).expect("memory");
    println!(
        "| without Modbus | {:.1} | {:.1} |",
        m.rss_kb as f64 / 1024.0,
        m.hwm_kb as f64 / 1024.0
    );
    drop(idle);
    let ptys: Vec<Pty> = (0..4).map(|i| Pty::start(dir, &format!("m{i}"))).collect();
    let mut slaves: Vec<SlaveProcess> = ptys
        .iter()
        .map(|p| SlaveProcess::start(&p.slave, 25, 0))
        .collect();
    let gateway = Gateway::start(
        &dir.join("hundred"),
        &modbus_config(&ptys, 19_200, 25, "1 s"),
    );
    wait_for_polls(&mut slaves);
    std::thread::sleep(Duration::from_secs_f64(secs * 2.0));
    let m = Memory::read(gateway.pid()).expect("memory");
    let polls = total(&mut slaves);
    println!(
        "| 100 Modbus devices on 4 buses ({polls} polls answered) | {:.1} | {:.1} |",
        m.rss_kb as f64 / 1024.0,
        m.hwm_kb as f64 / 1024.0
    );
    println!();
}

/// A socat PTY pair under `dir`: `<name>-gw` and `<name>-slave`.
struct Pty {
    gw: PathBuf,
    slave: PathBuf,
    socat: Child,
}

impl Pty {
    fn start(dir: &Path, name: &str) -> Pty {
        let gw = dir.join(format!("{name}-gw"));
        let slave = dir.join(format!("{name}-slave"));
        let end = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let socat = Command::new("socat")
            .arg(end(&gw))
            .arg(end(&slave))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (apt-get install socat)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(gw.exists() && slave.exists()) {
            assert!(Instant::now() < deadline, "no PTY pair from socat");
            std::thread::sleep(Duration::from_millis(10));
        }
        Pty { gw, slave, socat }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

/// This binary as a slave, in a process of its own.
struct SlaveProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl SlaveProcess {
    /// Serves units 1..=`units` on `path`; `baud` 0 answers at once.
    fn start(path: &Path, units: u8, baud: u32) -> SlaveProcess {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .arg("--slave")
            .arg(path)
            .arg(units.to_string())
            .arg(baud.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the slave starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut slave = SlaveProcess {
            child,
            stdin,
            stdout,
        };
        assert_eq!(slave.line(), "ready");
        slave
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the slave answers");
        line.trim().to_owned()
    }

    /// Requests answered so far.
    fn answered(&mut self) -> u64 {
        writeln!(self.stdin, "count").expect("ask the slave");
        self.line().parse().expect("a count")
    }
}

impl Drop for SlaveProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn total(slaves: &mut [SlaveProcess]) -> u64 {
    slaves.iter_mut().map(SlaveProcess::answered).sum()
}

fn wait_for_polls(slaves: &mut [SlaveProcess]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while slaves.iter_mut().any(|s| s.answered() == 0) {
        assert!(
            Instant::now() < deadline,
            "the gateway polls nothing within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `sluice run` on a config with `modbus` (a `[modbus]` section's body) in `data`.
struct Gateway(Child);

impl Gateway {
    fn start(data: &Path, modbus: &str) -> Gateway {
        std::fs::create_dir_all(data).expect("data folder");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let section: String = modbus
            .lines()
            .map(|l| {
                if let Some(table) = l.strip_prefix("[[") {
                    format!("[[modbus.{table}")
                } else if let Some(table) = l.strip_prefix('[') {
                    format!("[modbus.{table}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!(
            "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[uplink]\nurl = \"mqtt://127.0.0.1:{closed}\"\n{section}\n",
            data.display()
        );
        let config = data.join("sluice.toml");
        std::fs::write(&config, text).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&config)
            .env("SLUICE_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("sluice run");
        Gateway(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// The slave: answers FC 3 and 4 for units 1..=N (register `a` holds `a`),
/// one request at a time; with a baud rate, each answer leaves when the
/// exchange would have crossed the wire. `count` on stdin prints the
/// requests answered.
mod slave {
    use super::*;

    pub fn run(args: &[String]) {
        let path = &args[0];
        let units: u8 = args[1].parse().expect("units");
        let baud: u32 = args[2].parse().expect("baud");
        let answered = Arc::new(AtomicU64::new(0));
        let mut port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the PTY");
        let counter = answered.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                if line.is_err() {
                    break;
                }
                println!("{}", counter.load(Ordering::Relaxed));
            }
            std::process::exit(0);
        });
        println!("ready");
        let framing = Framing {
            baud: baud.max(1),
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        };
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 256];
        loop {
            let n = match port.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let arrived = Instant::now();
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= READ_REQUEST_LEN {
                let frame: Vec<u8> = buf.drain(..READ_REQUEST_LEN).collect();
                let (unit, function) = (frame[0], frame[1]);
                let crc = rtu::crc16(&frame[..6]).to_le_bytes();
                if crc != [frame[6], frame[7]] {
                    buf.clear();
                    break;
                }
                if unit == 0 || unit > units || !matches!(function, 3 | 4) {
                    continue;
                }
                let start = u16::from_be_bytes([frame[2], frame[3]]);
                let count = u16::from_be_bytes([frame[4], frame[5]]);
                let mut answer = vec![unit, function, (count * 2) as u8];
                for a in start..start.saturating_add(count) {
                    answer.extend(a.to_be_bytes());
                }
                answer.extend(rtu::crc16(&answer).to_le_bytes());
                if baud > 0 {
                    let on_wire = framing.wire_time(READ_REQUEST_LEN)
                        + framing.frame_gap()
                        + framing.wire_time(answer.len());
                    until(arrived + on_wire);
                }
                if port.write_all(&answer).is_err() {
                    return;
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sleeps until `deadline`, spinning its last millisecond.
    fn until(deadline: Instant) {
        let spin = Duration::from_millis(1);
        let now = Instant::now();
        if deadline > now + spin {
            std::thread::sleep(deadline - now - spin);
        }
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
    }
}
