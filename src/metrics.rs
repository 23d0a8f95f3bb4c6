//! Process-wide counters of the pipeline, shared by value (an `Arc`) between
//! the parts that move them; no global statics.

use serde::Serialize;
use sluice_adapter_common::Counters;
use sluice_adapter_common::counters::CountersSnapshot;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a function call failed. Each kind has its own counter, so health
/// tells a runaway loop (fuel) from a guest panic (trap) from bad output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A trap other than fuel or memory: `unreachable` (a guest panic), an
    /// out-of-bounds access, a division by zero, …
    Trap,
    /// The call used up its fuel.
    Fuel,
    /// The instance reached its memory cap.
    Memory,
    /// The call emitted more events or bytes than its caps allow.
    EmitCap,
    /// The call emitted something that is not a valid event.
    BadOutput,
    /// The entry point (or init) returned a non-zero code.
    NonZeroReturn,
    /// The module broke the function ABI otherwise: a missing export, another
    /// ABI version, a bad buffer from its allocator.
    Abi,
    /// Outputs fed on to functions went deeper than the chain limit.
    ChainTooDeep,
}

impl FailureKind {
    /// Every kind, in counter order.
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Trap,
        FailureKind::Fuel,
        FailureKind::Memory,
        FailureKind::EmitCap,
        FailureKind::BadOutput,
        FailureKind::NonZeroReturn,
        FailureKind::Abi,
        FailureKind::ChainTooDeep,
    ];
}

/// Counters every part of the core updates; read by health messages and tests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events committed to the queue.
    pub queue_accepted: AtomicU64,
    /// Events refused because their stream was full (`reject_new`).
    pub queue_rejected: AtomicU64,
    /// Records deleted to make room (`drop_oldest`).
    pub queue_dropped: AtomicU64,
    /// Records deleted because their TTL passed.
    pub queue_expired: AtomicU64,
    /// Group-commit transactions.
    pub queue_commits: AtomicU64,
    /// Transactions that failed (storage errors); their submissions were refused.
    pub queue_storage_errors: AtomicU64,
    /// Records currently queued.
    pub queue_records: AtomicU64,
    /// Bytes of encoded events currently queued.
    pub queue_bytes: AtomicU64,
    /// Batches handed to the MQTT client.
    pub uplink_batches_sent: AtomicU64,
    /// Batches the broker acknowledged.
    pub uplink_batches_acked: AtomicU64,
    /// Records deleted after their batch was acknowledged.
    pub uplink_records_acked: AtomicU64,
    /// Batches lost by the connection and sent again.
    pub uplink_batches_resent: AtomicU64,
    /// Successful connections (CONNACK).
    pub uplink_connects: AtomicU64,
    /// Failed connection attempts and dropped connections.
    pub uplink_connection_errors: AtomicU64,
    /// Records that could not be decoded and were dead-lettered by the uplink.
    pub uplink_undecodable: AtomicU64,
    /// Function calls made (events and ticks).
    pub functions_calls: AtomicU64,
    /// Function calls that failed, of every kind (see [`Metrics::function_failed`]).
    pub functions_failed: AtomicU64,
    /// Failed function calls per [`FailureKind`], in the order of [`FailureKind::ALL`].
    functions_failed_by: [AtomicU64; FailureKind::ALL.len()],
    /// Events emitted by functions.
    pub functions_emitted: AtomicU64,
    /// Functions currently suspended (a gauge).
    pub functions_suspended: AtomicU64,
    /// Inputs written to the dead-letter table.
    pub dead_letters: AtomicU64,
    /// Device events neither taken by a function nor queued (`forward = "none"`).
    pub pipeline_discarded: AtomicU64,
    /// When the process started, ms since the Unix epoch (set by the runtime).
    pub started_ms: std::sync::atomic::AtomicI64,
    /// Commands run (remote and local).
    pub control_commands: AtomicU64,
    /// Remote commands refused (unsigned, bad signature, unknown key, stale,
    /// replayed, not permitted).
    pub control_refused: AtomicU64,
    /// Remote commands dropped because the controller was busy.
    pub control_dropped: AtomicU64,
    /// Each running adapter's counters, by adapter name.
    adapters: Mutex<BTreeMap<&'static str, Arc<Counters>>>,
    /// Each function's counters, by function name.
    functions: Mutex<BTreeMap<String, Arc<FunctionCounters>>>,
    /// The newest errors worth an operator's eye, oldest first.
    last_errors: Mutex<std::collections::VecDeque<LastError>>,
    /// The SHA-256 of the running config's text.
    config_hash: Mutex<String>,
}

/// How many errors [`Metrics::note_error`] keeps.
pub const LAST_ERRORS: usize = 10;

/// One function's counters.
#[derive(Debug, Default)]
pub struct FunctionCounters {
    /// Calls made (events and ticks).
    pub calls: AtomicU64,
    /// Calls that failed.
    pub failed: AtomicU64,
    /// Events emitted.
    pub emitted: AtomicU64,
}

/// A point-in-time copy of [`FunctionCounters`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct FunctionSnapshot {
    pub calls: u64,
    pub failed: u64,
    pub emitted: u64,
}

/// An error kept for health messages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastError {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// What.
    pub message: String,
}

/// A point-in-time copy of [`Metrics`], as published in health messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct MetricsSnapshot {
    pub queue_accepted: u64,
    pub queue_rejected: u64,
    pub queue_dropped: u64,
    pub queue_expired: u64,
    pub queue_commits: u64,
    pub queue_storage_errors: u64,
    pub queue_records: u64,
    pub queue_bytes: u64,
    pub uplink_batches_sent: u64,
    pub uplink_batches_acked: u64,
    pub uplink_records_acked: u64,
    pub uplink_batches_resent: u64,
    pub uplink_connects: u64,
    pub uplink_connection_errors: u64,
    pub uplink_undecodable: u64,
    pub functions_calls: u64,
    pub functions_failed: u64,
    /// Failed function calls by kind; every kind is present.
    pub functions_failed_by: BTreeMap<FailureKind, u64>,
    pub functions_emitted: u64,
    pub functions_suspended: u64,
    pub dead_letters: u64,
    pub pipeline_discarded: u64,
    pub control_commands: u64,
    pub control_refused: u64,
    pub control_dropped: u64,
    /// Per adapter: bytes and messages in, events accepted and refused, rejections by reason.
    pub adapters: BTreeMap<&'static str, CountersSnapshot>,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failed function call: the total and its kind's counter.
    pub fn function_failed(&self, kind: FailureKind) {
        Metrics::add(&self.functions_failed, 1);
        Metrics::add(&self.functions_failed_by[kind as usize], 1);
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            queue_accepted: get(&self.queue_accepted),
            queue_rejected: get(&self.queue_rejected),
            queue_dropped: get(&self.queue_dropped),
            queue_expired: get(&self.queue_expired),
            queue_commits: get(&self.queue_commits),
            queue_storage_errors: get(&self.queue_storage_errors),
            queue_records: get(&self.queue_records),
            queue_bytes: get(&self.queue_bytes),
            uplink_batches_sent: get(&self.uplink_batches_sent),
            uplink_batches_acked: get(&self.uplink_batches_acked),
            uplink_records_acked: get(&self.uplink_records_acked),
            uplink_batches_resent: get(&self.uplink_batches_resent),
            uplink_connects: get(&self.uplink_connects),
            uplink_connection_errors: get(&self.uplink_connection_errors),
            uplink_undecodable: get(&self.uplink_undecodable),
            functions_calls: get(&self.functions_calls),
            functions_failed: get(&self.functions_failed),
            functions_failed_by: FailureKind::ALL
                .iter()
                .zip(&self.functions_failed_by)
                .map(|(kind, c)| (*kind, get(c)))
                .collect(),
            functions_emitted: get(&self.functions_emitted),
            functions_suspended: get(&self.functions_suspended),
            dead_letters: get(&self.dead_letters),
            pipeline_discarded: get(&self.pipeline_discarded),
            control_commands: get(&self.control_commands),
            control_refused: get(&self.control_refused),
            control_dropped: get(&self.control_dropped),
            adapters: self
                .adapters
                .lock()
                .map(|a| a.iter().map(|(k, c)| (*k, c.snapshot())).collect())
                .unwrap_or_default(),
        }
    }

    /// The counters of function `name`, created on first use.
    pub fn function(&self, name: &str) -> Arc<FunctionCounters> {
        match self.functions.lock() {
            Ok(mut f) => f.entry(name.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Every function's counters, by name.
    pub fn functions(&self) -> BTreeMap<String, FunctionSnapshot> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.functions
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(k, c)| {
                        let s = FunctionSnapshot {
                            calls: get(&c.calls),
                            failed: get(&c.failed),
                            emitted: get(&c.emitted),
                        };
                        (k.clone(), s)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keeps `message` among the last [`LAST_ERRORS`] errors.
    pub fn note_error(&self, message: String) {
        if let Ok(mut errors) = self.last_errors.lock() {
            if errors.len() == LAST_ERRORS {
                errors.pop_front();
            }
            errors.push_back(LastError {
                at_ms: crate::clock::now_ms(),
                message,
            });
        }
    }

    /// The last errors, oldest first.
    pub fn last_errors(&self) -> Vec<LastError> {
        self.last_errors
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Seconds since the runtime started.
    pub fn uptime_s(&self) -> u64 {
        let started = self.started_ms.load(Ordering::Relaxed);
        ((crate::clock::now_ms() - started).max(0) / 1000) as u64
    }

    /// Sets the running config's hash (status messages carry it).
    pub fn set_config_hash(&self, hash: &str) {
        if let Ok(mut h) = self.config_hash.lock() {
            *h = hash.to_owned();
        }
    }

    /// The running config's hash; empty before control set it.
    pub fn config_hash(&self) -> String {
        self.config_hash
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The counters of adapter `name`, created on first use.
    pub fn adapter(&self, name: &'static str) -> Arc<Counters> {
        match self.adapters.lock() {
            Ok(mut a) => a.entry(name).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_kind_moves_its_own_counter_and_the_total() {
        for (i, kind) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "ALL is in declaration order");
        }
        let m = Metrics::default();
        m.function_failed(FailureKind::Fuel);
        m.function_failed(FailureKind::Fuel);
        m.function_failed(FailureKind::NonZeroReturn);
        let s = m.snapshot();
        assert_eq!(s.functions_failed, 3);
        assert_eq!(s.functions_failed_by.len(), FailureKind::ALL.len());
        assert_eq!(s.functions_failed_by[&FailureKind::Fuel], 2);
        assert_eq!(s.functions_failed_by[&FailureKind::NonZeroReturn], 1);
        assert_eq!(s.functions_failed_by[&FailureKind::Trap], 0);
        let json = serde_json::to_value(&s).expect("serializes");
        assert_eq!(json["functions_failed_by"]["non_zero_return"], 1);
        assert_eq!(json["functions_failed_by"]["emit_cap"], 0);
    }
}
