//! Counters the engine keeps about its own work, for metrics and for
//! understanding performance: commit groups, syncs and their latency,
//! bytes written, segment rolls.
//!
//! Counters are relaxed atomics updated by the committer and the sealer;
//! [`crate::Store::stats`] takes a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (inclusive, in microseconds) of the sync latency buckets.
pub const SYNC_BUCKETS_US: [u64; 12] = [
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    50_000,
    100_000,
    1_000_000,
    u64::MAX,
];
/// Upper bounds (inclusive, in events) of the commit group size buckets.
pub const GROUP_BUCKETS: [u64; 11] = [1, 2, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, u64::MAX];

/// A histogram with fixed bucket bounds.
#[derive(Debug)]
pub(crate) struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    counts: [AtomicU64; N],
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub(crate) fn new(bounds: &'static [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's state: per-bucket counts (not cumulative) and the sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Inclusive upper bound of each bucket (`u64::MAX` for the last).
    pub bounds: Vec<u64>,
    /// Observations per bucket.
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: u64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Mean observation, if any.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum as f64 / n as f64)
    }
}

#[derive(Debug)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub appended_events: AtomicU64,
    pub written_bytes: AtomicU64,
    pub commit_groups: AtomicU64,
    pub segment_rolls: AtomicU64,
    pub spare_misses: AtomicU64,
    pub committer_idle_us: AtomicU64,
    pub committer_write_us: AtomicU64,
    pub seal_wait_us: AtomicU64,
    pub index_wait_us: AtomicU64,
    pub sync_us: Histogram<12>,
    pub group_events: Histogram<11>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            appends: AtomicU64::new(0),
            appended_events: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            commit_groups: AtomicU64::new(0),
            segment_rolls: AtomicU64::new(0),
            spare_misses: AtomicU64::new(0),
            committer_idle_us: AtomicU64::new(0),
            committer_write_us: AtomicU64::new(0),
            seal_wait_us: AtomicU64::new(0),
            index_wait_us: AtomicU64::new(0),
            sync_us: Histogram::new(&SYNC_BUCKETS_US),
            group_events: Histogram::new(&GROUP_BUCKETS),
        }
    }
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_sync(&self, took: Duration) {
        self.sync_us
            .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }
}

/// A snapshot of what the store has done since it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records visible (the log's size).
    pub records: u64,
    /// Segment files (sealed and open).
    pub segments: u64,
    /// Of which sealed.
    pub sealed_segments: u64,
    /// Successful append calls since open.
    pub appends: u64,
    /// Events appended since open.
    pub appended_events: u64,
    /// Bytes of frames written since open.
    pub written_bytes: u64,
    /// Commit groups written (one write, at most one sync each).
    pub commit_groups: u64,
    /// Segments started since open.
    pub segment_rolls: u64,
    /// Rolls that found no zero-filled spare ready and allocated instead.
    pub spare_misses: u64,
    /// A zero-filled file is ready to become the next segment
    /// (`Preallocation::ZeroFill`).
    pub spare_ready: bool,
    /// Index sidecars rebuilt from the records (missing or damaged).
    pub index_rebuilds: u64,
    /// Committed records of open segments not yet in their in-memory
    /// index (the indexer catches up in the background; a query indexes
    /// what remains before it searches).
    pub index_lag: u64,
    /// Microseconds the committer waited for work.
    pub committer_idle_us: u64,
    /// Microseconds the committer spent writing (not syncing).
    pub committer_write_us: u64,
    /// Microseconds rolls waited for the sealer to catch up.
    pub seal_wait_us: u64,
    /// Microseconds the committer waited for the indexer to catch up.
    pub index_wait_us: u64,
    /// Latency of each data sync, in microseconds.
    pub sync_latency_us: HistogramSnapshot,
    /// Events per commit group.
    pub group_events: HistogramSnapshot,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            appends: load(&self.appends),
            appended_events: load(&self.appended_events),
            written_bytes: load(&self.written_bytes),
            commit_groups: load(&self.commit_groups),
            segment_rolls: load(&self.segment_rolls),
            spare_misses: load(&self.spare_misses),
            committer_idle_us: load(&self.committer_idle_us),
            committer_write_us: load(&self.committer_write_us),
            seal_wait_us: load(&self.seal_wait_us),
            index_wait_us: load(&self.index_wait_us),
            sync_latency_us: self.sync_us.snapshot(),
            group_events: self.group_events.snapshot(),
            ..Stats::default()
        }
    }
}
