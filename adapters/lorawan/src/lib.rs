//! The LoRaWAN adapter: a GWMP v2 (Semtech UDP packet-forwarder) server
//! and an edge network server for LoRaWAN 1.0.x Class A devices listed in
//! the config, OTAA and ABP.
//!
//! - [`keys`]: EUIs and AES keys from config hex; keys never print.
//! - [`region`]: EU868 and US915 (sub-band 2) tables (pure).
//! - [`gwmp`]: the packet-forwarder protocol's datagrams and JSON (pure).
//! - [`session`]: sessions, their stored form, the 32-bit FCnt rebuild (pure).
//! - [`frame`]: data uplinks opened and downlinks built (pure).
//! - [`join`]: JoinRequest checks, JoinAccept and session keys (pure).
//! - [`mac`]: MAC commands (pure).
//! - [`config`]: the `[lorawan]` section.
//! - [`network`]: devices, sessions and decisions, no I/O.
//! - [`gateways`]: the concentrators heard from: downlink paths, liveness, health.
//! - [`rejection`]: why a datagram or frame was turned away, one counter each.
//! - [`server`]: the I/O loop; [`adapter`]: the contract with the core.
pub mod adapter;
pub mod config;
pub mod frame;
pub mod gateways;
pub mod gwmp;
pub mod join;
pub mod keys;
pub mod mac;
pub mod network;
pub mod region;
pub mod rejection;
pub mod server;
pub mod session;

pub use config::LorawanConfig;
