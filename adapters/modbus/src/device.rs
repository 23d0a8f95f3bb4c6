//! A configured device resolved for polling: its points (its profile's,
//! then its own), the reads that fetch them, and the readings a read's
//! answer holds. Pure.

use crate::config::{DeviceConfig, ModbusConfig, PointConfig, Publish};
use crate::plan::{Read, plan};
use crate::register::{self, PointType, Raw};
use sluice_event::{Reading, Value};
use std::time::Duration;

/// A read's answer: registers or bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// From FC 3 or 4.
    Words(Vec<u16>),
    /// From FC 1 or 2.
    Bits(Vec<bool>),
}

impl Data {
    /// Registers or bits held.
    pub fn len(&self) -> usize {
        match self {
            Data::Words(w) => w.len(),
            Data::Bits(b) => b.len(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One device as its bus polls it.
#[derive(Clone, Debug)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// Unit id on its bus.
    pub unit: u8,
    /// Poll interval.
    pub poll: Duration,
    /// Every poll or on change.
    pub publish: Publish,
    /// Its points: the profile's first, then its own.
    pub points: Vec<PointConfig>,
    /// The reads of one poll.
    pub reads: Vec<Read>,
}

impl Device {
    /// Resolves `device` of a validated `config`.
    pub fn new(device: &DeviceConfig, config: &ModbusConfig) -> Device {
        let mut points: Vec<PointConfig> = device
            .profile
            .as_ref()
            .and_then(|p| config.profiles.get(p))
            .map(|p| p.points.clone())
            .unwrap_or_default();
        points.extend(device.points.iter().cloned());
        let reads = plan(&points, device.max_gap);
        Device {
            id: device.id.clone(),
            unit: device.unit,
            poll: device.poll.get(),
            publish: device.publish,
            points,
            reads,
        }
    }

    /// The index of the point called `name`.
    pub fn point(&self, name: &str) -> Option<usize> {
        self.points.iter().position(|p| p.name == name)
    }

    /// The readings `read` carries in `data`, as (point index, reading).
    /// `None` if `data` is not the size of the read.
    pub fn readings(&self, read: &Read, data: &Data) -> Option<Vec<(usize, Reading)>> {
        if data.len() < usize::from(read.count) {
            return None;
        }
        let mut out = Vec::with_capacity(read.points.len());
        for &i in &read.points {
            let p = self.points.get(i)?;
            let at = usize::from(p.address.checked_sub(read.start)?);
            let raw = match data {
                Data::Bits(bits) => Raw::Bool(*bits.get(at)?),
                Data::Words(words) => {
                    let span = usize::from(p.span());
                    register::decode(p.kind(), p.order, p.bit, words.get(at..at + span)?)
                }
            };
            out.push((i, reading(p, raw)));
        }
        Some(out)
    }
}

/// A raw value scaled and named as point `p` says.
fn reading(p: &PointConfig, raw: Raw) -> Reading {
    let value = match raw {
        Raw::Bool(b) => Value::Bool(b),
        Raw::Text(t) => Value::Text(t),
        Raw::Int(i) => Value::Number(i as f64 * p.scale + p.offset),
        Raw::Float(f) => Value::Number(f * p.scale + p.offset),
    };
    Reading {
        name: p.name.clone(),
        value,
        unit: p.unit.clone(),
    }
}

/// The registers a write of `value` to point `p` sends, or why it cannot.
pub fn encode(
    p: &PointConfig,
    value: &sluice_adapter_common::downlink::Value,
) -> Result<WriteData, register::EncodeError> {
    use sluice_adapter_common::downlink::Value as V;
    let kind = p.kind();
    let wrong = |got: &'static str| register::EncodeError::WrongKind {
        point: kind.as_str(),
        wants: match kind {
            PointType::Bool => "a boolean",
            PointType::String => "text",
            _ => "a number",
        },
        got,
    };
    match (kind, value) {
        (_, V::Bool(_)) | (_, V::Int(_)) if p.bit.is_some() => Err(register::EncodeError::Bit),
        (PointType::Bool, V::Bool(b)) if p.table.is_bits() => Ok(WriteData::Bits(vec![*b])),
        (PointType::Bool, V::Bool(b)) => Ok(WriteData::Words(vec![u16::from(*b)])),
        (PointType::Bool, V::Int(i @ (0 | 1))) if p.table.is_bits() => {
            Ok(WriteData::Bits(vec![*i == 1]))
        }
        (PointType::Bool, V::Int(i @ (0 | 1))) => Ok(WriteData::Words(vec![*i as u16])),
        (PointType::String, V::Text(t)) => Ok(WriteData::Words(register::encode_text(
            p.order,
            p.length.unwrap_or(0),
            t,
        )?)),
        (k, V::Int(_) | V::Float(_)) if k.is_numeric() => {
            let scaled = match value {
                V::Int(i) => *i as f64,
                V::Float(f) => *f,
                _ => unreachable!("matched above"),
            };
            let raw = (scaled - p.offset) / p.scale;
            Ok(WriteData::Words(register::encode_number(k, p.order, raw)?))
        }
        (_, V::Bool(_)) => Err(wrong("a boolean")),
        (_, V::Int(_) | V::Float(_)) => Err(wrong("a number")),
        (_, V::Text(_)) => Err(wrong("text")),
        (_, V::Bytes(_)) => Err(wrong("bytes")),
        (_, V::Empty) => Err(wrong("nothing")),
    }
}

/// What a write sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteData {
    /// Coils.
    Bits(Vec<bool>),
    /// Registers.
    Words(Vec<u16>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_adapter_common::downlink::Value as V;

    fn meter() -> Device {
        let config: ModbusConfig = toml::from_str(
            r#"
            [[buses]]
            name = "b"
            path = "/dev/null"
            [profiles.em]
            points = [
                { name = "voltage", table = "input", address = 0, type = "f32", unit = "V" },
                { name = "current", table = "input", address = 2, type = "i16", scale = 0.01, unit = "A" },
                { name = "alarm", table = "input", address = 3, type = "bool", bit = 1 },
            ]
            [[devices]]
            id = "m"
            bus = "b"
            unit = 1
            profile = "em"
            points = [
                { name = "relay", table = "coil", address = 5, writable = true },
                { name = "setpoint", table = "holding", address = 10, type = "u16", scale = 0.1, offset = -40, writable = true },
                { name = "label", table = "holding", address = 20, type = "string", length = 2, writable = true },
            ]
            "#,
        )
        .expect("parses");
        Device::new(&config.devices[0], &config)
    }

    #[test]
    fn profile_points_come_first_and_reads_are_planned() {
        let m = meter();
        let names: Vec<&str> = m.points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["voltage", "current", "alarm", "relay", "setpoint", "label"]
        );
        assert_eq!(m.reads.len(), 4, "{:?}", m.reads);
    }

    #[test]
    fn an_answer_becomes_scaled_readings_with_units() {
        let m = meter();
        let input = m.reads.iter().find(|r| r.start == 0).expect("input read");
        let data = Data::Words(vec![0x4366, 0x8000, (-150i16) as u16, 0b10]);
        let readings = m.readings(input, &data).expect("sized");
        let values: Vec<(&str, &Value, &str)> = readings
            .iter()
            .map(|(_, r)| (r.name.as_str(), &r.value, r.unit.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                ("voltage", &Value::Number(230.5), "V"),
                ("current", &Value::Number(-1.5), "A"),
                ("alarm", &Value::Bool(true), ""),
            ]
        );
        assert_eq!(m.readings(input, &Data::Words(vec![1, 2])), None, "short");
    }

    #[test]
    fn writes_encode_unscaled_values() {
        let m = meter();
        let p = |name: &str| &m.points[m.point(name).expect("point")];
        assert_eq!(
            encode(p("relay"), &V::Bool(true)),
            Ok(WriteData::Bits(vec![true]))
        );
        // (21.5 - -40) / 0.1 = 615.
        assert_eq!(
            encode(p("setpoint"), &V::Float(21.5)),
            Ok(WriteData::Words(vec![615]))
        );
        assert_eq!(
            encode(p("label"), &V::Text("ab".into())),
            Ok(WriteData::Words(vec![0x6162, 0]))
        );
        assert!(encode(p("setpoint"), &V::Text("x".into())).is_err());
        assert!(encode(p("setpoint"), &V::Float(7000.0)).is_err());
        assert!(encode(p("relay"), &V::Float(1.0)).is_err());
    }
}
