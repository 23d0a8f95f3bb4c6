//! Pins the postcard encoding of `Event` with golden byte files, so that a
//! field reorder or type change fails here instead of breaking deployed
//! functions. Regenerate only with a new `FORMAT_VERSION`:
//! `SLUICE_BLESS=1 cargo test -p sluice-event --test golden`.

use sluice_event::{DecodeError, Event, EventId, Meta, Reading, Value};

/// An event that uses every field and every value kind.
fn full_event() -> Event {
    Event {
        version: 1,
        id: EventId::new(3, 42),
        cause: Some(EventId::new(3, 41)),
        subject: "lorawan/0004a30b001c0530/up".into(),
        device: "0004a30b001c0530".into(),
        device_time_ms: Some(1_764_000_000_000),
        gateway_time_ms: 1_764_000_000_250,
        readings: vec![
            Reading {
                name: "temperature".into(),
                value: Value::Number(21.5),
                unit: "Cel".into(),
            },
            Reading {
                name: "door".into(),
                value: Value::Bool(true),
                unit: String::new(),
            },
            Reading {
                name: "state".into(),
                value: Value::Text("ok".into()),
                unit: String::new(),
            },
        ],
        meta: vec![
            Meta {
                key: "rssi".into(),
                value: Value::Number(-87.0),
            },
            Meta {
                key: "devaddr".into(),
                value: Value::Bytes(vec![0x26, 0x01, 0x1b, 0xda]),
            },
        ],
        raw: Some(vec![0x01, 0x67, 0x00, 0xd7]),
        function: Some("scale".into()),
    }
}

/// A freshly built event with only the required fields.
fn minimal_event() -> Event {
    Event::new("coap/t1", "t1", 0)
}

fn check(name: &str, event: &Event) {
    let path = format!("{}/tests/golden/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let bytes = event.encode();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &bytes).expect("write golden file");
    }
    let golden = std::fs::read(&path).expect("golden file exists");
    assert_eq!(
        bytes, golden,
        "encoding of {name} changed: this breaks deployed functions"
    );
    assert_eq!(&Event::decode(&golden).expect("golden decodes"), event);
}

#[test]
fn full_event_matches_golden_bytes() {
    check("v1_full", &full_event());
}

#[test]
fn minimal_event_matches_golden_bytes() {
    check("v1_minimal", &minimal_event());
}

#[test]
fn unknown_version_is_refused() {
    let mut bytes = minimal_event().encode();
    bytes[0] = 2;
    assert_eq!(
        Event::decode(&bytes),
        Err(DecodeError::UnsupportedVersion(2))
    );
}

#[test]
fn truncated_bytes_are_malformed() {
    let bytes = full_event().encode();
    for len in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
        let got = Event::decode(&bytes[..len]);
        assert_eq!(got, Err(DecodeError::Malformed), "prefix of {len} bytes");
    }
}

#[test]
fn event_id_packs_boot_and_sequence() {
    let id = EventId::new(0xabcdef, 0x12_3456_789a);
    assert_eq!(id.0 >> EventId::SEQ_BITS, 0xabcdef);
    assert_eq!(id.to_string(), "abcdef123456789a");
    assert!(!EventId::UNSET.is_set());
}
