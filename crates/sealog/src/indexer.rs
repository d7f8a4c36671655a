//! The indexer thread: keeps the in-memory indexes of open segments caught
//! up with the records the committer publishes.
//!
//! A query must see every committed record, so before it searches an open
//! segment it indexes whatever was committed since the index was last
//! brought up to date. Left to queries alone, that debt grows with the
//! ingest rate: at 300k events/s a query arriving after one quiet second
//! would first have to decode and index 300k records. The indexer pays the
//! debt as it is made, a commit generation at a time, so a query during a
//! busy ingest only indexes the few records of the last generation.
//!
//! Indexes are derived data: a failure here is logged and left to the next
//! query, which retries it and reports the error; it never latches the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::segment::OpenSegment;
use crate::store::Inner;

/// Records indexed per hold of a segment's index lock, so a query waiting
/// for the lock waits for at most this many (~2 ms of work).
const CHUNK: u64 = 2048;

/// Committed but unindexed records of the active segment beyond which the
/// committer waits for the indexer before it commits more: what a query
/// may have to index itself (~4–8 ms of work). When ingest saturates the
/// CPU, this makes the indexer's share a part of the cost of ingest instead
/// of a debt that the next query pays.
pub(crate) const MAX_LAG: u64 = 4_096;

/// The longest the committer waits for the indexer per commit group: the
/// index is derived data and never holds up durability for long.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(100);

/// How the indexer tells the committer it made progress.
#[derive(Default)]
pub(crate) struct IndexProgress {
    lock: Mutex<()>,
    advanced: Condvar,
}

impl IndexProgress {
    fn notify(&self) {
        let _guard = self.lock.lock();
        self.advanced.notify_all();
    }

    /// Waits (at most [`MAX_WAIT`]) until `segment` lags its committed
    /// records by at most [`MAX_LAG`]; returns the time waited.
    pub(crate) fn wait_for(&self, segment: &OpenSegment) -> Duration {
        let lag = || {
            let committed = segment.data.read().len();
            committed.saturating_sub(segment.indexed.load(Ordering::Acquire))
        };
        if lag() <= MAX_LAG {
            return Duration::ZERO;
        }
        let started = Instant::now();
        let deadline = started + MAX_WAIT;
        let mut guard = self.lock.lock();
        while lag() > MAX_LAG && Instant::now() < deadline {
            self.advanced.wait_until(&mut guard, deadline);
        }
        started.elapsed()
    }
}

/// Brings the index of every open segment up to date and writes the rest
/// of its snapshot (`crate::open_index`), so that a read-only open after
/// the writer closes indexes nothing. Called when the writer closes, after
/// the committer stopped; failures are logged (indexes are derived data).
pub(crate) fn persist_all(inner: &Inner) {
    for segment in &inner.readers().snapshot().open {
        let mut index = segment.index.write();
        let caught_up = segment.catch_up(&mut index, u64::MAX);
        drop(index);
        match caught_up {
            Ok(_) => segment
                .snapshot
                .persist(&*inner.config().fs, segment, 1, &|size| {
                    inner.snapshot_frontier(size)
                }),
            Err(e) => {
                tracing::warn!(segment = %segment.name, error = %e, "could not index committed records before closing");
            }
        }
    }
}

/// The running indexer; stop it with [`Indexer::stop`].
pub(crate) struct Indexer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Indexer {
    pub(crate) fn start(inner: Arc<Inner>, progress: Arc<IndexProgress>) -> Result<Indexer> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let dir = inner.config().dir.clone();
        let handle = std::thread::Builder::new()
            .name("sealog-indexer".into())
            .spawn(move || run(&inner, &thread_stop, &progress))
            .map_err(|e| Error::io("spawn thread", &dir, e))?;
        Ok(Indexer {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self, inner: &Inner) {
        self.stop.store(true, Ordering::Release);
        inner.readers().wake_all();
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!(store = %inner.config().dir.display(), "the indexer thread panicked; open segments are indexed by queries");
        }
    }
}

fn run(inner: &Inner, stop: &AtomicBool, progress: &IndexProgress) {
    let mut seen = 0u64;
    loop {
        let Some(visible) = inner.readers().wait_beyond(seen, stop) else {
            return;
        };
        seen = visible;
        let view = inner.readers().snapshot();
        for segment in &view.open {
            loop {
                // A segment sealed meanwhile has its sidecar; its memory
                // index was dropped and must not be rebuilt.
                let still_open = inner
                    .readers()
                    .snapshot()
                    .open
                    .iter()
                    .any(|s| Arc::ptr_eq(s, segment));
                if !still_open {
                    break;
                }
                // The write lock only when there is something to add: a
                // writer waiting would hold up the readers of the index
                // (queries, and the sealer encoding a full segment's sidecar).
                let caught_up = if segment.has_unindexed() {
                    let mut index = segment.index.write();
                    segment.catch_up(&mut index, CHUNK)
                } else {
                    Ok(false)
                };
                progress.notify();
                match caught_up {
                    Ok(true) => {}
                    Ok(false) => {
                        segment.snapshot.persist(
                            &*inner.config().fs,
                            segment,
                            crate::open_index::PERSIST_EVERY,
                            &|size| inner.snapshot_frontier(size),
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(segment = %segment.name, error = %e, "could not index committed records; queries will retry");
                        break;
                    }
                }
                if stop.load(Ordering::Acquire) {
                    return;
                }
            }
        }
    }
}
