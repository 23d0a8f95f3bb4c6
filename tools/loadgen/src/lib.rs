//! `sluice-loadgen`: the end-to-end benchmark of Sluice (BENCHMARKS.md, "End
//! to end"). A development tool, not shipped: a CoAP load generator with
//! batched system calls, a do-nothing CoAP sink, an MQTT subscriber that
//! counts every reading, a plain MQTT publisher, and the orchestrator that
//! runs them, mosquitto and the real `sluice run` binary as separate
//! processes.

pub mod cli;
pub mod e2e;
pub mod generator;
pub mod mqtt;
pub mod procfs;
pub mod reading;
pub mod sink;
pub mod stats;
pub mod tally;
pub mod udp;
pub mod wire;
