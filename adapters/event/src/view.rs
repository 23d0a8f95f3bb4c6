//! [`EventView`]: an encoded [`Event`] read in place.
//!
//! [`EventView::parse`] checks the whole encoding once, without allocating,
//! and keeps borrowed slices of it: strings are `&str` into the buffer,
//! readings and meta are walked on demand. It accepts exactly what
//! [`Event::decode`] accepts, and [`EventView::to_event`] gives the same
//! event. This is what guest functions read (a function that only looks at a
//! few fields pays for nothing else) and what the host reads on its hot path.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::wire::Reader;
use crate::{DecodeError, Event, EventId, FORMAT_VERSION, Meta, Reading, Value};

/// A borrowed [`Value`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Text(&'a str),
    /// Opaque bytes.
    Bytes(&'a [u8]),
}

impl ValueRef<'_> {
    /// The owned value.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Number(x) => Value::Number(x),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Text(s) => Value::Text(s.to_owned()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
        }
    }

    /// The number, if it is one.
    pub fn number(self) -> Option<f64> {
        match self {
            ValueRef::Number(x) => Some(x),
            _ => None,
        }
    }
}

impl Value {
    /// The value borrowed.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Number(x) => ValueRef::Number(*x),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Text(s) => ValueRef::Text(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
        }
    }
}

/// A borrowed [`Reading`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadingRef<'a> {
    /// Measurement name.
    pub name: &'a str,
    /// The measured value.
    pub value: ValueRef<'a>,
    /// Unit; empty if none.
    pub unit: &'a str,
}

/// A borrowed [`Meta`] entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaRef<'a> {
    /// Key.
    pub key: &'a str,
    /// Its value.
    pub value: ValueRef<'a>,
}

/// An encoded event, checked and read in place. Field meanings are those of
/// [`Event`].
#[derive(Clone, Debug)]
pub struct EventView<'a> {
    /// Gateway-unique id.
    pub id: EventId,
    /// The id of the event that caused this one.
    pub cause: Option<EventId>,
    /// Routing subject.
    pub subject: &'a str,
    /// Device identifier.
    pub device: &'a str,
    /// Time the device stamped on the reading, ms since the Unix epoch.
    pub device_time_ms: Option<i64>,
    /// Time the gateway received it, ms since the Unix epoch.
    pub gateway_time_ms: i64,
    /// The raw payload, when kept.
    pub raw: Option<&'a [u8]>,
    /// Name of the function that produced the event, if any.
    pub function: Option<&'a str>,
    readings: Section<'a>,
    meta: Section<'a>,
}

/// The encoded elements of a sequence, already checked, and their count.
#[derive(Clone, Copy, Debug)]
struct Section<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> EventView<'a> {
    /// Checks `bytes` as an encoded event and returns a view of it. Bytes
    /// after the event are ignored, as by [`Event::decode`].
    pub fn parse(bytes: &'a [u8]) -> Result<EventView<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        match r.byte()? {
            FORMAT_VERSION => {}
            v => return Err(DecodeError::UnsupportedVersion(v)),
        }
        let id = EventId(r.u64()?);
        let cause = if r.some()? {
            Some(EventId(r.u64()?))
        } else {
            None
        };
        let subject = r.str()?;
        let device = r.str()?;
        let device_time_ms = if r.some()? { Some(r.i64()?) } else { None };
        let gateway_time_ms = r.i64()?;
        let readings = section(&mut r, |r| read_reading(r).map(drop))?;
        let meta = section(&mut r, |r| read_meta(r).map(drop))?;
        let raw = if r.some()? { Some(r.bytes()?) } else { None };
        let function = if r.some()? { Some(r.str()?) } else { None };
        Ok(EventView {
            id,
            cause,
            subject,
            device,
            device_time_ms,
            gateway_time_ms,
            raw,
            function,
            readings,
            meta,
        })
    }

    /// The readings, in order.
    pub fn readings(&self) -> Readings<'a> {
        Seq::new(self.readings, read_reading)
    }

    /// How many readings there are.
    pub fn reading_count(&self) -> usize {
        self.readings.count
    }

    /// The first reading called `name`.
    pub fn reading(&self, name: &str) -> Option<ReadingRef<'a>> {
        self.readings().find(|r| r.name == name)
    }

    /// The value of the reading called `name`, if it is a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.reading(name).and_then(|r| r.value.number())
    }

    /// The meta entries, in order.
    pub fn meta(&self) -> Metas<'a> {
        Seq::new(self.meta, read_meta)
    }

    /// How many meta entries there are.
    pub fn meta_count(&self) -> usize {
        self.meta.count
    }

    /// The value of the first meta entry under `key`.
    pub fn meta_value(&self, key: &str) -> Option<ValueRef<'a>> {
        self.meta().find(|m| m.key == key).map(|m| m.value)
    }

    /// The encoded readings and their count, for copying them whole.
    pub(crate) fn readings_encoded(&self) -> (usize, &'a [u8]) {
        (self.readings.count, self.readings.bytes)
    }

    /// The encoded meta entries and their count, for copying them whole.
    pub(crate) fn meta_encoded(&self) -> (usize, &'a [u8]) {
        (self.meta.count, self.meta.bytes)
    }

    /// The owned event, equal to what [`Event::decode`] gives.
    pub fn to_event(&self) -> Event {
        Event {
            version: FORMAT_VERSION,
            id: self.id,
            cause: self.cause,
            subject: self.subject.to_owned(),
            device: self.device.to_owned(),
            device_time_ms: self.device_time_ms,
            gateway_time_ms: self.gateway_time_ms,
            readings: self
                .readings()
                .map(|r| Reading {
                    name: r.name.to_owned(),
                    value: r.value.to_value(),
                    unit: r.unit.to_owned(),
                })
                .collect(),
            meta: self
                .meta()
                .map(|m| Meta {
                    key: m.key.to_owned(),
                    value: m.value.to_value(),
                })
                .collect(),
            raw: self.raw.map(<[u8]>::to_vec),
            function: self.function.map(String::from),
        }
    }
}

/// Reads a sequence's length and checks each element with `check`.
fn section<'a>(
    r: &mut Reader<'a>,
    check: impl Fn(&mut Reader<'a>) -> Result<(), DecodeError>,
) -> Result<Section<'a>, DecodeError> {
    let count = r.len()?;
    let start = r.rest();
    for _ in 0..count {
        check(r)?;
    }
    let used = start.len() - r.rest().len();
    Ok(Section {
        count,
        bytes: &start[..used],
    })
}

/// A value; numbers, by far the most common, without a call.
#[inline(always)]
fn read_value<'a>(r: &mut Reader<'a>) -> Result<ValueRef<'a>, DecodeError> {
    if r.rest().first() == Some(&0) {
        r.byte()?;
        return Ok(ValueRef::Number(r.f64()?));
    }
    read_other_value(r)
}

#[inline(never)]
pub(crate) fn read_other_value<'a>(r: &mut Reader<'a>) -> Result<ValueRef<'a>, DecodeError> {
    Ok(match r.u32()? {
        0 => ValueRef::Number(r.f64()?),
        1 => ValueRef::Bool(r.bool()?),
        2 => ValueRef::Text(r.str()?),
        3 => ValueRef::Bytes(r.bytes()?),
        _ => return Err(DecodeError::Malformed),
    })
}

#[inline(never)]
pub(crate) fn read_reading<'a>(r: &mut Reader<'a>) -> Result<ReadingRef<'a>, DecodeError> {
    Ok(ReadingRef {
        name: r.str()?,
        value: read_value(r)?,
        unit: r.str()?,
    })
}

#[inline(never)]
pub(crate) fn read_meta<'a>(r: &mut Reader<'a>) -> Result<MetaRef<'a>, DecodeError> {
    Ok(MetaRef {
        key: r.str()?,
        value: read_value(r)?,
    })
}

/// Iterator over a checked sequence of an [`EventView`]: its readings
/// ([`Readings`]) or its meta entries ([`Metas`]).
#[derive(Clone)]
pub struct Seq<'a, T> {
    left: usize,
    r: Reader<'a>,
    read: fn(&mut Reader<'a>) -> Result<T, DecodeError>,
}

/// Iterator over an [`EventView`]'s readings.
pub type Readings<'a> = Seq<'a, ReadingRef<'a>>;

/// Iterator over an [`EventView`]'s meta entries.
pub type Metas<'a> = Seq<'a, MetaRef<'a>>;

impl<'a, T> Seq<'a, T> {
    fn new(section: Section<'a>, read: fn(&mut Reader<'a>) -> Result<T, DecodeError>) -> Self {
        Seq {
            left: section.count,
            r: Reader::new(section.bytes),
            read,
        }
    }
}

impl<T> Iterator for Seq<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        // The section was checked by `parse`, so reading it again succeeds.
        self.left = self.left.checked_sub(1)?;
        (self.read)(&mut self.r).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for Seq<'_, T> {}

/// Reads encoded `Vec<Meta>` in place.
fn parse_meta_list(bytes: &[u8]) -> Result<Metas<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let section = section(&mut r, |r| read_meta(r).map(drop))?;
    Ok(Seq::new(section, read_meta))
}

/// Decodes an encoded `Vec<Meta>` (how a function's config crosses the ABI)
/// without serde; equal to postcard's result.
pub fn decode_meta_list(bytes: &[u8]) -> Result<Vec<Meta>, DecodeError> {
    Ok(parse_meta_list(bytes)?
        .map(|m| Meta {
            key: m.key.to_owned(),
            value: m.value.to_value(),
        })
        .collect())
}
