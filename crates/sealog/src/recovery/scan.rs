//! Scanning the unsealed segments frame by frame, and cutting what an
//! interrupted write left after the last complete batch (copied to
//! `lost+found/` first).

use std::path::Path;

use sealog_format::segment::{HEADER_LEN, SegmentFooter};
use sealog_format::{Hash, Timestamp};

use super::corruption;
use super::files::Found;
use super::report::{RecoveryReport, Truncation};
use crate::error::{CorruptionKind, Error, Location, Result};
use crate::fs::{self, Vfs};
use crate::index::MemIndex;
use crate::layout;
use crate::open_index::Base;
use crate::options::{Preallocation, StoreOptions};
use crate::segment::{FrameWalker, OpenData, Tail, classify_tail};
use sealog_format::frame::{FrameRead, read_frame};

/// A committed record found by scanning.
pub(super) struct Scanned {
    pub(super) offset: u32,
    pub(super) frame_len: u32,
    pub(super) event_time: i64,
    pub(super) recorded_at: Timestamp,
    pub(super) leaf: Hash,
    pub(super) chain: Hash,
}

/// The result of scanning an unsealed segment.
pub(super) struct ScanResult {
    pub(super) found: Found,
    /// The first committed records and their index, taken from the
    /// segment's index snapshot (read-only opens); `records` and
    /// `committed` count the records after them.
    pub(super) base: Option<Base>,
    /// The bytes after the last complete batch, up to the last non-zero
    /// byte (the rest of the image is not kept).
    pub(super) leftover: Vec<u8>,
    /// Whether the bytes where the scan stopped are an end marker.
    pub(super) ends_in_marker: bool,
    pub(super) records: Vec<Scanned>,
    /// Records up to and including the last COMMIT frame.
    pub(super) committed: usize,
    pub(super) committed_end: u64,
    pub(super) stop_at: u64,
    pub(super) stop_seq: u64,
    pub(super) tail: Tail,
}

impl ScanResult {
    /// The committed records, with the index of those a snapshot covered.
    pub(super) fn take_open_data(&mut self) -> (OpenData, MemIndex) {
        let (mut data, index) = match self.base.take() {
            Some(base) => (base.data, base.index),
            None => (
                OpenData::new(self.found.header.chain_in),
                MemIndex::default(),
            ),
        };
        for r in self.records.iter().take(self.committed) {
            data.push(
                r.offset,
                r.frame_len,
                r.event_time,
                r.recorded_at,
                r.leaf,
                r.chain,
            );
        }
        (data, index)
    }

    /// Committed records in all (the snapshot's and those scanned after).
    pub(super) fn committed_total(&self) -> u64 {
        self.base.as_ref().map_or(0, Base::len) + self.committed as u64
    }

    /// The recorded time and chain value of the last committed record.
    pub(super) fn last_committed(&self) -> Option<(i64, Hash)> {
        match self
            .committed
            .checked_sub(1)
            .and_then(|i| self.records.get(i))
        {
            Some(r) => Some((r.recorded_at.as_nanos(), r.chain)),
            None => {
                let data = &self.base.as_ref()?.data;
                Some((data.last_recorded_at?.as_nanos(), data.chain_head))
            }
        }
    }

    /// Whether the bytes after the committed end are only the remains of
    /// an interrupted seal (else they are an interrupted write).
    pub(super) fn seal_debris(&self) -> bool {
        self.tail == Tail::Clean && self.records.len() == self.committed && self.ends_in_marker
    }
}

/// A segment taken as sealed: a sealed file, or (reading around damage) a
/// segment cut or damaged before sealed ones, with a footer made from the
/// records that could be read and their frame offsets.
pub(super) struct TakenSealed {
    pub(super) found: Found,
    pub(super) footer: SegmentFooter,
    pub(super) offsets: Option<Vec<u32>>,
}

/// Takes what can be read of a segment cut or damaged before sealed ones
/// (reading around damage only): its readable frames, as a sealed segment
/// with a footer made from them. Returns it, the byte offset where reading
/// stopped, and the recorded time of its last readable record.
pub(super) fn take_readable(f: Found, last_recorded: Option<i64>) -> Result<Readable> {
    let scan = scan_unsealed(f, last_recorded, None)?;
    let mut data = OpenData::new(scan.found.header.chain_in);
    for r in &scan.records {
        data.push(
            r.offset,
            r.frame_len,
            r.event_time,
            r.recorded_at,
            r.leaf,
            r.chain,
        );
    }
    Ok(Readable {
        end_seq: scan.found.header.first_seq + data.len(),
        last_recorded: data.last_recorded_at.map(Timestamp::as_nanos),
        stop_at: scan.stop_at,
        footer: data.footer(&scan.found.header, Timestamp::from_nanos(0)),
        offsets: data.offsets,
        found: scan.found,
    })
}

/// What can be read of a segment cut or damaged before sealed ones.
pub(super) struct Readable {
    pub(super) found: Found,
    /// A footer made from the readable records; `None` if there is none.
    pub(super) footer: Option<SegmentFooter>,
    /// Their frame offsets.
    pub(super) offsets: Vec<u32>,
    /// One past the last readable record.
    pub(super) end_seq: u64,
    /// The recorded time of the last readable record.
    pub(super) last_recorded: Option<i64>,
    /// The byte offset where reading stopped.
    pub(super) stop_at: u64,
}

impl Readable {
    /// The readable records, as a sealed segment (if there is any).
    pub(super) fn into_sealed(self) -> Option<TakenSealed> {
        let footer = self.footer?;
        Some(TakenSealed {
            found: self.found,
            footer,
            offsets: Some(self.offsets),
        })
    }
}

/// The file of segment `f` as a walk and the tail checks see it, with
/// only the bytes from `start` read (those before it read as zeros: the
/// allocation stays untouched, so it costs nothing until written).
///
/// An open segment is mostly unused, zero-filled space. Where its data
/// ends (one past its last non-zero byte) is found first, from the end of
/// the file a window at a time into one reused buffer; the image then
/// holds the file up to there, plus room for the longest frame, and the
/// rest (known to be zeros) is left out. Every frame that starts before
/// the data's end lies inside the image, and the bytes after it are the
/// zeros the file holds: a walk, `classify_tail` and the leftover see
/// what they would in the whole file, without a fresh buffer the size of
/// the segment (whose pages the kernel zeroes one by one).
fn read_image_from(f: &Found, start: u64) -> Result<ZeroedBuffer> {
    let start = if start <= HEADER_LEN as u64 { 0 } else { start };
    let data_end = data_end_of(f, start)?;
    let room = (sealog_format::record::MAX_RECORD_LEN
        + sealog_format::frame::FRAME_HEADER_LEN
        + crate::segment::SECTOR) as u64;
    let kept = data_end.saturating_add(room).min(f.len);
    let len = usize::try_from(kept).map_err(|_| too_large(f))?;
    let mut image = ZeroedBuffer::new(len).map_err(|e| Error::io("map", &f.path, e))?;
    let read = usize::try_from(start)
        .ok()
        .zip(usize::try_from(data_end).ok())
        .and_then(|(s, e)| image.get_mut(s..e));
    if let Some(bytes) = read {
        f.file
            .read_exact_at(bytes, start)
            .map_err(|e| Error::io("read", &f.path, e))?;
    }
    Ok(image)
}

/// A zero-filled buffer whose pages cost nothing until written: a large
/// one is an anonymous mapping, which the kernel fills on first touch
/// (`vec![0; n]` had the allocator clear every byte of a segment-sized
/// buffer, most of which a resumed scan never reads into).
enum ZeroedBuffer {
    Heap(Vec<u8>),
    Mapped(memmap2::MmapMut),
}

/// From this size on, a [`ZeroedBuffer`] is mapped.
const MAP_ZEROED_FROM: usize = 1 << 20;

impl ZeroedBuffer {
    fn new(len: usize) -> std::io::Result<ZeroedBuffer> {
        if len < MAP_ZEROED_FROM {
            return Ok(ZeroedBuffer::Heap(vec![0; len]));
        }
        memmap2::MmapMut::map_anon(len).map(ZeroedBuffer::Mapped)
    }
}

impl std::ops::Deref for ZeroedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ZeroedBuffer::Heap(v) => v,
            ZeroedBuffer::Mapped(m) => m,
        }
    }
}

impl std::ops::DerefMut for ZeroedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            ZeroedBuffer::Heap(v) => v,
            ZeroedBuffer::Mapped(m) => m,
        }
    }
}

/// Bytes read at a time by [`data_end_of`].
const TAIL_WINDOW: u64 = 1 << 20;

/// One past the last non-zero byte of segment file `f` at or after
/// `start` (`start` if there is none), read from the end of the file a
/// window at a time. An open segment's zeros (up to its whole preallocated
/// size: ~33 MB of a half-full segment, ~3 ms of copying) are read on
/// every core: each thread takes the windows after the last one taken,
/// from the end down, until no window it has left can end the data later
/// than one already read. Any trouble (a file that shrank, a failed read)
/// is left to [`data_end_reading_down`], which reports it.
fn data_end_of(f: &Found, start: u64) -> Result<u64> {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
    let span = f.len.saturating_sub(start);
    let threads = crate::spread::cores().min(4);
    if threads < 2 || span < 8 * TAIL_WINDOW {
        return data_end_reading_down(f, start);
    }
    let windows = usize::try_from(span.div_ceil(TAIL_WINDOW)).unwrap_or(usize::MAX);
    let next = AtomicUsize::new(0);
    // The highest data end found so far (`start`: none yet).
    let found = AtomicU64::new(start);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut buf = vec![0u8; TAIL_WINDOW as usize];
        loop {
            let k = next.fetch_add(1, Relaxed);
            if k >= windows || failed.load(Relaxed) {
                return;
            }
            // Window k from the end: [from, end).
            let end = f.len - (k as u64) * TAIL_WINDOW;
            let from = end.saturating_sub(TAIL_WINDOW).max(start);
            // Taken in order: every later window lies below this one.
            if end <= found.load(Relaxed) {
                return;
            }
            let Some(window) = usize::try_from(end - from)
                .ok()
                .and_then(|len| buf.get_mut(..len))
            else {
                failed.store(true, Relaxed);
                return;
            };
            if f.file.read_exact_at(window, from).is_err() {
                failed.store(true, Relaxed);
                return;
            }
            let in_window = crate::segment::data_end(window);
            if in_window > 0 {
                found.fetch_max(from + in_window as u64, Relaxed);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
    if failed.load(Relaxed) {
        return data_end_reading_down(f, start);
    }
    Ok(found.load(Relaxed))
}

/// [`data_end_of`] on this thread alone, into one buffer.
///
/// The file may be shorter than when `f` was read: a writer sealing the
/// segment meanwhile cuts it to its sealed length (never below its
/// frames). A window past the new end starts again from there.
fn data_end_reading_down(f: &Found, start: u64) -> Result<u64> {
    let mut buf = vec![0u8; TAIL_WINDOW as usize];
    let mut end = f.len;
    let mut shrank = 0;
    while end > start {
        let from = end.saturating_sub(TAIL_WINDOW).max(start);
        let window = buf
            .get_mut(..usize::try_from(end - from).unwrap_or(usize::MAX))
            .expect("a window is at most TAIL_WINDOW bytes");
        match f.file.read_exact_at(window, from) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && shrank < 3 => {
                shrank += 1;
                let now = f.file.size().map_err(|e| Error::io("stat", &f.path, e))?;
                end = end.min(now);
                continue;
            }
            read => read.map_err(|e| Error::io("read", &f.path, e))?,
        }
        let in_window = crate::segment::data_end(window);
        if in_window > 0 {
            return Ok(from + in_window as u64);
        }
        end = from;
    }
    Ok(start)
}

/// Covered frames checked as one piece: a piece is taken by whichever
/// thread is free (~2.5 MiB of frames; a thread costs tens of
/// microseconds).
const PIECE_FRAMES: usize = 8_192;

/// The frames an index snapshot covers, as it states them.
#[derive(Clone, Copy)]
pub(super) struct CoveredFrames<'a> {
    pub(super) offsets: &'a [u32],
    pub(super) frames_end: u64,
    pub(super) last_recorded_at: Option<i64>,
}

impl<'a> CoveredFrames<'a> {
    pub(super) fn of_base(base: &'a Base) -> CoveredFrames<'a> {
        CoveredFrames {
            offsets: &base.data.offsets,
            frames_end: base.data.frames_end,
            last_recorded_at: base.data.last_recorded_at.map(Timestamp::as_nanos),
        }
    }

    pub(super) fn of(covered: &'a crate::open_index::Covered) -> CoveredFrames<'a> {
        CoveredFrames {
            offsets: &covered.offsets,
            frames_end: covered.frames_end,
            last_recorded_at: covered.last_recorded_at,
        }
    }
}

/// Whether the segment holds the records an index snapshot covers, where
/// the snapshot says: every covered frame is whole, at its offset, with a
/// valid checksum, the right seq and a recorded time that does not go
/// back (the last one being the snapshot's), and the last ends a batch.
/// The records' fields and leaf hashes are taken from the snapshot, as a
/// sealed segment's are from its sidecar and the leaf file; `verify`
/// recomputes them. The frames are read from a map of the segment file
/// (they are committed and synced, so no writer changes them: see
/// `crate::mmap`); reading them into a buffer first cost as much as
/// checking them.
///
/// `meanwhile` runs on this thread as the check starts (a full segment's
/// frames are ~60 MiB of checksums): the frames are checked in pieces by
/// another thread and, once `meanwhile` returns, by this one too. Returns
/// whether they agree, and what `meanwhile` returned.
pub(super) fn covered_frames_agree_while<T>(
    f: &Found,
    last_recorded: Option<i64>,
    covered: CoveredFrames<'_>,
    meanwhile: impl FnOnce() -> T,
) -> Result<(bool, T)> {
    let map = f.file.map().map_err(|e| Error::io("map", &f.path, e))?;
    let Some(frames) = usize::try_from(covered.frames_end)
        .ok()
        .and_then(|end| map.get(..end))
    else {
        return Ok((false, meanwhile()));
    };
    let n = covered.offsets.len();
    let pieces = n.div_ceil(PIECE_FRAMES);
    let threads = if crate::spread::cores() > 1 { 2 } else { 1 };
    // Pieces are taken until none is left or one disagrees.
    let (value, done) = crate::spread::in_order(
        pieces,
        threads,
        |i| {
            covered_range_agrees(
                frames,
                f.header.first_seq,
                covered,
                i * PIECE_FRAMES..((i + 1) * PIECE_FRAMES).min(n),
            )
        },
        Option::is_none,
        meanwhile,
    );
    // Every piece agrees, each following the one before in recorded time.
    let mut ends: Option<(i64, i64)> = None;
    let mut whole = done.len() == pieces;
    for (_, piece) in done {
        match (ends, piece) {
            (_, None) => whole = false,
            (None, Some(p)) => ends = Some(p),
            (Some((a, b)), Some((c, d))) if b <= c => ends = Some((a, d)),
            (Some(_), Some(_)) => whole = false,
        }
    }
    let agree = match ends {
        _ if !whole => false,
        // The first covered record follows the records before the segment
        // in recorded time, and the last is the snapshot's.
        Some((first, last)) => {
            last_recorded.is_none_or(|p| p <= first) && Some(last) == covered.last_recorded_at
        }
        // No covered frame: the snapshot's last recorded time is the one
        // before the segment.
        None => n == 0 && last_recorded == covered.last_recorded_at,
    };
    Ok((agree, value))
}

/// Checks the covered frames `range` as [`covered_frames_agree_while`]
/// says, except how the first relates to the records before it: their
/// recorded times, first and last, if every frame agrees; `None` if one
/// does not (or the range is empty).
fn covered_range_agrees(
    frames: &[u8],
    first_seq: u64,
    covered: CoveredFrames<'_>,
    range: std::ops::Range<usize>,
) -> Option<(i64, i64)> {
    let end_of = |i: usize| {
        covered
            .offsets
            .get(i)
            .map_or(covered.frames_end, |&o| u64::from(o))
    };
    let n = covered.offsets.len();
    let mut first: Option<i64> = None;
    let mut previous: Option<i64> = None;
    for k in range.start..range.end.min(n) {
        let at = usize::try_from(end_of(k)).ok()?;
        let want = end_of(k + 1) - end_of(k);
        let Some(Ok(FrameRead::Frame(frame))) = frames.get(at..).map(read_frame) else {
            return None;
        };
        let (seq, recorded) = sealog_format::record::read_trailer(frame.body).ok()?;
        let recorded = recorded.as_nanos();
        if frame.len as u64 != want
            || seq != first_seq + k as u64
            || previous.is_some_and(|p| recorded < p)
            || (k + 1 == n && !frame.is_commit())
        {
            return None;
        }
        first.get_or_insert(recorded);
        previous = Some(recorded);
    }
    first.zip(previous)
}

fn too_large(f: &Found) -> Error {
    corruption(
        Location::file(&f.name),
        CorruptionKind::Layout("the file is too large to be a segment".into()),
    )
}

/// `image` from `at`, a position a walk over `image` reached.
fn walked_from(image: &[u8], at: u64) -> &[u8] {
    usize::try_from(at)
        .ok()
        .and_then(|at| image.get(at..))
        .expect("a walk over an image stops inside it")
}

/// `bytes` up to its last non-zero byte (empty if all are zero).
fn without_trailing_zeros(bytes: &[u8]) -> &[u8] {
    let end = crate::segment::data_end(bytes);
    bytes
        .get(..end)
        .expect("one past a position inside the slice is at most its length")
}

/// The index snapshot of the unsealed segment `f`, if it has one that
/// belongs to it and whose covered frames are in the segment
/// ([`covered_frames_agree_while`]); otherwise `None` (the segment is
/// scanned from its start). The frames are checked while the snapshot's
/// chunks are decoded.
pub(super) fn checked_snapshot(
    fs: &dyn Vfs,
    f: &Found,
    last_recorded: Option<i64>,
) -> Result<Option<Base>> {
    use crate::open_index;
    let Some(bytes) = open_index::map(fs, &f.path) else {
        return Ok(None);
    };
    // Shared: the open segment's hashes are read from it in place.
    let bytes = std::sync::Arc::new(bytes);
    let decode = || open_index::decoded(&f.path, open_index::decode(&bytes, &f.header));
    let (agree, base) = match open_index::covered(&bytes, &f.header) {
        Some(covered) if !covered.offsets.is_empty() => {
            let (agree, base) =
                covered_frames_agree_while(f, last_recorded, CoveredFrames::of(&covered), decode)?;
            match base {
                // The chunks decoded are those whose frames were checked.
                Some(b) if b.len() == covered.offsets.len() as u64 => (agree, Some(b)),
                // Fewer (one failed a check the first pass does not make):
                // check what was taken.
                Some(b) if b.len() > 0 => {
                    let (agree, ()) = covered_frames_agree_while(
                        f,
                        last_recorded,
                        CoveredFrames::of_base(&b),
                        || (),
                    )?;
                    (agree, Some(b))
                }
                other => (false, other),
            }
        }
        _ => (false, decode()),
    };
    match base {
        Some(b) if agree => Ok(Some(b)),
        Some(_) => {
            tracing::warn!(segment = %f.name, "ignoring the snapshot of the open segment's index: it does not match the segment");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Scans an unsealed segment: every frame from the start, or, given the
/// segment's index snapshot (`base`, checked by [`checked_snapshot`]), the
/// frames after the records it covers.
pub(super) fn scan_unsealed(
    found: Found,
    last_recorded: Option<i64>,
    base: Option<Base>,
) -> Result<ScanResult> {
    let start = base
        .as_ref()
        .map_or(HEADER_LEN as u64, |b| b.data.frames_end);
    let image = read_image_from(&found, start)?;
    let mut records = Vec::new();
    let mut committed = 0;
    let mut committed_end = start;
    let mut chain = base
        .as_ref()
        .map_or(found.header.chain_in, |b| b.data.chain_head);
    let (stop, tail) = {
        let mut walker = match &base {
            Some(b) => FrameWalker::resume(
                &image,
                usize::try_from(start).map_err(|_| too_large(&found))?,
                found.header.first_seq + b.len(),
                b.data.last_recorded_at.map(Timestamp::as_nanos),
            ),
            None => FrameWalker::new(&image, found.header.first_seq, last_recorded),
        };
        while let Some(r) = walker.next_record() {
            chain = sealog_format::chain::link(&chain, &r.leaf);
            // Frames lie in the first GiB of a segment; one beyond 4 GiB
            // cannot be placed (offsets are 32-bit), nor written after.
            let (Ok(offset), Ok(frame_len)) = (u32::try_from(r.offset), u32::try_from(r.frame_len))
            else {
                return Err(too_large(&found));
            };
            records.push(Scanned {
                offset,
                frame_len,
                event_time: r.view.event_time().as_nanos(),
                recorded_at: r.view.recorded_at,
                leaf: r.leaf,
                chain,
            });
            if r.commit {
                committed = records.len();
                committed_end = r.offset + r.frame_len as u64;
            }
        }
        let stop = walker.into_stop();
        let tail = classify_tail(&image, &stop);
        (stop, tail)
    };
    let ends_in_marker = sealog_format::frame::is_end_marker(walked_from(&image, stop.at()));
    let leftover = without_trailing_zeros(walked_from(&image, committed_end)).to_vec();
    drop(image);
    let base_len = base.as_ref().map_or(0, Base::len);
    Ok(ScanResult {
        stop_at: stop.at(),
        stop_seq: found.header.first_seq + base_len + records.len() as u64,
        found,
        base,
        leftover,
        ends_in_marker,
        records,
        committed,
        committed_end,
        tail,
    })
}

pub(super) fn holds_committed_record(f: &Found) -> Result<bool> {
    let image = read_image_from(f, 0)?;
    let mut walker = FrameWalker::new(&image, f.header.first_seq, None);
    while let Some(r) = walker.next_record() {
        if r.commit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Saves and zeroes what follows the last complete batch, and restores the
/// segment's preallocated length.
pub(super) fn truncate_tail(
    fs: &dyn Vfs,
    dir: &Path,
    options: &StoreOptions,
    scan: &ScanResult,
    report: &mut RecoveryReport,
) -> Result<()> {
    let file = &scan.found.file;
    let path = &scan.found.path;
    if !scan.leftover.is_empty() {
        let from = scan.committed_end;
        if !scan.seal_debris() {
            let bytes = scan.leftover.as_slice();
            let saved_to = save_lost_bytes(fs, dir, &scan.found.name, from, bytes)?;
            report.truncations.push(Truncation {
                segment: scan.found.name.clone(),
                offset: from,
                dropped_bytes: bytes.iter().filter(|&&b| b != 0).count() as u64,
                dropped_frames: (scan.records.len() - scan.committed) as u64,
                saved_to: Some(saved_to),
            });
        }
        let zeros = vec![0u8; scan.leftover.len()];
        file.write_all_at(&zeros, from)
            .map_err(|e| Error::io("write", path, e))?;
    }
    match options.preallocation {
        Preallocation::None => {
            if scan.found.len > scan.committed_end {
                file.set_len(scan.committed_end)
                    .map_err(|e| Error::io("truncate", path, e))?;
            }
        }
        _ => {
            if scan.found.len < options.segment_size {
                file.set_len(options.segment_size)
                    .map_err(|e| Error::io("extend", path, e))?;
            }
        }
    }
    // Not synced here. When bytes of an interrupted write were removed, the
    // open syncs this file before it returns (the `store.recovered` note is
    // appended to it with `Group` durability), and when the remains of a
    // seal were, it seals the segment (fsync); either sync covers these
    // changes. Anything a power loss undoes before then — these zeros, a
    // length — is what the next open finds and undoes again; the copy of
    // removed bytes is durable already.
    Ok(())
}

/// Copies bytes recovery is about to remove into `lost+found/`.
pub(super) fn save_lost_bytes(
    fs: &dyn Vfs,
    dir: &Path,
    segment: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<String> {
    let lost = dir.join(layout::LOST_FOUND);
    fs::create_dirs(fs, &[&lost])?;
    let base = segment.rsplit('/').next().unwrap_or(segment);
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            format!("{}/{base}.at-{offset}.tail", layout::LOST_FOUND)
        } else {
            format!("{}/{base}.at-{offset}.{n}.tail", layout::LOST_FOUND)
        };
        let path = dir.join(&name);
        if !fs.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
            fs::write_atomic(fs, &path, bytes)?;
            return Ok(name);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{OpenMode, StdFs, Vfs};
    use sealog_format::segment::SegmentHeader;

    /// A segment file of `len` zero bytes with non-zero bytes at `marks`.
    fn found_with(dir: &std::path::Path, len: u64, marks: &[u64]) -> Found {
        let path = dir.join("00000000000000000000.seg");
        let mut bytes = vec![0u8; usize::try_from(len).unwrap()];
        for &m in marks {
            bytes[usize::try_from(m).unwrap()] = 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        Found {
            name: "segments/00000000000000000000.seg".into(),
            path: path.clone(),
            file: StdFs.open(&path, OpenMode::Read).unwrap(),
            len,
            header: SegmentHeader {
                store_id: [7; 16],
                segment_no: 0,
                first_seq: 0,
                chain_in: [0; 32],
                created_at: Timestamp::from_nanos(0),
            },
            footer: None,
            map: None,
            compressed: None,
        }
    }

    /// The end of the data, read on every core, is the one read by a single
    /// thread from the end down, wherever the last non-zero byte lies
    /// (window edges, the first and last byte, none at all) and from
    /// wherever the search starts.
    #[test]
    fn the_data_end_read_on_every_core_is_the_data_end() {
        let dir = tempfile::tempdir().unwrap();
        let len = 12 * TAIL_WINDOW + 12_345;
        let w = TAIL_WINDOW;
        let cases: &[&[u64]] = &[
            &[],
            &[0],
            &[len - 1],
            &[100, len - w],
            &[100, len - w - 1],
            &[3 * w, 3 * w + 1, 11 * w - 1],
            &[5 * w + 7],
            &[12_345 + 7 * w],
            // Data in the two windows read first, by different threads.
            &[len - 1, len - w - 1],
            &[len - w, len - w - 1],
        ];
        for marks in cases {
            let f = found_with(dir.path(), len, marks);
            for start in [0, 1, 4096, 2 * w + 5, len - 9 * w] {
                let expected = marks
                    .iter()
                    .filter(|&&m| m >= start)
                    .max()
                    .map_or(start, |&m| m + 1);
                assert_eq!(
                    data_end_reading_down(&f, start).unwrap(),
                    expected,
                    "{marks:?} from {start}"
                );
                assert_eq!(
                    data_end_of(&f, start).unwrap(),
                    expected,
                    "{marks:?} from {start}"
                );
            }
        }
    }
}
