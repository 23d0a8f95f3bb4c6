//! A scripted source through the whole adapter logic: MAC and name
//! mapping, de-duplication by BTHome packet id and Ruuvi sequence, the
//! minimum interval, presence on appearing and after silence, and the
//! adapter's run loop into a sink.

use sluice_adapter_common::testing::{CollectingSink, context, wait_until};
use sluice_ble::advertisement::{Advertisement, uuid16};
use sluice_ble::config::BleConfig;
use sluice_ble::decode::bthome;
use sluice_ble::mac::Mac;
use sluice_ble::pipeline::{Outcome, Pipeline};
use sluice_ble::rejection::BleRejection;
use sluice_ble::source::ScriptedSource;
use sluice_event::{Event, Value};
use std::time::Duration;

const RUUVI: Mac = Mac([0xc7, 0x3b, 0x0a, 0x11, 0x22, 0x33]);
const DOOR: Mac = Mac([0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5]);
const ATC: Mac = Mac([0xa4, 0xc1, 0x38, 0x00, 0x00, 0x01]);
const STRANGER: Mac = Mac([0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
const KEY: [u8; 16] = [
    0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9, 0x32,
];

fn config() -> BleConfig {
    toml::from_str(
        r#"
source = "replay"
replay = "unused.jsonl"
presence_timeout = "10 s"
[[devices]]
id = "cellar"
mac = "C7:3B:0A:11:22:33"
[[devices]]
id = "door"
mac = "54:48:E6:8F:80:A5"
bind_key = "231d39c1d7cc1ab1aee224cd096db932"
min_interval = "5 s"
presence_timeout = "60 s"
[[devices]]
id = "thermo-{mac}"
name = "ATC_*"
"#,
    )
    .expect("config")
}

/// A Ruuvi RAWv2 advertisement with measurement sequence `seq` (the
/// documentation's valid-data vector otherwise).
fn ruuvi(time_ms: i64, seq: u16) -> Advertisement {
    let mut data = hex::decode("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").expect("hex");
    data[16..18].copy_from_slice(&seq.to_be_bytes());
    Advertisement {
        time_ms,
        address: RUUVI,
        rssi: Some(-70),
        manufacturer_data: vec![(0x0499, data)],
        ..Advertisement::default()
    }
}

/// An encrypted BTHome advertisement: packet id `packet`, temperature 25.06 °C.
fn door(time_ms: i64, packet: u8, counter: u32) -> Advertisement {
    let objects = [0x00, packet, 0x02, 0xca, 0x09];
    let frame = [
        vec![0x41],
        bthome::encrypt(&objects, &DOOR, 0x41, counter, &KEY),
    ]
    .concat();
    Advertisement {
        time_ms,
        address: DOOR,
        rssi: Some(-80),
        service_data: vec![(uuid16(bthome::SERVICE), frame)],
        ..Advertisement::default()
    }
}

fn atc(time_ms: i64, counter: u8) -> Advertisement {
    let mut data = vec![
        0xa4, 0xc1, 0x38, 0x00, 0x00, 0x01, 0x00, 0xd7, 0x2f, 0x55, 0x0b, 0x8c,
    ];
    data.push(counter);
    Advertisement {
        time_ms,
        address: ATC,
        local_name: Some("ATC_000001".into()),
        service_data: vec![(uuid16(0x181a), data)],
        ..Advertisement::default()
    }
}

fn present(e: &Event) -> Option<bool> {
    e.readings
        .iter()
        .find(|r| r.name == "present")
        .and_then(|r| match r.value {
            Value::Bool(b) => Some(b),
            _ => None,
        })
}

#[test]
fn a_ruuvi_measurement_repeated_is_published_once() {
    let mut p = Pipeline::new(&config());
    let (events, dropped) = p.events(&ruuvi(1_000, 205));
    assert_eq!(dropped, None);
    assert_eq!(events.len(), 2, "presence, then the reading");
    assert_eq!(present(&events[0]), Some(true));
    let reading = &events[1];
    assert_eq!(reading.subject, "ble/cellar");
    assert_eq!(reading.device, "cellar");
    assert_eq!(reading.number("temperature"), Some(24.3));
    assert_eq!(reading.readings[0].unit, "Cel");
    assert!(
        reading
            .meta
            .iter()
            .any(|m| m.key == "rssi" && m.value == Value::Number(-70.0))
    );
    assert!(
        reading
            .meta
            .iter()
            .any(|m| m.key == "address" && m.value == Value::Text("C7:3B:0A:11:22:33".into()))
    );
    for t in [1_100, 1_200, 1_300] {
        assert_eq!(
            p.events(&ruuvi(t, 205)),
            (Vec::new(), Some(BleRejection::Duplicate))
        );
    }
    let (events, _) = p.events(&ruuvi(2_000, 206));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].number("temperature"), Some(24.3));
}

#[test]
fn bthome_packet_ids_deduplicate_and_the_minimum_interval_holds() {
    let mut p = Pipeline::new(&config());
    let heard = p.hear(&door(0, 1, 100));
    assert!(heard.appeared);
    let Outcome::Accept(d) = heard.outcome else {
        panic!("{heard:?}")
    };
    assert_eq!(
        d.packet_id,
        Some(1),
        "the packet id object, not the counter"
    );
    // The same packet again, with a new counter (each advertisement is encrypted anew).
    assert_eq!(
        p.hear(&door(100, 1, 101)).outcome,
        Outcome::Drop(BleRejection::Duplicate)
    );
    // A new packet within the device's 5 s minimum interval.
    assert_eq!(
        p.hear(&door(4_999, 2, 102)).outcome,
        Outcome::Drop(BleRejection::TooSoon)
    );
    assert!(matches!(
        p.hear(&door(5_000, 2, 103)).outcome,
        Outcome::Accept(_)
    ));
    // A forged frame (wrong key) is refused, not published.
    let mut forged = door(6_000, 3, 104);
    forged.service_data[0].1[3] ^= 0xff;
    assert_eq!(p.hear(&forged).outcome, Outcome::Drop(BleRejection::BadMic));
}

#[test]
fn devices_are_mapped_by_mac_and_by_name_pattern_and_strangers_ignored() {
    let mut p = Pipeline::new(&config());
    let heard = p.hear(&atc(0, 1));
    assert_eq!(heard.device.as_deref(), Some("thermo-a4c138000001"));
    let mut stranger = ruuvi(0, 1);
    stranger.address = STRANGER;
    let heard = p.hear(&stranger);
    assert_eq!((heard.device, heard.outcome), (None, Outcome::Unmapped));
    let mut unnamed = atc(0, 2);
    unnamed.local_name = Some("LYWSD03MMC".into());
    assert_eq!(
        p.hear(&unnamed).outcome,
        Outcome::Unmapped,
        "the pattern does not match"
    );
    assert_eq!(p.tracked(), 1, "strangers are not remembered");
}

#[test]
fn silence_longer_than_the_timeout_is_reported_once_per_device() {
    let mut p = Pipeline::new(&config());
    p.events(&ruuvi(0, 1));
    p.events(&door(0, 1, 1));
    assert!(
        p.expire(10_000).is_empty(),
        "exactly the timeout is not longer"
    );
    let gone = p.expire(10_001);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].device.as_str(), present(&gone[0])),
        ("cellar", Some(false))
    );
    assert!(p.expire(30_000).is_empty());
    let gone = p.expire(60_001);
    assert_eq!(
        gone.iter().map(|e| e.device.as_str()).collect::<Vec<_>>(),
        ["door"],
        "its own 60 s timeout"
    );
    // Heard again: present again, and its new measurement published.
    let (events, _) = p.events(&ruuvi(70_000, 2));
    assert_eq!(
        events.iter().map(present).collect::<Vec<_>>(),
        [Some(true), None]
    );
}

#[tokio::test]
async fn the_run_loop_takes_a_scripted_source_to_the_sink() {
    let sink = CollectingSink::new();
    let (ctx, controls) = context(sink.clone());
    let script = vec![
        (Duration::ZERO, ruuvi(0, 10)),
        (Duration::ZERO, ruuvi(0, 10)),
        (Duration::ZERO, door(0, 7, 1)),
        (Duration::ZERO, ruuvi(0, 11)),
    ];
    let (_shared, controller) = tokio::sync::watch::channel(None);
    let run = tokio::spawn(sluice_ble::adapter::run_with_source(
        config(),
        Box::new(ScriptedSource(script)),
        controller,
        ctx,
    ));
    // Presence of both devices, cellar's two measurements, door's one.
    wait_until(Duration::from_secs(10), "five events", || sink.len() >= 5).await;
    let _ = controls.stop.send(true);
    run.await.expect("join").expect("run");
    let events = sink.events();
    let readings: Vec<(&str, Option<f64>)> = events
        .iter()
        .filter(|e| present(e).is_none())
        .map(|e| (e.device.as_str(), e.number("temperature")))
        .collect();
    assert_eq!(
        readings,
        [
            ("cellar", Some(24.3)),
            ("door", Some(25.06)),
            ("cellar", Some(24.3))
        ]
    );
    assert_eq!(controls.counters.rejected(BleRejection::Duplicate), 1);
    let snapshot = controls.counters.snapshot();
    assert_eq!(snapshot.messages_in, 4);
    assert_eq!(snapshot.events_accepted, 5);
}
