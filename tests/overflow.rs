//! Stream bounds under each overflow policy, and TTL expiry: the policy
//! holds, the counters say so, and everything else keeps working.

mod support;

use sluice::Runtime;
use sluice::ingest::IngestError;
use sluice::queue::inspect;
use std::time::Duration;
use support::{Collector, absent_broker_with_subscriber, commit, config, reading, wait_until};

/// A bounded `capped` stream for subjects `coap/capped`, plus the catch-all.
fn streams(policy: &str, max_records: u64, max_bytes: &str, ttl: &str) -> String {
    format!(
        r##"
[[queue.streams]]
name = "capped"
subjects = ["coap/capped"]
priority = 10
max_records = {max_records}
max_bytes = "{max_bytes}"
overflow = "{policy}"
{ttl}

[[queue.streams]]
name = "rest"
subjects = ["#"]
"##
    )
}

fn stream_stats(dir: &std::path::Path, name: &str) -> inspect::StreamStats {
    let stats = inspect::stats(&dir.join("queue.db")).expect("stats");
    stats
        .into_iter()
        .find(|s| s.name == name)
        .expect("stream present")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest_records_and_counts_the_rest() {
    let mut broker = absent_broker_with_subscriber().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        broker.port,
        "",
        &streams("drop_oldest", 1000, "1 MiB", ""),
    ))
    .await
    .expect("start");
    let ingest = runtime.ingest();
    for n in 0..1500 {
        commit(&ingest, vec![reading("capped", n)])
            .await
            .expect("never refused");
    }
    // Another stream is untouched by the capped one's overflow.
    commit(&ingest, vec![reading("other", 0)])
        .await
        .expect("accepted");
    let m = runtime.metrics().snapshot();
    assert_eq!(
        (m.queue_accepted, m.queue_dropped, m.queue_rejected),
        (1501, 500, 0)
    );
    assert_eq!(m.queue_records, 1001);
    let capped = stream_stats(dir.path(), "capped");
    assert_eq!((capped.records, capped.dropped), (1000, 500));

    broker.resume();
    let collector = Collector::start(broker.port).await;
    wait_until(Duration::from_secs(30), "the 1001 kept records", || {
        collector.unique() == 1001
    })
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    assert_eq!(
        r.readings_of("capped"),
        (500..1500).collect::<Vec<_>>(),
        "the oldest 500 were dropped, the newest 1000 kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_also_bounds_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        support::free_port(),
        "",
        &streams("drop_oldest", 1_000_000, "4 KiB", ""),
    ))
    .await
    .expect("start");
    let ingest = runtime.ingest();
    for n in 0..1000 {
        commit(&ingest, vec![reading("capped", n)])
            .await
            .expect("accepted");
    }
    runtime.shutdown().await;
    let capped = stream_stats(dir.path(), "capped");
    assert!(capped.bytes <= 4096, "{} bytes kept", capped.bytes);
    let size = capped.bytes / capped.records; // all records here encode to the same size
    assert!(
        capped.bytes + size > 4096,
        "no more dropped than needed: {} bytes kept",
        capped.bytes
    );
    assert_eq!(capped.records + capped.dropped, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_new_refuses_hands_back_and_recovers_after_draining() {
    let mut broker = absent_broker_with_subscriber().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        broker.port,
        "",
        &streams("reject_new", 1000, "1 MiB", ""),
    ))
    .await
    .expect("start");
    let ingest = runtime.ingest();
    let mut refused = 0;
    for n in 0..1500 {
        match commit(&ingest, vec![reading("capped", n)]).await {
            Ok(ids) => assert_eq!(ids.len(), 1),
            Err(rejected) => {
                assert!(
                    matches!(&rejected.error, IngestError::QueueFull { stream } if stream == "capped"),
                    "{:?}",
                    rejected.error
                );
                assert_eq!(rejected.events.len(), 1, "the refused event is handed back");
                assert_eq!(rejected.events[0].number("n"), Some(n as f64));
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 500);
    commit(&ingest, vec![reading("other", 0)])
        .await
        .expect("other streams still accept");
    let m = runtime.metrics().snapshot();
    assert_eq!(
        (m.queue_accepted, m.queue_rejected, m.queue_dropped),
        (1001, 500, 0)
    );
    assert_eq!(stream_stats(dir.path(), "capped").rejected, 500);

    broker.resume();
    let collector = Collector::start(broker.port).await;
    wait_until(Duration::from_secs(30), "the 1001 accepted records", || {
        collector.unique() == 1001
    })
    .await;
    let metrics = runtime.metrics();
    wait_until(Duration::from_secs(10), "queue drained", || {
        metrics.snapshot().queue_records == 0
    })
    .await;
    commit(&ingest, vec![reading("capped", 9999)])
        .await
        .expect("room again");
    // An idle uplink publishes it at once.
    wait_until(Duration::from_secs(10), "the record accepted again", || {
        collector.unique() == 1002
    })
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    assert_eq!(
        r.readings_of("capped"),
        (0..1000).chain([9999]).collect::<Vec<_>>(),
        "the first 1000 kept, the later ones refused, then room again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_their_ttl_expire_and_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        support::free_port(),
        "",
        &streams("drop_oldest", 1000, "1 MiB", "ttl = \"300 ms\""),
    ))
    .await
    .expect("start");
    let ingest = runtime.ingest();
    let events = (0..10).map(|n| reading("capped", n)).collect();
    commit(&ingest, events).await.expect("accepted");
    commit(&ingest, vec![reading("other", 0)])
        .await
        .expect("accepted");
    let metrics = runtime.metrics();
    wait_until(Duration::from_secs(10), "10 records expired", || {
        metrics.snapshot().queue_expired == 10
    })
    .await;
    assert_eq!(
        metrics.snapshot().queue_records,
        1,
        "the stream without TTL keeps its record"
    );
    runtime.shutdown().await;
    assert_eq!(stream_stats(dir.path(), "capped").expired, 10);
}
