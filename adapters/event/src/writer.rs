//! [`EventWriter`]: builds an encoded [`Event`](crate::Event) directly, from
//! borrowed parts, without building the owned event first.

use alloc::vec::Vec;

use crate::lazy::LazyView;
use crate::view::{EventView, ValueRef};
use crate::wire::{put_bytes, put_f64, put_i64, put_len, put_long_u64, put_u64};
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

/// The buffers of an [`EventWriter`], kept to write the next event without
/// allocating (see [`EventWriter::with_buffers`]).
#[derive(Clone, Debug, Default)]
pub struct WriterBuffers {
    names: Vec<u8>,
    readings: Vec<u8>,
    meta: Vec<u8>,
}

/// An encoded event whose readings and meta entries an [`EventWriter`] can
/// copy whole: an [`EventView`] or a [`LazyView`].
pub trait EncodedSections<'a>: sealed::Sealed {
    /// The encoded readings and their count.
    fn readings_encoded(&self) -> (usize, &'a [u8]);
    /// The encoded meta entries and their count.
    fn meta_encoded(&self) -> (usize, &'a [u8]);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::EventView<'_> {}
    impl<const CHECKED: bool> Sealed for crate::LazyView<'_, CHECKED> {}
}

impl<'a> EncodedSections<'a> for EventView<'a> {
    fn readings_encoded(&self) -> (usize, &'a [u8]) {
        EventView::readings_encoded(self)
    }
    fn meta_encoded(&self) -> (usize, &'a [u8]) {
        EventView::meta_encoded(self)
    }
}

/// Copies only well-formed sections: a malformed one copies as empty and
/// marks the view (see [`LazyView::is_malformed`]).
impl<'a, const CHECKED: bool> EncodedSections<'a> for LazyView<'a, CHECKED> {
    fn readings_encoded(&self) -> (usize, &'a [u8]) {
        LazyView::readings_encoded(self)
    }
    fn meta_encoded(&self) -> (usize, &'a [u8]) {
        LazyView::meta_encoded(self)
    }
}

impl EventWriter {
    /// An event under `subject` from `device`, with no readings, no device
    /// time and a gateway time of `0`.
    pub fn new(subject: &str, device: &str) -> EventWriter {
        let buffers = WriterBuffers {
            names: Vec::with_capacity(subject.len() + device.len() + 2),
            // Room for a few readings without growing.
            readings: Vec::with_capacity(96),
            meta: Vec::new(),
        };
        EventWriter::with_buffers(buffers, subject, device)
    }

    /// As [`EventWriter::new`], writing into `buffers` (cleared first), which
    /// [`EventWriter::into_buffers`] gave back from an earlier writer: a
    /// writer made this way allocates only if the event is larger than the
    /// buffers.
    #[inline(never)]
    pub fn with_buffers(mut buffers: WriterBuffers, subject: &str, device: &str) -> EventWriter {
        buffers.names.clear();
        buffers.readings.clear();
        buffers.meta.clear();
        put_bytes(&mut buffers.names, subject.as_bytes());
        put_bytes(&mut buffers.names, device.as_bytes());
        EventWriter {
            id: EventId::UNSET,
            cause: None,
            names: buffers.names,
            device_time_ms: None,
            gateway_time_ms: 0,
            reading_count: 0,
            readings: buffers.readings,
            meta_count: 0,
            meta: buffers.meta,
            raw: None,
            function: None,
        }
    }

    /// The writer's buffers, for [`EventWriter::with_buffers`].
    #[inline(never)]
    pub fn into_buffers(self) -> WriterBuffers {
        let EventWriter {
            names,
            readings,
            meta,
            raw,
            function,
            ..
        } = self;
        // Freed in a call of their own: most writers have neither.
        if raw.is_some() || function.is_some() {
            discard((raw, function));
        } else {
            core::mem::forget((raw, function));
        }
        WriterBuffers {
            names,
            readings,
            meta,
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
        put_reading(&mut self.readings, name, value, unit);
        self.reading_count += 1;
        self
    }

    /// Adds a numeric reading.
    pub fn number(&mut self, name: &str, value: f64, unit: &str) -> &mut EventWriter {
        self.reading(name, ValueRef::Number(value), unit)
    }

    /// Adds a meta entry.
    pub fn meta(&mut self, key: &str, value: ValueRef<'_>) -> &mut EventWriter {
        put_meta(&mut self.meta, key, value);
        self.meta_count += 1;
        self
    }

    /// Adds every reading of `input`, copied as encoded.
    #[inline(never)]
    pub fn readings_from<'a>(&mut self, input: &impl EncodedSections<'a>) -> &mut EventWriter {
        let (count, bytes) = input.readings_encoded();
        self.readings.extend_from_slice(bytes);
        self.reading_count += count;
        self
    }

    /// Adds every meta entry of `input`, copied as encoded.
    #[inline(never)]
    pub fn meta_from<'a>(&mut self, input: &impl EncodedSections<'a>) -> &mut EventWriter {
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
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    /// Writes the encoded event to `out`, replacing what it held (so that a
    /// buffer can serve one event after another).
    #[inline(never)]
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        out.clear();
        let raw_len = self.raw.as_ref().map_or(0, |r| r.len() + 5);
        out.reserve(72 + self.names.len() + self.readings.len() + self.meta.len() + raw_len);
        // A function's outputs leave id, cause and gateway time for the host
        // to stamp: those unset fields are written as constants, and the
        // general case is in calls of their own.
        // SAFETY (every `append` below): the reserve above leaves room for
        // the sections and 72 bytes besides, more than all else written
        // here takes, checked or not: version, id and cause (at most 22),
        // the times (21), the two counts (20) and the last two tags.
        if self.id == EventId::UNSET && self.cause.is_none() {
            unsafe { append(out, &[FORMAT_VERSION, 0, 0]) };
        } else {
            put_version_id_cause(out, self.id, self.cause);
        }
        unsafe { append(out, &self.names) };
        match (self.device_time_ms, self.gateway_time_ms) {
            (None, 0) => unsafe { append(out, &[0, 0]) },
            (device, gateway) => put_times(out, device, gateway),
        }
        unsafe {
            append_count(out, self.reading_count);
            append(out, &self.readings);
            append_count(out, self.meta_count);
            append(out, &self.meta);
        }
        if self.raw.is_none() && self.function.is_none() {
            unsafe { append(out, &[0, 0]) };
        } else {
            self.put_raw_and_function(out);
        }
    }

    #[inline(never)]
    fn put_raw_and_function(&self, out: &mut Vec<u8>) {
        put_option(out, self.raw.as_deref(), put_bytes);
        put_option(out, self.function.as_deref(), put_bytes);
    }
}

/// The encoding of `event`, byte for byte what postcard writes for it.
pub(crate) fn encode_into(event: &Event, out: &mut Vec<u8>) {
    out.clear();
    out.push(event.version);
    put_u64(out, event.id.0);
    put_option(out, event.cause, |out, id| put_u64(out, id.0));
    put_bytes(out, event.subject.as_bytes());
    put_bytes(out, event.device.as_bytes());
    put_option(out, event.device_time_ms, put_i64);
    put_i64(out, event.gateway_time_ms);
    put_len(out, event.readings.len());
    for r in &event.readings {
        put_bytes(out, r.name.as_bytes());
        put_value(out, r.value.as_ref());
        put_bytes(out, r.unit.as_bytes());
    }
    put_len(out, event.meta.len());
    for m in &event.meta {
        put_bytes(out, m.key.as_bytes());
        put_value(out, m.value.as_ref());
    }
    put_option(out, event.raw.as_deref(), put_bytes);
    put_option(out, event.function.as_deref(), |out, f| {
        put_bytes(out, f.as_bytes())
    });
}

/// A reading; a number with name and unit shorter than 128 bytes (nearly
/// every reading) written after one capacity check, the rest in a call.
#[inline(never)]
fn put_reading(out: &mut Vec<u8>, name: &str, value: ValueRef<'_>, unit: &str) {
    match value {
        ValueRef::Number(x) if name.len() < 0x80 && unit.len() < 0x80 => {
            out.reserve(name.len() + unit.len() + 11);
            // SAFETY: reserved for what follows: two one-byte lengths, the
            // two strings, a tag and eight bytes.
            unsafe {
                append_short(out, name.as_bytes());
                append(out, &[0]);
                append(out, &x.to_le_bytes());
                append_short(out, unit.as_bytes());
            }
        }
        _ => put_any_reading(out, name, value, unit),
    }
}

/// Any other reading: name and value as a meta entry's key and value, then
/// the unit.
#[cold]
#[inline(never)]
fn put_any_reading(out: &mut Vec<u8>, name: &str, value: ValueRef<'_>, unit: &str) {
    put_meta(out, name, value);
    put_bytes(out, unit.as_bytes());
}

/// Appends `bytes` without checking the capacity: a few operators where
/// `extend_from_slice` is a call (wasmi charges a guest for every operator
/// of the code it enters).
///
/// # Safety
/// `out` must have room for `bytes`: `capacity - len >= bytes.len()`.
#[inline(always)]
unsafe fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = out.len();
    debug_assert!(out.capacity() - len >= bytes.len());
    // SAFETY: the caller guarantees the room; `bytes` cannot overlap the
    // vector's spare capacity.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().add(len), bytes.len());
        out.set_len(len + bytes.len());
    }
}

/// Appends a string shorter than 128 bytes with its one-byte length.
///
/// # Safety
/// `bytes.len() < 128`, and `out` must have room for `bytes.len() + 1`.
#[inline(always)]
unsafe fn append_short(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() < 0x80);
    // SAFETY: forwarded from the caller.
    unsafe {
        append(out, &[bytes.len() as u8]);
        append(out, bytes);
    }
}

/// Appends a count: one byte below 128, else the varint after a capacity
/// check.
///
/// # Safety
/// `out` must have room for one byte.
#[inline(always)]
unsafe fn append_count(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        // SAFETY: forwarded from the caller.
        unsafe { append(out, &[n as u8]) };
    } else {
        put_long_u64(out, n as u64);
    }
}

#[inline(never)]
fn put_meta(out: &mut Vec<u8>, key: &str, value: ValueRef<'_>) {
    out.reserve(key.len() + 11);
    put_bytes(out, key.as_bytes());
    put_value(out, value);
}

/// Version, id and cause, when one of the last two is set (see
/// [`EventWriter::finish_into`]); kept short rather than fast.
#[inline(never)]
fn put_version_id_cause(out: &mut Vec<u8>, id: EventId, cause: Option<EventId>) {
    out.push(FORMAT_VERSION);
    put_long_u64(out, id.0);
    put_option(out, cause, |out, id| put_long_u64(out, id.0));
}

/// Device and gateway time, when one is set.
#[inline(never)]
fn put_times(out: &mut Vec<u8>, device_time_ms: Option<i64>, gateway_time_ms: i64) {
    put_option(out, device_time_ms, put_i64);
    put_i64(out, gateway_time_ms);
}

#[cold]
#[inline(never)]
fn discard<T>(value: T) {
    drop(value);
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

/// A value; numbers, by far the most common, without a call.
#[inline(always)]
fn put_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Number(x) => {
            out.push(0);
            put_f64(out, x);
        }
        other => put_other_value(out, other),
    }
}

#[inline(never)]
fn put_other_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
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
