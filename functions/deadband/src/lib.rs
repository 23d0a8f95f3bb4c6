//! Report by exception: passes a numeric reading on only when it has moved by
//! at least `delta` since the value last reported for that device and
//! reading.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `delta` | number | required | smallest change reported, absolute, `> 0` |
//! | `reading` | string | every numeric reading | the one reading to filter |
//!
//! The last reported value is durable state under `last/<device>/<reading>`
//! (8 bytes, f64 little-endian). A reading is reported if it was never
//! reported or `|value - last| >= delta`. Each input yields at most one event
//! under `fn/<function>/<device>`, holding only the reported readings, with
//! the input's meta and `device_time_ms`; none if nothing was reported.
//! Non-numeric readings, non-finite values and other readings than `reading`
//! are dropped.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use sluice_sdk::{Config, Error, EventView, EventWriter, Function, Kind, ValueRef, state, text};

/// The deadband function, as configured.
pub struct Deadband {
    delta: f64,
    reading: Option<String>,
    /// The state key, kept from call to call (an allocation costs fuel).
    key: String,
}

/// Whether `value` is to be reported, given the last reported one.
fn moved(last: Option<f64>, value: f64, delta: f64) -> bool {
    match last {
        None => true,
        Some(last) => (value - last).abs() >= delta,
    }
}

/// `last/<device>/<reading>`.
fn last_key(key: &mut String, device: &str, reading: &str) {
    key.clear();
    key.push_str("last/");
    key.push_str(device);
    key.push('/');
    key.push_str(reading);
}

impl Function for Deadband {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[("delta", Kind::Number), ("reading", Kind::Text)])?;
        let delta = config.required_number("delta")?;
        // Written so that NaN fails too.
        if !(delta > 0.0 && delta.is_finite()) {
            return Err(config.invalid("delta", "must be a finite number > 0"));
        }
        Ok(Deadband {
            delta,
            reading: config.text("reading").map(String::from),
            key: String::new(),
        })
    }

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        // Made at the first reading that moved: most calls emit nothing.
        let mut output: Option<EventWriter> = None;
        for reading in input.readings() {
            let ValueRef::Number(value) = reading.value else {
                continue;
            };
            let targeted = self
                .reading
                .as_ref()
                .is_none_or(|name| text::same(name, reading.name));
            if !targeted || !value.is_finite() {
                continue;
            }
            last_key(&mut self.key, input.device, reading.name);
            let key = self.key.as_bytes();
            if moved(state::get_f64(key), value, self.delta) {
                state::put_f64(key, value)?;
                output
                    .get_or_insert_with(|| EventWriter::for_device(input.device))
                    .reading(reading.name, reading.value, reading.unit);
            }
        }
        let Some(mut output) = output else {
            return Ok(());
        };
        output.device_time_ms(input.device_time_ms).meta_from(input);
        sluice_sdk::emit(&output)
    }
}

sluice_sdk::export_function!(Deadband);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadband() {
        assert!(moved(None, 20.0, 0.5)); // never reported
        assert!(!moved(Some(20.0), 20.4, 0.5));
        assert!(moved(Some(20.0), 20.5, 0.5)); // exactly delta counts
        assert!(moved(Some(20.0), 19.5, 0.5)); // either direction
        assert!(!moved(Some(20.0), 19.6, 0.5));
    }

    #[test]
    fn keys() {
        let mut key = String::from("old");
        last_key(&mut key, "dev-1", "temperature");
        assert_eq!(key, "last/dev-1/temperature");
    }
}
