//! [`EventWriter`]: builds an encoded [`Event`](crate::Event) directly, from
//! borrowed parts, without building the owned event first.

use alloc::vec::Vec;

use crate::view::{EventView, ValueRef};
use crate::wire::{put_bytes, put_f64, put_i64, put_len, put_u64};
use crate::{Event, EventId, FORMAT_VERSION};

/// Writes an event's encoding piece by piece; [`EventWriter::finish`] gives
/// the same bytes [`Event::encode`](crate::Event::encode) gives for the
/// equal event. Id, cause and function are unset unless set (the gateway
/// assigns them to everything a function emits).
///
/// ```
/// use sluice_event::{Event, EventView, EventWriter, ValueRef};
///
/// let mut out = EventWriter::new("t1", "t1");
/// out.number("temperature", 21.5, "Cel")
///     .reading("door", ValueRef::Bool(true), "");
/// let bytes = out.finish();
/// let view = EventView::parse(&bytes).unwrap();
/// assert_eq!(view.number("temperature"), Some(21.5));
/// assert_eq!(Event::decode(&bytes).unwrap().readings.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct EventWriter {
    id: EventId,
    cause: Option<EventId>,
    /// Subject and device, encoded.
    names: Vec<u8>,
    device_time_ms: Option<i64>,
    gateway_time_ms: i64,
    reading_count: usize,
    readings: Vec<u8>,
    meta_count: usize,
    meta: Vec<u8>,
    raw: Option<Vec<u8>>,
    function: Option<Vec<u8>>,
}

impl EventWriter {
    /// An event under `subject` from `device`, with no readings, no device
    /// time and a gateway time of `0`.
    pub fn new(subject: &str, device: &str) -> EventWriter {
        let mut names = Vec::with_capacity(subject.len() + device.len() + 2);
        put_bytes(&mut names, subject.as_bytes());
        put_bytes(&mut names, device.as_bytes());
        EventWriter {
            id: EventId::UNSET,
            cause: None,
            names,
            device_time_ms: None,
            gateway_time_ms: 0,
            reading_count: 0,
            // Room for a few readings without growing.
            readings: Vec::with_capacity(96),
            meta_count: 0,
            meta: Vec::new(),
            raw: None,
            function: None,
        }
    }

    /// Sets the event's id.
    pub fn id(&mut self, id: EventId) -> &mut EventWriter {
        self.id = id;
        self
    }

    /// Sets the id of the event that caused this one.
    pub fn cause(&mut self, cause: Option<EventId>) -> &mut EventWriter {
        self.cause = cause;
        self
    }

    /// Sets the name of the function that produced the event.
    pub fn function(&mut self, name: Option<&str>) -> &mut EventWriter {
        self.function = name.map(|n| n.as_bytes().to_vec());
        self
    }

    /// Sets the time the device stamped on the reading.
    pub fn device_time_ms(&mut self, ms: Option<i64>) -> &mut EventWriter {
        self.device_time_ms = ms;
        self
    }

    /// Sets the time the gateway received it.
    pub fn gateway_time_ms(&mut self, ms: i64) -> &mut EventWriter {
        self.gateway_time_ms = ms;
        self
    }

    /// Adds a reading.
    pub fn reading(&mut self, name: &str, value: ValueRef<'_>, unit: &str) -> &mut EventWriter {
        put_bytes(&mut self.readings, name.as_bytes());
        put_value(&mut self.readings, value);
        put_bytes(&mut self.readings, unit.as_bytes());
        self.reading_count += 1;
        self
    }

    /// Adds a numeric reading.
    pub fn number(&mut self, name: &str, value: f64, unit: &str) -> &mut EventWriter {
        self.reading(name, ValueRef::Number(value), unit)
    }

    /// Adds a meta entry.
    pub fn meta(&mut self, key: &str, value: ValueRef<'_>) -> &mut EventWriter {
        put_bytes(&mut self.meta, key.as_bytes());
        put_value(&mut self.meta, value);
        self.meta_count += 1;
        self
    }

    /// Adds every reading of `input`, copied as encoded.
    pub fn readings_from(&mut self, input: &EventView<'_>) -> &mut EventWriter {
        let (count, bytes) = input.readings_encoded();
        self.readings.extend_from_slice(bytes);
        self.reading_count += count;
        self
    }

    /// Adds every meta entry of `input`, copied as encoded.
    pub fn meta_from(&mut self, input: &EventView<'_>) -> &mut EventWriter {
        let (count, bytes) = input.meta_encoded();
        self.meta.extend_from_slice(bytes);
        self.meta_count += count;
        self
    }

    /// Sets the raw payload.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut EventWriter {
        self.raw = Some(bytes.to_vec());
        self
    }

    /// The encoded event.
    pub fn finish(&self) -> Vec<u8> {
        let raw_len = self.raw.as_ref().map_or(0, |r| r.len() + 5);
        let mut out = Vec::with_capacity(
            40 + self.names.len() + self.readings.len() + self.meta.len() + raw_len,
        );
        out.push(FORMAT_VERSION);
        put_u64(&mut out, self.id.0);
        put_option(&mut out, self.cause, |out, id| put_u64(out, id.0));
        out.extend_from_slice(&self.names);
        put_option(&mut out, self.device_time_ms, put_i64);
        put_i64(&mut out, self.gateway_time_ms);
        put_len(&mut out, self.reading_count);
        out.extend_from_slice(&self.readings);
        put_len(&mut out, self.meta_count);
        out.extend_from_slice(&self.meta);
        put_option(&mut out, self.raw.as_deref(), put_bytes);
        put_option(&mut out, self.function.as_deref(), put_bytes);
        out
    }
}

/// The encoding of `event`, byte for byte what postcard writes for it.
pub(crate) fn encode(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(event.version);
    put_u64(&mut out, event.id.0);
    put_option(&mut out, event.cause, |out, id| put_u64(out, id.0));
    put_bytes(&mut out, event.subject.as_bytes());
    put_bytes(&mut out, event.device.as_bytes());
    put_option(&mut out, event.device_time_ms, put_i64);
    put_i64(&mut out, event.gateway_time_ms);
    put_len(&mut out, event.readings.len());
    for r in &event.readings {
        put_bytes(&mut out, r.name.as_bytes());
        put_value(&mut out, r.value.as_ref());
        put_bytes(&mut out, r.unit.as_bytes());
    }
    put_len(&mut out, event.meta.len());
    for m in &event.meta {
        put_bytes(&mut out, m.key.as_bytes());
        put_value(&mut out, m.value.as_ref());
    }
    put_option(&mut out, event.raw.as_deref(), put_bytes);
    put_option(&mut out, event.function.as_deref(), |out, f| {
        put_bytes(out, f.as_bytes())
    });
    out
}

fn put_option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(v) => {
            out.push(1);
            put(out, v);
        }
        None => out.push(0),
    }
}

fn put_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Number(x) => {
            out.push(0);
            put_f64(out, x);
        }
        ValueRef::Bool(b) => {
            out.push(1);
            out.push(u8::from(b));
        }
        ValueRef::Text(s) => {
            out.push(2);
            put_bytes(out, s.as_bytes());
        }
        ValueRef::Bytes(b) => {
            out.push(3);
            put_bytes(out, b);
        }
    }
}
