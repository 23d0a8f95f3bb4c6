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
use sluice_sdk::{
    Config, Error, EventView, EventWriter, Function, Kind, ReadingRef, ValueRef, text,
};

/// The scale function, as configured.
pub struct Scale {
    reading: Option<String>,
    factor: f64,
    offset: f64,
    unit: Option<String>,
    rename: Option<String>,
}

impl Scale {
    /// `reading` transformed if it is numeric and targeted, else as it is.
    fn apply<'a>(&'a self, reading: ReadingRef<'a>) -> ReadingRef<'a> {
        let ValueRef::Number(x) = reading.value else {
            return reading;
        };
        if self
            .reading
            .as_ref()
            .is_some_and(|name| !text::same(name, reading.name))
        {
            return reading;
        }
        ReadingRef {
            name: self.rename.as_deref().unwrap_or(reading.name),
            value: ValueRef::Number(x * self.factor + self.offset),
            unit: self.unit.as_deref().unwrap_or(reading.unit),
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

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        let mut output = EventWriter::for_device(input.device);
        output.device_time_ms(input.device_time_ms);
        for reading in input.readings() {
            let r = self.apply(reading);
            output.reading(r.name, r.value, r.unit);
        }
        finish(output, input)
    }
}

/// The rest of the output, and out it goes: in a call of its own because
/// LLVM places the code after a loop inside the loop's blocks, where wasmi
/// charges it on every turn.
#[inline(never)]
fn finish(mut output: EventWriter, input: &EventView<'_>) -> Result<(), Error> {
    output.meta_from(input);
    sluice_sdk::emit(&output)
}

sluice_sdk::export_function!(Scale);

#[cfg(test)]
mod tests {
    use super::*;

    fn reading<'a>(name: &'a str, value: ValueRef<'a>, unit: &'a str) -> ReadingRef<'a> {
        ReadingRef { name, value, unit }
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

    #[test]
    fn every_numeric_reading() {
        let s = scale(None, Some("V"), None);
        assert_eq!(
            s.apply(reading("a", ValueRef::Number(3.0), "")),
            reading("a", ValueRef::Number(5.0), "V")
        );
        assert_eq!(
            s.apply(reading("b", ValueRef::Bool(true), "")),
            reading("b", ValueRef::Bool(true), "")
        );
    }

    #[test]
    fn one_reading_renamed() {
        let s = scale(Some("raw"), Some("V"), Some("voltage"));
        assert_eq!(
            s.apply(reading("raw", ValueRef::Number(0.5), "")),
            reading("voltage", ValueRef::Number(0.0), "V")
        );
        assert_eq!(
            s.apply(reading("other", ValueRef::Number(0.5), "x")),
            reading("other", ValueRef::Number(0.5), "x")
        );
    }
}
