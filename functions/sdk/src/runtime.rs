//! What a `no_std` wasm module needs from its SDK: the global allocator and
//! the panic handler. Compiled for wasm32 only.

use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::{Level, log, text};

// Talc grows the memory with `memory.grow` and imports nothing. Under wasmi's
// fuel metering it costs about half of what dlmalloc does per allocation, and
// a third less code.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Logs the panic at error level, then traps: the host records
/// `trap: unreachable`, discards the call's outputs and state writes, and
/// starts a fresh instance for the next call.
///
/// Only a static message and the location are logged: formatting arbitrary
/// panic arguments would pull `core::fmt` into every module.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Building the line allocates; if that panics too (out of memory), trap
    // at once instead of recursing.
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if PANICKING.swap(true, Ordering::Relaxed) {
        core::arch::wasm32::unreachable()
    }
    let mut line = String::new();
    line.push_str("panic: ");
    line.push_str(info.message().as_str().unwrap_or("(formatted message)"));
    if let Some(location) = info.location() {
        line.push_str(" at ");
        line.push_str(location.file());
        line.push_str(":");
        text::push_u64(&mut line, location.line().into());
    }
    log(Level::Error, &line);
    core::arch::wasm32::unreachable()
}
