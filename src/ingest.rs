//! The one way events enter the core: [`Ingest::submit`] hands events to the
//! queue writer and returns a [`Receipt`] that resolves when they are durable
//! (or refused). Adapters never see SQLite.

use crate::queue::writer::Command;
use sluice_event::{Event, EventId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Why events were not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The stream is full and its overflow policy is `reject_new`: slow down and retry.
    #[error("queue stream `{stream}` is full")]
    QueueFull {
        /// The full stream.
        stream: String,
    },
    /// The submission alone is larger than the stream's bounds.
    #[error("submission of {bytes} bytes does not fit stream `{stream}` even when empty")]
    TooLarge {
        /// The stream it was routed to.
        stream: String,
        /// Encoded size of the submission's events for that stream.
        bytes: u64,
    },
    /// The writer's inbox is full (only from [`Ingest::try_submit`]).
    #[error("queue writer is busy")]
    Busy,
    /// The database refused the transaction (disk full, I/O error, …).
    #[error("queue storage failed: {0}")]
    Storage(String),
    /// The writer has shut down.
    #[error("queue is closed")]
    Closed,
}

/// A refused submission: the reason, and the events handed back so the caller loses nothing.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: IngestError,
    /// The events that were submitted, unchanged except for their ids.
    pub events: Vec<Event>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} events handed back)",
            self.error,
            self.events.len()
        )
    }
}

impl std::error::Error for Rejected {}

/// Mints gateway-unique event ids: this boot's number and a sequence.
#[derive(Debug)]
pub(crate) struct IdMint {
    boot: u32,
    next: AtomicU64,
}

impl IdMint {
    pub(crate) fn new(boot: u32) -> IdMint {
        IdMint {
            boot,
            next: AtomicU64::new(1),
        }
    }

    fn mint(&self) -> EventId {
        EventId::new(self.boot, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Handle for submitting events; cheap to clone, one per producer.
#[derive(Clone, Debug)]
pub struct Ingest {
    tx: mpsc::Sender<Command>,
    ids: Arc<IdMint>,
}

/// Resolves when the submitted events are durable, or says why they are not.
#[derive(Debug)]
#[must_use = "a receipt says whether the events were accepted"]
pub struct Receipt {
    ids: Vec<EventId>,
    reply: oneshot::Receiver<Result<(), Rejected>>,
}

impl Receipt {
    /// The ids given to the submitted events, in order (also their trace ids).
    pub fn ids(&self) -> &[EventId] {
        &self.ids
    }

    /// Waits until the events are committed; returns their ids.
    pub async fn durable(self) -> Result<Vec<EventId>, Rejected> {
        match self.reply.await {
            Ok(Ok(())) => Ok(self.ids),
            Ok(Err(rejected)) => Err(rejected),
            Err(_) => Err(Rejected {
                error: IngestError::Closed,
                events: Vec::new(),
            }),
        }
    }
}

impl Ingest {
    pub(crate) fn new(tx: mpsc::Sender<Command>, ids: Arc<IdMint>) -> Ingest {
        Ingest { tx, ids }
    }

    /// Gives each event without an id a fresh one (events that already carry
    /// an id keep it), then queues the submission for the next group commit.
    /// Waits while the writer is busy: that wait is the back-pressure.
    pub async fn submit(&self, events: Vec<Event>) -> Result<Receipt, Rejected> {
        let (command, receipt) = self.prepare(events);
        self.tx.send(command).await.map_err(|e| closed(e.0))?;
        Ok(receipt)
    }

    /// Like [`Ingest::submit`], but fails at once with the events handed back
    /// when the writer's inbox is full.
    pub fn try_submit(&self, events: Vec<Event>) -> Result<Receipt, Rejected> {
        let (command, receipt) = self.prepare(events);
        self.tx.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(c) => match c {
                Command::Insert { events, .. } => Rejected {
                    error: IngestError::Busy,
                    events,
                },
                _ => closed(c),
            },
            mpsc::error::TrySendError::Closed(c) => closed(c),
        })?;
        Ok(receipt)
    }

    fn prepare(&self, mut events: Vec<Event>) -> (Command, Receipt) {
        let mut ids = Vec::with_capacity(events.len());
        for event in &mut events {
            if !event.id.is_set() {
                event.id = self.ids.mint();
            }
            tracing::debug!(event_id = %event.id, subject = %event.subject, "Event submitted");
            ids.push(event.id);
        }
        let (tx, rx) = oneshot::channel();
        (
            Command::Insert { events, reply: tx },
            Receipt { ids, reply: rx },
        )
    }
}

fn closed(command: Command) -> Rejected {
    let events = match command {
        Command::Insert { events, .. } => events,
        _ => Vec::new(),
    };
    Rejected {
        error: IngestError::Closed,
        events,
    }
}
