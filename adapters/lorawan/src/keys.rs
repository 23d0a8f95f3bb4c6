//! Identifiers and keys as the config writes them (hex, most significant
//! byte first, as printed on device labels and in lora-packet) and as the
//! wire carries them (little-endian). Keys print as `[redacted]` in every
//! `Debug`, so no log line and no upstream record can carry one.

use serde::Deserialize;
use std::fmt;

/// Parses `text` as exactly `N` bytes of hex (`N * 2` digits; spaces,
/// `:` and `-` between digits are allowed, as labels print them).
pub fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'-'))
        .collect();
    if digits.len() != N * 2 {
        return Err(format!(
            "must be {} hex digits ({N} bytes), found {}",
            N * 2,
            digits.len()
        ));
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]);
        let lo = hex_value(pair[1]);
        match (hi, lo) {
            (Some(h), Some(l)) => out[i] = h << 4 | l,
            _ => return Err("must contain only hex digits 0-9 and a-f".into()),
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes`, in the order given.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A 64-bit EUI (DevEUI, JoinEUI/AppEUI, gateway EUI), most significant byte first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eui64(pub [u8; 8]);

impl Eui64 {
    /// From the wire's little-endian bytes.
    pub fn from_wire(le: &[u8]) -> Option<Eui64> {
        let mut b: [u8; 8] = le.try_into().ok()?;
        b.reverse();
        Some(Eui64(b))
    }

    /// Lower-case hex, most significant byte first: `lorawan/<this>/up`.
    pub fn hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl fmt::Display for Eui64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Eui64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A 128-bit AES key (AppKey, NwkSKey, AppSKey). Its `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key(pub [u8; 16]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key([redacted])")
    }
}

/// Key text from the config: kept as written until validated, never shown.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl SecretText {
    /// The key, if the text is 32 hex digits.
    pub fn key(&self) -> Result<Key, String> {
        parse_hex::<16>(&self.0).map(Key)
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_checked_for_length_and_digits() {
        assert_eq!(parse_hex::<2>("0aFf"), Ok([0x0a, 0xff]));
        assert_eq!(parse_hex::<4>("26:01-1b 01"), Ok([0x26, 0x01, 0x1b, 0x01]));
        assert!(parse_hex::<2>("0a").unwrap_err().contains("4 hex digits"));
        assert!(parse_hex::<2>("0agg").unwrap_err().contains("only hex"));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let text = SecretText("000102030405060708090a0b0c0d0e0f".into());
        assert_eq!(format!("{text:?}"), "[redacted]");
        let key = text.key().expect("valid");
        assert!(!format!("{key:?}").contains("0102"));
    }

    #[test]
    fn euis_are_reversed_from_the_wire() {
        let eui = Eui64::from_wire(&[8, 7, 6, 5, 4, 3, 2, 1]).expect("8 bytes");
        assert_eq!(eui.hex(), "0102030405060708");
    }
}
