//! Threshold alarm with hysteresis: reports when a reading rises above `high`
//! and when it falls back below `low`, once each, per device.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `reading` | string | required | the reading to watch, e.g. `temperature` |
//! | `high` | number | required | entering the alarm: value `> high` |
//! | `low` | number | `high` | leaving the alarm: value `< low`; must be `<= high` |
//!
//! Whether a device is in alarm is durable state under the key
//! `alarm/<device>` (present = in alarm), so a restart neither repeats nor
//! loses a transition. On a transition the function emits one event under
//! `fn/<function>/<device>` with the watched reading, the input's meta,
//! `device_time_ms`, and the meta `alarm` (`"high"` on entering, `"clear"` on
//! leaving), `high` and `low`. Anything else emits nothing, and so does an
//! event without the reading (or with a non-numeric one).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use sluice_sdk::{Config, Error, EventView, EventWriter, Function, Kind, ValueRef, state, text};

/// The threshold function, as configured.
pub struct Threshold {
    reading: String,
    high: f64,
    low: f64,
    /// The state key, kept from call to call (an allocation costs fuel).
    key: String,
}

/// What one value does to a device's alarm.
#[derive(Debug, PartialEq)]
enum Transition {
    Enter,
    Clear,
}

impl Threshold {
    /// The transition `value` causes for a device that is (or is not) in
    /// alarm; NaN causes none.
    fn transition(&self, in_alarm: bool, value: f64) -> Option<Transition> {
        if !in_alarm && value > self.high {
            Some(Transition::Enter)
        } else if in_alarm && value < self.low {
            Some(Transition::Clear)
        } else {
            None
        }
    }
}

/// `alarm/<device>`.
fn alarm_key(key: &mut String, device: &str) {
    key.clear();
    key.push_str("alarm/");
    key.push_str(device);
}

impl Function for Threshold {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[
            ("reading", Kind::Text),
            ("high", Kind::Number),
            ("low", Kind::Number),
        ])?;
        let reading = config.required_text("reading")?.into();
        let high = config.required_number("high")?;
        let low = config.number("low").unwrap_or(high);
        if high.is_nan() {
            return Err(config.invalid("high", "not a number"));
        }
        if low.is_nan() || low > high {
            return Err(config.invalid("low", "must be <= high"));
        }
        Ok(Threshold {
            reading,
            high,
            low,
            key: String::new(),
        })
    }

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        let Some((reading, value)) = input.readings().find_map(|r| match r.value {
            ValueRef::Number(x) if text::same(r.name, &self.reading) => Some((r, x)),
            _ => None,
        }) else {
            return Ok(());
        };
        alarm_key(&mut self.key, input.device);
        let key = &self.key;
        let in_alarm = state::contains(key.as_bytes());
        let alarm = match self.transition(in_alarm, value) {
            None => return Ok(()),
            Some(Transition::Enter) => {
                state::put(key.as_bytes(), b"1")?;
                "high"
            }
            Some(Transition::Clear) => {
                state::delete(key.as_bytes())?;
                "clear"
            }
        };

        let mut output = EventWriter::for_device(input.device);
        output.device_time_ms(input.device_time_ms).reading(
            reading.name,
            reading.value,
            reading.unit,
        );
        // The input's meta, minus keys this function sets itself.
        for m in input.meta() {
            if !matches!(m.key, "alarm" | "high" | "low") {
                output.meta(m.key, m.value);
            }
        }
        output
            .meta("alarm", ValueRef::Text(alarm))
            .meta("high", ValueRef::Number(self.high))
            .meta("low", ValueRef::Number(self.low));
        sluice_sdk::emit(&output)
    }
}

sluice_sdk::export_function!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Meta, Value};

    fn threshold(high: f64, low: f64) -> Threshold {
        Threshold {
            reading: "temperature".into(),
            high,
            low,
            key: String::new(),
        }
    }

    #[test]
    fn hysteresis() {
        let t = threshold(30.0, 25.0);
        assert_eq!(t.transition(false, 30.0), None); // not above high
        assert_eq!(t.transition(false, 30.1), Some(Transition::Enter));
        assert_eq!(t.transition(true, 31.0), None); // already in alarm
        assert_eq!(t.transition(true, 27.0), None); // inside the band
        assert_eq!(t.transition(true, 25.0), None); // not below low
        assert_eq!(t.transition(true, 24.9), Some(Transition::Clear));
        assert_eq!(t.transition(false, 10.0), None); // already clear
        assert_eq!(t.transition(true, f64::NAN), None);
        assert_eq!(t.transition(false, f64::NAN), None);
    }

    #[test]
    fn without_band() {
        let t = threshold(30.0, 30.0);
        assert_eq!(t.transition(false, 30.5), Some(Transition::Enter));
        assert_eq!(t.transition(true, 30.0), None);
        assert_eq!(t.transition(true, 29.5), Some(Transition::Clear));
    }

    fn init(entries: &[(&str, Value)]) -> Result<Threshold, Error> {
        let config = entries.iter().map(|(k, v)| Meta {
            key: (*k).into(),
            value: v.clone(),
        });
        Threshold::init(&Config::new(config.collect()))
    }

    #[test]
    fn config() {
        let reading = || ("reading", Value::Text("t".into()));
        let t = init(&[reading(), ("high", Value::Number(5.0))]).unwrap();
        assert_eq!((t.high, t.low), (5.0, 5.0));
        let refused = |entries: &[(&str, Value)]| init(entries).err();
        assert_eq!(
            refused(&[("high", Value::Number(5.0))]),
            Some(Error::MISSING_CONFIG)
        );
        assert_eq!(
            refused(&[
                reading(),
                ("high", Value::Number(5.0)),
                ("low", Value::Number(6.0))
            ]),
            Some(Error::INVALID_CONFIG) // low > high
        );
        assert_eq!(
            refused(&[reading(), ("high", Value::Text("5".into()))]),
            Some(Error::INVALID_CONFIG) // wrong type
        );
        assert_eq!(
            refused(&[
                reading(),
                ("high", Value::Number(5.0)),
                ("hihg", Value::Number(6.0))
            ]),
            Some(Error::UNKNOWN_CONFIG)
        );
    }
}
