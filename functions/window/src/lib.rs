//! Tumbling-window aggregates: accumulates every numeric reading per device
//! and reading name, and on each tick emits count, min, max and mean, then
//! starts a new window.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `max_series` | number | `256` | most (device, reading) pairs per window, an integer `>= 1` |
//!
//! Give the function an `every` in the gateway config: without ticks the
//! window only grows, until the state cap refuses it.
//!
//! The whole window is durable state under the one key `window` (postcard:
//! start time, series, dropped count), so a restart loses nothing. The window
//! starts at the gateway time (`now_ms`) of its first reading. When
//! `max_series` series exist, readings of new series are dropped and counted.
//! Non-numeric readings and non-finite values are ignored. If the window no
//! longer fits the function's state cap, the event fails with the SDK's
//! `STATE_FULL` code (6).
//!
//! On a tick the function emits, per device, one event under
//! `fn/<function>/<device>` with, for each of the device's readings `<name>`,
//! `<name>.count` (unit `""`), `<name>.min`, `<name>.max` and `<name>.mean`
//! (in the reading's unit, the one it had first in the window), and the meta
//! `window_start_ms` and `window_end_ms` (the tick's time) as numbers, plus
//! `dropped` when readings were dropped. Then it deletes the window. An empty
//! window emits nothing. Every device is one event in the same call, so the
//! host's `max_emit` (default 64) must be at least the number of devices.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sluice_sdk::{
    Config, Error, Event, EventView, Function, Kind, Meta, Reading, ReadingRef, Value, ValueRef,
    state, text,
};

/// The state key holding the current window.
const KEY: &[u8] = b"window";

/// The window function, as configured.
pub struct Window {
    max_series: usize,
}

/// The current window, as stored under [`KEY`]. Its strings borrow from the
/// stored bytes and the input event: decoding and re-encoding the window on
/// every event is the function's main cost, and owned strings would triple it.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Aggregate<'a> {
    start_ms: i64,
    /// Readings dropped because `max_series` series existed.
    dropped: u64,
    /// Kept grouped by device, in the order devices first appeared, so that a
    /// tick emits each device's series in one pass.
    #[serde(borrow)]
    series: Vec<Series<'a>>,
}

/// One (device, reading) pair's aggregate.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Series<'a> {
    device: &'a str,
    name: &'a str,
    unit: &'a str,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl<'a> Aggregate<'a> {
    /// Adds one value of reading `name` from `device`.
    fn add(
        &mut self,
        device: &'a str,
        name: &'a str,
        value: f64,
        unit: &'a str,
        max_series: usize,
    ) {
        if let Some(series) = self
            .series
            .iter_mut()
            .find(|s| s.device == device && s.name == name)
        {
            series.count += 1;
            series.min = series.min.min(value);
            series.max = series.max.max(value);
            series.sum += value;
            return;
        }
        if self.series.len() >= max_series {
            self.dropped += 1;
            return;
        }
        let at = match self.series.iter().rposition(|s| s.device == device) {
            Some(last) => last + 1,
            None => self.series.len(),
        };
        let series = Series {
            device,
            name,
            unit,
            count: 1,
            min: value,
            max: value,
            sum: value,
        };
        self.series.insert(at, series);
    }

    /// The series of each device in turn.
    fn devices(&self) -> impl Iterator<Item = &[Series<'a>]> {
        self.series.chunk_by(|a, b| a.device == b.device)
    }

    /// The event for one device's `series`, ending the window at `end_ms`.
    fn output(&self, series: &[Series<'a>], end_ms: i64) -> Event {
        let device = series.first().map_or("", |s| s.device);
        let mut output = Event::new(text::subject_level(device), device, 0);
        output
            .meta
            .push(number_meta("window_start_ms", self.start_ms as f64));
        output
            .meta
            .push(number_meta("window_end_ms", end_ms as f64));
        if self.dropped > 0 {
            output
                .meta
                .push(number_meta("dropped", self.dropped as f64));
        }
        output.readings.reserve_exact(4 * series.len());
        for s in series {
            let reading = |suffix: &str, value: f64, unit: &str| {
                let mut name = String::with_capacity(s.name.len() + suffix.len());
                name.push_str(s.name);
                name.push_str(suffix);
                Reading {
                    name,
                    value: Value::Number(value),
                    unit: unit.into(),
                }
            };
            output.readings.push(reading(".count", s.count as f64, ""));
            output.readings.push(reading(".min", s.min, s.unit));
            output.readings.push(reading(".max", s.max, s.unit));
            output
                .readings
                .push(reading(".mean", s.sum / s.count as f64, s.unit));
        }
        output
    }
}

fn number_meta(key: &str, value: f64) -> Meta {
    Meta {
        key: key.into(),
        value: Value::Number(value),
    }
}

/// Decodes the stored window; one that no longer decodes (written by an
/// older build) is logged and dropped rather than failing every call.
fn decode(stored: Option<&[u8]>) -> Option<Aggregate<'_>> {
    match postcard::from_bytes(stored?) {
        Ok(window) => Some(window),
        Err(_) => {
            sluice_sdk::warn!("Stored window does not decode; starting a new one");
            None
        }
    }
}

impl Function for Window {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[("max_series", Kind::Number)])?;
        let max_series = config.number("max_series").unwrap_or(256.0);
        if !(1.0..=65536.0).contains(&max_series) || max_series as usize as f64 != max_series {
            return Err(config.invalid("max_series", "must be an integer from 1 to 65536"));
        }
        Ok(Window {
            max_series: max_series as usize,
        })
    }

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        let number = |reading: &ReadingRef<'_>| match reading.value {
            ValueRef::Number(v) if v.is_finite() => Some(v),
            _ => None,
        };
        if !input.readings().any(|r| number(&r).is_some()) {
            // Nothing to add: leave the state (and the window's start) alone.
            return Ok(());
        }
        let stored = state::get(KEY);
        let mut window = decode(stored.as_deref()).unwrap_or_else(|| Aggregate {
            start_ms: sluice_sdk::now_ms(),
            ..Aggregate::default()
        });
        for reading in input.readings() {
            if let Some(value) = number(&reading) {
                window.add(
                    input.device,
                    reading.name,
                    value,
                    reading.unit,
                    self.max_series,
                );
            }
        }
        state::store(KEY, &window)
    }

    fn on_tick(&mut self, now_ms: i64) -> Result<(), Error> {
        let stored = state::get(KEY);
        if let Some(window) = decode(stored.as_deref()) {
            if window.dropped > 0 {
                let mut line = String::from("Window full (max_series): dropped ");
                text::push_u64(&mut line, window.dropped);
                line.push_str(" readings of new series");
                sluice_sdk::log(sluice_sdk::Level::Warn, &line);
            }
            // One device at a time, so that only one output is in memory.
            for series in window.devices() {
                sluice_sdk::emit(&window.output(series, now_ms))?;
            }
        }
        if stored.is_some() {
            state::delete(KEY)?;
        }
        Ok(())
    }
}

sluice_sdk::export_function!(Window);

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(event: &Event) -> Vec<(&str, f64, &str)> {
        event
            .readings
            .iter()
            .map(|r| match r.value {
                Value::Number(n) => (r.name.as_str(), n, r.unit.as_str()),
                _ => panic!("non-numeric"),
            })
            .collect()
    }

    fn outputs(w: &Aggregate<'_>, end_ms: i64) -> Vec<Event> {
        w.devices().map(|series| w.output(series, end_ms)).collect()
    }

    #[test]
    fn aggregates_per_device_and_reading() {
        let mut w = Aggregate {
            start_ms: 1000,
            ..Aggregate::default()
        };
        w.add("a", "t", 20.0, "Cel", 256);
        w.add("b", "t", 5.0, "Cel", 256);
        w.add("a", "h", 40.0, "%RH", 256);
        w.add("a", "t", 22.0, "Cel", 256);
        w.add("a", "t", 24.0, "Cel", 256);

        let outputs = outputs(&w, 61_000);
        assert_eq!(outputs.len(), 2);
        assert_eq!(
            (outputs[0].subject.as_str(), outputs[0].device.as_str()),
            ("a", "a")
        );
        assert_eq!(
            numbers(&outputs[0]),
            [
                ("t.count", 3.0, ""),
                ("t.min", 20.0, "Cel"),
                ("t.max", 24.0, "Cel"),
                ("t.mean", 22.0, "Cel"),
                ("h.count", 1.0, ""),
                ("h.min", 40.0, "%RH"),
                ("h.max", 40.0, "%RH"),
                ("h.mean", 40.0, "%RH"),
            ]
        );
        assert_eq!(numbers(&outputs[1])[0], ("t.count", 1.0, ""));
        assert_eq!(
            outputs[1].meta,
            [
                number_meta("window_start_ms", 1000.0),
                number_meta("window_end_ms", 61_000.0)
            ]
        );
    }

    #[test]
    fn drops_new_series_when_full() {
        let mut w = Aggregate::default();
        w.add("a", "t", 1.0, "", 1);
        w.add("a", "h", 1.0, "", 1); // new series: dropped
        w.add("a", "t", 3.0, "", 1); // existing series: kept
        assert_eq!((w.series.len(), w.dropped, w.series[0].count), (1, 1, 2));
        assert_eq!(outputs(&w, 0)[0].meta[2], number_meta("dropped", 1.0));
    }

    #[test]
    fn state_round_trip() {
        let mut w = Aggregate {
            start_ms: -5,
            ..Aggregate::default()
        };
        w.add("dev/1", "t", 1.5, "Cel", 256);
        let bytes = postcard::to_allocvec(&w).unwrap();
        assert_eq!(decode(Some(&bytes)), Some(w));
        assert_eq!(decode(Some(&[1, 2])), None);
        assert_eq!(decode(None), None);
    }

    #[test]
    fn subject_is_one_level() {
        let mut w = Aggregate::default();
        w.add("site/dev#1", "t", 1.5, "Cel", 256);
        let out = &outputs(&w, 0)[0];
        assert_eq!(
            (out.subject.as_str(), out.device.as_str()),
            ("site_dev_1", "site/dev#1")
        );
    }
}
