//! Smoke test of the end-to-end benchmark (`sluice-loadgen e2e`, BENCHMARKS.md
//! "End to end"): half a second of each scenario with small numbers against the
//! debug `sluice` binary, mosquitto and the subscriber, each in its own
//! process; every reading must arrive upstream exactly once. This test binary
//! also stands in for `sluice-loadgen` (its children run it with a command),
//! because a test of the root package cannot name another package's binary.

mod support;

use sluice_loadgen::e2e::{Options, Scenario};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if sluice_loadgen::cli::is_command(&args) {
        return sluice_loadgen::cli::main(args);
    }
    if args.iter().any(|a| a == "--list") {
        println!("e2e_smoke: test");
        return ExitCode::SUCCESS;
    }
    e2e_smoke();
    println!("test e2e_smoke ... ok");
    ExitCode::SUCCESS
}

fn e2e_smoke() {
    let scenarios = ["con:closed:8", "non:closed:8", "con:open:200"]
        .iter()
        .map(|s| Scenario::parse(s).expect("scenario"))
        .collect();
    let opts = Options {
        sluice: PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        loadgen: std::env::current_exe().expect("this test's path"),
        scale: support::functions::dist().join("scale.wasm"),
        function: true,
        dir: std::env::temp_dir(),
        seconds: 0.5,
        devices: 20,
        scenarios,
        baselines: true,
    };
    let report = sluice_loadgen::e2e::run(&opts).expect("the benchmark runs");
    assert_eq!(report.scenarios.len(), 3);
    for o in &report.scenarios {
        let l = &o.load;
        assert!(l.sent > 0, "{}: nothing sent", o.label);
        assert_eq!(
            (l.acked, l.refused_total(), l.timed_out, l.stray),
            (l.sent, 0, 0, 0),
            "{}: every request answered 2.04 once",
            o.label
        );
        assert_eq!(
            (o.arrived, o.duplicates, o.gaps),
            (l.sent, 0, 0),
            "{}: every reading upstream exactly once",
            o.label
        );
        assert!(
            o.sluice_cpu_us > 0 && o.memory.rss_kb > 0,
            "{}: measured",
            o.label
        );
    }
    for (window, load, _) in &report.sink {
        assert_eq!(
            (load.acked, load.timed_out),
            (load.sent, 0),
            "sink, {window} in flight"
        );
    }
    let publish = report.publish.as_ref().expect("publish baseline");
    assert!(publish.publisher.acked > 0);
    assert_eq!(
        publish.delivered, publish.publisher.acked,
        "every baseline message delivered"
    );
}
