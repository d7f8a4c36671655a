//! Sealed segments as byte images, for copies kept away from the store
//! (an off-host archive, a restore).
//!
//! A sealed segment never changes, so its bytes can be shipped elsewhere
//! and checked there without the store: [`check_sealed`] verifies an image
//! the way `Store::verify` verifies a file (every frame and record, seq
//! continuity, the chain from the header's value, the Merkle root, the end
//! marker and every footer field), and [`sidecar_of`] encodes the index
//! sidecar of an image exactly as the sealer writes it ([`sidecar_like`]:
//! in the layout of a given copy), so an archived sidecar can be compared
//! byte for byte. [`sealed_segments`] and
//! [`tree_entries`] expose, read-only, what an archiver needs of a store.

pub use crate::sidecar::SidecarLayout;
use std::path::PathBuf;

use sealog_format::Hash;
use sealog_format::merkle::Frontier;
use sealog_format::segment::{
    END_MARKER_LEN, FOOTER_LEN, HEADER_LEN, SegmentFooter, SegmentHeader,
};

use crate::error::{Corruption, CorruptionKind, Error, Location, Result, hex};
use crate::segment::{FrameWalker, Stop};
use crate::store::Store;

/// Levels of the stored Merkle tree: level `k` holds the perfect subtrees
/// of height `8k` (level 0: the leaf hashes).
pub const TREE_LEVELS: usize = crate::tree::LEVELS;

/// The tree height between two stored levels.
pub const TREE_LEVEL_STRIDE: u32 = 8;

/// The file name, inside `tree/`, of stored level `k` (`leaves`,
/// `level-1`, …).
pub fn tree_level_file_name(k: usize) -> String {
    crate::tree::level_file_name(k)
}

/// The name, relative to the store directory, of the segment file whose
/// first record is `first_seq` (`segments/<20 digits>.seg`).
pub fn segment_file_name(first_seq: u64) -> String {
    crate::layout::segment_name(first_seq)
}

/// The name, relative to the store directory, of that segment's index
/// sidecar (`segments/<20 digits>.idx`).
pub fn sidecar_file_name(first_seq: u64) -> String {
    crate::sidecar::sidecar_name(first_seq)
}

/// What checking a sealed segment's image established.
#[derive(Clone, Debug)]
pub struct SealedImage {
    /// The decoded header.
    pub header: SegmentHeader,
    /// The decoded footer; every field was recomputed and matches.
    pub footer: SegmentFooter,
    /// The leaf hash of every record, in seq order.
    pub leaves: Vec<Hash>,
    /// The byte offset of every record's frame.
    pub offsets: Vec<u32>,
}

/// The uncompressed bytes of a sealed segment file: `bytes` themselves,
/// or, for a segment stored compressed (`docs/format.md`, "Compressed
/// sealed segments"), its image decoded, every block checked.
pub fn uncompressed<'a>(name: &str, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
    crate::compressed::image_of(name, bytes)
}

/// Whether two copies of a sealed segment file hold the same segment:
/// the same bytes, or the same image once decoded (one of them stored
/// compressed, say, as a store that compresses its segments rewrites them
/// after an archiver copied them). A copy that does not decode differs.
pub fn same_segment(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (uncompressed("a", a), uncompressed("b", b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Verifies the bytes of a sealed segment, stored compressed or not.
/// `name` is used in errors. The
/// chain is recomputed from the header's chain value; whether that value
/// links to the previous segment is the caller's check (compare it with
/// that segment's footer chain head, or the genesis value for segment 0).
pub fn check_sealed(name: &str, bytes: &[u8]) -> Result<SealedImage> {
    let bytes = &*uncompressed(name, bytes)?;
    let layout = |offset: u64, reason: String| -> Error {
        Corruption::new(
            Location::file(name).at(offset),
            CorruptionKind::Layout(reason),
        )
        .into()
    };
    let structure = |offset: u64, e| -> Error {
        Corruption::new(
            Location::file(name).at(offset),
            CorruptionKind::Structure(e),
        )
        .into()
    };
    if bytes.len() < HEADER_LEN + END_MARKER_LEN + FOOTER_LEN {
        return Err(layout(
            0,
            format!(
                "{} bytes are too few for a sealed segment (header, end marker and footer \
                 take {})",
                bytes.len(),
                HEADER_LEN + END_MARKER_LEN + FOOTER_LEN
            ),
        ));
    }
    let header = SegmentHeader::decode(bytes.get(..HEADER_LEN).unwrap_or_default())
        .map_err(|e| structure(0, e))?;
    let footer_at = bytes.len() - FOOTER_LEN;
    let footer = SegmentFooter::decode(bytes.get(footer_at..).unwrap_or_default())
        .map_err(|e| structure(footer_at as u64, e))?;
    let footer_loc = || Location::file(name).at(footer_at as u64);
    let mismatch = |field: &'static str, stored: String, computed: String| -> Error {
        Corruption::new(
            footer_loc(),
            CorruptionKind::FieldMismatch {
                field,
                stored,
                computed,
            },
        )
        .into()
    };
    if footer.first_seq != header.first_seq {
        return Err(mismatch(
            "first seq in footer",
            footer.first_seq.to_string(),
            header.first_seq.to_string(),
        ));
    }
    if footer.segment_no != header.segment_no {
        return Err(mismatch(
            "segment number in footer",
            footer.segment_no.to_string(),
            header.segment_no.to_string(),
        ));
    }
    if footer.store_id != header.store_id {
        return Err(mismatch(
            "store id in footer",
            hex(&footer.store_id),
            hex(&header.store_id),
        ));
    }
    if footer.file_len() != bytes.len() as u64 {
        return Err(mismatch(
            "segment length implied by the footer",
            footer.file_len().to_string(),
            bytes.len().to_string(),
        ));
    }
    let mut walker = FrameWalker::new(bytes, header.first_seq, None);
    let mut chain = header.chain_in;
    let mut frontier = Frontier::new();
    let mut leaves = Vec::new();
    let mut offsets = Vec::new();
    let mut min_event = i64::MAX;
    let mut max_event = i64::MIN;
    let mut first_recorded = None;
    let mut last_recorded = None;
    let mut last_commit = false;
    let mut end = HEADER_LEN as u64;
    while (leaves.len() as u64) < footer.record_count {
        let Some(r) = walker.next_record() else { break };
        chain = sealog_format::chain::link(&chain, &r.leaf);
        let _ = frontier.push(r.leaf);
        leaves.push(r.leaf);
        offsets.push(u32::try_from(r.offset).unwrap_or(u32::MAX));
        let t = r.view.event_time().as_nanos();
        min_event = min_event.min(t);
        max_event = max_event.max(t);
        let recorded = r.view.recorded_at.as_nanos();
        first_recorded.get_or_insert(recorded);
        last_recorded = Some(recorded);
        end = r.offset + r.frame_len as u64;
        last_commit = r.commit;
    }
    let count = leaves.len() as u64;
    if count < footer.record_count {
        let seq = header.first_seq + count;
        let kind = match walker.into_stop() {
            Stop::BadFrame { error, .. } => CorruptionKind::Frame(error),
            Stop::BadRecord { kind, .. } => kind,
            Stop::End { .. } => CorruptionKind::FieldMismatch {
                field: "record count in footer",
                stored: footer.record_count.to_string(),
                computed: count.to_string(),
            },
        };
        return Err(Corruption::new(Location::file(name).at(end).seq(seq), kind).into());
    }
    if end != footer.frames_end {
        return Err(mismatch(
            "frame end in footer",
            footer.frames_end.to_string(),
            end.to_string(),
        ));
    }
    let marker = bytes
        .get(end as usize..end as usize + END_MARKER_LEN)
        .unwrap_or_default();
    if !sealog_format::frame::is_end_marker(marker) {
        return Err(layout(
            end,
            "the end marker after the last frame is damaged".into(),
        ));
    }
    if !last_commit {
        return Err(layout(
            end,
            "the last record of a sealed segment does not end a batch (COMMIT flag missing)".into(),
        ));
    }
    let hash_check = |what: &'static str, stored: &Hash, computed: &Hash| -> Result<()> {
        if stored == computed {
            return Ok(());
        }
        Err(Corruption::new(
            footer_loc(),
            CorruptionKind::HashMismatch {
                what,
                stored: *stored,
                computed: *computed,
            },
        )
        .into())
    };
    hash_check("chain head in footer", &footer.chain_head, &chain)?;
    hash_check(
        "Merkle root in footer",
        &footer.merkle_root,
        &frontier.root(),
    )?;
    let times = [
        (
            "earliest event time in footer",
            footer.min_event_time.as_nanos(),
            min_event,
        ),
        (
            "latest event time in footer",
            footer.max_event_time.as_nanos(),
            max_event,
        ),
        (
            "first recorded time in footer",
            footer.min_recorded_at.as_nanos(),
            first_recorded.unwrap_or_default(),
        ),
        (
            "last recorded time in footer",
            footer.max_recorded_at.as_nanos(),
            last_recorded.unwrap_or_default(),
        ),
    ];
    for (field, stored, computed) in times {
        if stored != computed {
            return Err(mismatch(field, stored.to_string(), computed.to_string()));
        }
    }
    Ok(SealedImage {
        header,
        footer,
        leaves,
        offsets,
    })
}

/// The index sidecar of a checked image, byte for byte what the sealer
/// writes for that segment.
pub fn sidecar_of(name: &str, bytes: &[u8], image: &SealedImage) -> Result<Vec<u8>> {
    sidecar_of_as(name, bytes, image, SidecarLayout::CURRENT)
}

/// The index sidecar of a checked image in the layout of `like`, a
/// sidecar of the same segment found elsewhere (the store's file, an
/// archived copy): with the block checksums `like` has (a sidecar written
/// before some kind existed lacks it), so that the two compare byte for
/// byte. `None` gives the layout the sealer writes now.
pub fn sidecar_like(
    name: &str,
    bytes: &[u8],
    image: &SealedImage,
    like: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let layout = like.map_or(SidecarLayout::CURRENT, SidecarLayout::of);
    sidecar_of_as(name, bytes, image, layout)
}

/// [`sidecar_of`] in a given layout ([`SidecarLayout::ORIGINAL`]: the
/// layout sidecars were written in before block checksums existed).
pub fn sidecar_of_as(
    name: &str,
    bytes: &[u8],
    image: &SealedImage,
    layout: SidecarLayout,
) -> Result<Vec<u8>> {
    let bytes = &*uncompressed(name, bytes)?;
    let identity = crate::sidecar::identity(&image.header, &image.footer);
    let offsets = image.offsets.iter().map(|&offset| u64::from(offset));
    let records = frames_at(name, bytes, image.header.first_seq, offsets);
    crate::sidecar::encode_records_as(identity, records, name, layout)
}

/// The bodies of the frames at `offsets` (ordinal order, from seq
/// `first_seq`) of a segment's uncompressed `bytes` already checked, with
/// their offsets, as the sidecar encoder takes them. A frame that is not
/// there (or at an offset a sidecar cannot hold) is an error naming it.
pub(crate) fn frames_at<'a>(
    name: &'a str,
    bytes: &'a [u8],
    first_seq: u64,
    offsets: impl ExactSizeIterator<Item = u64> + 'a,
) -> impl ExactSizeIterator<Item = Result<(u32, &'a [u8])>> + 'a {
    offsets.enumerate().map(move |(ordinal, offset)| {
        let seq = first_seq + ordinal as u64;
        let damaged = || -> Error {
            Corruption::new(
                Location::file(name).at(offset).seq(seq),
                CorruptionKind::Layout("a frame moved after the segment was checked".into()),
            )
            .into()
        };
        let at = u32::try_from(offset).map_err(|_| damaged())?;
        let rest = bytes.get(at as usize..).ok_or_else(damaged)?;
        match sealog_format::frame::read_frame(rest) {
            Ok(sealog_format::frame::FrameRead::Frame(f)) => Ok((at, f.body)),
            _ => Err(damaged()),
        }
    })
}

/// A sealed segment of a store, as its reader sees it.
#[derive(Clone, Debug)]
pub struct SealedSegmentInfo {
    /// Its name relative to the store directory (`segments/<seq>.seg`).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its header.
    pub header: SegmentHeader,
    /// Its footer.
    pub footer: SegmentFooter,
}

/// A store in `dir` with segments of `segment_size` bytes (not
/// preallocated), holding `events` events of the seeded workload appended
/// `batch` at a time, rolled and sealed (for tests).
#[cfg(test)]
pub(crate) fn workload_store(
    dir: &std::path::Path,
    segment_size: u64,
    seed: u64,
    events: u64,
    batch: usize,
) -> Store {
    let store = Store::open(
        dir,
        crate::StoreOptions {
            segment_size,
            preallocation: crate::Preallocation::None,
            ..crate::StoreOptions::default()
        },
    )
    .unwrap();
    for chunk in crate::workload::Workload::new(seed)
        .generate(events)
        .chunks(batch)
    {
        store.append_batch(chunk.to_vec()).unwrap();
    }
    store.roll().unwrap();
    store.wait_sealed().unwrap();
    store
}

/// The sealed segments of a store, oldest first, as of the store's current
/// view (for a read-only store: as of when it was opened).
pub fn sealed_segments(store: &Store) -> Vec<SealedSegmentInfo> {
    store
        .view()
        .sealed
        .iter()
        .map(|s| SealedSegmentInfo {
            name: s.name.clone(),
            path: store.dir().join(&s.name),
            header: s.header,
            footer: s.footer,
        })
        .collect()
}

/// Entries `first .. first + count` of stored tree level `level` (0: leaf
/// hashes; `k`: the perfect subtrees of height `8k`), read from the store's
/// level files. Only entries over sealed records exist there.
pub fn tree_entries(store: &Store, level: usize, first: u64, count: u64) -> Result<Vec<Hash>> {
    let Some(tree) = store.inner.tree() else {
        return Err(Error::Config(
            "this store has no Merkle tree files (open it for writing once to build them)".into(),
        ));
    };
    let sealed = tree.persisted();
    let span = 1u64
        .checked_shl(TREE_LEVEL_STRIDE * level as u32)
        .unwrap_or(u64::MAX);
    let stored = sealed / span;
    let end = first.saturating_add(count);
    if level >= TREE_LEVELS || end > stored {
        return Err(Error::Config(format!(
            "tree level {level} holds {stored} entries over the sealed records; entries \
             {first}..{end} were asked for"
        )));
    }
    let n = usize::try_from(count).map_err(|_| Error::Config("too many tree entries".into()))?;
    let path = store
        .dir()
        .join(crate::layout::TREE)
        .join(crate::tree::level_file_name(level));
    match crate::tree::LevelFile::open(&*store.inner.config().fs, &path, true)? {
        Some(file) => file.read(first, n),
        None => Err(Error::Config(format!(
            "the tree level file {} is missing",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use sealog_format::{Actor, Event, Outcome, Resource};

    use super::*;
    use crate::{Preallocation, StoreOptions};

    fn sealed_store(dir: &std::path::Path) -> Store {
        let options = StoreOptions {
            segment_size: 8192,
            preallocation: Preallocation::Allocate,
            ..StoreOptions::default()
        };
        let store = Store::open(dir, options).expect("open");
        for i in 0..400 {
            store
                .append(Event::new(
                    Actor::new("user", format!("u{}", i % 3)),
                    "doc.read",
                    Resource::new("doc", i.to_string()),
                    Outcome::Success,
                ))
                .expect("append");
        }
        store.roll().expect("roll");
        store.wait_sealed().expect("sealed");
        store.close().expect("close");
        Store::open_read_only(dir).expect("read-only")
    }

    #[test]
    fn a_sealed_image_checks_like_its_file_and_rebuilds_its_sidecar_byte_for_byte() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = sealed_store(tmp.path());
        let segments = sealed_segments(&store);
        assert!(segments.len() > 2);
        for s in &segments {
            let bytes = std::fs::read(&s.path).expect("read");
            let image = check_sealed(&s.name, &bytes).expect("intact");
            assert_eq!(image.footer, s.footer);
            assert_eq!(image.leaves.len() as u64, s.footer.record_count);
            let sidecar = sidecar_of(&s.name, &bytes, &image).expect("sidecar");
            let written = std::fs::read(tmp.path().join(sidecar_file_name(s.header.first_seq)))
                .expect("the sealer's sidecar");
            assert_eq!(sidecar, written, "{}", s.name);
            let stored =
                tree_entries(&store, 0, s.header.first_seq, s.footer.record_count).expect("leaves");
            assert_eq!(stored, image.leaves);
        }
        assert_eq!(
            tree_entries(&store, 1, 0, 1).expect("a level-1 entry"),
            vec![sealog_format::merkle::root(
                &tree_entries(&store, 0, 0, 256).expect("256 leaves")
            )]
        );
        assert!(tree_entries(&store, 1, 0, 2).is_err(), "only 400 leaves");
    }

    #[test]
    fn a_damaged_image_is_refused_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = sealed_store(tmp.path());
        let s = sealed_segments(&store).remove(1);
        let bytes = std::fs::read(&s.path).expect("read");
        for at in [10, 200, bytes.len() - 100, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            let e = check_sealed("copy.seg", &damaged).expect_err("damage is found");
            assert_eq!(
                e.corruption().map(|c| c.location.file.as_str()),
                Some("copy.seg"),
                "byte {at}: {e}"
            );
        }
        assert!(check_sealed("short.seg", &bytes[..bytes.len() - 1]).is_err());
    }
}
