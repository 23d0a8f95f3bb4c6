//! The counters every adapter reports, the same names for every protocol:
//! bytes and messages in, events accepted, rejections by stage and reason,
//! events the core refused.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One adapter's counters; shared by value (`Arc`) with the core.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes received from devices.
    pub bytes_in: AtomicU64,
    /// Messages (datagrams, frames) received.
    pub messages_in: AtomicU64,
    /// Events the core accepted (durable).
    pub events_accepted: AtomicU64,
    /// Events the core refused (queue full, storage failure); the device was told to retry.
    pub events_refused: AtomicU64,
    /// Messages rejected, by `stage/reason` (for example `decode/malformed`).
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of [`Counters`], as published in health messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct CountersSnapshot {
    pub bytes_in: u64,
    pub messages_in: u64,
    pub events_accepted: u64,
    pub events_refused: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one rejected message under `stage/reason`.
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry(reason).or_insert(0) += 1;
        }
    }

    /// Rejections counted under `reason`.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            bytes_in: get(&self.bytes_in),
            messages_in: get(&self.messages_in),
            events_accepted: get(&self.events_accepted),
            events_refused: get(&self.events_refused),
            rejected: self.rejected.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}
