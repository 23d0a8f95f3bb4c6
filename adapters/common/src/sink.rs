//! The one way an adapter hands over events, and how it learns to stop.

use sluice_event::{Event, EventId};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// Why the core did not take a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The queue is full (`reject_new`) or the writer is busy: retry after a while.
    Busy {
        /// A sensible wait before retrying.
        retry_after: Duration,
    },
    /// The submission alone is larger than its queue stream may hold.
    TooLarge,
    /// Storage failed, or the core is shutting down.
    Unavailable,
}

/// A refused submission: the reason, the core's message, and the events back.
#[derive(Debug)]
pub struct Refusal {
    /// What the adapter should tell the device.
    pub reason: RefusalReason,
    /// The core's explanation, for logs.
    pub message: String,
    /// The events, unchanged except for ids, so nothing is lost.
    pub events: Vec<Event>,
}

/// An exchange with a device to remember with the events it produced: made
/// durable in the same transaction, so after a crash or restart a
/// retransmission of the request can be answered as the first copy was and
/// ingested no second time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// What identifies the request, in the adapter's own encoding (for CoAP:
    /// peer, message id and token). Unique within the adapter.
    pub key: Vec<u8>,
    /// The answer the device gets once the events are durable, and again
    /// for every retransmission.
    pub answer: Vec<u8>,
    /// When the exchange may be forgotten (ms since the Unix epoch).
    pub expires_ms: i64,
}

/// An exchange remembered by the core, as [`Sink::recall`] hands it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// The exchange as it was submitted.
    pub exchange: Exchange,
    /// The ids of the events it produced (their record ids upstream).
    pub events: Vec<EventId>,
}

/// The core could not read back the remembered exchanges.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot recall exchanges: {0}")]
pub struct RecallError(pub String);

/// One change to an adapter's durable state (for LoRaWAN: a device's
/// session and frame counters, a used DevNonce), committed in the same
/// transaction as the events it goes with, so that an answer sent after
/// the commit can never be contradicted by what a restart loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The entry, in the adapter's own encoding; unique within the adapter.
    pub key: Vec<u8>,
    /// The new value, or `None` to delete the entry.
    pub value: Option<Vec<u8>>,
}

/// One entry of an adapter's durable state, as [`Sink::load_state`] hands it back.
pub type StateEntry = (Vec<u8>, Vec<u8>);

/// Where an adapter puts events. [`Sink::accept`] resolves when the events
/// are durable (and their functions have run), so an adapter acknowledges a
/// device only after that.
pub trait Sink: Clone + Send + Sync + 'static {
    /// Submits `events`; returns their ids once durable.
    fn accept(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send;

    /// Like [`Sink::accept`], and remembers `exchange` in the same
    /// transaction as the events: either both are durable or neither is.
    /// A sink without memory only accepts the events.
    fn accept_once(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send {
        let _ = exchange;
        self.accept(events)
    }

    /// The unexpired exchanges this adapter submitted through
    /// [`Sink::accept_once`], at most `limit`, the newest, ordered by
    /// expiry (oldest first). A sink without memory has none.
    fn recall(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Remembered>, RecallError>> + Send {
        let _ = limit;
        std::future::ready(Ok(Vec::new()))
    }

    /// Like [`Sink::accept`], and applies `changes` to the adapter's durable
    /// state in the same transaction: either the events and the changes are
    /// durable or neither is. `events` may be empty (a state change alone).
    /// A sink without memory only accepts the events.
    fn accept_with_state(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send {
        let _ = changes;
        self.accept(events)
    }

    /// Every entry of this adapter's durable state, ordered by key. A sink
    /// without memory has none.
    fn load_state(&self) -> impl Future<Output = Result<Vec<StateEntry>, RecallError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

/// Tells adapters to stop: `true` once shutdown begins.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Wraps the core's shutdown channel.
    pub fn new(rx: watch::Receiver<bool>) -> Shutdown {
        Shutdown(rx)
    }

    /// A shutdown that never fires, for tests, and its trigger.
    pub fn manual() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once shutdown has begun.
    pub async fn wait(&mut self) {
        // An error means the sender is gone: that is a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has begun.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}
