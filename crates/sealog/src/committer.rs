//! The committer: the only writer of the active segment.
//!
//! It takes everything the sequencer has queued as one generation
//! ([`Sequencer::next_group`](crate::sequencer::Sequencer::next_group)) and
//! commits it in three steps:
//!
//! 1. **write**: one positioned (vectored) write per segment. When the
//!    group starts a new segment, the committer first syncs the old one —
//!    so a torn write can only ever be at the end of the last segment with
//!    data — then creates the new file (header written and synced, renamed
//!    into place, directory synced) and adds it to readers' view;
//! 2. **sync**: one `fdatasync` if any append in the group asked for
//!    [`Durability::Group`](crate::Durability::Group);
//! 3. **publish**: the records become visible to readers, the segments
//!    left behind go to the sealer, and the group's appenders wake.
//!
//! Many appenders thus share one sync (group commit). A failed write,
//! sync or segment creation latches the store, and so does a panic (through
//! [`PanicGuard`]): every waiting and later append fails until reopen.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use sealog_format::segment::SegmentHeader;

use crate::error::{Error, Result};
use crate::indexer::IndexProgress;
use crate::options::Preallocation;
use crate::progress::Failure;
use crate::sealer::MAX_UNSEALED_BEHIND;
use crate::segment::OpenSegment;
use crate::sequencer::Group;
use crate::stats::Counters;
use crate::store::Inner;
use crate::writer::PanicGuard;

/// The committer thread's own state.
pub(crate) struct Committer {
    inner: Arc<Inner>,
    /// The segment the last frames went to.
    current: Arc<OpenSegment>,
    /// Bytes written to `current` since its last sync.
    dirty: bool,
    /// How far the indexer is behind (the committer waits when too far).
    index_progress: Arc<IndexProgress>,
}

/// What writing a group did, for publishing it.
struct Written {
    /// For each chunk of the group, the segment it went to.
    targets: Vec<Arc<OpenSegment>>,
    /// Segments the group's rolls left behind, to be sealed.
    rolled: Vec<Arc<OpenSegment>>,
    /// Every record before this seq is synced: a roll synced the segment
    /// it left, so buffered appends become durable (and checkpoints can
    /// cover them) at every roll, not only on close.
    synced_through: Option<u64>,
    bytes: u64,
    events: u64,
}

impl Committer {
    /// Starts the committer thread, writing to `active`.
    pub(crate) fn spawn(
        inner: Arc<Inner>,
        active: Arc<OpenSegment>,
        index_progress: Arc<IndexProgress>,
    ) -> Result<JoinHandle<()>> {
        let dir = inner.config().dir.clone();
        let committer = Committer {
            inner,
            current: active,
            dirty: false,
            index_progress,
        };
        std::thread::Builder::new()
            .name("sealog-committer".into())
            .spawn(move || committer.run())
            .map_err(|e| Error::io("spawn thread", &dir, e))
    }

    fn run(mut self) {
        let inner = self.inner.clone();
        let _guard = PanicGuard::new(&inner, "committer");
        loop {
            let idle = Instant::now();
            let Some(group) = inner.sequencer().next_group() else {
                break;
            };
            Counters::add(
                &inner.counters().committer_idle_us,
                idle.elapsed().as_micros() as u64,
            );
            if let Err(failure) = self.commit(group) {
                inner.latch(failure);
                return;
            }
        }
        self.sync_on_close();
    }

    /// Writes, syncs and publishes one generation.
    fn commit(&mut self, group: Group) -> std::result::Result<(), Failure> {
        let inner = self.inner.clone();
        let counters = inner.counters();
        // Backpressure: do not run far ahead of the indexer.
        let waited = self.index_progress.wait_for(&self.current);
        Counters::add(&counters.index_wait_us, waited.as_micros() as u64);
        let written = self.write(&group)?;
        if group.sync && self.dirty {
            self.sync()?;
        }
        Counters::add(&counters.written_bytes, written.bytes);
        Counters::add(&counters.commit_groups, 1);
        counters.group_events.record(written.events);
        self.publish(&group, written);
        Ok(())
    }

    /// Writes the group's chunks, rolling to new segments where it says.
    fn write(&mut self, group: &Group) -> std::result::Result<Written, Failure> {
        let mut written = Written {
            targets: Vec::with_capacity(group.chunks.len()),
            rolled: Vec::new(),
            synced_through: None,
            bytes: 0,
            events: 0,
        };
        for chunk in &group.chunks {
            if let Some(header) = &chunk.new_segment {
                let left = self.roll_to(header, written.rolled.len() as u64)?;
                written.rolled.push(left);
                written.synced_through = Some(header.first_seq);
            }
            if chunk.len > 0 {
                let started = Instant::now();
                let buffers: Vec<&[u8]> = chunk.buffers.iter().map(Vec::as_slice).collect();
                self.current
                    .file
                    .write_all_vectored_at(&buffers, chunk.offset)
                    .map_err(|e| Failure::io("write", &self.current.path, &e))?;
                self.dirty = true;
                Counters::add(
                    &self.inner.counters().committer_write_us,
                    started.elapsed().as_micros() as u64,
                );
                written.bytes += chunk.len;
                written.events += chunk.records.len() as u64;
            }
            written.targets.push(self.current.clone());
        }
        Ok(written)
    }

    /// Syncs the current segment if it was written to, creates the segment
    /// `header` describes and makes it current. Returns the segment left.
    /// `queued`: segments this group already left, not yet sent to the
    /// sealer.
    fn roll_to(
        &mut self,
        header: &SegmentHeader,
        queued: u64,
    ) -> std::result::Result<Arc<OpenSegment>, Failure> {
        if self.dirty {
            self.sync()?;
        }
        let inner = &*self.inner;
        // Backpressure: do not run ahead of the sealer.
        let waited = inner
            .sealing()
            .wait_below(MAX_UNSEALED_BEHIND, queued, inner.progress());
        Counters::add(&inner.counters().seal_wait_us, waited.as_micros() as u64);
        let segment = create_segment(inner, header)?;
        Counters::add(&inner.counters().segment_rolls, 1);
        inner.readers().add_open(segment.clone());
        Ok(std::mem::replace(&mut self.current, segment))
    }

    /// `fdatasync` of the current segment.
    fn sync(&mut self) -> std::result::Result<(), Failure> {
        let started = Instant::now();
        self.current
            .file
            .sync_data()
            .map_err(|e| Failure::io("fdatasync", &self.current.path, &e))?;
        self.inner.counters().record_sync(started.elapsed());
        self.dirty = false;
        Ok(())
    }

    /// Makes the group's records visible, hands the segments it left to
    /// the sealer, and wakes its appenders.
    fn publish(&self, group: &Group, written: Written) {
        let inner = &*self.inner;
        for (chunk, segment) in group.chunks.iter().zip(&written.targets) {
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
        if let Some(seq) = written.synced_through {
            inner.progress().mark_durable(seq);
        }
        for segment in written.rolled {
            inner.sealing().seal_later(segment);
        }
        inner
            .progress()
            .advance(group.end_seq, !self.dirty, group.generation);
        if group.has_records() {
            inner.readers().publish(group.end_seq);
        }
    }

    /// Closing: makes buffered appends durable too.
    fn sync_on_close(&mut self) {
        let inner = self.inner.clone();
        if !self.dirty || inner.sequencer().has_failed() {
            return;
        }
        match self.current.file.sync_data() {
            Ok(()) => {
                self.dirty = false;
                let written = inner.progress().written();
                let generation = inner.sequencer().open_generation();
                inner.progress().advance(written, true, generation);
            }
            Err(e) => inner.latch(Failure::io("fdatasync", &self.current.path, &e)),
        }
    }
}

/// Creates the file of a new segment: header written and synced, renamed
/// into place, directory synced. Uses the zero-filled spare if one is ready.
fn create_segment(
    inner: &Inner,
    header: &SegmentHeader,
) -> std::result::Result<Arc<OpenSegment>, Failure> {
    let config = inner.config();
    let zero_filled = config.options.preallocation == Preallocation::ZeroFill;
    let spare = if zero_filled {
        let spare = inner.sealing().take_spare();
        if spare.is_none() {
            Counters::add(&inner.counters().spare_misses, 1);
        }
        spare
    } else {
        None
    };
    let segment = crate::segment_file::new_segment_file(
        &*config.fs,
        &config.dir,
        &config.options,
        header,
        spare,
        false,
    )
    .map_err(|e| Failure::from(&e))?;
    if zero_filled {
        inner.sealing().prepare_spare_later();
    }
    Ok(segment)
}
