//! Sealed segments stored compressed (`docs/format.md`, "Compressed sealed
//! segments"): reading their records a block at a time, and compressing a
//! sealed segment in place.
//!
//! A compressed file encodes the exact bytes of the uncompressed segment
//! (its *image*), so every offset a reader knows (the sidecar's offsets
//! column, an error's location) is an offset in the image, and everything
//! derived from a segment (leaves, sidecar, key-filter entry) describes the
//! image and does not change when the file is compressed.

use std::sync::Arc;

use parking_lot::Mutex;
use sealog_format::compressed::{self as format, Block, BlockDecoder, CompressedSegment};
use sealog_format::frame::{self, FrameRead};

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::mmap::Mapped;

/// How sealed segments are stored ([`crate::StoreOptions::compression`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Sealed segments stay as written (the default).
    #[default]
    None,
    /// A writer compresses every local sealed segment stored uncompressed
    /// (each as it is sealed, and those an open finds), newest first, on a
    /// thread of its own at the lowest priority: blocks of ~16 KiB of
    /// whole frames, each a zstd frame at `level` (1–19; 3 is zstd's
    /// default) with a dictionary trained on the segment's records. A
    /// record read decompresses its block (~10 µs).
    Zstd {
        /// The zstd level.
        level: i32,
    },
}

impl Compression {
    /// zstd at its default level, 6.
    pub const ZSTD: Compression = Compression::Zstd { level: 6 };

    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Compression::Zstd { level } if !(1..=19).contains(level) => Err(Error::Config(
                format!("the zstd level {level} is outside 1..=19"),
            )),
            _ => Ok(()),
        }
    }
}

/// The error of a compressed file that does not read, located in it.
pub(crate) fn corruption(name: &str, e: &format::ContainerError) -> Error {
    Corruption::new(
        Location::file(name).at(e.offset),
        CorruptionKind::Compressed {
            problem: e.to_string(),
        },
    )
    .into()
}

/// The image of a segment file's bytes: the bytes themselves if they are
/// not compressed, decoded otherwise.
pub(crate) fn image_of<'a>(name: &str, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
    if !format::is_compressed(bytes) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let c = CompressedSegment::parse(bytes).map_err(|e| corruption(name, &e))?;
    c.decode_image()
        .map(std::borrow::Cow::Owned)
        .map_err(|e| corruption(name, &e))
}

/// Asks the kernel to read a compressed file's head, block table and
/// dictionary (what [`Packed::open`] reads), without waiting: a search
/// about to read records of several compressed segments asks for them all
/// first, so that the disk reads them together. Only advice.
pub(crate) fn advise_table(map: &Mapped, blocks_at: u64) {
    map.will_need(0, usize::try_from(blocks_at).unwrap_or(usize::MAX));
}

/// Bytes of decompressed blocks a store keeps ([`BlockCache`]).
const BLOCK_CACHE_BYTES: usize = 32 << 20;

/// The blocks of compressed segments a store decompressed lately (at most
/// [`BLOCK_CACHE_BYTES`], the least recently used dropped first), by
/// segment number and block: records read in order share their block, and
/// a server answering the same queries again does not decompress again.
/// And the decoders of the segments read lately (at most
/// [`DECODERS_KEPT`]).
#[derive(Default)]
pub(crate) struct BlockCache {
    inner: Mutex<CacheInner>,
    /// Decoders not in use, with the number of the segment whose
    /// dictionary each has digested, the one given back last at the end.
    decoders: Mutex<std::collections::VecDeque<(u64, BlockDecoder)>>,
}

/// Decoders a store keeps for reuse. A zstd context that has digested a
/// segment's 64 KiB dictionary is ~190 KB: kept for every compressed
/// segment read, they would grow with the store (~90 MB once a record of
/// each of the 465 segments of a 100M-event store has been read). A read
/// of a segment whose decoder is not kept takes
/// the one given back longest ago and has it digest this segment's
/// dictionary (~6 µs), or makes one when none is free (~45 µs more).
const DECODERS_KEPT: usize = 8;

/// A block of a segment: (segment number, block).
type BlockKey = (u64, usize);

#[derive(Default)]
struct CacheInner {
    /// The blocks, with their last use.
    blocks: std::collections::HashMap<BlockKey, (Arc<Vec<u8>>, u64)>,
    /// Last use → block, oldest first.
    by_use: std::collections::BTreeMap<u64, BlockKey>,
    bytes: usize,
    clock: u64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("BlockCache")
            .field("blocks", &inner.blocks.len())
            .field("bytes", &inner.bytes)
            .field("decoders", &self.decoders.lock().len())
            .finish()
    }
}

impl BlockCache {
    /// A decoder for segment number `segment_no`, whose dictionary is
    /// `dictionary`, taken (one read at a time uses it): one kept for the
    /// segment, or the one given back longest ago made one for it, or a
    /// new one.
    fn take_decoder(
        &self,
        segment_no: u64,
        dictionary: &[u8],
    ) -> std::result::Result<BlockDecoder, format::ContainerError> {
        let other = {
            let mut kept = self.decoders.lock();
            if let Some(i) = kept.iter().rposition(|(s, _)| *s == segment_no)
                && let Some((_, decoder)) = kept.remove(i)
            {
                return Ok(decoder);
            }
            kept.pop_front()
        };
        match other {
            Some((_, mut decoder)) => {
                decoder.set_dictionary(dictionary)?;
                Ok(decoder)
            }
            None => BlockDecoder::new(dictionary),
        }
    }

    /// Keeps `decoder` of segment number `segment_no` for the next read,
    /// dropping the one given back longest ago past [`DECODERS_KEPT`].
    fn give_decoder(&self, segment_no: u64, decoder: BlockDecoder) {
        let dropped = {
            let mut kept = self.decoders.lock();
            kept.push_back((segment_no, decoder));
            (kept.len() > DECODERS_KEPT).then(|| kept.pop_front())
        };
        // Freed outside the lock.
        drop(dropped);
    }

    fn get(&self, key: BlockKey) -> Option<Arc<Vec<u8>>> {
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        let (bytes, used) = inner.blocks.get_mut(&key)?;
        let (bytes, before) = (bytes.clone(), std::mem::replace(used, now));
        inner.by_use.remove(&before);
        inner.by_use.insert(now, key);
        Some(bytes)
    }

    fn put(&self, key: BlockKey, bytes: Arc<Vec<u8>>) {
        let mut inner = self.inner.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.bytes += bytes.len();
        if let Some((old, used)) = inner.blocks.insert(key, (bytes, now)) {
            inner.bytes -= old.len();
            inner.by_use.remove(&used);
        }
        inner.by_use.insert(now, key);
        while inner.bytes > BLOCK_CACHE_BYTES {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((old, _)) = inner.blocks.remove(&oldest) {
                inner.bytes -= old.len();
            }
        }
    }
}

/// A compressed sealed segment's block table, checked, and read in place
/// from its file (which the caller keeps mapped and passes to each read):
/// a few hundred bytes for each compressed segment a store has read, where
/// the parsed table was 128 KB for a 64 MiB segment, kept for as long as
/// the store is open. A read takes a decoder that has digested the
/// segment's dictionary from the store's [`BlockCache`], or makes one, and
/// gives it back, so that concurrent reads of the segment decompress at the
/// same time.
#[derive(Debug)]
pub(crate) struct Packed {
    index: format::BlockIndex,
}

impl Packed {
    /// Checks the compressed file `file` as the format says (no block is
    /// decompressed) and indexes its block table.
    pub(crate) fn open(name: &str, file: &[u8]) -> Result<Packed> {
        let index = format::BlockIndex::open(file).map_err(|e| corruption(name, &e))?;
        Ok(Packed { index })
    }

    /// Block `i` (its entry `b`) of segment number `segment_no`,
    /// decompressed (or the copy in `cache`).
    fn block(
        &self,
        file: &[u8],
        name: &str,
        segment_no: u64,
        (i, b): (usize, &Block),
        cache: &BlockCache,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(bytes) = cache.get((segment_no, i)) {
            return Ok(bytes);
        }
        let mut decoder = cache
            .take_decoder(segment_no, self.index.dictionary(file))
            .map_err(|e| corruption(name, &e))?;
        let read = format::read_stored_block(file, i, b, &mut decoder);
        cache.give_decoder(segment_no, decoder);
        let bytes = Arc::new(read.map_err(|e| corruption(name, &e))?);
        cache.put((segment_no, i), bytes.clone());
        Ok(bytes)
    }

    /// The body of the record whose frame starts at image offset `offset`
    /// (`ordinal`: its place in the segment, `first_seq` the segment's):
    /// its block decompressed and checked, the frame read and checked.
    pub(crate) fn frame(
        &self,
        file: &[u8],
        name: &str,
        (segment_no, first_seq): (u64, u64),
        ordinal: u64,
        offset: u32,
        cache: &BlockCache,
    ) -> Result<Vec<u8>> {
        let location = || {
            Location::file(name)
                .at(u64::from(offset))
                .seq(first_seq + ordinal)
        };
        let found = self
            .index
            .block_at(file, u64::from(offset))
            .and_then(|i| self.index.block(file, i).map(|b| (i, b)));
        let Some((i, b)) = found else {
            return Err(Corruption::new(
                location(),
                CorruptionKind::Layout(format!(
                    "offset {offset} is in no block of the compressed segment (offsets are \
                     derived data: the index is damaged)"
                )),
            )
            .into());
        };
        let block = self.block(file, name, segment_no, (i, &b), cache)?;
        let start = (u64::from(offset) - b.image_offset) as usize;
        match frame::read_frame(block.get(start..).unwrap_or_default()) {
            Ok(FrameRead::Frame(f)) => Ok(f.body.to_vec()),
            Ok(FrameRead::End) => {
                Err(Corruption::new(location(), CorruptionKind::ZeroedFrame { nonzero: 0 }).into())
            }
            Err(e) => Err(Corruption::new(location(), CorruptionKind::Frame(e)).into()),
        }
    }

    /// The whole image, decoded (every block checked).
    pub(crate) fn image(&self, file: &[u8], name: &str) -> Result<Vec<u8>> {
        let parsed = CompressedSegment::parse(file).map_err(|e| corruption(name, &e))?;
        parsed.decode_image().map_err(|e| corruption(name, &e))
    }

    /// Asks the kernel to read the stored blocks holding the frames at
    /// image offsets `offsets` (sorted), without waiting.
    pub(crate) fn will_need(&self, map: &Mapped, offsets: &[u32]) {
        let mut last = None;
        for &offset in offsets {
            let Some(i) = self.index.block_at(map, u64::from(offset)) else {
                continue;
            };
            if last == Some(i) {
                continue;
            }
            last = Some(i);
            if let Some(b) = self.index.block(map, i) {
                map.will_need(b.stored_offset as usize, b.stored_len as usize);
            }
        }
    }
}

/// The compressed form of a sealed segment's image, in the container the
/// format describes; the image is checked (header, footer, every frame)
/// while it is cut into blocks. `None` if `stopped` said so before the
/// last block.
pub(crate) fn compress(
    name: &str,
    image: &[u8],
    level: i32,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<Vec<u8>>> {
    let options = format::CompressOptions {
        level,
        ..format::CompressOptions::default()
    };
    format::compress_unless(image, &options, stopped).map_err(|e| {
        Corruption::new(
            Location::file(name).at(e.offset),
            CorruptionKind::Layout(format!("the segment cannot be compressed: {e}")),
        )
        .into()
    })
}

/// Whether `bytes` start like a compressed segment.
pub(crate) fn is_compressed(bytes: &[u8]) -> bool {
    format::is_compressed(bytes)
}

/// Replaces the file of sealed segment `s` by its compressed form, and the
/// segment in readers' view by one reading it. The compressed bytes are
/// decoded again and compared with the image before anything is replaced
/// (the uncompressed file is the only copy of its records). The file is
/// written under a temporary name, synced, renamed over the segment and the
/// directory synced (`crate::fs::write_atomic`): a crash leaves one form
/// or the other, whole. Nothing happens if the segment left the view
/// meanwhile (pruned), or if `stopped` says so before the last block is
/// compressed (a writer closing).
pub(crate) fn compress_in_place(
    inner: &crate::store::Inner,
    s: &Arc<crate::segment::SealedSegment>,
    level: i32,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<(u64, u64)>> {
    let image = s.whole_image()?;
    let Some(packed) = compress(&s.name, &image, level, stopped)? else {
        return Ok(None);
    };
    let back = CompressedSegment::parse(&packed)
        .and_then(|c| c.decode_image())
        .map_err(|e| corruption(&s.name, &e))?;
    if back != *image {
        return Err(Error::Config(format!(
            "{}: the compressed form does not decode to the segment's bytes; it stays \
             uncompressed",
            s.name
        )));
    }
    drop(back);
    let config = inner.config();
    let fs = &*config.fs;
    let path = config.dir.join(&s.name);
    let _one = crate::pruned::PRUNING.lock();
    if !inner
        .readers()
        .snapshot()
        .sealed
        .iter()
        .any(|x| Arc::ptr_eq(x, s))
    {
        return Ok(None);
    }
    crate::fs::write_atomic(fs, &path, &packed)?;
    let file = fs
        .open(&path, crate::fs::OpenMode::Read)
        .map_err(|e| Error::io("open", &path, e))?;
    let map = file.map().map_err(|e| Error::io("map", &path, e))?;
    let offsets = s.offsets().ok().map(<[u32]>::to_vec);
    let replacement = crate::segment::SealedSegment::new(
        s.header,
        s.footer,
        s.name.clone(),
        map,
        Some(format::blocks_offset(&packed).unwrap_or_default()),
        offsets,
        inner.index_env().clone(),
    );
    inner.readers().replace_sealed(vec![Arc::new(replacement)]);
    // Under the lock: a prune writes the leaves of what it removes back.
    free_leaves(inner, s);
    Ok(Some((image.len() as u64, packed.len() as u64)))
}

/// Frees the stored leaf hashes of a segment stored compressed (see
/// [`crate::tree::Tree::free_leaves`]). A failure only leaves them stored.
fn free_leaves(inner: &crate::store::Inner, s: &crate::segment::SealedSegment) {
    let Some(tree) = inner.tree() else {
        return;
    };
    if let Err(e) = tree.free_leaves(s.header.first_seq, s.footer.end_seq()) {
        tracing::warn!(segment = %s.name, error = %e, "could not free the leaf hashes of a compressed segment; they stay stored");
    }
}

/// What [`crate::Store::compress_sealed`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompressReport {
    /// Segments compressed.
    pub segments: u64,
    /// Their size before.
    pub bytes_before: u64,
    /// Their size after.
    pub bytes_after: u64,
    /// Local sealed segments already compressed.
    pub already: u64,
}

impl crate::Store {
    /// Compresses, on the calling thread, every local sealed segment
    /// stored uncompressed (`compression`: how; [`Compression::None`]
    /// does nothing), as a writer with [`crate::StoreOptions::compression`]
    /// does in the background. Reads go on meanwhile; each segment is
    /// replaced whole (see `docs/format.md`, "Compressed sealed
    /// segments"). A failed write or sync is returned, and leaves the
    /// segment uncompressed and whole.
    pub fn compress_sealed(&self, compression: Compression) -> Result<CompressReport> {
        compression.check()?;
        let config = self.inner.config();
        if config.read_only {
            return Err(Error::ReadOnly);
        }
        let mut report = CompressReport::default();
        let Compression::Zstd { level } = compression else {
            return Ok(report);
        };
        // One segment at a time from the current view, none held after:
        // the file a segment replaced is freed once no reader maps it.
        let numbers: Vec<u64> = self
            .inner
            .readers()
            .snapshot()
            .sealed
            .iter()
            .filter(|s| s.pruned_record().is_none())
            .map(|s| s.header.segment_no)
            .collect();
        for no in numbers {
            let Some(s) = local_sealed(&self.inner, no) else {
                continue;
            };
            if s.is_compressed() {
                free_leaves_of_compressed(&self.inner, no);
                report.already += 1;
                continue;
            }
            match compress_in_place(&self.inner, &s, level, &|| false)? {
                Some((before, after)) => {
                    report.segments += 1;
                    report.bytes_before += before;
                    report.bytes_after += after;
                }
                // Replaced meanwhile: by the sealer's own compression, or
                // pruned.
                None => report.already += 1,
            }
        }
        Ok(report)
    }
}

/// Frees the stored leaf hashes of local sealed segment `no` if it is
/// stored compressed: one compressed by an older version, or restored from
/// an archive, still has them. Under the lock a prune takes.
fn free_leaves_of_compressed(inner: &crate::store::Inner, no: u64) {
    let _one = crate::pruned::PRUNING.lock();
    if let Some(s) = local_sealed(inner, no)
        && s.is_compressed()
    {
        free_leaves(inner, &s);
    }
}

/// Local sealed segment number `no` in the current view.
fn local_sealed(
    inner: &crate::store::Inner,
    no: u64,
) -> Option<Arc<crate::segment::SealedSegment>> {
    inner
        .readers()
        .snapshot()
        .sealed
        .iter()
        .find(|s| s.header.segment_no == no && s.pruned_record().is_none())
        .cloned()
}

/// How often the compressor looks for sealed segments to compress when it
/// found none.
const COMPRESSOR_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The compressor thread of a writer with [`Compression::Zstd`]: it
/// compresses the local sealed segments stored uncompressed, newest first,
/// one at a time, at the lowest scheduling priority
/// ([`crate::background::idle_thread_priority`]): ~0.8 s of CPU per 64 MiB
/// segment that ingest would otherwise wait for on a busy machine. It lags
/// while ingest saturates the CPU and catches up when it eases; a segment
/// is readable throughout, in one form or the other.
pub(crate) struct Compressor {
    stop: Arc<(Mutex<bool>, parking_lot::Condvar)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Compressor {
    pub(crate) fn start(inner: Arc<crate::store::Inner>, level: i32) -> Result<Compressor> {
        let stop = Arc::new((Mutex::new(false), parking_lot::Condvar::new()));
        let flag = stop.clone();
        let dir = inner.config().dir.clone();
        let handle = std::thread::Builder::new()
            .name("sealog-compressor".into())
            .spawn(move || {
                crate::background::idle_thread_priority();
                compress_until_stopped(&inner, level, &flag);
            })
            .map_err(|e| Error::io("spawn thread", &dir, e))?;
        Ok(Compressor {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread: a segment it is compressing is left as it was,
    /// at the next block (~0.1 ms) or once the step it is at is done
    /// (reading the image through, ~30 ms for 64 MiB; training the
    /// dictionary, ~90 ms).
    pub(crate) fn stop(mut self, inner: &crate::store::Inner) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!(store = %inner.config().dir.display(), "the compressor thread panicked; sealed segments stay as they are");
        }
    }
}

fn compress_until_stopped(
    inner: &crate::store::Inner,
    level: i32,
    stop: &(Mutex<bool>, parking_lot::Condvar),
) {
    // Segments compressed before this writer (by an older version, or
    // restored from an archive) may still have their leaf hashes stored.
    let compressed: Vec<u64> = inner
        .readers()
        .snapshot()
        .sealed
        .iter()
        .filter(|s| s.pruned_record().is_none() && s.is_compressed())
        .map(|s| s.header.segment_no)
        .collect();
    for no in compressed {
        if *stop.0.lock() {
            return;
        }
        free_leaves_of_compressed(inner, no);
    }
    // Segments this writer could not compress, by number: not tried again
    // (a damaged record, or a write that failed: the file stays whole).
    let mut skipped = std::collections::HashSet::new();
    loop {
        if *stop.0.lock() || inner.progress().failure().is_some() {
            return;
        }
        let next = inner
            .readers()
            .snapshot()
            .sealed
            .iter()
            .rev()
            .find(|s| {
                s.pruned_record().is_none()
                    && !s.is_compressed()
                    && !skipped.contains(&s.header.segment_no)
            })
            .cloned();
        let Some(s) = next else {
            let mut stopped = stop.0.lock();
            if !*stopped {
                stop.1.wait_for(&mut stopped, COMPRESSOR_POLL);
            }
            continue;
        };
        // Nothing is lost when a compression fails: the uncompressed file
        // is replaced only by a whole, synced, checked copy.
        if let Err(e) = compress_in_place(inner, &s, level, &|| *stop.0.lock()) {
            tracing::warn!(segment = %s.name, error = %e, "could not compress the segment; it stays uncompressed");
            skipped.insert(s.header.segment_no);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_cache_drops_the_least_recently_used_past_its_budget() {
        let cache = BlockCache::default();
        let block = |tag: u8| Arc::new(vec![tag; BLOCK_CACHE_BYTES / 3 + 1]);
        cache.put((1, 0), block(1));
        cache.put((1, 1), block(2));
        // Used again: now the newest of the two.
        assert_eq!(cache.get((1, 0)).map(|b| b[0]), Some(1));
        // A third block passes the budget: the least recently used goes.
        cache.put((2, 0), block(3));
        assert!(cache.get((1, 1)).is_none());
        assert_eq!(cache.get((1, 0)).map(|b| b[0]), Some(1));
        assert_eq!(cache.get((2, 0)).map(|b| b[0]), Some(3));
        let inner = cache.inner.lock();
        assert_eq!(inner.bytes, 2 * (BLOCK_CACHE_BYTES / 3 + 1));
        assert_eq!(inner.by_use.len(), inner.blocks.len());
        drop(inner);
        // The same key again replaces, and counts once.
        cache.put((2, 0), block(4));
        assert_eq!(cache.get((2, 0)).map(|b| b[0]), Some(4));
        assert_eq!(cache.inner.lock().bytes, 2 * (BLOCK_CACHE_BYTES / 3 + 1));
    }

    #[test]
    fn a_store_reads_its_compressed_segments_with_the_decoders_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::image::workload_store(dir.path(), 256 << 10, 3, 12_000, 400);
        store.compress_sealed(Compression::ZSTD).unwrap();
        let sealed = crate::image::sealed_segments(&store);
        assert!(
            sealed.len() > DECODERS_KEPT + 2,
            "{} segments",
            sealed.len()
        );
        let blocks = &store.inner.index_env().blocks;
        let kept = || -> Vec<u64> { blocks.decoders.lock().iter().map(|(s, _)| *s).collect() };
        // Read one after the other, every segment (each with its own
        // dictionary) is read with one decoder, made for each in turn.
        // (The last record of a segment: in another block than its first,
        // which the block cache then holds.)
        let last_of = |seg: &crate::image::SealedSegmentInfo| {
            seg.header.first_seq + seg.footer.record_count - 1
        };
        for seg in &sealed {
            let record = store.get(seg.header.first_seq).unwrap().unwrap();
            assert_eq!(record.seq, seg.header.first_seq);
            assert_eq!(kept(), [seg.header.segment_no]);
        }
        for seg in sealed.iter().rev() {
            assert!(store.get(last_of(seg)).unwrap().is_some());
            assert_eq!(kept(), [seg.header.segment_no]);
        }
        // Reads at the same time each take one: at most DECODERS_KEPT are
        // kept, those given back last; a segment's own is taken first.
        let no = |i: usize| sealed[i].header.segment_no;
        let files: Vec<Vec<u8>> = sealed
            .iter()
            .map(|s| std::fs::read(&s.path).unwrap())
            .collect();
        let dictionary = |i: usize| {
            CompressedSegment::parse(&files[i])
                .unwrap()
                .dictionary()
                .to_vec()
        };
        let taken: Vec<(u64, BlockDecoder)> = (0..sealed.len())
            .map(|i| (no(i), blocks.take_decoder(no(i), &dictionary(i)).unwrap()))
            .collect();
        assert!(kept().is_empty());
        for (segment, decoder) in taken {
            blocks.give_decoder(segment, decoder);
            assert!(kept().len() <= DECODERS_KEPT);
        }
        let last: Vec<u64> = (sealed.len() - DECODERS_KEPT..sealed.len())
            .map(no)
            .collect();
        assert_eq!(kept(), last);
        let at = sealed.len() - DECODERS_KEPT + 3;
        let mut mine = blocks.take_decoder(last[3], &dictionary(at)).unwrap();
        assert_eq!(kept(), [&last[..3], &last[4..]].concat());
        // It is the one made for that segment's dictionary: it reads the
        // segment's blocks.
        let segment = CompressedSegment::parse(&files[at]).unwrap();
        let b = segment.block(1).unwrap();
        let read = segment.read_block(1, &mut mine).unwrap();
        let image = segment.decode_image().unwrap();
        assert_eq!(read, image[b.image_offset as usize..b.image_end() as usize]);
        blocks.give_decoder(last[3], mine);
        store.close().unwrap();
    }
}
