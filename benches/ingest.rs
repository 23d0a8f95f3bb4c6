//! Durable ingest throughput with group commit.
//!
//! `cargo bench --bench ingest` prints markdown tables:
//!
//! 1. Sluice: N producer tasks each submit small `Vec<Event>`s and await
//!    durability every time, in both durability modes. The uplink points at a
//!    closed port, so nothing drains while we measure.
//! 2. Baseline: raw rusqlite inserting the same encoded blobs into the same
//!    table (same schema, WAL, same `synchronous`) in batched transactions on
//!    one thread: the upper bound for the queue writer.
//!
//! Disk traffic comes from `/proc/self/io`: `write_bytes` is what the process
//! caused to be written to the block layer (pages dirtied or written back),
//! `wchar` what it passed to write(2)/pwrite(2).
//!
//! Environment knobs: `SLUICE_BENCH_SECS` (seconds per scenario, default 3),
//! `SLUICE_BENCH_DIR` (where the databases go, default `/var/tmp`; must be
//! the real disk, not tmpfs), `SLUICE_BENCH_FILTER` (only scenarios whose label
//! contains it, e.g. `power`).

use sluice::config::Config;
use sluice_event::{Event, EventId, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upper bound on submissions per producer, so every loop is bounded even on a
/// machine much faster than expected; the time budget normally ends it first.
const MAX_SUBMISSIONS_PER_PRODUCER: u64 = 20_000_000;

fn main() {
    let secs: f64 = env_or("SLUICE_BENCH_SECS", 3.0);
    let run_for = Duration::from_secs_f64(secs);
    let base =
        PathBuf::from(std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let filter = std::env::var("SLUICE_BENCH_FILTER").unwrap_or_default();
    let fs = filesystem_of(&base);
    println!("# Ingest benchmark\n");
    println!(
        "databases under `{}` (filesystem `{fs}`), {secs} s per scenario, tokio multi-thread runtime with 2 workers (as `sluice run`)\n",
        base.display()
    );
    if fs == "tmpfs" || fs == "ramfs" {
        println!("**warning: the database directory is on {fs}; disk numbers are meaningless**\n");
    }
    let sample = sample_event();
    let encoded = sample.encode().len();
    println!("encoded event size (`Event::encode().len()`): {encoded} B\n");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let scenarios: Vec<(&str, usize, usize)> = ["process", "power"]
        .into_iter()
        .flat_map(|mode| {
            [(1, 1), (4, 1), (64, 1), (64, 16)]
                .into_iter()
                .map(move |(p, s)| (mode, p, s))
        })
        .collect();

    println!("## Sluice: `Ingest::submit` + `Receipt::durable`, group commit\n");
    println!(
        "| durability | producers | events/submit | events | s | events/s | commits | events/commit | p50 ms | p99 ms | writer thread busy | process CPU cores | disk write B/event | wchar B/event | disk B / encoded B |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (mode, producers, per_submit) in scenarios {
        let label = format!("sluice {mode} {producers}x{per_submit}");
        if !label.contains(&filter) {
            continue;
        }
        let dir = tempfile::tempdir_in(&base).expect("tempdir for the queue");
        settle();
        let r = rt.block_on(sluice_run(dir.path(), mode, producers, per_submit, run_for));
        println!(
            "| {mode} | {producers} | {per_submit} | {} | {:.2} | **{:.0}** | {} | {:.1} | {:.2} | {:.2} | {:.0}% | {:.2} | {:.0} | {:.0} | {:.1} |",
            r.events,
            r.secs,
            r.events as f64 / r.secs,
            r.commits,
            r.events as f64 / r.commits.max(1) as f64,
            r.p50_ms,
            r.p99_ms,
            r.writer_cpu_s / r.secs * 100.0,
            r.process_cpu_s / r.secs,
            r.io.write_bytes as f64 / r.events.max(1) as f64,
            r.io.wchar as f64 / r.events.max(1) as f64,
            r.io.write_bytes as f64 / r.events.max(1) as f64 / encoded as f64,
        );
    }

    println!(
        "\n## Baseline: raw rusqlite, same schema and pragmas, one thread, pre-encoded blobs\n"
    );
    println!(
        "| durability | rows/transaction | events | s | events/s | transactions | disk write B/event | wchar B/event | disk B / encoded B |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mode in ["process", "power"] {
        for batch in [1usize, 64, 1024] {
            let label = format!("raw {mode} {batch}");
            if !label.contains(&filter) {
                continue;
            }
            let dir = tempfile::tempdir_in(&base).expect("tempdir for the baseline");
            settle();
            let r = raw_run(dir.path(), mode, batch, Raw::SAME, run_for.mul_f64(0.7));
            println!(
                "| {mode} | {batch} | {} | {:.2} | **{:.0}** | {} | {:.0} | {:.0} | {:.1} |",
                r.events,
                r.secs,
                r.events as f64 / r.secs,
                r.commits,
                r.io.write_bytes as f64 / r.events.max(1) as f64,
                r.io.wchar as f64 / r.events.max(1) as f64,
                r.io.write_bytes as f64 / r.events.max(1) as f64 / encoded as f64,
            );
        }
    }

    println!(
        "\n## Ablations: raw rusqlite, process durability, 64 rows/transaction (what the writer could gain)\n"
    );
    println!("| variant | events | s | events/s | disk write B/event |");
    println!("|---|---:|---:|---:|---:|");
    let ablations = [
        (
            "as baseline: AUTOINCREMENT schema, one INSERT per row, pre-encoded",
            Raw::SAME,
        ),
        (
            "+ build, encode (`Event::encode`) and drop each event in the loop",
            Raw {
                encode_in_loop: true,
                ..Raw::SAME
            },
        ),
        (
            "`INTEGER PRIMARY KEY` without AUTOINCREMENT",
            Raw {
                autoincrement: false,
                ..Raw::SAME
            },
        ),
        (
            "one multi-row INSERT per transaction",
            Raw {
                multi_row: true,
                ..Raw::SAME
            },
        ),
        (
            "no AUTOINCREMENT + multi-row INSERT",
            Raw {
                autoincrement: false,
                multi_row: true,
                ..Raw::SAME
            },
        ),
    ];
    for (label, variant) in ablations {
        if !format!("ablation {label}").contains(&filter) {
            continue;
        }
        let dir = tempfile::tempdir_in(&base).expect("tempdir for the ablation");
        settle();
        let r = raw_run(dir.path(), "process", 64, variant, run_for.mul_f64(0.7));
        println!(
            "| {label} | {} | {:.2} | **{:.0}** | {:.0} |",
            r.events,
            r.secs,
            r.events as f64 / r.secs,
            r.io.write_bytes as f64 / r.events.max(1) as f64,
        );
    }
    println!(
        "\ngoals (64 producers, 1 event/submit): process >= 300000 events/s, power >= 100000 events/s"
    );
}

/// Flushes what earlier scenarios (or anything else) left dirty, so that one
/// scenario's write-back does not slow the next one's fsyncs.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

struct RunResult {
    events: u64,
    secs: f64,
    commits: u64,
    writer_cpu_s: f64,
    process_cpu_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    io: Io,
}

/// An event as a CoAP adapter would produce it: a subject, a device, one
/// reading and one metadata entry.
fn event(device: &str, n: u64) -> Event {
    Event::new(
        format!("coap/{device}"),
        device,
        1_764_000_000_000 + n as i64,
    )
    .with_number("temperature", 21.5 + (n % 10) as f64 / 10.0, "Cel")
    .with_meta("rssi", Value::Number(-87.0))
}

/// The sample as stored: with an id assigned, like the writer sees it.
fn sample_event() -> Event {
    let mut e = event("dev-12", 123_456);
    e.id = EventId::new(3, 123_456);
    e
}

fn config(dir: &Path, mode: &str) -> Config {
    let text = format!(
        r##"
[gateway]
id = "bench"
data_dir = "{dir}"

[queue]
durability = "{mode}"

# Bounds far above what a run writes, so no overflow policy interferes.
[[queue.streams]]
name = "telemetry"
subjects = ["#"]
max_records = 100000000
max_bytes = "64 GiB"

[uplink]
url = "mqtt://127.0.0.1:{port}"
reconnect_min = "1 s"
reconnect_max = "60 s"
"##,
        dir = dir.display(),
        port = closed_port(),
    );
    Config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("bench config is invalid:\n{e}"))
}

async fn sluice_run(
    dir: &Path,
    mode: &str,
    producers: usize,
    per_submit: usize,
    run_for: Duration,
) -> RunResult {
    let runtime = sluice::Runtime::start(config(dir, mode))
        .await
        .expect("runtime starts");
    let metrics = runtime.metrics();
    let before = metrics.snapshot();
    let io_before = Io::read();
    let writer_before = thread_cpu_s("queue-writer");
    let cpu_before = process_cpu_s();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::with_capacity(producers);
    for p in 0..producers {
        let ingest = runtime.ingest();
        tasks.push(tokio::spawn(async move {
            let device = format!("dev-{p}");
            let mut latencies_us: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut events = 0u64;
            for i in 0..MAX_SUBMISSIONS_PER_PRODUCER {
                if Instant::now() >= deadline {
                    break;
                }
                let batch: Vec<Event> = (0..per_submit as u64)
                    .map(|k| event(&device, i * per_submit as u64 + k))
                    .collect();
                let t = Instant::now();
                let receipt = ingest.submit(batch).await.expect("queue is open");
                receipt.durable().await.expect("events accepted");
                latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                events += per_submit as u64;
            }
            (events, latencies_us)
        }));
    }
    let mut events = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("producer task");
        events += n;
        latencies.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    let io = Io::read().since(&io_before);
    let writer_cpu_s = thread_cpu_s("queue-writer") - writer_before;
    let process_cpu_s = process_cpu_s() - cpu_before;
    let after = metrics.snapshot();
    runtime.shutdown().await;
    assert_eq!(
        after.queue_accepted - before.queue_accepted,
        events,
        "every awaited receipt is counted as accepted"
    );
    latencies.sort_unstable();
    RunResult {
        events,
        secs,
        commits: after.queue_commits - before.queue_commits,
        writer_cpu_s,
        process_cpu_s,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        io,
    }
}

fn percentile(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

/// The queue's first `records` table (before the writer handed out `seq` itself), kept as the baseline.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    expires_ms  INTEGER,
    size        INTEGER NOT NULL,
    event       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_drain ON records (priority, seq);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_ms) WHERE expires_ms IS NOT NULL;
";

/// How the raw baseline differs from what the queue writer does.
#[derive(Clone, Copy)]
struct Raw {
    /// `seq INTEGER PRIMARY KEY AUTOINCREMENT` as in the queue's first schema (else plain rowid).
    autoincrement: bool,
    /// One `INSERT … VALUES (…), (…), …` per transaction instead of one per row.
    multi_row: bool,
    /// Build, encode and drop an `Event` per row, as the writer encodes and drops them.
    encode_in_loop: bool,
}

impl Raw {
    const SAME: Raw = Raw {
        autoincrement: true,
        multi_row: false,
        encode_in_loop: false,
    };
}

fn raw_run(dir: &Path, mode: &str, batch: usize, variant: Raw, run_for: Duration) -> RunResult {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).expect("open raw db");
    let wal: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert!(wal.eq_ignore_ascii_case("wal"));
    let sync = if mode == "power" { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-2048;"
    ))
    .expect("pragmas");
    let schema = if variant.autoincrement {
        SCHEMA.to_owned()
    } else {
        SCHEMA.replace(" AUTOINCREMENT", "")
    };
    conn.execute_batch(&schema).expect("schema");
    let single = "INSERT INTO records (stream, priority, enqueued_ms, expires_ms, size, event)
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    let multi = format!(
        "INSERT INTO records (stream, priority, enqueued_ms, expires_ms, size, event) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?)"; batch].join(", ")
    );
    // A pool of distinct encoded events, cycled through.
    let blobs: Vec<Vec<u8>> = (0..1024u64)
        .map(|n| {
            let mut e = event(&format!("dev-{}", n % 64), n);
            e.id = EventId::new(3, n + 1);
            e.encode()
        })
        .collect();
    let io_before = Io::read();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut events = 0u64;
    let mut commits = 0u64;
    let mut conn = conn;
    for _ in 0..MAX_SUBMISSIONS_PER_PRODUCER {
        if Instant::now() >= deadline {
            break;
        }
        let now = sluice::clock::now_ms();
        let tx = conn.transaction().expect("begin");
        if variant.multi_row {
            let mut stmt = tx.prepare_cached(&multi).expect("prepare");
            for k in 0..batch {
                let blob = &blobs[(events as usize + k) % blobs.len()];
                let at = k * 6;
                stmt.raw_bind_parameter(at + 1, 1i64).expect("bind");
                stmt.raw_bind_parameter(at + 2, 100i64).expect("bind");
                stmt.raw_bind_parameter(at + 3, now).expect("bind");
                stmt.raw_bind_parameter(at + 4, Option::<i64>::None)
                    .expect("bind");
                stmt.raw_bind_parameter(at + 5, blob.len() as i64)
                    .expect("bind");
                stmt.raw_bind_parameter(at + 6, blob).expect("bind");
            }
            stmt.raw_execute().expect("insert");
        } else {
            let mut stmt = tx.prepare_cached(single).expect("prepare");
            for k in 0..batch {
                let n = events + k as u64;
                let owned;
                let blob = if variant.encode_in_loop {
                    let mut e = event(&format!("dev-{}", n % 64), n);
                    e.id = EventId::new(3, n + 1);
                    owned = e.encode();
                    drop(e);
                    &owned
                } else {
                    &blobs[n as usize % blobs.len()]
                };
                stmt.execute(rusqlite::params![
                    1i64,
                    100i64,
                    now,
                    Option::<i64>::None,
                    blob.len() as i64,
                    blob
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
        events += batch as u64;
        commits += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let io = Io::read().since(&io_before);
    RunResult {
        events,
        secs,
        commits,
        writer_cpu_s: 0.0,
        process_cpu_s: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        io,
    }
}

/// The process's I/O counters (all threads).
#[derive(Clone, Copy, Default)]
struct Io {
    wchar: u64,
    write_bytes: u64,
}

impl Io {
    fn read() -> Io {
        let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Io {
            wchar: field("wchar:"),
            write_bytes: field("write_bytes:"),
        }
    }

    fn since(&self, before: &Io) -> Io {
        Io {
            wchar: self.wchar.saturating_sub(before.wchar),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
        }
    }
}

/// CPU time (run time from schedstat) of this process's thread called `name`.
fn thread_cpu_s(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

/// utime + stime of the whole process, in seconds (assumes USER_HZ = 100, as on Linux x86 and ARM).
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // fields[0] is field 3 (state): utime (14) is fields[11], stime (15) fields[12].
    (ticks(11) + ticks(12)) / 100.0
}

/// A loopback port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// The filesystem type of the mount that holds `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, point, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then(|| (point.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
