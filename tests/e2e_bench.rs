//! Smoke tests of the end-to-end benchmark (`sluice-loadgen e2e`, BENCHMARKS.md
//! "End to end"): half a second of each scenario with small numbers against the
//! debug `sluice` binary, mosquitto and the subscriber, each in its own
//! process; every reading must arrive upstream exactly once. Once with CoAP
//! through `scale`, once with LoRaWAN uplinks over GWMP through `cayenne-lpp`. This test binary
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
        println!("gwmp_smoke: test");
        return ExitCode::SUCCESS;
    }
    // `cargo test --test e2e_bench gwmp` runs only the tests whose names hold `gwmp`.
    let filters: Vec<String> = args[1..]
        .iter()
        .filter_map(|a| a.to_str())
        .filter(|a| !a.starts_with('-'))
        .map(str::to_owned)
        .collect();
    let tests: [(&str, fn()); 2] = [("e2e_smoke", e2e_smoke), ("gwmp_smoke", gwmp_smoke)];
    for (name, test) in tests {
        if filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())) {
            test();
            println!("test {name} ... ok");
        }
    }
    ExitCode::SUCCESS
}

fn options(scenarios: &[&str], devices: usize, baselines: bool) -> Options {
    let dist = support::functions::dist();
    Options {
        sluice: PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        loadgen: std::env::current_exe().expect("this test's path"),
        scale: dist.join("scale.wasm"),
        cayenne_lpp: dist.join("cayenne-lpp.wasm"),
        functions: sluice_loadgen::e2e::Functions::Scale,
        dir: std::env::temp_dir(),
        seconds: 0.5,
        devices,
        scenarios: scenarios
            .iter()
            .map(|s| Scenario::parse(s).expect("scenario"))
            .collect(),
        baselines,
        keep: false,
    }
}

/// Half a second each of LoRaWAN uplinks from 5 ABP devices at two rates
/// (each scenario its own devices, so fresh sessions): every uplink
/// acknowledged (PUSH_ACK, receipt only) and, what matters, its decoded
/// reading upstream exactly once, found by (DevEUI, sequence number). The
/// rates stay well below what the debug binary sustains.
fn gwmp_smoke() {
    let opts = options(&["gwmp:open:100", "gwmp:open:200"], 5, false);
    let report = sluice_loadgen::e2e::run(&opts).expect("the benchmark runs");
    assert_eq!(report.scenarios.len(), 2);
    every_reading_once(&report, "every PUSH_DATA answered PUSH_ACK once");
    for o in &report.scenarios {
        assert!(o.e2e.p50_us > 0, "{}: latency measured", o.label);
    }
}

/// Every scenario of `report`: each request answered once (`answered` says
/// how), each reading upstream exactly once, CPU and memory measured.
fn every_reading_once(report: &sluice_loadgen::e2e::Report, answered: &str) {
    for o in &report.scenarios {
        let l = &o.load;
        assert!(l.sent > 0, "{}: nothing sent", o.label);
        assert_eq!(
            (l.acked, l.refused_total(), l.timed_out, l.stray),
            (l.sent, 0, 0, 0),
            "{}: {answered}",
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
}

fn e2e_smoke() {
    let opts = options(&["con:closed:8", "non:closed:8", "con:open:200"], 20, true);
    let report = sluice_loadgen::e2e::run(&opts).expect("the benchmark runs");
    assert_eq!(report.scenarios.len(), 3);
    every_reading_once(&report, "every request answered 2.04 once");
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
