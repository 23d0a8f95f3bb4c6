//! Adaptive batching through a real mosquitto: an idle uplink publishes each
//! reading at once, batches fill under load, and a broker that stops
//! acknowledging holds the uplink at `max_inflight` batches without losing
//! anything.

mod support;

use sluice::Runtime;
use sluice::metrics::Metrics;
use std::time::{Duration, Instant};
use support::{Broker, Collector, commit, default_uplink_config, reading, wait_until};

/// Batches handed to the client and neither acknowledged nor given up with a
/// lost connection.
fn in_flight(metrics: &Metrics) -> u64 {
    let m = metrics.snapshot();
    m.uplink_batches_sent - m.uplink_batches_acked - m.uplink_batches_resent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_at_a_low_rate_go_out_alone_and_at_once_with_the_default_config() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = default_uplink_config(dir.path(), broker.port, "");
    let linger = config.uplink.linger.get();
    let runtime = Runtime::start(config).await.expect("start");
    let metrics = runtime.metrics();
    wait_until(Duration::from_secs(10), "the uplink connected", || {
        metrics.snapshot().uplink_connects >= 1
    })
    .await;

    let ingest = runtime.ingest();
    let mut slowest = Duration::ZERO;
    const READINGS: u64 = 20;
    for n in 0..READINGS {
        commit(&ingest, vec![reading("dev", n)])
            .await
            .expect("accepted");
        let durable = Instant::now();
        wait_until(Duration::from_secs(10), "the reading upstream", || {
            collector.unique() as u64 == n + 1
        })
        .await;
        slowest = slowest.max(durable.elapsed());
    }
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    eprintln!("low rate: slowest reading upstream {slowest:?} after it was durable");
    assert_eq!(r.batches, READINGS, "each reading in a batch of its own");
    assert!(
        slowest < linger * 3 / 4,
        "an idle uplink must not wait for linger ({linger:?}); slowest took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_batches_fill() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::start(default_uplink_config(dir.path(), broker.port, ""))
        .await
        .expect("start");
    let metrics = runtime.metrics();

    // Eight producers, each committing 40 submissions of 50 readings as fast as it can.
    const PRODUCERS: u64 = 8;
    const TOTAL: u64 = PRODUCERS * 40 * 50;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let ingest = runtime.ingest();
        producers.push(tokio::spawn(async move {
            let device = format!("dev-{p}");
            for chunk in 0..40u64 {
                let events = (0..50).map(|i| reading(&device, chunk * 50 + i)).collect();
                commit(&ingest, events).await.expect("accepted");
            }
        }));
    }
    for p in producers {
        p.await.expect("producer");
    }
    wait_until(Duration::from_secs(60), "every reading upstream", || {
        collector.unique() as u64 == TOTAL
    })
    .await;
    wait_until(Duration::from_secs(10), "queue drained", || {
        metrics.snapshot().queue_records == 0
    })
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    let per_batch = TOTAL / r.batches.max(1);
    eprintln!(
        "under load: {} batches, {per_batch} records per batch on average",
        r.batches
    );
    assert_eq!(r.duplicates(), 0);
    assert!(
        per_batch >= 100,
        "batches should gather many submissions of 50; got {per_batch} records per batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_acknowledging_holds_the_uplink_at_max_inflight_and_loses_nothing() {
    const MAX_INFLIGHT: u64 = 3;
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The default keep-alive (30 s) keeps the connection up through the freeze.
    let runtime = Runtime::start(default_uplink_config(
        dir.path(),
        broker.port,
        &format!("max_inflight = {MAX_INFLIGHT}\nbatch_max_records = 10"),
    ))
    .await
    .expect("start");
    let metrics = runtime.metrics();
    wait_until(Duration::from_secs(10), "the uplink connected", || {
        metrics.snapshot().uplink_connects >= 1
    })
    .await;

    broker.freeze();
    let ingest = runtime.ingest();
    let mut ids = Vec::new();
    let mut most_in_flight = 0;
    for n in 0..60u64 {
        let events = (0..5).map(|i| reading("dev", n * 5 + i)).collect();
        ids.extend(commit(&ingest, events).await.expect("accepted"));
        most_in_flight = most_in_flight.max(in_flight(&metrics));
    }
    wait_until(Duration::from_secs(10), "the window filled", || {
        in_flight(&metrics) == MAX_INFLIGHT
    })
    .await;
    for n in 60..80u64 {
        let events = (0..5).map(|i| reading("dev", n * 5 + i)).collect();
        ids.extend(commit(&ingest, events).await.expect("accepted"));
        most_in_flight = most_in_flight.max(in_flight(&metrics));
    }
    assert!(
        most_in_flight <= MAX_INFLIGHT,
        "{most_in_flight} batches were in flight, at most {MAX_INFLIGHT} allowed"
    );
    assert_eq!(
        metrics.snapshot().queue_records,
        400,
        "nothing is deleted before its acknowledgement"
    );
    assert_eq!(metrics.snapshot().uplink_connection_errors, 0);

    broker.thaw();
    wait_until(Duration::from_secs(30), "every record upstream", || {
        collector.unique() == ids.len()
    })
    .await;
    wait_until(Duration::from_secs(10), "queue drained", || {
        metrics.snapshot().queue_records == 0
    })
    .await;
    runtime.shutdown().await;
    let r = collector.received.lock().expect("lock");
    let mut upstream: Vec<&String> = r.copies.keys().collect();
    upstream.sort();
    let mut committed: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    committed.sort();
    assert_eq!(upstream, committed.iter().collect::<Vec<_>>());
}
