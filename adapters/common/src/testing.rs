//! Test doubles next to the real types, so adapter tests need no core: a
//! [`Sink`] that keeps what it is given (and the exchanges to remember with
//! it, across runs of an adapter as the core's queue does) and can be told
//! to refuse, a
//! [`Context`] whose shutdown and downlinks the test holds, and waiting for
//! a condition with a deadline (never a fixed sleep), for adapter and
//! gateway tests alike.

use crate::adapter::{Context, EventSink};
use crate::counters::Counters;
use crate::downlink::{self, DownlinkSender};
use crate::sink::{
    Exchange, RecallError, Refusal, RefusalReason, Remembered, Shutdown, Sink, StateChange,
    StateEntry,
};
use sluice_event::{Event, EventId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Collects accepted events; refuses while [`CollectingSink::refuse`] is on.
#[derive(Clone, Debug, Default)]
pub struct CollectingSink {
    events: Arc<Mutex<Vec<Event>>>,
    refusing: Arc<Mutex<bool>>,
    next_id: Arc<AtomicU64>,
    exchanges: Arc<Mutex<Vec<Remembered>>>,
    state: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl CollectingSink {
    /// An empty sink that accepts everything.
    pub fn new() -> CollectingSink {
        CollectingSink::default()
    }

    /// Every event accepted so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// How many events were accepted.
    pub fn len(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing was accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every exchange remembered so far (expired ones too), in order.
    pub fn exchanges(&self) -> Vec<Remembered> {
        self.exchanges.lock().map(|x| x.clone()).unwrap_or_default()
    }

    /// The durable state as it stands (what [`Sink::load_state`] hands back).
    pub fn state(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// From now on refuse (`true`) or accept (`false`) submissions.
    pub fn refuse(&self, on: bool) {
        if let Ok(mut r) = self.refusing.lock() {
            *r = on;
        }
    }
}

impl Sink for CollectingSink {
    async fn accept(&self, mut events: Vec<Event>) -> Result<Vec<EventId>, Refusal> {
        if self.refusing.lock().map(|r| *r).unwrap_or(false) {
            return Err(Refusal {
                reason: RefusalReason::Busy {
                    retry_after: Duration::from_secs(1),
                },
                message: "refusing (test)".into(),
                events,
            });
        }
        let mut ids = Vec::with_capacity(events.len());
        for e in &mut events {
            if !e.id.is_set() {
                e.id = EventId::new(1, self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
            }
            ids.push(e.id);
        }
        if let Ok(mut all) = self.events.lock() {
            all.extend(events);
        }
        Ok(ids)
    }

    async fn accept_once(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> Result<Vec<EventId>, Refusal> {
        let ids = self.accept(events).await?;
        if let Ok(mut all) = self.exchanges.lock() {
            all.retain(|r| r.exchange.key != exchange.key);
            all.push(Remembered {
                exchange,
                events: ids.clone(),
            });
        }
        Ok(ids)
    }

    async fn recall(&self, limit: usize) -> Result<Vec<Remembered>, RecallError> {
        let now = crate::clock::now_ms();
        let mut live: Vec<Remembered> = self
            .exchanges
            .lock()
            .map_err(|_| RecallError("poisoned".into()))?
            .iter()
            .filter(|r| r.exchange.expires_ms > now)
            .cloned()
            .collect();
        live.sort_by_key(|r| r.exchange.expires_ms);
        let skip = live.len().saturating_sub(limit);
        Ok(live.split_off(skip))
    }

    async fn accept_with_state(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> Result<Vec<EventId>, Refusal> {
        let ids = self.accept(events).await?;
        if let Ok(mut state) = self.state.lock() {
            for change in changes {
                match change.value {
                    Some(value) => state.insert(change.key, value),
                    None => state.remove(&change.key),
                };
            }
        }
        Ok(ids)
    }

    async fn load_state(&self) -> Result<Vec<StateEntry>, RecallError> {
        let state = self
            .state
            .lock()
            .map_err(|_| RecallError("poisoned".into()))?;
        Ok(state.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// The test's side of a [`context`]: stop the adapter, send it downlinks,
/// read its counters.
#[derive(Debug)]
pub struct Controls {
    /// Fires the adapter's shutdown when set to `true`.
    pub stop: tokio::sync::watch::Sender<bool>,
    /// Sends downlinks to the adapter.
    pub downlinks: DownlinkSender,
    /// The adapter's counters.
    pub counters: Arc<Counters>,
}

/// A run context over `sink`, with fresh counters, and its controls.
pub fn context<S: Sink>(sink: S) -> (Context, Controls) {
    let (stop, shutdown) = Shutdown::manual();
    let (tx, rx) = downlink::channel();
    let counters = Arc::new(Counters::default());
    let context = Context {
        sink: EventSink::new(sink),
        counters: counters.clone(),
        shutdown,
        downlinks: rx,
    };
    (
        context,
        Controls {
            stop,
            downlinks: tx,
            counters,
        },
    )
}

/// How often a waited-for condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Checks `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for code outside a runtime (or that must not yield):
/// blocks the thread between checks.
pub fn wait_until_blocking<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}
