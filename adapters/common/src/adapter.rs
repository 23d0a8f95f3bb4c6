//! The contract between the core and every protocol adapter.
//!
//! An adapter's config section implements [`Adapter`]: it names the
//! adapter, validates itself, declares the [`Claim`]s it makes on the
//! machine and opens them. Opening binds sockets and opens devices before
//! the gateway reports ready, so a port in use or a missing serial device
//! is a start-up error naming the adapter and the resource ([`OpenError`]).
//! What opening returns is [`Opened`]: it runs with one [`Context`] (the
//! sink, the counters, its own shutdown, its downlinks) until that shutdown
//! fires, resolves what is in flight and returns. A run that returns an
//! error (or panics) is restarted by the core with back-off.

use crate::counters::Counters;
use crate::downlink::DownlinkReceiver;
use crate::resource::{Claim, Resource};
use crate::sink::{
    Exchange, RecallError, Refusal, Remembered, Shutdown, Sink, StateChange, StateEntry,
};
use sluice_event::{Event, EventId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future, as adapters return them through the contract.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a running adapter stopped before it was told to.
pub type RunError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An adapter, as its config section describes it.
pub trait Adapter: fmt::Debug + Send + Sync {
    /// The adapter's name: its config section, its counters' key in health
    /// messages, and its name in logs.
    fn name(&self) -> &'static str;

    /// Problems of the section as (key below the section, message).
    fn validate(&self) -> Vec<(String, String)>;

    /// What the adapter will hold while it runs, each with its config key.
    fn claims(&self) -> Vec<Claim>;

    /// One line for `sluice check`.
    fn summary(&self) -> String;

    /// Binds, opens and checks everything the adapter needs, so that a
    /// failure shows before the gateway reports ready.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Opened>, OpenError>>;
}

/// An adapter holding its resources, ready to run.
pub trait Opened: Send {
    /// What it actually holds (a port 0 in the config resolved to the real port).
    fn holds(&self) -> Vec<Resource>;

    /// Serves until `context.shutdown` fires, then resolves what is in
    /// flight and returns `Ok`. An `Err` means it failed and should be restarted.
    fn run(self: Box<Self>, context: Context) -> BoxFuture<'static, Result<(), RunError>>;
}

/// Everything a running adapter gets from the core.
#[derive(Clone, Debug)]
pub struct Context {
    /// Where its events go; resolves once they are durable.
    pub sink: EventSink,
    /// Its counters, published in health messages under its name.
    pub counters: Arc<Counters>,
    /// Its own shutdown: fires when the gateway stops or reloads this adapter.
    pub shutdown: Shutdown,
    /// Downlinks for its devices.
    pub downlinks: DownlinkReceiver,
}

/// An adapter could not open a resource it needs.
#[derive(Debug, thiserror::Error)]
#[error("{adapter} adapter: cannot open {resource}: {source}")]
pub struct OpenError {
    /// Which adapter.
    pub adapter: &'static str,
    /// What it could not open.
    pub resource: Resource,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A [`Sink`] of any kind behind one type, so the contract needs no generics.
#[derive(Clone)]
pub struct EventSink(Arc<dyn BoxedSink>);

impl EventSink {
    /// Wraps a sink.
    pub fn new<S: Sink>(sink: S) -> EventSink {
        EventSink(Arc::new(sink))
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSink")
    }
}

impl Sink for EventSink {
    fn accept(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send {
        self.0.accept_boxed(events)
    }

    fn accept_once(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send {
        self.0.accept_once_boxed(events, exchange)
    }

    fn recall(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Remembered>, RecallError>> + Send {
        self.0.recall_boxed(limit)
    }

    fn accept_with_state(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> impl Future<Output = Result<Vec<EventId>, Refusal>> + Send {
        self.0.accept_with_state_boxed(events, changes)
    }

    fn load_state(&self) -> impl Future<Output = Result<Vec<StateEntry>, RecallError>> + Send {
        self.0.load_state_boxed()
    }
}

/// [`Sink`] made object-safe.
trait BoxedSink: Send + Sync {
    fn accept_boxed(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Vec<EventId>, Refusal>>;
    fn accept_once_boxed(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> BoxFuture<'_, Result<Vec<EventId>, Refusal>>;
    fn recall_boxed(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Remembered>, RecallError>>;
    fn accept_with_state_boxed(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> BoxFuture<'_, Result<Vec<EventId>, Refusal>>;
    fn load_state_boxed(&self) -> BoxFuture<'_, Result<Vec<StateEntry>, RecallError>>;
}

impl<S: Sink> BoxedSink for S {
    fn accept_boxed(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Vec<EventId>, Refusal>> {
        Box::pin(self.accept(events))
    }

    fn accept_once_boxed(
        &self,
        events: Vec<Event>,
        exchange: Exchange,
    ) -> BoxFuture<'_, Result<Vec<EventId>, Refusal>> {
        Box::pin(self.accept_once(events, exchange))
    }

    fn recall_boxed(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Remembered>, RecallError>> {
        Box::pin(self.recall(limit))
    }

    fn accept_with_state_boxed(
        &self,
        events: Vec<Event>,
        changes: Vec<StateChange>,
    ) -> BoxFuture<'_, Result<Vec<EventId>, Refusal>> {
        Box::pin(self.accept_with_state(events, changes))
    }

    fn load_state_boxed(&self) -> BoxFuture<'_, Result<Vec<StateEntry>, RecallError>> {
        Box::pin(self.load_state())
    }
}
/// Hands each downlink to the task that owns its device (`routes`: device
/// id → that task's queue) until shutdown. An unknown device is answered
/// `UnknownDevice`, a full queue `Busy`, a task that has stopped `Stopped`.
pub async fn route_downlinks(
    routes: std::collections::HashMap<String, tokio::sync::mpsc::Sender<crate::downlink::Request>>,
    context: Context,
) {
    use crate::downlink::DownlinkError;
    use tokio::sync::mpsc::error::TrySendError;
    let mut shutdown = context.shutdown.clone();
    loop {
        let request = tokio::select! {
            _ = shutdown.wait() => return,
            request = context.downlinks.recv() => match request {
                Some(r) => r,
                None => {
                    shutdown.wait().await;
                    return;
                }
            },
        };
        match routes.get(&request.downlink.device) {
            None => {
                let device = request.downlink.device.clone();
                request.answer(Err(DownlinkError::UnknownDevice(device)));
            }
            Some(owner) => {
                if let Err(e) = owner.try_send(request) {
                    let (error, request) = match e {
                        TrySendError::Full(r) => (DownlinkError::Busy, r),
                        TrySendError::Closed(r) => (DownlinkError::Stopped, r),
                    };
                    request.answer(Err(error));
                }
            }
        }
    }
}
