//! Readings and presence as Sluice events: subject `ble/<device>`, the
//! decoded values with their SenML units, RSSI and the address as meta.

use crate::advertisement::Advertisement;
use crate::decode::{Decoded, Measurement, Quantity};
use sluice_event::{Event, Meta, Reading, Value};

/// The subject of a device's events.
pub fn subject(device: &str) -> String {
    format!("ble/{device}")
}

fn value(q: Quantity) -> Value {
    match q {
        Quantity::Number(n) => Value::Number(n),
        Quantity::Bool(b) => Value::Bool(b),
        Quantity::Text(t) => Value::Text(t),
    }
}

/// Meta every event of an advertisement carries.
fn meta(ad: &Advertisement) -> Vec<Meta> {
    let mut meta = Vec::with_capacity(4);
    meta.push(Meta {
        key: "address".into(),
        value: Value::Text(ad.address.to_string()),
    });
    if let Some(rssi) = ad.rssi {
        meta.push(Meta {
            key: "rssi".into(),
            value: Value::Number(f64::from(rssi)),
        });
    }
    meta
}

/// The event of an accepted reading.
pub fn reading(device: &str, decoded: Decoded, ad: &Advertisement) -> Event {
    let mut event = Event::new(subject(device), device, ad.time_ms);
    event.readings = decoded
        .readings
        .into_iter()
        .map(
            |Measurement {
                 name,
                 value: v,
                 unit,
             }| Reading {
                name: name.to_owned(),
                value: value(v),
                unit: unit.to_owned(),
            },
        )
        .collect();
    event.meta = meta(ad);
    if let Some(format) = decoded.format {
        event.meta.push(Meta {
            key: "format".into(),
            value: Value::Text(format.as_str().into()),
        });
    }
    if let Some(p) = decoded.packet_id {
        event.meta.push(Meta {
            key: "packet_id".into(),
            value: Value::Number(f64::from(p)),
        });
    }
    if let Some((key, id, bytes)) = decoded.raw {
        event.meta.push(Meta {
            key,
            value: Value::Text(id),
        });
        event.raw = Some(bytes);
    }
    event
}

/// A presence event: `present` true when the device appears, false when it
/// has been silent longer than its timeout.
pub fn presence(device: &str, present: bool, time_ms: i64, ad: Option<&Advertisement>) -> Event {
    let mut event = Event::new(subject(device), device, time_ms);
    event.readings.push(Reading {
        name: "present".into(),
        value: Value::Bool(present),
        unit: String::new(),
    });
    if let Some(ad) = ad {
        event.meta = meta(ad);
    }
    event
}
