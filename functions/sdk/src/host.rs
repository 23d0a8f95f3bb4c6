//! Safe wrappers over the `sluice_v1` imports: [`emit`], [`log`] and
//! [`now_ms`]; the state imports are wrapped in [`crate::state`].
//!
//! Off wasm32 the imports do not exist: the wrappers compile (so the pure
//! parts of the SDK can be unit-tested natively), log lines are dropped and
//! every other import panics.

use alloc::string::String;
use alloc::vec::Vec;
use sluice_event::{Event, abi};

use crate::{Error, EventWriter, writer};

/// The raw imports. `#[link(wasm_import_module)]` needs a literal, so the
/// names are checked against `sluice_event::abi` at compile time below.
#[cfg(target_arch = "wasm32")]
pub(crate) mod sys {
    #[link(wasm_import_module = "sluice_v1")]
    unsafe extern "C" {
        pub fn emit(ptr: i32, len: i32) -> i32;
        pub fn log(level: i32, ptr: i32, len: i32);
        pub safe fn now_ms() -> i64;
        pub fn state_get(key_ptr: i32, key_len: i32, out_ptr: i32, out_cap: i32) -> i32;
        pub fn state_put(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32;
        pub fn state_delete(key_ptr: i32, key_len: i32) -> i32;
        pub safe fn emit_room(len: i32) -> i32;
    }
}

/// Native stand-ins with the same signatures, for building the SDK off wasm32.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
pub(crate) mod sys {
    const NO_HOST: &str = "the sluice_v1 imports exist only on wasm32";

    pub unsafe fn emit(_ptr: i32, _len: i32) -> i32 {
        panic!("{NO_HOST}")
    }
    /// Dropped, so that code that only logs can be unit-tested natively.
    pub unsafe fn log(_level: i32, _ptr: i32, _len: i32) {}
    pub fn now_ms() -> i64 {
        panic!("{NO_HOST}")
    }
    pub unsafe fn state_get(_key_ptr: i32, _key_len: i32, _out_ptr: i32, _out_cap: i32) -> i32 {
        panic!("{NO_HOST}")
    }
    pub unsafe fn state_put(_key_ptr: i32, _key_len: i32, _val_ptr: i32, _val_len: i32) -> i32 {
        panic!("{NO_HOST}")
    }
    pub unsafe fn state_delete(_key_ptr: i32, _key_len: i32) -> i32 {
        panic!("{NO_HOST}")
    }
    pub fn emit_room(_len: i32) -> i32 {
        panic!("{NO_HOST}")
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// The literals in `sys` must be the names the host registers.
const _: () = {
    assert!(same(abi::IMPORT_MODULE, "sluice_v1"));
    assert!(same(abi::IMPORT_EMIT, "emit"));
    assert!(same(abi::IMPORT_LOG, "log"));
    assert!(same(abi::IMPORT_NOW_MS, "now_ms"));
    assert!(same(abi::IMPORT_STATE_GET, "state_get"));
    assert!(same(abi::IMPORT_STATE_PUT, "state_put"));
    assert!(same(abi::IMPORT_STATE_DELETE, "state_delete"));
    assert!(same(abi::IMPORT_EMIT_ROOM, "emit_room"));
};

/// A pointer into linear memory as the ABI passes it; wasm32 addresses fit.
pub(crate) fn addr(bytes: &[u8]) -> i32 {
    bytes.as_ptr() as usize as i32
}

/// A length as the ABI passes it. Buffers in a 32-bit memory are shorter than
/// `i32::MAX` in practice; longer ones are clamped, and the host rejects them.
pub(crate) fn len(bytes: &[u8]) -> i32 {
    i32::try_from(bytes.len()).unwrap_or(i32::MAX)
}

/// Something [`emit`] takes: an [`Event`] or an [`EventWriter`].
pub trait Output {
    /// Writes the encoded event to `out`, replacing what it held.
    fn encode_into(&self, out: &mut Vec<u8>);
}

impl Output for Event {
    fn encode_into(&self, out: &mut Vec<u8>) {
        Event::encode_into(self, out);
    }
}

impl Output for EventWriter {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.finish_into(out);
    }
}

/// Emits one output event, built as an [`Event`] or (cheaper: nothing is
/// copied twice, and the buffers are reused from call to call) written with
/// an [`EventWriter`].
///
/// The host sets `id`, `cause` and `function`, prefixes the subject with
/// `fn/<function>/`, fills an empty `device` from the input and a `0`
/// `gateway_time_ms` with now. The subject must be one or more non-empty
/// levels without `+` or `#` (see [`crate::text::subject_level`]); an invalid
/// event, or more than the host's `max_emit` events or `max_emit_bytes` bytes
/// in one call, traps the call.
#[inline(never)]
pub fn emit(event: &impl Output) -> Result<(), Error> {
    writer::with_output(|out| {
        event.encode_into(out);
        emit_encoded(out)
    })
}

/// Emits one output event already encoded (with [`Event::encode`] or
/// [`EventWriter::finish`]); see [`emit`].
pub fn emit_encoded(bytes: &[u8]) -> Result<(), Error> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call.
    match unsafe { sys::emit(addr(bytes), len(bytes)) } {
        abi::OK => Ok(()),
        _ => Err(Error::EMIT_REJECTED),
    }
}

/// How many more events of `len` encoded bytes this call may emit before the
/// host's `max_emit` or `max_emit_bytes` would trap it. With [`again`], a
/// tick that has more to emit than one call allows can do it in chunks.
///
/// Needs a gateway with the `emit_room` import (see `docs/function-abi.md`):
/// a module that calls it does not load on older ones.
pub fn emit_room(len: usize) -> u32 {
    u32::try_from(sys::emit_room(i32::try_from(len).unwrap_or(i32::MAX))).unwrap_or(0)
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for debugging.
    Debug,
    /// Even more detail.
    Trace,
}

impl Level {
    /// The level's number on the wire (`sluice_event::abi::level`).
    pub const fn code(self) -> i32 {
        match self {
            Level::Error => abi::level::ERROR,
            Level::Warn => abi::level::WARN,
            Level::Info => abi::level::INFO,
            Level::Debug => abi::level::DEBUG,
            Level::Trace => abi::level::TRACE,
        }
    }
}

/// Writes one line to the gateway's log under the function's name.
///
/// The host keeps at most 32 lines per call and cuts lines at 1 KiB.
pub fn log(level: Level, message: &str) {
    let bytes = message.as_bytes();
    // SAFETY: the pointer and length describe `message`, alive for the call.
    unsafe { sys::log(level.code(), addr(bytes), len(bytes)) }
}

/// Writes the concatenation of `parts` as one log line; what the
/// [`error!`](crate::error!), [`warn!`](crate::warn!), [`info!`](crate::info!)
/// and [`debug!`](crate::debug!) macros expand to.
pub fn log_parts(level: Level, parts: &[&str]) {
    let mut line = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        line.push_str(part);
    }
    log(level, &line);
}

/// Gateway wall-clock time, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    sys::now_ms()
}
