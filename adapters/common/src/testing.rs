//! A [`Sink`] for adapter tests that need no core: it keeps what it is given
//! and can be told to refuse, so an adapter's test drives only the adapter.

use crate::sink::{Refusal, RefusalReason, Sink};
use sluice_event::{Event, EventId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects accepted events; refuses while [`CollectingSink::refuse`] is on.
#[derive(Clone, Debug, Default)]
pub struct CollectingSink {
    events: Arc<Mutex<Vec<Event>>>,
    refusing: Arc<Mutex<bool>>,
    next_id: Arc<AtomicU64>,
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
}
