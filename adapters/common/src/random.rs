//! One random-number generator for adapters and the core: SplitMix64, seeded
//! from the process's random hasher keys. Enough for CoAP tokens and message
//! ids (hard to guess off-path, RFC 7252 §5.3.1, not secret), retransmission
//! and reconnect jitter, and simulated weather. Not for cryptography.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

/// A SplitMix64 generator. Every state is valid, so it never gets stuck.
#[derive(Clone, Debug)]
pub struct Random(u64);

impl Random {
    /// A generator seeded differently in every call and every process.
    pub fn seeded() -> Random {
        // Each `RandomState` has fresh keys; the time covers a fork that copied them.
        Random(RandomState::new().hash_one(SystemTime::now()))
    }

    /// A generator that repeats its sequence for the same `seed` (tests, demos).
    pub fn from_seed(seed: u64) -> Random {
        Random(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]` (just `lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi.saturating_sub(lo);
        match span.checked_add(1) {
            Some(n) => lo + self.next_u64() % n,
            None => self.next_u64(),
        }
    }

    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// `base` plus a uniform share of `spread` (nanosecond steps): a delay
    /// in `[base, base + spread]`.
    pub fn jitter(&mut self, base: Duration, spread: Duration) -> Duration {
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        base.saturating_add(Duration::from_nanos(self.range(0, nanos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_enough_and_never_stuck() {
        let mut r = Random::from_seed(0);
        let xs: Vec<f64> = (0..10_000).map(|_| r.between(0.0, 1.0)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let draws: Vec<u64> = (0..1000).map(|_| r.range(300, 800)).collect();
        assert!(draws.iter().all(|n| (300..=800).contains(n)));
        assert!(
            draws.contains(&300) && draws.contains(&800),
            "both ends reached"
        );
        let mut zero = Random::from_seed(0);
        let a = zero.next_u64();
        assert_ne!(a, zero.next_u64(), "a zero seed moves on");
    }

    #[test]
    fn ranges_at_the_edges() {
        let mut r = Random::from_seed(7);
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.range(9, 3), 9, "an empty range gives its start");
        r.range(0, u64::MAX); // the full range does not overflow
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        let mut r = Random::from_seed(1);
        let (base, spread) = (Duration::from_secs(2), Duration::from_secs(1));
        for _ in 0..1000 {
            let d = r.jitter(base, spread);
            assert!(d >= base && d <= base + spread, "{d:?}");
        }
        assert_eq!(r.jitter(base, Duration::ZERO), base);
    }

    #[test]
    fn seeded_generators_differ() {
        assert_ne!(Random::seeded().next_u64(), Random::seeded().next_u64());
    }
}
