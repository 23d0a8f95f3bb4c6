//! Tumbling-window aggregates: accumulates every numeric reading per device
//! and reading name, and on each tick emits count, min, max and mean, then
//! starts a new window.
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `max_series` | number | `256` | most (device, reading) pairs per window, an integer from 1 to 65536 |
//!
//! Give the function an `every` in the gateway config: without ticks the
//! window only grows, until the state cap refuses it.
//!
//! The window is durable state kept per device, so an event reads and
//! rewrites only its own device's aggregates, and a restart loses nothing:
//! - `w`: the header (postcard: start time, dropped count, devices, series,
//!   devices flushed so far);
//! - `d/<device>`: the device's series in the order they first appeared
//!   (postcard: name, unit, count, min, max, sum each);
//! - `i/<n>` (`n` as 4 little-endian bytes): the name of the `n`th device to
//!   appear in the window, so that a tick finds every device in order.
//!
//! The window starts at the gateway time (`now_ms`) of its first reading.
//! When `max_series` series exist, readings of new series are dropped and
//! counted, and so are readings of devices whose names are longer than 254
//! bytes (they make no state key). Non-numeric readings and non-finite values
//! are ignored. If the window no longer fits the function's state cap, the
//! event fails with the SDK's `STATE_FULL` code (6).
//!
//! On a tick the function emits, per device, one event under
//! `fn/<function>/<device>` with, for each of the device's readings `<name>`,
//! `<name>.count` (unit `""`), `<name>.min`, `<name>.max` and `<name>.mean`
//! (in the reading's unit, the one it had first in the window), and the meta
//! `window_start_ms` and `window_end_ms` (the tick's time) as numbers, plus
//! `dropped` when readings were dropped, deleting each device's state as it
//! goes. An empty window emits nothing. When more devices are due than one
//! call may emit (the host's `max_emit` and `max_emit_bytes`), it emits what
//! fits, keeps its place in the header and asks the host to call it again in
//! the same tick (`sluice_sdk::again`): up to 1024 calls per tick, so at the
//! default `max_emit` of 64 a window of 65,536 devices still flushes in one
//! tick. A window written under the single key `window` by an older build is
//! dropped at the next tick, with a warning.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sluice_sdk::{Config, Error, EventView, EventWriter, Function, Kind, ValueRef, state, text};

/// The state key of the window's header.
const HEADER: &[u8] = b"w";
/// The state key of a window from an older build (one key for everything).
const LEGACY: &[u8] = b"window";
/// Prefix of a device's series.
const DEVICE: &[u8] = b"d/";
/// Prefix of the device index.
const INDEX: &[u8] = b"i/";
/// Most devices one tick call emits, whatever `max_emit` allows: about 50k
/// fuel each, so a call stays far under the default 10 M.
const CHUNK: u32 = 64;

/// The window function, as configured.
pub struct Window {
    max_series: u32,
}

/// The window's header, stored under [`HEADER`].
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Header {
    start_ms: i64,
    /// Readings dropped because `max_series` series existed.
    dropped: u64,
    /// Devices in the index (`i/0` … `i/<devices - 1>`).
    devices: u32,
    /// Series in the window.
    series: u32,
    /// Devices already emitted by a tick that had to continue.
    flushed: u32,
}

/// One reading's aggregate for one device.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Series<'a> {
    name: &'a str,
    unit: &'a str,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl Series<'_> {
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
    }
}

/// `prefix` then `suffix`: a state key, if it is not too long.
fn key(prefix: &[u8], suffix: &[u8]) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(prefix.len() + suffix.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(suffix);
    (key.len() <= sluice_sdk::abi::MAX_KEY_LEN).then_some(key)
}

fn index_key(n: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX.len() + 4);
    key.extend_from_slice(INDEX);
    key.extend_from_slice(&n.to_le_bytes());
    key
}

/// Decodes stored bytes; ones that no longer decode are logged and dropped
/// rather than failing every call.
fn decode<'a, T: Deserialize<'a>>(stored: Option<&'a [u8]>) -> Option<T> {
    match postcard::from_bytes(stored?) {
        Ok(value) => Some(value),
        Err(_) => {
            sluice_sdk::warn!("Stored window state does not decode; dropping it");
            None
        }
    }
}

/// The event for one device's `series` in the window `header`, ending at
/// `end_ms`, encoded.
fn output(header: &Header, device: &str, series: &[Series<'_>], end_ms: i64) -> Vec<u8> {
    let mut output = EventWriter::for_device(device);
    output
        .number_meta("window_start_ms", header.start_ms as f64)
        .number_meta("window_end_ms", end_ms as f64);
    if header.dropped > 0 {
        output.number_meta("dropped", header.dropped as f64);
    }
    let mut name = String::new();
    for s in series {
        let mean = s.sum / s.count as f64;
        let parts = [
            (".count", s.count as f64, ""),
            (".min", s.min, s.unit),
            (".max", s.max, s.unit),
            (".mean", mean, s.unit),
        ];
        for (suffix, value, unit) in parts {
            name.clear();
            name.push_str(s.name);
            name.push_str(suffix);
            output.number(&name, value, unit);
        }
    }
    output.finish()
}

/// A numeric meta entry, for [`EventWriter`].
trait NumberMeta {
    fn number_meta(&mut self, key: &str, value: f64) -> &mut Self;
}

impl NumberMeta for EventWriter {
    fn number_meta(&mut self, key: &str, value: f64) -> &mut Self {
        self.meta(key, ValueRef::Number(value))
    }
}

/// The stored header, or a new window starting now.
fn load_header() -> Header {
    let stored = state::get(HEADER);
    decode(stored.as_deref()).unwrap_or_else(|| Header {
        start_ms: sluice_sdk::now_ms(),
        ..Header::default()
    })
}

/// Adds `(name, value, unit)` readings to one device's `series`, counting new
/// series in `header` (loaded on first need) against `max_series`. Returns
/// whether `series` changed.
fn add<'a>(
    series: &mut Vec<Series<'a>>,
    readings: impl Iterator<Item = (&'a str, f64, &'a str)>,
    header: &mut Option<Header>,
    load: impl Fn() -> Header,
    max_series: u32,
) -> bool {
    let mut changed = false;
    for (name, value, unit) in readings {
        if let Some(s) = series.iter_mut().find(|s| s.name == name) {
            s.add(value);
            changed = true;
            continue;
        }
        let h = header.get_or_insert_with(&load);
        if h.series >= max_series {
            h.dropped += 1;
            continue;
        }
        h.series += 1;
        series.push(Series {
            name,
            unit,
            count: 1,
            min: value,
            max: value,
            sum: value,
        });
        changed = true;
    }
    changed
}

impl Function for Window {
    fn init(config: &Config) -> Result<Self, Error> {
        config.validate(&[("max_series", Kind::Number)])?;
        let max_series = config.number("max_series").unwrap_or(256.0);
        if !(1.0..=65536.0).contains(&max_series) || max_series as u32 as f64 != max_series {
            return Err(config.invalid("max_series", "must be an integer from 1 to 65536"));
        }
        Ok(Window {
            max_series: max_series as u32,
        })
    }

    fn on_view(&mut self, input: &EventView<'_>) -> Result<(), Error> {
        let mut numbers = input.readings().filter_map(|r| match r.value {
            ValueRef::Number(v) if v.is_finite() => Some((r.name, v, r.unit)),
            _ => None,
        });
        if numbers.clone().next().is_none() {
            // Nothing to add: leave the state (and the window's start) alone.
            return Ok(());
        }
        let mut header = None;
        let Some(device_key) = key(DEVICE, input.device.as_bytes()) else {
            let mut h = load_header();
            h.dropped += numbers.count() as u64;
            return state::store(HEADER, &h);
        };
        let stored = state::get(&device_key);
        let known = stored.is_some();
        let mut series: Vec<Series<'_>> = decode(stored.as_deref()).unwrap_or_default();
        let changed = add(
            &mut series,
            &mut numbers,
            &mut header,
            load_header,
            self.max_series,
        );
        if changed {
            if !known {
                let h = header.get_or_insert_with(load_header);
                state::put(&index_key(h.devices), input.device.as_bytes())?;
                h.devices += 1;
            }
            state::store(&device_key, &series)?;
        }
        match header {
            Some(h) => state::store(HEADER, &h),
            None => Ok(()),
        }
    }

    fn on_tick(&mut self, now_ms: i64) -> Result<(), Error> {
        if state::get(LEGACY).is_some() {
            sluice_sdk::warn!("Dropping a window stored by an older build of this function");
            state::delete(LEGACY)?;
        }
        let stored = state::get(HEADER);
        let Some(mut header) = decode::<Header>(stored.as_deref()) else {
            if stored.is_some() {
                state::delete(HEADER)?;
            }
            return Ok(());
        };
        if header.flushed == 0 && header.dropped > 0 {
            let mut line = String::from("Window full (max_series): dropped ");
            text::push_u64(&mut line, header.dropped);
            line.push_str(" readings of new series");
            sluice_sdk::log(sluice_sdk::Level::Warn, &line);
        }
        let mut emitted = 0u32;
        while header.flushed < header.devices {
            let index = index_key(header.flushed);
            let device = state::get(&index).unwrap_or_default();
            let device = core::str::from_utf8(&device).unwrap_or_default();
            let device_key = key(DEVICE, device.as_bytes());
            let stored = device_key.as_deref().and_then(state::get);
            let series: Option<Vec<Series<'_>>> = decode(stored.as_deref());
            if let Some(series) = series.filter(|s| !s.is_empty()) {
                let bytes = output(&header, device, &series, now_ms);
                // Always at least one per call, so that an output larger than
                // a whole call's room traps with the host's reason instead of
                // asking again for ever.
                if emitted > 0 && (emitted >= CHUNK || sluice_sdk::emit_room(bytes.len()) == 0) {
                    state::store(HEADER, &header)?;
                    sluice_sdk::again();
                    return Ok(());
                }
                sluice_sdk::emit_encoded(&bytes)?;
                emitted += 1;
            }
            if let Some(device_key) = device_key {
                state::delete(&device_key)?;
            }
            state::delete(&index)?;
            header.flushed += 1;
        }
        state::delete(HEADER)?;
        Ok(())
    }
}

sluice_sdk::export_function!(Window);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Event, Meta, Value};

    fn number_meta(key: &str, value: f64) -> Meta {
        Meta {
            key: key.into(),
            value: Value::Number(value),
        }
    }

    fn event(bytes: Vec<u8>) -> Event {
        Event::decode(&bytes).expect("decodes")
    }

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

    fn header(start_ms: i64) -> impl Fn() -> Header {
        move || Header {
            start_ms,
            ..Header::default()
        }
    }

    #[test]
    fn aggregates_per_reading_in_order_of_appearance() {
        let mut h = None;
        let mut a = Vec::new();
        let mut b = Vec::new();
        let new = header(1000);
        assert!(add(
            &mut a,
            [("t", 20.0, "Cel")].into_iter(),
            &mut h,
            &new,
            256
        ));
        assert!(add(
            &mut b,
            [("t", 5.0, "Cel")].into_iter(),
            &mut h,
            &new,
            256
        ));
        let more = [("h", 40.0, "%RH"), ("t", 22.0, "Cel")];
        assert!(add(&mut a, more.into_iter(), &mut h, &new, 256));
        assert!(add(
            &mut a,
            [("t", 24.0, "Cel")].into_iter(),
            &mut h,
            &new,
            256
        ));
        let h = h.expect("loaded for the new series");
        assert_eq!((h.start_ms, h.series, h.dropped), (1000, 3, 0));

        let out = event(output(&h, "a", &a, 61_000));
        assert_eq!((out.subject.as_str(), out.device.as_str()), ("a", "a"));
        assert_eq!(
            numbers(&out),
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
        let out = event(output(&h, "b", &b, 61_000));
        assert_eq!(numbers(&out)[0], ("t.count", 1.0, ""));
        assert_eq!(
            out.meta,
            [
                number_meta("window_start_ms", 1000.0),
                number_meta("window_end_ms", 61_000.0)
            ]
        );
    }

    #[test]
    fn an_existing_series_needs_no_header() {
        let mut h = None;
        let mut a = Vec::new();
        add(&mut a, [("t", 1.0, "")].into_iter(), &mut h, header(0), 256);
        let mut h = None;
        assert!(add(
            &mut a,
            [("t", 2.0, "")].into_iter(),
            &mut h,
            header(0),
            256
        ));
        assert_eq!((h, a[0].count), (None, 2));
    }

    #[test]
    fn drops_new_series_when_full() {
        let mut h = None;
        let mut a = Vec::new();
        add(&mut a, [("t", 1.0, "")].into_iter(), &mut h, header(0), 1);
        // A new series: dropped; an existing one: kept.
        let more = [("h", 1.0, ""), ("t", 3.0, "")];
        add(&mut a, more.into_iter(), &mut h, header(0), 1);
        let h = h.expect("loaded");
        assert_eq!((a.len(), h.dropped, a[0].count), (1, 1, 2));
        assert_eq!(
            event(output(&h, "a", &a, 0)).meta[2],
            number_meta("dropped", 1.0)
        );
    }

    #[test]
    fn state_round_trip() {
        let h = Header {
            start_ms: -5,
            dropped: 1,
            devices: 2,
            series: 3,
            flushed: 1,
        };
        let bytes = postcard::to_allocvec(&h).unwrap();
        assert_eq!(decode(Some(&bytes)), Some(h));
        let series = [Series {
            name: "t",
            unit: "Cel",
            count: 1,
            min: 1.5,
            max: 1.5,
            sum: 1.5,
        }];
        let bytes = postcard::to_allocvec(&series[..]).unwrap();
        assert_eq!(
            decode::<Vec<Series<'_>>>(Some(&bytes)).as_deref(),
            Some(&series[..])
        );
        assert_eq!(decode::<Header>(Some(&[1, 2])), None);
        assert_eq!(decode::<Header>(None), None);
    }

    #[test]
    fn keys_are_bounded() {
        assert_eq!(key(DEVICE, b"a").as_deref(), Some(&b"d/a"[..]));
        assert!(key(DEVICE, &[b'x'; 254]).is_some());
        assert!(key(DEVICE, &[b'x'; 255]).is_none());
        assert_eq!(index_key(258), b"i/\x02\x01\0\0");
    }

    #[test]
    fn subject_is_one_level() {
        let out = event(output(&Header::default(), "site/dev#1", &[], 0));
        assert_eq!(
            (out.subject.as_str(), out.device.as_str()),
            ("site_dev_1", "site/dev#1")
        );
    }
}
