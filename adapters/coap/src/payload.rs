//! Request payloads to readings, by CoAP Content-Format: a flat JSON object
//! (50), CBOR (60), SenML JSON (110) and SenML CBOR (112) (see [`crate::senml`]),
//! and a plain-text number (0). Pure: no I/O.
//!
//! JSON and CBOR are first parsed into one small data model, `Item`, so that
//! the object rules (and SenML's record rules) are written once for both.
//!
//! # JSON and CBOR objects
//!
//! The payload is one object (CBOR: one map); it becomes one [`Sample`]:
//!
//! - every member is a reading named after its key: a number becomes
//!   [`Value::Number`], a boolean [`Value::Bool`], a string [`Value::Text`],
//!   a CBOR byte string [`Value::Bytes`]; the unit is empty;
//! - nested objects are flattened with `.`: `{"env": {"t": 1}}` is `env.t`;
//! - `null` members are skipped; arrays are refused (with their key);
//! - CBOR integer keys are read as their decimal text (`{1: 5}` is `1`);
//! - the top-level key `time` or `ts` (a number) is the sample's time and not
//!   a reading: milliseconds since the Unix epoch when above 10^11, seconds
//!   otherwise (10^11 s is the year 5138, 10^11 ms is 1973);
//! - an object with no readings, two readings of the same name, empty keys,
//!   non-finite numbers and more than [`MAX_READINGS`] readings are refused.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sluice_event::{Event, Meta, Reading, Value};

/// The content formats the adapter reads (CoAP Content-Format numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain;charset=utf-8` (0): one number.
    Text,
    /// `application/json` (50): a flat object of name → value.
    Json,
    /// `application/cbor` (60): a map of name → value.
    Cbor,
    /// `application/senml+json` (110).
    SenmlJson,
    /// `application/senml+cbor` (112).
    SenmlCbor,
}

impl Format {
    /// The format with Content-Format number `n`, if the adapter reads it.
    pub fn from_number(n: u16) -> Option<Format> {
        match n {
            0 => Some(Format::Text),
            50 => Some(Format::Json),
            60 => Some(Format::Cbor),
            110 => Some(Format::SenmlJson),
            112 => Some(Format::SenmlCbor),
            _ => None,
        }
    }
}

/// Readings taken at one time (SenML packs may hold several times).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When the device took them (ms since the Unix epoch), if it said.
    pub time_ms: Option<i64>,
    /// The readings.
    pub readings: Vec<Reading>,
    /// Extra facts from the payload (for example the SenML base name).
    pub meta: Vec<Meta>,
}

/// Why a payload was not understood; the text goes back to the device in a
/// `4.00` diagnostic payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Nothing to read.
    #[error("empty payload")]
    Empty,
    /// The bytes do not parse in the announced format, or hold no usable readings.
    #[error("{0}")]
    Malformed(String),
}

/// Most readings one JSON or CBOR object may carry; bounds the work per request.
pub const MAX_READINGS: usize = 1000;

/// Largest time accepted, in ms either side of the Unix epoch (the end of the
/// year 9999); anything further is a device bug, not a measurement.
pub(crate) const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Decodes a payload. `name` names the reading of a plain-text number;
/// `now_ms` resolves SenML's relative times.
pub fn decode(
    format: Format,
    payload: &[u8],
    name: &str,
    now_ms: i64,
) -> Result<Vec<Sample>, PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    match format {
        Format::Text => decode_text(payload, name),
        Format::Json => decode_object(parse_json(payload)?, "JSON payload is not an object"),
        Format::Cbor => decode_object(parse_cbor(payload)?, "CBOR payload is not a map"),
        Format::SenmlJson => crate::senml::decode_json(payload, now_ms),
        Format::SenmlCbor => crate::senml::decode_cbor(payload, now_ms),
    }
}

/// One event per sample, subject `coap/<device>`, stamped with `now_ms`.
pub fn to_events(device: &str, samples: Vec<Sample>, now_ms: i64) -> Vec<Event> {
    samples
        .into_iter()
        .map(|s| {
            let mut e = Event::new(format!("coap/{device}"), device, now_ms);
            e.device_time_ms = s.time_ms;
            e.readings = s.readings;
            e.meta = s.meta;
            e
        })
        .collect()
}

/// A plain-text number (or `true`/`false`), surrounding whitespace ignored.
fn decode_text(payload: &[u8], name: &str) -> Result<Vec<Sample>, PayloadError> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| malformed("text payload is not UTF-8"))?
        .trim();
    let value = match text {
        "" => return Err(PayloadError::Empty),
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        // `parse` also takes `inf` and `NaN`, which are not readings.
        _ => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Value::Number(n),
            _ => {
                return Err(malformed(format!(
                    "text payload {} is not a number",
                    quoted(text)
                )));
            }
        },
    };
    Ok(vec![Sample {
        time_ms: None,
        readings: vec![Reading {
            name: name.to_owned(),
            value,
            unit: String::new(),
        }],
        meta: Vec::new(),
    }])
}

/// A JSON object or CBOR map to one sample (rules in the module docs).
fn decode_object(item: Item, not_a_map: &str) -> Result<Vec<Sample>, PayloadError> {
    let Item::Map(entries) = item else {
        return Err(malformed(not_a_map));
    };
    let mut object = FlatObject::default();
    for (key, value) in entries {
        let key = key.into_text();
        if key.is_empty() {
            return Err(malformed("empty key"));
        } else if key == "time" || key == "ts" {
            object.set_time(&key, value)?;
        } else {
            object.add(key, value)?;
        }
    }
    if object.readings.is_empty() {
        return Err(malformed("no readings"));
    }
    Ok(vec![Sample {
        time_ms: object.time_ms,
        readings: object.readings,
        meta: Vec::new(),
    }])
}

/// The readings of a JSON object or CBOR map, gathered while flattening it.
#[derive(Default)]
struct FlatObject {
    time_ms: Option<i64>,
    readings: Vec<Reading>,
    names: HashSet<String>,
}

impl FlatObject {
    /// Reads the top-level `time`/`ts` member.
    fn set_time(&mut self, key: &str, value: Item) -> Result<(), PayloadError> {
        let t = match value {
            Item::Null => return Ok(()),
            Item::Number(t) => t,
            _ => return Err(malformed(format!("`{key}` is not a number"))),
        };
        if self.time_ms.is_some() {
            return Err(malformed(format!("duplicate time key `{key}`")));
        }
        let ms = if t > 1e11 { t } else { t * 1000.0 };
        self.time_ms = Some(time_ms(ms).ok_or_else(|| malformed(format!("`{key}` out of range")))?);
        Ok(())
    }

    /// Adds the member `name` (its full, dotted name), recursing into nested
    /// objects.
    fn add(&mut self, name: String, value: Item) -> Result<(), PayloadError> {
        let value = match value {
            Item::Null => return Ok(()),
            Item::Bool(b) => Value::Bool(b),
            Item::Number(n) if n.is_finite() => Value::Number(n),
            Item::Number(_) => {
                return Err(malformed(format!(
                    "{} is not a finite number",
                    quoted(&name)
                )));
            }
            Item::Text(s) => Value::Text(s),
            Item::Bytes(b) => Value::Bytes(b),
            Item::Array(_) => {
                return Err(malformed(format!(
                    "array at {} is not supported",
                    quoted(&name)
                )));
            }
            Item::Map(entries) => {
                for (key, value) in entries {
                    let key = key.into_text();
                    if key.is_empty() {
                        return Err(malformed(format!("empty key in {}", quoted(&name))));
                    }
                    self.add(format!("{name}.{key}"), value)?;
                }
                return Ok(());
            }
        };
        if self.readings.len() == MAX_READINGS {
            return Err(malformed(format!("too many readings (max {MAX_READINGS})")));
        }
        if !self.names.insert(name.clone()) {
            return Err(malformed(format!("duplicate reading {}", quoted(&name))));
        }
        self.readings.push(Reading {
            name,
            value,
            unit: String::new(),
        });
        Ok(())
    }
}

/// A JSON value or CBOR data item, reduced to what the decoders look at.
///
/// Maps keep their entries in payload order and keep duplicate keys, so that
/// readings come out in the order the device sent them and duplicates can be
/// refused rather than silently dropped.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// JSON `null`, CBOR null or undefined.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any number: JSON numbers, CBOR integers, floats and decimal fractions.
    Number(f64),
    /// A text string.
    Text(String),
    /// A CBOR byte string (JSON has none).
    Bytes(Vec<u8>),
    /// An array.
    Array(Vec<Item>),
    /// An object or map, in payload order.
    Map(Vec<(Key, Item)>),
}

/// A map key: JSON keys are text, CBOR keys may also be integers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Key {
    /// A text key.
    Text(String),
    /// An integer key (CBOR only), e.g. SenML's labels.
    Int(i128),
}

impl Key {
    /// The key as text; integers in decimal.
    pub(crate) fn into_text(self) -> String {
        match self {
            Key::Text(s) => s,
            Key::Int(n) => n.to_string(),
        }
    }
}

/// Parses one JSON value (trailing whitespace allowed, nothing else).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Item, PayloadError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(format!("invalid JSON: {e}")))
}

/// Parses one CBOR data item; trailing bytes are refused.
pub(crate) fn parse_cbor(bytes: &[u8]) -> Result<Item, PayloadError> {
    use ciborium::de::Error;
    let mut rest = bytes;
    let value: ciborium::Value = ciborium::from_reader(&mut rest).map_err(|e| {
        malformed(match e {
            Error::Io(_) => "truncated CBOR".to_owned(),
            Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
            Error::Semantic(_, msg) => format!("invalid CBOR: {msg}"),
            Error::RecursionLimitExceeded => "CBOR nested too deeply".to_owned(),
        })
    })?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after CBOR item"));
    }
    Item::from_cbor(value)
}

/// CBOR tag of a decimal fraction `[exponent, mantissa]` (RFC 8949 §3.4.4),
/// which RFC 8428 §6 allows for SenML numbers.
const TAG_DECIMAL_FRACTION: u64 = 4;
/// CBOR tag that only marks the data as CBOR (RFC 8949 §3.4.6).
const TAG_SELF_DESCRIBED: u64 = 55799;

impl Item {
    /// Converts a parsed CBOR value. Only decimal fractions and the
    /// self-described CBOR mark are understood among tags; any other tag would
    /// change the meaning of its content, so it is refused.
    fn from_cbor(value: ciborium::Value) -> Result<Item, PayloadError> {
        use ciborium::Value as C;
        Ok(match value {
            C::Null => Item::Null,
            C::Bool(b) => Item::Bool(b),
            C::Integer(n) => Item::Number(i128::from(n) as f64),
            C::Float(f) => Item::Number(f),
            C::Text(s) => Item::Text(s),
            C::Bytes(b) => Item::Bytes(b),
            C::Array(items) => Item::Array(
                items
                    .into_iter()
                    .map(Item::from_cbor)
                    .collect::<Result<_, _>>()?,
            ),
            C::Map(entries) => Item::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key = match k {
                            C::Text(s) => Key::Text(s),
                            C::Integer(n) => Key::Int(i128::from(n)),
                            _ => return Err(malformed("CBOR map key is not text or integer")),
                        };
                        Ok((key, Item::from_cbor(v)?))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            C::Tag(TAG_SELF_DESCRIBED, inner) => Item::from_cbor(*inner)?,
            C::Tag(TAG_DECIMAL_FRACTION, inner) => Item::Number(decimal_fraction(*inner)?),
            C::Tag(tag, _) => return Err(malformed(format!("unsupported CBOR tag {tag}"))),
            _ => return Err(malformed("unsupported CBOR value")),
        })
    }
}

/// The value of a decimal fraction's content `[exponent, mantissa]`.
fn decimal_fraction(content: ciborium::Value) -> Result<f64, PayloadError> {
    use ciborium::Value as C;
    let bad = || malformed("bad CBOR decimal fraction");
    let C::Array(parts) = content else {
        return Err(bad());
    };
    let [C::Integer(exponent), C::Integer(mantissa)] = parts.as_slice() else {
        return Err(bad());
    };
    // Beyond ±400 the result is 0 or infinite anyway; clamping keeps the cast exact.
    let exponent = i128::from(*exponent).clamp(-400, 400) as i32;
    let mantissa = i128::from(*mantissa) as f64;
    // Dividing by an exact power of ten rounds once, so `[-1, 231]` is exactly 23.1.
    Ok(if exponent >= 0 {
        mantissa * 10f64.powi(exponent)
    } else {
        mantissa / 10f64.powi(-exponent)
    })
}

impl<'de> Deserialize<'de> for Item {
    /// Reads JSON (through serde_json) into an [`Item`], keeping member order
    /// and duplicate keys, which `serde_json::Value` would not.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Item, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
        Ok(Item::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Item, E> {
        Ok(Item::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Item, D::Error> {
        Item::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Item, E> {
        Ok(Item::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Item, E> {
        Ok(Item::Number(n as f64))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Item, E> {
        Ok(Item::Number(n as f64))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Item, E> {
        Ok(Item::Number(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Item, E> {
        Ok(Item::Text(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Item, E> {
        Ok(Item::Text(s))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Item, E> {
        Ok(Item::Bytes(b.to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Item::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Item>()? {
            entries.push((Key::Text(key), value));
        }
        Ok(Item::Map(entries))
    }
}

/// Milliseconds as an `i64`, rounded, if within ±[`MAX_TIME_MS`].
pub(crate) fn time_ms(ms: f64) -> Option<i64> {
    let ms = ms.round();
    // NaN fails the comparison too.
    (ms.abs() <= MAX_TIME_MS as f64).then_some(ms as i64)
}

/// A [`PayloadError::Malformed`] with `msg`.
pub(crate) fn malformed(msg: impl Into<String>) -> PayloadError {
    PayloadError::Malformed(msg.into())
}

/// Device-supplied text for an error message: in backquotes, cut to 32
/// characters, control characters escaped (the message is one line of a
/// diagnostic payload).
pub(crate) fn quoted(s: &str) -> String {
    const MAX: usize = 32;
    let mut out = String::from("`");
    out.extend(s.chars().take(MAX).flat_map(char::escape_debug));
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    /// Decodes and compares the one sample's time and readings.
    fn check(format: Format, payload: &[u8], time_ms: Option<i64>, readings: &[(&str, Value)]) {
        let samples = decode(format, payload, "value", NOW).expect("payload decodes");
        let expected = Sample {
            time_ms,
            readings: readings
                .iter()
                .map(|(name, value)| Reading {
                    name: (*name).to_owned(),
                    value: value.clone(),
                    unit: String::new(),
                })
                .collect(),
            meta: Vec::new(),
        };
        assert_eq!(samples, vec![expected]);
    }

    /// Decodes and expects [`PayloadError::Malformed`] with `message`.
    fn check_err(format: Format, payload: &[u8], message: &str) {
        assert_eq!(
            decode(format, payload, "value", NOW),
            Err(PayloadError::Malformed(message.to_owned()))
        );
    }

    /// CBOR encoding of `value`.
    fn cbor(value: ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).expect("CBOR encodes");
        out
    }

    /// A CBOR map from text keys.
    fn cbor_map(entries: Vec<(&str, ciborium::Value)>) -> ciborium::Value {
        ciborium::Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (ciborium::Value::Text(k.to_owned()), v))
                .collect(),
        )
    }

    fn num(n: f64) -> Value {
        Value::Number(n)
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    #[test]
    fn content_format_numbers() {
        assert_eq!(Format::from_number(0), Some(Format::Text));
        assert_eq!(Format::from_number(50), Some(Format::Json));
        assert_eq!(Format::from_number(60), Some(Format::Cbor));
        assert_eq!(Format::from_number(110), Some(Format::SenmlJson));
        assert_eq!(Format::from_number(112), Some(Format::SenmlCbor));
        assert_eq!(Format::from_number(40), None); // link-format
    }

    #[test]
    fn empty_payload_in_every_format() {
        for format in [
            Format::Text,
            Format::Json,
            Format::Cbor,
            Format::SenmlJson,
            Format::SenmlCbor,
        ] {
            assert_eq!(decode(format, b"", "value", NOW), Err(PayloadError::Empty));
        }
    }

    // Plain text.

    #[test]
    fn text_number() {
        check(Format::Text, b"21.5", None, &[("value", num(21.5))]);
    }

    #[test]
    fn text_number_with_whitespace_and_exponent() {
        check(
            Format::Text,
            b" -1.5e2\r\n",
            None,
            &[("value", num(-150.0))],
        );
    }

    #[test]
    fn text_booleans() {
        check(Format::Text, b"true", None, &[("value", Value::Bool(true))]);
        check(
            Format::Text,
            b"false\n",
            None,
            &[("value", Value::Bool(false))],
        );
    }

    #[test]
    fn text_only_whitespace_is_empty() {
        assert_eq!(
            decode(Format::Text, b" \n", "value", NOW),
            Err(PayloadError::Empty)
        );
    }

    #[test]
    fn text_garbage() {
        check_err(Format::Text, b"abc", "text payload `abc` is not a number");
    }

    #[test]
    fn text_not_finite() {
        check_err(Format::Text, b"NaN", "text payload `NaN` is not a number");
        check_err(Format::Text, b"inf", "text payload `inf` is not a number");
    }

    #[test]
    fn text_long_garbage_is_cut_and_escaped() {
        check_err(
            Format::Text,
            b"temperature is twenty-one and a half degrees",
            "text payload `temperature is twenty-one and a …` is not a number",
        );
        check_err(
            Format::Text,
            b"1\n2",
            "text payload `1\\n2` is not a number",
        );
    }

    #[test]
    fn text_not_utf8() {
        check_err(Format::Text, &[0xff, 0x31], "text payload is not UTF-8");
    }

    // JSON objects.

    #[test]
    fn json_flat_in_payload_order() {
        check(
            Format::Json,
            br#"{"temp": 21.5, "door": true, "state": "idle", "count": 3}"#,
            None,
            &[
                ("temp", num(21.5)),
                ("door", Value::Bool(true)),
                ("state", text("idle")),
                ("count", num(3.0)),
            ],
        );
    }

    #[test]
    fn json_nested_objects_are_flattened() {
        check(
            Format::Json,
            br#"{"env": {"t": 1, "air": {"rh": 40}}, "bat": 3.1}"#,
            None,
            &[
                ("env.t", num(1.0)),
                ("env.air.rh", num(40.0)),
                ("bat", num(3.1)),
            ],
        );
    }

    #[test]
    fn json_null_is_skipped() {
        check(
            Format::Json,
            br#"{"a": null, "b": 2}"#,
            None,
            &[("b", num(2.0))],
        );
    }

    #[test]
    fn json_time_in_seconds() {
        check(
            Format::Json,
            br#"{"time": 1700000000, "t": 20}"#,
            Some(1_700_000_000_000),
            &[("t", num(20.0))],
        );
    }

    #[test]
    fn json_time_fractional_seconds() {
        check(
            Format::Json,
            br#"{"ts": 1700000000.25, "t": 20}"#,
            Some(1_700_000_000_250),
            &[("t", num(20.0))],
        );
    }

    #[test]
    fn json_ts_in_milliseconds() {
        check(
            Format::Json,
            br#"{"t": 20, "ts": 1700000000123}"#,
            Some(1_700_000_000_123),
            &[("t", num(20.0))],
        );
    }

    #[test]
    fn json_time_only_at_top_level() {
        check(
            Format::Json,
            br#"{"gps": {"time": 5}}"#,
            None,
            &[("gps.time", num(5.0))],
        );
    }

    #[test]
    fn json_time_errors() {
        check_err(
            Format::Json,
            br#"{"time": "noon", "t": 1}"#,
            "`time` is not a number",
        );
        check_err(
            Format::Json,
            br#"{"time": 1, "ts": 2, "t": 1}"#,
            "duplicate time key `ts`",
        );
        check_err(
            Format::Json,
            br#"{"ts": 1e300, "t": 1}"#,
            "`ts` out of range",
        );
    }

    #[test]
    fn json_array_is_refused_with_its_key() {
        check_err(
            Format::Json,
            br#"{"env": {"t": [1, 2]}}"#,
            "array at `env.t` is not supported",
        );
    }

    #[test]
    fn json_no_readings() {
        check_err(Format::Json, br#"{}"#, "no readings");
        check_err(
            Format::Json,
            br#"{"time": 1700000000, "a": null}"#,
            "no readings",
        );
    }

    #[test]
    fn json_not_an_object() {
        check_err(Format::Json, b"[1, 2]", "JSON payload is not an object");
        check_err(Format::Json, b"21.5", "JSON payload is not an object");
    }

    #[test]
    fn json_duplicate_reading() {
        check_err(
            Format::Json,
            br#"{"a": 1, "a": 2}"#,
            "duplicate reading `a`",
        );
        check_err(
            Format::Json,
            br#"{"a.b": 1, "a": {"b": 2}}"#,
            "duplicate reading `a.b`",
        );
    }

    #[test]
    fn json_empty_key() {
        check_err(Format::Json, br#"{"": 1}"#, "empty key");
        check_err(Format::Json, br#"{"env": {"": 1}}"#, "empty key in `env`");
    }

    #[test]
    fn json_syntax_error() {
        check_err(
            Format::Json,
            br#"{"a": }"#,
            "invalid JSON: expected value at line 1 column 7",
        );
        check_err(
            Format::Json,
            br#"{"a": 1} x"#,
            "invalid JSON: trailing characters at line 1 column 10",
        );
    }

    #[test]
    fn json_too_many_readings() {
        let members: Vec<String> = (0..=MAX_READINGS)
            .map(|i| format!("\"r{i}\": {i}"))
            .collect();
        let payload = format!("{{{}}}", members.join(","));
        check_err(
            Format::Json,
            payload.as_bytes(),
            "too many readings (max 1000)",
        );
    }

    // CBOR maps.

    #[test]
    fn cbor_flat_map() {
        use ciborium::Value as C;
        let payload = cbor(cbor_map(vec![
            ("temp", C::Float(21.5)),
            ("count", C::Integer(7.into())),
            ("on", C::Bool(false)),
            ("fw", C::Text("1.2.0".into())),
            ("raw", C::Bytes(vec![0xde, 0xad])),
            ("env", cbor_map(vec![("rh", C::Integer(40.into()))])),
            ("skip", C::Null),
            ("ts", C::Integer(1_700_000_000.into())),
        ]));
        check(
            Format::Cbor,
            &payload,
            Some(1_700_000_000_000),
            &[
                ("temp", num(21.5)),
                ("count", num(7.0)),
                ("on", Value::Bool(false)),
                ("fw", text("1.2.0")),
                ("raw", Value::Bytes(vec![0xde, 0xad])),
                ("env.rh", num(40.0)),
            ],
        );
    }

    #[test]
    fn cbor_integer_keys_are_decimal_text() {
        check(
            Format::Cbor,
            &[
                0xa2, // map(2)
                0x01, 0x18, 0x2a, // 1: 42
                0x20, 0xf5, // -1: true
            ],
            None,
            &[("1", num(42.0)), ("-1", Value::Bool(true))],
        );
    }

    #[test]
    fn cbor_decimal_fraction() {
        check(
            Format::Cbor,
            &[
                0xa1, // map(1)
                0x61, b't', // "t"
                0xc4, 0x82, 0x20, 0x18, 0xe7, // 4([-1, 231]) = 23.1
            ],
            None,
            &[("t", num(23.1))],
        );
    }

    #[test]
    fn cbor_self_described_mark() {
        check(
            Format::Cbor,
            &[
                0xd9, 0xd9, 0xf7, // tag 55799
                0xa1, 0x61, b't', 0x05, // {"t": 5}
            ],
            None,
            &[("t", num(5.0))],
        );
    }

    #[test]
    fn cbor_other_tag() {
        check_err(
            Format::Cbor,
            &[0xa1, 0x61, b't', 0xc1, 0x05], // {"t": 1(5)}
            "unsupported CBOR tag 1",
        );
    }

    #[test]
    fn cbor_not_finite() {
        check_err(
            Format::Cbor,
            &[0xa1, 0x61, b't', 0xf9, 0x7e, 0x00], // {"t": NaN}
            "`t` is not a finite number",
        );
    }

    #[test]
    fn cbor_not_a_map() {
        check_err(
            Format::Cbor,
            &[0x82, 0x01, 0x02],
            "CBOR payload is not a map",
        );
    }

    #[test]
    fn cbor_array_value() {
        check_err(
            Format::Cbor,
            &[0xa1, 0x61, b'a', 0x80], // {"a": []}
            "array at `a` is not supported",
        );
    }

    #[test]
    fn cbor_bad_key_type() {
        check_err(
            Format::Cbor,
            &[0xa1, 0x41, 0x00, 0x01], // {h'00': 1}
            "CBOR map key is not text or integer",
        );
    }

    #[test]
    fn cbor_truncated() {
        check_err(Format::Cbor, &[0xa1, 0x61], "truncated CBOR");
    }

    #[test]
    fn cbor_trailing_bytes() {
        check_err(
            Format::Cbor,
            &[0xa1, 0x61, b'a', 0x01, 0x00],
            "trailing bytes after CBOR item",
        );
    }

    #[test]
    fn events_carry_time_readings_and_meta() {
        let samples = decode(Format::Json, br#"{"ts": 1700000000, "t": 1}"#, "value", NOW)
            .expect("payload decodes");
        let events = to_events("greenhouse-1", samples, NOW + 5);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].subject, "coap/greenhouse-1");
        assert_eq!(events[0].device, "greenhouse-1");
        assert_eq!(events[0].device_time_ms, Some(1_700_000_000_000));
        assert_eq!(events[0].gateway_time_ms, NOW + 5);
        assert_eq!(events[0].number("t"), Some(1.0));
    }
}
