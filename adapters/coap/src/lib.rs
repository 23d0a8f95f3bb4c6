//! The CoAP adapter (RFC 7252): a server that devices POST or PUT readings
//! to, and an observer (RFC 7641) for devices that serve them. coap-lite is
//! the message codec; the exchange layer (deduplication of retransmitted
//! confirmable requests, acknowledgement only once the events are durable)
//! is here.
//!
//! - [`config`]: the `[coap]` section.
//! - [`payload`] and [`senml`]: content formats to readings (pure).
//! - [`exchange`]: answered messages by key, to spot retransmissions (pure;
//!   the server's and the observer's).
//! - [`message`]: message-format rules coap-lite lets through (pure).
//! - [`option`]: unsigned-integer option values, and which options a
//!   request may carry (RFC 7252 §5.4, §5.10) (pure).
//! - [`path`]: the resource a Uri-Path addresses, device and name checked
//!   with the one id rule (pure).
//! - [`block1`]: Block1 option values and the upload assembler (RFC 7959)
//!   (pure).
//! - [`rate`]: per-device request budgets (pure).
//! - [`timing`]: RFC 7252 transmission parameters, one set for all.
//! - [`rejection`]: why a message was turned away, one counter each.
//! - [`client`]: one request at a time over one socket, retransmitted
//!   (downlinks, the demo's devices).
//! - [`dtls`]: CoAP over DTLS, turned into messages in clear for the server.
//! - [`route`]: a server request to its events or a direct answer (no I/O).
//! - [`server`], [`observe`] and [`downlink`]: the I/O loops.

pub mod adapter;
pub mod block1;
pub mod client;
pub mod config;
pub mod directory;
pub mod downlink;
pub mod dtls;
pub mod exchange;
pub mod message;
pub mod observe;
pub mod option;
pub mod path;
pub mod payload;
pub mod rate;
pub mod rejection;
pub mod route;
pub mod senml;
pub mod server;
pub mod timing;

pub use config::CoapConfig;
