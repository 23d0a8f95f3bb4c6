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

/// Where an adapter puts events. [`Sink::accept`] resolves when the events
/// are durable (and their functions have run), so an adapter acknowledges a
/// device only after that.
pub trait Sink: Clone + Send + Sync + 'static {
    /// Submits `events`; returns their ids once durable.
    fn accept(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send;
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
