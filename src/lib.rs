//! Sluice: an edge gateway runtime. Adapters turn device traffic into
//! [`sluice_event::Event`]s, the queue keeps them durably, the uplink ships
//! them to the cloud over MQTT.

pub mod clock;
pub mod config;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod fn_test;
pub mod functions;
pub mod heartbeat;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod queue;
pub mod record;
pub mod runtime;
pub mod subject;
pub mod uplink;
pub use runtime::Runtime;
