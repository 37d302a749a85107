//! A fixed-size latency histogram: log-linear buckets (64 per power of two,
//! so a percentile is within about 1.6 % of the true value) from 1 µs to
//! about 2 minutes. Bounded memory whatever the run length; histograms of
//! many workers merge by adding counts.

use serde::Serialize;
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB_BUCKETS: usize = 64;

/// Powers of two covered: 1 µs to 2^27 µs (≈ 134 s); longer samples land
/// in the last bucket.
const POWERS: usize = 27;

/// The number of buckets.
const BUCKETS: usize = SUB_BUCKETS * (POWERS + 1);

/// Counts of latencies in microseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_micros: u128,
    max_micros: u64,
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn bucket_of(micros: u64) -> usize {
    let v = micros.max(1);
    let power = 63 - v.leading_zeros() as usize;
    if power >= POWERS {
        return BUCKETS - 1;
    }
    // Within [2^power, 2^(power+1)): SUB_BUCKETS equal slices (values
    // below SUB_BUCKETS fall in exact slots of the first powers).
    let offset = (((v - (1u64 << power)) as u128 * SUB_BUCKETS as u128) >> power) as usize;
    power * SUB_BUCKETS + offset
}

/// The upper bound (µs) of bucket `b`: what a percentile in it reports.
fn bucket_high(b: usize) -> f64 {
    let (power, offset) = (b / SUB_BUCKETS, b % SUB_BUCKETS);
    let low = (1u64 << power) as f64;
    low + low * (offset + 1) as f64 / SUB_BUCKETS as f64
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_micros: 0,
            max_micros: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.sum_micros += micros as u128;
        self.max_micros = self.max_micros.max(micros);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_micros += other.sum_micros;
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency (ms) at quantile `q` in `[0, 1]`; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let high = bucket_high(b).min(self.max_micros as f64);
                return high / 1_000.0;
            }
        }
        self.max_micros as f64 / 1_000.0
    }

    /// The usual percentiles.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.total,
            mean_ms: if self.total == 0 {
                0.0
            } else {
                self.sum_micros as f64 / self.total as f64 / 1_000.0
            },
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: self.max_micros as f64 / 1_000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_two_percent() {
        let mut h = Histogram::new();
        for micros in 1..=100_000u64 {
            h.record(Duration::from_micros(micros));
        }
        for (q, exact) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0), (0.999, 99.9)] {
            let got = h.quantile_ms(q);
            assert!(
                (got - exact).abs() / exact < 0.02,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.percentiles().max_ms, 100.0);
        let mut other = Histogram::new();
        other.record(Duration::from_secs(1_000));
        h.merge(&other);
        assert_eq!(h.count(), 100_001);
        assert_eq!(h.percentiles().max_ms, 1_000_000.0);
    }

    #[test]
    fn buckets_are_monotonic_and_in_range() {
        let mut last = 0;
        for micros in (0..30).map(|p| 1u64 << p).flat_map(|v| [v, v + v / 3]) {
            let b = bucket_of(micros);
            assert!(b >= last && b < BUCKETS, "{micros} µs in bucket {b}");
            last = b;
        }
        assert_eq!(Histogram::new().quantile_ms(0.5), 0.0);
    }
}
