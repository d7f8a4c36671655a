//! Counters of a client and its batchers.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the client's counters (since it was built). A client and
/// every batcher made from it share one set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Events waiting in batcher queues or in a batch being filled (a gauge).
    pub queued: u64,
    /// Events in batches being sent, retries included (a gauge).
    pub in_flight: u64,
    /// Events the server acknowledged as durable.
    pub sent: u64,
    /// Requests the server acknowledged.
    pub batches: u64,
    /// Requests retried after a transient failure (each retry counts).
    pub retried: u64,
    /// Acknowledgements the server replayed from its idempotency memory: a
    /// retry of a batch it had already written, not written twice.
    pub replayed: u64,
    /// Events that ended with an error (invalid, refused, or given up on).
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queued: AtomicU64,
    pub in_flight: AtomicU64,
    pub sent: AtomicU64,
    pub batches: AtomicU64,
    pub retried: AtomicU64,
    pub replayed: AtomicU64,
    pub failed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        // A gauge never goes below zero, whatever the interleaving.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    pub fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            queued: get(&self.queued),
            in_flight: get(&self.in_flight),
            sent: get(&self.sent),
            batches: get(&self.batches),
            retried: get(&self.retried),
            replayed: get(&self.replayed),
            failed: get(&self.failed),
        }
    }
}
