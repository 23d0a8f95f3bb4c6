//! Hand-written guest modules (WebAssembly text) for host tests: each one
//! behaves (or misbehaves) in exactly one way, independent of the SDK.

use std::path::{Path, PathBuf};

/// Imports, memory, a bump allocator reset after every call, and the key
/// `n` at 16 and `last` at 24; 8 scratch bytes at 32.
const PRELUDE: &str = r#"
  (import "sluice_v1" "emit" (func $emit (param i32 i32) (result i32)))
  (import "sluice_v1" "log" (func $log (param i32 i32 i32)))
  (import "sluice_v1" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (import "sluice_v1" "state_put" (func $state_put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "n")
  (data (i32.const 24) "last")
  (data (i32.const 48) "hello from wasm")
  (data (i32.const 64) "\01\ff\ff\ff\ff")
  (global $next (mut i32) (i32.const 4096))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  ;; n += 1 in state key "n" (8 bytes little-endian)
  (func $count
    (if (i32.lt_s (call $state_get (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 8)) (i32.const 0))
      (then (i64.store (i32.const 32) (i64.const 0))))
    (i64.store (i32.const 32) (i64.add (i64.load (i32.const 32)) (i64.const 1)))
    (drop (call $state_put (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 8))))
"#;

/// Counts inputs in state `n` and re-emits each input (the host re-stamps it).
pub const COUNT: &str = r#"
  (func (export "sluice_on_event") (param $ptr i32) (param $len i32) (result i32)
    (call $count)
    (drop (call $emit (local.get $ptr) (local.get $len)))
    (global.set $next (i32.const 4096))
    (i32.const 0))
"#;

/// Like [`COUNT`], but traps (as a Rust panic would) on inputs over 200 bytes.
pub const POISONABLE: &str = r#"
  (func (export "sluice_on_event") (param $ptr i32) (param $len i32) (result i32)
    (global.set $next (i32.const 4096))
    (if (i32.gt_u (local.get $len) (i32.const 200)) (then unreachable))
    (call $count)
    (drop (call $emit (local.get $ptr) (local.get $len)))
    (i32.const 0))
"#;

/// Loops forever.
pub const SPIN: &str = r#"
  (func (export "sluice_on_event") (param i32 i32) (result i32)
    (loop $l (br $l))
    (i32.const 0))
"#;

/// Grows its memory until the cap stops it.
pub const GROW: &str = r#"
  (func (export "sluice_on_event") (param i32 i32) (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (i32.const 0))
"#;

/// Emits five bytes that are no event (format version 1, then garbage).
pub const BAD_EMIT: &str = r#"
  (func (export "sluice_on_event") (param i32 i32) (result i32)
    (global.set $next (i32.const 4096))
    (drop (call $emit (i32.const 64) (i32.const 5)))
    (i32.const 0))
"#;

/// Emits its input twice (over a cap of one event per call).
pub const EMIT_TWICE: &str = r#"
  (func (export "sluice_on_event") (param $ptr i32) (param $len i32) (result i32)
    (global.set $next (i32.const 4096))
    (drop (call $emit (local.get $ptr) (local.get $len)))
    (drop (call $emit (local.get $ptr) (local.get $len)))
    (i32.const 0))
"#;

/// Returns error code 7 after logging a line.
pub const FAIL_7: &str = r#"
  (func (export "sluice_on_event") (param i32 i32) (result i32)
    (global.set $next (i32.const 4096))
    (call $log (i32.const 1) (i32.const 48) (i32.const 15))
    (i32.const 7))
"#;

/// Keeps the latest input in state `last`; each tick emits it again.
pub const LATEST_ON_TICK: &str = r#"
  (func (export "sluice_on_event") (param $ptr i32) (param $len i32) (result i32)
    (drop (call $state_put (i32.const 24) (i32.const 4) (local.get $ptr) (local.get $len)))
    (global.set $next (i32.const 4096))
    (i32.const 0))
  (func (export "sluice_on_tick") (param i64) (result i32)
    (local $len i32)
    (local.set $len (call $state_get (i32.const 24) (i32.const 4) (i32.const 8192) (i32.const 4096)))
    (if (i32.ge_s (local.get $len) (i32.const 0))
      (then (drop (call $emit (i32.const 8192) (local.get $len)))))
    (i32.const 0))
"#;

/// The module with `body` after the shared prelude, as wasm bytes.
pub fn module(body: &str) -> Vec<u8> {
    let text = format!("(module {PRELUDE} {body})");
    wat::parse_str(&text).unwrap_or_else(|e| panic!("test module does not assemble: {e}"))
}

/// Writes the module with `body` to `dir/name.wasm`.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, module(body)).expect("write module");
    path
}

/// A `[[functions]]` entry for `module`, subscribed to `subscribe`, with `extra` keys.
pub fn function_toml(name: &str, module: &Path, subscribe: &str, extra: &str) -> String {
    format!(
        "[[functions]]\nname = \"{name}\"\nmodule = \"{}\"\nsubscribe = [{subscribe}]\n{extra}\n",
        module.display()
    )
}
