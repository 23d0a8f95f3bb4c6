//! `sluice fn test`: runs one function on events from a file, with the
//! production limits and host, and reports every call: emitted events, logs,
//! fuel and time. State starts empty and lives in memory only.
//!
//! The events file has one JSON object per line (blank lines and lines
//! starting with `#` are skipped):
//!
//! ```json
//! {"subject": "coap/t1", "device": "t1", "readings": [{"name": "temperature", "value": 21.5, "unit": "Cel"}], "meta": {"rssi": -71}}
//! {"subject": "coap/t2", "device": "t2", "readings": [{"name": "blob", "type": "bytes", "value": "cafe"}], "meta": {"fw": {"type": "text", "value": "1.2"}}}
//! {"subject": "lorawan/0004a30b001c0530/up", "device": "0004a30b001c0530", "raw": "0367011005670", "device_time_ms": 1700000000000}
//! {"tick": 1700000060000}
//! ```
//!
//! Values are typed as in the upstream record (`docs/mqtt-api.md`): a
//! reading's `type` and a meta value's `{"type", "value"}` may be left out,
//! and then a JSON string is text; bytes need `"type": "bytes"` (hex).
//! Emitted events print in the upstream record's shape.

use crate::config::FunctionConfig;
use crate::functions::{CallReport, Compiled, FunctionSet, Input};
use crate::ids::IdMint;
use crate::metrics::Metrics;
use serde::Deserialize;
use sluice_event::{Event, LazyView, Meta, Reading, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// One line of the events file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// Call the tick entry point at this wall-clock time (ms) instead.
    tick: Option<i64>,
    subject: Option<String>,
    #[serde(default)]
    device: String,
    device_time_ms: Option<i64>,
    #[serde(default)]
    readings: Vec<ReadingLine>,
    #[serde(default)]
    meta: BTreeMap<String, serde_json::Value>,
    /// Hex.
    raw: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingLine {
    name: String,
    /// `number`, `bool`, `text` or `bytes`; from the JSON value if absent.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    value: serde_json::Value,
    #[serde(default)]
    unit: String,
}

/// What to feed the function.
#[derive(Debug)]
enum Step {
    Event(Event),
    Tick(i64),
}

/// Parses the events file; errors name the line.
fn parse(text: &str, origin: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut seq = 0;
    for (n, raw_line) in text.lines().enumerate() {
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = |msg: String| format!("{origin}:{}: {msg}", n + 1);
        let line: Line = serde_json::from_str(trimmed).map_err(|e| at(e.to_string()))?;
        if let Some(t) = line.tick {
            steps.push(Step::Tick(t));
            continue;
        }
        let subject = line
            .subject
            .ok_or_else(|| at("needs `subject` (or `tick`)".into()))?;
        seq += 1;
        let mut event = Event::new(subject, line.device, crate::clock::now_ms());
        event.id = sluice_event::EventId::new(0, seq);
        event.device_time_ms = line.device_time_ms;
        for r in line.readings {
            let value = typed_value(r.kind.as_deref(), &r.value)
                .map_err(|e| at(format!("reading `{}`: {e}", r.name)))?;
            event.readings.push(Reading {
                name: r.name,
                value,
                unit: r.unit,
            });
        }
        for (key, v) in line.meta {
            let value = meta_value(&v).map_err(|e| at(format!("meta `{key}`: {e}")))?;
            event.meta.push(Meta { key, value });
        }
        if let Some(hex) = line.raw {
            event.raw = Some(unhex(&hex).map_err(|e| at(format!("raw: {e}")))?);
        }
        steps.push(Step::Event(event));
    }
    Ok(steps)
}

/// A meta value: bare, or `{"type", "value"}` as in the upstream record.
fn meta_value(v: &serde_json::Value) -> Result<Value, String> {
    let serde_json::Value::Object(m) = v else {
        return typed_value(None, v);
    };
    if let Some(key) = m.keys().find(|k| *k != "type" && *k != "value") {
        return Err(format!("unknown key `{key}`, expected `type` and `value`"));
    }
    let kind = m.get("type").and_then(serde_json::Value::as_str);
    let value = m.get("value").ok_or("needs a `value`")?;
    typed_value(Some(kind.ok_or("needs a `type`")?), value)
}

/// A value of the given type, or of the JSON value's own type (a string is
/// text) when `kind` is absent.
fn typed_value(kind: Option<&str>, v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    match (kind, v) {
        (None | Some("number"), J::Number(n)) => n
            .as_f64()
            .map(Value::Number)
            .ok_or_else(|| "number out of range".into()),
        (None | Some("bool"), J::Bool(b)) => Ok(Value::Bool(*b)),
        (None | Some("text"), J::String(s)) => Ok(Value::Text(s.clone())),
        (Some("bytes"), J::String(s)) => unhex(s).map(Value::Bytes),
        (None, _) => Err("must be a number, a boolean or a string".into()),
        (Some(k @ ("number" | "bool" | "text" | "bytes")), _) => {
            Err(format!("is not a `{k}` value"))
        }
        (Some(k), _) => Err(format!(
            "unknown type `{k}`, expected number, bool, text or bytes"
        )),
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("`{}` is not hex", &s[i..i + 2]))
        })
        .collect()
}

/// Totals over a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls made.
    pub calls: usize,
    /// Calls that failed.
    pub failed: usize,
    /// Events emitted.
    pub emitted: usize,
}

/// Runs `function` on the events in `events_text` and returns the report
/// text and the totals.
pub fn run(
    function: FunctionConfig,
    events_text: &str,
    origin: &str,
) -> Result<(String, Summary), String> {
    let steps = parse(events_text, origin)?;
    let config = crate::config::Config {
        functions: vec![function],
        ..crate::config::Config::parse("", "defaults").map_err(|e| e.to_string())?
    };
    let compiled = Compiled::new(&config).map_err(|e| e.to_string())?;
    let mut set: FunctionSet = compiled
        .start(
            // Inputs are numbered in boot 0, outputs in boot 1: their ids never collide.
            Arc::new(IdMint::new(1)),
            Arc::new(Metrics::default()),
            |_| Ok::<_, String>(BTreeMap::new()),
        )
        .map_err(|e| e.to_string())?;
    let f = &set.functions()[0].config;
    let mut out = format!(
        "function {} ({}), fuel {} per call, memory {}, max {} events / {} per call, state {}\n",
        f.name,
        f.module.display(),
        f.fuel,
        f.memory_max,
        f.max_emit,
        f.max_emit_bytes,
        f.state_max
    );
    let start = set.warm_alone(0);
    describe(&mut out, 0, "start (instantiate, init)", &start);
    if start.outcome.is_err() {
        return Err(format!("the function does not start:\n{out}"));
    }
    let mut summary = Summary::default();
    let mut fuel = Vec::new();
    let mut times = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let (what, report) = match step {
            Step::Event(e) => {
                let bytes = e.encode();
                let cause = LazyView::parse(&bytes).map_err(|err| err.to_string())?;
                let report = set.call_alone(0, Input::Event(&bytes), Some(&cause));
                (format!("event {} ({})", e.subject, e.id), report)
            }
            Step::Tick(t) => (
                format!("tick {t}"),
                set.call_alone(0, Input::Tick(*t), None),
            ),
        };
        summary.calls += 1;
        summary.emitted += report.emitted.len();
        if report.outcome.is_err() {
            summary.failed += 1;
        }
        fuel.push(report.fuel);
        times.push(report.elapsed);
        describe(&mut out, n + 1, &what, &report);
    }
    let _ = writeln!(
        out,
        "summary: {} calls, {} failed, {} events emitted",
        summary.calls, summary.failed, summary.emitted
    );
    if !fuel.is_empty() {
        let mean_fuel = fuel.iter().sum::<u64>() / fuel.len() as u64;
        let mean_time = times.iter().sum::<Duration>() / times.len() as u32;
        let _ = writeln!(
            out,
            "fuel per call: mean {mean_fuel}, max {}; time per call: mean {}, max {}",
            fuel.iter().max().copied().unwrap_or(0),
            micros(mean_time),
            micros(times.iter().max().copied().unwrap_or_default())
        );
    }
    let state = set.functions()[0].state();
    let _ = writeln!(out, "state: {} bytes", state.size());
    for (k, v) in state.entries() {
        let _ = writeln!(out, "  {} = {}", printable(k), printable(v));
    }
    Ok((out, summary))
}

fn describe(out: &mut String, n: usize, what: &str, report: &CallReport) {
    let status = match &report.outcome {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("FAILED: {e}"),
    };
    let _ = writeln!(
        out,
        "#{n} {what}: {status}; fuel {}, {}",
        report.fuel,
        micros(report.elapsed)
    );
    for line in &report.logs {
        let _ = writeln!(out, "  log {}: {}", line.level_name(), line.message);
    }
    if report.logs_dropped > 0 {
        let _ = writeln!(out, "  ({} more log lines dropped)", report.logs_dropped);
    }
    for e in &report.events() {
        let _ = writeln!(out, "  emit {}", crate::record::event_json(e));
    }
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// Text if it is printable UTF-8, hex otherwise.
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_file_lines() {
        let steps = parse(
            "# comment\n\n{\"subject\":\"coap/t1\",\"device\":\"t1\",\"readings\":[{\"name\":\"t\",\"value\":1.5,\"unit\":\"Cel\"}],\"meta\":{\"rssi\":-70},\"raw\":\"0a0B\"}\n{\"tick\":5}\n",
            "f",
        )
        .expect("valid");
        assert_eq!(steps.len(), 2);
        let Step::Event(e) = &steps[0] else {
            panic!("first step is an event")
        };
        assert_eq!(e.number("t"), Some(1.5));
        assert_eq!(e.raw.as_deref(), Some(&[0x0a, 0x0b][..]));
        assert!(matches!(steps[1], Step::Tick(5)));
    }

    #[test]
    fn values_take_the_type_they_name() {
        let steps = parse(
            r#"{"subject": "s", "readings": [{"name": "t", "type": "text", "value": "cafe"}, {"name": "b", "type": "bytes", "value": "cafe"}, {"name": "n", "value": 2}], "meta": {"fw": {"type": "bytes", "value": "01"}, "bn": "x"}}"#,
            "f",
        )
        .expect("valid");
        let Step::Event(e) = &steps[0] else {
            panic!("an event")
        };
        let values: Vec<&Value> = e.readings.iter().map(|r| &r.value).collect();
        assert_eq!(
            values,
            [
                &Value::Text("cafe".into()),
                &Value::Bytes(vec![0xca, 0xfe]),
                &Value::Number(2.0)
            ]
        );
        let meta: Vec<(&str, &Value)> = e.meta.iter().map(|m| (m.key.as_str(), &m.value)).collect();
        assert_eq!(
            meta,
            [
                ("bn", &Value::Text("x".into())),
                ("fw", &Value::Bytes(vec![1]))
            ]
        );
    }

    #[test]
    fn a_value_that_is_not_of_its_type_is_refused() {
        for (line, expected) in [
            (
                r#"{"subject": "s", "readings": [{"name": "t", "type": "number", "value": "1"}]}"#,
                "reading `t`: is not a `number` value",
            ),
            (
                r#"{"subject": "s", "readings": [{"name": "t", "type": "bytes", "value": "xy"}]}"#,
                "reading `t`: `xy` is not hex",
            ),
            (
                r#"{"subject": "s", "readings": [{"name": "t", "type": "blob", "value": "1"}]}"#,
                "reading `t`: unknown type `blob`",
            ),
            (
                r#"{"subject": "s", "meta": {"k": {"value": 1}}}"#,
                "meta `k`: needs a `type`",
            ),
            (
                r#"{"subject": "s", "meta": {"k": {"type": "number", "value": 1, "unit": "V"}}}"#,
                "meta `k`: unknown key `unit`",
            ),
        ] {
            let err = parse(line, "f").expect_err(line);
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err =
            parse("{\"tick\":1}\n{\"device\":\"x\"}\n", "events.jsonl").expect_err("no subject");
        assert!(err.starts_with("events.jsonl:2:"), "{err}");
        let err = parse("{\"subject\":\"a\",\"raw\":\"abc\"}", "e").expect_err("odd hex");
        assert!(err.contains("odd number"), "{err}");
    }
}
