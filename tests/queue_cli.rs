//! `sluice queue stats|peek`, and drain order by priority.

mod support;

use sluice::Runtime;
use std::process::Command;
use std::time::Duration;
use support::{
    Collector, absent_broker_with_subscriber, commit, config, config_text, prefill, reading,
    wait_until,
};

fn sluice(args: &[&str], config: &std::path::Path) -> String {
    let out = Command::new(support::process::binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_peek_show_the_queue_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    prefill(dir.path(), 25, "").await;
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config_text(dir.path(), support::free_port(), "", "")).expect("write");

    let stats = sluice(&["queue", "stats"], &path);
    let row = stats
        .lines()
        .find(|l| l.starts_with("telemetry"))
        .expect("a telemetry row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "25", "records column in:\n{stats}");

    let peek = sluice(&["queue", "peek", "--limit", "3"], &path);
    let records: Vec<serde_json::Value> = peek
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    assert_eq!(records.len(), 3);
    let readings: Vec<f64> = records
        .iter()
        .map(|r| r["readings"][0]["value"].as_f64().unwrap_or(-1.0))
        .collect();
    assert_eq!(readings, [0.0, 1.0, 2.0], "oldest first");
    assert_eq!(records[0]["stream"], "telemetry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_streams_drain_first() {
    let mut broker = absent_broker_with_subscriber().await;
    let streams = r##"
[[queue.streams]]
name = "alerts"
subjects = ["fn/+/alert"]
priority = 0

[[queue.streams]]
name = "telemetry"
subjects = ["#"]
"##;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        broker.port,
        "batch_max_records = 100",
        streams,
    ))
    .await
    .expect("start");
    let ingest = runtime.ingest();
    let telemetry = (0..300).map(|n| reading("bulk", n)).collect();
    commit(&ingest, telemetry).await.expect("accepted");
    let alerts = (0..20)
        .map(|n| {
            let mut e = reading("hot", n);
            e.subject = "fn/threshold/alert".into();
            e
        })
        .collect();
    commit(&ingest, alerts).await.expect("accepted");

    broker.resume();
    let collector = Collector::start(broker.port).await;
    wait_until(Duration::from_secs(30), "all 320 records", || {
        collector.unique() == 320
    })
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    let first: Vec<&str> = r
        .records
        .iter()
        .take(20)
        .map(|rec| rec["stream"].as_str().unwrap_or(""))
        .collect();
    assert!(
        first.iter().all(|s| *s == "alerts"),
        "alerts first although queued last: {first:?}"
    );
}
