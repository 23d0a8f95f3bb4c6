//! The bodies of the ABI exports that [`export_function!`](crate::export_function)
//! generates. The `#[unsafe(no_mangle)]` functions themselves must be in the
//! function's own crate (a cdylib exports only its own symbols); they call
//! these generic helpers. Not part of the public API.

use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::cell::RefCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use sluice_event::{EventView, abi, decode_meta_list};

use crate::{Config, Error, Function, Level, log, text};

/// The one instance of the function, in a `static`.
pub struct Slot<F>(RefCell<Option<F>>);

// SAFETY: wasm32 without the `atomics` feature has a single thread, so the
// cell is never reached from two threads. Elsewhere `Slot` is not `Sync` and a
// `static` of it does not compile.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<F> Sync for Slot<F> {}

impl<F> Slot<F> {
    /// An empty slot.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Slot<F> {
        Slot(RefCell::new(None))
    }
}

/// `sluice_alloc`: a `len`-byte buffer the next call takes over; `0` if it
/// cannot be allocated, a dangling non-zero address for `len == 0`.
pub fn alloc(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    if len == 0 {
        return NonNull::<u8>::dangling().as_ptr() as usize as i32;
    }
    let Ok(layout) = Layout::array::<u8>(len) else {
        return 0;
    };
    // SAFETY: the layout has a non-zero size. A null result becomes 0, the
    // ABI's "cannot allocate".
    unsafe { alloc::alloc::alloc(layout) as usize as i32 }
}

/// Takes back the buffer [`alloc`] handed out, so that it is freed on drop.
///
/// # Safety
/// `ptr` and `len` must come from one `alloc(len)` not taken back before.
unsafe fn take(ptr: i32, len: i32) -> Vec<u8> {
    match usize::try_from(len) {
        Ok(len) if len > 0 && ptr != 0 => {
            // SAFETY: `alloc` allocated exactly `len` bytes with alignment 1
            // at `ptr`, which is the layout of a Vec<u8> of capacity `len`;
            // the host filled all of them.
            unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len, len) }
        }
        _ => Vec::new(),
    }
}

/// `sluice_init`: decodes the config, builds the function, keeps it.
///
/// An empty buffer is taken as an empty config.
///
/// # Safety
/// As for [`take`].
pub unsafe fn init<F: Function>(slot: &Slot<F>, ptr: i32, len: i32) -> i32 {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { take(ptr, len) };
    let entries = if bytes.is_empty() {
        Vec::new()
    } else {
        match decode_meta_list(&bytes) {
            Ok(entries) => entries,
            Err(_) => return fail("init", Error::MALFORMED_CONFIG),
        }
    };
    drop(bytes);
    let Ok(mut cell) = slot.0.try_borrow_mut() else {
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

/// `sluice_on_event`: checks the event and hands a view of it to the
/// function, built with an empty config first if `sluice_init` was never
/// called.
///
/// # Safety
/// As for [`take`].
pub unsafe fn on_event<F: Function>(slot: &Slot<F>, ptr: i32, len: i32) -> i32 {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { take(ptr, len) };
    let Ok(event) = EventView::parse(&bytes) else {
        return fail("on_event", Error::MALFORMED_EVENT);
    };
    with_function(slot, "on_event", |function| function.on_view(&event))
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
    let result = match slot.0.try_borrow_mut() {
        Ok(mut cell) => ready(&mut cell).and_then(call),
        Err(_) => Err(Error::BUSY),
    };
    match result {
        Ok(()) => abi::OK,
        Err(err) => fail(entry, err),
    }
}

/// The instance, built with an empty config if `sluice_init` was not called.
#[inline(never)]
fn ready<F: Function>(cell: &mut Option<F>) -> Result<&mut F, Error> {
    if cell.is_none() {
        *cell = Some(F::init(&Config::default())?);
    }
    cell.as_mut().ok_or(Error::BUSY)
}

/// Logs why `entry` failed and returns the code for the host.
fn fail(entry: &str, err: Error) -> i32 {
    let mut line = String::with_capacity(64);
    line.push_str(entry);
    line.push_str(" failed: ");
    line.push_str(err.message());
    line.push_str(" (code ");
    text::push_i64(&mut line, err.code().into());
    line.push(')');
    log(Level::Error, &line);
    err.code()
}
