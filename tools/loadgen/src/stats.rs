//! Latency percentiles (nearest rank) over samples in microseconds.

use serde::{Deserialize, Serialize};

/// p50, p99, p999 and the maximum of a set of latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples the figures were taken from.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl Percentiles {
    /// Percentiles of `samples` (sorted in place); all zero for no samples.
    pub fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        Percentiles {
            count: samples.len() as u64,
            p50_us: rank(samples, 0.5),
            p99_us: rank(samples, 0.99),
            p999_us: rank(samples, 0.999),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }
}

/// The nearest-rank `q` quantile of sorted `samples`: the smallest sample
/// with at least `q` of all samples at or below it.
pub fn rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let k = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[k - 1]
}

/// Microseconds as milliseconds with two decimals, for tables.
pub fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_a_hundred() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut s);
        assert_eq!(
            (p.count, p.p50_us, p.p99_us, p.p999_us, p.max_us),
            (100, 50, 99, 100, 100)
        );
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let p = Percentiles::of(&mut [7]);
        assert_eq!((p.p50_us, p.p99_us, p.p999_us, p.max_us), (7, 7, 7, 7));
    }

    #[test]
    fn no_samples_is_zero() {
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn p999_needs_a_thousand_samples_to_differ_from_the_max() {
        let mut s: Vec<u64> = (1..=2000).collect();
        let p = Percentiles::of(&mut s);
        assert_eq!((p.p99_us, p.p999_us, p.max_us), (1980, 1998, 2000));
    }

    #[test]
    fn milliseconds_for_tables() {
        assert_eq!(ms(1234), "1.23");
    }
}
