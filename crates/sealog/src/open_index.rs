//! Snapshots of an open segment's index (`segments/<seq>.oidx`), so that a
//! read-only open — every command-line query — does not decode, hash and
//! index again the records the writer already indexed.
//!
//! The writer's indexer appends a *chunk* to the snapshot whenever
//! [`PERSIST_EVERY`] more records are indexed, and once more when the store
//! closes: the chunk holds what the read-only open would otherwise compute
//! for those records (frame offsets, event times, leaf hashes, chain
//! values) and the index columns they added. Chunks are appended to the
//! page cache, off the commit path, and never synced: the file is derived
//! data and is only ever taken when it agrees with the log.
//!
//! A read-only open ([`load`]) takes the chunks in order up to the first
//! one that is torn, fails its CRC or does not extend the previous ones
//! consistently; the open then checks every covered frame of the segment
//! (frame checksum, length, seq, recorded-time order, the COMMIT flag at
//! the end; see `recovery::scan`) and, if any of that disagrees, ignores
//! the snapshot and scans the segment in full. Records after the snapshot
//! are scanned and indexed as before. What the snapshot is trusted for is
//! what a sealed segment's sidecar and leaf file are trusted for (decoded
//! fields, leaf hashes); `verify` recomputes all of it from the records.
//!
//! A chunk also carries, when the writer signs checkpoints, the whole
//! log's Merkle frontier at its last record (the roots of the perfect
//! subtrees of that tree size): a read-only open checks the newest
//! checkpoint from it and the leaves after it, instead of hashing every
//! inner node over the open segment's leaves (~200,000 node hashes for a
//! full 64 MiB segment).
//!
//! A writable open removes every snapshot (its indexer writes the active
//! segment's again), and the sealer removes a segment's snapshot once the
//! segment is sealed. The format is in `docs/format.md`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sealog_format::Hash;
use sealog_format::merkle::Frontier;
use sealog_format::segment::{HEADER_LEN, SegmentHeader};

use crate::fs::{OpenMode, Vfs, VfsFile};
use crate::index::{ByteReader, IndexMark, MemIndex};
use crate::mmap::Mapped;
use crate::segment::{OpenData, OpenSegment};

/// The file name's ending.
pub(crate) const EXT: &str = "oidx";

/// Records indexed between two chunks: what a read-only open may have to
/// scan and index itself (~2.5 MiB of frames, a few milliseconds).
pub(crate) const PERSIST_EVERY: u64 = 8_192;

const MAGIC: &[u8; 8] = b"SLOGOIDX";
/// Version 2 gave the chunk header's reserved word to the frontier's
/// length; a version-1 file always wrote zero there, so it reads as a
/// version-2 file without frontiers, and both are accepted.
const VERSION: u16 = 2;
const VERSIONS_READ: [u16; 2] = [1, 2];
/// Header: magic, version, reserved, the segment header's store id,
/// segment number, first seq and chain value in, CRC-32 of the rest.
pub(crate) const FILE_HEADER_LEN: usize = 84;
const HEADER_CRC_AT: usize = FILE_HEADER_LEN - 4;
const CHUNK_MAGIC: &[u8; 4] = b"OIXC";
/// Chunk header: magic, body length, first ordinal, record count,
/// frontier length, frames end, recorded times of the segment's first
/// record and of the chunk's last.
pub(crate) const CHUNK_HEADER_LEN: usize = 48;
/// Per record: offset, event time, leaf hash, chain value.
const PER_RECORD: usize = 4 + 8 + 32 + 32;

/// The snapshot file of the segment at `segment_path`.
pub(crate) fn path_of(segment_path: &Path) -> PathBuf {
    segment_path.with_extension(EXT)
}

fn encode_header(h: &SegmentHeader, version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(&h.store_id);
    out.extend_from_slice(&h.segment_no.to_le_bytes());
    out.extend_from_slice(&h.first_seq.to_le_bytes());
    out.extend_from_slice(&h.chain_in);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), FILE_HEADER_LEN);
    out
}

/// The records `[from, to)` of `data` and the index columns they added
/// since `mark`, as one chunk without its frontier and CRC (see
/// [`finish_chunk`]).
fn encode_chunk(data: &OpenData, index: &MemIndex, mark: &IndexMark, to: u64) -> Option<Vec<u8>> {
    let from = usize::try_from(mark.records).ok()?;
    let to_usize = usize::try_from(to).ok()?;
    let count = to_usize.checked_sub(from).filter(|&n| n > 0)?;
    let frames_end = data.frame_start(to);
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + count * (PER_RECORD + 48) + 4);
    out.extend_from_slice(CHUNK_MAGIC);
    out.extend_from_slice(&[0u8; 4]); // body length, below
    out.extend_from_slice(&mark.records.to_le_bytes());
    out.extend_from_slice(&u32::try_from(count).ok()?.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&frames_end.to_le_bytes());
    out.extend_from_slice(&index.first_recorded_at?.to_le_bytes());
    out.extend_from_slice(&index.last_recorded_at?.to_le_bytes());
    for o in data.offsets.get(from..to_usize)? {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for t in data.event_times.get(from..to_usize)? {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for leaf in data.leaves.range(from, to_usize)? {
        out.extend_from_slice(leaf);
    }
    for chain in data.chains.range(from, to_usize)? {
        out.extend_from_slice(chain);
    }
    index.encode_columns_since(mark, &mut out);
    Some(out)
}

/// Ends a chunk from [`encode_chunk`]: the frontier's hashes after the
/// columns and their count in the header (none without a frontier), the
/// body length, the CRC.
fn finish_chunk(mut out: Vec<u8>, frontier: Option<&Frontier>) -> Option<Vec<u8>> {
    let subtrees = frontier.map_or(&[][..], Frontier::subtrees);
    for hash in subtrees {
        out.extend_from_slice(hash);
    }
    let count = u32::try_from(subtrees.len()).ok()?;
    out.get_mut(20..24)?.copy_from_slice(&count.to_le_bytes());
    let body_len = u32::try_from(out.len() - CHUNK_HEADER_LEN).ok()?;
    out.get_mut(4..8)?.copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// The writer's side: where the segment's snapshot stands.
#[derive(Debug, Default)]
pub(crate) struct Persist {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
enum State {
    /// Nothing written yet.
    #[default]
    Unstarted,
    Writing {
        file: Arc<dyn VfsFile>,
        end: u64,
        mark: IndexMark,
    },
    /// Sealed, or a write failed: no more chunks.
    Off,
}

impl Persist {
    /// Appends a chunk for what `segment`'s index holds beyond the
    /// snapshot, if that is at least `min_records` records. Call it with
    /// the index caught up, without holding the index lock. A failure is
    /// logged and stops the snapshot (queries then index those records
    /// themselves); it never fails the store. `frontier(size)` gives the
    /// whole log's Merkle frontier at `size` records, or `None` (the chunk
    /// then has none).
    pub(crate) fn persist(
        &self,
        fs: &dyn Vfs,
        segment: &OpenSegment,
        min_records: u64,
        frontier: &dyn Fn(u64) -> Option<Frontier>,
    ) {
        let mut state = self.state.lock();
        if matches!(*state, State::Off) {
            return;
        }
        let indexed = segment.indexed.load(std::sync::atomic::Ordering::Acquire);
        let written = match &*state {
            State::Writing { mark, .. } => mark.records,
            _ => 0,
        };
        if indexed.saturating_sub(written) < min_records.max(1) {
            return;
        }
        let path = path_of(&segment.path);
        if let Err(e) = self.append(fs, segment, &path, &mut state, frontier) {
            tracing::warn!(file = %path.display(), error = %e, "could not write the snapshot of the open segment's index; read-only opens will index the segment themselves");
            *state = State::Off;
        }
    }

    fn append(
        &self,
        fs: &dyn Vfs,
        segment: &OpenSegment,
        path: &Path,
        state: &mut State,
        frontier: &dyn Fn(u64) -> Option<Frontier>,
    ) -> io::Result<()> {
        if matches!(state, State::Unstarted) {
            match fs.remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let file = fs.open(path, OpenMode::CreateNew)?;
            let header = encode_header(&segment.header, VERSION);
            file.write_all_at(&header, 0)?;
            *state = State::Writing {
                file,
                end: FILE_HEADER_LEN as u64,
                mark: IndexMark::default(),
            };
        }
        let State::Writing { file, end, mark } = state else {
            return Ok(());
        };
        let (chunk, new_mark, to) = {
            let index = segment.index.read();
            let data = segment.data.read();
            let to = index.indexed.min(data.len());
            let Some(chunk) = encode_chunk(&data, &index, mark, to) else {
                return Ok(());
            };
            (chunk, index.mark(), to)
        };
        // With both locks released: the frontier may hash the tree's tail,
        // which copies leaves out of this segment under its data lock.
        let size = segment.header.first_seq + to;
        let frontier = frontier(size).filter(|f| f.size() == size);
        let Some(chunk) = finish_chunk(chunk, frontier.as_ref()) else {
            return Ok(());
        };
        file.write_all_at(&chunk, *end)?;
        *end += chunk.len() as u64;
        *mark = new_mark;
        Ok(())
    }

    /// Stops the snapshot and removes its file: the segment is sealed and
    /// its sidecar holds its index.
    pub(crate) fn retire(&self, fs: &dyn Vfs, segment_path: &Path) {
        let mut state = self.state.lock();
        let had = !matches!(*state, State::Unstarted | State::Off);
        *state = State::Off;
        if had {
            let path = path_of(segment_path);
            if let Err(e) = fs.remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "could not remove the snapshot of a sealed segment's index; it is ignored and removed at the next writable open");
            }
        }
    }
}

/// What a snapshot gives a read-only open: the committed records it covers
/// (as the open would have found them) and their index.
pub(crate) struct Base {
    pub data: OpenData,
    pub index: MemIndex,
    /// The frontiers the chunks carry, at increasing sizes.
    pub frontiers: Vec<Frontier>,
}

impl Base {
    pub(crate) fn len(&self) -> u64 {
        self.data.len()
    }
}

/// Reads the snapshot of the segment with `header` at `segment_path`, if
/// there is one that belongs to it: every chunk up to the first that is
/// torn, damaged or inconsistent. The records it covers are still checked
/// against the segment by the caller. Never an error: a snapshot that
/// cannot be read is ignored (and logged).
#[cfg(test)]
pub(crate) fn load(fs: &dyn Vfs, segment_path: &Path, header: &SegmentHeader) -> Option<Base> {
    decoded(
        segment_path,
        decode(&Arc::new(map(fs, segment_path)?), header),
    )
}

/// The bytes of the snapshot of the segment at `segment_path`, mapped;
/// `None` if there is none, or it cannot be read (logged).
pub(crate) fn map(fs: &dyn Vfs, segment_path: &Path) -> Option<Mapped> {
    let path = path_of(segment_path);
    match read_all(fs, &path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable snapshot of the open segment's index");
            None
        }
    }
}

/// [`decode`]'s result, with a snapshot that does not belong to the
/// segment at `segment_path` logged.
pub(crate) fn decoded(segment_path: &Path, base: Option<Base>) -> Option<Base> {
    if base.is_none() {
        tracing::warn!(file = %path_of(segment_path).display(), "ignoring a snapshot of the open segment's index that does not belong to the segment");
    }
    base
}

/// What a snapshot's chunks state about the frames they cover, read from
/// their headers and offsets alone (no checksum, no other column): enough
/// to start checking those frames against the segment while [`decode`]
/// takes the chunks. Chunks are taken in order while their offsets follow
/// on from the chunk before, as `decode` requires (which checks more: a
/// chunk it refuses ends what it takes earlier, never later).
pub(crate) struct Covered {
    /// Frame offset of each covered record.
    pub offsets: Vec<u32>,
    /// End of the last covered frame.
    pub frames_end: u64,
    /// Recorded time of the last covered record.
    pub last_recorded_at: Option<i64>,
}

/// The frames the snapshot `bytes` of the segment with `header` states
/// it covers (see [`Covered`]); `None` if its header is not that of a
/// snapshot of this segment.
pub(crate) fn covered(bytes: &[u8], header: &SegmentHeader) -> Option<Covered> {
    let mut rest = chunks_of(bytes, header)?;
    let mut covered = Covered {
        offsets: Vec::with_capacity(stated_records(rest)),
        frames_end: HEADER_LEN as u64,
        last_recorded_at: None,
    };
    while let Some(used) = covered_chunk(rest, &mut covered) {
        rest = rest.get(used..)?;
    }
    Some(covered)
}

/// Adds the offsets of the chunk at the start of `bytes` to `covered`
/// (checked as [`decode_chunk`] checks them); its length, or `None`.
fn covered_chunk(bytes: &[u8], covered: &mut Covered) -> Option<usize> {
    let mut r = ByteReader { bytes };
    if r.take(4)? != CHUNK_MAGIC {
        return None;
    }
    let body_len = usize::try_from(r.u32()?).ok()?;
    let total = CHUNK_HEADER_LEN.checked_add(body_len)?.checked_add(4)?;
    let body = bytes.get(CHUNK_HEADER_LEN..total.checked_sub(4)?)?;
    let from = r.u64()?;
    let count = r.u32()?;
    let _frontier_len = r.u32()?;
    let frames_end = r.u64()?;
    let _first_recorded = r.i64()?;
    let last_recorded = r.i64()?;
    if from != covered.offsets.len() as u64 || count == 0 {
        return None;
    }
    let offsets = ByteReader { bytes: body }
        .take((count as usize).checked_mul(4)?)?
        .as_chunks::<4>()
        .0;
    if !follows_on(offsets, covered.frames_end, frames_end) {
        return None;
    }
    covered
        .offsets
        .extend(offsets.iter().map(|b| u32::from_le_bytes(*b)));
    covered.frames_end = frames_end;
    covered.last_recorded_at = Some(last_recorded);
    Some(total)
}

/// The snapshot's bytes, mapped: the file is only ever appended to (whole
/// chunks, by one writer) and removed, never rewritten or truncated, so the
/// bytes of the length mapped do not change (see `crate::mmap`); a chunk
/// being appended while mapped is torn in the map and ignored. A copy would
/// cost the ~14 MiB of a full segment's snapshot twice (zeroed, then read).
fn read_all(fs: &dyn Vfs, path: &Path) -> io::Result<Option<Mapped>> {
    let file = match fs.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.map().map(Some)
}

/// The chunks of the snapshot `bytes`, after its header; `None` if the
/// header is not that of a snapshot of the segment with `header` (magic, a
/// version read, the segment's identity, CRC included).
fn chunks_of<'a>(bytes: &'a [u8], header: &SegmentHeader) -> Option<&'a [u8]> {
    let found = bytes.get(..FILE_HEADER_LEN)?;
    debug_assert_eq!(found.get(HEADER_CRC_AT..).map(<[u8]>::len), Some(4));
    VERSIONS_READ
        .iter()
        .any(|&v| found == encode_header(header, v).as_slice())
        .then(|| bytes.get(FILE_HEADER_LEN..))
        .flatten()
}

/// Whether a chunk's `offsets` and `frames_end` follow on from the chunks
/// before it, which end at `before` (the segment header's end if none):
/// the first frame starts there, offsets increase, and the frames end
/// past the last one.
fn follows_on(offsets: &[[u8; 4]], before: u64, frames_end: u64) -> bool {
    let mut expect = before;
    for o in offsets.iter().map(|b| u64::from(u32::from_le_bytes(*b))) {
        if o < expect {
            return false;
        }
        expect = o + 1;
    }
    frames_end >= expect
        && offsets
            .first()
            .is_some_and(|b| u64::from(u32::from_le_bytes(*b)) == before)
}

/// The records and index of a snapshot's intact chunks; `None` if its
/// header is not that of a snapshot of this segment.
pub(crate) fn decode(bytes: &Arc<Mapped>, header: &SegmentHeader) -> Option<Base> {
    let mut rest = chunks_of(bytes, header)?;
    // Only read-only opens load a snapshot: their index answers from its
    // columns in place, without decoding them or rebuilding every term's
    // postings first.
    let mut base = Base {
        data: OpenData::new(header.chain_in),
        index: MemIndex::columns_only(),
        frontiers: Vec::new(),
    };
    // Size the records' columns once for every record the chunks state:
    // growing them chunk by chunk copied and zeroed each of them over
    // again.
    base.data.reserve(stated_records(rest));
    while !rest.is_empty() {
        match decode_chunk(bytes, rest, &mut base, header.first_seq) {
            Some(used) => rest = rest.get(used..)?,
            None => break,
        }
    }
    Some(base)
}

/// The records the chunks in `bytes` say they hold, from their headers
/// alone (nothing checked but that each header and body is there): what
/// the columns are sized for before the chunks are checked and taken.
fn stated_records(mut bytes: &[u8]) -> usize {
    let mut records = 0usize;
    loop {
        let mut r = ByteReader { bytes };
        if r.take(4) != Some(CHUNK_MAGIC.as_slice()) {
            return records;
        }
        let Some(body_len) = r.u32() else {
            return records;
        };
        let Some(total) = usize::try_from(body_len)
            .ok()
            .and_then(|len| CHUNK_HEADER_LEN.checked_add(len)?.checked_add(4))
        else {
            return records;
        };
        let (Some(_from), Some(count), Some(rest)) = (r.u64(), r.u32(), bytes.get(total..)) else {
            return records;
        };
        // A record takes at least PER_RECORD bytes of the body: a damaged
        // count cannot make this reserve more than the file's size.
        let plausible = (count as usize).min(body_len as usize / PER_RECORD);
        records = records.saturating_add(plausible);
        bytes = rest;
    }
}

/// Adds one chunk at the start of `bytes` to `base`; returns its length,
/// or `None` (leaving `base` as it was) if it is torn, damaged or does not
/// follow `base`.
fn decode_chunk(map: &Arc<Mapped>, bytes: &[u8], base: &mut Base, first_seq: u64) -> Option<usize> {
    let mut r = ByteReader { bytes };
    if r.take(4)? != CHUNK_MAGIC {
        return None;
    }
    let body_len = usize::try_from(r.u32()?).ok()?;
    let total = CHUNK_HEADER_LEN.checked_add(body_len)?.checked_add(4)?;
    let chunk = bytes.get(..total)?;
    let (covered, crc) = chunk.split_at(total - 4);
    if crc32fast::hash(covered) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let from = r.u64()?;
    let count = r.u32()?;
    let frontier_len = r.u32()? as usize;
    let frames_end = r.u64()?;
    let first_recorded = r.i64()?;
    let last_recorded = r.i64()?;
    if from != base.len() || count == 0 {
        return None;
    }
    let n = count as usize;
    // The frontier ends the body: the whole log's tree at this chunk's
    // last record, one hash per set bit of its size.
    let size = first_seq.checked_add(from)?.checked_add(u64::from(count))?;
    let body = covered.get(CHUNK_HEADER_LEN..)?;
    let (body, frontier) =
        body.split_at_checked(body.len().checked_sub(frontier_len.checked_mul(32)?)?)?;
    let frontier = match frontier_len {
        0 => None,
        _ => Some(Frontier::from_parts(size, frontier.as_chunks::<32>().0.to_vec()).ok()?),
    };
    let mut body = ByteReader { bytes: body };
    let offsets = body.take(n.checked_mul(4)?)?.as_chunks::<4>().0;
    // Frames follow each other from the end of the previous chunk's.
    if (base.len() == 0 && base.data.frames_end != HEADER_LEN as u64)
        || !follows_on(offsets, base.data.frames_end, frames_end)
    {
        return None;
    }
    let offsets = || offsets.iter().map(|b| u32::from_le_bytes(*b));
    let times = body.take(n.checked_mul(8)?)?.as_chunks::<8>().0;
    let times = || times.iter().map(|b| i64::from_le_bytes(*b));
    // Borrowed from the chunk until it is taken: collecting them (with
    // no exact size known to `collect`) grew a vector by doubling, per
    // chunk, and copied it again into the segment's.
    let leaves = take_hashes(&mut body, n)?;
    let chains = take_hashes(&mut body, n)?;
    if base.len() > 0 && base.index.first_recorded_at != Some(first_recorded) {
        return None;
    }
    base.index
        .extend_snapshot(map, count, &mut body, (first_recorded, last_recorded))?;
    let data = &mut base.data;
    data.offsets.extend(offsets());
    data.event_times.extend(times());
    // Left in the map: a full segment's are ~13 MiB.
    data.leaves.extend_mapped(map, leaves);
    data.chains.extend_mapped(map, chains);
    data.frames_end = frames_end;
    if let Some(&last) = chains.last() {
        data.chain_head = last;
    }
    base.frontiers.extend(frontier);
    data.first_recorded_at
        .get_or_insert(sealog_format::Timestamp::from_nanos(first_recorded));
    data.last_recorded_at = Some(sealog_format::Timestamp::from_nanos(last_recorded));
    for t in times() {
        data.event_time_range = Some(match data.event_time_range {
            Some((lo, hi)) => (lo.min(t), hi.max(t)),
            None => (t, t),
        });
    }
    Some(total)
}

/// The next `n` hashes of a chunk's body.
fn take_hashes<'a>(body: &mut ByteReader<'a>, n: usize) -> Option<&'a [Hash]> {
    let (hashes, rest) = body.take(n.checked_mul(32)?)?.as_chunks::<32>();
    rest.is_empty().then_some(hashes)
}
