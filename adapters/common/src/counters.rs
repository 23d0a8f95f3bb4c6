//! The counters every adapter reports, the same names for every protocol:
//! bytes and messages in, events accepted, rejections by stage and reason,
//! events the core refused. A rejection is a typed value: each adapter
//! names its reasons in an enum that implements [`Rejection`], so a
//! counter cannot be misspelled and every reason has its own counter.
//! Adapters that poll devices (Modbus) also count faults per device, and
//! adapters fed by other gateways (LoRaWAN concentrators) keep each peer's
//! latest status figures.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where on the way from the wire to the queue a message was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The datagram or frame itself: malformed, truncated, too large.
    Receive,
    /// The payload: an unknown or broken format.
    Decode,
    /// The sender could not be trusted: bad MIC, bad signature, unknown key.
    Authenticate,
    /// Where it was going: unknown path or device, not allowed, over its rate.
    Route,
    /// The protocol's exchange: a duplicate, a replay, a stray or stale answer.
    Exchange,
    /// The device answered with an error.
    Device,
    /// The core could not take it (backlog full).
    Ingest,
}

impl Stage {
    /// The stage's name in counters: `receive`, `decode`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Receive => "receive",
            Stage::Decode => "decode",
            Stage::Authenticate => "authenticate",
            Stage::Route => "route",
            Stage::Exchange => "exchange",
            Stage::Device => "device",
            Stage::Ingest => "ingest",
        }
    }
}

/// A reason an adapter rejects a message: an enum per adapter, each variant
/// a counter of its own.
pub trait Rejection: Copy {
    /// The stage it happened in.
    fn stage(self) -> Stage;
    /// The reason in kebab case, unique within its stage (`malformed`, `bad-mic`).
    fn reason(self) -> &'static str;
    /// The counter's key: `stage/reason`.
    fn key(self) -> String {
        format!("{}/{}", self.stage().as_str(), self.reason())
    }
}

/// Counts keyed by stage and reason.
type ByReason = BTreeMap<(Stage, &'static str), u64>;

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
    /// Times the adapter failed while running and was restarted.
    pub restarts: AtomicU64,
    /// Messages rejected, by stage and reason.
    rejected: Mutex<ByReason>,
    /// Faults by device, then stage and reason (polling adapters).
    devices: Mutex<BTreeMap<String, ByReason>>,
    /// The latest figures each peer reported about itself.
    peers: Mutex<BTreeMap<String, Figures>>,
}

/// A peer's status figures by name (`rx_ok`, `ack_ratio`, …).
pub type Figures = BTreeMap<&'static str, f64>;

/// A copy of [`Counters`], as published in health messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CountersSnapshot {
    /// Bytes received from devices.
    pub bytes_in: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Events the core accepted.
    pub events_accepted: u64,
    /// Events the core refused.
    pub events_refused: u64,
    /// Times the adapter failed and was restarted.
    pub restarts: u64,
    /// By `stage/reason` (for example `decode/malformed`).
    pub rejected: BTreeMap<String, u64>,
    /// Faults by device, then `stage/reason` (only adapters that poll devices).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, BTreeMap<String, u64>>,
    /// The latest status figures by peer (only adapters fed by other gateways).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<String, Figures>,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one rejected message.
    pub fn reject(&self, why: impl Rejection) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry((why.stage(), why.reason())).or_insert(0) += 1;
        }
    }

    /// Counts one fault of `device`: under the device and, like
    /// [`Counters::reject`], for the adapter.
    pub fn fault(&self, device: &str, why: impl Rejection) {
        self.reject(why);
        if let Ok(mut map) = self.devices.lock() {
            let faults = match map.get_mut(device) {
                Some(f) => f,
                None => map.entry(device.to_owned()).or_default(),
            };
            *faults.entry((why.stage(), why.reason())).or_insert(0) += 1;
        }
    }

    /// Replaces what `peer` last reported about itself.
    pub fn report(&self, peer: &str, figures: Figures) {
        if let Ok(mut map) = self.peers.lock() {
            map.insert(peer.to_owned(), figures);
        }
    }

    /// Drops what `peer` reported (it is gone).
    pub fn forget(&self, peer: &str) {
        if let Ok(mut map) = self.peers.lock() {
            map.remove(peer);
        }
    }

    /// Faults counted for `why` of `device`.
    pub fn faults(&self, device: &str, why: impl Rejection) -> u64 {
        self.devices
            .lock()
            .map(|m| {
                m.get(device)
                    .and_then(|f| f.get(&(why.stage(), why.reason())))
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Rejections counted for `why`.
    pub fn rejected(&self, why: impl Rejection) -> u64 {
        self.rejected
            .lock()
            .map(|m| m.get(&(why.stage(), why.reason())).copied().unwrap_or(0))
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
            restarts: get(&self.restarts),
            rejected: self
                .rejected
                .lock()
                .map(|m| {
                    m.iter()
                        .map(|((stage, reason), n)| (format!("{}/{reason}", stage.as_str()), *n))
                        .collect()
                })
                .unwrap_or_default(),
            devices: self
                .devices
                .lock()
                .map(|m| {
                    m.iter()
                        .map(|(device, faults)| {
                            let faults = faults
                                .iter()
                                .map(|((stage, reason), n)| {
                                    (format!("{}/{reason}", stage.as_str()), *n)
                                })
                                .collect();
                            (device.clone(), faults)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            peers: self.peers.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    enum Why {
        Malformed,
        BadMic,
    }

    impl Rejection for Why {
        fn stage(self) -> Stage {
            match self {
                Why::Malformed => Stage::Receive,
                Why::BadMic => Stage::Authenticate,
            }
        }
        fn reason(self) -> &'static str {
            match self {
                Why::Malformed => "malformed",
                Why::BadMic => "bad-mic",
            }
        }
    }

    #[test]
    fn each_rejection_has_its_own_counter_keyed_stage_slash_reason() {
        let c = Counters::default();
        c.reject(Why::BadMic);
        c.reject(Why::BadMic);
        c.reject(Why::Malformed);
        assert_eq!(c.rejected(Why::BadMic), 2);
        assert_eq!(c.rejected(Why::Malformed), 1);
        let snapshot = c.snapshot();
        assert_eq!(snapshot.rejected["authenticate/bad-mic"], 2);
        assert_eq!(snapshot.rejected["receive/malformed"], 1);
        assert_eq!(Why::BadMic.key(), "authenticate/bad-mic");
        assert!(snapshot.devices.is_empty());
    }

    #[test]
    fn faults_count_per_device_and_for_the_adapter() {
        let c = Counters::default();
        c.fault("meter-1", Why::Malformed);
        c.fault("meter-1", Why::Malformed);
        c.fault("meter-2", Why::BadMic);
        assert_eq!(c.faults("meter-1", Why::Malformed), 2);
        assert_eq!(c.faults("meter-2", Why::Malformed), 0);
        assert_eq!(c.rejected(Why::Malformed), 2);
        let snapshot = c.snapshot();
        assert_eq!(snapshot.devices["meter-1"]["receive/malformed"], 2);
        assert_eq!(snapshot.devices["meter-2"]["authenticate/bad-mic"], 1);
    }

    #[test]
    fn a_peer_report_replaces_the_last_and_is_dropped_when_forgotten() {
        let c = Counters::default();
        c.report(
            "gw-1",
            Figures::from([("rx_ok", 3.0), ("ack_ratio", 100.0)]),
        );
        c.report("gw-1", Figures::from([("rx_ok", 5.0)]));
        c.report("gw-2", Figures::from([("rx_ok", 1.0)]));
        let snapshot = c.snapshot();
        assert_eq!(snapshot.peers["gw-1"], Figures::from([("rx_ok", 5.0)]));
        assert_eq!(snapshot.peers.len(), 2);
        c.forget("gw-2");
        let json = serde_json::to_value(c.snapshot()).expect("serialises");
        assert_eq!(json["peers"]["gw-1"]["rx_ok"], 5.0);
        assert!(json["peers"].get("gw-2").is_none());
        assert!(
            serde_json::to_value(Counters::default().snapshot())
                .expect("serialises")
                .get("peers")
                .is_none()
        );
    }
}
