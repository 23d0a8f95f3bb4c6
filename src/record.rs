//! The upstream record: how one queued event looks to the cloud (JSON), and
//! the batch that carries many of them. Schema version [`BATCH_SCHEMA_VERSION`];
//! documented with examples in `docs/mqtt-api.md`.
//!
//! Every reading and meta value carries its type (`number`, `bool`, `text`,
//! `bytes`) next to its value, because bytes travel as a hex string and would
//! otherwise be indistinguishable from text.

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use sluice_event::{Event, EventView, Metas, ReadingRef, Readings, ValueRef};

/// The `v` field of every batch payload. Version 2 typed every reading and
/// meta value; in version 1 a meta value was bare and bytes looked like text.
pub const BATCH_SCHEMA_VERSION: u32 = 2;

/// An event as an upstream record, tagged with its queue stream.
pub struct UpstreamRecord<'a> {
    /// The event, read in place from its encoding.
    pub event: &'a EventView<'a>,
    /// The stream it was queued in.
    pub stream: &'a str,
    /// When the queue committed it (ms since the Unix epoch).
    pub queued_ms: i64,
}

impl Serialize for UpstreamRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut r = s.serialize_struct("Record", 12)?;
        r.serialize_field("id", &e.id.to_string())?;
        r.serialize_field("stream", self.stream)?;
        r.serialize_field("subject", e.subject)?;
        r.serialize_field("device", e.device)?;
        r.serialize_field("device_time_ms", &e.device_time_ms)?;
        r.serialize_field("gateway_time_ms", &e.gateway_time_ms)?;
        r.serialize_field("queued_ms", &self.queued_ms)?;
        r.serialize_field("cause", &e.cause.map(|c| c.to_string()))?;
        r.serialize_field("function", &e.function)?;
        r.serialize_field("readings", &ReadingsJson(e.readings()))?;
        r.serialize_field("meta", &MetasJson(e.meta()))?;
        r.serialize_field("raw", &e.raw.map(hex))?;
        r.end()
    }
}

/// An event as JSON, in the upstream record's shape without the queue fields
/// (for `sluice fn test` and `sluice queue dead-letters`).
pub fn event_json(event: &Event) -> serde_json::Value {
    let bytes = event.encode();
    let Ok(view) = EventView::parse(&bytes) else {
        return serde_json::Value::Null;
    };
    let record = UpstreamRecord {
        event: &view,
        stream: "",
        queued_ms: 0,
    };
    let mut value = serde_json::to_value(&record).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("stream");
        map.remove("queued_ms");
    }
    value
}

struct ReadingsJson<'a>(Readings<'a>);

impl Serialize for ReadingsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0.clone() {
            seq.serialize_element(&ReadingJson(r))?;
        }
        seq.end()
    }
}

struct ReadingJson<'a>(ReadingRef<'a>);

impl Serialize for ReadingJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", r.name)?;
        m.serialize_entry("type", type_name(r.value))?;
        m.serialize_entry("value", &ValueJson(r.value))?;
        if !r.unit.is_empty() {
            m.serialize_entry("unit", r.unit)?;
        }
        m.end()
    }
}

struct MetasJson<'a>(Metas<'a>);

impl Serialize for MetasJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for meta in self.0.clone() {
            m.serialize_entry(meta.key, &TypedValueJson(meta.value))?;
        }
        m.end()
    }
}

/// `{"type": …, "value": …}`: a meta value with its type.
struct TypedValueJson<'a>(ValueRef<'a>);

impl Serialize for TypedValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", type_name(self.0))?;
        m.serialize_entry("value", &ValueJson(self.0))?;
        m.end()
    }
}

/// The `type` next to a value: how to read its `value`.
fn type_name(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Number(_) => "number",
        ValueRef::Bool(_) => "bool",
        ValueRef::Text(_) => "text",
        ValueRef::Bytes(_) => "bytes",
    }
}

/// Numbers as JSON numbers (non-finite ones as `null`), bytes as lowercase hex.
struct ValueJson<'a>(ValueRef<'a>);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ValueRef::Number(n) if n.is_finite() => s.serialize_f64(n),
            ValueRef::Number(_) => s.serialize_none(),
            ValueRef::Bool(b) => s.serialize_bool(b),
            ValueRef::Text(t) => s.serialize_str(t),
            ValueRef::Bytes(b) => s.serialize_str(&hex(b)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Builds one batch payload, record by record, within a byte budget.
pub struct BatchWriter {
    buf: Vec<u8>,
    records: usize,
    max_bytes: usize,
}

/// Closing bytes of a batch payload.
const BATCH_END: &[u8] = b"]}";

impl BatchWriter {
    /// Starts a batch for `gateway`, to be at most `max_bytes` long.
    pub fn new(gateway: &str, sent_ms: i64, max_bytes: usize) -> BatchWriter {
        let mut buf = Vec::with_capacity(max_bytes.min(1 << 20));
        buf.extend_from_slice(format!("{{\"v\":{BATCH_SCHEMA_VERSION},\"gateway\":").as_bytes());
        // A gateway id is validated to be plain ASCII, so this cannot fail.
        let _ = serde_json::to_writer(&mut buf, gateway);
        buf.extend_from_slice(format!(",\"sent_ms\":{sent_ms},\"records\":[").as_bytes());
        BatchWriter {
            buf,
            records: 0,
            max_bytes,
        }
    }

    /// Appends a record if it fits; a first record always fits, so one
    /// oversized record still travels alone rather than blocking the queue.
    pub fn push(&mut self, record: &UpstreamRecord<'_>) -> bool {
        let mark = self.buf.len();
        if self.records > 0 {
            self.buf.push(b',');
        }
        if serde_json::to_writer(&mut self.buf, record).is_err() {
            self.buf.truncate(mark);
            return false;
        }
        if self.records > 0 && self.buf.len() + BATCH_END.len() > self.max_bytes {
            self.buf.truncate(mark);
            return false;
        }
        self.records += 1;
        true
    }

    /// Records in the batch so far.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The finished payload.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(BATCH_END);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_event::{EventId, Meta, Reading, Value};

    /// `event` encoded, as the queue holds it.
    fn stored(event: &Event) -> Vec<u8> {
        event.encode()
    }

    fn view(bytes: &[u8]) -> EventView<'_> {
        EventView::parse(bytes).expect("valid encoding")
    }

    fn event(n: u64) -> Event {
        let mut e = Event::new("coap/t1", "t1", 1_764_000_000_000)
            .with_number("temperature", 21.5, "Cel")
            .with_meta("rssi", Value::Number(-87.0))
            .with_meta("devaddr", Value::Bytes(vec![0x26, 0x01]));
        e.id = EventId::new(1, n);
        e.readings.push(Reading {
            name: "door".into(),
            value: Value::Bool(true),
            unit: String::new(),
        });
        e
    }

    #[test]
    fn batch_is_valid_json_with_every_field() {
        let e = stored(&event(7));
        let mut w = BatchWriter::new("gw-1", 5, 10_000);
        assert!(w.push(&UpstreamRecord {
            event: &view(&e),
            stream: "telemetry",
            queued_ms: 3
        }));
        let v: serde_json::Value = serde_json::from_slice(&w.finish()).expect("valid json");
        assert_eq!(v["v"], 2);
        assert_eq!(v["gateway"], "gw-1");
        let r = &v["records"][0];
        assert_eq!(r["id"], "0000010000000007");
        assert_eq!(r["stream"], "telemetry");
        assert_eq!(r["subject"], "coap/t1");
        assert_eq!(
            r["readings"][0],
            json!({"name": "temperature", "type": "number", "value": 21.5, "unit": "Cel"})
        );
        assert_eq!(
            r["readings"][1],
            json!({"name": "door", "type": "bool", "value": true})
        );
        assert_eq!(
            r["meta"],
            json!({
                "rssi": {"type": "number", "value": -87.0},
                "devaddr": {"type": "bytes", "value": "2601"}
            })
        );
        assert_eq!(r["cause"], serde_json::Value::Null);
        assert_eq!(r["raw"], serde_json::Value::Null);
    }

    /// A value of each type as a reading and as meta: the reading's JSON
    /// (without its name) and the meta entry's JSON are both `expected`.
    fn check(what: &str, value: Value, expected: serde_json::Value) {
        let mut e = Event::new("s", "d", 0);
        e.readings.push(Reading {
            name: "x".into(),
            value: value.clone(),
            unit: String::new(),
        });
        e.meta.push(Meta {
            key: "x".into(),
            value,
        });
        let json = event_json(&e);
        let mut reading = json["readings"][0].clone();
        if let Some(map) = reading.as_object_mut() {
            map.remove("name");
        }
        assert_eq!(reading, expected, "{what} as a reading");
        assert_eq!(json["meta"]["x"], expected, "{what} as meta");
    }

    #[test]
    fn every_value_carries_its_type() {
        let cases = [
            (
                "number",
                Value::Number(21.5),
                json!({"type": "number", "value": 21.5}),
            ),
            (
                "integral number",
                Value::Number(-87.0),
                json!({"type": "number", "value": -87.0}),
            ),
            (
                "non-finite number",
                Value::Number(f64::NAN),
                json!({"type": "number", "value": null}),
            ),
            (
                "bool",
                Value::Bool(false),
                json!({"type": "bool", "value": false}),
            ),
            (
                "text",
                Value::Text("ok".into()),
                json!({"type": "text", "value": "ok"}),
            ),
            (
                "empty text",
                Value::Text(String::new()),
                json!({"type": "text", "value": ""}),
            ),
            (
                "bytes",
                Value::Bytes(vec![0x01, 0xAB]),
                json!({"type": "bytes", "value": "01ab"}),
            ),
            (
                "no bytes",
                Value::Bytes(Vec::new()),
                json!({"type": "bytes", "value": ""}),
            ),
        ];
        for (what, value, expected) in cases {
            check(what, value, expected);
        }
    }

    #[test]
    fn text_that_looks_like_hex_is_not_bytes() {
        // SenML `vs: "cafe"` against `vd: "yv4"` (the bytes ca fe).
        let e = Event::new("s", "d", 0)
            .with_meta("vs", Value::Text("cafe".into()))
            .with_meta("vd", Value::Bytes(vec![0xca, 0xfe]));
        let json = event_json(&e);
        let (text, bytes) = (&json["meta"]["vs"], &json["meta"]["vd"]);
        assert_eq!(text["value"], bytes["value"], "the same string on the wire");
        assert_eq!(
            (&text["type"], &bytes["type"]),
            (&json!("text"), &json!("bytes"))
        );
    }

    #[test]
    fn raw_is_lowercase_hex() {
        let mut e = Event::new("s", "d", 0);
        e.raw = Some(vec![0x01, 0x67, 0x00, 0xD7]);
        assert_eq!(event_json(&e)["raw"], "016700d7");
    }

    #[test]
    fn a_batch_names_schema_version_2() {
        assert_eq!(BATCH_SCHEMA_VERSION, 2);
        let payload = BatchWriter::new("gw", 0, 100).finish();
        assert_eq!(
            std::str::from_utf8(&payload),
            Ok(r#"{"v":2,"gateway":"gw","sent_ms":0,"records":[]}"#)
        );
    }

    #[test]
    fn batch_stops_at_its_byte_budget() {
        let events: Vec<Vec<u8>> = (0..50).map(|n| stored(&event(n))).collect();
        let mut w = BatchWriter::new("gw", 0, 2_000);
        let taken = events
            .iter()
            .take_while(|e| {
                w.push(&UpstreamRecord {
                    event: &view(e),
                    stream: "s",
                    queued_ms: 0,
                })
            })
            .count();
        assert!(taken > 1 && taken < 50, "took {taken}");
        let payload = w.finish();
        assert!(payload.len() <= 2_000);
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("valid json");
        assert_eq!(v["records"].as_array().map(Vec::len), Some(taken));
    }

    #[test]
    fn an_oversized_record_travels_alone() {
        let e = stored(&event(1));
        let e = view(&e);
        let mut w = BatchWriter::new("gw", 0, 10);
        assert!(w.push(&UpstreamRecord {
            event: &e,
            stream: "s",
            queued_ms: 0
        }));
        assert!(!w.push(&UpstreamRecord {
            event: &e,
            stream: "s",
            queued_ms: 0
        }));
        assert_eq!(w.len(), 1);
    }
}
