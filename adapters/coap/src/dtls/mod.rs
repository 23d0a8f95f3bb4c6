//! CoAP over DTLS 1.2 (RFC 7252 §9), with OpenSSL: the listener turns
//! datagrams on a `coaps` socket into CoAP messages in clear, each with the
//! peer's authenticated identity and a way to answer through its session.
//! It knows nothing of CoAP; the server handles what comes out of it as it
//! handles plain datagrams.
//!
//! - [`config`]: the `[coap.dtls]` section.
//! - [`context`]: the OpenSSL context (suites, keys, certificates, cookies).
//! - [`session`]: one peer's session, without I/O.
//! - [`listener`]: the socket, one task per session.

pub mod config;
pub mod context;
pub mod listener;
pub mod session;

pub use config::DtlsConfig;
