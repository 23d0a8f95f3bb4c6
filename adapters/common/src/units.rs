//! Human-unit newtypes that validate while the config is parsed:
//! [`ByteSize`] (`"256 MiB"`) and [`HumanDuration`] (`"500 ms"`).

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A size in bytes, written in the config as `"64 KiB"`, `"256 MiB"`, `"1 GB"` or a bare integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_number(s)?;
        let factor: u64 = match unit {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}` (use B, KB, MB, GB, KiB, MiB or GiB)"
                ));
            }
        };
        let bytes = number * factor as f64;
        if !(0.0..=u64::MAX as f64).contains(&bytes) || bytes.fract() != 0.0 {
            return Err(format!("`{s}` is not a whole number of bytes"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= size && b.is_multiple_of(size) {
                return write!(f, "{} {unit}", b / size);
            }
        }
        write!(f, "{b} B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor::<ByteSize>::new("a size such as \"64 KiB\""))
    }
}

/// A duration, written in the config as `"500 ms"`, `"30 s"`, `"5 min"`, `"7 days"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Shorthand for whole seconds.
    pub const fn secs(s: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(s))
    }

    /// Shorthand for milliseconds.
    pub const fn millis(ms: u64) -> HumanDuration {
        HumanDuration(Duration::from_millis(ms))
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_number(s)?;
        let seconds: f64 = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "" => return Err(format!("`{s}` needs a unit (ms, s, min, h or days)")),
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{s}` (use ms, s, min, h or days)"
                ));
            }
        };
        Duration::try_from_secs_f64(number * seconds)
            .map(HumanDuration)
            .map_err(|_| format!("`{s}` is not a valid duration"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => write!(f, "0 s"),
            ms if ms % 86_400_000 == 0 => write!(f, "{} days", ms / 86_400_000),
            ms if ms % 3_600_000 == 0 => write!(f, "{} h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{} min", ms / 60_000),
            ms if ms % 1000 == 0 => write!(f, "{} s", ms / 1000),
            ms => write!(f, "{ms} ms"),
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(UnitVisitor::<HumanDuration>::new(
            "a duration such as \"500 ms\"",
        ))
    }
}

/// Splits `"12.5 MiB"` into `(12.5, "MiB")`.
fn split_number(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let digits: String = s[..end].chars().filter(|&c| c != '_').collect();
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    Ok((number, s[end..].trim()))
}

/// Accepts a string in human units, or (for sizes) a bare integer of bytes.
struct UnitVisitor<T> {
    expecting: &'static str,
    _marker: std::marker::PhantomData<T>,
}

impl<T> UnitVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        UnitVisitor {
            expecting,
            _marker: std::marker::PhantomData,
        }
    }
}

impl<T: FromStr<Err = String>> de::Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        if v < 0 {
            return Err(E::custom(format!("{v} is negative")));
        }
        v.to_string().parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_human_units() {
        let cases = [
            ("0", 0),
            ("512", 512),
            ("64 KiB", 65_536),
            ("256MiB", 256 << 20),
            ("1.5 KiB", 1536),
            ("2 GB", 2_000_000_000),
            ("1_000 B", 1000),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_why() {
        for (text, needle) in [
            ("12 parsecs", "unknown size unit"),
            ("MiB", "number"),
            ("0.3 B", "whole"),
        ] {
            let err = text.parse::<ByteSize>().unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn durations_parse_in_human_units() {
        let cases = [
            ("500 ms", Duration::from_millis(500)),
            ("30 s", Duration::from_secs(30)),
            ("5 min", Duration::from_secs(300)),
            ("1.5h", Duration::from_secs(5400)),
            ("7 days", Duration::from_secs(7 * 86_400)),
        ];
        for (text, d) in cases {
            assert_eq!(
                text.parse::<HumanDuration>(),
                Ok(HumanDuration(d)),
                "{text}"
            );
        }
        assert!(
            "30".parse::<HumanDuration>()
                .unwrap_err()
                .contains("needs a unit")
        );
        assert!(
            "3 fortnights"
                .parse::<HumanDuration>()
                .unwrap_err()
                .contains("unknown duration unit")
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["64 KiB", "3 B", "256 MiB"] {
            assert_eq!(
                text.parse::<ByteSize>().map(|b| b.to_string()).as_deref(),
                Ok(text)
            );
        }
        for text in ["500 ms", "30 s", "5 min", "7 days"] {
            assert_eq!(
                text.parse::<HumanDuration>()
                    .map(|d| d.to_string())
                    .as_deref(),
                Ok(text)
            );
        }
    }
}
