//! What the demo prints: one line per thing worth seeing (a sampled
//! reading, every alert and window, status and health), the live counter
//! line and the final summary. Pure text from data, apart from [`show`].

use super::devices::DeviceTotals;
use super::lora::LoraTotals;
use crate::metrics::MetricsSnapshot;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::{Display, Write};
use std::time::Duration;

/// Prints one line, `kind` in a column of its own. A closed stdout (`| head`)
/// is not an error.
pub fn show(kind: &str, text: impl Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{kind:<8} {text}");
}

/// An upstream batch as `docs/mqtt-api.md` describes it; only the fields
/// the screen uses, unknown ones ignored.
#[derive(Debug, Deserialize)]
pub struct Batch {
    /// The records, in drain order.
    pub records: Vec<Record>,
}

/// One upstream record.
#[derive(Debug, Deserialize)]
pub struct Record {
    /// Gateway-unique id.
    pub id: String,
    /// `coap/<device>`, `fn/<function>/<device>`.
    pub subject: String,
    /// The record a function output was made from.
    #[serde(default)]
    pub cause: Option<String>,
    /// The function that made it.
    #[serde(default)]
    pub function: Option<String>,
    /// Its readings.
    #[serde(default)]
    pub readings: Vec<ReadingJson>,
    /// Its meta.
    #[serde(default)]
    pub meta: HashMap<String, TypedValue>,
}

/// A meta value with its type.
#[derive(Debug, Deserialize)]
pub struct TypedValue {
    /// `number`, `bool`, `text` or `bytes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value, to be read by its type (bytes are a hex string).
    pub value: Value,
}

/// One reading of a record.
#[derive(Debug, Deserialize)]
pub struct ReadingJson {
    /// Its name.
    pub name: String,
    /// `number`, `bool`, `text` or `bytes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value, to be read by its type (bytes are a hex string).
    pub value: Value,
    /// SenML unit, if any.
    #[serde(default)]
    pub unit: Option<String>,
}

/// What a record is, by the function that made it (the demo config's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A device reading, as the CoAP adapter made it.
    Reading,
    /// The reading in °F (`scale`).
    Scaled,
    /// An alarm transition (`threshold`).
    Alert,
    /// A five-second aggregate (`window`).
    Window,
    /// A LoRaWAN frame as the adapter made it (shown once decoded).
    Frame,
    /// A LoRaWAN payload decoded by `cayenne-lpp`.
    Decoded,
    /// A Bluetooth sensor's reading or presence.
    Ble,
    /// Anything else.
    Other,
}

impl Record {
    /// What this record is.
    pub fn kind(&self) -> Kind {
        match self.function.as_deref() {
            None if self.subject.starts_with("lorawan/") && self.subject.ends_with("/up") => {
                Kind::Frame
            }
            None if self.subject.starts_with("ble/") => Kind::Ble,
            None => Kind::Reading,
            Some("scale") => Kind::Scaled,
            Some("cayenne-lpp") => Kind::Decoded,
            Some("threshold") => Kind::Alert,
            Some("window") => Kind::Window,
            Some(_) => Kind::Other,
        }
    }

    fn reading(&self, name: &str) -> Option<&ReadingJson> {
        self.readings.iter().find(|r| r.name == name)
    }
}

/// Lets every `every`-th device reading through to the screen, the first one
/// included; every alert and window is shown regardless.
pub struct Sampler {
    every: u64,
    seen: u64,
}

impl Sampler {
    /// Shows one reading in `every`.
    pub fn new(every: u64) -> Sampler {
        Sampler {
            every: every.max(1),
            seen: 0,
        }
    }

    fn take(&mut self) -> bool {
        self.seen += 1;
        (self.seen - 1).is_multiple_of(self.every)
    }
}

/// The lines a batch deserves, as (kind column, text). A shown reading gets
/// its °F value appended when the `scale` output travels in the same batch.
pub fn batch_lines(batch: &Batch, sampler: &mut Sampler) -> Vec<(&'static str, String)> {
    let scaled: HashMap<&str, &Record> = batch
        .records
        .iter()
        .filter(|r| r.kind() == Kind::Scaled)
        .filter_map(|r| Some((r.cause.as_deref()?, r)))
        .collect();
    let mut lines = Vec::new();
    for r in &batch.records {
        match r.kind() {
            Kind::Reading if sampler.take() => {
                let mut text = format!("{:<18} {}", r.subject, readings_text(&r.readings));
                if let Some(t) = scaled
                    .get(r.id.as_str())
                    .and_then(|s| s.reading("temperature"))
                {
                    let _ = write!(text, "  → {}", reading_text(t));
                }
                lines.push(("reading", text));
            }
            Kind::Reading | Kind::Scaled | Kind::Frame => {}
            Kind::Decoded => {
                let mut text = format!("{:<18} {}", r.subject, readings_text(&r.readings));
                if let Some(m) = r.meta.get("fcnt").and_then(|m| m.value.as_f64()) {
                    let _ = write!(text, "  (FCnt {})", number(m));
                }
                lines.push(("lorawan", text));
            }
            Kind::Ble => lines.push((
                "ble",
                format!("{:<18} {}", r.subject, readings_text(&r.readings)),
            )),
            Kind::Alert => lines.push(("alert", format!("{:<18} {}", r.subject, alert_text(r)))),
            Kind::Window => lines.push((
                "window",
                format!("{:<18} {}", r.subject, window_text(&r.readings)),
            )),
            Kind::Other => lines.push((
                "record",
                format!("{:<18} {}", r.subject, readings_text(&r.readings)),
            )),
        }
    }
    lines
}

/// `temperature=27.4 Cel humidity=41 %RH`.
pub fn readings_text(readings: &[ReadingJson]) -> String {
    let parts: Vec<String> = readings.iter().map(reading_text).collect();
    parts.join(" ")
}

/// `temperature=27.4 Cel`.
fn reading_text(r: &ReadingJson) -> String {
    let mut text = format!("{}={}", r.name, value_text(&r.kind, &r.value));
    if let Some(unit) = r.unit.as_deref().filter(|u| !u.is_empty()) {
        let _ = write!(text, " {unit}");
    }
    text
}

/// Numbers with at most one decimal; text bare; bytes as `0x` and hex.
fn value_text(kind: &str, v: &Value) -> String {
    match (kind, v) {
        (_, Value::Number(n)) => n.as_f64().map_or_else(|| n.to_string(), number),
        ("bytes", Value::String(hex)) => format!("0x{hex}"),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// `temperature=87.1 degF  HIGH (above 86)` or `… CLEAR (below 80)`.
fn alert_text(r: &Record) -> String {
    let meta = |key: &str, kind: &str| r.meta.get(key).filter(|m| m.kind == kind);
    let bound = |key: &str| {
        meta(key, "number")
            .and_then(|m| m.value.as_f64())
            .map(number)
    };
    let state = match meta("alarm", "text").and_then(|m| m.value.as_str()) {
        Some("high") => match bound("high") {
            Some(h) => format!("HIGH (above {h})"),
            None => "HIGH".to_owned(),
        },
        Some("clear") => match bound("low") {
            Some(l) => format!("CLEAR (below {l})"),
            None => "CLEAR".to_owned(),
        },
        Some(other) => other.to_uppercase(),
        None => "ALERT".to_owned(),
    };
    format!("{}  {state}", readings_text(&r.readings))
}

/// `temperature.mean=81.2 degF (79.0…83.1)  humidity.mean=41 %RH (40…42)  (count 12)`.
fn window_text(readings: &[ReadingJson]) -> String {
    let stat = |series: &str, stat: &str| {
        readings
            .iter()
            .find(|r| r.name.strip_prefix(series) == Some(stat))
    };
    let mut parts = Vec::new();
    let mut count = None;
    for mean in readings.iter().filter(|r| r.name.ends_with(".mean")) {
        let series = &mean.name[..mean.name.len() - ".mean".len()];
        let mut text = reading_text(mean);
        if let (Some(lo), Some(hi)) = (stat(series, ".min"), stat(series, ".max")) {
            let _ = write!(
                text,
                " ({}…{})",
                value_text(&lo.kind, &lo.value),
                value_text(&hi.kind, &hi.value)
            );
        }
        parts.push(text);
        count = count.or_else(|| stat(series, ".count").map(|c| value_text(&c.kind, &c.value)));
    }
    if let Some(n) = count {
        parts.push(format!("(count {n})"));
    }
    parts.join("  ")
}

/// The status line's text: `online (version 0.1.0)`, `offline (shutdown)`.
pub fn status_text(status: &Value) -> String {
    let field = |k: &str| status.get(k).and_then(Value::as_str);
    let state = field("state").unwrap_or("?");
    match (field("reason"), field("version")) {
        (Some(reason), _) => format!("{state} ({reason})"),
        (None, Some(version)) => format!("{state} (version {version})"),
        (None, None) => state.to_owned(),
    }
}

/// The health line's text: a few of the counters the gateway published.
pub fn health_text(health: &Value) -> String {
    let c = &health["counters"];
    let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
    format!(
        "uptime {} s · {} events committed · {} function calls · {} batches acked · {} dead letters",
        health["uptime_s"].as_u64().unwrap_or(0),
        n("queue_accepted"),
        n("functions_calls"),
        n("uplink_batches_acked"),
        n("dead_letters"),
    )
}

/// Every rejection the gateway counted: CoAP messages it turned down, events
/// the queue refused.
fn rejections(m: &MetricsSnapshot) -> u64 {
    let adapters: u64 = m
        .adapters
        .values()
        .map(|a| a.rejected.values().sum::<u64>() + a.events_refused)
        .sum();
    adapters + m.queue_rejected
}

/// The live counter line.
pub fn stats_text(m: &MetricsSnapshot) -> String {
    let coap = m.adapters.get("coap").cloned().unwrap_or_default();
    let modbus = m.adapters.get("modbus").cloned().unwrap_or_default();
    let lorawan = m.adapters.get("lorawan").cloned().unwrap_or_default();
    format!(
        "coap in {} · modbus answers {} · lorawan datagrams {} · accepted {} · committed {} · fn calls {} · dead letters {} · queued {} · batches acked {} · rejected {}",
        coap.messages_in,
        modbus.messages_in,
        lorawan.messages_in,
        coap.events_accepted + modbus.events_accepted + lorawan.events_accepted,
        m.queue_accepted,
        m.functions_calls,
        m.dead_letters,
        m.queue_records,
        m.uplink_batches_acked,
        rejections(m),
    )
}

/// What the viewer saw upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ViewerTotals {
    pub batches: u64,
    pub records: u64,
    pub readings: u64,
    pub scaled: u64,
    pub alerts: u64,
    pub windows: u64,
    pub decoded: u64,
    pub ble: u64,
    pub statuses: u64,
    pub healths: u64,
    pub undecodable: u64,
}

/// The final summary, one line per part; `name  text`.
pub fn summary(
    ran: Duration,
    devices: &DeviceTotals,
    lora: &LoraTotals,
    m: &MetricsSnapshot,
    seen: &ViewerTotals,
) -> Vec<(&'static str, String)> {
    let coap = m.adapters.get("coap").cloned().unwrap_or_default();
    let modbus = m.adapters.get("modbus").cloned().unwrap_or_default();
    let lorawan = m.adapters.get("lorawan").cloned().unwrap_or_default();
    let ble = m.adapters.get("ble").cloned().unwrap_or_default();
    let ble_drops: Vec<String> = ble
        .rejected
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let refusals: Vec<String> = lorawan
        .rejected
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let refusals = if refusals.is_empty() {
        String::new()
    } else {
        format!(" ({})", refusals.join(", "))
    };
    let reasons: Vec<String> = coap
        .rejected
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let faults: Vec<String> = modbus
        .rejected
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let faults = if faults.is_empty() {
        "no faults".to_owned()
    } else {
        format!("faults: {}", faults.join(", "))
    };
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    vec![
        ("ran", format!("{:.1} s", ran.as_secs_f64())),
        (
            "devices",
            format!(
                "{} requests ({} CON, {} NON, {} retransmissions): {} readings stored, \
                 {} malformed on purpose ({} answered 4.00), {} refused, {} unanswered",
                devices.sent,
                devices.confirmable,
                devices.sent - devices.confirmable,
                devices.retransmissions,
                devices.stored,
                devices.malformed,
                devices.malformed_refused,
                devices.refused,
                devices.unanswered,
            ),
        ),
        (
            "gateway",
            format!(
                "{} CoAP messages in, {} events accepted, {} rejected{reasons}; {} events committed",
                coap.messages_in,
                coap.events_accepted
                    + modbus.events_accepted
                    + lorawan.events_accepted
                    + ble.events_accepted,
                rejections(m),
                m.queue_accepted,
            ),
        ),
        (
            "modbus",
            format!(
                "{} answers from the meters, {} readings and status events accepted, {faults}",
                modbus.messages_in, modbus.events_accepted,
            ),
        ),
        (
            "lorawan",
            format!(
                "{} JoinRequests, {} joined; {} uplinks sent, {} PUSH_ACKs, {} downlinks; \
                 {} events accepted, {} rejected{refusals}",
                lora.join_requests,
                lora.joined,
                lora.uplinks,
                lora.push_acks,
                lora.downlinks,
                lorawan.events_accepted,
                lorawan.rejected.values().sum::<u64>(),
            ),
        ),
        (
            "ble",
            format!(
                "{} advertisements in, {} readings and presence events accepted, dropped: {}",
                ble.messages_in,
                ble.events_accepted,
                if ble_drops.is_empty() {
                    "none".to_owned()
                } else {
                    ble_drops.join(", ")
                },
            ),
        ),
        (
            "functions",
            format!(
                "{} calls, {} failed, {} events emitted, {} dead letters",
                m.functions_calls, m.functions_failed, m.functions_emitted, m.dead_letters,
            ),
        ),
        (
            "uplink",
            format!(
                "{} batches sent, {} acknowledged ({} records), {} records still queued{}",
                m.uplink_batches_sent,
                m.uplink_batches_acked,
                m.uplink_records_acked,
                m.queue_records,
                if m.queue_records > 0 {
                    " (a gateway sends them after its next start; the demo removes its data)"
                } else {
                    ""
                },
            ),
        ),
        (
            "upstream",
            format!(
                "{}, {}: {}, {} in °F, {}, {}, {} LoRaWAN payloads decoded; {}, {}",
                counted(seen.batches, "batch", "batches"),
                counted(seen.records, "record", "records"),
                counted(seen.readings, "reading", "readings"),
                seen.scaled,
                counted(seen.alerts, "alert", "alerts"),
                counted(seen.windows, "window", "windows"),
                seen.decoded,
                counted(seen.statuses, "status message", "status messages"),
                counted(seen.healths, "health message", "health messages"),
            ),
        ),
    ]
}

/// `1 alert`, `3 alerts`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(records: Value) -> Batch {
        serde_json::from_value(
            json!({ "v": 2, "gateway": "demo", "sent_ms": 1, "records": records }),
        )
        .expect("batch")
    }

    fn reading(id: &str, device: &str, t: f64) -> Value {
        json!({
            "id": id, "stream": "telemetry", "subject": format!("coap/{device}"), "device": device,
            "device_time_ms": null, "gateway_time_ms": 1, "queued_ms": 2, "cause": null, "function": null,
            "readings": [{"name": "temperature", "type": "number", "value": t, "unit": "Cel"}, {"name": "humidity", "type": "number", "value": 41.0, "unit": "%RH"}],
            "meta": {"bn": {"type": "text", "value": "urn:dev:demo:dev-3:"}}, "raw": null
        })
    }

    /// Meta as records carry it: key to `{"type", "value"}`.
    fn meta(entries: &[(&str, &str, Value)]) -> Value {
        let map: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(k, t, v)| ((*k).to_owned(), json!({"type": t, "value": v})))
            .collect();
        Value::Object(map)
    }

    fn output(function: &str, cause: &str, device: &str, readings: Value, meta: Value) -> Value {
        json!({
            "id": format!("{cause}-{function}"), "stream": "telemetry",
            "subject": format!("fn/{function}/{device}"), "device": device,
            "cause": cause, "function": function, "readings": readings, "meta": meta, "raw": null
        })
    }

    #[test]
    fn a_reading_shows_its_units_and_its_value_in_fahrenheit() {
        let b = batch(json!([
            reading("a1", "dev-3", 27.4),
            output(
                "scale",
                "a1",
                "dev-3",
                json!([{"name": "temperature", "type": "number", "value": 81.32, "unit": "degF"}]),
                json!({})
            ),
        ]));
        let lines = batch_lines(&b, &mut Sampler::new(1));
        assert_eq!(
            lines,
            [(
                "reading",
                "coap/dev-3         temperature=27.4 Cel humidity=41 %RH  → temperature=81.3 degF"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn readings_are_sampled_but_alerts_and_windows_always_shown() {
        let b = batch(json!([
            reading("a1", "dev-1", 20.0),
            reading("a2", "dev-1", 20.1),
            reading("a3", "dev-1", 20.2),
            output(
                "threshold",
                "a3",
                "dev-1",
                json!([{"name": "temperature", "type": "number", "value": 87.1, "unit": "degF"}]),
                meta(&[
                    ("alarm", "text", json!("high")),
                    ("high", "number", json!(86.0)),
                    ("low", "number", json!(80.0))
                ])
            ),
            output(
                "threshold",
                "a2",
                "dev-1",
                json!([{"name": "temperature", "type": "number", "value": 79.5, "unit": "degF"}]),
                meta(&[
                    ("alarm", "text", json!("clear")),
                    ("high", "number", json!(86.0)),
                    ("low", "number", json!(80.0))
                ])
            ),
            output(
                "window",
                "t",
                "dev-1",
                json!([
                    {"name": "temperature.count", "type": "number", "value": 12.0},
                    {"name": "temperature.min", "type": "number", "value": 79.0, "unit": "degF"},
                    {"name": "temperature.max", "type": "number", "value": 83.14, "unit": "degF"},
                    {"name": "temperature.mean", "type": "number", "value": 81.23, "unit": "degF"},
                    {"name": "humidity.count", "type": "number", "value": 12.0},
                    {"name": "humidity.min", "type": "number", "value": 40.0, "unit": "%RH"},
                    {"name": "humidity.max", "type": "number", "value": 42.0, "unit": "%RH"},
                    {"name": "humidity.mean", "type": "number", "value": 41.0, "unit": "%RH"},
                ]),
                meta(&[
                    ("window_start_ms", "number", json!(1.0)),
                    ("window_end_ms", "number", json!(2.0))
                ])
            ),
        ]));
        let lines = batch_lines(&b, &mut Sampler::new(2));
        let kinds: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["reading", "reading", "alert", "alert", "window"]);
        assert!(lines[0].1.contains("temperature=20 Cel"), "{lines:?}");
        assert!(lines[1].1.contains("temperature=20.2 Cel"), "{lines:?}");
        assert_eq!(
            lines[2].1,
            "fn/threshold/dev-1 temperature=87.1 degF  HIGH (above 86)"
        );
        assert_eq!(
            lines[3].1,
            "fn/threshold/dev-1 temperature=79.5 degF  CLEAR (below 80)"
        );
        assert_eq!(
            lines[4].1,
            "fn/window/dev-1    temperature.mean=81.2 degF (79…83.1)  humidity.mean=41 %RH (40…42)  (count 12)"
        );
    }

    #[test]
    fn text_and_bytes_read_by_their_type() {
        let b = batch(json!([output(
            "decode",
            "a1",
            "dev-1",
            json!([
                {"name": "label", "type": "text", "value": "cafe"},
                {"name": "blob", "type": "bytes", "value": "cafe"},
                {"name": "door", "type": "bool", "value": true},
            ]),
            json!({})
        )]));
        let lines = batch_lines(&b, &mut Sampler::new(1));
        assert_eq!(
            lines,
            [(
                "record",
                "fn/decode/dev-1    label=cafe blob=0xcafe door=true".to_owned()
            )]
        );
    }

    #[test]
    fn status_and_health_read_as_one_line() {
        let online = json!({"v": 1, "state": "online", "gateway": "demo", "version": "0.1.0", "since_ms": 5});
        assert_eq!(status_text(&online), "online (version 0.1.0)");
        let offline = json!({"v": 1, "state": "offline", "gateway": "demo", "version": "0.1.0", "reason": "shutdown"});
        assert_eq!(status_text(&offline), "offline (shutdown)");
        let health = json!({"uptime_s": 10, "counters": {"queue_accepted": 5, "functions_calls": 7, "uplink_batches_acked": 2, "dead_letters": 0}});
        assert_eq!(
            health_text(&health),
            "uptime 10 s · 5 events committed · 7 function calls · 2 batches acked · 0 dead letters"
        );
    }

    #[test]
    fn the_summary_counts_every_rejection() {
        let metrics = crate::metrics::Metrics::default();
        let coap = metrics.adapter("coap");
        coap.reject(sluice_coap::rejection::Rejection::Malformed);
        sluice_adapter_common::Counters::add(&coap.events_accepted, 9);
        let m = metrics.snapshot();
        assert!(
            stats_text(&m).contains("accepted 9 ·"),
            "{}",
            stats_text(&m)
        );
        assert!(stats_text(&m).ends_with("rejected 1"), "{}", stats_text(&m));
        let lines = summary(
            Duration::from_secs(12),
            &DeviceTotals::default(),
            &LoraTotals::default(),
            &m,
            &ViewerTotals::default(),
        );
        let gateway = &lines
            .iter()
            .find(|(k, _)| *k == "gateway")
            .expect("gateway")
            .1;
        assert!(
            gateway.contains("9 events accepted, 1 rejected (decode/malformed 1)"),
            "{gateway}"
        );
    }
}
