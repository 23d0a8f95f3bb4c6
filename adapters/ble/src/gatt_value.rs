//! GATT characteristic values by declared type: bytes read to a reading,
//! a downlink's value to the bytes written. Little-endian, as the GATT
//! specification lays out its numeric characteristics (0x2A6E temperature
//! is an `i16` of 0.01 °C, 0x2A19 battery level a `u8` %).

use crate::decode::Quantity;
use serde::Deserialize;
use sluice_adapter_common::downlink::Value;

/// How a characteristic's value is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Unsigned 8 bits.
    U8,
    /// Unsigned 16 bits.
    U16,
    /// Unsigned 32 bits.
    U32,
    /// Signed 8 bits.
    I8,
    /// Signed 16 bits.
    I16,
    /// Signed 32 bits.
    I32,
    /// IEEE 754 single precision.
    F32,
    /// One byte, 0 or not.
    Bool,
    /// UTF-8 text.
    Utf8,
    /// Bytes as they are (hex text in the reading).
    Bytes,
}

/// Why a value does not fit its declared type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Read bytes of the wrong length.
    #[error("{got} bytes read, a {kind:?} has {want}")]
    Length {
        /// Declared type.
        kind: ValueType,
        /// Bytes it has.
        want: usize,
        /// Bytes read.
        got: usize,
    },
    /// A downlink value that cannot be written as the declared type.
    #[error("cannot write {0} as {1:?}")]
    Mismatch(String, ValueType),
}

impl ValueType {
    fn width(self) -> Option<usize> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::Utf8 | ValueType::Bytes => None,
        }
    }

    /// The reading of `bytes`, numbers times `scale`.
    pub fn read(self, bytes: &[u8], scale: f64) -> Result<Quantity, ValueError> {
        if let Some(want) = self.width()
            && bytes.len() != want
        {
            return Err(ValueError::Length {
                kind: self,
                want,
                got: bytes.len(),
            });
        }
        let n = |v: f64| Quantity::Number(crate::decode::scaled(v, scale));
        Ok(match self {
            ValueType::U8 => n(f64::from(bytes[0])),
            ValueType::I8 => n(f64::from(bytes[0] as i8)),
            ValueType::U16 => n(f64::from(u16::from_le_bytes([bytes[0], bytes[1]]))),
            ValueType::I16 => n(f64::from(i16::from_le_bytes([bytes[0], bytes[1]]))),
            ValueType::U32 => n(f64::from(u32::from_le_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))),
            ValueType::I32 => n(f64::from(i32::from_le_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))),
            ValueType::F32 => n(f64::from(f32::from_le_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))),
            ValueType::Bool => Quantity::Bool(bytes[0] != 0),
            ValueType::Utf8 => Quantity::Text(String::from_utf8_lossy(bytes).into_owned()),
            ValueType::Bytes => Quantity::Text(hex::encode(bytes)),
        })
    }

    /// The bytes that write `value` (a number divided by `scale` first).
    pub fn write(self, value: &Value, scale: f64) -> Result<Vec<u8>, ValueError> {
        let mismatch = || ValueError::Mismatch(format!("{value:?}"), self);
        let number = match value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
        .map(|v| v / scale);
        let int = |lo: f64, hi: f64| -> Result<i64, ValueError> {
            let v = number.ok_or_else(mismatch)?.round();
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v as i64)
            } else {
                Err(mismatch())
            }
        };
        Ok(match self {
            ValueType::U8 => vec![int(0.0, 255.0)? as u8],
            ValueType::I8 => vec![int(-128.0, 127.0)? as i8 as u8],
            ValueType::U16 => (int(0.0, 65_535.0)? as u16).to_le_bytes().to_vec(),
            ValueType::I16 => (int(-32_768.0, 32_767.0)? as i16).to_le_bytes().to_vec(),
            ValueType::U32 => (int(0.0, 4_294_967_295.0)? as u32).to_le_bytes().to_vec(),
            ValueType::I32 => (int(-2_147_483_648.0, 2_147_483_647.0)? as i32)
                .to_le_bytes()
                .to_vec(),
            ValueType::F32 => (number.ok_or_else(mismatch)? as f32).to_le_bytes().to_vec(),
            ValueType::Bool => match value {
                Value::Bool(b) => vec![u8::from(*b)],
                _ => vec![u8::from(int(0.0, 1.0)? != 0)],
            },
            ValueType::Utf8 => match value {
                Value::Text(t) => t.clone().into_bytes(),
                _ => return Err(mismatch()),
            },
            ValueType::Bytes => match value {
                Value::Bytes(b) => b.clone(),
                Value::Text(t) => hex::decode(t).map_err(|_| mismatch())?,
                _ => return Err(mismatch()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Environmental Sensing temperature (0x2A6E): i16, 0.01 °C; humidity
    // (0x2A6F): u16, 0.01 %; battery level (0x2A19): u8 %.
    #[test]
    fn sig_characteristics() {
        assert_eq!(
            ValueType::I16.read(&[0xca, 0x09], 0.01),
            Ok(Quantity::Number(25.06))
        );
        assert_eq!(
            ValueType::I16
                .read(&[0x36, 0xf6], 0.01)
                .map(|q| matches!(q, Quantity::Number(n) if (n + 25.06).abs() < 1e-9)),
            Ok(true)
        );
        assert_eq!(
            ValueType::U16
                .read(&[0xbf, 0x13], 0.01)
                .map(|q| matches!(q, Quantity::Number(n) if (n - 50.55).abs() < 1e-9)),
            Ok(true)
        );
        assert_eq!(ValueType::U8.read(&[97], 1.0), Ok(Quantity::Number(97.0)));
        assert_eq!(
            ValueType::Utf8.read(b"v1.2", 1.0),
            Ok(Quantity::Text("v1.2".into()))
        );
        assert!(matches!(
            ValueType::U16.read(&[1], 1.0),
            Err(ValueError::Length {
                want: 2,
                got: 1,
                ..
            })
        ));
    }

    #[test]
    fn writes_by_type() {
        assert_eq!(ValueType::U8.write(&Value::Int(1), 1.0), Ok(vec![1]));
        assert_eq!(
            ValueType::I16.write(&Value::Float(25.0), 0.01),
            Ok(vec![0xc4, 0x09])
        );
        assert_eq!(ValueType::Bool.write(&Value::Bool(true), 1.0), Ok(vec![1]));
        assert_eq!(
            ValueType::Bytes.write(&Value::Text("0102".into()), 1.0),
            Ok(vec![1, 2])
        );
        assert!(ValueType::U8.write(&Value::Int(256), 1.0).is_err());
        assert!(ValueType::U8.write(&Value::Text("x".into()), 1.0).is_err());
    }
}
