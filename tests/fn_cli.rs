//! `sluice fn test` and `sluice queue dead-letters`, run as a user runs them.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::wasm::{self, function_toml};
use support::{commit, config_text, free_port, reading};

fn sluice(args: &[&str]) -> Output {
    Command::new(support::process::binary())
        .args(args)
        .output()
        .expect("run sluice")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sluice fn test --module MODULE --events EVENTS`.
fn fn_test(module: &Path, events: &str) -> Output {
    sluice(&[
        "fn",
        "test",
        "--module",
        &module.display().to_string(),
        "--events",
        events,
    ])
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path.display().to_string()
}

const EVENTS: &str = r#"# two readings and a tick
{"subject": "coap/t1", "device": "t1", "readings": [{"name": "temperature", "value": 21.5, "unit": "Cel"}], "meta": {"rssi": -71}}

{"subject": "coap/t2", "device": "t2", "readings": [{"name": "temperature", "value": 19}], "raw": "0167ff"}
{"tick": 1764000000000}
"#;

#[test]
fn fn_test_prints_outputs_logs_fuel_and_state_per_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm::write(dir.path(), "count", wasm::COUNT);
    let events = write(dir.path(), "events.jsonl", EVENTS);
    let out = fn_test(&module, &events);
    let (stdout, stderr) = text(&out);
    // The module has no tick entry point, so the third call fails: exit 1.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let call = |n: usize| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("#{n} ")))
            .unwrap_or_else(|| panic!("no call #{n} in:\n{stdout}"))
    };
    assert!(
        call(1).contains("event coap/t1") && call(1).contains(": ok; fuel "),
        "{stdout}"
    );
    assert!(
        call(3).contains("tick 1764000000000: FAILED: no exported `sluice_on_tick`"),
        "{stdout}"
    );
    let emitted: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("emit "))
        .map(|j| serde_json::from_str(j).expect("emitted events are JSON"))
        .collect();
    assert_eq!(emitted.len(), 2);
    assert_eq!(emitted[0]["subject"], "fn/test/coap/t1");
    assert_eq!(
        emitted[0]["meta"]["rssi"],
        serde_json::json!({"type": "number", "value": -71.0})
    );
    assert_eq!(emitted[1]["raw"], "0167ff");
    assert!(
        stdout.contains("summary: 3 calls, 1 failed, 2 events emitted"),
        "{stdout}"
    );
    assert!(stdout.contains("fuel per call: mean "), "{stdout}");
    assert!(
        stdout.contains("\"n\" = 0x0200000000000000"),
        "the counter reached 2:\n{stdout}"
    );
}

#[test]
fn fn_test_takes_limits_and_settings_from_a_gateway_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spin = wasm::write(dir.path(), "spin", wasm::SPIN);
    let logs = wasm::write(dir.path(), "fail7", wasm::FAIL_7);
    let config = write(
        dir.path(),
        "gw.toml",
        &[
            function_toml("spinner", &spin, "\"coap/+\"", "fuel = 5000"),
            function_toml("failer", &logs, "\"coap/+\"", ""),
        ]
        .concat(),
    );
    let events = write(dir.path(), "events.jsonl", EVENTS);
    let spin_path = spin.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "fn", "test", "--module", &spin_path, "--events", &events, "--config", &config,
        ];
        args.extend_from_slice(extra);
        sluice(&args)
    };
    let out = run(&["--function", "spinner"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("function spinner (") && stdout.contains("fuel 5000 per call"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED: trap: out of fuel; fuel 5000,"),
        "{stdout}"
    );

    // The module path picks the function when --function is left out.
    let out = run(&[]);
    assert!(
        text(&out).0.contains("function spinner ("),
        "{:?}",
        text(&out)
    );

    let fail_path = logs.display().to_string();
    let out = sluice(&[
        "fn",
        "test",
        "--module",
        &fail_path,
        "--events",
        &events,
        "--config",
        &config,
        "--function",
        "failer",
    ]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("FAILED: returned 7") && stdout.contains("log warn: hello from wasm"),
        "{stdout}"
    );
}

#[test]
fn fn_test_names_the_bad_line_of_an_events_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm::write(dir.path(), "count", wasm::COUNT);
    let events = write(
        dir.path(),
        "events.jsonl",
        "{\"tick\": 1}\n{\"subject\": \"a\", \"readings\": [{\"name\": \"x\", \"value\": [1]}]}\n",
    );
    let out = fn_test(&module, &events);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("events.jsonl:2: reading `x`: must be a number"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_dead_letters_lists_what_functions_failed_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm::write(dir.path(), "fail7", wasm::FAIL_7);
    let text_config = config_text(
        dir.path(),
        free_port(),
        "",
        &function_toml("failer", &module, "\"coap/+\"", ""),
    );
    let path = write(dir.path(), "gw.toml", &text_config);
    let config = sluice::config::Config::load(Path::new(&path)).expect("valid");
    let runtime = sluice::Runtime::start(config).await.expect("start");
    let ids = commit(&runtime.ingest(), vec![reading("d", 1), reading("d", 2)])
        .await
        .expect("accepted");
    runtime.shutdown().await;

    let out = sluice(&["queue", "dead-letters", "--config", &path]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(row["function"], "failer");
        assert_eq!(row["error"], "returned 7");
        assert_eq!(row["event"]["id"], id.to_string());
        assert_eq!(row["event"]["subject"], "coap/d");
    }
}
