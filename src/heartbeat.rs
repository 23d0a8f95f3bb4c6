//! A task's sign of life: it beats whenever it goes round its loop, and the
//! watchdog asks how long ago that was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by value between the task that beats and the one that checks.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds after `origin` of the last beat.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Heartbeat {
    /// Records a sign of life now.
    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat (or since creation).
    pub fn since(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_resets_the_silence() {
        let h = Heartbeat {
            origin: Instant::now() - Duration::from_secs(10),
            last: Arc::new(AtomicU64::new(0)),
        };
        assert!(h.since() >= Duration::from_secs(10));
        h.clone().beat();
        assert!(h.since() < Duration::from_secs(1));
    }
}
