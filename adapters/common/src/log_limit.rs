//! Warnings that could repeat thousands of times a second under overload
//! (a frame dropped because the queue is not keeping up) are logged at most
//! once per interval, with how many were not logged in between.

use std::time::{Duration, Instant};

/// Lets one log line through per interval and counts the rest.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> LogLimit {
        LogLimit {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if a line may be logged now, `n` being how many were held
    /// back since the last one; `None` if this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_count_of_those_held_back() {
        let mut limit = LogLimit::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(limit.allow(t), Some(0));
        assert_eq!(limit.allow(t + Duration::from_millis(10)), None);
        assert_eq!(limit.allow(t + Duration::from_millis(999)), None);
        assert_eq!(limit.allow(t + Duration::from_secs(1)), Some(2));
        assert_eq!(limit.allow(t + Duration::from_secs(3)), Some(0));
    }
}
