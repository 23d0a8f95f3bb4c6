//! Every host function of ABI v1, registered in one place ([`linker`]), and
//! the per-instance data they work on. Guests get exactly these imports and
//! nothing else: no WASI, no files, no sockets.

use super::function::CallError;
use super::state::StateMap;
use crate::metrics::FailureKind;
use crate::subject::is_concrete;
use sluice_event::EventView;
use sluice_event::abi::{self, ERR_BAD_ARGUMENT, ERR_NOT_FOUND, ERR_STATE_FULL, MAX_KEY_LEN, OK};
use wasmi::{Caller, Engine, Error, Linker, Memory, StoreLimits};

/// Most log lines one call may write; more are dropped and counted.
pub const MAX_LOG_LINES: usize = 32;
/// Longest log line kept, in bytes; longer ones are cut.
pub const MAX_LOG_BYTES: usize = 1024;

/// What the store of one instance holds.
pub struct GuestData {
    /// Memory and table caps, enforced by wasmi.
    pub limits: StoreLimits,
    /// The function's durable state (it outlives instances).
    pub state: StateMap,
    /// What the current call produced.
    pub call: CallState,
    /// The live instance's exported memory, looked up once per instance
    /// rather than by name on every host call.
    pub memory: Option<Memory>,
}

/// Output and limits of the call in progress.
#[derive(Debug, Default)]
pub struct CallState {
    /// Events emitted, as the guest encoded them (checked).
    pub emitted: Vec<Vec<u8>>,
    /// Encoded bytes emitted.
    pub emitted_bytes: u64,
    /// Log lines written.
    pub logs: Vec<LogLine>,
    /// Log lines dropped over [`MAX_LOG_LINES`].
    pub logs_dropped: u32,
    /// Most events this call may emit.
    pub max_emit: u32,
    /// Most encoded bytes this call may emit.
    pub max_emit_bytes: u64,
}

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// ABI level: 0 error … 4 trace.
    pub level: i32,
    /// The message (invalid UTF-8 replaced).
    pub message: String,
}

impl LogLine {
    /// The level's name.
    pub fn level_name(&self) -> &'static str {
        match self.level {
            abi::level::ERROR => "error",
            abi::level::WARN => "warn",
            abi::level::INFO => "info",
            abi::level::DEBUG => "debug",
            _ => "trace",
        }
    }
}

/// A linker with every ABI v1 import.
pub fn linker(engine: &Engine) -> Result<Linker<GuestData>, Error> {
    let mut linker = Linker::new(engine);
    let m = abi::IMPORT_MODULE;
    linker.func_wrap(m, abi::IMPORT_EMIT, emit)?;
    linker.func_wrap(m, abi::IMPORT_LOG, log)?;
    linker.func_wrap(m, abi::IMPORT_NOW_MS, |_: Caller<'_, GuestData>| {
        crate::clock::now_ms()
    })?;
    linker.func_wrap(m, abi::IMPORT_STATE_GET, state_get)?;
    linker.func_wrap(m, abi::IMPORT_STATE_PUT, state_put)?;
    linker.func_wrap(m, abi::IMPORT_STATE_DELETE, state_delete)?;
    linker.func_wrap(m, abi::IMPORT_EMIT_ROOM, emit_room)?;
    Ok(linker)
}

/// The guest's bytes at `ptr..ptr+len`, if that range is inside its memory.
fn read(caller: &Caller<'_, GuestData>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let data = caller.data().memory?.data(caller);
    range(data, ptr, len).map(<[u8]>::to_vec)
}

/// `ptr..ptr+len` of `memory`, if it is inside.
fn range(memory: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    memory.get(start..end)
}

/// A state key of 1–256 bytes at `ptr..ptr+len` of `memory`, if inside.
fn key(memory: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    range(memory, ptr, len).filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
}

/// The guest's memory and the host data, borrowed together.
fn memory_and_data<'a>(
    caller: &'a mut Caller<'_, GuestData>,
) -> Option<(&'a mut [u8], &'a mut GuestData)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

/// A host function's refusal that ends the call, with its kind, so the
/// failure is counted by what the guest did wrong.
#[derive(Debug)]
pub(crate) struct HostFault(pub(crate) CallError);

impl std::fmt::Display for HostFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl wasmi::errors::HostError for HostFault {}

/// Ends the call as failed with `kind`.
fn fault(kind: FailureKind, message: String) -> Error {
    Error::host(HostFault(CallError { kind, message }))
}

fn emit(mut caller: Caller<'_, GuestData>, ptr: i32, len: i32) -> Result<i32, Error> {
    let bytes = read(&caller, ptr, len).ok_or_else(|| {
        fault(
            FailureKind::BadOutput,
            "emit: buffer outside the memory".into(),
        )
    })?;
    let call = &mut caller.data_mut().call;
    if call.emitted.len() >= call.max_emit as usize {
        return Err(fault(
            FailureKind::EmitCap,
            format!("emit: more than {} events in one call", call.max_emit),
        ));
    }
    if call.emitted_bytes + bytes.len() as u64 > call.max_emit_bytes {
        return Err(fault(
            FailureKind::EmitCap,
            format!("emit: more than {} bytes in one call", call.max_emit_bytes),
        ));
    }
    let event = EventView::parse(&bytes)
        .map_err(|e| fault(FailureKind::BadOutput, format!("emit: {e}")))?;
    if !is_concrete(event.subject) {
        return Err(fault(
            FailureKind::BadOutput,
            format!(
                "emit: subject `{}` is not one or more non-empty levels without `+` or `#`",
                event.subject
            ),
        ));
    }
    call.emitted_bytes += bytes.len() as u64;
    call.emitted.push(bytes);
    Ok(OK)
}

/// How many more events of `len` bytes this call may emit before `emit`
/// traps: the lesser of the events and the bytes left.
fn emit_room(caller: Caller<'_, GuestData>, len: i32) -> i32 {
    let call = &caller.data().call;
    let events = u64::from(call.max_emit).saturating_sub(call.emitted.len() as u64);
    let bytes = call.max_emit_bytes.saturating_sub(call.emitted_bytes);
    let room = match u64::try_from(len) {
        Ok(len) if len > 0 => events.min(bytes / len),
        _ => events,
    };
    i32::try_from(room).unwrap_or(i32::MAX)
}

fn log(mut caller: Caller<'_, GuestData>, level: i32, ptr: i32, len: i32) {
    let call = &caller.data().call;
    if call.logs.len() >= MAX_LOG_LINES {
        caller.data_mut().call.logs_dropped += 1;
        return;
    }
    let len = len.clamp(0, MAX_LOG_BYTES as i32);
    let message = match read(&caller, ptr, len) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => "(log message outside the memory)".to_owned(),
    };
    caller.data_mut().call.logs.push(LogLine {
        level: level.clamp(abi::level::ERROR, abi::level::TRACE),
        message,
    });
}

fn state_get(
    mut caller: Caller<'_, GuestData>,
    key_ptr: i32,
    key_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> i32 {
    let Some((memory, data)) = memory_and_data(&mut caller) else {
        return ERR_BAD_ARGUMENT;
    };
    let Some(k) = key(memory, key_ptr, key_len) else {
        return ERR_BAD_ARGUMENT;
    };
    // The value is written into the guest's memory straight from the state.
    let Some(value) = data.state.get(k) else {
        return ERR_NOT_FOUND;
    };
    let Ok(n) = i32::try_from(value.len()) else {
        return ERR_BAD_ARGUMENT;
    };
    if n > out_cap {
        return n;
    }
    let out = usize::try_from(out_ptr)
        .ok()
        .and_then(|at| memory.get_mut(at..at.checked_add(value.len())?));
    match out {
        Some(out) => {
            out.copy_from_slice(value);
            n
        }
        None => ERR_BAD_ARGUMENT,
    }
}

fn state_put(
    mut caller: Caller<'_, GuestData>,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    let Some((memory, data)) = memory_and_data(&mut caller) else {
        return ERR_BAD_ARGUMENT;
    };
    let (Some(k), Some(v)) = (
        key(memory, key_ptr, key_len),
        range(memory, val_ptr, val_len),
    ) else {
        return ERR_BAD_ARGUMENT;
    };
    match data.state.put(k, v) {
        Ok(()) => OK,
        Err(_) => ERR_STATE_FULL,
    }
}

fn state_delete(mut caller: Caller<'_, GuestData>, key_ptr: i32, key_len: i32) -> i32 {
    let Some((memory, data)) = memory_and_data(&mut caller) else {
        return ERR_BAD_ARGUMENT;
    };
    let Some(k) = key(memory, key_ptr, key_len) else {
        return ERR_BAD_ARGUMENT;
    };
    data.state.delete(k);
    OK
}
