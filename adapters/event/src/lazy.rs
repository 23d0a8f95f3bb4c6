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
//!
//! A view made with [`LazyView::parse_trusted`] (`LazyView<'_, false>`, what
//! a guest function gets) does not check strings as UTF-8: the host passes
//! functions only events it has encoded or checked whole itself, and in a
//! guest that check is most of the cost of reading an event.

use core::cell::Cell;

use crate::view::{MetaRef, ReadingRef, ValueRef, read_other_value};
use crate::wire::{Reader, same_str, utf8, word_varint};
use crate::{DecodeError, Event, EventId, EventView, FORMAT_VERSION};

/// An encoded event whose header is checked and whose readings, meta, raw
/// payload and function name are read (and checked) on demand. Field
/// meanings are those of [`Event`]. `CHECKED` says whether strings are
/// checked as UTF-8 (see [`LazyView::parse_trusted`]).
#[derive(Debug)]
pub struct LazyView<'a, const CHECKED: bool = true> {
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
        parse(bytes)
    }
}

impl<'a> LazyView<'a, false> {
    /// As [`LazyView::parse`], but the view takes every string in `bytes` as
    /// UTF-8 without checking it; the structure is still checked, and the
    /// view never reads outside `bytes`.
    ///
    /// # Safety
    /// Every string of the encoding (subject, device, reading names and
    /// units, text values, meta keys, function name) must be valid UTF-8 as
    /// far as the encoding is well-formed: true of bytes this crate encoded
    /// and of bytes [`EventView::parse`] accepted.
    pub unsafe fn parse_trusted(bytes: &'a [u8]) -> Result<LazyView<'a, false>, DecodeError> {
        parse(bytes)
    }
}

/// The view of `bytes`, its header checked.
#[inline(always)]
fn parse<'a, const CHECKED: bool>(bytes: &'a [u8]) -> Result<LazyView<'a, CHECKED>, DecodeError> {
    match bytes.first() {
        Some(&FORMAT_VERSION) => {}
        Some(&version) => return Err(DecodeError::UnsupportedVersion(version)),
        None => return Err(DecodeError::Malformed),
    }
    header(Cursor { rest: &bytes[1..] }, bytes).ok_or(DecodeError::Malformed)
}

impl<'a, const CHECKED: bool> LazyView<'a, CHECKED> {
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
    pub fn readings(&self) -> LazyReadings<'_, 'a, CHECKED> {
        let mut at = Cursor::<CHECKED> { rest: self.body };
        let left = self.check(at.len()).unwrap_or(0);
        LazyReadings {
            left,
            at,
            view: self,
        }
    }

    /// The first reading called `name`.
    pub fn reading(&self, name: &str) -> Option<ReadingRef<'a>> {
        self.readings().find(|r| same_str(r.name, name))
    }

    /// The value of the reading called `name`, if it is a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.reading(name).and_then(|r| r.value.number())
    }

    /// The meta entries, in order; a malformed entry ends them.
    pub fn meta(&self) -> LazyMetas<'_, 'a, CHECKED> {
        let (left, bytes) = self.meta_section().unwrap_or_default();
        LazyMetas {
            left,
            at: Cursor::<CHECKED> { rest: bytes },
            view: self,
        }
    }

    /// The value of the first meta entry under `key`.
    pub fn meta_value(&self, key: &str) -> Option<ValueRef<'a>> {
        self.meta().find(|m| same_str(m.key, key)).map(|m| m.value)
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
        let mut at = Cursor::<CHECKED> { rest: self.body };
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
    fn meta_start(&self) -> Option<Cursor<'a, CHECKED>> {
        if let Some(rest) = self.meta_at.get() {
            return Some(Cursor { rest });
        }
        let mut at = Cursor::<CHECKED> { rest: self.body };
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

/// The header after the version byte. Straight-line code with the rare
/// forms (long varints, strings of 128 bytes or more) in calls: wasmi charges
/// the code of a function whether a branch takes it or not.
#[inline(never)]
fn header<'a, const CHECKED: bool>(
    at: Cursor<'a, CHECKED>,
    bytes: &'a [u8],
) -> Option<LazyView<'a, CHECKED>> {
    let (id, rest) = varint(at.rest)?;
    let (cause, rest) = option_varint(rest)?;
    let mut at = Cursor::<CHECKED> { rest };
    let subject = at.str()?;
    let device = at.str()?;
    let (device_time_ms, rest) = option_varint(at.rest)?;
    let (gateway_time_ms, body) = varint(rest)?;
    Some(LazyView {
        id: EventId(id),
        cause: cause.map(EventId),
        subject,
        device,
        device_time_ms: device_time_ms.map(zigzag),
        gateway_time_ms: zigzag(gateway_time_ms),
        bytes,
        body,
        meta_at: Cell::new(None),
        malformed: Cell::new(false),
    })
}

/// A u64 varint and what follows it: up to eight bytes (every id and
/// timestamp) from one word, longer ones through [`Reader`].
#[inline(never)]
fn varint(rest: &[u8]) -> Option<(u64, &[u8])> {
    match word_varint(rest) {
        Some((n, len)) => Some((n, rest.get(len..)?)),
        None => any_varint(rest),
    }
}

#[cold]
#[inline(never)]
fn any_varint(rest: &[u8]) -> Option<(u64, &[u8])> {
    read_with(rest, Reader::u64)
}

/// An optional u64 varint, and what follows it.
#[inline(always)]
fn option_varint(rest: &[u8]) -> Option<(Option<u64>, &[u8])> {
    match rest.split_first()? {
        (0, rest) => Some((None, rest)),
        (1, rest) => varint(rest).map(|(n, rest)| (Some(n), rest)),
        _ => None,
    }
}

/// A string shorter than 128 bytes (a one-byte length), and what follows.
#[inline(always)]
fn short_str<const CHECKED: bool>(rest: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = rest.split_first()?;
    if len >= 0x80 {
        return None;
    }
    let (s, rest) = rest.split_at_checked(usize::from(len))?;
    Some((as_str::<CHECKED>(s)?, rest))
}

/// `bytes` as a string: checked as UTF-8 if `CHECKED`.
#[inline(always)]
fn as_str<const CHECKED: bool>(bytes: &[u8]) -> Option<&str> {
    if CHECKED {
        utf8(bytes).ok()
    } else {
        // SAFETY: only a `LazyView<'_, false>` reads with `CHECKED` false,
        // and its constructor's contract makes its strings UTF-8.
        Some(unsafe { core::str::from_utf8_unchecked(bytes) })
    }
}

#[inline(always)]
fn zigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// A compact reader for the lazy view, `None` meaning malformed: the common
/// cases (one-byte lengths, ASCII strings, numbers) inline, the others
/// through [`Reader`], so that it accepts what postcard accepts.
#[derive(Clone, Copy, Debug)]
struct Cursor<'a, const CHECKED: bool> {
    rest: &'a [u8],
}

impl<'a, const CHECKED: bool> Cursor<'a, CHECKED> {
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
        as_str::<CHECKED>(self.bytes()?)
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
    fn section(&mut self, skip: fn(Self) -> Option<Self>) -> Option<(usize, &'a [u8])> {
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

/// A length past its one-byte case.
#[inline(never)]
fn long_len(rest: &[u8]) -> Option<(usize, &[u8])> {
    let (n, rest) = any_varint(rest)?;
    Some((usize::try_from(n).ok()?, rest))
}

#[inline(never)]
fn other_value(rest: &[u8]) -> Option<(ValueRef<'_>, &[u8])> {
    read_with(rest, read_other_value)
}

/// A reading, its strings checked, and the cursor after it.
#[inline(never)]
fn read_reading<const CHECKED: bool>(
    mut at: Cursor<'_, CHECKED>,
) -> Option<(ReadingRef<'_>, Cursor<'_, CHECKED>)> {
    let reading = ReadingRef {
        name: at.str()?,
        value: at.value()?,
        unit: at.str()?,
    };
    Some((reading, at))
}

/// A reading in its common form: a number, name and unit shorter than 128
/// bytes; anything else returns `None` and goes to [`read_reading`]. Inline
/// and without calls (see [`header`]).
#[inline(always)]
fn fast_reading<const CHECKED: bool>(rest: &[u8]) -> Option<(ReadingRef<'_>, &[u8])> {
    let (name, rest) = short_str::<CHECKED>(rest)?;
    let [0, rest @ ..] = rest else {
        return None;
    };
    let (number, rest) = rest.split_first_chunk::<8>()?;
    let (unit, rest) = short_str::<CHECKED>(rest)?;
    let value = ValueRef::Number(f64::from_le_bytes(*number));
    Some((ReadingRef { name, value, unit }, rest))
}

/// A meta entry, its strings checked, and the cursor after it.
#[inline(never)]
fn read_meta<const CHECKED: bool>(
    mut at: Cursor<'_, CHECKED>,
) -> Option<(MetaRef<'_>, Cursor<'_, CHECKED>)> {
    let meta = MetaRef {
        key: at.str()?,
        value: at.value()?,
    };
    Some((meta, at))
}

/// Skips a reading; the cursor is passed by value, as in the slow paths.
/// The common form (short name and unit, a number) inline, the rest in a
/// call: wasmi charges a function's code whether a branch takes it or not.
fn skip_reading<const CHECKED: bool>(at: Cursor<'_, CHECKED>) -> Option<Cursor<'_, CHECKED>> {
    let fast = skip_short(at.rest)
        .and_then(skip_number)
        .and_then(skip_short);
    match fast {
        Some(rest) => Some(Cursor { rest }),
        None => skip_any_reading(at),
    }
}

#[cold]
#[inline(never)]
fn skip_any_reading<const CHECKED: bool>(
    mut at: Cursor<'_, CHECKED>,
) -> Option<Cursor<'_, CHECKED>> {
    at.bytes()?;
    at.value()?;
    at.bytes()?;
    Some(at)
}

/// Skips a meta entry, as [`skip_reading`].
fn skip_meta<const CHECKED: bool>(at: Cursor<'_, CHECKED>) -> Option<Cursor<'_, CHECKED>> {
    match skip_short(at.rest).and_then(skip_number) {
        Some(rest) => Some(Cursor { rest }),
        None => skip_any_meta(at),
    }
}

#[cold]
#[inline(never)]
fn skip_any_meta<const CHECKED: bool>(mut at: Cursor<'_, CHECKED>) -> Option<Cursor<'_, CHECKED>> {
    at.bytes()?;
    at.value()?;
    Some(at)
}

/// What follows a string shorter than 128 bytes; `None` for any other.
#[inline(always)]
fn skip_short(rest: &[u8]) -> Option<&[u8]> {
    let (&len, rest) = rest.split_first()?;
    if len >= 0x80 {
        return None;
    }
    rest.get(usize::from(len)..)
}

/// What follows a number value; `None` for any other.
#[inline(always)]
fn skip_number(rest: &[u8]) -> Option<&[u8]> {
    match rest {
        [0, rest @ ..] => rest.get(8..),
        _ => None,
    }
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
pub struct LazyReadings<'v, 'a, const CHECKED: bool = true> {
    left: usize,
    at: Cursor<'a, CHECKED>,
    view: &'v LazyView<'a, CHECKED>,
}

impl<'a, const CHECKED: bool> LazyReadings<'_, 'a, CHECKED> {
    /// The next reading in any form the encoding allows: the rest of
    /// [`Iterator::next`], in a call of its own, which returns straight into
    /// the caller's result.
    #[inline(never)]
    fn next_any(&mut self) -> Option<ReadingRef<'a>> {
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

impl<'a, const CHECKED: bool> Iterator for LazyReadings<'_, 'a, CHECKED> {
    type Item = ReadingRef<'a>;

    fn next(&mut self) -> Option<ReadingRef<'a>> {
        let Some(left) = self.left.checked_sub(1) else {
            // The meta entries start here.
            self.view.meta_at.set(Some(self.at.rest));
            return None;
        };
        self.left = left;
        if let Some((reading, rest)) = fast_reading::<CHECKED>(self.at.rest) {
            self.at.rest = rest;
            return Some(reading);
        }
        self.next_any()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Iterator over a [`LazyView`]'s meta entries.
#[derive(Clone)]
pub struct LazyMetas<'v, 'a, const CHECKED: bool = true> {
    left: usize,
    at: Cursor<'a, CHECKED>,
    view: &'v LazyView<'a, CHECKED>,
}

impl<'a, const CHECKED: bool> Iterator for LazyMetas<'_, 'a, CHECKED> {
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
