//! The background threads that write: the committer and the sealer.
//!
//! **The committer** owns the active segment file. It takes everything the
//! sequencer has queued, writes it with one positioned write per segment,
//! syncs once if any queued append wants durability, publishes the records
//! to readers and wakes the appenders. Many appenders thus share one
//! `fdatasync` (group commit). When the queue starts a new segment, the
//! committer first syncs the old one — so a torn write can only ever be at
//! the end of the last segment with data — then creates the new file
//! (header written and synced, renamed into place, directory synced) and
//! hands the old segment to the sealer.
//!
//! **The sealer** seals full segments off the commit path: it appends their
//! leaf hashes to `tree/leaves` and syncs them, then writes the end marker
//! and footer, cuts the file to its final length and syncs it, and swaps the
//! segment into readers' view as a memory-mapped sealed segment. Between
//! seals it zero-fills the spare file that becomes the next segment
//! (each spare under a name of its own).
//!
//! A failed write, sync, create or seal latches the store into refusing
//! writes: every waiting and later append fails until reopen.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sealog_format::Timestamp;
use sealog_format::segment::{END_MARKER_LEN, FOOTER_LEN, SegmentHeader};

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs, VfsFile};
use crate::layout;
use crate::options::{Preallocation, StoreOptions};
use crate::segment::{OpenData, OpenSegment, SealedSegment};
use crate::sidecar::IndexEnv;
use crate::stats::Counters;
use crate::store::{Failure, Inner, Pending, View};
use crate::tree::Tree;

/// Work for the sealer.
pub(crate) enum Job {
    Seal(Arc<OpenSegment>),
    PrepareSpare,
}

/// Handles of the background threads; shuts them down when dropped.
pub(crate) struct Workers {
    committer: Mutex<Option<JoinHandle<()>>>,
    sealer: Mutex<Option<JoinHandle<()>>>,
    sealer_tx: Mutex<Option<Sender<Job>>>,
    indexer: Mutex<Option<crate::indexer::Indexer>>,
    outstanding: Arc<Outstanding>,
    inner: Arc<Inner>,
}

/// Seal jobs sent but not finished.
#[derive(Default)]
pub(crate) struct Outstanding {
    count: Mutex<u64>,
    done: Condvar,
}

/// Segments that may wait to be sealed before a roll waits for the sealer:
/// bounds the memory of unsealed segments and the work of recovery (which
/// scans every unsealed segment) whatever the ingest rate.
pub(crate) const MAX_UNSEALED_BEHIND: u64 = 2;

impl Outstanding {
    fn add(&self) {
        *self.count.lock() += 1;
    }

    /// Waits until fewer than `limit - queued` seals are outstanding, or the
    /// store failed. Returns the time waited.
    fn wait_below(&self, limit: u64, queued: u64, inner: &Inner) -> Duration {
        let started = Instant::now();
        let mut count = self.count.lock();
        while *count + queued >= limit && inner.progress.failure().is_none() {
            self.done.wait_for(&mut count, Duration::from_millis(100));
        }
        started.elapsed()
    }

    fn finish(&self) {
        let mut count = self.count.lock();
        *count = count.saturating_sub(1);
        self.done.notify_all();
    }
}

impl Workers {
    /// Starts the committer (writing to `active`) and the sealer.
    pub(crate) fn start(
        inner: Arc<Inner>,
        active: Option<Arc<OpenSegment>>,
    ) -> Result<Arc<Workers>> {
        let outstanding = Arc::new(Outstanding::default());
        let Some(active) = active else {
            // Read-only: no threads.
            return Ok(Arc::new(Workers {
                committer: Mutex::new(None),
                sealer: Mutex::new(None),
                sealer_tx: Mutex::new(None),
                indexer: Mutex::new(None),
                outstanding,
                inner,
            }));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let sealer = {
            let thread_inner = inner.clone();
            let outstanding = outstanding.clone();
            std::thread::Builder::new()
                .name("sealog-sealer".into())
                .spawn(move || run_sealer(&thread_inner, &rx, &outstanding))
                .map_err(|e| Error::io("spawn thread", &inner.dir, e))?
        };
        let index_progress = Arc::new(crate::indexer::IndexProgress::default());
        let committer = {
            let dir = inner.dir.clone();
            let mut committer = Committer {
                inner: inner.clone(),
                current: active,
                dirty: false,
                sealer: tx.clone(),
                outstanding: outstanding.clone(),
                index_progress: index_progress.clone(),
            };
            std::thread::Builder::new()
                .name("sealog-committer".into())
                .spawn(move || committer.run())
                .map_err(|e| Error::io("spawn thread", &dir, e))?
        };
        if inner.options.preallocation == Preallocation::ZeroFill {
            let _ = tx.send(Job::PrepareSpare);
        }
        let indexer = crate::indexer::Indexer::start(inner.clone(), index_progress)?;
        Ok(Arc::new(Workers {
            committer: Mutex::new(Some(committer)),
            sealer: Mutex::new(Some(sealer)),
            sealer_tx: Mutex::new(Some(tx)),
            indexer: Mutex::new(Some(indexer)),
            outstanding,
            inner,
        }))
    }

    /// Waits until no seal is outstanding.
    pub(crate) fn wait_idle(&self, inner: &Inner) -> Result<()> {
        let mut count = self.outstanding.count.lock();
        while *count > 0 {
            self.outstanding.done.wait(&mut count);
        }
        drop(count);
        match inner.progress.failure() {
            Some(f) => Err(f.to_error()),
            None => Ok(()),
        }
    }

    /// Stops the indexer, the committer (after it drained the queue and
    /// synced) and then the sealer (after it finished outstanding seals);
    /// then, with a signing key, signs a checkpoint of the durable log if it
    /// grew since the last one, so that every record a writer leaves behind
    /// is covered by a checkpoint (and can be given a receipt) without the
    /// key. Only the first call does anything.
    pub(crate) fn shutdown(&self, inner: &Inner) -> Result<()> {
        if let Some(mut indexer) = self.indexer.lock().take() {
            indexer.stop(inner);
        }
        {
            let mut log = inner.log.lock();
            log.closing = true;
        }
        inner.work_ready.notify_all();
        let committer = self.committer.lock().take();
        let writer = committer.is_some();
        if let Some(handle) = committer
            && handle.join().is_err()
        {
            fail(
                inner,
                "committer thread panicked".into(),
                io::ErrorKind::Other,
            );
        }
        drop(self.sealer_tx.lock().take());
        if let Some(handle) = self.sealer.lock().take()
            && handle.join().is_err()
        {
            fail(inner, "sealer thread panicked".into(), io::ErrorKind::Other);
        }
        if writer {
            checkpoint_on_close(inner)?;
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        let _ = self.shutdown(&inner);
    }
}

/// Latches a failure: the sequencer refuses new appends and every waiter
/// wakes with the error.
pub(crate) fn fail(inner: &Inner, cause: String, kind: io::ErrorKind) {
    tracing::error!(store = %inner.dir.display(), %cause, "write failure; refusing writes until reopened");
    let failure = Failure { cause, kind };
    {
        let mut log = inner.log.lock();
        if log.failed.is_none() {
            log.failed = Some(failure.clone());
        }
    }
    inner.progress.fail(failure);
    inner.work_ready.notify_all();
}

fn io_failure(op: &str, path: &Path, e: &io::Error) -> Failure {
    Failure {
        cause: format!("{op} `{}`: {e}", path.display()),
        kind: e.kind(),
    }
}

/// Marks a panicking committer or sealer as a failure, so appenders waiting
/// on it are woken instead of hanging.
struct PanicGuard<'a> {
    inner: &'a Inner,
    what: &'static str,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fail(
                self.inner,
                format!("the {} thread panicked", self.what),
                io::ErrorKind::Other,
            );
        }
    }
}

struct Committer {
    inner: Arc<Inner>,
    current: Arc<OpenSegment>,
    /// Bytes written to `current` since its last sync.
    dirty: bool,
    sealer: Sender<Job>,
    outstanding: Arc<Outstanding>,
    index_progress: Arc<crate::indexer::IndexProgress>,
}

impl Committer {
    fn run(&mut self) {
        let inner = self.inner.clone();
        let _guard = PanicGuard {
            inner: &inner,
            what: "committer",
        };
        loop {
            let idle = Instant::now();
            let Some(work) = self.next_work() else { break };
            Counters::add(
                &self.inner.counters.committer_idle_us,
                idle.elapsed().as_micros() as u64,
            );
            if let Err(failure) = self.process(work) {
                fail(&self.inner, failure.cause, failure.kind);
                return;
            }
        }
        // Closing: make buffered appends durable too.
        if self.dirty && self.inner.log.lock().failed.is_none() {
            match self.current.file.sync_data() {
                Ok(()) => {
                    self.dirty = false;
                    let written = self.inner.progress.written();
                    let generation = self.inner.log.lock().generation;
                    self.inner.progress.advance(written, true, generation);
                }
                Err(e) => {
                    let f = io_failure("fdatasync", &self.current.path, &e);
                    fail(&self.inner, f.cause, f.kind);
                }
            }
        }
    }

    fn next_work(&mut self) -> Option<Pending> {
        let mut log = self.inner.log.lock();
        loop {
            if log.failed.is_some() {
                return None;
            }
            if !log.pending.is_empty() {
                let mut work = std::mem::take(&mut log.pending);
                work.generation = log.generation;
                log.generation += 1;
                return Some(work);
            }
            if log.closing {
                return None;
            }
            match self.inner.options.segment_max_age {
                Some(max_age) if log.active.records > 0 => {
                    let age = log.active.started.elapsed();
                    if age >= max_age {
                        crate::store::roll(&self.inner, &mut log);
                        continue;
                    }
                    self.inner.work_ready.wait_for(&mut log, max_age - age);
                }
                Some(max_age) => {
                    self.inner
                        .work_ready
                        .wait_for(&mut log, max_age.min(Duration::from_secs(1)));
                }
                None => self.inner.work_ready.wait(&mut log),
            }
        }
    }

    fn process(&mut self, work: Pending) -> std::result::Result<(), Failure> {
        let counters = &self.inner.counters;
        // Backpressure: do not run far ahead of the indexer.
        let waited = self.index_progress.wait_for(&self.current);
        Counters::add(&counters.index_wait_us, waited.as_micros() as u64);
        let mut rolled = Vec::new();
        let mut bytes = 0u64;
        let mut events = 0u64;
        let mut targets = Vec::with_capacity(work.chunks.len());
        // Every record before this seq is written and synced: a roll syncs
        // the segment it leaves, so buffered appends become durable (and
        // checkpoints can cover them) at every roll, not only on close.
        let mut synced_through = None;
        for chunk in &work.chunks {
            if let Some(header) = &chunk.new_segment {
                if self.dirty {
                    let started = Instant::now();
                    self.current
                        .file
                        .sync_data()
                        .map_err(|e| io_failure("fdatasync", &self.current.path, &e))?;
                    counters.record_sync(started.elapsed());
                    self.dirty = false;
                }
                synced_through = Some(header.first_seq);
                // Backpressure: do not run ahead of the sealer.
                let waited = self.outstanding.wait_below(
                    MAX_UNSEALED_BEHIND,
                    rolled.len() as u64,
                    &self.inner,
                );
                Counters::add(&counters.seal_wait_us, waited.as_micros() as u64);
                let segment = create_segment(&self.inner, header, &self.sealer)?;
                Counters::add(&counters.segment_rolls, 1);
                {
                    let mut view = self.inner.view.write();
                    let mut next = View {
                        sealed: view.sealed.clone(),
                        open: view.open.clone(),
                    };
                    next.open.push(segment.clone());
                    *view = Arc::new(next);
                }
                rolled.push(std::mem::replace(&mut self.current, segment));
            }
            if chunk.len > 0 {
                let started = Instant::now();
                let buffers: Vec<&[u8]> = chunk.buffers.iter().map(Vec::as_slice).collect();
                self.current
                    .file
                    .write_all_vectored_at(&buffers, chunk.offset)
                    .map_err(|e| io_failure("write", &self.current.path, &e))?;
                self.dirty = true;
                Counters::add(
                    &counters.committer_write_us,
                    started.elapsed().as_micros() as u64,
                );
                bytes += chunk.len;
                events += chunk.records.len() as u64;
            }
            targets.push(self.current.clone());
        }
        if work.sync && self.dirty {
            let started = Instant::now();
            self.current
                .file
                .sync_data()
                .map_err(|e| io_failure("fdatasync", &self.current.path, &e))?;
            counters.record_sync(started.elapsed());
            self.dirty = false;
        }
        Counters::add(&counters.written_bytes, bytes);
        Counters::add(&counters.commit_groups, 1);
        counters.group_events.record(events);
        for (chunk, segment) in work.chunks.iter().zip(&targets) {
            if chunk.records.is_empty() {
                continue;
            }
            let mut data = segment.data.write();
            for r in &chunk.records {
                data.push(
                    r.offset,
                    r.frame_len,
                    r.event_time,
                    r.recorded_at,
                    r.leaf,
                    r.chain,
                );
            }
        }
        if let Some(seq) = synced_through {
            self.inner.progress.mark_durable(seq);
        }
        for segment in rolled {
            self.outstanding.add();
            if self.sealer.send(Job::Seal(segment)).is_err() {
                self.outstanding.finish();
            }
        }
        self.inner
            .progress
            .advance(work.end_seq, !self.dirty, work.generation);
        if !work.chunks.iter().all(|c| c.records.is_empty()) {
            let mut visible = self.inner.visible.lock();
            *visible = (*visible).max(work.end_seq);
            drop(visible);
            self.inner.visible_grew.notify_all();
        }
        Ok(())
    }
}

/// Creates the file of a new segment: header written and synced, renamed
/// into place, directory synced. Uses the zero-filled spare if one is ready.
fn create_segment(
    inner: &Inner,
    header: &SegmentHeader,
    sealer: &Sender<Job>,
) -> std::result::Result<Arc<OpenSegment>, Failure> {
    let spare = match inner.options.preallocation {
        Preallocation::ZeroFill => {
            let spare = inner.spare.lock().take();
            if spare.is_none() {
                Counters::add(&inner.counters.spare_misses, 1);
            }
            spare
        }
        _ => None,
    };
    let zero_fill = false;
    let segment = new_segment_file(
        &*inner.fs,
        &inner.dir,
        &inner.options,
        header,
        spare,
        zero_fill,
    )
    .map_err(|e| Failure {
        kind: e.io_kind().unwrap_or(io::ErrorKind::Other),
        cause: e.to_string(),
    })?;
    if inner.options.preallocation == Preallocation::ZeroFill {
        let _ = sealer.send(Job::PrepareSpare);
    }
    Ok(segment)
}

/// Creates a segment file from `spare` (a zero-filled file) or from scratch,
/// preallocating it as configured (`zero_fill` writes zeros now instead of
/// reserving blocks), writes and syncs the header, renames it into place and
/// syncs the directory.
///
/// A file made from scratch is made under a `.tmp` name; if anything fails
/// before it is renamed into place, it is removed, so that a disk too full
/// for a segment is not also left holding the part that fitted. Space that
/// cannot be reserved is reported as [`Error::SegmentSpace`], with the file
/// and the size asked for.
pub(crate) fn new_segment_file(
    fs: &dyn Vfs,
    dir: &Path,
    options: &StoreOptions,
    header: &SegmentHeader,
    spare: Option<PathBuf>,
    zero_fill: bool,
) -> Result<Arc<OpenSegment>> {
    let name = layout::segment_name(header.first_seq);
    let path = dir.join(&name);
    let segments = dir.join(layout::SEGMENTS);
    let (from, file, made_here) = match spare {
        Some(spare) => {
            let file = fs
                .open(&spare, OpenMode::ReadWrite)
                .map_err(|e| Error::io("open", &spare, e))?;
            (spare, file, false)
        }
        None => {
            let tmp = segments.join(format!("{:020}.seg.tmp", header.first_seq));
            if fs.exists(&tmp).unwrap_or(false) {
                fs.remove_file(&tmp)
                    .map_err(|e| Error::io("remove", &tmp, e))?;
            }
            let file = fs
                .open(&tmp, OpenMode::CreateNew)
                .map_err(|e| Error::io("create", &tmp, e))?;
            let reserved = match options.preallocation {
                Preallocation::ZeroFill if zero_fill => (
                    "write",
                    write_zeros(&*file, options.segment_size, || false).map(drop),
                ),
                Preallocation::ZeroFill | Preallocation::Allocate => {
                    ("fallocate", file.allocate(options.segment_size))
                }
                Preallocation::None => ("", Ok(())),
            };
            if let (op, Err(source)) = reserved {
                drop(file);
                remove_partial(fs, &tmp);
                return Err(space_error(op, tmp, options.segment_size, source));
            }
            (tmp, file, true)
        }
    };
    let installed = file
        .write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write", &from, e))
        .and_then(|()| file.sync_all().map_err(|e| Error::io("fsync", &from, e)))
        .and_then(|()| {
            fs.rename(&from, &path)
                .map_err(|e| Error::io("rename", &from, e))
        });
    if let Err(e) = installed {
        if made_here {
            drop(file);
            remove_partial(fs, &from);
        }
        return Err(e);
    }
    fs.sync_dir(&segments)
        .map_err(|e| Error::io("fsync directory", &segments, e))?;
    Ok(Arc::new(OpenSegment::new(
        *header,
        name,
        path,
        file,
        OpenData::new(header.chain_in),
    )))
}

/// The error of a failure to reserve a new segment file's space: a full
/// disk says so, with the size asked for; anything else is the I/O error.
fn space_error(op: &'static str, path: PathBuf, size: u64, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::StorageFull {
        Error::SegmentSpace {
            op,
            path,
            size,
            source,
        }
    } else {
        Error::io(op, path, source)
    }
}

/// Removes a file that a failed creation left under its temporary name.
/// Best effort: the failure being reported matters more, and recovery
/// removes `.tmp` files on the next open anyway.
fn remove_partial(fs: &dyn Vfs, tmp: &Path) {
    if let Err(e) = fs.remove_file(tmp) {
        tracing::warn!(file = %tmp.display(), error = %e, "could not remove a partly made file");
    }
}

/// Writes `size` zero bytes from offset 0 in 1 MiB pieces; stops early (and
/// returns `Ok(false)`) when `stop` says so.
fn write_zeros(file: &dyn VfsFile, size: u64, stop: impl Fn() -> bool) -> io::Result<bool> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < size {
        if stop() {
            return Ok(false);
        }
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_all_at(zeros.get(..n).unwrap_or_default(), at)?;
        at += n as u64;
    }
    Ok(true)
}

fn run_sealer(inner: &Inner, jobs: &Receiver<Job>, outstanding: &Outstanding) {
    let _guard = PanicGuard {
        inner,
        what: "sealer",
    };
    let checkpoints = inner.options.checkpoints.as_ref();
    let every = checkpoints.and_then(|c| c.every);
    let mut last_checkpoint = Instant::now();
    loop {
        let job = match every {
            Some(every) => match jobs.recv_timeout(every.saturating_sub(last_checkpoint.elapsed()))
            {
                Ok(job) => Some(job),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        match job {
            Some(Job::Seal(segment)) => {
                if inner.progress.failure().is_none() {
                    match seal_with(inner.tree.as_ref(), &inner.index_env, &segment) {
                        Ok((sealed, Some(e))) => {
                            swap_sealed(inner, &segment, sealed);
                            fail(
                                inner,
                                format!("sealing {}: writing its index: {e}", segment.name),
                                e.io_kind().unwrap_or(io::ErrorKind::Other),
                            );
                        }
                        Ok((sealed, None)) => {
                            swap_sealed(inner, &segment, sealed);
                            if checkpoints.is_some_and(|c| c.on_seal) {
                                periodic_checkpoint(inner);
                                last_checkpoint = Instant::now();
                            }
                        }
                        Err(e) => fail(
                            inner,
                            format!("sealing {}: {e}", segment.name),
                            e.io_kind().unwrap_or(io::ErrorKind::Other),
                        ),
                    }
                }
                outstanding.finish();
            }
            Some(Job::PrepareSpare) => {
                // No record depends on the spare yet, but a failed write or
                // sync on this disk latches the store like any other: the
                // next roll would meet the same disk.
                if let Err(e) = prepare_spare(inner) {
                    fail(
                        inner,
                        format!("preparing the next segment file: {e}"),
                        e.io_kind().unwrap_or(io::ErrorKind::Other),
                    );
                }
            }
            None => {
                periodic_checkpoint(inner);
                last_checkpoint = Instant::now();
            }
        }
    }
}

/// The checkpoint signed when a writer closes (with a signing key, if the
/// durable log grew since the last checkpoint and no write failed). A
/// failure is returned to `Store::close`: the records are durable all the
/// same, but they are not covered by a checkpoint.
fn checkpoint_on_close(inner: &Inner) -> Result<()> {
    if inner.options.checkpoints.is_none() || inner.progress.failure().is_some() {
        return Ok(());
    }
    let size = inner.tree_size();
    let latest = inner.latest_checkpoint()?.map_or(0, |c| c.size);
    if size == 0 || size == latest {
        return Ok(());
    }
    inner.checkpoint().map(drop)
}

/// Signs a checkpoint if the durable log grew since the last one. A failed
/// write or sync of the history latches the store (in `Inner::checkpoint`),
/// like every other failed write.
fn periodic_checkpoint(inner: &Inner) {
    if inner.progress.failure().is_some() {
        return;
    }
    let size = inner.tree_size();
    let latest = inner
        .latest_checkpoint()
        .ok()
        .flatten()
        .map_or(0, |c| c.size);
    if size == 0 || size == latest {
        return;
    }
    if let Err(e) = inner.checkpoint() {
        tracing::error!(error = %e, "could not sign a checkpoint");
    }
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
    // most of this already.
    let indexed = {
        let mut index = segment.index.lock();
        segment.catch_up(&mut index, u64::MAX).is_ok()
    };
    let data = segment.data.read();
    let footer = data.footer(&segment.header, Timestamp::now());
    if let Some(tree) = tree {
        tree.append_sealed(segment.header.first_seq, &data.leaves)?;
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
            let index = segment.index.lock();
            (indexed && index.indexed == footer.record_count)
                .then(|| crate::sidecar::encode_mem(identity, columns.0, columns.1, &index))
        };
        let built = match from_memory {
            Some(bytes) => bytes,
            None => sealed.records_with_offsets().and_then(|records| {
                crate::sidecar::encode_records(identity, records, &segment.name)
            }),
        }
        .and_then(|bytes| crate::sidecar::install(env, segment.header.first_seq, &identity, bytes));
        match built {
            Ok(sidecar) => sealed.set_index(sidecar),
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

/// Replaces the open segment with its sealed form in readers' view.
pub(crate) fn swap_sealed(inner: &Inner, open: &Arc<OpenSegment>, sealed: SealedSegment) {
    let mut view = inner.view.write();
    let mut next = View {
        sealed: view.sealed.clone(),
        open: view
            .open
            .iter()
            .filter(|s| !Arc::ptr_eq(s, open))
            .cloned()
            .collect(),
    };
    next.sealed.push(Arc::new(sealed));
    *view = Arc::new(next);
}

/// Zero-fills a spare segment file so the next roll need not allocate.
///
/// Every spare gets a name of its own (`segments/spare-<n>`): a roll may be
/// renaming the previous spare into place while this one is prepared, and
/// the two must never be confused.
fn prepare_spare(inner: &Inner) -> Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if inner.spare.lock().is_some() || inner.log.lock().closing {
        return Ok(());
    }
    let fs = &*inner.fs;
    let segments = inner.dir.join(layout::SEGMENTS);
    let unique = format!(
        "{}-{}-{}",
        layout::SPARE,
        Timestamp::now().as_nanos(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let tmp = segments.join(format!("{unique}.tmp"));
    let path = segments.join(&unique);
    if fs.exists(&tmp).map_err(|e| Error::io("stat", &tmp, e))? {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let size = inner.options.segment_size;
    let complete = match write_zeros(&*file, size, || inner.log.lock().closing) {
        Ok(complete) => complete,
        Err(source) => {
            drop(file);
            remove_partial(fs, &tmp);
            return Err(space_error("write", tmp, size, source));
        }
    };
    if !complete {
        drop(file);
        remove_partial(fs, &tmp);
        return Ok(());
    }
    // Synced before a roll can take it, so that the roll's sync of the new
    // segment's header has none of these zeros left to write.
    let installed = file
        .sync_all()
        .map_err(|e| Error::io("fsync", &tmp, e))
        .and_then(|()| {
            drop(file);
            fs.rename(&tmp, &path)
                .map_err(|e| Error::io("rename", &tmp, e))
        });
    if let Err(e) = installed {
        remove_partial(fs, &tmp);
        return Err(e);
    }
    // The directory is not synced: the roll that takes the spare renames it
    // into place and syncs the directory then. A spare whose name a power
    // loss undoes before that is only a leftover (removed on open) and is
    // made again.
    *inner.spare.lock() = Some(path);
    Ok(())
}
