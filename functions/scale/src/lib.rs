//! Linear transform of numeric readings: `y = x * factor + offset`, e.g. a
//! raw ADC count to volts, or °F to °C (`factor = 0.5555555555555556`,
//! `offset = -17.77777777777778`, `unit = "Cel"`).
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `reading` | string | every numeric reading | the one reading to transform |
//! | `factor` | number | `1.0` | multiplier |
//! | `offset` | number | `0.0` | added after multiplying |
//! | `unit` | string | unchanged | new unit of the transformed readings |
//! | `rename` | string | unchanged | new name of the transformed reading; only with `reading` |
//!
//! Every input yields one event under `fn/<function>/<device>` with all its
//! readings, the targeted numeric ones transformed and the others unchanged,
//! plus the input's meta and `device_time_ms`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use sluice_sdk::{Config, Error, Event, Function, Kind, Reading, Value, text};

/// The scale function, as configured.
pub struct Scale {
    reading: Option<String>,
    factor: f64,
    offset: f64,
    unit: Option<String>,
    rename: Option<String>,
}

impl Scale {
    /// Transforms `reading` in place if it is numeric and targeted.
    fn apply(&self, reading: &mut Reading) {
        let Value::Number(x) = reading.value else {
            return;
        };
        if self
            .reading
            .as_ref()
            .is_some_and(|name| *name != reading.name)
        {
            return;
        }
        reading.value = Value::Number(x * self.factor + self.offset);
        if let Some(unit) = &self.unit {
            reading.unit.clone_from(unit);
        }
        if let Some(name) = &self.rename {
            reading.name.clone_from(name);
        }
    }
}

impl Function for Scale {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[
            ("reading", Kind::Text),
            ("factor", Kind::Number),
            ("offset", Kind::Number),
            ("unit", Kind::Text),
            ("rename", Kind::Text),
        ])?;
        let scale = Scale {
            reading: config.text("reading").map(String::from),
            factor: config.number("factor").unwrap_or(1.0),
            offset: config.number("offset").unwrap_or(0.0),
            unit: config.text("unit").map(String::from),
            rename: config.text("rename").map(String::from),
        };
        if !scale.factor.is_finite() {
            return Err(config.invalid("factor", "must be finite"));
        }
        if !scale.offset.is_finite() {
            return Err(config.invalid("offset", "must be finite"));
        }
        match &scale.rename {
            Some(_) if scale.reading.is_none() => Err(config.invalid("rename", "needs `reading`")),
            Some(name) if name.is_empty() => Err(config.invalid("rename", "must not be empty")),
            _ => Ok(scale),
        }
    }

    fn on_event(&mut self, input: Event) -> Result<(), Error> {
        let mut output = Event::new(text::subject_level(&input.device), input.device, 0);
        output.device_time_ms = input.device_time_ms;
        output.readings = input.readings;
        for reading in &mut output.readings {
            self.apply(reading);
        }
        output.meta = input.meta;
        sluice_sdk::emit(&output)
    }
}

sluice_sdk::export_function!(Scale);

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(name: &str, value: Value, unit: &str) -> Reading {
        Reading {
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }

    fn scale(reading: Option<&str>, unit: Option<&str>, rename: Option<&str>) -> Scale {
        Scale {
            reading: reading.map(String::from),
            factor: 2.0,
            offset: -1.0,
            unit: unit.map(String::from),
            rename: rename.map(String::from),
        }
    }

    fn apply(scale: &Scale, mut r: Reading) -> Reading {
        scale.apply(&mut r);
        r
    }

    #[test]
    fn every_numeric_reading() {
        let s = scale(None, Some("V"), None);
        assert_eq!(
            apply(&s, reading("a", Value::Number(3.0), "")),
            reading("a", Value::Number(5.0), "V")
        );
        assert_eq!(
            apply(&s, reading("b", Value::Bool(true), "")),
            reading("b", Value::Bool(true), "")
        );
    }

    #[test]
    fn one_reading_renamed() {
        let s = scale(Some("raw"), Some("V"), Some("voltage"));
        assert_eq!(
            apply(&s, reading("raw", Value::Number(0.5), "")),
            reading("voltage", Value::Number(0.0), "V")
        );
        assert_eq!(
            apply(&s, reading("other", Value::Number(0.5), "x")),
            reading("other", Value::Number(0.5), "x")
        );
    }
}
