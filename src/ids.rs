//! Gateway-unique event ids: this boot's number and a sequence. Minted by
//! producers on submit and by the function host for outputs, so it sits
//! below both.

use sluice_event::EventId;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mints gateway-unique event ids: this boot's number and a sequence.
#[derive(Debug)]
pub struct IdMint {
    boot: u32,
    next: AtomicU64,
}

impl IdMint {
    /// Ids for boot number `boot`, starting at sequence 1.
    pub fn new(boot: u32) -> IdMint {
        IdMint {
            boot,
            next: AtomicU64::new(1),
        }
    }

    /// The next id.
    pub fn mint(&self) -> EventId {
        EventId::new(self.boot, self.next.fetch_add(1, Ordering::Relaxed))
    }
}
