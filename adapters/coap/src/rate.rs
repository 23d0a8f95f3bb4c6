//! A token bucket per device: `rate` requests per second with a burst of
//! `rate`. Pure: time comes in as an argument. Bounded: idle devices are
//! forgotten when the table grows.

use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::time::Instant;

/// Most devices tracked before idle ones are dropped.
const MAX_DEVICES: usize = 10_000;

/// Per-device request budgets.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    buckets: HashMap<String, (f64, Instant), RandomState>,
}

impl RateLimit {
    /// `rate` requests per second per device.
    pub fn new(rate: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate.max(1)),
            buckets: HashMap::default(),
        }
    }

    /// Whether `device` may make a request now (and counts it if so).
    pub fn allow(&mut self, device: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_DEVICES && !self.buckets.contains_key(device) {
            let rate = self.rate;
            // Buckets that refilled completely carry no information.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < rate
            });
        }
        let rate = self.rate;
        // Looked up before inserting, so that a known device costs no allocation.
        let (tokens, at) = match self.buckets.get_mut(device) {
            Some(bucket) => bucket,
            None => self.buckets.entry(device.to_owned()).or_insert((rate, now)),
        };
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_rate_then_rate_per_second_per_device() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(3);
        let burst: Vec<bool> = (0..4).map(|_| r.allow("a", t0)).collect();
        assert_eq!(burst, [true, true, true, false]);
        assert!(r.allow("b", t0), "devices have their own budget");
        assert!(!r.allow("a", t0 + Duration::from_millis(300)));
        assert!(
            r.allow("a", t0 + Duration::from_millis(400)),
            "one token back after 1/3 s"
        );
    }
}
