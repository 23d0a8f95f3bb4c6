//! SenML (RFC 8428) packs in JSON and CBOR to [`Sample`]s, with base name,
//! base time, base unit and base value resolved. Pure: no I/O.
//!
//! How a pack becomes samples:
//!
//! - A pack is an array of 1 to [`MAX_RECORDS`] records. Base fields (`bn`,
//!   `bt`, `bu`, `bv`, `bs`) apply to their record and every later one until
//!   given again. `bver` above [`VERSION`] refuses the pack.
//! - Each record gives one reading, named `n`; without `n`, the resolved name
//!   (`bn` + `n`) minus trailing `:`, `/`, `-` and `.`. The resolved name must
//!   follow RFC 8428 §4.5.1 (letters, digits and `-:./_`, starting with a
//!   letter or digit). The unit is `u`, else `bu`, else empty.
//! - The value is exactly one of `v` (plus `bv`, a number), `vs` (text),
//!   `vb` (boolean) and `vd` (bytes: base64url in JSON, either alphabet,
//!   padding optional; a byte string in CBOR); two or more refuse the pack.
//!   A sum `s` (plus `bs`) is a number reading named `<name>.sum` next to a
//!   value, or `<name>` alone; while a `bs` is in force, a record without
//!   `s` has the sum `bs`, as a record without `t` has the time `bt`. The
//!   sum keeps the record's unit. `ut` is checked and ignored.
//! - A record with no value and no sum is refused, unless it holds only base
//!   fields (as in RFC 8428 §5.1.7): then it only sets those.
//! - Time is `bt` + `t` in seconds; below 2^28 it is relative to `now_ms`
//!   (RFC 8428 §4.5.3), otherwise since the Unix epoch. A record with neither
//!   `bt` nor `t` has time 0, relative: the time of reception (`now_ms`).
//! - Consecutive records with the same base name and time form one
//!   [`Sample`]; the base name, when not empty, is its [`BASE_NAME_META`]
//!   entry.
//! - Unknown labels are ignored, except labels ending in `_`, which RFC 8428
//!   §4.4 makes must-understand: they refuse the pack. CBOR records use the
//!   integer labels of RFC 8428 Table 4; text labels are read too.
//!
//! Errors name the record, counting from 1 as RFC 8428 §9 does.

use sluice_event::{Meta, Reading, Value};

use crate::payload::{
    Item, Key, PayloadError, Sample, malformed, parse_cbor, parse_json, quoted, time_ms,
};

/// Most records one pack may hold; bounds the work per request.
pub const MAX_RECORDS: usize = 1000;

/// The highest SenML version (`bver`) understood: RFC 8428's.
pub const VERSION: u8 = 10;

/// Meta key of a sample's resolved base name ([`Value::Text`]).
pub const BASE_NAME_META: &str = "senml_bn";

/// Times (`bt` + `t`, in seconds) below this are relative to now (2^28 s).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// Decodes a SenML JSON pack (Content-Format 110).
pub fn decode_json(bytes: &[u8], now_ms: i64) -> Result<Vec<Sample>, PayloadError> {
    if bytes.is_empty() {
        return Err(PayloadError::Empty);
    }
    decode_pack(parse_json(bytes)?, Dialect::Json, now_ms)
}

/// Decodes a SenML CBOR pack (Content-Format 112).
pub fn decode_cbor(bytes: &[u8], now_ms: i64) -> Result<Vec<Sample>, PayloadError> {
    if bytes.is_empty() {
        return Err(PayloadError::Empty);
    }
    decode_pack(parse_cbor(bytes)?, Dialect::Cbor, now_ms)
}

/// Which representation a pack came in; only `vd` and wording differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Json,
    Cbor,
}

fn decode_pack(pack: Item, dialect: Dialect, now_ms: i64) -> Result<Vec<Sample>, PayloadError> {
    let Item::Array(records) = pack else {
        return Err(malformed("SenML pack is not an array"));
    };
    if records.is_empty() {
        return Err(malformed("empty SenML pack"));
    }
    if records.len() > MAX_RECORDS {
        return Err(malformed(format!("too many records (max {MAX_RECORDS})")));
    }
    let mut base = Base::default();
    let mut samples: Vec<Sample> = Vec::new();
    // Base name and time of the last sample.
    let mut group: Option<(String, Option<i64>)> = None;
    for (i, item) in records.into_iter().enumerate() {
        let resolved = Record::parse(item, dialect)
            .and_then(|record| base.resolve(record, now_ms))
            .map_err(|msg| malformed(format!("record {}: {msg}", i + 1)))?;
        let Some(resolved) = resolved else {
            continue;
        };
        let key = (resolved.base_name, resolved.time_ms);
        match samples.last_mut() {
            Some(sample) if group.as_ref() == Some(&key) => {
                sample.readings.extend(resolved.readings);
            }
            _ => {
                let meta = if key.0.is_empty() {
                    Vec::new()
                } else {
                    vec![Meta {
                        key: BASE_NAME_META.to_owned(),
                        value: Value::Text(key.0.clone()),
                    }]
                };
                samples.push(Sample {
                    time_ms: key.1,
                    readings: resolved.readings,
                    meta,
                });
                group = Some(key);
            }
        }
    }
    if samples.is_empty() {
        return Err(malformed("no readings"));
    }
    Ok(samples)
}

/// The SenML labels of RFC 8428 Table 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Version,
    BaseName,
    BaseTime,
    BaseUnit,
    BaseValue,
    BaseSum,
    Name,
    Unit,
    Value,
    StringValue,
    BoolValue,
    DataValue,
    Sum,
    Time,
    UpdateTime,
}

impl Label {
    const ALL: [Label; 15] = [
        Label::Version,
        Label::BaseName,
        Label::BaseTime,
        Label::BaseUnit,
        Label::BaseValue,
        Label::BaseSum,
        Label::Name,
        Label::Unit,
        Label::Value,
        Label::StringValue,
        Label::BoolValue,
        Label::DataValue,
        Label::Sum,
        Label::Time,
        Label::UpdateTime,
    ];

    /// The JSON label and the CBOR label (RFC 8428 Tables 2 and 4).
    fn labels(self) -> (&'static str, i128) {
        match self {
            Label::Version => ("bver", -1),
            Label::BaseName => ("bn", -2),
            Label::BaseTime => ("bt", -3),
            Label::BaseUnit => ("bu", -4),
            Label::BaseValue => ("bv", -5),
            Label::BaseSum => ("bs", -6),
            Label::Name => ("n", 0),
            Label::Unit => ("u", 1),
            Label::Value => ("v", 2),
            Label::StringValue => ("vs", 3),
            Label::BoolValue => ("vb", 4),
            Label::Sum => ("s", 5),
            Label::Time => ("t", 6),
            Label::UpdateTime => ("ut", 7),
            Label::DataValue => ("vd", 8),
        }
    }

    fn name(self) -> &'static str {
        self.labels().0
    }

    fn of(key: &Key) -> Option<Label> {
        Label::ALL.into_iter().find(|label| match key {
            Key::Text(s) => label.labels().0 == s,
            Key::Int(n) => label.labels().1 == *n,
        })
    }
}

/// One record's fields, typed but not yet resolved against the base fields.
#[derive(Default)]
struct Record {
    version: Option<f64>,
    base_name: Option<String>,
    base_time: Option<f64>,
    base_unit: Option<String>,
    base_value: Option<f64>,
    base_sum: Option<f64>,
    name: Option<String>,
    unit: Option<String>,
    value: Option<f64>,
    string_value: Option<String>,
    bool_value: Option<bool>,
    data_value: Option<Vec<u8>>,
    sum: Option<f64>,
    time: Option<f64>,
    update_time: Option<f64>,
}

impl Record {
    fn parse(item: Item, dialect: Dialect) -> Result<Record, String> {
        let Item::Map(entries) = item else {
            return Err(match dialect {
                Dialect::Json => "not an object".to_owned(),
                Dialect::Cbor => "not a map".to_owned(),
            });
        };
        let mut record = Record::default();
        let mut seen = [false; Label::ALL.len()];
        for (key, value) in entries {
            let Some(label) = Label::of(&key) else {
                if let Key::Text(name) = &key
                    && name.ends_with('_')
                {
                    return Err(format!(
                        "must-understand label {} not supported",
                        quoted(name)
                    ));
                }
                continue;
            };
            if std::mem::replace(&mut seen[label as usize], true) {
                return Err(format!("duplicate label `{}`", label.name()));
            }
            match label {
                Label::Version => record.version = Some(number(value, label)?),
                Label::BaseName => record.base_name = Some(text(value, label)?),
                Label::BaseTime => record.base_time = Some(number(value, label)?),
                Label::BaseUnit => record.base_unit = Some(text(value, label)?),
                Label::BaseValue => record.base_value = Some(number(value, label)?),
                Label::BaseSum => record.base_sum = Some(number(value, label)?),
                Label::Name => record.name = Some(text(value, label)?),
                Label::Unit => record.unit = Some(text(value, label)?),
                Label::Value => record.value = Some(number(value, label)?),
                Label::StringValue => record.string_value = Some(text(value, label)?),
                Label::BoolValue => record.bool_value = Some(boolean(value, label)?),
                Label::DataValue => record.data_value = Some(data(value, dialect)?),
                Label::Sum => record.sum = Some(number(value, label)?),
                Label::Time => record.time = Some(number(value, label)?),
                Label::UpdateTime => record.update_time = Some(number(value, label)?),
            }
        }
        Ok(record)
    }

    /// Whether the record holds base fields and nothing else this module reads.
    fn is_base_only(&self) -> bool {
        let base = self.version.is_some()
            || self.base_name.is_some()
            || self.base_time.is_some()
            || self.base_unit.is_some()
            || self.base_value.is_some()
            || self.base_sum.is_some();
        let regular = self.name.is_some()
            || self.unit.is_some()
            || self.time.is_some()
            || self.update_time.is_some();
        base && !regular
    }
}

fn number(item: Item, label: Label) -> Result<f64, String> {
    match item {
        Item::Number(n) if n.is_finite() => Ok(n),
        Item::Number(_) => Err(format!("`{}` is not a finite number", label.name())),
        _ => Err(format!("`{}` is not a number", label.name())),
    }
}

fn text(item: Item, label: Label) -> Result<String, String> {
    match item {
        Item::Text(s) => Ok(s),
        _ => Err(format!("`{}` is not a string", label.name())),
    }
}

fn boolean(item: Item, label: Label) -> Result<bool, String> {
    match item {
        Item::Bool(b) => Ok(b),
        _ => Err(format!("`{}` is not a boolean", label.name())),
    }
}

/// `vd`: base64url text in JSON (RFC 8428 §5), a byte string in CBOR (§6).
fn data(item: Item, dialect: Dialect) -> Result<Vec<u8>, String> {
    match (dialect, item) {
        (Dialect::Json, Item::Text(s)) => base64(&s).ok_or_else(|| "`vd` is not base64url".into()),
        (Dialect::Json, _) => Err("`vd` is not a string".into()),
        (Dialect::Cbor, Item::Bytes(b)) => Ok(b),
        (Dialect::Cbor, _) => Err("`vd` is not a byte string".into()),
    }
}

/// Decodes base64url without padding (RFC 4648 §5), as RFC 8428 asks.
/// Padding and the standard alphabet's `+` and `/` are accepted too: they
/// cannot be mistaken for anything else, and devices do send them.
fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s
        .strip_suffix("==")
        .or_else(|| s.strip_suffix('='))
        .unwrap_or(s);
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Whether `name` is a valid resolved name (RFC 8428 §4.5.1).
fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
}

/// The base fields in force while walking a pack.
#[derive(Default)]
struct Base {
    name: String,
    time: Option<f64>,
    unit: Option<String>,
    value: Option<f64>,
    sum: Option<f64>,
}

/// A record with the base fields applied.
struct Resolved {
    base_name: String,
    time_ms: Option<i64>,
    readings: Vec<Reading>,
}

impl Base {
    /// Takes in the record's base fields and resolves the record; `None` for
    /// a record of base fields only.
    fn resolve(&mut self, record: Record, now_ms: i64) -> Result<Option<Resolved>, String> {
        if let Some(version) = record.version {
            if version < 1.0 || version.fract() != 0.0 {
                return Err("`bver` is not a positive integer".into());
            }
            if version > f64::from(VERSION) {
                return Err(format!("unsupported SenML version (max {VERSION})"));
            }
        }
        let base_only = record.is_base_only();
        if let Some(name) = record.base_name {
            self.name = name;
        }
        self.time = record.base_time.or(self.time);
        self.unit = record.base_unit.or(self.unit.take());
        self.value = record.base_value.or(self.value);
        self.sum = record.base_sum.or(self.sum);

        let fields: Vec<&str> = [
            (record.value.is_some(), Label::Value),
            (record.string_value.is_some(), Label::StringValue),
            (record.bool_value.is_some(), Label::BoolValue),
            (record.data_value.is_some(), Label::DataValue),
        ]
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, label)| label.name())
        .collect();
        if fields.len() > 1 {
            let count = ["", "", "two", "three", "four"][fields.len()];
            return Err(format!("{count} value fields ({})", fields.join(", ")));
        }
        let value = if let Some(v) = record.value {
            Some(Value::Number(finite(v + self.value.unwrap_or(0.0))?))
        } else if let Some(s) = record.string_value {
            Some(Value::Text(s))
        } else if let Some(b) = record.bool_value {
            Some(Value::Bool(b))
        } else {
            record.data_value.map(Value::Bytes)
        };
        // A base sum applies to every record, as a base time does: one
        // without `s` has the base sum as its sum.
        let sum = match (record.sum, self.sum) {
            (None, None) => None,
            (s, bs) => Some(finite(s.unwrap_or(0.0) + bs.unwrap_or(0.0))?),
        };
        if value.is_none() && record.sum.is_none() {
            if base_only {
                return Ok(None);
            }
            if sum.is_none() {
                return Err("no value".into());
            }
        }

        let own_name = record.name.filter(|n| !n.is_empty());
        let full_name = format!("{}{}", self.name, own_name.as_deref().unwrap_or(""));
        if full_name.is_empty() {
            return Err("no name".into());
        }
        if !is_valid_name(&full_name) {
            return Err(format!("invalid name {}", quoted(&full_name)));
        }
        let name =
            own_name.unwrap_or_else(|| full_name.trim_end_matches([':', '/', '-', '.']).to_owned());

        // No time at all is time 0, relative: the time of reception.
        let seconds = self.time.unwrap_or(0.0) + record.time.unwrap_or(0.0);
        let ms = if seconds < RELATIVE_TIME_LIMIT {
            now_ms as f64 + (seconds * 1000.0).round()
        } else {
            seconds * 1000.0
        };
        let time_ms = Some(time_ms(ms).ok_or("time out of range")?);

        let unit = record
            .unit
            .or_else(|| self.unit.clone())
            .unwrap_or_default();
        let mut readings = Vec::with_capacity(2);
        let sum_name = if value.is_some() {
            format!("{name}.sum")
        } else {
            name.clone()
        };
        if let Some(value) = value {
            readings.push(Reading {
                name,
                value,
                unit: unit.clone(),
            });
        }
        if let Some(sum) = sum {
            readings.push(Reading {
                name: sum_name,
                value: Value::Number(sum),
                unit,
            });
        }
        Ok(Some(Resolved {
            base_name: self.name.clone(),
            time_ms,
            readings,
        }))
    }
}

/// A value plus its base value, if that did not overflow.
fn finite(n: f64) -> Result<f64, String> {
    if n.is_finite() {
        Ok(n)
    } else {
        Err("value out of range".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value as C;

    const NOW: i64 = 1_700_000_000_000;

    fn check_json(pack: &str, expected: Vec<Sample>) {
        assert_eq!(decode_json(pack.as_bytes(), NOW), Ok(expected));
    }

    fn check_json_err(pack: &str, message: &str) {
        assert_eq!(
            decode_json(pack.as_bytes(), NOW),
            Err(PayloadError::Malformed(message.to_owned()))
        );
    }

    fn check_cbor(pack: &[u8], expected: Vec<Sample>) {
        assert_eq!(decode_cbor(pack, NOW), Ok(expected));
    }

    fn check_cbor_err(pack: &[u8], message: &str) {
        assert_eq!(
            decode_cbor(pack, NOW),
            Err(PayloadError::Malformed(message.to_owned()))
        );
    }

    /// A sample; `bn` empty means no base-name meta.
    fn sample(time_ms: Option<i64>, bn: &str, readings: Vec<Reading>) -> Sample {
        Sample {
            time_ms,
            readings,
            meta: if bn.is_empty() {
                Vec::new()
            } else {
                vec![Meta {
                    key: BASE_NAME_META.to_owned(),
                    value: Value::Text(bn.to_owned()),
                }]
            },
        }
    }

    fn reading(name: &str, value: Value, unit: &str) -> Reading {
        Reading {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
        }
    }

    fn num(name: &str, n: f64, unit: &str) -> Reading {
        reading(name, Value::Number(n), unit)
    }

    /// CBOR bytes of a pack of records with integer labels.
    fn cbor_pack(records: Vec<Vec<(i64, C)>>) -> Vec<u8> {
        let pack = C::Array(
            records
                .into_iter()
                .map(|r| {
                    C::Map(
                        r.into_iter()
                            .map(|(k, v)| (C::Integer(k.into()), v))
                            .collect(),
                    )
                })
                .collect(),
        );
        let mut out = Vec::new();
        ciborium::into_writer(&pack, &mut out).expect("CBOR encodes");
        out
    }

    fn ctext(s: &str) -> C {
        C::Text(s.to_owned())
    }

    // RFC 8428 examples.

    #[test]
    fn rfc8428_5_1_1_single_data_point() {
        check_json(
            r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
            vec![sample(
                Some(NOW),
                "",
                vec![num("urn:dev:ow:10e2073a01080063", 23.1, "Cel")],
            )],
        );
    }

    /// RFC 8428 §5.1.2, first example: resolved into one sample, at reception.
    fn multiple_data_points() -> Vec<Sample> {
        vec![sample(
            Some(NOW),
            "urn:dev:ow:10e2073a01080063:",
            vec![num("voltage", 120.1, "V"), num("current", 1.2, "A")],
        )]
    }

    #[test]
    fn rfc8428_5_1_2_multiple_data_points() {
        check_json(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                {"n":"current","u":"A","v":1.2}]"#,
            multiple_data_points(),
        );
    }

    #[test]
    fn rfc8428_5_1_2_multiple_data_points_cbor() {
        check_cbor(
            &cbor_pack(vec![
                vec![
                    (-2, ctext("urn:dev:ow:10e2073a01080063:")), // bn
                    (0, ctext("voltage")),                       // n
                    (1, ctext("V")),                             // u
                    (2, C::Float(120.1)),                        // v
                ],
                vec![
                    (0, ctext("current")), // n
                    (1, ctext("A")),       // u
                    (2, C::Float(1.2)),    // v
                ],
            ]),
            multiple_data_points(),
        );
    }

    /// RFC 8428 §5.1.2, second example (bt = Tue Jun 8 18:01:16.001 UTC
    /// 2010): a sample per time, in pack order, so the voltage at bt and the
    /// last current at bt are not merged across the records in between.
    fn base_time_pack() -> Vec<Sample> {
        const BT: i64 = 1_276_020_076_001;
        const BN: &str = "urn:dev:ow:10e2073a0108006:";
        vec![
            sample(Some(BT), BN, vec![num("voltage", 120.1, "V")]),
            sample(Some(BT - 5000), BN, vec![num("current", 1.2, "A")]),
            sample(Some(BT - 4000), BN, vec![num("current", 1.3, "A")]),
            sample(Some(BT - 3000), BN, vec![num("current", 1.4, "A")]),
            sample(Some(BT - 2000), BN, vec![num("current", 1.5, "A")]),
            sample(Some(BT - 1000), BN, vec![num("current", 1.6, "A")]),
            sample(Some(BT), BN, vec![num("current", 1.7, "A")]),
        ]
    }

    #[test]
    fn rfc8428_5_1_2_base_time() {
        check_json(
            r#"[{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
                 "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
                {"n":"current","t":-5,"v":1.2},
                {"n":"current","t":-4,"v":1.3},
                {"n":"current","t":-3,"v":1.4},
                {"n":"current","t":-2,"v":1.5},
                {"n":"current","t":-1,"v":1.6},
                {"n":"current","v":1.7}]"#,
            base_time_pack(),
        );
    }

    /// The CBOR dump of RFC 8428 §6, byte for byte.
    #[test]
    fn rfc8428_6_cbor_dump() {
        let current = |time: u8, value: &[u8]| {
            [
                &[0xa3, 0x00, 0x67][..], // map(3), 0 (n): text(7)
                b"current",
                &[0x06, time, 0x02], // 6 (t): time, 2 (v):
                value,
            ]
            .concat()
        };
        let pack = [
            &[0x87, 0xa7][..],   // array(7), map(7)
            &[0x21, 0x78, 0x1b], // -2 (bn): text(27)
            b"urn:dev:ow:10e2073a0108006:",
            &[0x22, 0xfb, 0x41, 0xd3, 0x03, 0xa1, 0x5b, 0x00, 0x10, 0x62], // -3 (bt): 1276020076.001
            &[0x23, 0x61, b'A'],                                           // -4 (bu): "A"
            &[0x20, 0x05],                                                 // -1 (bver): 5
            &[0x00, 0x67],                                                 // 0 (n): text(7)
            b"voltage",
            &[0x01, 0x61, b'V'], // 1 (u): "V"
            &[0x02, 0xfb, 0x40, 0x5e, 0x06, 0x66, 0x66, 0x66, 0x66, 0x66], // 2 (v): 120.1
            &current(
                0x24,
                &[0xfb, 0x3f, 0xf3, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33],
            ), // -5, 1.2
            &current(
                0x23,
                &[0xfb, 0x3f, 0xf4, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcd],
            ), // -4, 1.3
            &current(
                0x22,
                &[0xfb, 0x3f, 0xf6, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66],
            ), // -3, 1.4
            &current(0x21, &[0xf9, 0x3e, 0x00]), // -2, 1.5 as a half float
            &current(
                0x20,
                &[0xfb, 0x3f, 0xf9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
            ), // -1, 1.6
            &current(
                0x00,
                &[0xfb, 0x3f, 0xfb, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33],
            ), // 0, 1.7
        ]
        .concat();
        assert_eq!(pack.len(), 0xc3); // as in the RFC's dump
        check_cbor(&pack, base_time_pack());
    }

    #[test]
    fn rfc8428_5_1_3_multiple_measurements() {
        const T: i64 = 1_320_067_464_000; // Mon Oct 31 13:24:24 UTC 2011
        const BN: &str = "urn:dev:ow:10e2073a01080063";
        // No `n` and no trailing separator: every reading is named after bn.
        let at = |dt: i64, readings: &[(f64, &str)]| {
            sample(
                Some(T + dt * 1000),
                BN,
                readings.iter().map(|&(v, u)| num(BN, v, u)).collect(),
            )
        };
        check_json(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
                 "bu":"%RH","v":20},
                {"u":"lon","v":24.30621},
                {"u":"lat","v":60.07965},
                {"t":60,"v":20.3},
                {"u":"lon","t":60,"v":24.30622},
                {"u":"lat","t":60,"v":60.07965},
                {"t":120,"v":20.7},
                {"u":"lon","t":120,"v":24.30623},
                {"u":"lat","t":120,"v":60.07966},
                {"u":"%EL","t":150,"v":98},
                {"t":180,"v":21.2},
                {"u":"lon","t":180,"v":24.30628},
                {"u":"lat","t":180,"v":60.07967}]"#,
            vec![
                at(0, &[(20.0, "%RH"), (24.30621, "lon"), (60.07965, "lat")]),
                at(60, &[(20.3, "%RH"), (24.30622, "lon"), (60.07965, "lat")]),
                at(120, &[(20.7, "%RH"), (24.30623, "lon"), (60.07966, "lat")]),
                at(150, &[(98.0, "%EL")]),
                at(180, &[(21.2, "%RH"), (24.30628, "lon"), (60.07967, "lat")]),
            ],
        );
    }

    #[test]
    fn rfc8428_5_1_5_multiple_data_types() {
        check_json(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
                {"n":"label","vs":"Machine Room"},
                {"n":"open","vb":false},
                {"n":"nfv-reader","vd":"aGkgCg"}]"#,
            vec![sample(
                Some(NOW),
                "urn:dev:ow:10e2073a01080063:",
                vec![
                    num("temp", 23.1, "Cel"),
                    reading("label", Value::Text("Machine Room".into()), ""),
                    reading("open", Value::Bool(false), ""),
                    reading("nfv-reader", Value::Bytes(b"hi \n".to_vec()), ""),
                ],
            )],
        );
    }

    #[test]
    fn rfc8428_5_1_6_collection_of_resources() {
        const T: i64 = 1_320_078_429_000;
        // A new base name starts a new sample; bt carries over.
        check_json(
            r#"[{"bn":"2001:db8::2/","bt":1.320078429e+09,
                 "n":"temperature","u":"Cel","v":25.2},
                {"n":"humidity","u":"%RH","v":30},
                {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
                {"n":"humidity","u":"%RH","v":67}]"#,
            vec![
                sample(
                    Some(T),
                    "2001:db8::2/",
                    vec![
                        num("temperature", 25.2, "Cel"),
                        num("humidity", 30.0, "%RH"),
                    ],
                ),
                sample(
                    Some(T),
                    "2001:db8::1/",
                    vec![
                        num("temperature", 12.3, "Cel"),
                        num("humidity", 67.0, "%RH"),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn rfc8428_5_1_7_record_of_base_fields_only() {
        check_json(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:"},
                {"n":"temp","u":"Cel","v":23.1},
                {"n":"heat","u":"/","v":1},
                {"n":"fan","u":"/","v":0}]"#,
            vec![sample(
                Some(NOW),
                "urn:dev:ow:10e2073a01080063:",
                vec![
                    num("temp", 23.1, "Cel"),
                    num("heat", 1.0, "/"),
                    num("fan", 0.0, "/"),
                ],
            )],
        );
    }

    #[test]
    fn rfc8428_5_1_7_fraction_of_a_second_ahead() {
        const T: i64 = 1_320_078_429_000;
        check_json(
            r#"[{"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
                {"n":"2001:db8::4","v":0.5},
                {"n":"2001:db8::3","t":0.1,"v":0},
                {"n":"2001:db8::4","t":0.1,"v":0}]"#,
            vec![
                sample(
                    Some(T),
                    "",
                    vec![num("2001:db8::3", 0.5, "/"), num("2001:db8::4", 0.5, "/")],
                ),
                sample(
                    Some(T + 100),
                    "",
                    vec![num("2001:db8::3", 0.0, "/"), num("2001:db8::4", 0.0, "/")],
                ),
            ],
        );
    }

    // Time.

    #[test]
    fn relative_time_without_base_time() {
        check_json(
            r#"[{"n":"t","v":1,"t":-5}]"#,
            vec![sample(Some(NOW - 5000), "", vec![num("t", 1.0, "")])],
        );
    }

    #[test]
    fn relative_base_time_plus_time() {
        check_json(
            r#"[{"bt":-10,"n":"a","v":1},{"n":"a","t":2.5,"v":2}]"#,
            vec![
                sample(Some(NOW - 10_000), "", vec![num("a", 1.0, "")]),
                sample(Some(NOW - 7_500), "", vec![num("a", 2.0, "")]),
            ],
        );
    }

    #[test]
    fn explicit_zero_time_is_now() {
        check_json(
            r#"[{"n":"a","v":1,"t":0}]"#,
            vec![sample(Some(NOW), "", vec![num("a", 1.0, "")])],
        );
    }

    #[test]
    fn rfc8428_4_5_3_no_time_at_all_is_the_time_of_reception() {
        check_json(
            r#"[{"n":"a","v":1}]"#,
            vec![sample(Some(NOW), "", vec![num("a", 1.0, "")])],
        );
    }

    #[test]
    fn absolute_from_2_pow_28() {
        check_json(
            r#"[{"n":"a","v":1,"t":268435456},{"n":"a","v":2,"t":268435455}]"#,
            vec![
                sample(Some(268_435_456_000), "", vec![num("a", 1.0, "")]),
                sample(Some(NOW + 268_435_455_000), "", vec![num("a", 2.0, "")]),
            ],
        );
    }

    #[test]
    fn time_out_of_range() {
        check_json_err(
            r#"[{"n":"a","v":1,"t":1e300}]"#,
            "record 1: time out of range",
        );
    }

    // Names, units, values.

    #[test]
    fn name_from_base_name_without_separator() {
        check_json(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","v":1}]"#,
            vec![sample(
                Some(NOW),
                "urn:dev:ow:10e2073a01080063:",
                vec![num("urn:dev:ow:10e2073a01080063", 1.0, "")],
            )],
        );
    }

    #[test]
    fn unit_from_base_unit_unless_given() {
        check_json(
            r#"[{"bu":"Cel","n":"a","v":1},{"n":"b","u":"%RH","v":2},{"n":"c","v":3}]"#,
            vec![sample(
                Some(NOW),
                "",
                vec![
                    num("a", 1.0, "Cel"),
                    num("b", 2.0, "%RH"),
                    num("c", 3.0, "Cel"),
                ],
            )],
        );
    }

    #[test]
    fn base_value_is_added() {
        check_json(
            r#"[{"bv":20,"n":"a","v":1.5},{"n":"b","v":-0.5},{"bv":0,"n":"c","v":4}]"#,
            vec![sample(
                Some(NOW),
                "",
                vec![num("a", 21.5, ""), num("b", 19.5, ""), num("c", 4.0, "")],
            )],
        );
    }

    #[test]
    fn sum_alone_plus_base_sum() {
        check_json(
            r#"[{"bs":1000,"n":"energy","u":"J","s":100}]"#,
            vec![sample(Some(NOW), "", vec![num("energy", 1100.0, "J")])],
        );
    }

    #[test]
    fn sum_next_to_value() {
        check_json(
            r#"[{"n":"power","u":"W","v":5,"s":100}]"#,
            vec![sample(
                Some(NOW),
                "",
                vec![num("power", 5.0, "W"), num("power.sum", 100.0, "W")],
            )],
        );
    }

    #[test]
    fn data_value_padding_and_standard_alphabet() {
        check_json(
            r#"[{"n":"a","vd":"-_8"},{"n":"b","vd":"+/8="},{"n":"c","vd":""}]"#,
            vec![sample(
                Some(NOW),
                "",
                vec![
                    reading("a", Value::Bytes(vec![0xfb, 0xff]), ""),
                    reading("b", Value::Bytes(vec![0xfb, 0xff]), ""),
                    reading("c", Value::Bytes(Vec::new()), ""),
                ],
            )],
        );
    }

    #[test]
    fn unknown_labels_are_ignored() {
        check_json(
            r#"[{"n":"a","v":1,"x":{"deep":[1]},"ut":60}]"#,
            vec![sample(Some(NOW), "", vec![num("a", 1.0, "")])],
        );
    }

    // CBOR specifics.

    #[test]
    fn cbor_string_bool_data_and_sum() {
        check_cbor(
            &cbor_pack(vec![
                vec![(-2, ctext("dev1/")), (0, ctext("fw")), (3, ctext("1.2.0"))], // bn, n, vs
                vec![(0, ctext("door")), (4, C::Bool(true))],                      // n, vb
                vec![(0, ctext("blob")), (8, C::Bytes(vec![1, 2, 3]))],            // n, vd
                vec![
                    (-6, C::Integer(10.into())),
                    (0, ctext("e")),
                    (5, C::Integer(1.into())),
                ], // bs, n, s
                vec![
                    (-5, C::Integer(100.into())),
                    (0, ctext("v")),
                    (2, C::Float(0.5)),
                ], // bv, n, v
            ]),
            vec![sample(
                Some(NOW),
                "dev1/",
                vec![
                    reading("fw", Value::Text("1.2.0".into()), ""),
                    reading("door", Value::Bool(true), ""),
                    reading("blob", Value::Bytes(vec![1, 2, 3]), ""),
                    num("e", 11.0, ""),
                    num("v", 100.5, ""),
                    // The base sum of the record before is still in force.
                    num("v.sum", 10.0, ""),
                ],
            )],
        );
    }

    #[test]
    fn cbor_decimal_fraction_value() {
        check_cbor(
            &[
                0x81, 0xa2, // array(1), map(2)
                0x00, 0x61, b'a', // 0 (n): "a"
                0x02, 0xc4, 0x82, 0x20, 0x18, 0xe7, // 2 (v): 4([-1, 231]) = 23.1
            ],
            vec![sample(Some(NOW), "", vec![num("a", 23.1, "")])],
        );
    }

    #[test]
    fn cbor_text_labels_and_unknown_integer_labels() {
        check_cbor(
            &[
                0x81, 0xa3, // array(1), map(3)
                0x61, b'n', 0x61, b'a', // "n": "a"
                0x61, b'v', 0x01, // "v": 1
                0x18, 0x2a, 0x00, // 42: 0, not a SenML label
            ],
            vec![sample(Some(NOW), "", vec![num("a", 1.0, "")])],
        );
    }

    #[test]
    fn cbor_data_value_must_be_bytes() {
        check_cbor_err(
            &cbor_pack(vec![vec![(0, ctext("a")), (8, ctext("AA"))]]),
            "record 1: `vd` is not a byte string",
        );
    }

    #[test]
    fn cbor_must_understand_label() {
        check_cbor_err(
            &[
                0x81, 0xa3, // array(1), map(3)
                0x00, 0x61, b'a', // 0 (n): "a"
                0x02, 0x01, // 2 (v): 1
                0x62, b'x', b'_', 0x01, // "x_": 1
            ],
            "record 1: must-understand label `x_` not supported",
        );
    }

    #[test]
    fn cbor_not_an_array() {
        check_cbor_err(&[0xa0], "SenML pack is not an array");
    }

    // Refused packs.

    #[test]
    fn empty_payload() {
        assert_eq!(decode_json(b"", NOW), Err(PayloadError::Empty));
        assert_eq!(decode_cbor(b"", NOW), Err(PayloadError::Empty));
    }

    #[test]
    fn must_understand_label() {
        check_json_err(
            r#"[{"n":"a","v":1},{"n":"b","v":2,"rsrc_":1}]"#,
            "record 2: must-understand label `rsrc_` not supported",
        );
    }

    #[test]
    fn unsupported_version() {
        check_json_err(
            r#"[{"bver":11,"n":"a","v":1}]"#,
            "record 1: unsupported SenML version (max 10)",
        );
        check_json_err(
            r#"[{"bver":1.5,"n":"a","v":1}]"#,
            "record 1: `bver` is not a positive integer",
        );
    }

    #[test]
    fn record_without_value() {
        check_json_err(
            r#"[{"n":"a","v":1},{"n":"b","u":"V"}]"#,
            "record 2: no value",
        );
        check_json_err(r#"[{}]"#, "record 1: no value");
    }

    #[test]
    fn base_fields_only() {
        check_json_err(r#"[{"bn":"a:","bt":5}]"#, "no readings");
    }

    #[test]
    fn not_an_array_or_empty() {
        check_json_err(r#"{"n":"a","v":1}"#, "SenML pack is not an array");
        check_json_err(r#"[]"#, "empty SenML pack");
        check_json_err(r#"[1]"#, "record 1: not an object");
    }

    #[test]
    fn wrong_field_types() {
        check_json_err(r#"[{"n":"a","v":"1"}]"#, "record 1: `v` is not a number");
        check_json_err(r#"[{"n":1,"v":1}]"#, "record 1: `n` is not a string");
        check_json_err(r#"[{"n":"a","vb":1}]"#, "record 1: `vb` is not a boolean");
        check_json_err(
            r#"[{"n":"a","vd":"a*"}]"#,
            "record 1: `vd` is not base64url",
        );
        check_json_err(
            r#"[{"n":"a","vd":"AAAAA"}]"#,
            "record 1: `vd` is not base64url",
        );
    }

    #[test]
    fn duplicate_label() {
        check_json_err(
            r#"[{"n":"a","v":1,"v":2}]"#,
            "record 1: duplicate label `v`",
        );
    }

    #[test]
    fn names() {
        check_json_err(r#"[{"v":1}]"#, "record 1: no name");
        check_json_err(r#"[{"n":"-a","v":1}]"#, "record 1: invalid name `-a`");
        check_json_err(
            r#"[{"bn":"dev 1/","n":"a","v":1}]"#,
            "record 1: invalid name `dev 1/a`",
        );
    }

    #[test]
    fn base_value_overflow() {
        check_json_err(
            r#"[{"bv":1e308,"n":"a","v":1e308}]"#,
            "record 1: value out of range",
        );
    }

    #[test]
    fn too_many_records() {
        let pack = format!(
            "[{}]",
            vec![r#"{"n":"a","v":1}"#; MAX_RECORDS + 1].join(",")
        );
        check_json_err(&pack, "too many records (max 1000)");
        let pack = format!("[{}]", vec![r#"{"n":"a","v":1}"#; MAX_RECORDS].join(","));
        assert!(decode_json(pack.as_bytes(), NOW).is_ok());
    }

    #[test]
    fn through_payload_decode() {
        use crate::payload::{Format, decode};
        assert_eq!(
            decode(Format::SenmlJson, br#"[{"n":"a","v":1}]"#, "value", NOW),
            Ok(vec![sample(Some(NOW), "", vec![num("a", 1.0, "")])])
        );
        assert_eq!(
            decode(
                Format::SenmlCbor,
                &cbor_pack(vec![vec![(0, ctext("a")), (2, C::Integer(1.into()))]]),
                "value",
                NOW
            ),
            Ok(vec![sample(Some(NOW), "", vec![num("a", 1.0, "")])])
        );
    }

    // One value field per record (RFC 8428 §4.2), base sum, version:
    // one line per case, JSON and CBOR alike.

    /// A JSON pack, the same pack in CBOR (text labels mapped to RFC 8428
    /// Table 4), and what decoding either gives.
    fn check_both(pack: &str, expected: Result<Vec<Sample>, &str>) {
        let json: serde_json::Value = serde_json::from_str(pack).expect("test JSON");
        let cbor = cbor_of(&json);
        let expected = expected.map_err(|m| PayloadError::Malformed(m.to_owned()));
        assert_eq!(decode_json(pack.as_bytes(), NOW), expected, "JSON {pack}");
        assert_eq!(decode_cbor(&cbor, NOW), expected, "CBOR {pack}");
    }

    /// A JSON pack as SenML CBOR: integer labels, `vd` as bytes.
    fn cbor_of(json: &serde_json::Value) -> Vec<u8> {
        fn item(v: &serde_json::Value) -> C {
            match v {
                serde_json::Value::Bool(b) => C::Bool(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => C::Integer(i.into()),
                    None => C::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => ctext(s),
                _ => C::Null,
            }
        }
        let records = json
            .as_array()
            .expect("an array")
            .iter()
            .map(|r| {
                C::Map(
                    r.as_object()
                        .expect("objects")
                        .iter()
                        .map(|(k, v)| {
                            let label = Label::ALL
                                .into_iter()
                                .find(|l| l.name() == k)
                                .map_or(ctext(k), |l| C::Integer((l.labels().1 as i64).into()));
                            let value = match (k.as_str(), v) {
                                ("vd", serde_json::Value::String(s)) => {
                                    C::Bytes(base64(s).expect("test base64"))
                                }
                                _ => item(v),
                            };
                            (label, value)
                        })
                        .collect(),
                )
            })
            .collect();
        let mut out = Vec::new();
        ciborium::into_writer(&C::Array(records), &mut out).expect("CBOR encodes");
        out
    }

    fn at_now(readings: Vec<Reading>) -> Result<Vec<Sample>, &'static str> {
        Ok(vec![sample(Some(NOW), "", readings)])
    }

    #[test]
    fn rfc8428_4_2_exactly_one_value_field() {
        let t = |s: &str| Value::Text(s.into());
        check_both(r#"[{"n":"a","v":1}]"#, at_now(vec![num("a", 1.0, "")]));
        check_both(
            r#"[{"n":"a","vs":"x"}]"#,
            at_now(vec![reading("a", t("x"), "")]),
        );
        check_both(
            r#"[{"n":"a","vb":true}]"#,
            at_now(vec![reading("a", Value::Bool(true), "")]),
        );
        check_both(
            r#"[{"n":"a","vd":"AQI"}]"#,
            at_now(vec![reading("a", Value::Bytes(vec![1, 2]), "")]),
        );
        check_both(r#"[{"n":"a","s":7}]"#, at_now(vec![num("a", 7.0, "")]));
        check_both(
            r#"[{"n":"a","vs":"x","s":7}]"#,
            at_now(vec![reading("a", t("x"), ""), num("a.sum", 7.0, "")]),
        );
        check_both(
            r#"[{"n":"a","v":1,"vs":"x"}]"#,
            Err("record 1: two value fields (v, vs)"),
        );
        check_both(
            r#"[{"n":"a","v":1},{"n":"b","vb":true,"vd":"AA"}]"#,
            Err("record 2: two value fields (vb, vd)"),
        );
        check_both(
            r#"[{"n":"a","vs":"x","vb":false,"vd":"AA","s":1}]"#,
            Err("record 1: three value fields (vs, vb, vd)"),
        );
        check_both(
            r#"[{"n":"a","v":1,"vs":"x","vb":true,"vd":"AA"}]"#,
            Err("record 1: four value fields (v, vs, vb, vd)"),
        );
        check_both(r#"[{"n":"a","u":"V"}]"#, Err("record 1: no value"));
    }

    #[test]
    fn rfc8428_4_1_base_sum() {
        check_both(
            r#"[{"bs":10,"n":"e","s":1}]"#,
            at_now(vec![num("e", 11.0, "")]),
        );
        check_both(
            r#"[{"bs":10,"n":"e","v":2}]"#,
            at_now(vec![num("e", 2.0, ""), num("e.sum", 10.0, "")]),
        );
        check_both(r#"[{"bs":10,"n":"e"}]"#, at_now(vec![num("e", 10.0, "")]));
        check_both(
            r#"[{"bs":10},{"n":"e","s":1},{"n":"f","v":1}]"#,
            at_now(vec![
                num("e", 11.0, ""),
                num("f", 1.0, ""),
                num("f.sum", 10.0, ""),
            ]),
        );
        check_both(
            r#"[{"bs":10},{"bs":0,"n":"e","v":1}]"#,
            at_now(vec![num("e", 1.0, ""), num("e.sum", 0.0, "")]),
        );
        check_both(r#"[{"bs":10,"bn":"a:"}]"#, Err("no readings"));
    }

    #[test]
    fn rfc8428_4_4_base_version() {
        check_both(
            r#"[{"bver":10,"n":"a","v":1}]"#,
            at_now(vec![num("a", 1.0, "")]),
        );
        check_both(
            r#"[{"bver":5,"n":"a","v":1}]"#,
            at_now(vec![num("a", 1.0, "")]),
        );
        check_both(
            r#"[{"bver":11,"n":"a","v":1}]"#,
            Err("record 1: unsupported SenML version (max 10)"),
        );
        check_both(
            r#"[{"n":"a","v":1},{"bver":12,"n":"b","v":1}]"#,
            Err("record 2: unsupported SenML version (max 10)"),
        );
        check_both(
            r#"[{"bver":0,"n":"a","v":1}]"#,
            Err("record 1: `bver` is not a positive integer"),
        );
        check_both(
            r#"[{"bver":2.5,"n":"a","v":1}]"#,
            Err("record 1: `bver` is not a positive integer"),
        );
    }

    #[test]
    fn rfc8428_4_5_3_times() {
        check_both(r#"[{"n":"a","v":1}]"#, at_now(vec![num("a", 1.0, "")]));
        check_both(
            r#"[{"n":"a","v":1,"t":-2}]"#,
            Ok(vec![sample(Some(NOW - 2000), "", vec![num("a", 1.0, "")])]),
        );
        check_both(
            r#"[{"n":"a","v":1,"t":1700000000}]"#,
            Ok(vec![sample(
                Some(1_700_000_000_000),
                "",
                vec![num("a", 1.0, "")],
            )]),
        );
        check_both(
            r#"[{"n":"a","v":1,"t":0},{"n":"b","v":2}]"#,
            at_now(vec![num("a", 1.0, ""), num("b", 2.0, "")]),
        );
    }
}
