//! Wall-clock time as stamped on events and records (shared with adapters).

pub use sluice_adapter_common::clock::now_ms;
