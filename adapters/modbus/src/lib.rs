//! The Modbus adapter: RTU devices on serial lines and Modbus TCP devices,
//! polled by register maps, their registers turned into named, scaled
//! readings with units; writes of typed values to named points. tokio-modbus
//! frames the requests and tokio-serial drives the line; timeouts, retries,
//! the line's silences, fault counting and offline detection are here.
//!
//! Pure layers, where the tests live:
//! - [`config`]: the `[modbus]` section (buses, TCP connections, profiles,
//!   devices, points) and its validation.
//! - [`register`]: types and word orders, registers to values and back.
//! - [`plan`]: the coalescing planner, a device's points into the fewest reads.
//! - [`device`]: a device resolved for polling; answers to readings, values
//!   to writes.
//! - [`change`]: publish-on-change with a deadband.
//! - [`availability`]: offline after K unanswered polls, back-off, online.
//! - [`fault`]: why a request failed, one counter each.
//! - [`rtu`]: RTU timing, frame sizes, the CRC, unanswered bytes sorted.
//! - [`serial`], [`tcp`]: line settings and addresses.
//!
//! I/O: [`link`] (one request at a time over a port or connection, with
//! timeouts, drains and reopening), [`pace`] (the line's short silences,
//! timed to a fraction of a millisecond), [`bus`] (one task per bus: polls,
//! events, status, writes) and [`adapter`] (the contract with the core).

pub mod adapter;
pub mod availability;
pub mod bus;
pub mod change;
pub mod config;
pub mod device;
pub mod fault;
pub mod link;
pub mod pace;
pub mod plan;
pub mod register;
pub mod rtu;
pub mod serial;
pub mod tcp;

pub use config::ModbusConfig;
