//! The Modbus adapter through the whole gateway: the real binary polls
//! pymodbus slaves on a socat PTY pair and publishes to mosquitto; killed
//! with SIGKILL while it polls (and while the broker is away, so readings
//! wait in the queue), then started again, every reading it had reported
//! durable arrives upstream. Needs socat, pymodbus, mosquitto
//! (scripts/install-test-deps.sh).

mod support;

#[path = "../adapters/modbus/tests/peers/mod.rs"]
mod peers;

use peers::{Pty, Slave};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{Broker, Collector, Gateway, config_text, wait_until};

/// The ids of the events the gateway logged as durable ("Event queued").
fn durable_ids(gateway: &Gateway) -> BTreeSet<String> {
    gateway
        .log_lines("Event queued")
        .iter()
        .filter_map(|line| {
            let at = line.find("event_id=")? + "event_id=".len();
            line.get(at..at + 16).map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_poll_loses_no_reading_reported_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1, 2]).await;
    slave.set(1, "ir", 0, &[0x4366, 0x8000]).await;
    slave.set(2, "hr", 10, &[615]).await;

    let mut broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let modbus = format!(
        r#"
[[modbus.buses]]
name = "rs485"
path = "{path}"
baud = 115200
response_timeout = "500 ms"

[[modbus.devices]]
id = "meter"
bus = "rs485"
unit = 1
poll = "10 ms"
points = [{{ name = "voltage", table = "input", address = 0, type = "f32", unit = "V" }}]

[[modbus.devices]]
id = "boiler"
bus = "rs485"
unit = 2
poll = "10 ms"
points = [{{ name = "setpoint", table = "holding", address = 10, scale = 0.1, offset = -40, unit = "Cel" }}]
"#,
        path = pty.gateway_end().display()
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, "", &modbus))
        .expect("write config");
    let logging = "info,sluice::ingest=debug";

    let mut gateway = Gateway::spawn_logging(&config, logging);
    wait_until(Duration::from_secs(30), "readings upstream", || {
        collector.unique() >= 100
    })
    .await;
    // The broker goes away: readings stay queued.
    broker.stop();
    let before = durable_ids(&gateway).len();
    wait_until(Duration::from_secs(30), "300 more readings durable", || {
        durable_ids(&gateway).len() >= before + 300
    })
    .await;
    // The buses poll back to back: the kill lands mid-poll.
    gateway.kill();
    let durable = durable_ids(&gateway);
    let upstream_at_kill = collector.unique();
    assert!(
        upstream_at_kill < durable.len(),
        "some readings were durable but not upstream at the kill"
    );

    broker.resume();
    let mut gateway = Gateway::spawn_logging(&config, logging);
    wait_until(
        Duration::from_secs(60),
        "every reading reported durable upstream",
        || {
            let received = collector.received.lock().expect("lock");
            durable.iter().all(|id| received.copies.contains_key(id))
        },
    )
    .await;
    // And the restarted gateway polls on.
    wait_until(
        Duration::from_secs(30),
        "new readings after the restart",
        || durable_ids(&gateway).len() >= 50,
    )
    .await;
    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    eprintln!(
        "{} readings durable before the kill, {upstream_at_kill} upstream at the kill",
        durable.len()
    );

    let received = collector.received.lock().expect("lock");
    let records: Vec<&serde_json::Value> = received
        .records
        .iter()
        .filter(|r| r["subject"] == "modbus/meter")
        .collect();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["device"], "meter");
        assert_eq!(
            r["readings"][0],
            serde_json::json!({"name": "voltage", "type": "number", "value": 230.5, "unit": "V"})
        );
        let device_time = r["device_time_ms"].as_i64().expect("device time");
        let gateway_time = r["gateway_time_ms"].as_i64().expect("gateway time");
        assert!(device_time <= gateway_time, "{r}");
    }
    let boiler = received
        .records
        .iter()
        .find(|r| r["subject"] == "modbus/boiler")
        .expect("a boiler record");
    let setpoint = boiler["readings"][0]["value"].as_f64().expect("a number");
    assert!((setpoint - 21.5).abs() < 1e-9, "{setpoint}");
    assert_eq!(boiler["readings"][0]["unit"], "Cel");
}
