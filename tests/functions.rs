//! The function host in the running pipeline: events through wasm functions
//! (hand-written modules, see `support/wasm.rs`), into the queue and out to a
//! real mosquitto; failing functions dead-lettered, suspended and resumed.

mod support;

use sluice::Runtime;
use sluice::metrics::{FailureKind, MetricsSnapshot};
use sluice::queue::inspect;
use sluice_event::Event;
use std::path::Path;
use std::time::Duration;
use support::wasm::{self, function_toml};
use support::{Broker, Collector, commit, config, reading, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// An event whose encoding is over 200 bytes: it trips `POISONABLE`.
fn poisoned(device: &str, n: u64) -> Event {
    let mut e = reading(device, n);
    e.raw = Some(vec![0xee; 300]);
    e
}

/// The failed-call counters that are not zero, by kind.
fn failures(m: &MetricsSnapshot) -> Vec<(FailureKind, u64)> {
    m.functions_failed_by
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (*k, *n))
        .collect()
}

fn records(collector: &Collector) -> Vec<serde_json::Value> {
    collector.received.lock().expect("lock").records.clone()
}

fn dead_letters(dir: &Path) -> Vec<inspect::StoredDeadLetter> {
    inspect::dead_letters(&dir.join("queue.db"), 1000).expect("dead letters readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_carry_their_cause_and_replace_the_inputs_they_consume() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let count = wasm::write(dir.path(), "count", wasm::COUNT);
    let functions = function_toml("count", &count, "\"coap/a\"", "");
    let runtime = Runtime::start(config(dir.path(), broker.port, "", &functions))
        .await
        .expect("start");
    let ingest = runtime.ingest();

    // Device a goes through the function; device b is unclaimed and queued as it is.
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.extend(
            commit(&ingest, vec![reading("a", n), reading("b", n)])
                .await
                .expect("accepted"),
        );
    }
    wait_until(WAIT, "40 records upstream", || collector.unique() == 40).await;

    let records = records(&collector);
    let from_a: Vec<_> = records.iter().filter(|r| r["device"] == "a").collect();
    assert_eq!(from_a.len(), 20);
    for r in &from_a {
        assert_eq!(r["subject"], "fn/count/coap/a");
        assert_eq!(r["function"], "count");
        let cause = r["cause"].as_str().expect("outputs carry their cause");
        assert!(
            ids.iter().any(|id| id.to_string() == cause),
            "{cause} is an input id"
        );
        assert_ne!(
            r["id"].as_str(),
            Some(cause),
            "an output has an id of its own"
        );
    }
    assert!(
        records
            .iter()
            .filter(|r| r["device"] == "b")
            .all(|r| r["subject"] == "coap/b" && r["function"].is_null())
    );
    let m = runtime.metrics().snapshot();
    assert_eq!(
        (m.functions_calls, m.functions_failed, m.functions_emitted),
        (20, 0, 20)
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_function_dead_letters_its_input_and_everyone_else_keeps_flowing() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm::write(dir.path(), "poisonable", wasm::POISONABLE);
    let count = wasm::write(dir.path(), "count", wasm::COUNT);
    let functions = [
        function_toml("fragile", &module, "\"coap/+\"", "suspend_after = 100"),
        function_toml("sturdy", &count, "\"coap/+\"", ""),
    ]
    .concat();
    let runtime = Runtime::start(config(dir.path(), broker.port, "", &functions))
        .await
        .expect("start");
    let ingest = runtime.ingest();

    let mut poisoned_ids = Vec::new();
    for n in 0..30 {
        let event = if n % 3 == 0 {
            poisoned("d", n)
        } else {
            reading("d", n)
        };
        let ids = commit(&ingest, vec![event])
            .await
            .expect("accepted: a failing function loses nothing");
        if n % 3 == 0 {
            poisoned_ids.push(ids[0].to_string());
        }
    }
    // fragile: 20 good outputs; sturdy: all 30.
    wait_until(WAIT, "50 outputs upstream", || collector.unique() == 50).await;
    let records = records(&collector);
    let by = |f: &str| records.iter().filter(|r| r["function"] == f).count();
    assert_eq!((by("fragile"), by("sturdy")), (20, 30));

    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 10);
    for d in &dead {
        assert_eq!(
            (d.function.as_str(), d.error.as_str()),
            ("fragile", "trap: unreachable")
        );
        let input = Event::decode(d.event.as_deref().expect("the input is kept")).expect("decodes");
        assert!(
            poisoned_ids.contains(&input.id.to_string()),
            "dead letter holds the input that failed"
        );
    }
    let m = runtime.metrics().snapshot();
    assert_eq!(
        (m.functions_failed, m.dead_letters, m.functions_suspended),
        (10, 10, 0)
    );
    assert_eq!(failures(&m), [(FailureKind::Trap, 10)]);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_functions_hit_their_caps_and_are_suspended() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = "suspend_after = 3\nfuel = 100000\nmemory_max = \"1 MiB\"";
    let functions = [
        ("spin", wasm::SPIN),
        ("grow", wasm::GROW),
        ("bad-emit", wasm::BAD_EMIT),
        ("fail-7", wasm::FAIL_7),
        ("twice", wasm::EMIT_TWICE),
    ]
    .iter()
    .map(|(name, body)| {
        function_toml(
            name,
            &wasm::write(dir.path(), name, body),
            "\"coap/+\"",
            &format!("{limits}\nmax_emit = 1"),
        )
    })
    .collect::<String>();
    let extra = format!("[pipeline]\nforward = \"all\"\n{functions}");
    let runtime = Runtime::start(config(dir.path(), broker.port, "", &extra))
        .await
        .expect("start");
    let ingest = runtime.ingest();
    for n in 0..5 {
        commit(&ingest, vec![reading("d", n)])
            .await
            .expect("accepted");
    }
    // forward = "all": the inputs themselves still reach the cloud.
    wait_until(WAIT, "5 inputs upstream", || collector.unique() == 5).await;

    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 25, "5 inputs × 5 functions");
    let errors = |f: &str| -> Vec<String> {
        dead.iter()
            .filter(|d| d.function == f)
            .map(|d| d.error.clone())
            .collect()
    };
    let expect = |f: &str, first: &str| {
        let e = errors(f);
        assert_eq!(e.len(), 5, "{f}: {e:?}");
        assert!(e[..3].iter().all(|x| x == first), "{f}: {e:?}");
        assert!(
            e[3..]
                .iter()
                .all(|x| x.starts_with("function suspended (3 failures in a row")),
            "{f}: {e:?}"
        );
    };
    expect("spin", "trap: out of fuel");
    expect("grow", "trap: memory cap reached");
    expect("bad-emit", "emit: malformed event encoding");
    expect("fail-7", "returned 7");
    expect("twice", "emit: more than 1 events in one call");
    let m = runtime.metrics().snapshot();
    assert_eq!((m.functions_calls, m.functions_suspended), (15, 5));
    // Each kind of failure moves its own counter; calls to suspended functions are not calls.
    assert_eq!(m.functions_failed, 15);
    assert_eq!(
        failures(&m),
        [
            (FailureKind::Fuel, 3),
            (FailureKind::Memory, 3),
            (FailureKind::EmitCap, 3),
            (FailureKind::BadOutput, 3),
            (FailureKind::NonZeroReturn, 3),
        ]
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_function_resumes_on_reload() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm::write(dir.path(), "poisonable", wasm::POISONABLE);
    let functions = function_toml("fragile", &module, "\"coap/+\"", "suspend_after = 2");
    let config = config(dir.path(), broker.port, "", &functions);
    let mut runtime = Runtime::start(config.clone()).await.expect("start");
    let ingest = runtime.ingest();
    for n in 0..2 {
        commit(&ingest, vec![poisoned("d", n)])
            .await
            .expect("accepted");
    }
    commit(&ingest, vec![reading("d", 2)])
        .await
        .expect("accepted");
    assert_eq!(runtime.metrics().snapshot().functions_suspended, 1);
    let dead = dead_letters(dir.path());
    assert!(dead[2].error.starts_with("function suspended"), "{dead:?}");

    // A reload of the same config resumes suspended functions.
    let changes = runtime.apply(config.clone()).await.expect("reload");
    assert_eq!(changes, "functions reloaded");
    commit(&ingest, vec![reading("d", 3)])
        .await
        .expect("accepted");
    wait_until(WAIT, "the output of the resumed function", || {
        collector.unique() == 1
    })
    .await;
    assert_eq!(records(&collector)[0]["readings"][0]["value"], 3.0);
    assert_eq!(runtime.metrics().snapshot().functions_suspended, 0);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_feed_functions_and_state_outlives_a_restart() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let count = wasm::write(dir.path(), "count", wasm::COUNT);
    let latest = wasm::write(dir.path(), "latest", wasm::LATEST_ON_TICK);
    // count → latest: latest keeps count's newest output and emits it on its schedule.
    let functions = [
        function_toml("count", &count, "\"coap/+\"", ""),
        function_toml("latest", &latest, "\"fn/count/#\"", "every = \"200 ms\""),
    ]
    .concat();
    let config = config(dir.path(), broker.port, "", &functions);
    let runtime = Runtime::start(config.clone()).await.expect("start");
    commit(&runtime.ingest(), vec![reading("d", 41)])
        .await
        .expect("accepted");
    wait_until(WAIT, "a tick output", || collector.unique() >= 1).await;
    runtime.shutdown().await;
    let first = records(&collector)[0].clone();
    assert_eq!(first["subject"], "fn/latest/fn/count/coap/d");
    assert_eq!(first["readings"][0]["value"], 41.0);

    // After a restart the state is still there: ticks go on emitting it.
    let seen = collector.unique();
    let runtime = Runtime::start(config).await.expect("restart");
    wait_until(WAIT, "a tick output after the restart", || {
        collector.unique() > seen
    })
    .await;
    runtime.shutdown().await;
    let last = records(&collector).last().cloned().expect("records");
    assert_eq!(last["readings"][0]["value"], 41.0);
    // A tick has no input: its output has no cause, and keeps the device of what it re-emits.
    assert!(last["cause"].is_null(), "a tick output has no cause");
    assert_eq!(last["device"], "d");
}

#[test]
fn after_a_trap_the_next_instance_is_ready_before_the_next_input() {
    use sluice::functions::Compiled;
    use sluice_event::{EventId, LazyView};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm::write(dir.path(), "poisonable", wasm::POISONABLE);
    let text = function_toml("fragile", &module, "\"in/#\"", "");
    let config = sluice::config::Config::parse(&text, "test.toml").expect("config");
    let mut set = Compiled::new(&config)
        .expect("loads")
        .start(
            Arc::new(sluice::ids::IdMint::new(1)),
            Arc::new(sluice::metrics::Metrics::default()),
            |_| Ok::<_, String>(BTreeMap::new()),
        )
        .expect("starts");
    assert!(set.warm().is_empty());
    let mut dispatch = |event: Event, n: u64| {
        let mut event = event;
        event.subject = format!("in/{}", event.device);
        event.id = EventId::new(1, n);
        let bytes = event.encode();
        let view = LazyView::parse(&bytes).expect("encoded");
        let d = set.dispatch(&view, &bytes);
        (
            d.outputs.len(),
            d.dead.len(),
            set.functions()[0].has_instance(),
        )
    };
    assert_eq!(dispatch(reading("a", 1), 1), (1, 0, true));
    // The trap throws the instance away; the host builds the next one at
    // once, so the next input's call is a warm one.
    assert_eq!(dispatch(poisoned("a", 2), 2), (0, 1, true));
    assert_eq!(dispatch(reading("a", 3), 3), (1, 0, true));
}
