//! SIGKILL the real binary while it drains a large queue: after a restart
//! every record arrives, and duplicates stay within the batches that were in flight.

mod support;

use std::time::Duration;
use support::{Broker, Collector, Gateway, config_text, prefill, wait_until};

const RECORDS: u64 = 60_000;
const BATCH: u64 = 200;
const INFLIGHT: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_drain_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    prefill(dir.path(), RECORDS, "").await;

    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let uplink = format!("batch_max_records = {BATCH}\nmax_inflight = {INFLIGHT}");
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, &uplink, ""))
        .expect("write config");

    let mut gateway = Gateway::spawn(&config);
    wait_until(
        Duration::from_secs(60),
        "a first part of the queue drained",
        || collector.unique() >= 10_000,
    )
    .await;
    gateway.kill();
    let at_kill = collector.unique();
    let status = collector.received.clone();
    wait_until(
        Duration::from_secs(10),
        "the broker publishing the last will",
        || {
            let r = status.lock().expect("lock");
            r.status
                .as_ref()
                .is_some_and(|s| s["state"] == "offline" && s["reason"] == "connection lost")
        },
    )
    .await;
    assert!(
        (at_kill as u64) < RECORDS,
        "the kill must land mid-drain (got {at_kill} of {RECORDS} already)"
    );

    let mut gateway = Gateway::spawn(&config);
    wait_until(
        Duration::from_secs(120),
        "every record after the restart",
        || collector.unique() as u64 == RECORDS,
    )
    .await;
    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    assert_eq!(gateway.log_count("Stopped cleanly"), 1);

    let received = collector.received.lock().expect("lock");
    let duplicates = received.duplicates();
    eprintln!("killed at {at_kill} of {RECORDS} records; {duplicates} duplicates after restart");
    // Records in flight (published, not yet deleted) when the process died are sent again.
    assert!(
        duplicates <= 2 * INFLIGHT * BATCH,
        "{duplicates} duplicates: more than the in-flight window of {INFLIGHT} batches of {BATCH} (plus acked, not yet deleted)"
    );
    let mut last = None;
    for (_, n) in &received.arrivals {
        assert!(
            last.is_none_or(|l| *n > l),
            "reading {n} arrived after {last:?}"
        );
        last = Some(*n);
    }
}
