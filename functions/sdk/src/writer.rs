//! [`EventWriter`]: the output builder of `sluice_event`, with its buffers
//! kept between calls, and the buffer [`crate::emit`] encodes into.
//!
//! Under fuel metering an allocation and its free cost several hundred
//! units, more than writing a small event; so a writer takes its buffers from
//! a pool when it is made and gives them back when it is dropped, and `emit`
//! encodes into one kept buffer. A second writer alive at the same time gets
//! fresh buffers. Off wasm32 there is no pool (tests may run on several
//! threads): every writer allocates, as `sluice_event`'s does.

use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use sluice_event::{EncodedSections, EventId, ValueRef, WriterBuffers};

use crate::text;

/// Writes an output event piece by piece, to pass to [`crate::emit`]:
/// [`sluice_event::EventWriter`] (the same methods, the same bytes) with
/// buffers that the next writer reuses once this one is dropped, so that a
/// writer per call allocates nothing after the first calls. Id, cause and
/// function are left unset for the host to stamp.
///
/// ```
/// use sluice_sdk::{EventView, EventWriter, ValueRef};
///
/// let mut out = EventWriter::for_device("site/t1");
/// out.number("temperature", 21.5, "Cel")
///     .reading("door", ValueRef::Bool(true), "");
/// let bytes = out.finish();
/// // SAFETY: the writer wrote the bytes from `&str`s.
/// let view = unsafe { EventView::parse_trusted(&bytes) }.unwrap();
/// assert_eq!(view.subject, "site_t1");
/// assert_eq!(view.number("temperature"), Some(21.5));
/// ```
pub struct EventWriter {
    inner: ManuallyDrop<sluice_event::EventWriter>,
}

impl EventWriter {
    /// An event under `subject` from `device`, with no readings, no device
    /// time and a gateway time of `0`.
    pub fn new(subject: &str, device: &str) -> EventWriter {
        let inner = sluice_event::EventWriter::with_buffers(pool::buffers(), subject, device);
        EventWriter {
            inner: ManuallyDrop::new(inner),
        }
    }

    /// An event from `device` under the subject
    /// [`text::subject_level`]`(device)`, which the host publishes as
    /// `fn/<function>/<device>`: what most functions emit. Allocates nothing
    /// when the device is a subject level as it is (the usual case).
    #[inline(never)]
    pub fn for_device(device: &str) -> EventWriter {
        if text::is_subject_level(device) {
            return EventWriter::new(device, device);
        }
        EventWriter::for_renamed_device(device)
    }

    /// [`EventWriter::for_device`] for a device that is not a subject level
    /// as it is: rare, so in a call of its own.
    #[cold]
    #[inline(never)]
    fn for_renamed_device(device: &str) -> EventWriter {
        EventWriter::new(&text::subject_level(device), device)
    }

    /// Sets the event's id (the host replaces it).
    pub fn id(&mut self, id: EventId) -> &mut EventWriter {
        self.inner.id(id);
        self
    }

    /// Sets the id of the event that caused this one (the host replaces it).
    pub fn cause(&mut self, cause: Option<EventId>) -> &mut EventWriter {
        self.inner.cause(cause);
        self
    }

    /// Sets the time the device stamped on the reading.
    pub fn device_time_ms(&mut self, ms: Option<i64>) -> &mut EventWriter {
        self.inner.device_time_ms(ms);
        self
    }

    /// Sets the time the gateway received it (`0`, the default, has the
    /// host stamp now).
    pub fn gateway_time_ms(&mut self, ms: i64) -> &mut EventWriter {
        self.inner.gateway_time_ms(ms);
        self
    }

    /// Adds a reading.
    pub fn reading(&mut self, name: &str, value: ValueRef<'_>, unit: &str) -> &mut EventWriter {
        self.inner.reading(name, value, unit);
        self
    }

    /// Adds a numeric reading.
    pub fn number(&mut self, name: &str, value: f64, unit: &str) -> &mut EventWriter {
        self.inner.number(name, value, unit);
        self
    }

    /// Adds a meta entry.
    pub fn meta(&mut self, key: &str, value: ValueRef<'_>) -> &mut EventWriter {
        self.inner.meta(key, value);
        self
    }

    /// Adds every reading of `input`, copied as encoded.
    pub fn readings_from<'a>(&mut self, input: &impl EncodedSections<'a>) -> &mut EventWriter {
        self.inner.readings_from(input);
        self
    }

    /// Adds every meta entry of `input`, copied as encoded.
    pub fn meta_from<'a>(&mut self, input: &impl EncodedSections<'a>) -> &mut EventWriter {
        self.inner.meta_from(input);
        self
    }

    /// Sets the raw payload.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut EventWriter {
        self.inner.raw(bytes);
        self
    }

    /// The encoded event.
    pub fn finish(&self) -> Vec<u8> {
        self.inner.finish()
    }

    /// Writes the encoded event to `out`, replacing what it held.
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        self.inner.finish_into(out);
    }
}

impl Drop for EventWriter {
    #[inline(never)]
    fn drop(&mut self) {
        // SAFETY: `inner` is not used again: this is the drop.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        pool::give_buffers(inner.into_buffers());
    }
}

impl core::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.inner.fmt(f)
    }
}

/// Runs `write` with the kept output buffer (empty, with the capacity of
/// earlier outputs), for [`crate::emit`].
#[inline(never)]
pub(crate) fn with_output<R>(write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut out = pool::output();
    let result = write(&mut out);
    pool::give_output(out);
    result
}

/// The pool: one set of each buffer, in statics. A wasm32 module without the
/// `atomics` feature has one thread, and nothing here calls out while it
/// holds a buffer, so `Cell`s suffice.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod pool {
    use super::*;
    use core::cell::Cell;

    struct Kept<T>(Cell<T>);

    // SAFETY: a single thread (see the module comment).
    unsafe impl<T> Sync for Kept<T> {}

    static BUFFERS: Kept<Option<WriterBuffers>> = Kept(Cell::new(None));
    static OUTPUT: Kept<Vec<u8>> = Kept(Cell::new(Vec::new()));

    pub(super) fn buffers() -> WriterBuffers {
        BUFFERS.0.take().unwrap_or_default()
    }

    pub(super) fn give_buffers(buffers: WriterBuffers) {
        if let Some(old) = BUFFERS.0.replace(Some(buffers)) {
            discard(old);
        }
    }

    pub(super) fn output() -> Vec<u8> {
        OUTPUT.0.take()
    }

    pub(super) fn give_output(out: Vec<u8>) {
        let old = OUTPUT.0.replace(out);
        if old.capacity() > 0 {
            discard(old);
        } else {
            core::mem::forget(old);
        }
    }

    /// Frees a buffer that two writers alive at once left over; in a call
    /// of its own, as it is rarely needed.
    #[cold]
    #[inline(never)]
    fn discard<T>(value: T) {
        drop(value);
    }
}

/// No pool off wasm32: fresh buffers every time.
#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
mod pool {
    use super::*;

    pub(super) fn buffers() -> WriterBuffers {
        WriterBuffers::default()
    }

    pub(super) fn give_buffers(_: WriterBuffers) {}

    pub(super) fn output() -> Vec<u8> {
        Vec::new()
    }

    pub(super) fn give_output(_: Vec<u8>) {}
}
