//! A lock-free histogram of forwarding delay (ingress to egress inside the node), with 10 µs
//! resolution up to 10 ms and coarse buckets beyond, for p50/p99 in metrics and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const FINE_STEP_US: u64 = 10;
const FINE_BUCKETS: usize = 1000;
/// Coarse buckets double from 10 ms: 20, 40, ... ms, the last one open-ended.
const COARSE_BUCKETS: usize = 12;

/// Histogram of delays.
#[derive(Debug)]
pub struct DelayHistogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..FINE_BUCKETS + COARSE_BUCKETS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    let fine = (us / FINE_STEP_US) as usize;
    if fine < FINE_BUCKETS {
        return fine;
    }
    let over = us / (FINE_STEP_US * FINE_BUCKETS as u64);
    let coarse = (64 - over.leading_zeros()) as usize;
    FINE_BUCKETS + coarse.min(COARSE_BUCKETS) - 1
}

fn upper_bound_us(bucket: usize) -> u64 {
    if bucket < FINE_BUCKETS {
        (bucket as u64 + 1) * FINE_STEP_US
    } else {
        let k = (bucket - FINE_BUCKETS + 1) as u32;
        FINE_STEP_US * FINE_BUCKETS as u64 * 2u64.pow(k)
    }
}

impl DelayHistogram {
    /// Records one delay.
    pub fn record(&self, delay: Duration) {
        let us = delay.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Delays recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Mean delay.
    pub fn mean(&self) -> Duration {
        let n = self.count().max(1);
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed) / n)
    }

    /// The delay below which a fraction `q` (0..=1) of recorded delays lie (bucket upper bound).
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Duration::from_micros(upper_bound_us(i));
            }
        }
        Duration::from_micros(upper_bound_us(self.buckets.len() - 1))
    }

    /// Cumulative counts at each of `bounds_us` (ascending, microseconds) and at +Inf (all,
    /// as `f64::MAX`, which prometheus-client writes `+Inf`), bounds in seconds, for a
    /// Prometheus histogram: how many delays were at most each bound
    /// (of the buckets wholly below it).
    pub fn cumulative(&self, bounds_us: &[u64]) -> Vec<(f64, u64)> {
        let mut out = Vec::with_capacity(bounds_us.len() + 1);
        let (mut seen, mut bucket) = (0, 0);
        for &bound in bounds_us {
            while bucket < self.buckets.len() && upper_bound_us(bucket) <= bound {
                seen += self.buckets[bucket].load(Ordering::Relaxed);
                bucket += 1;
            }
            out.push((bound as f64 / 1e6, seen));
        }
        let rest: u64 = self.buckets[bucket..]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        out.push((f64::MAX, seen + rest));
        out
    }

    /// Sum of the recorded delays.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// Clears all counts (between benchmark phases).
    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_counts_at_coarser_bounds() {
        let h = DelayHistogram::default();
        for us in [5, 15, 95, 400, 30_000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(
            h.cumulative(&[10, 100, 1_000, 40_000]),
            vec![
                (0.00001, 1),
                (0.0001, 3),
                (0.001, 4),
                (0.04, 5),
                (f64::MAX, 5)
            ]
        );
        assert_eq!(h.sum(), Duration::from_micros(30_515));
    }

    #[test]
    fn quantiles_within_a_bucket() {
        let h = DelayHistogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us * 10));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Duration::from_micros(510));
        assert_eq!(h.quantile(0.99), Duration::from_micros(1000));
        assert_eq!(h.quantile(1.0), Duration::from_micros(1010));
    }

    #[test]
    fn long_delays_land_in_coarse_buckets() {
        let h = DelayHistogram::default();
        h.record(Duration::from_millis(15));
        assert_eq!(h.quantile(0.5), Duration::from_millis(20));
        h.record(Duration::from_secs(3600));
        assert_eq!(
            h.quantile(1.0),
            Duration::from_micros(upper_bound_us(FINE_BUCKETS + COARSE_BUCKETS - 1))
        );
        h.reset();
        assert_eq!(h.quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn bucket_bounds_are_monotonic() {
        let mut last = 0;
        for b in 0..FINE_BUCKETS + COARSE_BUCKETS {
            let ub = upper_bound_us(b);
            assert!(ub > last);
            last = ub;
        }
        for us in [0, 9, 10, 9_999, 10_000, 19_999, 20_000, 40_000, u64::MAX] {
            assert!(upper_bound_us(bucket_of(us)) > us || us == u64::MAX, "{us}");
        }
    }
}
