//! Function host costs: compile, start and warm-call time per standard
//! function, and durable ingest throughput with functions in the path against
//! the same pipeline without them, in the same run.
//!
//! Needs the standard functions built: `functions/build.sh`.
//!
//! `CARGO_TARGET_DIR=/tmp/sluice-bench cargo bench --bench functions`

use sluice::config::Config;
use sluice::functions::{Compiled, FunctionSet, Input, Program, engine};
use sluice::ids::IdMint;
use sluice::metrics::Metrics;
use sluice_event::{Event, EventId, LazyView, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dist = root.join("functions/dist");
    assert!(
        dist.join("scale.wasm").exists(),
        "build the standard functions first: functions/build.sh"
    );
    let secs: f64 = std::env::var("SLUICE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);

    println!("# Function host benchmark\n");
    println!("## Per function: compile, start, restart, warm call (medians)\n");
    println!(
        "Compile is `Module::new`. Start is a fresh instance plus `sluice_init` on a freshly compiled module: what the gateway pays once per function at start (with lazy translation this includes translating the code init runs). Restart is the same on a module that has run before: what the first call after a trap pays on top of a warm call. Columns marked *lazy* use wasmi's default lazy translation (the engine before issue 16), the others the gateway's engine. A warm call is one `sluice_on_event` on the kept instance, including copying the event in and stamping the outputs; median of 2001 calls.\n"
    );
    println!(
        "| function | input | .wasm B | compile µs lazy | compile µs | start µs lazy | start µs | restart µs | start fuel | warm call µs | fuel/call | outputs/call |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, settings, input, what) in cases() {
        let module = dist.join(format!("{name}.wasm"));
        let bytes = std::fs::metadata(&module).expect("module").len();
        let compile_lazy = median(21, || {
            let t = Instant::now();
            Program::compile(&lazy_engine(), &module).expect("compiles");
            t.elapsed()
        });
        let compile = median(21, || {
            let t = Instant::now();
            Program::compile(&engine(), &module).expect("compiles");
            t.elapsed()
        });
        let start_lazy = median(21, || {
            let mut set = set(&module, settings, lazy_engine());
            let r = set.warm_alone(0);
            r.outcome.expect("starts");
            r.elapsed
        });
        let mut start_fuel = 0;
        let start = median(21, || {
            let mut set = set(&module, settings, engine());
            let r = set.warm_alone(0);
            r.outcome.expect("starts");
            start_fuel = r.fuel;
            r.elapsed
        });
        let mut set = set(&module, settings, engine());
        set.warm_alone(0).outcome.expect("starts");
        let restart = median(201, || {
            let r = set.restart_alone(0);
            r.outcome.expect("restarts");
            r.elapsed
        });
        let bytes_in = input.encode();
        let cause = LazyView::parse(&bytes_in).expect("encoded event");
        let mut times = Vec::with_capacity(2001);
        let (mut fuel, mut outputs) = (0, 0);
        for _ in 0..2001 {
            let r = set.call_alone(0, Input::Event(&bytes_in), Some(&cause));
            r.outcome.expect("call succeeds");
            times.push(r.elapsed);
            fuel = r.fuel;
            outputs = r.emitted.len();
        }
        times.sort();
        println!(
            "| {name} | {what} | {bytes} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {start_fuel} | {:.2} | {fuel} | {outputs} |",
            us(compile_lazy),
            us(compile),
            us(start_lazy),
            us(start),
            us(restart),
            us(times[1000]),
        );
    }

    println!("\n## Durable ingest with functions in the path\n");
    println!(
        "{} producers × 1 event per submission, `process` durability, {secs} s per scenario, databases under `/var/tmp`, the uplink pointed at a closed port. Every scenario runs in this same process; the first is the baseline.\n",
        producers()
    );
    println!(
        "| pipeline | events in/s | records queued/s | function calls/s | writer thread busy | function thread busy |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scale = dist.join("scale.wasm");
    let threshold = dist.join("threshold.wasm");
    let deadband = dist.join("deadband.wasm");
    let scenarios: Vec<(&str, String)> = vec![
        ("no functions (baseline)", String::new()),
        (
            "scale (°C → °F), its output queued",
            function(
                &scale,
                "fahrenheit",
                "\"coap/+\"",
                "reading = \"temperature\"\nfactor = 1.8\noffset = 32\nunit = \"degF\"",
            ),
        ),
        (
            "scale → threshold + deadband, only their outputs queued",
            format!(
                "[pipeline]\nforward = \"none\"\n{}{}{}",
                function(
                    &scale,
                    "fahrenheit",
                    "\"coap/+\"",
                    "reading = \"temperature\"\nfactor = 1.8\noffset = 32\nunit = \"degF\""
                ),
                function(
                    &threshold,
                    "threshold",
                    "\"fn/fahrenheit/#\"",
                    "reading = \"temperature\"\nhigh = 86\nlow = 80"
                ),
                function(&deadband, "deadband", "\"fn/fahrenheit/#\"", "delta = 0.5"),
            ),
        ),
    ];
    for (label, extra) in scenarios {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let _ = std::process::Command::new("sync").status();
        let r = rt.block_on(run(dir.path(), &extra, Duration::from_secs_f64(secs)));
        println!(
            "| {label} | **{:.0}** | {:.0} | {:.0} | {:.0}% | {:.0}% |",
            r.events as f64 / r.secs,
            r.queued as f64 / r.secs,
            r.calls as f64 / r.secs,
            r.writer_cpu_s / r.secs * 100.0,
            r.functions_cpu_s / r.secs * 100.0
        );
    }
}

/// (function, settings, input event, description of the input).
fn cases() -> Vec<(&'static str, &'static str, Event, &'static str)> {
    let coap = sample("coap/t1", "t1")
        .with_number("temperature", 21.5, "Cel")
        .with_number("humidity", 40.0, "%RH");
    let mut lpp = sample("lorawan/0004a30b001c0530/up", "0004a30b001c0530");
    lpp.raw = Some(vec![0x03, 0x67, 0x01, 0x10, 0x05, 0x67, 0x00, 0xff]);
    vec![
        (
            "scale",
            "reading = \"temperature\"\nfactor = 1.8\noffset = 32\nunit = \"degF\"",
            coap.clone(),
            "2 readings",
        ),
        (
            "threshold",
            "reading = \"temperature\"\nhigh = 30\nlow = 25",
            coap.clone(),
            "2 readings, no crossing",
        ),
        (
            "deadband",
            "delta = 0.5",
            coap.clone(),
            "2 readings, unchanged",
        ),
        ("window", "", coap.clone(), "2 readings, 1 device"),
        ("anomaly", "", coap, "2 readings, no anomaly"),
        ("cayenne-lpp", "", lpp, "8-byte LPP payload"),
    ]
}

fn sample(subject: &str, device: &str) -> Event {
    let mut e =
        Event::new(subject, device, 1_764_000_000_000).with_meta("rssi", Value::Number(-87.0));
    e.id = EventId::new(3, 1);
    e
}

/// An engine as the gateway's was before issue 16: fuel metering and
/// wasmi's default lazy translation.
fn lazy_engine() -> wasmi::Engine {
    let mut config = wasmi::Config::default();
    config.consume_fuel(true);
    config.compilation_mode(wasmi::CompilationMode::LazyTranslation);
    wasmi::Engine::new(&config)
}

fn set(module: &Path, settings: &str, engine: wasmi::Engine) -> FunctionSet {
    let text = format!(
        "[[functions]]\nname = \"f\"\nmodule = \"{}\"\nsubscribe = [\"x/#\"]\n[functions.config]\n{settings}\n",
        module.display()
    );
    let config = Config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    Compiled::with_engine(&config, engine)
        .expect("loads")
        .start(
            Arc::new(IdMint::new(1)),
            Arc::new(Metrics::default()),
            |_| Ok::<_, String>(BTreeMap::new()),
        )
        .expect("starts")
}

fn function(module: &Path, name: &str, subscribe: &str, settings: &str) -> String {
    format!(
        "[[functions]]\nname = \"{name}\"\nmodule = \"{}\"\nsubscribe = [{subscribe}]\n[functions.config]\n{settings}\n",
        module.display()
    )
}

struct Run {
    events: u64,
    queued: u64,
    calls: u64,
    secs: f64,
    writer_cpu_s: f64,
    /// Of the function thread (none before functions left the writer thread).
    functions_cpu_s: f64,
}

async fn run(dir: &Path, extra: &str, run_for: Duration) -> Run {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let text = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\nmax_records = 100000000\nmax_bytes = \"64 GiB\"\n[uplink]\nurl = \"mqtt://127.0.0.1:{port}\"\nreconnect_min = \"1 s\"\nreconnect_max = \"60 s\"\n{extra}",
        dir.display()
    );
    let config = Config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    let runtime = sluice::Runtime::start(config).await.expect("starts");
    let metrics = runtime.metrics();
    let before = metrics.snapshot();
    let writer_before = thread_cpu_s("queue-writer");
    let functions_before = thread_cpu_s("functions");
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for p in 0..producers() {
        let ingest = runtime.ingest();
        tasks.push(tokio::spawn(async move {
            let device = format!("dev-{p}");
            let mut n = 0u64;
            while Instant::now() < deadline && n < 10_000_000 {
                let e = Event::new(
                    format!("coap/{device}"),
                    device.as_str(),
                    1_764_000_000_000 + n as i64,
                )
                .with_number("temperature", 21.5 + (n % 100) as f64 / 10.0, "Cel")
                .with_meta("rssi", Value::Number(-87.0));
                let receipt = ingest.submit(vec![e]).await.expect("queue open");
                receipt.durable().await.expect("accepted");
                n += 1;
            }
            n
        }));
    }
    let mut events = 0;
    for t in tasks {
        events += t.await.expect("producer");
    }
    let secs = start.elapsed().as_secs_f64();
    let writer_cpu_s = thread_cpu_s("queue-writer") - writer_before;
    let functions_cpu_s = thread_cpu_s("functions") - functions_before;
    let after = metrics.snapshot();
    runtime.shutdown().await;
    assert_eq!(
        after.functions_failed, before.functions_failed,
        "no function failed"
    );
    Run {
        events,
        queued: after.queue_accepted - before.queue_accepted,
        calls: after.functions_calls - before.functions_calls,
        secs,
        writer_cpu_s,
        functions_cpu_s,
    }
}

/// CPU seconds of the thread called `name`, from schedstat.
fn thread_cpu_s(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

fn median(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort();
    v[n / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Producers in the ingest scenarios: `SLUICE_BENCH_PRODUCERS`, default 64.
fn producers() -> usize {
    std::env::var("SLUICE_BENCH_PRODUCERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}
