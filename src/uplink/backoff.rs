//! Reconnect delays: capped exponential back-off with jitter, so a fleet of
//! gateways does not reconnect in lockstep after a broker outage.

use sluice_adapter_common::Random;
use std::time::Duration;

/// Doubles from `min` up to `max`; each delay is drawn from [d/2, d].
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    random: Random,
}

impl Backoff {
    /// A back-off starting at `min`, never above `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
            random: Random::seeded(),
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        self.random.jitter(half, d - half)
    }

    /// Back to `min` after a successful connection.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_below_each_step() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Backoff::new(min, max);
        let steps = [100, 200, 400, 800, 1000, 1000, 1000];
        for ms in steps {
            let d = b.next_delay();
            let step = Duration::from_millis(ms);
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} not in [{:?}, {step:?}]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
