//! The BLE adapter through the whole gateway: the real binary replays a
//! capture (a Ruuvi tag repeating its measurements, an encrypted BTHome
//! sensor, a stranger, a broken line) through the real decoders and
//! publishes to mosquitto; every measurement arrives once, with its units
//! and RSSI. And without Bluetooth, the BLE adapter says so at start while
//! the gateway runs on. Needs mosquitto (scripts/install-test-deps.sh).

mod support;

use sluice_ble::advertisement::{Advertisement, uuid16};
use sluice_ble::decode::bthome;
use sluice_ble::mac::Mac;
use sluice_ble::replay;
use std::time::Duration;
use support::{Broker, Collector, Gateway, config_text, wait_until};

const RUUVI: Mac = Mac([0xc7, 0x3b, 0x0a, 0x11, 0x22, 0x33]);
const DOOR: Mac = Mac([0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5]);
const KEY: [u8; 16] = [
    0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9, 0x32,
];
/// Ruuvi measurements in the capture, each advertised three times.
const MEASUREMENTS: u16 = 50;

fn ruuvi(seq: u16) -> Advertisement {
    let mut data = hex::decode("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").expect("hex");
    data[16..18].copy_from_slice(&seq.to_be_bytes());
    Advertisement {
        address: RUUVI,
        rssi: Some(-70),
        manufacturer_data: vec![(0x0499, data)],
        ..Advertisement::default()
    }
}

fn door(packet: u8, counter: u32) -> Advertisement {
    let objects = [0x00, packet, 0x02, 0xca, 0x09, 0x03, 0xbf, 0x13];
    Advertisement {
        address: DOOR,
        rssi: Some(-81),
        service_data: vec![(
            uuid16(bthome::SERVICE),
            [
                vec![0x41],
                bthome::encrypt(&objects, &DOOR, 0x41, counter, &KEY),
            ]
            .concat(),
        )],
        ..Advertisement::default()
    }
}

fn capture() -> String {
    let mut lines = Vec::new();
    let mut t = 0.0;
    for seq in 0..MEASUREMENTS {
        for _ in 0..3 {
            lines.push(replay::to_line(t, &ruuvi(seq)));
            t += 0.01;
        }
    }
    for counter in 0..4 {
        lines.push(replay::to_line(t, &door(1, counter)));
    }
    let mut stranger = ruuvi(1);
    stranger.address = Mac([1, 1, 1, 1, 1, 1]);
    lines.push(replay::to_line(t, &stranger));
    lines.push("{not json".to_owned());
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_capture_arrives_upstream_once_per_measurement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replay_file = dir.path().join("capture.jsonl");
    std::fs::write(&replay_file, capture()).expect("write capture");
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let ble = format!(
        r#"
[ble]
source = "replay"
replay = "{file}"
pace = "fast"

[[ble.devices]]
id = "cellar"
mac = "C7:3B:0A:11:22:33"

[[ble.devices]]
id = "door"
mac = "54:48:E6:8F:80:A5"
bind_key = "231d39c1d7cc1ab1aee224cd096db932"
"#,
        file = replay_file.display()
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, "", &ble)).expect("write config");
    let mut gateway = Gateway::spawn(&config);

    let readings_of = |subject: &str| -> Vec<serde_json::Value> {
        let received = collector.received.lock().expect("lock");
        received
            .records
            .iter()
            .filter(|r| r["subject"] == subject)
            .filter(|r| r["readings"][0]["name"] != "present")
            .cloned()
            .collect()
    };
    wait_until(
        Duration::from_secs(30),
        "every Ruuvi measurement and the door's reading upstream",
        || {
            readings_of("ble/cellar").len() >= usize::from(MEASUREMENTS)
                && !readings_of("ble/door").is_empty()
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the replay skipped the broken line",
        || !gateway.log_lines("Replay line skipped").is_empty(),
    )
    .await;
    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");

    let cellar = readings_of("ble/cellar");
    let sequences: std::collections::BTreeSet<i64> = cellar
        .iter()
        .filter_map(|r| r["meta"]["packet_id"]["value"].as_f64().map(|p| p as i64))
        .collect();
    assert_eq!(
        cellar.len(),
        usize::from(MEASUREMENTS),
        "each measurement once: {cellar:?}"
    );
    assert_eq!(sequences.len(), usize::from(MEASUREMENTS));
    let first = &cellar[0];
    assert_eq!(first["device"], "cellar");
    assert_eq!(
        first["readings"][0],
        serde_json::json!({"name": "temperature", "type": "number", "value": 24.3, "unit": "Cel"})
    );
    assert_eq!(first["meta"]["rssi"]["value"], -70.0);
    assert_eq!(first["meta"]["format"]["value"], "ruuvi");
    let door = readings_of("ble/door");
    assert_eq!(
        door.len(),
        1,
        "one packet id, four advertisements: {door:?}"
    );
    assert_eq!(door[0]["readings"][1]["value"], 50.55);
    assert_eq!(door[0]["readings"][1]["unit"], "%RH");
    let received = collector.received.lock().expect("lock");
    assert!(
        received
            .records
            .iter()
            .any(|r| r["subject"] == "ble/cellar" && r["readings"][0]["name"] == "present"),
        "a presence event on appearing"
    );
    assert!(
        !received
            .records
            .iter()
            .any(|r| r["meta"]["address"]["value"] == "01:01:01:01:01:01"),
        "strangers are ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bluetooth_the_ble_adapter_says_so_and_the_gateway_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let ble = r#"
[coap]
listen = ["127.0.0.1:0"]

[ble]
controller = "hci7"

[[ble.devices]]
id = "cellar"
mac = "C7:3B:0A:11:22:33"
"#;
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, "", ble)).expect("write config");
    let mut gateway = Gateway::spawn(&config);
    wait_until(
        Duration::from_secs(30),
        "the BLE adapter's error line",
        || !gateway.log_lines("No Bluetooth").is_empty(),
    )
    .await;
    let line = gateway.log_lines("No Bluetooth").remove(0);
    assert!(line.contains("ble") && line.contains("hci7"), "{line}");
    wait_until(Duration::from_secs(30), "the gateway ready", || {
        !gateway.log_lines("Sluice running").is_empty()
    })
    .await;
    let status = gateway.terminate().expect("exit status");
    assert!(
        status.success(),
        "the gateway ran on and stopped cleanly, got {status}"
    );
}
