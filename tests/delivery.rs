//! Store-and-forward delivery through a real mosquitto: every accepted event
//! reaches the subscriber, whatever the broker does in between.

mod support;

use sluice::Runtime;
use std::time::Duration;
use support::{
    Broker, Collector, absent_broker_with_subscriber, commit, config, default_uplink_config,
    reading, wait_until,
};

/// Submits `count` events spread over `devices`, in submissions of `chunk`,
/// waits until durable, and returns the ids the receipts gave.
async fn submit(runtime: &Runtime, devices: &[&str], count: u64, chunk: usize) -> Vec<String> {
    let ingest = runtime.ingest();
    let mut receipts = Vec::new();
    let events: Vec<_> = (0..count)
        .map(|n| reading(devices[n as usize % devices.len()], n))
        .collect();
    for part in events.chunks(chunk) {
        receipts.push(ingest.submit(part.to_vec()).await.expect("queue open"));
    }
    let mut ids = Vec::new();
    for r in receipts {
        ids.extend(
            r.durable()
                .await
                .expect("accepted")
                .iter()
                .map(|id| id.to_string()),
        );
    }
    ids
}

/// Per device, the first copies arrived in submission order.
fn assert_in_order_per_device(arrivals: &[(String, u64)]) {
    let mut last: std::collections::HashMap<&str, u64> = Default::default();
    for (device, n) in arrivals {
        if let Some(prev) = last.insert(device, *n) {
            assert!(
                *n > prev,
                "device {device}: reading {n} arrived after {prev}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_exactly_once_in_order_per_device() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        broker.port,
        "batch_max_records = 100",
        "",
    ))
    .await
    .expect("start");

    let ids = submit(&runtime, &["a", "b", "c"], 3_000, 7).await;
    wait_until(
        Duration::from_secs(30),
        "3000 records at the subscriber",
        || collector.unique() == 3_000,
    )
    .await;

    let metrics = runtime.metrics();
    wait_until(
        Duration::from_secs(10),
        "every record acknowledged and deleted",
        || metrics.snapshot().queue_records == 0,
    )
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    assert_eq!(
        r.duplicates(),
        0,
        "nothing failed, so nothing may arrive twice"
    );
    assert_in_order_per_device(&r.arrivals);
    // The id a producer got on submit is the record id upstream: one reading can be traced end to end.
    let mut upstream: Vec<&String> = r.copies.keys().collect();
    upstream.sort();
    let mut submitted: Vec<&String> = ids.iter().collect();
    submitted.sort();
    assert_eq!(upstream, submitted);
    let m = metrics.snapshot();
    assert_eq!(m.queue_accepted, 3_000);
    assert_eq!(m.uplink_records_acked, 3_000);
    assert!(
        r.batches >= 30,
        "batches of at most 100 records, got {}",
        r.batches
    );
    assert_eq!(
        r.status.as_ref().map(|s| s["state"].clone()),
        Some("offline".into()),
        "clean shutdown says offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_while_the_broker_is_absent_are_delivered_when_it_starts() {
    // The subscriber's persistent session exists before the outage, as the cloud's would.
    let mut broker = absent_broker_with_subscriber().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(dir.path(), broker.port, "", ""))
        .await
        .expect("start");
    submit(&runtime, &["a", "b"], 10_000, 50).await;
    let metrics = runtime.metrics();
    assert_eq!(
        metrics.snapshot().queue_records,
        10_000,
        "all held in the queue"
    );
    assert!(
        metrics.snapshot().uplink_connection_errors >= 1,
        "the broker really was absent"
    );

    broker.resume();
    let collector = Collector::start(broker.port).await;
    wait_until(
        Duration::from_secs(60),
        "10000 records at the subscriber",
        || collector.unique() == 10_000,
    )
    .await;
    wait_until(Duration::from_secs(10), "queue drained", || {
        metrics.snapshot().queue_records == 0
    })
    .await;
    runtime.shutdown().await;
    assert_in_order_per_device(&collector.received.lock().expect("lock").arrivals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_loses_nothing() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        broker.port,
        "batch_max_records = 50\nmax_inflight = 20",
        "",
    ))
    .await
    .expect("start");
    let metrics = runtime.metrics();

    // Stream steadily, freeze the broker in the middle, thaw it, keep streaming.
    let ingest = runtime.ingest();
    let producer = tokio::spawn(async move {
        // A steady stream: 50 events every 40 ms.
        let mut pace = tokio::time::interval(Duration::from_millis(40));
        for chunk in 0..100u64 {
            pace.tick().await;
            let events = (0..50).map(|i| reading("dev", chunk * 50 + i)).collect();
            commit(&ingest, events).await.expect("accepted");
        }
    });
    wait_until(Duration::from_secs(20), "streaming under way", || {
        collector.unique() >= 1_000
    })
    .await;
    broker.freeze();
    let errors_before = metrics.snapshot().uplink_connection_errors;
    wait_until(
        Duration::from_secs(20),
        "the gateway noticing the frozen broker",
        || metrics.snapshot().uplink_connection_errors > errors_before,
    )
    .await;
    broker.thaw();
    producer.await.expect("producer");
    wait_until(Duration::from_secs(60), "all 5000 records", || {
        collector.unique() == 5_000
    })
    .await;
    wait_until(Duration::from_secs(10), "queue drained", || {
        metrics.snapshot().queue_records == 0
    })
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    assert_in_order_per_device(&r.arrivals);
    eprintln!(
        "frozen broker: {} duplicates, {} batches resent",
        r.duplicates(),
        metrics.snapshot().uplink_batches_resent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_loses_nothing() {
    let mut broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(config(
        dir.path(),
        broker.port,
        "batch_max_records = 50\nmax_inflight = 20",
        "",
    ))
    .await
    .expect("start");
    let metrics = runtime.metrics();

    let ingest = runtime.ingest();
    let producer = tokio::spawn(async move {
        // A steady stream: 50 events every 40 ms.
        let mut pace = tokio::time::interval(Duration::from_millis(40));
        for chunk in 0..100u64 {
            pace.tick().await;
            let events = (0..50).map(|i| reading("dev", chunk * 50 + i)).collect();
            commit(&ingest, events).await.expect("accepted");
        }
    });
    wait_until(Duration::from_secs(20), "streaming under way", || {
        collector.unique() >= 1_000
    })
    .await;
    let connects = metrics.snapshot().uplink_connects;
    broker.stop();
    broker.resume();
    wait_until(Duration::from_secs(20), "the gateway reconnecting", || {
        metrics.snapshot().uplink_connects > connects
    })
    .await;
    producer.await.expect("producer");
    wait_until(Duration::from_secs(60), "all 5000 records", || {
        collector.unique() == 5_000
    })
    .await;
    wait_until(Duration::from_secs(10), "queue drained", || {
        metrics.snapshot().queue_records == 0
    })
    .await;
    runtime.shutdown().await;
    assert_in_order_per_device(&collector.received.lock().expect("lock").arrivals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_longer_than_reconnect_max_readings_flow_within_reconnect_max() {
    let mut broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = default_uplink_config(
        dir.path(),
        broker.port,
        "reconnect_min = \"200 ms\"\nreconnect_max = \"2 s\"",
    );
    let reconnect_max = config.uplink.reconnect_max.get();
    let runtime = Runtime::start(config).await.expect("start");
    let metrics = runtime.metrics();
    let ingest = runtime.ingest();
    commit(&ingest, vec![reading("dev", 0)])
        .await
        .expect("accepted");
    wait_until(
        Duration::from_secs(10),
        "the first reading upstream",
        || collector.unique() == 1,
    )
    .await;

    broker.stop();
    // 0.2, 0.4, 0.8, 1.6, then 2 s: six failures put the back-off at its cap.
    let errors = metrics.snapshot().uplink_connection_errors;
    wait_until(
        Duration::from_secs(30),
        "the back-off reaching reconnect_max",
        || metrics.snapshot().uplink_connection_errors >= errors + 6,
    )
    .await;
    commit(&ingest, vec![reading("dev", 1)])
        .await
        .expect("accepted");
    broker.resume();
    let back = std::time::Instant::now();
    // The documented bound is reconnect_max plus the connection attempt; the
    // rest is slack for a loaded machine.
    wait_until(
        reconnect_max + Duration::from_secs(4),
        "the fresh reading upstream",
        || collector.unique() == 2,
    )
    .await;
    eprintln!(
        "fresh reading upstream {:?} after the broker came back (reconnect_max {reconnect_max:?})",
        back.elapsed()
    );
    runtime.shutdown().await;
}
