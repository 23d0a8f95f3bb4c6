//! Bluetooth device addresses (`AA:BB:CC:DD:EE:FF`), as the config, the
//! replay format and the decoders write them.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Bluetooth device address, most significant byte first (as printed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// Why a text is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (six hex pairs separated by `:`, e.g. `A4:C1:38:8F:80:A5`)")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

impl Mac {
    /// Lowercase hex without separators (`a4c1388f80a5`), for device ids.
    pub fn compact(&self) -> String {
        hex::encode(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_upper_case() {
        let mac: Mac = "a4:c1:38:8f:80:A5".parse().expect("mac");
        assert_eq!(mac.0, [0xa4, 0xc1, 0x38, 0x8f, 0x80, 0xa5]);
        assert_eq!(mac.to_string(), "A4:C1:38:8F:80:A5");
        assert_eq!(mac.compact(), "a4c1388f80a5");
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "",
            "A4:C1:38:8F:80",
            "A4:C1:38:8F:80:A5:00",
            "A4C1388F80A5",
            "A4:C1:38:8F:80:G5",
            "A4:C1:38:8F:80:5",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
