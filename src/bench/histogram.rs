//! Latency histograms: log-linear buckets with under 1.6 % relative error.
//!
//! Values (microseconds, usually) below 128 get a bucket each; above that every
//! power of two is split into 64 equal buckets. [`Histogram`] is the plain,
//! mergeable and serialisable form that worker processes send to the
//! coordinator; [`AtomicHistogram`] is the lock-free recorder many tasks share,
//! and a task on a hot path collects values in a [`Batch`] and adds them at once.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this get exact buckets.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const HALF: usize = 64;
/// Number of buckets needed to cover every `u64`.
const BUCKETS: usize = 58 * HALF + HALF;

/// The bucket a value falls into.
fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - 6;
    (shift as usize + 1) * HALF + ((value >> shift) as usize - HALF)
}

/// The largest value that falls into a bucket.
fn bucket_high(index: usize) -> u64 {
    if index < LINEAR as usize {
        return index as u64;
    }
    let shift = (index / HALF - 1) as u32;
    let sub = (index % HALF + HALF) as u64;
    let high = ((u128::from(sub) + 1) << shift) - 1;
    u64::try_from(high).unwrap_or(u64::MAX)
}

/// A mergeable histogram of `u64` values with exact count, min, max and sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Non-empty buckets as `(bucket index, count)`, in index order.
    buckets: Vec<(usize, u64)>,
    /// Number of recorded values.
    count: u64,
    /// Smallest recorded value (0 when empty).
    min: u64,
    /// Largest recorded value.
    max: u64,
    /// Sum of all values (saturating).
    sum: u64,
}

impl Histogram {
    /// Builds a histogram from dense bucket counts.
    fn from_dense(counts: &[u64], min: u64, max: u64, sum: u64) -> Self {
        let buckets: Vec<(usize, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (index, *count))
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let min = if count == 0 { 0 } else { min };
        Self {
            buckets,
            count,
            min,
            max,
            sum,
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        let index = bucket_of(value);
        match self.buckets.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(found) => self.buckets[found].1 += 1,
            Err(at) => self.buckets.insert(at, (index, 1)),
        }
        self.min = if self.count == 0 {
            value
        } else {
            self.min.min(value)
        };
        self.max = self.max.max(value);
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        let mut dense = vec![0u64; BUCKETS];
        for (index, count) in self.buckets.iter().chain(other.buckets.iter()) {
            dense[*index] += count;
        }
        let min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        let merged = Self::from_dense(
            &dense,
            min,
            self.max.max(other.max),
            self.sum.saturating_add(other.sum),
        );
        *self = merged;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest recorded value, or 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest recorded value, or 0 when empty.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Arithmetic mean, or 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    /// The value at percentile `p` (0–100): the top of its bucket, never above the maximum.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.max(1);
        let mut seen = 0;
        for (index, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return bucket_high(*index).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Values one task collects before adding them to an [`AtomicHistogram`] at once.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    values: [u64; Batch::CAPACITY],
    len: usize,
}

impl Batch {
    /// Values held before the batch must be flushed.
    pub const CAPACITY: usize = 32;

    /// Adds a value, flushing into `into` first when the batch is full.
    pub fn push(&mut self, value: u64, into: &AtomicHistogram) {
        if self.len == Self::CAPACITY {
            self.flush(into);
        }
        self.values[self.len] = value;
        self.len += 1;
    }

    /// Records every held value into `into` and empties the batch.
    pub fn flush(&mut self, into: &AtomicHistogram) {
        into.record_all(&self.values[..self.len]);
        self.len = 0;
    }
}

/// A histogram many tasks record into at once without locks.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    min: AtomicU64,
    max: AtomicU64,
    sum: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        self.record_all(&[value]);
    }

    /// Records several values: one counter update each, and the minimum,
    /// maximum and sum once for all (only written when they change).
    pub fn record_all(&self, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let (mut min, mut max, mut sum) = (u64::MAX, 0u64, 0u64);
        for value in values {
            self.counts[bucket_of(*value)].fetch_add(1, Ordering::Relaxed);
            min = min.min(*value);
            max = max.max(*value);
            sum = sum.wrapping_add(*value);
        }
        if min < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(min, Ordering::Relaxed);
        }
        if max > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(max, Ordering::Relaxed);
        }
        self.sum.fetch_add(sum, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reports (values recorded meanwhile may be half counted).
    pub fn snapshot(&self) -> Histogram {
        let dense: Vec<u64> = self
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        Histogram::from_dense(
            &dense,
            self.min.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
            self.sum.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        for value in [0, 1, 127, 128, 129, 255, 256, 1_000, 65_535, 1 << 40] {
            let index = bucket_of(value);
            assert!(bucket_high(index) >= value, "value {value}");
            if index > 0 {
                assert!(bucket_high(index - 1) < value, "value {value}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn relative_error_is_small() {
        for value in [200u64, 1_234, 98_765, 5_000_000] {
            let high = bucket_high(bucket_of(value));
            assert!(
                (high - value) as f64 / value as f64 <= 1.0 / 64.0,
                "{value}"
            );
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let atomic = AtomicHistogram::new();
        for value in 1..=1000 {
            atomic.record(value);
        }
        let hist = atomic.snapshot();
        assert_eq!(hist.count(), 1000);
        assert_eq!(hist.min(), 1);
        assert_eq!(hist.max(), 1000);
        assert_eq!(hist.mean(), 500);
        let p50 = hist.percentile(50.0);
        assert!((495..=510).contains(&p50), "p50 {p50}");
        let p99 = hist.percentile(99.0);
        assert!((985..=1000).contains(&p99), "p99 {p99}");
        assert_eq!(hist.percentile(100.0), 1000);
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Histogram::default();
        a.record(10);
        a.record(20);
        let mut b = Histogram::default();
        b.record(5);
        b.record(5000);
        a.merge(&b);
        assert_eq!(a.count(), 4);
        assert_eq!(a.min(), 5);
        assert_eq!(a.max(), 5000);
        let text = serde_json::to_string(&a).expect("serialises");
        let back: Histogram = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, a);
    }

    #[test]
    fn batches_record_the_same_as_single_values() {
        let single = AtomicHistogram::new();
        let batched = AtomicHistogram::new();
        let mut batch = Batch::default();
        for value in (0..100).map(|v| v * 37 % 1000 + 3) {
            single.record(value);
            batch.push(value, &batched);
        }
        assert!(batched.snapshot().count() < 100, "not flushed yet");
        batch.flush(&batched);
        batch.flush(&batched);
        assert_eq!(batched.snapshot(), single.snapshot());
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let hist = Histogram::default();
        assert_eq!(hist.percentile(99.0), 0);
        assert_eq!(hist.mean(), 0);
        assert_eq!(AtomicHistogram::new().snapshot().min(), 0);
    }
}
