//! Names and codes of the function ABI, version 1, shared by the host
//! (`src/functions`) and the guest SDK (`functions/sdk`) so the two can never
//! spell an import differently. `docs/function-abi.md` is the specification.

/// The ABI version this crate describes, returned by the guest's
/// [`EXPORT_ABI_VERSION`] export.
pub const ABI_VERSION: i32 = 1;

/// The wasm import module that holds every host function of ABI v1.
pub const IMPORT_MODULE: &str = "sluice_v1";

/// `emit(ptr: i32, len: i32) -> i32`: emit one postcard-encoded event.
pub const IMPORT_EMIT: &str = "emit";
/// `log(level: i32, ptr: i32, len: i32)`: log a UTF-8 message.
pub const IMPORT_LOG: &str = "log";
/// `now_ms() -> i64`: gateway wall-clock time, ms since the Unix epoch.
pub const IMPORT_NOW_MS: &str = "now_ms";
/// `state_get(key_ptr: i32, key_len: i32, out_ptr: i32, out_cap: i32) -> i32`.
pub const IMPORT_STATE_GET: &str = "state_get";
/// `state_put(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32`.
pub const IMPORT_STATE_PUT: &str = "state_put";
/// `state_delete(key_ptr: i32, key_len: i32) -> i32`.
pub const IMPORT_STATE_DELETE: &str = "state_delete";
/// `emit_room(len: i32) -> i32`: how many more events of `len` encoded bytes
/// the current call may emit. Added in v1 after the first release: a module
/// that imports it needs a gateway that has it.
pub const IMPORT_EMIT_ROOM: &str = "emit_room";

/// Exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// `sluice_abi_version() -> i32`: must return [`ABI_VERSION`].
pub const EXPORT_ABI_VERSION: &str = "sluice_abi_version";
/// `sluice_alloc(len: i32) -> i32`: a buffer of `len` bytes the host fills
/// and hands over with the next call.
pub const EXPORT_ALLOC: &str = "sluice_alloc";
/// `sluice_init(ptr: i32, len: i32) -> i32` (optional): the function's config.
pub const EXPORT_INIT: &str = "sluice_init";
/// `sluice_on_event(ptr: i32, len: i32) -> i32`: one postcard-encoded event.
pub const EXPORT_ON_EVENT: &str = "sluice_on_event";
/// `sluice_on_tick(now_ms: i64) -> i32` (optional): the schedule fired.
pub const EXPORT_ON_TICK: &str = "sluice_on_tick";

/// Return code: success.
pub const OK: i32 = 0;
/// `state_get`: no value under that key.
pub const ERR_NOT_FOUND: i32 = -1;
/// `state_put`: the function's state would exceed its size cap; nothing written.
pub const ERR_STATE_FULL: i32 = -2;
/// A pointer/length pair lies outside the guest's memory, or a key is empty
/// or longer than [`MAX_KEY_LEN`].
pub const ERR_BAD_ARGUMENT: i32 = -3;

/// `sluice_on_tick` return code: this call is done and would like to be
/// called again at once, in the same tick (for work larger than one call's
/// `max_emit`). The host calls again at most [`MAX_TICK_ROUNDS`] times per
/// tick. Chosen far from the SDK's codes (1–10) and functions' own (100 and up).
pub const TICK_AGAIN: i32 = -1000;

/// Most calls of `sluice_on_tick` per tick, counting the first.
pub const MAX_TICK_ROUNDS: u32 = 1024;

/// Longest state key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Log levels for `log`, most severe first.
pub mod level {
    /// Something failed.
    pub const ERROR: i32 = 0;
    /// Something looks wrong.
    pub const WARN: i32 = 1;
    /// Normal operation.
    pub const INFO: i32 = 2;
    /// Detail for debugging.
    pub const DEBUG: i32 = 3;
    /// Even more detail.
    pub const TRACE: i32 = 4;
}
