//! The one way events enter the core: [`Ingest::submit`] hands events to the
//! queue writer and returns a [`Receipt`] that resolves when they are durable
//! (or refused). Adapters never see SQLite. An adapter may have an
//! exchange remembered with its events ([`Sink::accept_once`]) and read the
//! unexpired ones back when it starts ([`Sink::recall`]).

use crate::config::StreamConfig;
use crate::ids::IdMint;
use crate::subject::SubjectPattern;
use sluice_adapter_common::{
    Exchange, RecallError, Refusal, RefusalReason, Remembered, Sink, StateChange, StateEntry,
};
use sluice_event::{Event, EventId};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What a storage failure was, kept whole (SQLite's error, for the queue)
/// without this module knowing the storage's types.
pub type StorageError = Arc<dyn std::error::Error + Send + Sync>;

/// Why events were not accepted.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// No stream takes the subject. `sluice check` demands a catch-all
    /// stream, so only a config built in code gets here.
    #[error("no queue stream takes subject `{subject}`")]
    NoStream {
        /// The first subject that had nowhere to go.
        subject: String,
    },
    /// The database refused the transaction (disk full, I/O error, …).
    #[error("queue storage failed: {0}")]
    Storage(#[source] StorageError),
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

/// Picks each event's stream: the first configured stream whose subject
/// patterns match. Shared by all producers, so routing and encoding happen on
/// their tasks and the writer thread only writes.
#[derive(Debug)]
pub(crate) struct Router {
    streams: Vec<(String, Vec<SubjectPattern>)>,
}

impl Router {
    pub(crate) fn new(streams: &[StreamConfig]) -> Router {
        Router {
            streams: streams
                .iter()
                .map(|s| (s.name.clone(), s.subjects.clone()))
                .collect(),
        }
    }

    pub(crate) fn route(&self, subject: &str) -> Option<usize> {
        self.streams
            .iter()
            .position(|(_, patterns)| patterns.iter().any(|p| p.matches(subject)))
    }
}

/// One event ready for the writer: its stream's index and its encoding.
pub(crate) type EncodedRow = (usize, Vec<u8>);

/// A producer's events, routed and encoded, and where to say how they fared:
/// what the queue writer takes from producers.
#[derive(Debug)]
pub(crate) struct Submission {
    /// The events, in submission order.
    pub(crate) rows: Vec<EncodedRow>,
    /// An exchange to store in the same transaction, if the rows are accepted.
    pub(crate) exchange: Option<ExchangeRow>,
    /// Changes to the adapter's durable state, applied in the same
    /// transaction if the rows are accepted.
    pub(crate) state: Option<StateRows>,
    /// Answered once the rows are committed, or refused.
    pub(crate) reply: oneshot::Sender<Result<(), IngestError>>,
}

/// An adapter's exchange as the writer stores it with the submission's rows.
#[derive(Debug)]
pub(crate) struct ExchangeRow {
    /// The adapter that submitted it: keys are unique per adapter.
    pub(crate) adapter: &'static str,
    /// Key, answer and expiry.
    pub(crate) exchange: Exchange,
    /// The ids of the submitted events.
    pub(crate) events: Vec<EventId>,
}

/// An adapter's state changes as the writer applies them with the submission's rows.
#[derive(Debug)]
pub(crate) struct StateRows {
    /// Whose state: keys are unique per adapter.
    pub(crate) adapter: &'static str,
    /// In order; a later change to a key wins.
    pub(crate) changes: Vec<StateChange>,
}

/// A request for an adapter's durable state, answered by the writer after
/// what was submitted before it commits.
#[derive(Debug)]
pub(crate) struct LoadState {
    /// Whose state.
    pub(crate) adapter: &'static str,
    /// Every entry, ordered by key, or what storage said.
    pub(crate) reply: oneshot::Sender<Result<Vec<StateEntry>, StorageError>>,
}

/// A request for an adapter's unexpired exchanges, answered by the writer.
#[derive(Debug)]
pub(crate) struct Recall {
    /// Whose exchanges.
    pub(crate) adapter: &'static str,
    /// At most this many, the newest.
    pub(crate) limit: usize,
    /// The exchanges, ordered by expiry, or what storage said.
    pub(crate) reply: oneshot::Sender<Result<Vec<Remembered>, StorageError>>,
}

/// What producers send the queue writer, on one bounded channel.
#[derive(Debug)]
pub(crate) enum Intake {
    /// Events to commit.
    Submit(Submission),
    /// Exchanges to read back.
    Recall(Recall),
    /// Adapter state to read back.
    LoadState(LoadState),
}

/// Handle for submitting events; cheap to clone, one per producer.
#[derive(Clone, Debug)]
pub struct Ingest {
    tx: mpsc::Sender<Intake>,
    ids: Arc<IdMint>,
    router: Arc<Router>,
    /// Whose exchanges this handle stores and recalls (see [`Ingest::for_adapter`]).
    adapter: &'static str,
}

/// Resolves when the submitted events are durable, or says why they are not.
#[derive(Debug)]
#[must_use = "a receipt says whether the events were accepted"]
pub struct Receipt {
    ids: Vec<EventId>,
    /// Kept until the commit, to be handed back if the writer refuses them.
    events: Vec<Event>,
    reply: oneshot::Receiver<Result<(), IngestError>>,
}

impl Receipt {
    /// The ids given to the submitted events, in order (also their trace ids).
    pub fn ids(&self) -> &[EventId] {
        &self.ids
    }

    /// Waits until the events are committed; returns their ids.
    pub async fn durable(self) -> Result<Vec<EventId>, Rejected> {
        let error = match self.reply.await {
            Ok(Ok(())) => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    for id in &self.ids {
                        tracing::debug!(event_id = %id, "Event queued");
                    }
                }
                return Ok(self.ids);
            }
            Ok(Err(error)) => error,
            Err(_) => IngestError::Closed,
        };
        tracing::debug!(error = %error, events = self.events.len(), "Submission refused");
        Err(Rejected {
            error,
            events: self.events,
        })
    }
}

impl Ingest {
    pub(crate) fn new(tx: mpsc::Sender<Intake>, ids: Arc<IdMint>, router: Arc<Router>) -> Ingest {
        Ingest {
            tx,
            ids,
            router,
            adapter: "",
        }
    }

    /// The same handle for adapter `name`: the exchanges it remembers and
    /// recalls are its own. (A handle from [`crate::Runtime::ingest`] has
    /// the empty name.)
    pub fn for_adapter(&self, name: &'static str) -> Ingest {
        Ingest {
            adapter: name,
            ..self.clone()
        }
    }

    /// Gives each event without an id a fresh one (events that already carry
    /// an id keep it), then queues the submission for the next group commit.
    /// Waits while the writer is busy: that wait is the back-pressure.
    pub async fn submit(&self, events: Vec<Event>) -> Result<Receipt, Rejected> {
        self.submit_with(events, None).await
    }

    /// Like [`Ingest::submit`], and stores `exchange` in the same
    /// transaction as the events, under this handle's adapter; a refused
    /// submission stores nothing.
    pub async fn submit_once(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> Result<Receipt, Rejected> {
        self.submit_with(events, Some(exchange)).await
    }

    /// Like [`Ingest::submit`], and applies `changes` to this handle's
    /// adapter state in the same transaction; a refused submission changes
    /// nothing. `events` may be empty.
    pub async fn submit_with_state(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> Result<Receipt, Rejected> {
        let (mut submission, receipt) = self.prepare(events)?;
        submission.state = Some(StateRows {
            adapter: self.adapter,
            changes,
        });
        match self.tx.send(Intake::Submit(submission)).await {
            Ok(()) => Ok(receipt),
            Err(_) => Err(receipt.refuse(IngestError::Closed)),
        }
    }

    /// This handle's adapter state, every entry, ordered by key.
    pub async fn state(&self) -> Result<Vec<StateEntry>, IngestError> {
        let (reply, rx) = oneshot::channel();
        let load = LoadState {
            adapter: self.adapter,
            reply,
        };
        self.tx
            .send(Intake::LoadState(load))
            .await
            .map_err(|_| IngestError::Closed)?;
        match rx.await {
            Ok(Ok(entries)) => Ok(entries),
            Ok(Err(error)) => Err(IngestError::Storage(error)),
            Err(_) => Err(IngestError::Closed),
        }
    }

    async fn submit_with(
        &self,
        events: Vec<Event>,
        exchange: Option<Exchange>,
    ) -> Result<Receipt, Rejected> {
        let (mut submission, receipt) = self.prepare(events)?;
        submission.exchange = exchange.map(|exchange| ExchangeRow {
            adapter: self.adapter,
            exchange,
            events: receipt.ids.clone(),
        });
        match self.tx.send(Intake::Submit(submission)).await {
            Ok(()) => Ok(receipt),
            Err(_) => Err(receipt.refuse(IngestError::Closed)),
        }
    }

    /// The unexpired exchanges stored under this handle's adapter, at most
    /// `limit` (the newest), ordered by expiry.
    pub async fn remembered(&self, limit: usize) -> Result<Vec<Remembered>, IngestError> {
        let (reply, rx) = oneshot::channel();
        let recall = Recall {
            adapter: self.adapter,
            limit,
            reply,
        };
        self.tx
            .send(Intake::Recall(recall))
            .await
            .map_err(|_| IngestError::Closed)?;
        match rx.await {
            Ok(Ok(remembered)) => Ok(remembered),
            Ok(Err(error)) => Err(IngestError::Storage(error)),
            Err(_) => Err(IngestError::Closed),
        }
    }

    /// Like [`Ingest::submit`], but fails at once with the events handed back
    /// when the writer's inbox is full.
    pub fn try_submit(&self, events: Vec<Event>) -> Result<Receipt, Rejected> {
        let (submission, receipt) = self.prepare(events)?;
        match self.tx.try_send(Intake::Submit(submission)) {
            Ok(()) => Ok(receipt),
            Err(mpsc::error::TrySendError::Full(_)) => Err(receipt.refuse(IngestError::Busy)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(receipt.refuse(IngestError::Closed)),
        }
    }

    /// Mints ids, routes and encodes: everything that need not happen on the writer thread.
    fn prepare(&self, mut events: Vec<Event>) -> Result<(Submission, Receipt), Rejected> {
        let mut ids = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        let mut unrouted = None;
        for event in &mut events {
            if !event.id.is_set() {
                event.id = self.ids.mint();
            }
            tracing::debug!(event_id = %event.id, subject = %event.subject, "Event submitted");
            ids.push(event.id);
            match self.router.route(&event.subject) {
                Some(stream) => rows.push((stream, event.encode())),
                None if unrouted.is_none() => unrouted = Some(event.subject.clone()),
                None => {}
            }
        }
        if let Some(subject) = unrouted {
            return Err(Rejected {
                error: IngestError::NoStream { subject },
                events,
            });
        }
        let (tx, rx) = oneshot::channel();
        let receipt = Receipt {
            ids,
            events,
            reply: rx,
        };
        let submission = Submission {
            rows,
            exchange: None,
            state: None,
            reply: tx,
        };
        Ok((submission, receipt))
    }
}

impl Receipt {
    fn refuse(self, error: IngestError) -> Rejected {
        Rejected {
            error,
            events: self.events,
        }
    }
}

/// Adapters hand events to the core through [`Sink`]: submit, then wait
/// until durable; a refusal hands the events back with what to tell the device.
impl Sink for Ingest {
    async fn accept(&self, events: Vec<Event>) -> Result<Vec<EventId>, Refusal> {
        durable(self.submit(events).await).await
    }

    async fn accept_once(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> Result<Vec<EventId>, Refusal> {
        durable(self.submit_once(events, exchange).await).await
    }

    async fn recall(&self, limit: usize) -> Result<Vec<Remembered>, RecallError> {
        self.remembered(limit)
            .await
            .map_err(|e| RecallError(e.to_string()))
    }

    async fn accept_with_state(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> Result<Vec<EventId>, Refusal> {
        durable(self.submit_with_state(events, changes).await).await
    }

    async fn load_state(&self) -> Result<Vec<StateEntry>, RecallError> {
        self.state().await.map_err(|e| RecallError(e.to_string()))
    }
}

/// Waits for a submission to be durable; a refusal says what to tell the device.
async fn durable(submitted: Result<Receipt, Rejected>) -> Result<Vec<EventId>, Refusal> {
    let rejected = match submitted {
        Ok(receipt) => match receipt.durable().await {
            Ok(ids) => return Ok(ids),
            Err(rejected) => rejected,
        },
        Err(rejected) => rejected,
    };
    let reason = match rejected.error {
        IngestError::QueueFull { .. } | IngestError::Busy => RefusalReason::Busy {
            retry_after: RETRY_AFTER,
        },
        IngestError::TooLarge { .. } => RefusalReason::TooLarge,
        IngestError::NoStream { .. } | IngestError::Storage(_) | IngestError::Closed => {
            RefusalReason::Unavailable
        }
    };
    Err(Refusal {
        reason,
        message: rejected.error.to_string(),
        events: rejected.events,
    })
}

/// What adapters tell devices to wait when the queue is full.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle whose only stream takes `alert/#`, and the writer's end of its channel.
    fn alerts_only() -> (Ingest, mpsc::Receiver<Intake>) {
        let mut stream = StreamConfig::catch_all("alerts");
        stream.subjects = vec!["alert/#".parse().expect("valid pattern")];
        let (tx, rx) = mpsc::channel(4);
        let ingest = Ingest::new(
            tx,
            Arc::new(IdMint::new(1)),
            Arc::new(Router::new(&[stream])),
        );
        (ingest, rx)
    }

    #[tokio::test]
    async fn a_subject_without_a_stream_is_refused_as_unavailable_not_as_full() {
        let (ingest, mut rx) = alerts_only();
        let events = vec![Event::new("alert/d", "d", 1), Event::new("coap/d", "d", 2)];
        let refusal = ingest
            .accept(events)
            .await
            .expect_err("coap/d has no stream");
        assert!(
            matches!(refusal.reason, RefusalReason::Unavailable),
            "{:?}",
            refusal.reason
        );
        assert_eq!(refusal.message, "no queue stream takes subject `coap/d`");
        assert_eq!(refusal.events.len(), 2, "both events handed back");
        assert!(rx.try_recv().is_err(), "nothing reached the writer");

        let rejected = ingest
            .try_submit(vec![Event::new("coap/e", "e", 3)])
            .expect_err("no stream");
        assert!(
            matches!(&rejected.error, IngestError::NoStream { subject } if subject == "coap/e"),
            "{:?}",
            rejected.error
        );
    }
}
