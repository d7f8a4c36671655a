//! Full verification of a store directory, trusting nothing derived.
//!
//! Every frame's checksum and every record's structure are checked; the
//! hash chain is recomputed from the store's genesis value through every
//! record; each sealed segment's Merkle root, chain head, record count,
//! frame end and time ranges are recomputed and compared with its footer;
//! segments must follow each other without gaps in numbering, seqs or chain
//! links; the stored leaf hashes (`tree/leaves`) must equal the recomputed
//! ones. Sealed segments are verified in parallel, one worker per core.
//!
//! The first problem in log order is returned as a [`Corruption`] naming the
//! file, byte offset and seq.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealog_format::Hash;
use sealog_format::merkle::Frontier;
use sealog_format::segment::SegmentFooter;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::fs::Vfs;
use crate::layout;
use crate::mmap::Mapped;
use crate::options::StoreOptions;
use crate::recovery::{Found, check_link, list_segment_names, read_found, read_manifest};
use crate::segment::{FrameWalker, Stop, Tail, classify_tail};
use crate::tree::LeafFile;

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: u64,
    /// Of which sealed.
    pub sealed_segments: u64,
    /// Records checked (also the tree size).
    pub records: u64,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// The chain value after the last record.
    pub chain_head: Hash,
    /// Bytes at the end of the active segment that recovery would remove
    /// (an interrupted write that was never acknowledged).
    pub unacknowledged_tail_bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// What verifying one segment established.
struct Summary {
    count: u64,
    chain_head: Hash,
    first_recorded: Option<i64>,
    last_recorded: Option<i64>,
    bytes: u64,
    tail_bytes: u64,
}

/// Verifies the store in `dir` without opening it for writing (it may be a
/// copy, or in use by another process).
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_dir_with(dir.as_ref(), &StoreOptions::default(), None)
}

/// A snapshot of a live store: records below `seq` are checked, and the
/// bytes of each unsealed segment are read up to its committed end.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limit {
    pub seq: u64,
    /// (first seq, end of committed frames) of each unsealed segment.
    pub open_ends: Vec<(u64, u64)>,
}

/// Verifies `dir`; with a limit, as the snapshot of a live store.
pub(crate) fn verify_dir_with(
    dir: &Path,
    options: &StoreOptions,
    limit: Option<Limit>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let fs: &dyn Vfs = &*options.fs;
    let manifest = read_manifest(fs, dir)?;
    let names = list_segment_names(fs, &dir.join(layout::SEGMENTS))?;
    let mut found = Vec::with_capacity(names.len());
    for (first_seq, file_name) in names {
        found.push(read_found(fs, dir, &file_name, first_seq, &manifest, true)?);
    }
    if let Some(pos) = found.iter().position(|f| f.footer.is_none())
        && found.iter().skip(pos).any(|f| f.footer.is_some())
    {
        let name = found.get(pos).map(|f| f.name.clone()).unwrap_or_default();
        return Err(Corruption::new(Location::file(name), CorruptionKind::UnsealedInMiddle).into());
    }

    let leaves = LeafFile::open(fs, &dir.join(layout::TREE).join(layout::LEAVES), true)?;
    let summaries = verify_all(fs, &found, limit.clone(), leaves.as_ref());

    let mut expected_seq = 0u64;
    let mut chain = manifest.genesis();
    let mut last_recorded: Option<i64> = None;
    let mut report = VerifyReport {
        segments: 0,
        sealed_segments: 0,
        records: 0,
        bytes: 0,
        chain_head: chain,
        unacknowledged_tail_bytes: 0,
        elapsed: Duration::ZERO,
    };
    for (expected_no, (f, summary)) in (0u64..).zip(found.iter().zip(summaries)) {
        if let Some(limit) = &limit {
            // Segments started after the snapshot of a live store.
            if f.header.first_seq >= limit.seq && expected_seq >= limit.seq {
                break;
            }
        }
        check_link(f, expected_no, expected_seq, &chain)?;
        let summary = summary?;
        if let (Some(previous), Some(first)) = (last_recorded, summary.first_recorded)
            && first < previous
        {
            return Err(Corruption::new(
                Location::file(&f.name).seq(f.header.first_seq),
                CorruptionKind::RecordedAtDecreased {
                    previous,
                    found: first,
                },
            )
            .into());
        }
        if f.footer.is_some() {
            report.sealed_segments += 1;
        }
        report.segments += 1;
        report.records += summary.count;
        report.bytes += summary.bytes;
        report.unacknowledged_tail_bytes += summary.tail_bytes;
        expected_seq = f.header.first_seq + summary.count;
        chain = summary.chain_head;
        last_recorded = summary.last_recorded.or(last_recorded);
    }
    report.chain_head = chain;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Verifies every segment's contents, sealed ones in parallel.
fn verify_all(
    fs: &dyn Vfs,
    found: &[Found],
    limit: Option<Limit>,
    leaves: Option<&LeafFile>,
) -> Vec<Result<Summary>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(found.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Summary>>> = (0..found.len()).map(|_| None).collect();
    let slots: Vec<parking_lot::Mutex<Option<Result<Summary>>>> = (0..found.len())
        .map(|_| parking_lot::Mutex::new(None))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = found.get(i) else { break };
                    let result = verify_segment(fs, f, limit.as_ref(), leaves);
                    if let Some(slot) = slots.get(i) {
                        *slot.lock() = Some(result);
                    }
                }
            });
        }
    });
    for (slot, result) in slots.into_iter().zip(results.iter_mut()) {
        *result = slot.into_inner();
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(Error::Config("a verification worker did not report".into())))
        })
        .collect()
}

fn verify_segment(
    fs: &dyn Vfs,
    f: &Found,
    limit: Option<&Limit>,
    stored_leaves: Option<&LeafFile>,
) -> Result<Summary> {
    let image = match &f.footer {
        // Sealed segments are never written again: map them.
        Some(_) => f.file.map().map_err(|e| Error::io("map", &f.path, e))?,
        // Others may still be written (or sealed and cut) by a live store:
        // copy them with positioned reads, never map them.
        None => Mapped::from_vec(read_unsealed(fs, f, limit)?),
    };
    let location = |offset: u64, seq: u64| Location::file(&f.name).at(offset).seq(seq);
    let max_records = match (&f.footer, limit) {
        (Some(footer), _) => footer.record_count,
        (None, Some(limit)) => limit.seq.saturating_sub(f.header.first_seq),
        (None, None) => u64::MAX,
    };
    let mut walker = FrameWalker::new(&image, f.header.first_seq, None);
    let mut chain = f.header.chain_in;
    let mut frontier = Frontier::new();
    let mut leaves = Vec::new();
    let mut offsets = Vec::new();
    let mut count = 0u64;
    let mut committed = (0u64, chain, 0u64);
    let mut min_event = i64::MAX;
    let mut max_event = i64::MIN;
    let mut first_recorded = None;
    let mut last_recorded = None;
    let mut last_commit_recorded = None;
    let mut end = sealog_format::segment::HEADER_LEN as u64;
    while count < max_records {
        let Some(r) = walker.next_record() else { break };
        chain = sealog_format::chain::link(&chain, &r.leaf);
        let _ = frontier.push(r.leaf);
        leaves.push(r.leaf);
        offsets.push(r.offset);
        let t = r.view.event_time().as_nanos();
        min_event = min_event.min(t);
        max_event = max_event.max(t);
        let recorded = r.view.recorded_at.as_nanos();
        first_recorded.get_or_insert(recorded);
        last_recorded = Some(recorded);
        count += 1;
        end = r.offset + r.frame_len as u64;
        if r.commit {
            committed = (count, chain, end);
            last_commit_recorded = last_recorded;
        }
    }
    let reached_limit = count >= max_records;
    let stop = if reached_limit {
        None
    } else {
        Some(walker.into_stop())
    };

    let Some(footer) = &f.footer else {
        // The active segment (or one whose seal was interrupted): only
        // committed records count; an interrupted write at the end is not an
        // error, other damage is.
        let mut tail_bytes = 0;
        if let Some(stop) = &stop {
            match classify_tail(&image, stop) {
                Tail::Corrupt(kind) => {
                    let seq = f.header.first_seq + count;
                    return Err(Corruption::new(location(stop.at(), seq), kind).into());
                }
                Tail::Torn | Tail::Clean => {
                    let from = usize::try_from(committed.2).unwrap_or(usize::MAX);
                    tail_bytes = image
                        .get(from..)
                        .unwrap_or_default()
                        .iter()
                        .filter(|&&b| b != 0)
                        .count() as u64;
                }
            }
        }
        let (count, chain_head, _) = if reached_limit {
            (count, chain, end)
        } else {
            committed
        };
        return Ok(Summary {
            count,
            chain_head,
            first_recorded: if count > 0 { first_recorded } else { None },
            last_recorded: if reached_limit {
                last_recorded
            } else {
                last_commit_recorded
            },
            bytes: image.len() as u64,
            tail_bytes,
        });
    };

    // A sealed segment: its records end exactly at the footer's frame end,
    // all committed, and every footer field matches.
    let seq_at_stop = f.header.first_seq + count;
    if count < footer.record_count {
        let stop = stop.unwrap_or(Stop::End { at: end });
        let kind = match stop {
            Stop::BadFrame { error, .. } => CorruptionKind::Frame(error),
            Stop::BadRecord { kind, .. } => kind,
            Stop::End { .. } => CorruptionKind::FieldMismatch {
                field: "record count in footer",
                stored: footer.record_count.to_string(),
                computed: count.to_string(),
            },
        };
        return Err(Corruption::new(location(end, seq_at_stop), kind).into());
    }
    let footer_at = footer.frames_end + sealog_format::segment::END_MARKER_LEN as u64;
    let footer_loc = || Location::file(&f.name).at(footer_at);
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
    if end != footer.frames_end {
        return Err(mismatch(
            "frame end in footer",
            footer.frames_end.to_string(),
            end.to_string(),
        ));
    }
    let marker_ok =
        sealog_format::frame::is_end_marker(image.get(end as usize..).unwrap_or_default());
    if !marker_ok {
        return Err(Corruption::new(
            location(end, seq_at_stop),
            CorruptionKind::Layout("the end marker after the last frame is damaged".into()),
        )
        .into());
    }
    if committed.0 != count {
        return Err(Corruption::new(
            location(committed.2, f.header.first_seq + committed.0),
            CorruptionKind::Layout(
                "the last record of a sealed segment does not end a batch (COMMIT flag missing)"
                    .into(),
            ),
        )
        .into());
    }
    let root = frontier.root();
    let matches_footer = footer.chain_head == chain && footer.merkle_root == root;
    // The leaf hashes stored at seal time pinpoint an altered record; if the
    // records still match the footer, a differing stored leaf means the leaf
    // file is what was damaged.
    if let Some(index) = first_leaf_difference(stored_leaves, f, &leaves)? {
        let ordinal = (index - f.header.first_seq) as usize;
        if matches_footer {
            return Err(leaf_file_corruption(index));
        }
        let stored = stored_leaves
            .and_then(|l| l.read(index, 1).ok())
            .and_then(|v| v.first().copied())
            .unwrap_or_default();
        return Err(Corruption::new(
            location(offsets.get(ordinal).copied().unwrap_or(0), index),
            CorruptionKind::RecordChanged {
                stored,
                computed: leaves.get(ordinal).copied().unwrap_or_default(),
            },
        )
        .into());
    }
    check_hash(
        footer_loc(),
        "chain head in footer",
        &footer.chain_head,
        &chain,
    )?;
    check_hash(
        footer_loc(),
        "Merkle root in footer",
        &footer.merkle_root,
        &root,
    )?;
    check_times(
        footer,
        min_event,
        max_event,
        first_recorded,
        last_recorded,
        &mismatch,
    )?;
    Ok(Summary {
        count,
        chain_head: chain,
        first_recorded,
        last_recorded,
        bytes: image.len() as u64,
        tail_bytes: 0,
    })
}

fn check_hash(
    location: Location,
    what: &'static str,
    stored: &Hash,
    computed: &Hash,
) -> Result<()> {
    if stored != computed {
        return Err(Corruption::new(
            location,
            CorruptionKind::HashMismatch {
                what,
                stored: *stored,
                computed: *computed,
            },
        )
        .into());
    }
    Ok(())
}

fn check_times(
    footer: &SegmentFooter,
    min_event: i64,
    max_event: i64,
    first_recorded: Option<i64>,
    last_recorded: Option<i64>,
    mismatch: &dyn Fn(&'static str, String, String) -> Error,
) -> Result<()> {
    let pairs = [
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
    for (field, stored, computed) in pairs {
        if stored != computed {
            return Err(mismatch(field, stored.to_string(), computed.to_string()));
        }
    }
    Ok(())
}

/// The bytes of an unsealed segment: up to its committed end for a live
/// store, else the whole file (retrying if a live writer cuts it meanwhile).
fn read_unsealed(fs: &dyn Vfs, f: &Found, limit: Option<&Limit>) -> Result<Vec<u8>> {
    let bound = limit.and_then(|l| {
        l.open_ends
            .iter()
            .find(|(first, _)| *first == f.header.first_seq)
            .map(|(_, end)| *end)
    });
    let file = fs
        .open(&f.path, crate::fs::OpenMode::Read)
        .map_err(|e| Error::io("open", &f.path, e))?;
    let mut attempts = 0;
    loop {
        let len = file.size().map_err(|e| Error::io("stat", &f.path, e))?;
        let len = bound.map_or(len, |b| b.min(len));
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        match file.read_exact_at(&mut buf, 0) {
            Ok(()) => return Ok(buf),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && attempts < 3 => {
                attempts += 1;
            }
            Err(e) => return Err(Error::io("read", &f.path, e)),
        }
    }
}

fn leaf_file_corruption(index: u64) -> Error {
    Corruption::new(
        Location::file(format!("{}/{}", layout::TREE, layout::LEAVES))
            .at(index * crate::tree::LEAF_LEN)
            .seq(index),
        CorruptionKind::LeafMismatch { index },
    )
    .into()
}

/// The first seq of a sealed segment whose stored leaf hash differs from the
/// recomputed one (or is missing).
fn first_leaf_difference(
    stored: Option<&LeafFile>,
    f: &Found,
    computed: &[Hash],
) -> Result<Option<u64>> {
    let first = f.header.first_seq;
    let Some(stored) = stored else {
        return Ok(Some(first));
    };
    let available = stored
        .len()
        .saturating_sub(first)
        .min(computed.len() as u64) as usize;
    let leaves = stored.read(first, available)?;
    if let Some(i) = leaves.iter().zip(computed).position(|(s, c)| s != c) {
        return Ok(Some(first + i as u64));
    }
    Ok((available < computed.len()).then_some(first + available as u64))
}
