//! The bodies of the ABI exports that [`export_function!`](crate::export_function)
//! generates. The `#[unsafe(no_mangle)]` functions themselves must be in the
//! function's own crate (a cdylib exports only its own symbols); they call
//! these generic helpers. Not part of the public API.

use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use sluice_event::{abi, decode_meta_list};

use crate::{Config, Error, EventView, Function, Level, log, text};

/// The one instance of the function and the buffer the host writes inputs
/// to, in a `static`.
pub struct Slot<F> {
    function: RefCell<Option<F>>,
    input: InputBuffer,
}

// SAFETY: wasm32 without the `atomics` feature has a single thread, so the
// cell is never reached from two threads. Elsewhere `Slot` is not `Sync` and a
// `static` of it does not compile.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<F> Sync for Slot<F> {}

impl<F> Slot<F> {
    /// An empty slot.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Slot<F> {
        Slot {
            function: RefCell::new(None),
            input: InputBuffer {
                ptr: Cell::new(NonNull::dangling()),
                cap: Cell::new(0),
            },
        }
    }
}

/// The buffer `sluice_alloc` hands out, kept from call to call: the ABI
/// passes ownership of it to the next call, and a call that keeps it instead
/// of freeing it spares the next `sluice_alloc` an allocation (an allocation
/// and a free cost more fuel than reading a small event).
struct InputBuffer {
    ptr: Cell<NonNull<u8>>,
    /// Its size; `0` while none is allocated (`ptr` is dangling then).
    cap: Cell<usize>,
}

/// Inputs smaller than this still get a buffer this large, so that the
/// first events of slightly different sizes do not each grow it.
const MIN_INPUT: usize = 256;

/// `sluice_alloc`: a buffer of at least `len` bytes for the next call; `0`
/// if it cannot be allocated. The kept buffer when it is large enough.
pub fn alloc<F>(slot: &Slot<F>, len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    let input = &slot.input;
    if len > input.cap.get() {
        grow(input, len);
    }
    input.ptr.get().as_ptr() as usize as i32
}

/// Replaces the kept buffer by one of at least `len` bytes (`cap` stays `0`,
/// and `ptr` null, if that cannot be allocated).
#[cold]
#[inline(never)]
fn grow(input: &InputBuffer, len: usize) {
    let cap = input.cap.replace(0);
    if cap > 0 {
        // SAFETY: `ptr` was allocated below with this layout.
        unsafe { alloc::alloc::dealloc(input.ptr.get().as_ptr(), layout(cap)) };
    }
    let cap = len.max(MIN_INPUT);
    if cap > isize::MAX as usize {
        input.ptr.set(NonNull::dangling());
        return;
    }
    // SAFETY: the layout has a non-zero size.
    match NonNull::new(unsafe { alloc::alloc::alloc(layout(cap)) }) {
        Some(ptr) => {
            input.ptr.set(ptr);
            input.cap.set(cap);
        }
        // The ABI's "cannot allocate": `sluice_alloc` returns 0.
        None => input.ptr.set(NonNull::dangling()),
    }
}

fn layout(cap: usize) -> Layout {
    // Only called with 0 < cap <= isize::MAX, for which this cannot fail.
    Layout::array::<u8>(cap).unwrap_or(Layout::new::<u8>())
}

/// The `len` bytes the host wrote at `ptr`, if that is the buffer [`alloc`]
/// handed out (anything else is refused rather than trusted).
///
/// # Safety
/// The bytes must not be used after the call returns, and the host must not
/// call `sluice_alloc` meanwhile (it cannot: it does not enter a module that
/// is running).
unsafe fn input<F>(slot: &Slot<F>, ptr: i32, len: i32) -> Option<&[u8]> {
    let len = usize::try_from(len).ok()?;
    let input = &slot.input;
    if len == 0 {
        return Some(&[]);
    }
    if ptr as u32 as usize != input.ptr.get().as_ptr() as usize || len > input.cap.get() {
        return None;
    }
    // SAFETY: `ptr..ptr + len` lies in the live buffer of `cap` bytes, which
    // the host has filled; it is not reallocated before the next `alloc`.
    Some(unsafe { core::slice::from_raw_parts(input.ptr.get().as_ptr(), len) })
}

/// `sluice_init`: decodes the config, builds the function, keeps it.
///
/// An empty buffer is taken as an empty config.
///
/// # Safety
/// As for [`take`].
pub unsafe fn init<F: Function>(slot: &Slot<F>, ptr: i32, len: i32) -> i32 {
    // SAFETY: forwarded from the caller.
    let Some(bytes) = (unsafe { input(slot, ptr, len) }) else {
        return fail("init", Error::MALFORMED_CONFIG);
    };
    let entries = if bytes.is_empty() {
        Vec::new()
    } else {
        match decode_meta_list(bytes) {
            Ok(entries) => entries,
            Err(_) => return fail("init", Error::MALFORMED_CONFIG),
        }
    };
    let Ok(mut cell) = slot.function.try_borrow_mut() else {
        return fail("init", Error::BUSY);
    };
    match F::init(&Config::new(entries)) {
        Ok(function) => {
            *cell = Some(function);
            abi::OK
        }
        Err(err) => fail("init", err),
    }
}

/// `sluice_on_event`: hands a view of the event to the function, built with
/// an empty config first if `sluice_init` was never called. The view checks
/// the event as the function reads it; if it found a malformed part, the
/// call fails whatever the function returned.
///
/// # Safety
/// As for [`input`].
pub unsafe fn on_event<F: Function>(slot: &Slot<F>, ptr: i32, len: i32) -> i32 {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { input(slot, ptr, len) };
    // SAFETY: the ABI has the host pass only events it encoded or checked
    // whole, whose strings are UTF-8 (`docs/function-abi.md`).
    let Some(Ok(event)) = bytes.map(|bytes| unsafe { EventView::parse_trusted(bytes) }) else {
        return fail("on_event", Error::MALFORMED_EVENT);
    };
    with_function(slot, "on_event", |function| {
        let result = function.on_view(&event);
        if event.is_malformed() {
            return Err(Error::MALFORMED_EVENT);
        }
        result
    })
}

/// Set by [`crate::again`] during a tick.
static AGAIN: AtomicBool = AtomicBool::new(false);

/// Asks the host to call the tick entry point again at once (see
/// [`crate::again`]).
pub fn request_again() {
    AGAIN.store(true, Ordering::Relaxed);
}

/// `sluice_on_tick`: the schedule fired at `now_ms`. Returns
/// [`abi::TICK_AGAIN`] instead of `OK` if the function asked for another call.
pub fn on_tick<F: Function>(slot: &Slot<F>, now_ms: i64) -> i32 {
    AGAIN.store(false, Ordering::Relaxed);
    let code = with_function(slot, "on_tick", |function| function.on_tick(now_ms));
    if code == abi::OK && AGAIN.swap(false, Ordering::Relaxed) {
        abi::TICK_AGAIN
    } else {
        code
    }
}

fn with_function<F: Function>(
    slot: &Slot<F>,
    entry: &str,
    call: impl FnOnce(&mut F) -> Result<(), Error>,
) -> i32 {
    let result = match slot.function.try_borrow_mut() {
        Ok(mut cell) => ready(&mut cell).and_then(call),
        Err(_) => Err(Error::BUSY),
    };
    match result {
        Ok(()) => abi::OK,
        Err(err) => fail(entry, err),
    }
}

/// The instance, built with an empty config if `sluice_init` was not called
/// (in a call of its own: every call pays for the code it inlines).
#[inline(always)]
fn ready<F: Function>(cell: &mut Option<F>) -> Result<&mut F, Error> {
    if cell.is_none() {
        return init_default(cell);
    }
    cell.as_mut().ok_or(Error::BUSY)
}

#[cold]
#[inline(never)]
fn init_default<F: Function>(cell: &mut Option<F>) -> Result<&mut F, Error> {
    Ok(cell.insert(F::init(&Config::default())?))
}

/// Logs why `entry` failed and returns the code for the host.
#[cold]
#[inline(never)]
fn fail(entry: &str, err: Error) -> i32 {
    let mut line = String::with_capacity(64);
    line.push_str(entry);
    line.push_str(" failed: ");
    line.push_str(err.message());
    line.push_str(" (code ");
    text::push_i64(&mut line, err.code().into());
    line.push_str(")");
    log(Level::Error, &line);
    err.code()
}
