//! Shared test support: a real mosquitto broker on a free loopback port, a
//! subscriber that collects upstream records, configs, and waiting with a
//! deadline. Included by each integration test file.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod coap;
pub mod collector;
pub mod functions;
pub mod process;
pub mod tls;
pub mod wasm;

pub use broker::Broker;
pub use collector::Collector;
pub use process::Gateway;
pub use sluice_adapter_common::testing::{wait_until, wait_until_blocking};

use sluice::config::Config;
use sluice_event::Event;
use std::path::Path;
use std::time::{Duration, Instant};

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A gateway config for tests: data in `dir`, broker on `port`, quick
/// reconnects and keep-alive so outages are noticed within seconds. `extra`
/// is appended (e.g. more `[[queue.streams]]`).
pub fn config_text(dir: &Path, port: u16, uplink_extra: &str, extra: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-test"
data_dir = "{dir}"

[uplink]
url = "mqtt://127.0.0.1:{port}"
keep_alive = "2 s"
linger = "50 ms"
reconnect_min = "100 ms"
reconnect_max = "1 s"
{uplink_extra}

{extra}
"#,
        dir = dir.display()
    )
}

/// A gateway config with the uplink's defaults (batching, linger,
/// keep-alive, reconnects) but for `uplink_extra`: data in `dir`, broker on `port`.
pub fn default_uplink_config(dir: &Path, port: u16, uplink_extra: &str) -> Config {
    let text = format!(
        "[gateway]\nid = \"gw-test\"\ndata_dir = \"{dir}\"\n\n[uplink]\nurl = \"mqtt://127.0.0.1:{port}\"\n{uplink_extra}\n",
        dir = dir.display()
    );
    Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
}

/// Parses a test config, panicking with every problem.
pub fn config(dir: &Path, port: u16, uplink_extra: &str, extra: &str) -> Config {
    let text = config_text(dir, port, uplink_extra, extra);
    Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
}

/// Commits `count` events (device `dev`, readings 0..count) into the
/// queue of `dir` without sending anything: the uplink points at a closed port.
pub async fn prefill(dir: &Path, count: u64, extra: &str) {
    let runtime = sluice::Runtime::start(config(dir, free_port(), "", extra))
        .await
        .expect("start");
    let ingest = runtime.ingest();
    let mut receipts = Vec::new();
    for start in (0..count).step_by(1000) {
        let events = (start..(start + 1000).min(count))
            .map(|n| reading("dev", n))
            .collect();
        receipts.push(ingest.submit(events).await.expect("queue open"));
    }
    for r in receipts {
        r.durable().await.expect("accepted");
    }
    runtime.shutdown().await;
}

/// A stopped broker whose subscriber session (the cloud's) outlives the
/// outage: messages published after `resume()` wait for the subscriber.
pub async fn absent_broker_with_subscriber() -> Broker {
    let mut broker = Broker::start();
    drop(Collector::start(broker.port).await);
    broker.stop();
    broker
}

/// Submits events and waits until they are durable or refused.
pub async fn commit(
    ingest: &sluice::ingest::Ingest,
    events: Vec<Event>,
) -> Result<Vec<sluice_event::EventId>, sluice::ingest::Rejected> {
    ingest.submit(events).await?.durable().await
}

/// Event `n` of device `device`, carrying `n` as a reading so order can be checked.
pub fn reading(device: &str, n: u64) -> Event {
    Event::new(
        format!("coap/{device}"),
        device,
        1_764_000_000_000 + n as i64,
    )
    .with_number("n", n as f64, "")
}
