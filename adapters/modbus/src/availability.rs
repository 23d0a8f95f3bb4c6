//! Whether a device is online, from its polls' outcomes, and how long to
//! wait before polling it again. Pure.
//!
//! The hazard: a dead device on a shared bus costs a full response timeout
//! (times the retries) on every poll, time the other devices wait for. After
//! `offline_after` polls in a row without an answer it is reported offline
//! and polled less and less often (its poll interval doubling up to
//! `backoff_max`), so the rest of the bus keeps its schedule; the first
//! answer reports it online and restores its interval. An exception is an
//! answer: the device is there.

use crate::fault::Fault;
use std::time::Duration;

/// A change worth an upstream status event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `failures` polls in a row got no answer, the last for `last`.
    Offline {
        /// Polls without an answer.
        failures: u32,
        /// Why the last one failed.
        last: Fault,
    },
    /// The device answered again after `failures` unanswered polls.
    Online {
        /// Polls without an answer before this one.
        failures: u32,
    },
}

/// One device's availability.
#[derive(Clone, Debug)]
pub struct Availability {
    offline_after: u32,
    backoff_max: Duration,
    failures: u32,
    offline: bool,
}

impl Availability {
    /// An online device that is reported offline after `offline_after`
    /// unanswered polls in a row and then waits at most `backoff_max`
    /// between polls.
    pub fn new(offline_after: u32, backoff_max: Duration) -> Availability {
        Availability {
            offline_after: offline_after.max(1),
            backoff_max,
            failures: 0,
            offline: false,
        }
    }

    /// Whether the device is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// A poll got an answer (data or an exception).
    pub fn answered(&mut self) -> Option<Change> {
        let failures = std::mem::take(&mut self.failures);
        if std::mem::take(&mut self.offline) {
            Some(Change::Online { failures })
        } else {
            None
        }
    }

    /// A poll got no answer at all, the last request for `fault`.
    pub fn unanswered(&mut self, fault: Fault) -> Option<Change> {
        self.failures = self.failures.saturating_add(1);
        if !self.offline && self.failures >= self.offline_after {
            self.offline = true;
            Some(Change::Offline {
                failures: self.failures,
                last: fault,
            })
        } else {
            None
        }
    }

    /// How long after this poll the next one is due, for a device polled
    /// every `interval`: the interval while online; while offline it
    /// doubles with each unanswered poll, up to `backoff_max` (never less
    /// than the interval).
    pub fn next_wait(&self, interval: Duration) -> Duration {
        if !self.offline {
            return interval;
        }
        let doublings = (self.failures - self.offline_after + 1).min(20);
        let cap = self.backoff_max.max(interval);
        interval.saturating_mul(1 << doublings).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn offline_after_k_unanswered_polls_then_backing_off_then_online() {
        let mut a = Availability::new(3, Duration::from_secs(10));
        assert_eq!(a.unanswered(Fault::Timeout), None);
        assert_eq!(a.next_wait(SECOND), SECOND);
        assert_eq!(a.unanswered(Fault::Crc), None);
        assert_eq!(
            a.unanswered(Fault::Timeout),
            Some(Change::Offline {
                failures: 3,
                last: Fault::Timeout
            })
        );
        assert!(a.is_offline());
        assert_eq!(a.next_wait(SECOND), 2 * SECOND);
        assert_eq!(a.unanswered(Fault::Timeout), None, "reported once");
        assert_eq!(a.next_wait(SECOND), 4 * SECOND);
        assert_eq!(a.unanswered(Fault::Timeout), None);
        assert_eq!(a.next_wait(SECOND), 8 * SECOND);
        assert_eq!(a.unanswered(Fault::Timeout), None);
        assert_eq!(a.next_wait(SECOND), 10 * SECOND, "capped");
        assert_eq!(a.answered(), Some(Change::Online { failures: 6 }));
        assert!(!a.is_offline());
        assert_eq!(a.next_wait(SECOND), SECOND);
        assert_eq!(a.answered(), None);
    }

    #[test]
    fn an_answer_in_between_starts_the_count_over() {
        let mut a = Availability::new(2, Duration::from_secs(10));
        assert_eq!(a.unanswered(Fault::Timeout), None);
        assert_eq!(a.answered(), None);
        assert_eq!(a.unanswered(Fault::Timeout), None);
        assert!(a.unanswered(Fault::Timeout).is_some());
    }

    #[test]
    fn the_back_off_never_polls_more_often_than_the_interval_and_never_overflows() {
        let mut a = Availability::new(1, Duration::from_millis(100));
        for _ in 0..100 {
            a.unanswered(Fault::Unreachable);
        }
        assert_eq!(a.next_wait(SECOND), SECOND);
        let mut b = Availability::new(1, Duration::from_secs(u64::MAX / 4));
        for _ in 0..100 {
            b.unanswered(Fault::Timeout);
        }
        assert_eq!(
            b.next_wait(Duration::from_secs(u64::MAX / 2)),
            Duration::from_secs(u64::MAX / 2)
        );
    }
}
