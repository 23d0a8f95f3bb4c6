//! When the records that are due go out: adaptive batching, decided without
//! I/O. Pure and unit-tested.
//!
//! The hazard is the trade between latency and batch size. A fixed linger
//! makes every reading at a low rate wait the whole linger; no linger at all
//! sends many tiny batches under load. Group commit answers the same question
//! for writes, and the answer carries over: an idle uplink publishes what is
//! due at once; while batches are in flight, the next one forms, and goes out
//! when it is full (into a free slot of the in-flight window), when the last
//! batch in flight is acknowledged (the uplink is idle again), or when its
//! oldest record has waited `linger`, the upper bound. A batch never goes out
//! while `max_inflight` batches await their acknowledgement.
//!
//! Why not on every acknowledgement: with several full batches in flight,
//! each acknowledgement would send whatever arrived since the previous one, so
//! batches would shrink as the window fills; waiting until the window is empty
//! keeps one partial batch in flight at a time, as group commit keeps one
//! transaction.

/// What is due in the queue now, as far as the decision cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing is due.
    Nothing,
    /// Fewer records than a full batch; the oldest was queued at `oldest_ms`
    /// (ms since the Unix epoch).
    Partial {
        /// When the oldest due record was committed.
        oldest_ms: i64,
    },
    /// At least a full batch (by records or by bytes).
    Full,
}

/// What the uplink does with what is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// Nothing to send.
    Idle,
    /// Publish a batch now.
    Publish,
    /// The in-flight window is full: wait for an acknowledgement.
    WindowFull,
    /// Let the batch form: wait for more records, for the batches in flight
    /// to be acknowledged, or until `until_ms` (the oldest record's linger).
    Wait {
        /// When the oldest due record has waited `linger` (ms since the Unix epoch).
        until_ms: i64,
    },
}

/// The batching rule of one uplink config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Batches published and not yet acknowledged, at most.
    pub max_inflight: usize,
    /// The longest a due record waits for its batch to fill, in ms.
    pub linger_ms: i64,
}

impl Batching {
    /// What to do with `due` while `in_flight` batches await acknowledgement, at `now_ms`.
    pub fn decide(&self, due: Due, in_flight: usize, now_ms: i64) -> Dispatch {
        if in_flight >= self.max_inflight {
            return match due {
                Due::Nothing => Dispatch::Idle,
                _ => Dispatch::WindowFull,
            };
        }
        match due {
            Due::Nothing => Dispatch::Idle,
            Due::Full => Dispatch::Publish,
            // Idle uplink: no batch to wait for, so waiting would only add latency.
            Due::Partial { .. } if in_flight == 0 => Dispatch::Publish,
            Due::Partial { oldest_ms } => {
                let until_ms = oldest_ms.saturating_add(self.linger_ms);
                if until_ms <= now_ms {
                    Dispatch::Publish
                } else {
                    Dispatch::Wait { until_ms }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    /// `max_inflight` 8 and `linger` 1 s, the defaults.
    fn check(due: Due, in_flight: usize, expected: Dispatch) {
        let rule = Batching {
            max_inflight: 8,
            linger_ms: 1000,
        };
        assert_eq!(
            rule.decide(due, in_flight, NOW),
            expected,
            "{due:?} with {in_flight} in flight"
        );
    }

    fn partial(age_ms: i64) -> Due {
        Due::Partial {
            oldest_ms: NOW - age_ms,
        }
    }

    fn wait(age_ms: i64) -> Dispatch {
        Dispatch::Wait {
            until_ms: NOW - age_ms + 1000,
        }
    }

    #[test]
    fn nothing_due_is_idle() {
        check(Due::Nothing, 0, Dispatch::Idle);
        check(Due::Nothing, 3, Dispatch::Idle);
        check(Due::Nothing, 8, Dispatch::Idle);
    }

    #[test]
    fn an_idle_uplink_publishes_at_once() {
        check(partial(0), 0, Dispatch::Publish);
        check(partial(999), 0, Dispatch::Publish);
        check(Due::Full, 0, Dispatch::Publish);
    }

    #[test]
    fn a_partial_batch_forms_while_others_are_in_flight() {
        check(partial(0), 1, wait(0));
        check(partial(500), 1, wait(500));
        check(partial(999), 7, wait(999));
    }

    #[test]
    fn linger_bounds_the_wait_of_the_oldest_record() {
        check(partial(1000), 1, Dispatch::Publish);
        check(partial(60_000), 7, Dispatch::Publish);
    }

    #[test]
    fn a_full_batch_takes_a_free_slot() {
        check(Due::Full, 1, Dispatch::Publish);
        check(Due::Full, 7, Dispatch::Publish);
    }

    #[test]
    fn nothing_goes_out_while_the_window_is_full() {
        check(Due::Full, 8, Dispatch::WindowFull);
        check(partial(0), 8, Dispatch::WindowFull);
        check(partial(60_000), 8, Dispatch::WindowFull);
        check(Due::Full, 9, Dispatch::WindowFull);
    }

    #[test]
    fn linger_zero_never_waits() {
        let rule = Batching {
            max_inflight: 8,
            linger_ms: 0,
        };
        assert_eq!(rule.decide(partial(0), 3, NOW), Dispatch::Publish);
        assert_eq!(rule.decide(partial(0), 8, NOW), Dispatch::WindowFull);
    }

    #[test]
    fn a_clock_step_back_does_not_overflow() {
        let rule = Batching {
            max_inflight: 8,
            linger_ms: i64::MAX,
        };
        assert_eq!(
            rule.decide(Due::Partial { oldest_ms: NOW }, 1, NOW),
            Dispatch::Wait { until_ms: i64::MAX }
        );
    }
}
