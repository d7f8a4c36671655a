//! Opening a store: checking what is on disk and recovering from a crash.
//!
//! Sealed segments are checked cheaply (header and footer checksums, seq and
//! chain continuity between them); their records are only read by
//! verification. Only the segments without a footer — the active one, and
//! one whose seal was interrupted — are scanned frame by frame, so opening
//! takes the same time however large the store is.
//!
//! A scan ends at the first frame that cannot be read. If the damage is the
//! signature of an interrupted write ([`crate::segment::classify_tail`]),
//! everything after the last complete batch was never acknowledged: those
//! bytes are copied to `lost+found/`, zeroed, and the store appends a
//! `store.recovered` event that says what was removed. Any other damage is
//! corruption and opening fails, naming the file and byte offset; the store
//! can still be opened read-only to examine it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};
use sealog_format::segment::{
    END_MARKER_LEN, FOOTER_LEN, HEADER_LEN, Manifest, SegmentFooter, SegmentHeader,
};
use sealog_format::{Actor, Event, Hash, Outcome, Resource, Timestamp};

use crate::error::{Corruption, CorruptionKind, Error, Location, Result, hex};
use crate::fs::{self, OpenMode, Vfs, VfsFile};
use crate::layout;
use crate::options::{Preallocation, StoreOptions};
use crate::progress::Progress;
use crate::segment::{FrameWalker, OpenData, OpenSegment, SealedSegment, Tail, classify_tail};
use crate::store::{ActiveSegment, Inner, LogState, Pending, View};
use crate::tree::{LevelFile, Tree};
use crate::writer::Workers;

/// What recovery found and did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Torn tails removed.
    pub truncations: Vec<Truncation>,
    /// Segments whose interrupted seal was completed.
    pub sealed: Vec<String>,
    /// Empty segment files removed (created just before a crash that left
    /// an earlier segment with a torn tail).
    pub removed: Vec<String>,
    /// Leaf hashes recomputed because `tree/leaves` was short.
    pub rebuilt_leaves: u64,
    /// Read-only opens only: the damage that stopped loading.
    pub problems: Vec<Corruption>,
}

/// A torn tail that recovery removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub segment: String,
    /// Byte offset where the removed bytes began (the end of the last
    /// complete batch).
    pub offset: u64,
    /// Non-zero bytes removed.
    pub dropped_bytes: u64,
    /// Complete frames removed because their batch was incomplete.
    pub dropped_frames: u64,
    /// Where the removed bytes were saved, relative to the store.
    pub saved_to: Option<String>,
}

impl RecoveryReport {
    /// True if recovery changed nothing.
    pub fn is_clean(&self) -> bool {
        self.truncations.is_empty() && self.sealed.is_empty() && self.removed.is_empty()
    }

    /// The `store.recovered` events to append for this report.
    pub(crate) fn events(&self) -> Vec<Event> {
        self.truncations
            .iter()
            .map(|t| {
                let mut metadata = sealog_format::Metadata::new();
                metadata.insert("segment".into(), t.segment.clone().into());
                metadata.insert("offset".into(), t.offset.into());
                metadata.insert("dropped_bytes".into(), t.dropped_bytes.into());
                metadata.insert("dropped_frames".into(), t.dropped_frames.into());
                if let Some(saved) = &t.saved_to {
                    metadata.insert("saved_to".into(), saved.clone().into());
                }
                Event::new(
                    Actor::new("system", "sealog"),
                    "store.recovered",
                    Resource::new("segment", t.segment.clone()),
                    Outcome::Success,
                )
                .with_reason(format!(
                    "recovery removed an interrupted write: {} bytes ({} complete frames of an \
                     unfinished batch) at byte {} of {}; they were never acknowledged{}",
                    t.dropped_bytes,
                    t.dropped_frames,
                    t.offset,
                    t.segment,
                    t.saved_to
                        .as_ref()
                        .map(|s| format!(" and are kept in {s}"))
                        .unwrap_or_default()
                ))
                .with_metadata(metadata)
            })
            .collect()
    }
}

/// A segment file as found on disk.
pub(crate) struct Found {
    pub name: String,
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
    pub len: u64,
    pub header: SegmentHeader,
    pub footer: Option<SegmentFooter>,
}

/// A committed record found by scanning.
struct Scanned {
    offset: u32,
    frame_len: u32,
    event_time: i64,
    recorded_at: Timestamp,
    leaf: Hash,
    chain: Hash,
}

/// The result of scanning an unsealed segment.
struct ScanResult {
    found: Found,
    /// The bytes after the last complete batch, up to the last non-zero
    /// byte (the rest of the image is not kept).
    leftover: Vec<u8>,
    /// Whether the bytes where the scan stopped are an end marker.
    ends_in_marker: bool,
    records: Vec<Scanned>,
    /// Records up to and including the last COMMIT frame.
    committed: usize,
    committed_end: u64,
    stop_at: u64,
    stop_seq: u64,
    tail: Tail,
}

impl ScanResult {
    fn open_data(&self) -> OpenData {
        let mut data = OpenData::new(self.found.header.chain_in);
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
        data
    }

    /// The last non-zero byte after the committed end, if any, and whether
    /// the bytes there are only the remains of an interrupted seal.
    fn leftover(&self) -> Option<(u64, bool)> {
        if self.leftover.is_empty() {
            return None;
        }
        let seal_debris =
            self.tail == Tail::Clean && self.records.len() == self.committed && self.ends_in_marker;
        Some((self.leftover.len() as u64, seal_debris))
    }
}

fn corruption(location: Location, kind: CorruptionKind) -> Error {
    Corruption::new(location, kind).into()
}

/// Opens the store in `dir`: see the module documentation.
pub(crate) fn open(
    dir: &Path,
    options: StoreOptions,
    read_only: bool,
) -> Result<(Arc<Inner>, Arc<Workers>)> {
    let max_batch = options.check()?;
    let fs = options.fs.clone();
    let dir = dir.to_path_buf();
    if !read_only {
        fs::create_dirs(&*fs, &[&dir])?;
    } else if !fs.exists(&dir).map_err(|e| Error::io("stat", &dir, e))? {
        return Err(Error::io(
            "open store",
            &dir,
            io::Error::new(io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    let lock = if read_only {
        None
    } else {
        let lock_path = dir.join(layout::LOCK);
        Some(fs.lock(&lock_path).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Error::Locked { path: dir.clone() }
            } else {
                Error::io("lock", &lock_path, e)
            }
        })?)
    };
    let segments_dir = dir.join(layout::SEGMENTS);
    let tree_dir = dir.join(layout::TREE);
    if !read_only {
        fs::create_dirs(&*fs, &[&segments_dir, &tree_dir])?;
    }
    let mut report = RecoveryReport::default();
    let segment_files = list_segments(&*fs, &segments_dir, &options, read_only)?;
    let manifest = load_manifest(&*fs, &dir, !segment_files.is_empty(), read_only)?;

    // Read every header and footer.
    let mut found = Vec::with_capacity(segment_files.len());
    for (first_seq, file_name) in segment_files {
        match read_found(&*fs, &dir, &file_name, first_seq, &manifest, read_only) {
            Ok(f) => found.push(f),
            Err(e) if read_only => {
                keep_problem(&mut report, e)?;
                break;
            }
            Err(e) => return Err(e),
        }
    }

    demote_unfinished_seal(&mut found)?;

    // Check the sealed prefix: numbering, seqs and chain links.
    let mut expected_no = 0u64;
    let mut expected_seq = 0u64;
    let mut chain = manifest.genesis();
    let mut last_recorded: Option<i64> = None;
    let mut sealed: Vec<(Found, SegmentFooter)> = Vec::new();
    let mut unsealed: Vec<Found> = Vec::new();
    for f in found {
        if !unsealed.is_empty() && f.footer.is_some() {
            let first = unsealed.first().map(|u| u.name.clone()).unwrap_or_default();
            let e = corruption(Location::file(first), CorruptionKind::UnsealedInMiddle);
            if read_only {
                keep_problem(&mut report, e)?;
                unsealed.clear();
                break;
            }
            return Err(e);
        }
        match f.footer {
            Some(footer) => {
                if let Err(e) = check_link(&f, expected_no, expected_seq, &chain) {
                    if read_only {
                        keep_problem(&mut report, e)?;
                        break;
                    }
                    return Err(e);
                }
                expected_no += 1;
                expected_seq = footer.end_seq();
                chain = footer.chain_head;
                last_recorded = Some(footer.max_recorded_at.as_nanos());
                sealed.push((f, footer));
            }
            None => unsealed.push(f),
        }
    }

    // Reconcile the tree's level files with the sealed records.
    let tree = Tree::open(&*fs, &tree_dir, read_only)?;
    if let Some(tree) = &tree {
        if read_only {
            if !tree.assume_persisted(expected_seq) {
                tracing::warn!(
                    "the tree files do not cover the sealed records; proofs are unavailable read-only"
                );
            }
        } else {
            report.rebuilt_leaves = reconcile_leaves(tree.leaves(), &sealed, expected_seq)?;
            tree.reconcile(expected_seq)?;
        }
    }

    // Scan the unsealed segments in order.
    let mut scans: Vec<ScanResult> = Vec::new();
    let mut pending_unsealed = unsealed.into_iter();
    while let Some(f) = pending_unsealed.next() {
        if let Err(e) = check_link(&f, expected_no, expected_seq, &chain) {
            if read_only {
                keep_problem(&mut report, e)?;
                break;
            }
            return Err(e);
        }
        let mut scan = scan_unsealed(f, last_recorded)?;
        if !pending_unsealed.as_slice().is_empty()
            && scan.records.len() == scan.committed
            && crate::segment::interrupted_seal(&scan.leftover, scan.committed_end)
        {
            // What a seal interrupted by a power loss left (see
            // `interrupted_seal`): the records are whole; seal again.
            scan.tail = Tail::Clean;
            scan.ends_in_marker = true;
        }
        if let Tail::Corrupt(kind) = &scan.tail {
            let location = Location::file(&scan.found.name)
                .at(scan.stop_at)
                .seq(scan.stop_seq);
            let e = corruption(location, kind.clone());
            if read_only {
                keep_problem(&mut report, e)?;
                scans.push(scan);
                break;
            }
            return Err(e);
        }
        let damaged = scan.tail == Tail::Torn || scan.records.len() > scan.committed;
        let rest: Vec<Found> = pending_unsealed.by_ref().collect();
        if damaged && !rest.is_empty() {
            // An interrupted write in a segment followed by others: the
            // committer syncs a segment before writing the next, so the later
            // ones can hold no committed record.
            for later in &rest {
                if holds_committed_record(later)? {
                    let e = corruption(
                        Location::file(&later.name),
                        CorruptionKind::Layout(format!(
                            "holds records although the earlier segment {} ends in an \
                             interrupted write at byte {}",
                            scan.found.name, scan.stop_at
                        )),
                    );
                    if read_only {
                        keep_problem(&mut report, e)?;
                        break;
                    }
                    return Err(e);
                }
            }
            if !read_only {
                for later in rest {
                    fs.remove_file(&later.path)
                        .map_err(|e| Error::io("remove", &later.path, e))?;
                    report.removed.push(later.name);
                }
                fs.sync_dir(&segments_dir)
                    .map_err(|e| Error::io("fsync directory", &segments_dir, e))?;
            }
        } else {
            pending_unsealed = rest.into_iter();
        }
        expected_no += 1;
        expected_seq = scan.found.header.first_seq + scan.committed as u64;
        if let Some(last) = scan.records.get(scan.committed.wrapping_sub(1)) {
            chain = last.chain;
            last_recorded = Some(last.recorded_at.as_nanos());
        }
        scans.push(scan);
    }

    // A signed checkpoint covers only records that were durable when it was
    // signed. If the log now ends before it, what is missing was never a torn
    // write: refuse to open for writing (which would cut and then overwrite
    // the evidence) instead of recovering.
    let checkpoints =
        crate::checkpoint::CheckpointLog::open(&*fs, &dir.join(layout::CHECKPOINTS), read_only)?;
    let signed = checkpoints
        .latest()
        .and_then(|text| crate::store::parse_signed(&text).ok())
        .map_or(0, |c| c.size);
    if signed > expected_seq {
        let location = scans
            .last()
            .map_or_else(Location::default, |s| {
                Location::file(&s.found.name).at(s.committed_end)
            })
            .seq(expected_seq);
        let e = corruption(
            location,
            CorruptionKind::Truncated {
                have: expected_seq,
                signed,
            },
        );
        if read_only {
            keep_problem(&mut report, e)?;
        } else {
            return Err(e);
        }
    }

    // Every unsealed segment but the last is complete: seal it now.
    let index_env = Arc::new(crate::sidecar::IndexEnv {
        fs: fs.clone(),
        dir: dir.clone(),
        writable: !read_only,
        rebuilds: std::sync::atomic::AtomicU64::new(0),
        store: std::sync::OnceLock::new(),
    });
    let mut open_segments: Vec<Arc<OpenSegment>> = Vec::new();
    let mut sealed_segments: Vec<Arc<SealedSegment>> = Vec::new();
    for (f, footer) in sealed {
        let map = f.file.map().map_err(|e| Error::io("map", &f.path, e))?;
        sealed_segments.push(Arc::new(SealedSegment::new(
            f.header,
            footer,
            f.name,
            map,
            None,
            index_env.clone(),
        )));
    }
    let scan_count = scans.len();
    for (i, scan) in scans.into_iter().enumerate() {
        let is_last = i + 1 == scan_count;
        if !read_only {
            truncate_tail(&*fs, &dir, &options, &scan, &mut report)?;
        }
        let data = scan.open_data();
        let found = scan.found;
        let segment = Arc::new(OpenSegment::new(
            found.header,
            found.name,
            found.path,
            found.file,
            data,
        ));
        if !is_last && !read_only && segment.data.read().len() > 0 {
            let (sealed, index_failure) =
                crate::writer::seal_with(tree.as_ref(), &index_env, &segment)?;
            if let Some(e) = index_failure {
                // Opening writes what it seals; a failed write fails the open.
                return Err(e);
            }
            report.sealed.push(segment.name.clone());
            sealed_segments.push(Arc::new(sealed));
        } else {
            open_segments.push(segment);
        }
    }

    // Without an unsealed segment, start a new active one.
    if open_segments.is_empty() && !read_only {
        let header = SegmentHeader {
            store_id: manifest.store_id,
            segment_no: expected_no,
            first_seq: expected_seq,
            chain_in: chain,
            created_at: Timestamp::now(),
        };
        open_segments.push(create_first_segment(&*fs, &dir, &options, header)?);
    }

    let (next_seq, chain_head, active_no, write_pos, records) = match open_segments.last() {
        Some(active) => {
            let data = active.data.read();
            (
                active.header.first_seq + data.len(),
                data.chain_head,
                active.header.segment_no,
                data.frames_end,
                data.len(),
            )
        }
        None => (expected_seq, chain, expected_no, HEADER_LEN as u64, 0),
    };
    let last_recorded_at = last_recorded.map(Timestamp::from_nanos).unwrap_or_default();
    let spare = if !read_only && options.preallocation == Preallocation::ZeroFill {
        find_spare(&*fs, &segments_dir)?
    } else {
        None
    };
    let active = if read_only {
        None
    } else {
        open_segments.last().cloned()
    };
    let inner = Arc::new(Inner {
        dir: dir.clone(),
        fs: fs.clone(),
        max_batch,
        manifest,
        read_only,
        log: Mutex::new(LogState {
            next_seq,
            last_recorded_at,
            chain: chain_head,
            active: ActiveSegment {
                segment_no: active_no,
                write_pos,
                records,
                started: Instant::now(),
            },
            pending: Pending::default(),
            failed: None,
            closing: false,
            generation: 0,
        }),
        work_ready: Condvar::new(),
        progress: Progress::new(next_seq),
        view: RwLock::new(Arc::new(View {
            sealed: sealed_segments,
            open: open_segments,
        })),
        tree,
        checkpoints,
        checkpoint_lock: Mutex::new(()),
        index_env,
        spare: Mutex::new(spare),
        recovery: report,
        counters: crate::stats::Counters::default(),
        visible: Mutex::new(next_seq),
        visible_grew: Condvar::new(),
        _lock: lock,
        options,
    });
    let _ = inner.index_env.store.set(Arc::downgrade(&inner));
    if !inner.recovery.is_clean() {
        tracing::warn!(store = %dir.display(), report = ?inner.recovery, "recovered from an unclean shutdown");
    }
    let workers = Workers::start(inner.clone(), active)?;
    Ok((inner, workers))
}

fn keep_problem(report: &mut RecoveryReport, e: Error) -> Result<()> {
    match e {
        Error::Corruption(c) => {
            report.problems.push(*c);
            Ok(())
        }
        other => Err(other),
    }
}

/// Segment files in log order (first seq, file name).
pub(crate) fn list_segment_names(fs: &dyn Vfs, segments_dir: &Path) -> Result<Vec<(u64, String)>> {
    if !fs
        .exists(segments_dir)
        .map_err(|e| Error::io("stat", segments_dir, e))?
    {
        return Ok(Vec::new());
    }
    let names = fs
        .read_dir(segments_dir)
        .map_err(|e| Error::io("list", segments_dir, e))?;
    let mut segments: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| layout::parse_segment_file(&name).map(|seq| (seq, name)))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Segment files in log order; removes leftovers of interrupted creations.
fn list_segments(
    fs: &dyn Vfs,
    segments_dir: &Path,
    options: &StoreOptions,
    read_only: bool,
) -> Result<Vec<(u64, String)>> {
    if !fs
        .exists(segments_dir)
        .map_err(|e| Error::io("stat", segments_dir, e))?
    {
        return Ok(Vec::new());
    }
    let names = fs
        .read_dir(segments_dir)
        .map_err(|e| Error::io("list", segments_dir, e))?;
    let mut kept_spare = false;
    for name in names {
        if layout::parse_segment_file(&name).is_some() {
            continue;
        }
        let path = segments_dir.join(&name);
        let leftover = name.ends_with(".tmp");
        let is_spare = !leftover && is_spare_name(&name);
        // Keep one complete spare; a spare of the wrong size (the segment
        // size changed) or a second one is removed.
        let stale_spare = is_spare
            && (kept_spare
                || fs
                    .open(&path, OpenMode::Read)
                    .and_then(|f| f.size())
                    .map_or(true, |len| len != options.segment_size));
        if is_spare && !stale_spare {
            kept_spare = true;
        }
        if (leftover || stale_spare) && !read_only {
            fs.remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
        } else if !is_spare && !leftover && !name.ends_with(".idx") {
            tracing::warn!(file = %path.display(), "ignoring an unknown file among the segments");
        }
    }
    list_segment_names(fs, segments_dir)
}

fn is_spare_name(name: &str) -> bool {
    name == layout::SPARE || name.starts_with(&format!("{}-", layout::SPARE))
}

/// The spare segment file left by a previous run, if any.
fn find_spare(fs: &dyn Vfs, segments_dir: &Path) -> Result<Option<PathBuf>> {
    if !fs
        .exists(segments_dir)
        .map_err(|e| Error::io("stat", segments_dir, e))?
    {
        return Ok(None);
    }
    let names = fs
        .read_dir(segments_dir)
        .map_err(|e| Error::io("list", segments_dir, e))?;
    Ok(names
        .into_iter()
        .find(|n| is_spare_name(n))
        .map(|n| segments_dir.join(n)))
}

/// Reads the manifest of an existing store.
pub(crate) fn read_manifest(fs: &dyn Vfs, dir: &Path) -> Result<Manifest> {
    let has_segments = !list_segment_names(fs, &dir.join(layout::SEGMENTS))?.is_empty();
    load_manifest(fs, dir, has_segments, true)
}

fn load_manifest(
    fs: &dyn Vfs,
    dir: &Path,
    has_segments: bool,
    read_only: bool,
) -> Result<Manifest> {
    let path = dir.join(layout::MANIFEST);
    match fs::read_all(fs, &path) {
        Ok(bytes) => Manifest::decode(&bytes).map_err(|e| {
            corruption(
                Location::file(layout::MANIFEST).at(0),
                CorruptionKind::Structure(e),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if has_segments {
                return Err(corruption(
                    Location::file(layout::MANIFEST),
                    CorruptionKind::MissingManifest,
                ));
            }
            if read_only {
                return Err(Error::io("open", &path, e));
            }
            let mut store_id = [0u8; 16];
            getrandom::fill(&mut store_id).map_err(|e| {
                Error::io("generate store id", &path, io::Error::other(e.to_string()))
            })?;
            let manifest = Manifest {
                store_id,
                created_at: Timestamp::now(),
            };
            fs::write_atomic(fs, &path, &manifest.encode())?;
            Ok(manifest)
        }
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

pub(crate) fn read_found(
    fs: &dyn Vfs,
    dir: &Path,
    file_name: &str,
    first_seq: u64,
    manifest: &Manifest,
    read_only: bool,
) -> Result<Found> {
    let name = format!("{}/{file_name}", layout::SEGMENTS);
    let path = dir.join(&name);
    let mode = if read_only {
        OpenMode::Read
    } else {
        OpenMode::ReadWrite
    };
    let file = fs
        .open(&path, mode)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
    let mut head = vec![0u8; HEADER_LEN.min(usize::try_from(len).unwrap_or(HEADER_LEN))];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| Error::io("read", &path, e))?;
    let header = SegmentHeader::decode(&head)
        .map_err(|e| corruption(Location::file(&name).at(0), CorruptionKind::Structure(e)))?;
    if header.store_id != manifest.store_id {
        return Err(corruption(
            Location::file(&name).at(0),
            CorruptionKind::ForeignFile {
                found: hex(&header.store_id),
                expected: hex(&manifest.store_id),
            },
        ));
    }
    if header.first_seq != first_seq {
        return Err(corruption(
            Location::file(&name).at(0),
            CorruptionKind::Layout(format!(
                "the file is named for seq {first_seq} but its header says {}",
                header.first_seq
            )),
        ));
    }
    let footer = read_footer(&*file, &path, &name, len, &header)?;
    Ok(Found {
        name,
        path,
        file,
        len,
        header,
        footer,
    })
}

/// The footer at the end of the file, if the file ends in one.
fn read_footer(
    file: &dyn VfsFile,
    path: &Path,
    name: &str,
    len: u64,
    header: &SegmentHeader,
) -> Result<Option<SegmentFooter>> {
    let min = (HEADER_LEN + END_MARKER_LEN + FOOTER_LEN) as u64;
    if len < min {
        return Ok(None);
    }
    let mut tail = vec![0u8; FOOTER_LEN];
    file.read_exact_at(&mut tail, len - FOOTER_LEN as u64)
        .map_err(|e| Error::io("read", path, e))?;
    let Ok(footer) = SegmentFooter::decode(&tail) else {
        return Ok(None);
    };
    let location = || Location::file(name).at(len - FOOTER_LEN as u64);
    let mismatch = |field: &'static str, stored: String, computed: String| {
        Err(corruption(
            location(),
            CorruptionKind::FieldMismatch {
                field,
                stored,
                computed,
            },
        ))
    };
    if footer.file_len() != len {
        return mismatch(
            "file length implied by the footer",
            footer.file_len().to_string(),
            len.to_string(),
        );
    }
    if footer.first_seq != header.first_seq {
        return mismatch(
            "first seq in footer",
            footer.first_seq.to_string(),
            header.first_seq.to_string(),
        );
    }
    if footer.segment_no != header.segment_no {
        return mismatch(
            "segment number in footer",
            footer.segment_no.to_string(),
            header.segment_no.to_string(),
        );
    }
    if footer.store_id != header.store_id {
        return mismatch(
            "store id in footer",
            hex(&footer.store_id),
            hex(&header.store_id),
        );
    }
    if footer.record_count == 0 {
        return mismatch("record count in footer", "0".into(), "at least 1".into());
    }
    Ok(Some(footer))
}

/// Counts the last sealed segment as an unfinished seal when its end marker
/// is not intact although its footer is, and a segment follows it.
///
/// The sealer writes the end marker and the footer in one write and syncs
/// the file after; a power loss before that sync can keep the sector of
/// the footer and lose the sector of the marker. Only the last sealed
/// segment can be caught so (seals run one after the other, each synced
/// before the next starts), and its records are whole (they were synced
/// before the next segment was created), so the open seals it again.
pub(crate) fn demote_unfinished_seal(found: &mut [Found]) -> Result<()> {
    let Some(pos) = found.iter().rposition(|f| f.footer.is_some()) else {
        return Ok(());
    };
    if pos + 1 == found.len() {
        return Ok(());
    }
    let Some(last) = found.get_mut(pos) else {
        return Ok(());
    };
    let Some(footer) = last.footer else {
        return Ok(());
    };
    let mut marker = [0u8; END_MARKER_LEN];
    last.file
        .read_exact_at(&mut marker, footer.frames_end)
        .map_err(|e| Error::io("read", &last.path, e))?;
    if !sealog_format::frame::is_end_marker(&marker) {
        tracing::warn!(segment = %last.name, "the end marker of the last seal is incomplete; sealing it again");
        last.footer = None;
    }
    Ok(())
}

/// Checks that `f` is the segment expected next.
pub(crate) fn check_link(
    f: &Found,
    expected_no: u64,
    expected_seq: u64,
    chain: &Hash,
) -> Result<()> {
    let h = &f.header;
    if h.segment_no != expected_no || h.first_seq != expected_seq {
        let kind = if h.segment_no > expected_no && h.first_seq > expected_seq {
            CorruptionKind::MissingSegment {
                expected_segment_no: expected_no,
                expected_first_seq: expected_seq,
            }
        } else {
            CorruptionKind::Layout(format!(
                "segment number {} starting at seq {} where segment {expected_no} starting at \
                 seq {expected_seq} was expected",
                h.segment_no, h.first_seq
            ))
        };
        return Err(corruption(Location::file(&f.name).at(0), kind));
    }
    if &h.chain_in != chain {
        return Err(corruption(
            Location::file(&f.name).at(0),
            CorruptionKind::HashMismatch {
                what: "chain value in header (previous segment's chain head)",
                stored: h.chain_in,
                computed: *chain,
            },
        ));
    }
    Ok(())
}

fn scan_unsealed(found: Found, last_recorded: Option<i64>) -> Result<ScanResult> {
    let len = usize::try_from(found.len).map_err(|_| {
        corruption(
            Location::file(&found.name),
            CorruptionKind::Layout("the file is too large to be a segment".into()),
        )
    })?;
    let mut image = vec![0u8; len];
    found
        .file
        .read_exact_at(&mut image, 0)
        .map_err(|e| Error::io("read", &found.path, e))?;
    let mut records = Vec::new();
    let mut committed = 0;
    let mut committed_end = HEADER_LEN as u64;
    let mut chain = found.header.chain_in;
    let (stop, tail) = {
        let mut walker = FrameWalker::new(&image, found.header.first_seq, last_recorded);
        while let Some(r) = walker.next_record() {
            chain = sealog_format::chain::link(&chain, &r.leaf);
            records.push(Scanned {
                offset: r.offset as u32,
                frame_len: r.frame_len as u32,
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
    let at = usize::try_from(stop.at()).unwrap_or(usize::MAX);
    let ends_in_marker = sealog_format::frame::is_end_marker(image.get(at..).unwrap_or_default());
    let from = usize::try_from(committed_end).unwrap_or(usize::MAX);
    let rest = image.get(from..).unwrap_or_default();
    let leftover = rest
        .iter()
        .rposition(|&b| b != 0)
        .and_then(|last| rest.get(..=last))
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    drop(image);
    Ok(ScanResult {
        stop_at: stop.at(),
        stop_seq: found.header.first_seq + records.len() as u64,
        found,
        leftover,
        ends_in_marker,
        records,
        committed,
        committed_end,
        tail,
    })
}

fn holds_committed_record(f: &Found) -> Result<bool> {
    let len = usize::try_from(f.len).unwrap_or(0);
    let mut image = vec![0u8; len];
    f.file
        .read_exact_at(&mut image, 0)
        .map_err(|e| Error::io("read", &f.path, e))?;
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
fn truncate_tail(
    fs: &dyn Vfs,
    dir: &Path,
    options: &StoreOptions,
    scan: &ScanResult,
    report: &mut RecoveryReport,
) -> Result<()> {
    let file = &scan.found.file;
    let path = &scan.found.path;
    if let Some((len, seal_debris)) = scan.leftover() {
        let from = scan.committed_end;
        if !seal_debris {
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
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
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
fn save_lost_bytes(
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

/// Makes `tree/leaves` cover exactly the sealed records. Returns how many
/// leaves had to be recomputed.
fn reconcile_leaves(
    leaves: &LevelFile,
    sealed: &[(Found, SegmentFooter)],
    sealed_total: u64,
) -> Result<u64> {
    let have = leaves.len();
    if have > sealed_total {
        leaves.truncate(sealed_total)?;
        return Ok(0);
    }
    if have == sealed_total {
        return Ok(0);
    }
    tracing::warn!(
        have,
        need = sealed_total,
        "tree/leaves is short; recomputing leaf hashes from the records"
    );
    let mut rebuilt = 0;
    for (f, footer) in sealed {
        if footer.end_seq() <= have {
            continue;
        }
        let map = f.file.map().map_err(|e| Error::io("map", &f.path, e))?;
        let mut walker = FrameWalker::new(&map, f.header.first_seq, None);
        let mut batch = Vec::new();
        while let Some(r) = walker.next_record() {
            batch.push(r.leaf);
            if batch.len() as u64 == footer.record_count {
                break;
            }
        }
        if batch.len() as u64 != footer.record_count {
            let stop = walker.into_stop();
            return Err(corruption(
                Location::file(&f.name).at(stop.at()),
                CorruptionKind::FieldMismatch {
                    field: "record count in footer",
                    stored: footer.record_count.to_string(),
                    computed: batch.len().to_string(),
                },
            ));
        }
        let skip = have.saturating_sub(footer.first_seq) as usize;
        let write = batch.get(skip..).unwrap_or_default();
        leaves.write(footer.first_seq + skip as u64, write)?;
        leaves.sync()?;
        rebuilt += write.len() as u64;
    }
    Ok(rebuilt)
}

/// Creates the active segment when the store has none (a new store, or the
/// active segment was removed because it held no record). Zero-filled now,
/// so that even the first segment syncs at full speed.
fn create_first_segment(
    fs: &dyn Vfs,
    dir: &Path,
    options: &StoreOptions,
    header: SegmentHeader,
) -> Result<Arc<OpenSegment>> {
    crate::writer::new_segment_file(fs, dir, options, &header, None, true)
        .map_err(|(op, path, e)| Error::io(op, path, e))
}
