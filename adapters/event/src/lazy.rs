//! [`LazyView`]: an encoded [`Event`] read lazily, for guest functions.
//!
//! A function runs under fuel metering on events the host has encoded and
//! checked itself, and usually reads a few fields of them. So this view checks
//! only the header (up to the readings) when it is made, and each part after
//! that when it is read: a reading's strings when the iterator reaches it, the
//! meta section's structure when the meta entries are read or copied. It never
//! hands out a `&str` that is not UTF-8 and never reads outside the buffer, but
//! a malformed part found late is not returned as an error where it is found:
//! the part reads as ended (or absent), and the view remembers it
//! ([`LazyView::is_malformed`]) so that whoever runs the function can fail the
//! call afterwards. The host discards a failed call's outputs, so nothing that
//! was read from a malformed event leaves the call.

use core::cell::Cell;

use crate::view::{MetaRef, ReadingRef, ValueRef, read_other_value};
use crate::wire::{Reader, utf8, word_varint};
use crate::{DecodeError, Event, EventId, EventView, FORMAT_VERSION};

/// An encoded event whose header is checked and whose readings, meta, raw
/// payload and function name are read (and checked) on demand. Field
/// meanings are those of [`Event`].
#[derive(Debug)]
pub struct LazyView<'a> {
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
    /// The whole encoding, for [`LazyView::to_event`].
    bytes: &'a [u8],
    /// From the readings' count on.
    body: &'a [u8],
    /// From the meta entries' count on, once the readings were read to
    /// their end (so that reading the meta after them does not skip them
    /// again).
    meta_at: Cell<Option<&'a [u8]>>,
    /// Set when a part read after the header turned out malformed.
    malformed: Cell<bool>,
}

impl<'a> LazyView<'a> {
    /// Checks the header of `bytes` (format version, ids, subject, device,
    /// times) and returns a view of the event; the rest is checked as it is
    /// read.
    pub fn parse(bytes: &'a [u8]) -> Result<LazyView<'a>, DecodeError> {
        match bytes.first() {
            Some(&FORMAT_VERSION) => {}
            Some(&version) => return Err(DecodeError::UnsupportedVersion(version)),
            None => return Err(DecodeError::Malformed),
        }
        parse_header(Cursor { rest: &bytes[1..] }, bytes).ok_or(DecodeError::Malformed)
    }

    /// Whether a part read so far was malformed (and read as ended or
    /// absent). A call that read such an event must fail.
    pub fn is_malformed(&self) -> bool {
        self.malformed.get()
    }

    /// Remembers that the event is malformed.
    #[cold]
    #[inline(never)]
    fn mark_malformed(&self) {
        self.malformed.set(true);
    }

    /// The readings, in order; a malformed reading ends them.
    pub fn readings(&self) -> LazyReadings<'_, 'a> {
        let mut at = Cursor { rest: self.body };
        let left = self.check(at.len()).unwrap_or(0);
        LazyReadings {
            left,
            at,
            view: self,
        }
    }

    /// The first reading called `name`.
    pub fn reading(&self, name: &str) -> Option<ReadingRef<'a>> {
        self.readings().find(|r| r.name == name)
    }

    /// The value of the reading called `name`, if it is a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.reading(name).and_then(|r| r.value.number())
    }

    /// The meta entries, in order; a malformed entry ends them.
    pub fn meta(&self) -> LazyMetas<'_, 'a> {
        let (left, bytes) = self.meta_section().unwrap_or_default();
        LazyMetas {
            left,
            at: Cursor { rest: bytes },
            view: self,
        }
    }

    /// The value of the first meta entry under `key`.
    pub fn meta_value(&self, key: &str) -> Option<ValueRef<'a>> {
        self.meta().find(|m| m.key == key).map(|m| m.value)
    }

    /// The raw payload, when kept (`None` also if the event is malformed).
    pub fn raw(&self) -> Option<&'a [u8]> {
        let mut r = self.after_meta()?;
        self.check(option(&mut r, Reader::bytes).ok()).flatten()
    }

    /// The name of the function that produced the event, if any (`None` also
    /// if the event is malformed).
    pub fn function(&self) -> Option<&'a str> {
        let mut r = self.after_meta()?;
        self.check(option(&mut r, Reader::bytes).ok())?;
        self.check(option(&mut r, Reader::str).ok()).flatten()
    }

    /// The owned event, checked whole as [`Event::decode`] checks it.
    pub fn to_event(&self) -> Result<Event, DecodeError> {
        let event = EventView::parse(self.bytes).map(|view| view.to_event());
        if event.is_err() {
            self.mark_malformed();
        }
        event
    }

    /// The encoded readings and their count, structure checked (strings are
    /// not checked as UTF-8), for copying them whole; `(0, [])` if malformed.
    pub(crate) fn readings_encoded(&self) -> (usize, &'a [u8]) {
        let mut at = Cursor { rest: self.body };
        self.check(at.section(skip_reading)).unwrap_or_default()
    }

    /// The encoded meta entries and their count, as [`Self::readings_encoded`].
    pub(crate) fn meta_encoded(&self) -> (usize, &'a [u8]) {
        self.meta_section().unwrap_or_default()
    }

    /// The meta entries' count and bytes.
    fn meta_section(&self) -> Option<(usize, &'a [u8])> {
        let mut at = self.meta_start()?;
        self.check(at.section(skip_meta))
    }

    /// A cursor at the meta entries' count.
    fn meta_start(&self) -> Option<Cursor<'a>> {
        if let Some(rest) = self.meta_at.get() {
            return Some(Cursor { rest });
        }
        let mut at = Cursor { rest: self.body };
        self.check(at.section(skip_reading))?;
        Some(at)
    }

    /// A reader just after the meta section.
    fn after_meta(&self) -> Option<Reader<'a>> {
        let mut at = self.meta_start()?;
        self.check(at.section(skip_meta))?;
        Some(Reader::new(at.rest))
    }

    /// `value`, or `None` and the view marked malformed.
    #[inline(always)]
    fn check<T>(&self, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.mark_malformed();
        }
        value
    }
}

/// The header after the version byte.
#[inline(never)]
fn parse_header<'a>(mut at: Cursor<'a>, bytes: &'a [u8]) -> Option<LazyView<'a>> {
    let id = EventId(at.u64()?);
    let cause = if at.some()? {
        Some(EventId(at.u64()?))
    } else {
        None
    };
    let subject = at.str()?;
    let device = at.str()?;
    let device_time_ms = if at.some()? { Some(at.i64()?) } else { None };
    let gateway_time_ms = at.i64()?;
    Some(LazyView {
        id,
        cause,
        subject,
        device,
        device_time_ms,
        gateway_time_ms,
        bytes,
        body: at.rest,
        meta_at: Cell::new(None),
        malformed: Cell::new(false),
    })
}

/// A compact reader for the lazy view, `None` meaning malformed: the common
/// cases (one-byte varints, ASCII strings, numbers) inline, the others
/// through [`Reader`], so that it accepts what postcard accepts.
#[derive(Clone, Copy, Debug)]
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        if let Some((&first, rest)) = self.rest.split_first()
            && first < 0x80
        {
            self.rest = rest;
            return Some(u64::from(first));
        }
        let (n, rest) = long_u64(self.rest)?;
        self.rest = rest;
        Some(n)
    }

    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        let n = self.u64()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    #[inline(always)]
    fn len(&mut self) -> Option<usize> {
        if let Some((&first, rest)) = self.rest.split_first()
            && first < 0x80
        {
            self.rest = rest;
            return Some(usize::from(first));
        }
        let (n, rest) = long_len(self.rest)?;
        self.rest = rest;
        Some(n)
    }

    /// An option's tag.
    #[inline(always)]
    fn some(&mut self) -> Option<bool> {
        let (&tag, rest) = self.rest.split_first()?;
        self.rest = rest;
        match tag {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    #[inline(always)]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        if n > self.rest.len() {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    #[inline(always)]
    fn str(&mut self) -> Option<&'a str> {
        utf8(self.bytes()?).ok()
    }

    #[inline(always)]
    fn value(&mut self) -> Option<ValueRef<'a>> {
        if let [0, rest @ ..] = self.rest
            && let Some((number, rest)) = rest.split_first_chunk::<8>()
        {
            self.rest = rest;
            return Some(ValueRef::Number(f64::from_le_bytes(*number)));
        }
        let (value, rest) = other_value(self.rest)?;
        self.rest = rest;
        Some(value)
    }

    /// A sequence's count and the bytes of its elements, each skipped with
    /// `skip`.
    #[inline(never)]
    fn section(&mut self, skip: fn(Cursor<'a>) -> Option<Cursor<'a>>) -> Option<(usize, &'a [u8])> {
        let count = self.len()?;
        let start = self.rest;
        for _ in 0..count {
            *self = skip(*self)?;
        }
        Some((count, &start[..start.len() - self.rest.len()]))
    }
}

// The slow paths take the rest and give it back by value rather than
// through `&mut Cursor`: a cursor whose address is taken lives in memory,
// and every read of the fast paths then loads and stores it.

/// `read` on a [`Reader`] over `rest`: the value and what is left.
#[inline(always)]
fn read_with<'a, T>(
    rest: &'a [u8],
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Option<(T, &'a [u8])> {
    let mut r = Reader::new(rest);
    let value = read(&mut r).ok()?;
    Some((value, r.rest()))
}

/// A varint past its one-byte case: up to 8 bytes from one word, the rest
/// (9 or 10 bytes, or near the end of the input) through [`Reader`].
#[inline(never)]
fn long_u64(rest: &[u8]) -> Option<(u64, &[u8])> {
    if let Some((n, len)) = word_varint(rest) {
        return Some((n, rest.get(len..)?));
    }
    longer_u64(rest)
}

/// A varint of 9 or 10 bytes, or one near the end of the input.
#[cold]
#[inline(never)]
fn longer_u64(rest: &[u8]) -> Option<(u64, &[u8])> {
    read_with(rest, Reader::u64)
}

#[inline(never)]
fn long_len(rest: &[u8]) -> Option<(usize, &[u8])> {
    read_with(rest, Reader::len)
}

#[inline(never)]
fn other_value(rest: &[u8]) -> Option<(ValueRef<'_>, &[u8])> {
    read_with(rest, read_other_value)
}

/// A reading, its strings checked, and the cursor after it.
#[inline(never)]
fn read_reading(mut at: Cursor<'_>) -> Option<(ReadingRef<'_>, Cursor<'_>)> {
    let reading = ReadingRef {
        name: at.str()?,
        value: at.value()?,
        unit: at.str()?,
    };
    Some((reading, at))
}

/// A meta entry, its strings checked, and the cursor after it.
#[inline(never)]
fn read_meta(mut at: Cursor<'_>) -> Option<(MetaRef<'_>, Cursor<'_>)> {
    let meta = MetaRef {
        key: at.str()?,
        value: at.value()?,
    };
    Some((meta, at))
}

/// Skips a reading; the cursor is passed by value, as in the slow paths.
fn skip_reading(mut at: Cursor<'_>) -> Option<Cursor<'_>> {
    at.bytes()?;
    at.value()?;
    at.bytes()?;
    Some(at)
}

/// Skips a meta entry.
fn skip_meta(mut at: Cursor<'_>) -> Option<Cursor<'_>> {
    at.bytes()?;
    at.value()?;
    Some(at)
}

/// An option: its tag, then the value if there is one.
fn option<'a, T>(
    r: &mut Reader<'a>,
    read: fn(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if r.some()? {
        read(r).map(Some)
    } else {
        Ok(None)
    }
}

/// Iterator over a [`LazyView`]'s readings.
#[derive(Clone)]
pub struct LazyReadings<'v, 'a> {
    left: usize,
    at: Cursor<'a>,
    view: &'v LazyView<'a>,
}

impl LazyReadings<'_, '_> {
    /// Ends the iteration at a malformed reading, with nothing left to read
    /// after it either.
    #[cold]
    #[inline(never)]
    fn malformed(&mut self) {
        self.left = 0;
        self.at.rest = &[];
        self.view.mark_malformed();
    }
}

impl<'a> Iterator for LazyReadings<'_, 'a> {
    type Item = ReadingRef<'a>;

    fn next(&mut self) -> Option<ReadingRef<'a>> {
        let Some(left) = self.left.checked_sub(1) else {
            // The meta entries start here.
            self.view.meta_at.set(Some(self.at.rest));
            return None;
        };
        self.left = left;
        match read_reading(self.at) {
            Some((reading, at)) => {
                self.at = at;
                Some(reading)
            }
            None => {
                self.malformed();
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Iterator over a [`LazyView`]'s meta entries.
#[derive(Clone)]
pub struct LazyMetas<'v, 'a> {
    left: usize,
    at: Cursor<'a>,
    view: &'v LazyView<'a>,
}

impl<'a> Iterator for LazyMetas<'_, 'a> {
    type Item = MetaRef<'a>;

    fn next(&mut self) -> Option<MetaRef<'a>> {
        self.left = self.left.checked_sub(1)?;
        match read_meta(self.at) {
            Some((meta, at)) => {
                self.at = at;
                Some(meta)
            }
            None => {
                self.left = 0;
                self.view.mark_malformed();
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}
