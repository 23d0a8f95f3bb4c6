//! Streaming anomaly detection per series: for every (device, reading) pair
//! it keeps an exponentially weighted moving mean and variance, and flags a
//! value whose z-score against them (`(value - mean) / deviation`) is beyond
//! `threshold`.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `reading` | string | every numeric reading | the one reading to watch |
//! | `alpha` | number | `0.1` | weight of a new value in the mean and variance, `0 < alpha ≤ 1`; smaller adapts slower and remembers longer |
//! | `threshold` | number | `4.0` | flag when `|z| > threshold`, finite and `> 0` |
//! | `warmup` | number | `30` | values a series must have seen before it can flag, an integer `>= 2` |
//! | `min_deviation` | number | `0.0` | floor of the deviation a score divides by, `>= 0`: changes smaller than the sensor's resolution then never flag |
//!
//! Until a series has `1 / alpha` values its mean and variance are the plain
//! running ones (the weight is `max(alpha, 1 / n)`), so the warm-up estimate
//! is not biased towards the first value. Every value, flagged or not, then
//! updates the series: a one-off spike widens the deviation for a while (at
//! `alpha = 0.1` about 25 values), and a lasting level shift is flagged until
//! the mean has moved to it.
//!
//! Durable state per series under `s/<device>\0<reading>`: 20 bytes (mean and
//! variance as f64, values seen as u32, little-endian), about 40 bytes per
//! series with the key. A series whose key would exceed 256 bytes fails the
//! event with the SDK's `STATE_BAD_ARGUMENT` code (7), a full state with
//! `STATE_FULL` (6). Non-numeric readings and non-finite values are ignored.
//!
//! For each flagged value it emits one event under
//! `fn/<function>/<device>/<reading>` (each level made safe with
//! `text::subject_level`) with the numbers `score` (the signed z-score, unit
//! `""`), `value`, `mean` and `deviation` (the mean and deviation before this
//! value, in the reading's unit), the meta `reading` (the reading's name, as
//! text), and the input's `device_time_ms`. Nothing otherwise.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use sluice_sdk::{Config, Error, EventView, EventWriter, Function, Kind, ValueRef, state, text};

/// The anomaly function, as configured.
pub struct Anomaly {
    reading: Option<String>,
    alpha: f64,
    threshold: f64,
    warmup: u32,
    min_deviation: f64,
}

/// One series' running estimate, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Series {
    mean: f64,
    variance: f64,
    seen: u32,
}

/// What [`Anomaly::observe`] found out about one value.
#[derive(Debug, PartialEq)]
struct Finding {
    score: f64,
    mean: f64,
    deviation: f64,
}

impl Series {
    const LEN: usize = 20;

    fn decode(bytes: &[u8]) -> Option<Series> {
        let bytes: &[u8; Series::LEN] = bytes.try_into().ok()?;
        let (mean, rest) = bytes.split_at(8);
        let (variance, seen) = rest.split_at(8);
        Some(Series {
            mean: f64::from_le_bytes(mean.try_into().ok()?),
            variance: f64::from_le_bytes(variance.try_into().ok()?),
            seen: u32::from_le_bytes(seen.try_into().ok()?),
        })
    }

    fn encode(&self) -> [u8; Series::LEN] {
        let mut out = [0u8; Series::LEN];
        out[..8].copy_from_slice(&self.mean.to_le_bytes());
        out[8..16].copy_from_slice(&self.variance.to_le_bytes());
        out[16..].copy_from_slice(&self.seen.to_le_bytes());
        out
    }
}

/// Square root without std (`f64::sqrt` is not in `core`): a first guess
/// from halving the exponent, then Newton's method, which doubles the correct
/// digits each step and stops when it no longer moves.
fn sqrt(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return if x == 0.0 || x == f64::INFINITY {
            x
        } else {
            f64::NAN
        };
    }
    let mut r = f64::from_bits((x.to_bits() >> 1) + (1023 << 51));
    for _ in 0..8 {
        let next = 0.5 * (r + x / r);
        if next == r {
            break;
        }
        r = next;
    }
    r
}

impl Anomaly {
    /// Scores `value` against `series` (once warmed up), then updates it.
    fn observe(&self, series: &mut Series, value: f64) -> Option<Finding> {
        let deviation = sqrt(series.variance);
        let diff = value - series.mean;
        let finding = (series.seen >= self.warmup).then(|| {
            let floor = deviation.max(self.min_deviation);
            let score = if floor > 0.0 {
                diff / floor
            } else if diff == 0.0 {
                0.0
            } else {
                // Never varied: any change is infinitely unusual; keep the
                // number finite so that it encodes everywhere.
                f64::MAX.copysign(diff)
            };
            Finding {
                score: score.clamp(f64::MIN, f64::MAX),
                mean: series.mean,
                deviation,
            }
        });
        series.seen = series.seen.saturating_add(1);
        let weight = self.alpha.max(1.0 / f64::from(series.seen));
        let step = weight * diff;
        series.mean += step;
        series.variance = (1.0 - weight) * (series.variance + diff * step);
        finding.filter(|f| f.score.abs() > self.threshold)
    }
}

/// The state key of `reading` on `device`, if it fits.
fn key(device: &str, reading: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + device.len() + reading.len());
    key.extend_from_slice(b"s/");
    key.extend_from_slice(device.as_bytes());
    key.push(0);
    key.extend_from_slice(reading.as_bytes());
    key
}

impl Function for Anomaly {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[
            ("reading", Kind::Text),
            ("alpha", Kind::Number),
            ("threshold", Kind::Number),
            ("warmup", Kind::Number),
            ("min_deviation", Kind::Number),
        ])?;
        let alpha = config.number("alpha").unwrap_or(0.1);
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(config.invalid("alpha", "must be above 0 and at most 1"));
        }
        let threshold = config.number("threshold").unwrap_or(4.0);
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(config.invalid("threshold", "must be finite and above 0"));
        }
        let warmup = config.number("warmup").unwrap_or(30.0);
        if !(2.0..=1e9).contains(&warmup) || warmup as u32 as f64 != warmup {
            return Err(config.invalid("warmup", "must be an integer of at least 2"));
        }
        let min_deviation = config.number("min_deviation").unwrap_or(0.0);
        if !(min_deviation.is_finite() && min_deviation >= 0.0) {
            return Err(config.invalid("min_deviation", "must be finite and at least 0"));
        }
        Ok(Anomaly {
            reading: config.text("reading").map(String::from),
            alpha,
            threshold,
            warmup: warmup as u32,
            min_deviation,
        })
    }

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        for reading in input.readings() {
            let ValueRef::Number(value) = reading.value else {
                continue;
            };
            if !value.is_finite() || self.reading.as_deref().is_some_and(|r| r != reading.name) {
                continue;
            }
            let key = key(input.device, reading.name);
            let mut series = state::get(&key)
                .as_deref()
                .and_then(Series::decode)
                .unwrap_or_default();
            let finding = self.observe(&mut series, value);
            state::put(&key, &series.encode())?;
            let Some(f) = finding else {
                continue;
            };
            let mut subject = text::subject_level(input.device);
            subject.push('/');
            subject.push_str(&text::subject_level(reading.name));
            let mut output = EventWriter::new(&subject, input.device);
            output
                .device_time_ms(input.device_time_ms)
                .number("score", f.score, "")
                .number("value", value, reading.unit)
                .number("mean", f.mean, reading.unit)
                .number("deviation", f.deviation, reading.unit)
                .meta("reading", ValueRef::Text(reading.name));
            sluice_sdk::emit(&output)?;
        }
        Ok(())
    }
}

sluice_sdk::export_function!(Anomaly);

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(alpha: f64, threshold: f64, warmup: u32) -> Anomaly {
        Anomaly {
            reading: None,
            alpha,
            threshold,
            warmup,
            min_deviation: 0.0,
        }
    }

    #[test]
    fn warm_up_is_the_plain_mean_and_variance() {
        let d = detector(0.01, 4.0, 100);
        let mut s = Series::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            assert_eq!(d.observe(&mut s, v), None);
        }
        assert!((s.mean - 5.0).abs() < 1e-12, "{}", s.mean);
        assert!((s.variance - 4.0).abs() < 1e-12, "{}", s.variance);
        assert_eq!(s.seen, 8);
    }

    #[test]
    fn flags_a_spike_and_not_the_noise() {
        let d = detector(0.1, 4.0, 10);
        let mut s = Series::default();
        let noise = [0.3, -0.5, 0.9, -0.2, 0.1, -0.8, 0.6, -0.4, 0.0, 0.7];
        for round in 0..5 {
            for n in noise {
                assert_eq!(d.observe(&mut s, 20.0 + n), None, "round {round}");
            }
        }
        let f = d.observe(&mut s, 30.0).expect("flagged");
        assert!(f.score > 10.0, "{f:?}");
        assert!((f.mean - 20.0).abs() < 0.5 && f.deviation < 1.0, "{f:?}");
        let f = d.observe(&mut s, 20.0);
        assert_eq!(f, None, "the spike widened the deviation");
    }

    #[test]
    fn a_flat_series_flags_any_change_with_a_finite_score() {
        let d = detector(0.1, 4.0, 2);
        let mut s = Series::default();
        d.observe(&mut s, 1.0);
        d.observe(&mut s, 1.0);
        assert_eq!(d.observe(&mut s, 1.0), None);
        let f = d.observe(&mut s, 0.5).expect("flagged");
        assert_eq!(f.score, f64::MIN);
        let floored = Anomaly {
            min_deviation: 1.0,
            ..detector(0.1, 4.0, 2)
        };
        let mut s = Series::default();
        for _ in 0..3 {
            floored.observe(&mut s, 1.0);
        }
        assert_eq!(floored.observe(&mut s, 0.5), None);
    }

    #[test]
    fn state_round_trip_and_keys() {
        let s = Series {
            mean: 1.5,
            variance: 0.25,
            seen: 7,
        };
        assert_eq!(Series::decode(&s.encode()), Some(s));
        assert_eq!(Series::decode(&[1, 2]), None);
        assert_eq!(key("a/b", "c"), b"s/a/b\0c");
        assert_ne!(key("a", "b/c"), key("a/b", "c"));
    }

    #[test]
    fn sqrt_matches_std() {
        for x in [0.0, 1e-300, 1e-12, 0.25, 2.0, 3.0, 1e12, 1e300] {
            assert!(
                (sqrt(x) - x.sqrt()).abs() <= 1e-12 * x.sqrt().max(1.0),
                "{x}"
            );
        }
    }
}
