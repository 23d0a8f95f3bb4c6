//! What a point's registers mean: its type, the order of its words and
//! bytes, and the conversion both ways (registers to a value when polling,
//! a value to registers when writing). Pure.
//!
//! Modbus itself only knows 16-bit registers sent high byte first. Values
//! wider than one register are split across several, and vendors disagree on
//! the order. With the value's bytes named `A B C D …` from the most
//! significant, [`WordOrder`] says how they lie in the registers as read:
//! `ABCD` (registers in order, high byte first: the Modbus convention),
//! `CDAB` (registers swapped, "word swap"), `BADC` (bytes swapped within each
//! register) and `DCBA` (both: fully little-endian). For 64-bit values the
//! same rule holds over four registers.

use serde::Deserialize;
use std::fmt;

/// The type of a point's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointType {
    /// A coil or discrete input, or a register (non-zero, or one `bit` of it).
    Bool,
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Four registers, unsigned.
    U64,
    /// Four registers, two's complement.
    I64,
    /// Two registers, IEEE 754 single precision.
    F32,
    /// Four registers, IEEE 754 double precision.
    F64,
    /// `length` registers of text, two bytes each; NULs and spaces at the end are dropped.
    String,
}

impl PointType {
    /// Registers the type takes; `length` counts only for strings.
    pub fn registers(self, length: u16) -> u16 {
        match self {
            PointType::Bool | PointType::U16 | PointType::I16 => 1,
            PointType::U32 | PointType::I32 | PointType::F32 => 2,
            PointType::U64 | PointType::I64 | PointType::F64 => 4,
            PointType::String => length,
        }
    }

    /// Whether the value is a number (scale and offset apply).
    pub fn is_numeric(self) -> bool {
        !matches!(self, PointType::Bool | PointType::String)
    }

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            PointType::Bool => "bool",
            PointType::U16 => "u16",
            PointType::I16 => "i16",
            PointType::U32 => "u32",
            PointType::I32 => "i32",
            PointType::U64 => "u64",
            PointType::I64 => "i64",
            PointType::F32 => "f32",
            PointType::F64 => "f64",
            PointType::String => "string",
        }
    }
}

/// How a multi-register value's bytes lie in its registers (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum WordOrder {
    /// Registers in order, high byte first (the Modbus convention).
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    /// Registers in reverse order, high byte first ("word swap").
    #[serde(rename = "CDAB")]
    Cdab,
    /// Registers in order, low byte first ("byte swap").
    #[serde(rename = "BADC")]
    Badc,
    /// Registers in reverse order, low byte first (little-endian).
    #[serde(rename = "DCBA")]
    Dcba,
}

impl WordOrder {
    fn words_reversed(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    fn bytes_swapped(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
}

/// A decoded value before scaling.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    /// A boolean.
    Bool(bool),
    /// An integer (every integer type fits).
    Int(i128),
    /// A float.
    Float(f64),
    /// Text.
    Text(String),
}

/// The value's bytes, most significant first, from its registers as read.
/// For strings only the byte order within each register counts: text is
/// never read backwards.
fn value_bytes(words: &[u16], order: WordOrder, text: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(words.len() * 2);
    let reversed = order.words_reversed() && !text;
    let mut push = |w: u16| {
        let [hi, lo] = w.to_be_bytes();
        if order.bytes_swapped() {
            bytes.extend([lo, hi]);
        } else {
            bytes.extend([hi, lo]);
        }
    };
    if reversed {
        words.iter().rev().copied().for_each(&mut push);
    } else {
        words.iter().copied().for_each(&mut push);
    }
    bytes
}

/// The registers holding `bytes` (most significant first) in `order`.
fn value_words(bytes: &[u8], order: WordOrder, text: bool) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| {
            let (hi, lo) = (pair[0], pair.get(1).copied().unwrap_or(0));
            if order.bytes_swapped() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.words_reversed() && !text {
        words.reverse();
    }
    words
}

/// Decodes a register point from exactly `kind.registers(length)` words.
/// `bit` picks one bit of a single register for a `bool`.
pub fn decode(kind: PointType, order: WordOrder, bit: Option<u8>, words: &[u16]) -> Raw {
    let bytes = value_bytes(words, order, kind == PointType::String);
    let be = |n: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[8 - n..].copy_from_slice(&bytes[..n]);
        b
    };
    match kind {
        PointType::Bool => {
            let word = u16::from_be_bytes([bytes[0], bytes[1]]);
            Raw::Bool(match bit {
                Some(b) => word & (1 << b) != 0,
                None => word != 0,
            })
        }
        PointType::U16 => Raw::Int(u16::from_be_bytes([bytes[0], bytes[1]]).into()),
        PointType::I16 => Raw::Int(i16::from_be_bytes([bytes[0], bytes[1]]).into()),
        PointType::U32 => Raw::Int(u64::from_be_bytes(be(4)).into()),
        PointType::I32 => Raw::Int((u64::from_be_bytes(be(4)) as u32 as i32).into()),
        PointType::U64 => Raw::Int(u64::from_be_bytes(be(8)).into()),
        PointType::I64 => Raw::Int(i64::from_be_bytes(be(8)).into()),
        PointType::F32 => Raw::Float(f32::from_bits(u64::from_be_bytes(be(4)) as u32).into()),
        PointType::F64 => Raw::Float(f64::from_bits(u64::from_be_bytes(be(8)))),
        PointType::String => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let text = String::from_utf8_lossy(&bytes[..end]);
            Raw::Text(text.trim_end_matches(' ').to_owned())
        }
    }
}

/// Why a value cannot be written to a point.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The value is of another kind than the point (text for a number, …).
    #[error("a {point} point takes {wants}, not {got}")]
    WrongKind {
        /// The point's type.
        point: &'static str,
        /// What it takes.
        wants: &'static str,
        /// What was given.
        got: &'static str,
    },
    /// The value, unscaled, does not fit the point's type.
    #[error("{value} is out of range for a {point} point")]
    OutOfRange {
        /// The unscaled value.
        value: String,
        /// The point's type.
        point: &'static str,
    },
    /// Text longer than the point's registers hold.
    #[error("text of {len} bytes does not fit {max} bytes")]
    TooLong {
        /// Bytes given.
        len: usize,
        /// Bytes the point holds.
        max: usize,
    },
    /// A bool that is one bit of a register cannot be written alone.
    #[error("a point that is one bit of a register cannot be written")]
    Bit,
}

/// Encodes an unscaled number into the registers of a numeric point.
/// Integers are rounded to the nearest whole number.
pub fn encode_number(
    kind: PointType,
    order: WordOrder,
    value: f64,
) -> Result<Vec<u16>, EncodeError> {
    let out_of_range = || EncodeError::OutOfRange {
        value: value.to_string(),
        point: kind.as_str(),
    };
    if !value.is_finite() && !matches!(kind, PointType::F32 | PointType::F64) {
        return Err(out_of_range());
    }
    let int = |min: f64, max: f64| -> Result<i128, EncodeError> {
        let r = value.round();
        if r < min || r > max {
            Err(out_of_range())
        } else {
            Ok(r as i128)
        }
    };
    let bytes: Vec<u8> = match kind {
        PointType::U16 => (int(0.0, u16::MAX as f64)? as u16).to_be_bytes().to_vec(),
        PointType::I16 => (int(i16::MIN as f64, i16::MAX as f64)? as i16)
            .to_be_bytes()
            .to_vec(),
        PointType::U32 => (int(0.0, u32::MAX as f64)? as u32).to_be_bytes().to_vec(),
        PointType::I32 => (int(i32::MIN as f64, i32::MAX as f64)? as i32)
            .to_be_bytes()
            .to_vec(),
        // 2^64 and 2^63 are exact in f64; the largest f64 below them fits.
        PointType::U64 => {
            if !(0.0..18_446_744_073_709_551_616.0).contains(&value.round()) {
                return Err(out_of_range());
            }
            (value.round() as u64).to_be_bytes().to_vec()
        }
        PointType::I64 => {
            if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&value.round())
            {
                return Err(out_of_range());
            }
            (value.round() as i64).to_be_bytes().to_vec()
        }
        PointType::F32 => {
            let f = value as f32;
            if value.is_finite() && !f.is_finite() {
                return Err(out_of_range());
            }
            f.to_bits().to_be_bytes().to_vec()
        }
        PointType::F64 => value.to_bits().to_be_bytes().to_vec(),
        PointType::Bool | PointType::String => {
            return Err(EncodeError::WrongKind {
                point: kind.as_str(),
                wants: if kind == PointType::Bool {
                    "a boolean"
                } else {
                    "text"
                },
                got: "a number",
            });
        }
    };
    Ok(value_words(&bytes, order, false))
}

/// Encodes text into the `length` registers of a string point, padded with NULs.
pub fn encode_text(order: WordOrder, length: u16, text: &str) -> Result<Vec<u16>, EncodeError> {
    let max = usize::from(length) * 2;
    if text.len() > max {
        return Err(EncodeError::TooLong {
            len: text.len(),
            max,
        });
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(max, 0);
    Ok(value_words(&bytes, order, true))
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PointType::*;
    use WordOrder::*;

    /// One decoding case: the registers as read, and what they mean.
    fn check(kind: PointType, order: WordOrder, words: &[u16], expected: Raw) {
        assert_eq!(
            decode(kind, order, None, words),
            expected,
            "{kind:?} {order} {words:04x?}"
        );
    }

    #[test]
    fn one_register_types_follow_the_byte_order_only() {
        check(U16, Abcd, &[0x1234], Raw::Int(0x1234));
        check(U16, Cdab, &[0x1234], Raw::Int(0x1234));
        check(U16, Badc, &[0x1234], Raw::Int(0x3412));
        check(U16, Dcba, &[0x1234], Raw::Int(0x3412));
        check(I16, Abcd, &[0xfffe], Raw::Int(-2));
        check(I16, Badc, &[0xfeff], Raw::Int(-2));
    }

    #[test]
    fn thirty_two_bit_values_in_all_four_orders() {
        // 0x12345678 = 305419896: A=12 B=34 C=56 D=78.
        check(U32, Abcd, &[0x1234, 0x5678], Raw::Int(305_419_896));
        check(U32, Cdab, &[0x5678, 0x1234], Raw::Int(305_419_896));
        check(U32, Badc, &[0x3412, 0x7856], Raw::Int(305_419_896));
        check(U32, Dcba, &[0x7856, 0x3412], Raw::Int(305_419_896));
        // -2 = 0xfffffffe.
        check(I32, Abcd, &[0xffff, 0xfffe], Raw::Int(-2));
        check(I32, Cdab, &[0xfffe, 0xffff], Raw::Int(-2));
        // 230.5 as f32 = 0x43668000.
        check(F32, Abcd, &[0x4366, 0x8000], Raw::Float(230.5));
        check(F32, Cdab, &[0x8000, 0x4366], Raw::Float(230.5));
        check(F32, Badc, &[0x6643, 0x0080], Raw::Float(230.5));
        check(F32, Dcba, &[0x0080, 0x6643], Raw::Float(230.5));
    }

    #[test]
    fn sixty_four_bit_values_in_all_four_orders() {
        // 0x0102030405060708: A..H = 01..08.
        let v = Raw::Int(0x0102_0304_0506_0708);
        check(U64, Abcd, &[0x0102, 0x0304, 0x0506, 0x0708], v.clone());
        check(U64, Cdab, &[0x0708, 0x0506, 0x0304, 0x0102], v.clone());
        check(U64, Badc, &[0x0201, 0x0403, 0x0605, 0x0807], v.clone());
        check(U64, Dcba, &[0x0807, 0x0605, 0x0403, 0x0201], v);
        check(I64, Abcd, &[0xffff, 0xffff, 0xffff, 0xfffd], Raw::Int(-3));
        check(U64, Abcd, &[0xffff; 4], Raw::Int(u64::MAX.into()));
        // 1234.5678 as f64 = 0x40934a456d5cfaad.
        check(
            F64,
            Cdab,
            &[0xfaad, 0x6d5c, 0x4a45, 0x4093],
            Raw::Float(1234.5678),
        );
    }

    #[test]
    fn strings_keep_their_reading_order_and_drop_padding() {
        // "EM24" then NUL padding; high byte first.
        check(
            String,
            Abcd,
            &[0x454d, 0x3234, 0x0000],
            Raw::Text("EM24".into()),
        );
        // Byte-swapped devices send "ME42"; the word order never reverses text.
        check(
            String,
            Badc,
            &[0x4d45, 0x3432, 0x2020],
            Raw::Text("EM24".into()),
        );
        check(String, Cdab, &[0x454d, 0x3234], Raw::Text("EM24".into()));
    }

    #[test]
    fn bools_from_registers() {
        assert_eq!(decode(Bool, Abcd, None, &[0]), Raw::Bool(false));
        assert_eq!(decode(Bool, Abcd, None, &[0x0100]), Raw::Bool(true));
        assert_eq!(decode(Bool, Abcd, Some(8), &[0x0100]), Raw::Bool(true));
        assert_eq!(decode(Bool, Abcd, Some(0), &[0x0100]), Raw::Bool(false));
    }

    #[test]
    fn encoding_is_decodings_inverse_in_every_order() {
        let cases = [
            (U16, 4660.0),
            (I16, -300.0),
            (U32, 305_419_896.0),
            (I32, -70_000.0),
            (U64, 1e15),
            (I64, -1e15),
            (F32, 230.5),
            (F64, 1234.5678),
        ];
        for order in [Abcd, Cdab, Badc, Dcba] {
            for (kind, value) in cases {
                let words = encode_number(kind, order, value).expect("encodes");
                assert_eq!(words.len(), usize::from(kind.registers(0)));
                let back = match decode(kind, order, None, &words) {
                    Raw::Int(i) => i as f64,
                    Raw::Float(f) => f,
                    other => panic!("{other:?}"),
                };
                assert_eq!(back, value, "{kind:?} {order}");
            }
        }
        let words = encode_text(Badc, 3, "EM24").expect("fits");
        assert_eq!(decode(String, Badc, None, &words), Raw::Text("EM24".into()));
    }

    #[test]
    fn values_that_do_not_fit_are_refused() {
        assert!(matches!(
            encode_number(U16, Abcd, 65_536.0),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode_number(U16, Abcd, -1.0),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode_number(I16, Abcd, f64::NAN),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode_number(F32, Abcd, 1e300),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode_number(U64, Abcd, 2f64.powi(64)),
            Err(EncodeError::OutOfRange { .. })
        ));
        assert_eq!(
            encode_text(Abcd, 1, "abc"),
            Err(EncodeError::TooLong { len: 3, max: 2 })
        );
        assert_eq!(encode_number(I16, Abcd, 2.6), Ok(vec![3]));
    }
}
