//! The sealer: seals full segments off the commit path, prepares the spare
//! segment file, and signs the periodic checkpoints.
//!
//! A seal appends the segment's leaf hashes to `tree/leaves` (and the tree
//! levels they complete) and syncs them, then writes the end marker and
//! footer, cuts the file to its final length and syncs it, writes the
//! index sidecar, and swaps the segment into readers' view as a
//! memory-mapped sealed segment. Between seals it zero-fills the spare file
//! that becomes the next segment.
//!
//! [`Sealing`] is what the other threads share with the sealer: its job
//! queue, the count of seals not finished (the committer waits when too
//! many are, so unsealed segments stay few), and the spare. [`Sealer`] is
//! the thread's own state.
//!
//! A failed seal or spare latches the store, like every failed write.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sealog_format::Timestamp;
use sealog_format::segment::{END_MARKER_LEN, FOOTER_LEN};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};

use crate::error::{Error, Result};
use crate::progress::{Failure, Progress};
use crate::segment::{OpenSegment, SealedSegment};
use crate::sidecar::IndexEnv;
use crate::store::Inner;
use crate::tree::Tree;
use crate::writer::PanicGuard;

/// Segments that may wait to be sealed before a roll waits for the sealer:
/// bounds the memory of unsealed segments and the work of recovery (which
/// scans every unsealed segment) whatever the ingest rate.
pub(crate) const MAX_UNSEALED_BEHIND: u64 = 2;

/// Key-filter entries one job writes before it queues the next, so that
/// seals queued meanwhile need not wait for a whole store's catch-up.
const KEY_FILTERS_PER_JOB: usize = 16;

/// Work for the sealer.
pub(crate) enum Job {
    Seal(Arc<OpenSegment>),
    PrepareSpare,
    /// Append key-filter entries for sealed segments that have none.
    KeyFilters,
}

/// What the committer and the store share with the sealer thread.
pub(crate) struct Sealing {
    /// The sealer's queue; `None` before the thread starts (and for a
    /// read-only store) and once it is told to stop.
    jobs: Mutex<Option<Sender<Job>>>,
    /// Seals queued and not finished.
    backlog: Mutex<u64>,
    /// Signalled when `backlog` shrinks, and when the store latches.
    changed: Condvar,
    /// A zero-filled file ready to become the next segment.
    spare: Mutex<Option<PathBuf>>,
}

impl Sealing {
    /// `spare`: a spare file left by the previous run, if any.
    pub(crate) fn new(spare: Option<PathBuf>) -> Sealing {
        Sealing {
            jobs: Mutex::new(None),
            backlog: Mutex::new(0),
            changed: Condvar::new(),
            spare: Mutex::new(spare),
        }
    }

    /// Connects the queue to a running sealer.
    pub(crate) fn connect(&self, jobs: Sender<Job>) {
        *self.jobs.lock() = Some(jobs);
    }

    /// Disconnects the queue: the sealer finishes the jobs queued, then
    /// stops.
    pub(crate) fn disconnect(&self) {
        drop(self.jobs.lock().take());
    }

    /// Queues a seal of `segment` (the committer, after the roll that left
    /// it is published).
    pub(crate) fn seal_later(&self, segment: Arc<OpenSegment>) {
        *self.backlog.lock() += 1;
        if !self.send(Job::Seal(segment)) {
            // No sealer: it stopped after a latched failure (it runs until
            // the committer has stopped). The segment stays unsealed, and
            // the next open seals it.
            self.finished_one();
        }
    }

    /// Asks the sealer to write the key-filter entries sealed segments
    /// lack (after an open: a store written before the filters, or an
    /// append a crash cut short).
    pub(crate) fn key_filters_later(&self) {
        self.send(Job::KeyFilters);
    }

    /// Asks the sealer to prepare a spare segment file.
    pub(crate) fn prepare_spare_later(&self) {
        // Without a sealer (it stopped after a latched failure) no spare is
        // made, and a roll makes its segment file from scratch.
        self.send(Job::PrepareSpare);
    }

    fn send(&self, job: Job) -> bool {
        match &*self.jobs.lock() {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        }
    }

    fn finished_one(&self) {
        let mut backlog = self.backlog.lock();
        *backlog = backlog.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Waits until fewer than `limit - queued` seals are outstanding, or the
    /// store failed. Returns the time waited.
    pub(crate) fn wait_below(&self, limit: u64, queued: u64, progress: &Progress) -> Duration {
        let started = Instant::now();
        let mut backlog = self.backlog.lock();
        while *backlog + queued >= limit && progress.failure().is_none() {
            self.changed
                .wait_for(&mut backlog, Duration::from_millis(100));
        }
        started.elapsed()
    }

    /// Waits until no seal is outstanding; returns the latched failure if
    /// there is one (also when a seal will never finish: a panicked sealer
    /// latches the store).
    pub(crate) fn wait_idle(&self, progress: &Progress) -> Result<()> {
        let mut backlog = self.backlog.lock();
        while *backlog > 0 && progress.failure().is_none() {
            self.changed
                .wait_for(&mut backlog, Duration::from_millis(100));
        }
        drop(backlog);
        match progress.failure() {
            Some(f) => Err(f.to_error()),
            None => Ok(()),
        }
    }

    /// Wakes whoever waits for the backlog (the store latched).
    pub(crate) fn wake(&self) {
        let _backlog = self.backlog.lock();
        self.changed.notify_all();
    }

    /// Takes the spare file, if one is ready.
    pub(crate) fn take_spare(&self) -> Option<PathBuf> {
        self.spare.lock().take()
    }

    /// Whether a spare file is ready.
    pub(crate) fn spare_ready(&self) -> bool {
        self.spare.lock().is_some()
    }
}

/// The sealer thread's own state.
pub(crate) struct Sealer {
    inner: Arc<Inner>,
    jobs: Receiver<Job>,
    last_checkpoint: Instant,
}

impl Sealer {
    /// Starts the sealer thread, taking its jobs from `jobs`.
    pub(crate) fn spawn(inner: Arc<Inner>, jobs: Receiver<Job>) -> Result<JoinHandle<()>> {
        let dir = inner.config().dir.clone();
        let mut sealer = Sealer {
            inner,
            jobs,
            last_checkpoint: Instant::now(),
        };
        std::thread::Builder::new()
            .name("sealog-sealer".into())
            .spawn(move || sealer.run())
            .map_err(|e| Error::io("spawn thread", &dir, e))
    }

    fn run(&mut self) {
        let inner = self.inner.clone();
        let _guard = PanicGuard::new(&inner, "sealer");
        let checkpoints = inner.config().options.checkpoints.as_ref();
        let every = checkpoints.and_then(|c| c.every);
        let on_seal = checkpoints.is_some_and(|c| c.on_seal);
        loop {
            let job = match every {
                Some(every) => match self
                    .jobs
                    .recv_timeout(every.saturating_sub(self.last_checkpoint.elapsed()))
                {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.jobs.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            match job {
                Some(Job::Seal(segment)) => {
                    if self.seal(&segment) && on_seal {
                        self.checkpoint();
                    }
                    inner.sealing().finished_one();
                }
                Some(Job::PrepareSpare) => self.prepare_spare(),
                Some(Job::KeyFilters) => {
                    if self.update_key_filters(KEY_FILTERS_PER_JOB) {
                        inner.sealing().key_filters_later();
                    }
                }

                None => self.checkpoint(),
            }
        }
    }

    /// Seals `segment` and swaps it into readers' view; returns whether it
    /// is sealed with its index written. Skipped once the store latched.
    fn seal(&self, segment: &Arc<OpenSegment>) -> bool {
        let inner = &*self.inner;
        if inner.progress().failure().is_some() {
            return false;
        }
        match seal_with(inner.tree(), inner.index_env(), segment) {
            Ok((sealed, None)) => {
                inner.readers().seal(segment, sealed);
                segment.snapshot.retire(&*inner.config().fs, &segment.path);
                if !self.update_policy_note() {
                    return false;
                }
                // The segment just sealed is the newest without an entry;
                // others left (an open's catch-up) have a job queued.
                self.update_key_filters(1);
                inner.progress().failure().is_none()
            }
            Ok((sealed, Some(e))) => {
                inner.readers().seal(segment, sealed);
                segment.snapshot.retire(&*inner.config().fs, &segment.path);
                let what = format!("sealing {}: writing its index", segment.name);
                inner.latch(Failure::of(&what, &e));
                false
            }
            Err(e) => {
                inner.latch(Failure::of(&format!("sealing {}", segment.name), &e));
                false
            }
        }
    }

    /// Brings the privacy-policy note up to the end of the sealed log
    /// (`crate::policy_note`); returns whether it was written or was up
    /// to date. A failed write or sync latches the store, as a sidecar's
    /// does: the note is derived data, but the disk failed.
    fn update_policy_note(&self) -> bool {
        match crate::policy_note::update(&self.inner) {
            Ok(()) => true,
            Err(e) => {
                self.inner
                    .latch(Failure::of("writing the privacy-policy note", &e));
                false
            }
        }
    }

    /// Appends the key-filter entries of up to `limit` sealed segments that
    /// lack one, newest first; returns whether more remain (and the store
    /// has not latched). An entry that cannot be built (the segment's
    /// records are damaged) is logged and left out: searches then open that
    /// segment's index. A failed write or sync latches the store, as a
    /// sidecar's does: the file is derived data, but the disk failed.
    fn update_key_filters(&self, limit: usize) -> bool {
        let inner = &*self.inner;
        if inner.progress().failure().is_some() {
            return false;
        }
        let filters = &inner.index_env().key_filters;
        let catalog = filters.catalog();
        let view = inner.readers().snapshot();
        let mut missing = view.sealed.iter().rev().filter(|s| {
            s.pruned_record().is_none()
                && !catalog.has(&crate::sidecar::identity(&s.header, &s.footer))
        });
        for s in missing.by_ref().take(limit) {
            let entry = match s.key_filter_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(segment = %s.name, error = %e, "could not build the segment's key filter; searches open its index instead");
                    continue;
                }
            };
            if let Err(e) = filters.append(&entry) {
                inner.latch(Failure::of("writing the key filters", &e));
                return false;
            }
        }
        missing.next().is_some() && !inner.sequencer().is_closing()
    }

    /// Zero-fills a spare segment file so the next roll need not allocate.
    fn prepare_spare(&self) {
        let inner = &*self.inner;
        let sealing = inner.sealing();
        if sealing.spare_ready() || inner.sequencer().is_closing() {
            return;
        }
        let config = inner.config();
        let segments = config.dir.join(crate::layout::SEGMENTS);
        let made = crate::segment_file::make_spare(
            &*config.fs,
            &segments,
            config.options.segment_size,
            || inner.sequencer().is_closing(),
        );
        match made {
            Ok(Some(path)) => *sealing.spare.lock() = Some(path),
            Ok(None) => {}
            // No record depends on the spare yet, but a failed write or
            // sync on this disk latches the store like any other: the next
            // roll would meet the same disk.
            Err(e) => inner.latch(Failure::of("preparing the next segment file", &e)),
        }
    }

    /// Signs a checkpoint if the durable log grew since the last one. A
    /// failed write or sync of the history latches the store (in
    /// `Inner::checkpoint`); any other failure is logged, and the next
    /// period tries again.
    fn checkpoint(&mut self) {
        if let Err(e) = checkpoint_if_grown(&self.inner) {
            tracing::error!(error = %e, "could not sign a checkpoint");
        }
        self.last_checkpoint = Instant::now();
    }
}

/// With a signing key, signs a checkpoint of the durable log if it grew
/// since the last one and no write failed. Used periodically, and when a
/// writer closes (a failure is then returned to `Store::close`: the records
/// are durable all the same, but not covered by a checkpoint).
pub(crate) fn checkpoint_if_grown(inner: &Inner) -> Result<()> {
    if inner.config().options.checkpoints.is_none() || inner.progress().failure().is_some() {
        return Ok(());
    }
    let size = inner.tree_size();
    let latest = inner.latest_checkpoint()?.map_or(0, |c| c.size);
    if size == 0 || size == latest {
        return Ok(());
    }
    inner.checkpoint().map(drop)
}

/// Seals `segment`: leaves and tree levels synced first, then end marker
/// and footer, the file cut to length and synced; then its index sidecar is
/// written from its records. Returns the sealed segment, and the failure to
/// write its sidecar if there was one: the segment is sealed all the same
/// (the index is derived data, rebuilt when needed), but a failed write or
/// sync must still latch the store.
pub(crate) fn seal_with(
    tree: Option<&Tree>,
    env: &Arc<IndexEnv>,
    segment: &OpenSegment,
) -> Result<(SealedSegment, Option<Error>)> {
    // Bring the in-memory index up to date before taking the data lock
    // (queries lock index, then data), so the sidecar can be encoded from
    // it rather than by decoding every record again. The indexer has done
    // most of this already. A failure here only means the sidecar is built
    // from the records below, which meets (and reports) the same problem.
    let indexed = {
        let mut index = segment.index.write();
        segment.catch_up(&mut index, u64::MAX).is_ok()
    };
    let data = segment.data.read();
    let footer = data.footer(&segment.header, Timestamp::now()).expect(
        "a segment is sealed only once it holds a record: rolls leave only segments with \
         records, and an open seals only those",
    );
    if let Some(tree) = tree {
        tree.append_sealed(segment.header.first_seq, &data.leaves.contiguous())?;
    }
    let mut tail = Vec::with_capacity(END_MARKER_LEN + FOOTER_LEN);
    tail.extend_from_slice(&sealog_format::frame::end_marker());
    tail.extend_from_slice(&footer.encode());
    let file = &segment.file;
    let path = &segment.path;
    file.write_all_at(&tail, footer.frames_end)
        .map_err(|e| Error::io("write", path, e))?;
    file.set_len(footer.file_len())
        .map_err(|e| Error::io("truncate", path, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", path, e))?;
    let map = file.map().map_err(|e| Error::io("map", path, e))?;
    let sealed = SealedSegment::new(
        segment.header,
        footer,
        segment.name.clone(),
        map,
        None,
        Some(data.offsets.clone()),
        env.clone(),
    );
    // The sidecar is derived data: from the in-memory index when it covers
    // every record, else from the records through the new map. If it
    // cannot be written now, the first query that needs it rebuilds it.
    let mut index_failure = None;
    if env.writable {
        let identity = crate::sidecar::identity(&segment.header, &footer);
        let columns = (data.offsets.clone(), data.event_times.clone());
        drop(data);
        let from_memory = {
            let index = segment.index.read();
            (indexed && index.indexed == footer.record_count)
                .then(|| crate::sidecar::encode_mem(identity, columns.0, columns.1, &index))
        };
        let built = match from_memory {
            Some(bytes) => bytes,
            None => sealed.with_records(|records| {
                crate::sidecar::encode_records(identity, records, &segment.name)
            }),
        }
        .and_then(|bytes| {
            // The key-filter entry from the bytes just encoded (the sealer
            // appends it once the segment is in readers' view).
            let entry = crate::sidecar::key_filter_entry_of(&identity, &bytes);
            crate::sidecar::install(env, segment.header.first_seq, &identity, bytes)
                .map(|sidecar| (sidecar, entry))
        });
        match built {
            Ok((sidecar, entry)) => {
                sealed.set_index(sidecar);
                if let Some(entry) = entry {
                    sealed.set_key_filter_entry(entry);
                }
            }
            Err(e) => {
                tracing::warn!(segment = %segment.name, error = %e, "could not write the index; it will be rebuilt when needed");
                if e.io_kind().is_some() {
                    index_failure = Some(e);
                }
            }
        }
    }
    // The open segment's in-memory index is freed with the segment, once
    // no view holds it: a query that took its view before the swap still
    // uses it, and clearing it here would make that query index the whole
    // segment again.
    Ok((sealed, index_failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_wait_ends_when_seals_finish_or_the_store_latches() {
        let sealing = Arc::new(Sealing::new(None));
        let progress = Arc::new(Progress::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        sealing.connect(tx);
        sealing.prepare_spare_later();
        assert!(matches!(rx.try_recv(), Ok(Job::PrepareSpare)));
        *sealing.backlog.lock() = 2;
        // Two outstanding, none queued: below three, so no wait.
        sealing.wait_below(3, 0, &progress);
        let waiter = {
            let (sealing, progress) = (sealing.clone(), progress.clone());
            std::thread::spawn(move || sealing.wait_idle(&progress))
        };
        sealing.finished_one();
        sealing.finished_one();
        assert!(waiter.join().unwrap().is_ok());

        *sealing.backlog.lock() = 1;
        let waiter = {
            let (sealing, progress) = (sealing.clone(), progress.clone());
            std::thread::spawn(move || sealing.wait_idle(&progress))
        };
        progress.fail(Failure::new(
            "the sealer thread panicked".into(),
            std::io::ErrorKind::Other,
        ));
        sealing.wake();
        match waiter.join().unwrap() {
            Err(Error::WritesRefused { cause, .. }) => {
                assert_eq!(cause, "the sealer thread panicked");
            }
            other => panic!("expected the latched failure, got {other:?}"),
        }
    }

    #[test]
    fn a_seal_queued_without_a_sealer_is_not_counted_as_outstanding() {
        let sealing = Sealing::new(None);
        let progress = Progress::new(0);
        let segment_dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::StdFs;
        let options = crate::options::StoreOptions {
            preallocation: crate::options::Preallocation::None,
            ..Default::default()
        };
        let header = sealog_format::segment::SegmentHeader {
            store_id: [1; 16],
            segment_no: 0,
            first_seq: 0,
            chain_in: [0; 32],
            created_at: Timestamp::from_nanos(0),
        };
        crate::fs::create_dirs(&fs, &[&segment_dir.path().join(crate::layout::SEGMENTS)]).unwrap();
        let segment = crate::segment_file::new_segment_file(
            &fs,
            segment_dir.path(),
            &options,
            &header,
            None,
            false,
        )
        .unwrap();
        sealing.seal_later(segment);
        assert!(sealing.wait_idle(&progress).is_ok());
    }
}
