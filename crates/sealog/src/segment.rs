//! Segments in memory: the two states a segment file is in. Walking
//! frames and telling a torn tail from corruption is in `walk`.
//!
//! An [`OpenSegment`] has no footer yet: it is being written, or it is full
//! and waiting for the sealer. What readers may see of it (the records that
//! are committed) lives in memory: frame offsets, event times, leaf hashes,
//! the incremental Merkle state and the chain head. Its bytes are read with
//! positioned reads, never mapped.
//!
//! A [`SealedSegment`] has a valid footer and is never written again; it is
//! read through a memory map.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use sealog_format::frame::{self, FrameRead};
use sealog_format::record;
use sealog_format::segment::{HEADER_LEN, SegmentFooter, SegmentHeader};
use sealog_format::{Hash, Timestamp};

use crate::error::{Corruption, CorruptionKind, Location, Result};
use crate::fs::VfsFile;
use crate::index::{IndexView, MemIndex, MemView};
use crate::mmap::Mapped;
use crate::sidecar::{IndexEnv, Sidecar};

mod readahead;
mod walk;

pub(crate) use walk::{
    Decoded, FrameWalker, SECTOR, Stop, Tail, WalkedRecord, all_zero, classify_tail, data_end,
    interrupted_seal,
};

/// What is known about the committed records of an unsealed segment.
#[derive(Clone, Debug)]
pub(crate) struct OpenData {
    /// Frame offset of each committed record.
    pub offsets: Vec<u32>,
    /// Event time of each committed record.
    pub event_times: Vec<i64>,
    /// Leaf hash of each committed record.
    pub leaves: HashColumn,
    /// Chain value after each committed record.
    pub chains: HashColumn,
    /// End of the last committed frame.
    pub frames_end: u64,
    /// Chain value after the last committed record (`chain_in` if none).
    pub chain_head: Hash,
    /// Recorded time of the last committed record.
    pub last_recorded_at: Option<Timestamp>,
    /// Recorded time of the first committed record.
    pub first_recorded_at: Option<Timestamp>,
    /// Earliest and latest event time of the committed records.
    pub event_time_range: Option<(i64, i64)>,
}

impl OpenData {
    pub(crate) fn new(chain_in: Hash) -> OpenData {
        OpenData {
            offsets: Vec::new(),
            event_times: Vec::new(),
            leaves: HashColumn::default(),
            chains: HashColumn::default(),
            frames_end: HEADER_LEN as u64,
            chain_head: chain_in,
            last_recorded_at: None,
            first_recorded_at: None,
            event_time_range: None,
        }
    }

    /// Makes room for `records` more records in the offset and time
    /// columns (the hash columns grow as they are added to: a read-only
    /// open leaves a snapshot's hashes in its map).
    pub(crate) fn reserve(&mut self, records: usize) {
        self.offsets.reserve(records);
        self.event_times.reserve(records);
    }

    /// Adds a committed record.
    pub(crate) fn push(
        &mut self,
        offset: u32,
        frame_len: u32,
        event_time: i64,
        recorded_at: Timestamp,
        leaf: Hash,
        chain: Hash,
    ) {
        self.offsets.push(offset);
        self.event_times.push(event_time);
        self.leaves.push(leaf);
        self.chains.push(chain);
        self.frames_end = u64::from(offset) + u64::from(frame_len);
        self.chain_head = chain;
        self.first_recorded_at.get_or_insert(recorded_at);
        self.last_recorded_at = Some(recorded_at);
        self.event_time_range = Some(match self.event_time_range {
            Some((lo, hi)) => (lo.min(event_time), hi.max(event_time)),
            None => (event_time, event_time),
        });
    }

    pub(crate) fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Where committed record `ordinal`'s frame starts; past the committed
    /// records, where they end.
    pub(crate) fn frame_start(&self, ordinal: u64) -> u64 {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.offsets.get(i))
            .map_or(self.frames_end, |&o| u64::from(o))
    }

    /// The byte range (frame offset, end) of committed record `ordinal`'s
    /// frame; `None` past the committed records.
    pub(crate) fn frame_span(&self, ordinal: u64) -> Option<(u64, u64)> {
        (ordinal < self.len()).then(|| (self.frame_start(ordinal), self.frame_start(ordinal + 1)))
    }

    /// The footer that seals these records; `None` if there is none (a
    /// footer states the time ranges of its records, which an empty
    /// segment does not have: only a segment holding records is sealed).
    pub(crate) fn footer(
        &self,
        header: &SegmentHeader,
        sealed_at: Timestamp,
    ) -> Option<SegmentFooter> {
        let (Some(first_recorded), Some(last_recorded), Some((min_event, max_event))) = (
            self.first_recorded_at,
            self.last_recorded_at,
            self.event_time_range,
        ) else {
            return None;
        };
        Some(SegmentFooter {
            first_seq: header.first_seq,
            record_count: self.len(),
            segment_no: header.segment_no,
            frames_end: self.frames_end,
            min_event_time: Timestamp::from_nanos(min_event),
            max_event_time: Timestamp::from_nanos(max_event),
            min_recorded_at: first_recorded,
            max_recorded_at: last_recorded,
            // Computed here, by the sealer, off the commit path.
            merkle_root: sealog_format::merkle::root(&self.leaves.contiguous()),
            chain_head: self.chain_head,
            store_id: header.store_id,
            sealed_at,
        })
    }
}

/// One hash per record of an open segment (leaf hashes, chain values):
/// those an index snapshot holds, read in place from the snapshot's map,
/// then those added since. A read-only open of a full segment then copies
/// none of its ~13 MiB of hashes into fresh memory, which the kernel zeroes
/// before the copy (the largest part of such an open's system time).
///
/// The snapshot's bytes do not change while mapped: it is only appended
/// to, by whole chunks, and removed (`crate::open_index`, `crate::mmap`).
#[derive(Clone, Default)]
pub(crate) struct HashColumn {
    /// The snapshot's bytes, if any hashes are read from them.
    map: Option<Arc<Mapped>>,
    /// Runs of hashes in `map`, in order: (index of the run's first hash,
    /// byte offset of the run in the map); a run ends where the next begins
    /// (the last at `mapped`).
    runs: Vec<(usize, usize)>,
    /// Hashes in `runs`, all before those of `owned`.
    mapped: usize,
    owned: Vec<Hash>,
}

impl HashColumn {
    pub(crate) fn len(&self) -> usize {
        self.mapped + self.owned.len()
    }

    /// Adds a hash after the others.
    pub(crate) fn push(&mut self, hash: Hash) {
        self.owned.push(hash);
    }

    /// Adds `hashes`, which lie in `map`, after the others: left in the map
    /// while no hash was added otherwise, copied after that.
    pub(crate) fn extend_mapped(&mut self, map: &Arc<Mapped>, hashes: &[Hash]) {
        let base = map.as_ptr() as usize;
        let at = (hashes.as_ptr() as usize).wrapping_sub(base);
        let inside = at
            .checked_add(std::mem::size_of_val(hashes))
            .is_some_and(|end| end <= map.len());
        let same_map = self.map.as_ref().is_none_or(|m| Arc::ptr_eq(m, map));
        if !inside || !same_map || !self.owned.is_empty() {
            self.owned.extend_from_slice(hashes);
            return;
        }
        if hashes.is_empty() {
            return;
        }
        self.map.get_or_insert_with(|| map.clone());
        self.runs.push((self.mapped, at));
        self.mapped += hashes.len();
    }

    /// Hash `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&Hash> {
        if i >= self.mapped {
            return self.owned.get(i - self.mapped);
        }
        let run = self.runs.partition_point(|&(first, _)| first <= i);
        let &(first, at) = self.runs.get(run.checked_sub(1)?)?;
        let bytes = self.map.as_ref()?.get(at + (i - first) * 32..)?;
        bytes.first_chunk::<32>()
    }

    /// Hashes `from..to`, in order; `None` if the range is not inside.
    pub(crate) fn range(&self, from: usize, to: usize) -> Option<impl Iterator<Item = &Hash> + '_> {
        (from <= to && to <= self.len()).then(|| (from..to).filter_map(|i| self.get(i)))
    }

    /// Every hash, in one slice: borrowed when none is in a snapshot's map
    /// (a writer's segment: writers do not load snapshots), copied otherwise.
    pub(crate) fn contiguous(&self) -> std::borrow::Cow<'_, [Hash]> {
        if self.runs.is_empty() {
            return std::borrow::Cow::Borrowed(&self.owned);
        }
        let mut all = Vec::with_capacity(self.len());
        all.extend((0..self.mapped).filter_map(|i| self.get(i)).copied());
        all.extend_from_slice(&self.owned);
        std::borrow::Cow::Owned(all)
    }
}

impl std::fmt::Debug for HashColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashColumn")
            .field("mapped", &self.mapped)
            .field("owned", &self.owned.len())
            .finish()
    }
}

/// A segment without a footer.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    pub header: SegmentHeader,
    /// File name relative to the store directory.
    pub name: String,
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
    pub data: RwLock<OpenData>,
    /// The index of the committed records, kept up to date by the indexer
    /// thread and brought fully up to date by each query. Written only to
    /// add records; queries, and the sealer encoding the sidecar (hundreds
    /// of ms for a full segment), read it under shared locks.
    pub index: RwLock<MemIndex>,
    /// How many records `index` covers, readable without its lock.
    pub indexed: AtomicU64,
    /// The snapshot of `index` in `segments/<seq>.oidx` (writable stores).
    pub snapshot: crate::open_index::Persist,
}

impl OpenSegment {
    pub(crate) fn new(
        header: SegmentHeader,
        name: String,
        path: PathBuf,
        file: Arc<dyn VfsFile>,
        data: OpenData,
    ) -> OpenSegment {
        OpenSegment::indexed_from(header, name, path, file, data, MemIndex::default())
    }

    /// An open segment whose first records are already indexed (from a
    /// snapshot, see `crate::open_index`).
    pub(crate) fn indexed_from(
        header: SegmentHeader,
        name: String,
        path: PathBuf,
        file: Arc<dyn VfsFile>,
        data: OpenData,
        index: MemIndex,
    ) -> OpenSegment {
        let indexed = index.indexed;
        OpenSegment {
            header,
            name,
            path,
            file,
            data: RwLock::new(data),
            index: RwLock::new(index),
            indexed: AtomicU64::new(indexed),
            snapshot: crate::open_index::Persist::default(),
        }
    }

    /// Indexes up to `max` of the records committed since the last call;
    /// returns whether committed records remain unindexed. The frames are
    /// read without holding the data lock, which the committer needs to
    /// publish new records: committed frames never change.
    pub(crate) fn catch_up(&self, index: &mut MemIndex, max: u64) -> Result<bool> {
        let (from, to, start, end, more) = {
            let data = self.data.read();
            let from = index.indexed;
            let committed = data.len();
            if from >= committed {
                return Ok(false);
            }
            let to = committed.min(from.saturating_add(max));
            (
                from,
                to,
                data.frame_start(from),
                data.frame_start(to),
                to < committed,
            )
        };
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| crate::error::Error::io("read", &self.path, e))?;
        let mut pos = 0usize;
        for ordinal in from..to {
            let location = || {
                Location::file(&self.name)
                    .at(start + pos as u64)
                    .seq(self.header.first_seq + ordinal)
            };
            // Past the end (a bug) reads as the end of the frames, which is
            // reported as damage below: never taken as fewer records.
            let frame = match frame::read_frame(buf.get(pos..).unwrap_or_default()) {
                Ok(FrameRead::Frame(f)) => f,
                Ok(FrameRead::End) => {
                    return Err(Corruption::new(
                        location(),
                        CorruptionKind::ZeroedFrame { nonzero: 0 },
                    )
                    .into());
                }
                Err(e) => return Err(Corruption::new(location(), CorruptionKind::Frame(e)).into()),
            };
            let view = record::decode(frame.body)
                .map_err(|e| Corruption::new(location(), CorruptionKind::Record(e)))?;
            index.push(&view);
            self.indexed.store(index.indexed, Ordering::Release);
            pos += frame.len;
        }
        Ok(more)
    }

    /// Whether committed records are not in the index yet (read without
    /// its lock).
    pub(crate) fn has_unindexed(&self) -> bool {
        self.indexed.load(Ordering::Acquire) < self.data.read().len()
    }

    /// Runs `f` with an up-to-date view of the index, the number of
    /// committed records it covers, and their event-time range.
    pub(crate) fn with_index<T>(
        &self,
        f: impl FnOnce(&dyn IndexView, u64, Option<(i64, i64)>) -> Result<T>,
    ) -> Result<T> {
        if self.has_unindexed() {
            let mut index = self.index.write();
            self.catch_up(&mut index, u64::MAX)?;
        }
        // Records committed since are left to the next query (as they
        // were when the catch-up held the lock through the query).
        let index = self.index.read();
        let data = self.data.read();
        let len = index.indexed.min(data.len());
        let view = MemView {
            index: &index,
            event_times: &data.event_times,
        };
        f(&view, len, data.event_time_range)
    }

    /// The record bytes of the committed records among `ordinals`, each
    /// frame checked, read with one positioned read per run of nearby
    /// frames rather than one read each (a page of one actor's newest
    /// events is usually a few runs). Best effort: a frame that cannot be
    /// read or checked here is left out, and reading it alone with
    /// [`OpenSegment::read_record`] says what is wrong with it.
    pub(crate) fn read_records(&self, ordinals: &[u32]) -> Vec<(u32, Vec<u8>)> {
        // (ordinal, frame offset, frame end), in file order.
        let mut frames: Vec<(u32, u64, u64)> = {
            let data = self.data.read();
            ordinals
                .iter()
                .filter_map(|&ordinal| {
                    let (offset, end) = data.frame_span(u64::from(ordinal))?;
                    Some((ordinal, offset, end))
                })
                .collect()
        };
        frames.sort_unstable_by_key(|&(_, offset, _)| offset);
        let mut out = Vec::with_capacity(frames.len());
        let mut rest = frames.as_slice();
        while let Some(&(_, start, first_end)) = rest.first() {
            let mut end = first_end;
            let run = rest
                .iter()
                .take_while(|&&(_, offset, frame_end)| {
                    let joins = offset <= end.saturating_add(READ_RUN_GAP)
                        && frame_end.saturating_sub(start) <= READ_RUN_MAX;
                    if joins {
                        end = end.max(frame_end);
                    }
                    joins
                })
                .count()
                .max(1);
            let (these, after) = rest.split_at(run.min(rest.len()));
            rest = after;
            let Ok(len) = usize::try_from(end.saturating_sub(start)) else {
                continue;
            };
            let mut buf = vec![0u8; len];
            if self.file.read_exact_at(&mut buf, start).is_err() {
                continue;
            }
            for &(ordinal, offset, frame_end) in these {
                let bytes = usize::try_from(offset - start)
                    .ok()
                    .zip(usize::try_from(frame_end - start).ok())
                    .and_then(|(from, to)| buf.get(from..to));
                if let Some(Ok(FrameRead::Frame(f))) = bytes.map(frame::read_frame) {
                    out.push((ordinal, f.body.to_vec()));
                }
            }
        }
        out
    }

    /// The bytes of the frame of committed record `ordinal`, checked.
    pub(crate) fn read_record(&self, ordinal: u64) -> Result<Option<Vec<u8>>> {
        let Some((offset, end)) = self.data.read().frame_span(ordinal) else {
            return Ok(None);
        };
        let len = usize::try_from(end - offset).unwrap_or(0);
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| crate::error::Error::io("read", &self.path, e))?;
        let location = || {
            Location::file(&self.name)
                .at(offset)
                .seq(self.header.first_seq + ordinal)
        };
        match frame::read_frame(&buf) {
            Ok(FrameRead::Frame(f)) => Ok(Some(f.body.to_vec())),
            Ok(FrameRead::End) => {
                Err(Corruption::new(location(), CorruptionKind::ZeroedFrame { nonzero: 0 }).into())
            }
            Err(e) => Err(Corruption::new(location(), CorruptionKind::Frame(e)).into()),
        }
    }
}

/// Frames of an open segment closer than this are read together by
/// [`OpenSegment::read_records`] (the bytes between them come along: cheaper
/// than a system call each).
const READ_RUN_GAP: u64 = 16 * 1024;

/// The most bytes one read of [`OpenSegment::read_records`] spans.
const READ_RUN_MAX: u64 = 1024 * 1024;

/// A sealed segment, read through a memory map.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub header: SegmentHeader,
    pub footer: SegmentFooter,
    pub name: String,
    pub map: Mapped,
    offsets: OnceLock<Walked>,
    env: Arc<IndexEnv>,
    index: RwLock<Option<Arc<Sidecar>>>,
    /// The sidecar file as found, to locate frames after a damaged one;
    /// looked for once.
    fallback: OnceLock<Option<Arc<Sidecar>>>,
    /// The sidecar file mapped by [`SealedSegment::ask_sidecar_head`], not
    /// opened yet: its open takes this map.
    head_asked: Mutex<Option<Mapped>>,
    /// [`SealedSegment::ask_sidecar_head`] found the sidecar's first page
    /// on disk: its sections are likely there too.
    head_was_cold: std::sync::atomic::AtomicBool,
    /// Whether a read by seq found no usable sidecar to map (it then
    /// walks the frames, once, and does not try again; a query that
    /// rebuilds the sidecar makes it usable).
    sidecar_unusable: std::sync::atomic::AtomicBool,
    /// For a segment archived and removed from the store: where its bytes
    /// come from, and the copy once fetched and checked (`map` is empty).
    remote: Option<Remote>,
    /// The key-filter entry built when the segment was sealed, until it is
    /// appended.
    key_filter: Mutex<Option<Vec<u8>>>,
    /// For a segment stored compressed (`map` is then the compressed
    /// file): its block table once a read needed it, or why the file does
    /// not read.
    packed: Option<OnceLock<std::result::Result<crate::compressed::Packed, Box<Corruption>>>>,
    /// For a segment stored compressed: where its blocks start (the
    /// container head, block table and dictionary come before).
    blocks_at: u64,
    /// Whether its files were found wholly in memory, and when
    /// ([`SealedSegment::in_memory`]).
    warmth: Warmth,
}

/// What the last look at a sealed segment's pages found.
#[derive(Debug, Default)]
struct Warmth {
    /// Milliseconds since [`epoch`] of the last look, plus one (0: never).
    looked: AtomicU64,
    in_memory: std::sync::atomic::AtomicBool,
}

/// How long a segment found wholly in memory is taken to still be, and
/// one found not to be is taken to still not be, before its pages are
/// looked at again ([`SealedSegment::in_memory`]).
const IN_MEMORY_FOR_MS: u64 = 250;
const NOT_IN_MEMORY_FOR_MS: u64 = 1_000;

/// The instant [`Warmth::looked`] counts from.
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// A pruned segment's source, and its fetched copy.
#[derive(Debug)]
struct Remote {
    pruned: crate::pruned::PrunedSegment,
    source: Option<Arc<dyn crate::pruned::ArchiveSource>>,
    fetched: OnceLock<Mapped>,
}

/// The frame offsets found by walking a sealed segment's frames.
#[derive(Debug)]
struct Walked {
    /// Offsets of the records before the first frame that cannot be read
    /// (all of them if none).
    offsets: Vec<u32>,
    /// Why the walk stopped early.
    error: Option<Box<Corruption>>,
}

impl SealedSegment {
    /// A sealed segment read through `map`, its file's bytes. `compressed`:
    /// the file is stored compressed, its blocks starting at that offset
    /// (as its first bytes say: the caller read them, so that neither
    /// this nor a search's read-ahead needs the map's first page, which
    /// may have left the page cache since).
    pub(crate) fn new(
        header: SegmentHeader,
        footer: SegmentFooter,
        name: String,
        map: Mapped,
        compressed: Option<u64>,
        offsets: Option<Vec<u32>>,
        env: Arc<IndexEnv>,
    ) -> SealedSegment {
        let cell = match offsets {
            Some(offsets) => OnceLock::from(Walked {
                offsets,
                error: None,
            }),
            None => OnceLock::new(),
        };
        let packed = compressed.map(|_| OnceLock::new());
        SealedSegment {
            header,
            footer,
            name,
            map,
            packed,
            blocks_at: compressed.unwrap_or_default(),
            offsets: cell,
            env,
            index: RwLock::new(None),
            fallback: OnceLock::new(),
            head_asked: Mutex::new(None),
            head_was_cold: std::sync::atomic::AtomicBool::new(false),
            sidecar_unusable: std::sync::atomic::AtomicBool::new(false),
            remote: None,
            key_filter: Mutex::new(None),
            warmth: Warmth::default(),
        }
    }

    /// Whether a search can read this segment without waiting for a disk
    /// or a fetch: it is local, its index is open (and a compressed one's
    /// block table read), and every page of its file and of its index's
    /// was in memory when last looked at (`mincore`), at most
    /// [`IN_MEMORY_FOR_MS`] ago. Pages found not to be are not looked at
    /// again for [`NOT_IN_MEMORY_FOR_MS`]. A page the kernel evicts in the
    /// meantime is read back by the fault that touches it, as on any read:
    /// this bounds how often that can happen to a caller that must not
    /// wait, it does not forbid it.
    pub(crate) fn in_memory(&self) -> bool {
        // Asked every time (cheap): a segment sealed a moment ago has its
        // index installed a moment later.
        let Some(index) = self.open_local_index() else {
            return false;
        };
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        let looked = self.warmth.looked.load(Ordering::Acquire);
        if looked != 0 {
            let age = now.saturating_sub(looked - 1);
            let was = self.warmth.in_memory.load(Ordering::Acquire);
            let keep = if was {
                IN_MEMORY_FOR_MS
            } else {
                NOT_IN_MEMORY_FOR_MS
            };
            if age < keep {
                return was;
            }
        }
        let found = index.in_memory() && self.map.resident_whole();
        self.warmth.in_memory.store(found, Ordering::Release);
        self.warmth
            .looked
            .store(now.saturating_add(1), Ordering::Release);
        found
    }

    /// What [`SealedSegment::in_memory`] looks at, looked at now.
    #[cfg(test)]
    pub(crate) fn files_in_memory(&self) -> bool {
        self.open_local_index()
            .is_some_and(|index| index.in_memory() && self.map.resident_whole())
    }

    /// The index, if it is open and the segment is local with its block
    /// table (if compressed) read: read without opening anything.
    fn open_local_index(&self) -> Option<Arc<Sidecar>> {
        let ready = self.remote.is_none()
            && self
                .packed
                .as_ref()
                .is_none_or(|cell| cell.get().is_some_and(|p| p.is_ok()));
        if ready {
            self.index.read().clone()
        } else {
            None
        }
    }

    /// The compressed file's block table, for a segment stored compressed
    /// (read and checked on first use).
    fn packed(&self) -> Option<Result<&crate::compressed::Packed>> {
        self.packed.as_ref().map(|cell| {
            cell.get_or_init(|| {
                crate::compressed::Packed::open(&self.name, &self.map).map_err(|e| match e {
                    crate::Error::Corruption(c) => c,
                    other => Box::new(Corruption::new(
                        Location::file(&self.name),
                        CorruptionKind::Layout(other.to_string()),
                    )),
                })
            })
            .as_ref()
            .map_err(|e| crate::error::Error::Corruption(e.clone()))
        })
    }

    /// Whether the segment's file is stored compressed.
    pub(crate) fn is_compressed(&self) -> bool {
        self.packed.is_some()
    }

    /// The segment's uncompressed bytes, decoded for a compressed segment
    /// (every block checked), borrowed otherwise.
    pub(crate) fn whole_image(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        self.fetch()?;
        match self.packed() {
            Some(packed) => packed?
                .image(&self.map, &self.name)
                .map(std::borrow::Cow::Owned),
            None => Ok(std::borrow::Cow::Borrowed(self.image())),
        }
    }

    /// A segment archived and removed from the store: its records are
    /// fetched through `source` on first use and checked against the
    /// SHA-256 `pruned.log` keeps, never read otherwise.
    pub(crate) fn pruned(
        pruned: &crate::pruned::PrunedSegment,
        source: Option<Arc<dyn crate::pruned::ArchiveSource>>,
        env: Arc<IndexEnv>,
    ) -> SealedSegment {
        let mut s = SealedSegment::new(
            pruned.header,
            pruned.footer,
            pruned.name(),
            Mapped::from_vec(Vec::new()),
            None,
            None,
            env,
        );
        s.remote = Some(Remote {
            pruned: pruned.clone(),
            source,
            fetched: OnceLock::new(),
        });
        s
    }

    /// The pruned-segment record, if this segment is not local.
    pub(crate) fn pruned_record(&self) -> Option<&crate::pruned::PrunedSegment> {
        self.remote.as_ref().map(|r| &r.pruned)
    }

    /// Fetches a pruned segment's copy if it is not at hand yet (a local
    /// segment has nothing to fetch). A fetch that fails is not kept: the
    /// next read tries again.
    fn fetch(&self) -> Result<()> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if remote.fetched.get().is_some() {
            return Ok(());
        }
        let p = &remote.pruned;
        let Some(source) = &remote.source else {
            return Err(crate::pruned::unavailable(
                p,
                "no archive was given to read it from (the command line's --archive URL, \
                 the server's `archive`)",
            ));
        };
        let bytes = source.fetch_segment(p)?;
        let sha = crate::pruned::sha256(&bytes);
        if sha != p.segment_sha256 {
            return Err(crate::pruned::unavailable(
                p,
                &format!(
                    "the copy fetched has SHA-256 {}, not {} as recorded in pruned.log when \
                     it was removed",
                    hex32(&sha),
                    hex32(&p.segment_sha256)
                ),
            ));
        }
        // An archived copy may be stored compressed: its image is kept.
        let image = match crate::compressed::image_of(&p.name(), &bytes)? {
            std::borrow::Cow::Owned(image) => image,
            std::borrow::Cow::Borrowed(_) => Arc::unwrap_or_clone(bytes),
        };
        let _ = remote.fetched.set(Mapped::from_vec(image));
        Ok(())
    }

    /// The segment's bytes: the local map, or a pruned segment's fetched
    /// copy (empty until fetched).
    fn image(&self) -> &[u8] {
        match &self.remote {
            // A compressed file is read through its block table.
            None if self.packed.is_some() => &[],
            None => &self.map,
            Some(r) => r.fetched.get().map_or(&[], |m| m),
        }
    }

    /// The footer's event-time range, `(min, max)` in nanoseconds.
    pub(crate) fn footer_time_range(&self) -> (i64, i64) {
        (
            self.footer.min_event_time.as_nanos(),
            self.footer.max_event_time.as_nanos(),
        )
    }

    /// The store's key filters, which know this segment by its identity.
    pub(crate) fn key_filters(&self) -> &crate::key_filter::KeyFilters {
        &self.env.key_filters
    }

    /// This segment's key-filter entry, built from its sidecar (checked
    /// whole first; a damaged one is rebuilt from the records). `None` for
    /// a segment that is not local.
    pub(crate) fn key_filter_entry(&self) -> Result<Option<Vec<u8>>> {
        if self.remote.is_some() {
            return Ok(None);
        }
        if let Some(entry) = self.key_filter.lock().take() {
            return Ok(Some(entry));
        }
        let identity = crate::sidecar::identity(&self.header, &self.footer);
        let sidecar = self.index()?;
        match sidecar.key_filter_entry(&identity) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(crate::Error::IndexDamaged { reason, .. }) => {
                let sidecar = self.rebuild_index(&reason)?;
                sidecar.key_filter_entry(&identity).map(Some)
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps the key-filter entry built with the sidecar at seal time.
    pub(crate) fn set_key_filter_entry(&self, entry: Vec<u8>) {
        *self.key_filter.lock() = Some(entry);
    }

    /// Installs the sidecar written when the segment was sealed.
    pub(crate) fn set_index(&self, sidecar: Sidecar) {
        *self.index.write() = Some(Arc::new(sidecar));
    }

    /// The segment's index: its sidecar, mapped on first use, or rebuilt
    /// from the records if it is missing, damaged or not this segment's.
    pub(crate) fn index(&self) -> Result<Arc<Sidecar>> {
        if let Some(index) = self.index.read().clone() {
            return Ok(index);
        }
        if self.remote.is_some() {
            return self.rebuild_index("the segment is archived, not local");
        }
        let mut slot = self.index.write();
        match self.map_sidecar(&mut slot) {
            Ok(sidecar) => Ok(sidecar),
            Err(reason) => {
                let sidecar = Arc::new(self.rebuild(&reason)?);
                *slot = Some(sidecar.clone());
                Ok(sidecar)
            }
        }
    }

    /// The sidecar in `slot` (the index's, locked by the caller), mapping
    /// it there first if it is sound and this segment's; the reason when it
    /// is not (nothing is rebuilt here).
    fn map_sidecar(
        &self,
        slot: &mut Option<Arc<Sidecar>>,
    ) -> std::result::Result<Arc<Sidecar>, String> {
        if let Some(index) = slot.clone() {
            return Ok(index);
        }
        let identity = crate::sidecar::identity(&self.header, &self.footer);
        let first_seq = self.header.first_seq;
        let asked = self.head_asked.lock().take();
        let sidecar = Arc::new(match asked {
            Some(map) => crate::sidecar::load_mapped(first_seq, map, &identity)?,
            None => crate::sidecar::load(&self.env, first_seq, &identity)?,
        });
        *slot = Some(sidecar.clone());
        Ok(sidecar)
    }

    /// Maps the sidecar, if it is not open yet, and asks the kernel for its
    /// header and section table without waiting: a search about to open
    /// the sidecars of several segments asks for them all first, so that
    /// the disk reads them together instead of one open after the other
    /// (each a wait of a random read when they are not in memory).
    pub(crate) fn ask_sidecar_head(&self) {
        if self.remote.is_some() || self.index.read().is_some() {
            return;
        }
        let mut asked = self.head_asked.lock();
        if asked.is_none()
            && let Ok(map) = crate::sidecar::map_file(&self.env, self.header.first_seq)
        {
            if !map.resident(0, 1) {
                map.will_need(0, crate::sidecar::HEAD_ASKED);
                self.head_was_cold.store(true, Ordering::Relaxed);
            }
            *asked = Some(map);
        }
    }

    /// [`SealedSegment::advise_sections`], once, if
    /// [`SealedSegment::ask_sidecar_head`] found the sidecar's header on
    /// disk (in memory, its sections most likely are too, and asking for
    /// them costs more than it saves).
    pub(crate) fn advise_sections_if_cold(&self, sections: &[crate::search::SectionUse]) {
        if self.head_was_cold.swap(false, Ordering::Relaxed) {
            self.advise_sections(sections);
        }
    }

    /// Replaces a sidecar found damaged during a query.
    pub(crate) fn rebuild_index(&self, reason: &str) -> Result<Arc<Sidecar>> {
        let mut slot = self.index.write();
        let sidecar = Arc::new(self.rebuild(reason)?);
        *slot = Some(sidecar.clone());
        Ok(sidecar)
    }

    fn rebuild(&self, reason: &str) -> Result<Sidecar> {
        if self.remote.is_some() {
            // Built in memory from the fetched copy (the archived
            // sidecar's content, in the current layout); a pruned
            // segment's files stay removed.
            self.fetch()?;
            let identity = crate::sidecar::identity(&self.header, &self.footer);
            let bytes = self.with_records(|records| {
                crate::sidecar::encode_records(identity, records, &self.name)
            })?;
            let name = crate::sidecar::sidecar_name(self.header.first_seq);
            return Sidecar::open(name.clone(), Mapped::from_vec(bytes), &identity).map_err(|e| {
                crate::error::Error::IndexDamaged {
                    file: name,
                    reason: e.to_string(),
                }
            });
        }
        tracing::warn!(
            segment = %self.name,
            %reason,
            "rebuilding the segment's index from its records"
        );
        self.env
            .rebuilds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.with_records(|records| {
            crate::sidecar::rebuild(&self.env, &self.header, &self.footer, records, &self.name)
        })
    }

    /// Calls `f` with every record and its frame offset, read through the
    /// map (a compressed segment's image decoded once for the walk).
    pub(crate) fn with_records<T>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = Result<(u32, &[u8])>>) -> Result<T>,
    ) -> Result<T> {
        let image = self.whole_image()?;
        // Walked from this image if not walked yet (a compressed segment's
        // is not decoded a second time for it).
        let walked = self.offsets.get_or_init(|| self.walk_image(&image));
        let offsets = match &walked.error {
            Some(e) => return Err(crate::error::Error::Corruption(e.clone())),
            None => &walked.offsets,
        };
        let frames = image.get(..self.frames_end_usize()).unwrap_or_default();
        let mut records = offsets.iter().enumerate().map(|(ordinal, &offset)| {
            let location = || {
                Location::file(&self.name)
                    .at(u64::from(offset))
                    .seq(self.header.first_seq + ordinal as u64)
            };
            match frame::read_frame(frames.get(offset as usize..).unwrap_or_default()) {
                Ok(FrameRead::Frame(fr)) => Ok((offset, fr.body)),
                Ok(FrameRead::End) => Err(Corruption::new(
                    location(),
                    CorruptionKind::ZeroedFrame { nonzero: 0 },
                )
                .into()),
                Err(e) => Err(Corruption::new(location(), CorruptionKind::Frame(e)).into()),
            }
        });
        f(&mut records)
    }

    /// The frame offsets of every record, found by walking the frames once;
    /// the first frame that cannot be read is an error.
    pub(crate) fn offsets(&self) -> std::result::Result<&[u32], Box<Corruption>> {
        let walked = self.walked();
        match &walked.error {
            Some(e) => Err(e.clone()),
            None => Ok(&walked.offsets),
        }
    }

    fn walked(&self) -> &Walked {
        self.offsets.get_or_init(|| {
            // A compressed segment is walked through its decoded image.
            match self.packed() {
                Some(packed) => match packed.and_then(|p| p.image(&self.map, &self.name)) {
                    Ok(image) => self.walk_image(&image),
                    Err(e) => Walked {
                        offsets: Vec::new(),
                        error: Some(match e {
                            crate::Error::Corruption(c) => c,
                            other => Box::new(Corruption::new(
                                Location::file(&self.name),
                                CorruptionKind::Layout(other.to_string()),
                            )),
                        }),
                    },
                },
                None => self.walk_image(self.image()),
            }
        })
    }

    fn walk_image(&self, image: &[u8]) -> Walked {
        let mut offsets = Vec::new();
        let error = self.walk_offsets(image, &mut offsets).err();
        Walked { offsets, error }
    }

    fn walk_offsets(
        &self,
        image: &[u8],
        offsets: &mut Vec<u32>,
    ) -> std::result::Result<(), Box<Corruption>> {
        let count = usize::try_from(self.footer.record_count).unwrap_or(usize::MAX);
        offsets.reserve(count.min(1 << 24));
        // A map shorter than the footer says holds no frames, and the walk
        // reports the footer's count as wrong.
        let frames = image.get(..self.frames_end_usize()).unwrap_or_default();
        let mut pos = HEADER_LEN;
        while offsets.len() < count {
            let location = Location::file(&self.name)
                .at(pos as u64)
                .seq(self.header.first_seq + offsets.len() as u64);
            // `pos` only moves by whole frames read from `frames`.
            match frame::read_frame(frames.get(pos..).unwrap_or_default()) {
                Ok(FrameRead::Frame(f)) => {
                    offsets.push(u32::try_from(pos).unwrap_or(u32::MAX));
                    pos += f.len;
                }
                Ok(FrameRead::End) => {
                    return Err(Box::new(Corruption::new(
                        location,
                        CorruptionKind::FieldMismatch {
                            field: "record count in footer",
                            stored: count.to_string(),
                            computed: offsets.len().to_string(),
                        },
                    )));
                }
                Err(e) => {
                    return Err(Box::new(Corruption::new(
                        location,
                        CorruptionKind::Frame(e),
                    )));
                }
            }
        }
        Ok(())
    }

    fn frames_end_usize(&self) -> usize {
        usize::try_from(self.footer.frames_end).unwrap_or(usize::MAX)
    }

    /// The record bytes of record `ordinal`, checked. The frame is found
    /// through the index's offset column when the index is loaded.
    pub(crate) fn read_record(&self, ordinal: u64) -> Result<Option<Cow<'_, [u8]>>> {
        if ordinal >= self.footer.record_count {
            return Ok(None);
        }
        self.fetch()?;
        // The sidecar's offset column locates the frame; mapped here if no
        // query has yet (a read by seq would otherwise walk every frame of
        // the segment first: ~25 ms for 64 MiB, ~100 ms compressed, which
        // decodes the whole image). Without a usable sidecar, the walk.
        let loaded = self.index.read().clone();
        let loaded = match loaded {
            Some(index) => Some(index),
            None if self.remote.is_none() && !self.sidecar_unusable.load(Ordering::Relaxed) => {
                let mapped = self.map_sidecar(&mut self.index.write()).ok();
                if mapped.is_none() {
                    self.sidecar_unusable.store(true, Ordering::Relaxed);
                }
                mapped
            }
            None => None,
        };
        if let Some(index) = loaded
            && let Ok(Some(offset)) = index.offset(u32::try_from(ordinal).unwrap_or(u32::MAX))
        {
            return self.read_frame_at(ordinal, offset);
        }
        self.read_record_walked(ordinal)
    }

    /// The record bytes of record `ordinal`, found by walking the frames.
    /// Records before a damaged frame are read; one after it is found
    /// through the sidecar's offset column if the sidecar is there,
    /// otherwise its read fails with the damage that stopped the walk.
    fn read_record_walked(&self, ordinal: u64) -> Result<Option<Cow<'_, [u8]>>> {
        let walked = self.walked();
        let index = usize::try_from(ordinal).unwrap_or(usize::MAX);
        if let Some(&offset) = walked.offsets.get(index) {
            return self.read_frame_at(ordinal, offset);
        }
        let Some(error) = &walked.error else {
            return Ok(None);
        };
        if let Some(body) = self.read_located(ordinal)? {
            return Ok(Some(body));
        }
        Err(crate::error::Error::Corruption(error.clone()))
    }

    /// Record `ordinal` through the offset column of the sidecar file, if
    /// the file is sound and has it; its checksum is checked, and its seq,
    /// since the offset is derived data.
    fn read_located(&self, ordinal: u64) -> Result<Option<Cow<'_, [u8]>>> {
        let sidecar = self.fallback.get_or_init(|| {
            let identity = crate::sidecar::identity(&self.header, &self.footer);
            crate::sidecar::load(&self.env, self.header.first_seq, &identity)
                .ok()
                .map(Arc::new)
        });
        let Some(sidecar) = sidecar else {
            return Ok(None);
        };
        let Ok(Some(offset)) = sidecar.offset(u32::try_from(ordinal).unwrap_or(u32::MAX)) else {
            return Ok(None);
        };
        let body = self.read_frame_at(ordinal, offset)?;
        let seq = self.header.first_seq + ordinal;
        Ok(body.filter(|b| record::decode(b).is_ok_and(|v| v.seq == seq)))
    }

    fn read_frame_at(&self, ordinal: u64, offset: u32) -> Result<Option<Cow<'_, [u8]>>> {
        if let Some(packed) = self.packed() {
            return packed?
                .frame(
                    &self.map,
                    &self.name,
                    (self.header.segment_no, self.header.first_seq),
                    ordinal,
                    offset,
                    &self.env.blocks,
                )
                .map(|body| Some(Cow::Owned(body)));
        }
        // An offset (from an index: derived data) or a footer that points
        // past the frames reads as no frame, an error naming the place.
        let frames = self
            .image()
            .get(..self.frames_end_usize())
            .unwrap_or_default();
        let location = || {
            Location::file(&self.name)
                .at(u64::from(offset))
                .seq(self.header.first_seq + ordinal)
        };
        match frame::read_frame(frames.get(offset as usize..).unwrap_or_default()) {
            Ok(FrameRead::Frame(f)) => Ok(Some(Cow::Borrowed(f.body))),
            Ok(FrameRead::End) => {
                Err(Corruption::new(location(), CorruptionKind::ZeroedFrame { nonzero: 0 }).into())
            }
            Err(e) => Err(Corruption::new(location(), CorruptionKind::Frame(e)).into()),
        }
    }
}

fn hex32(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hash `i` of the tests below.
    fn h(i: usize) -> Hash {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
        hash[31] = 0xA5;
        hash
    }

    #[test]
    fn a_hash_column_reads_mapped_runs_then_owned_hashes_in_order() {
        // A "snapshot" of three runs of hashes between other bytes.
        let mut bytes = vec![7u8; 5];
        let mut runs = Vec::new();
        let mut next = 0;
        for len in [3usize, 0, 4, 2] {
            let at = bytes.len();
            for i in next..next + len {
                bytes.extend_from_slice(&h(i));
            }
            runs.push((at, len));
            next += len;
            bytes.extend_from_slice(&[9u8; 11]);
        }
        let map = Arc::new(Mapped::from_vec(bytes));
        let hashes_at = |at: usize, len: usize| map[at..at + 32 * len].as_chunks::<32>().0;
        let mut column = HashColumn::default();
        for &(at, len) in &runs {
            column.extend_mapped(&map, hashes_at(at, len));
        }
        column.push(h(9));
        column.push(h(10));
        // Added after owned hashes: copied, still in order.
        column.extend_mapped(&map, hashes_at(runs[0].0, 1));
        let expected: Vec<Hash> = (0..11).map(h).chain([h(0)]).collect();
        assert_eq!(column.len(), expected.len());
        assert_eq!(column.mapped, 9);
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(column.get(i), Some(want), "hash {i}");
        }
        assert_eq!(column.get(expected.len()), None);
        assert_eq!(&*column.contiguous(), expected.as_slice());
        let middle: Vec<Hash> = column.range(2, 10).unwrap().copied().collect();
        assert_eq!(middle, expected[2..10]);
        assert!(column.range(5, 13).is_none());
        // Hashes outside the map are copied, not referred to.
        let mut other = HashColumn::default();
        other.extend_mapped(&map, &[h(42)]);
        assert_eq!((other.mapped, other.get(0)), (0, Some(&h(42))));
        // A column without a map is its owned hashes, borrowed whole.
        assert!(matches!(other.contiguous(), std::borrow::Cow::Borrowed(_)));
    }
}
