//! Full verification of a store directory, trusting nothing derived.
//!
//! Every frame's checksum and every record's structure are checked; the
//! hash chain is recomputed from the store's genesis value through every
//! record; each sealed segment's Merkle root, chain head, record count,
//! frame end and time ranges are recomputed and compared with its footer;
//! segments must follow each other without gaps in numbering, seqs or chain
//! links; the stored leaf hashes (`tree/leaves`) and subtree hashes
//! (`tree/level-k`) must equal the recomputed ones. Sealed segments are
//! verified in parallel, one worker per core, and flow in log order into a
//! streaming Merkle tree over the whole log.
//!
//! Every checkpoint in `checkpoints.log` — and any checkpoint the caller
//! kept elsewhere — is checked against the log: the root of the first
//! `size` records and the chain value after them must be what it says.
//! With the store's public key, each checkpoint's signature is checked too,
//! which is what makes the result trustworthy against someone who could
//! rewrite the whole directory: they cannot sign.
//!
//! Each sealed segment's index sidecar (`segments/<seq>.idx`) is checked
//! against its records: it must be, byte for byte, the sidecar the records
//! give (the encoding is canonical). The check reads the file where it
//! lies and compares its content with the records while they are read,
//! through the ordinals (`content`), which shows that without encoding the
//! file again; when it finds a difference, the sidecar the records give is
//! encoded and compared byte for byte to say where. A sidecar that differs
//! is reported — after the log itself, which it cannot damage — as
//! [`CorruptionKind::Sidecar`], naming the file, the byte offset and the
//! section where it first differs; it is derived data, and removing it
//! makes the next query rebuild it. A missing sidecar is not a problem (it
//! is rebuilt when a query needs it) and is listed in
//! [`VerifyReport::sidecars_missing`]. The key-filter entries are compared
//! with the filter their sidecar gives. [`VerifyOptions::log_only`] skips
//! both (they are derived and rebuildable) and checks the rest.
//!
//! The first problem in log order is returned as a [`Corruption`] naming the
//! file, byte offset and seq.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealog_format::Hash;
use sealog_format::merkle::Frontier;
use sealog_format::note::VerifierKey;
use sealog_format::segment::SegmentFooter;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::fs::{OpenMode, Vfs};
use crate::layout;
use crate::mmap::Mapped;
use crate::recovery::{Found, check_link, list_segment_names, read_found, read_manifest};
use crate::segment::{Decoded, FrameWalker, Stop, Tail, WalkedRecord, classify_tail};
use crate::tree::LevelFile;

mod content;
mod hashes;
use content::{ColumnPools, ContentCheck};
use hashes::{
    Chained, LeafPool, StreamTree, first_block_difference, first_leaf_difference,
    leaf_file_corruption,
};

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: u64,
    /// Of which sealed.
    pub sealed_segments: u64,
    /// Records checked (also the tree size).
    pub records: u64,
    /// Bytes of segment files read (for an open segment, its preallocated
    /// space too).
    pub bytes: u64,
    /// Bytes of the records checked, in their frames: what a throughput of
    /// verification is measured over (headers, footers and preallocated
    /// space excluded).
    pub frame_bytes: u64,
    /// The chain value after the last record.
    pub chain_head: Hash,
    /// Bytes at the end of the active segment that recovery would remove
    /// (an interrupted write that was never acknowledged).
    pub unacknowledged_tail_bytes: u64,
    /// The RFC 9162 root of all `records` records.
    pub root: Hash,
    /// Checkpoints found consistent with the log.
    pub checkpoints: u64,
    /// Whether their signatures were checked with a public key.
    pub checkpoints_authenticated: bool,
    /// The size of the newest checkpoint checked.
    pub newest_checkpoint: Option<u64>,
    /// Index sidecars found equal to the index their records give.
    pub sidecars_checked: u64,
    /// Sealed segments without an index sidecar (`segments/<seq>.idx`):
    /// not a problem, a query rebuilds it when it needs it.
    pub sidecars_missing: Vec<String>,
    /// Key-filter entries (`key-filters`) found equal to the filter their
    /// segment's records give.
    pub key_filters_checked: u64,
    /// Sealed segments without a key-filter entry: not a problem (searches
    /// open their indexes; a writable open writes the entries).
    pub key_filters_missing: u64,
    /// Sealed segments archived and removed from the store (`pruned.log`):
    /// archived, not local. Their records were not read, but their leaf
    /// hashes (`tree/leaves`) were: the chain across them, their Merkle
    /// roots and the checkpoints over them were checked against the
    /// headers and footers `pruned.log` keeps.
    pub archived_not_local: Vec<String>,
    /// The privacy-policy note (`privacy-policy.note`) was found equal to
    /// what the records below this seq give (the newest privacy-policy
    /// record among them). `None`: there is no note, or its records were
    /// not all read (some archived and removed, or written after the
    /// snapshot of a live store).
    pub policy_note_covers: Option<u64>,
    /// Whether the index sidecars and key filters were checked (not with
    /// [`VerifyOptions::log_only`]); when not, `sidecars_checked`,
    /// `sidecars_missing`, `key_filters_checked` and `key_filters_missing`
    /// say nothing.
    pub indexes_checked: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// What to check beyond the log itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The store's public key (signed-note verifier key): check every
    /// checkpoint's signature.
    pub public_key: Option<VerifierKey>,
    /// Signed checkpoints obtained elsewhere (published, kept by a witness,
    /// taken from receipts), checked like the stored ones.
    pub checkpoints: Vec<String>,
    /// Check the log only: everything that makes it tamper-evident (frame
    /// checksums, records, seqs, the hash chain, segment roots and footers,
    /// the tree files, checkpoints and their signatures), but not the
    /// files derived from it that queries use, the index sidecars and the
    /// key filters (about a third of a full verification's work).
    /// [`VerifyReport::indexes_checked`] then says `false`.
    pub log_only: bool,
}

/// What verifying one segment established.
struct Summary {
    count: u64,
    chain_head: Hash,
    /// Leaf hashes of the records, in order.
    leaves: Vec<Hash>,
    /// Chain values after the records that end a checkpointed size.
    chains_at: Vec<(u64, Hash)>,
    first_recorded: Option<i64>,
    last_recorded: Option<i64>,
    bytes: u64,
    /// Bytes of the counted records' frames.
    frame_bytes: u64,
    tail_bytes: u64,
    /// An unsealed segment that ends in an interrupted write: the byte
    /// offset where its committed records end.
    interrupted_at: Option<u64>,
    /// What became of a sealed segment's index sidecar.
    sidecar: SidecarCheck,
    /// And of its key-filter entry.
    key_filter: SidecarCheck,
    /// Seqs of the privacy-policy records among the counted ones.
    policies: Vec<u64>,
}

/// The outcome of checking one sealed segment's index sidecar.
enum SidecarCheck {
    /// Not a sealed segment, or its index could not be built.
    NotChecked,
    /// The file equals the index the records give.
    Matches,
    /// There is no file.
    Missing(String),
    /// The file differs from the index the records give.
    Differs(Corruption),
}

/// Verifies the store in `dir` without opening it for writing (it may be a
/// copy, or in use by another process). Checkpoints are checked against the
/// log but not authenticated; see [`verify_dir_with`].
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    run(
        dir.as_ref(),
        &crate::fs::StdFs,
        None,
        &VerifyOptions::default(),
    )
}

/// Verifies the store in `dir`, authenticating checkpoints with the public
/// key and checking checkpoints kept elsewhere too.
pub fn verify_dir_with(dir: impl AsRef<Path>, options: &VerifyOptions) -> Result<VerifyReport> {
    run(dir.as_ref(), &crate::fs::StdFs, None, options)
}

/// A snapshot of a live store: records below `seq` are checked, and the
/// bytes of each unsealed segment are read up to its committed end.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limit {
    pub seq: u64,
    /// (first seq, end of committed frames) of each unsealed segment.
    pub open_ends: Vec<(u64, u64)>,
    /// How many entries `checkpoints.log` held when the snapshot was taken
    /// (counted before the view): each covers at most the snapshot, so one
    /// that covers more proves the log lost records. Only entries appended
    /// after the snapshot may be skipped.
    pub checkpoints: usize,
}

/// A checkpoint to check, from the store's history or from the caller.
struct CheckpointCheck {
    /// Where it came from, for messages.
    source: String,
    size: u64,
    root: Hash,
    chain_head: Option<Hash>,
}

fn load_checkpoints(
    fs: &dyn Vfs,
    dir: &Path,
    options: &VerifyOptions,
    limit: Option<&Limit>,
) -> Result<Vec<CheckpointCheck>> {
    let log = crate::checkpoint::CheckpointLog::open(fs, &dir.join(layout::CHECKPOINTS), true)?;
    let stored = log
        .entries()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("{}#{i}", layout::CHECKPOINTS), t));
    let given = options
        .checkpoints
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("given checkpoint #{i}"), t.clone()));
    let mut checks = Vec::new();
    let mut previous: Option<u64> = None;
    let known = limit.map_or(usize::MAX, |l| l.checkpoints);
    for (n, (source, text)) in stored.chain(given).enumerate() {
        let bad = |reason: String| -> Error {
            Corruption::new(
                Location::file(source.clone()),
                CorruptionKind::Checkpoint(reason),
            )
            .into()
        };
        let body = match &options.public_key {
            Some(key) => {
                sealog_format::checkpoint::open(&text, key).map_err(|e| bad(e.to_string()))?
            }
            None => {
                let note =
                    sealog_format::note::Note::parse(&text).map_err(|e| bad(e.to_string()))?;
                sealog_format::checkpoint::Checkpoint::parse(note.text())
                    .map_err(|e| bad(e.to_string()))?
            }
        };
        if source.starts_with(layout::CHECKPOINTS) {
            if previous.is_some_and(|p| body.size < p) {
                return Err(bad(format!(
                    "covers {} records, fewer than the checkpoint before it ({}): the history was \
                     reordered or rewritten",
                    body.size,
                    // Some here: only for the message.
                    previous.unwrap_or_default()
                )));
            }
            previous = Some(body.size);
        }
        let after_snapshot = n >= known && source.starts_with(layout::CHECKPOINTS);
        if after_snapshot && limit.is_some_and(|l| body.size > l.seq) {
            continue; // signed after the snapshot of a live store
        }
        checks.push(CheckpointCheck {
            source,
            size: body.size,
            root: body.root,
            chain_head: crate::checkpoint::chain_head_of(&body),
        });
    }
    checks.sort_by_key(|c| c.size);
    Ok(checks)
}

/// Verifies `dir`; with a limit, as the snapshot of a live store.
pub(crate) fn run(
    dir: &Path,
    fs: &dyn Vfs,
    limit: Option<Limit>,
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let started = Instant::now();
    // Counted before the segments are listed, as the open does (the file
    // only grows while the store is written).
    let leaves_before = crate::recovery::leaf_count(fs, &dir.join(layout::TREE))?;
    let manifest = read_manifest(fs, dir)?;
    let names = list_segment_names(fs, &dir.join(layout::SEGMENTS))?;
    let mut found = Vec::with_capacity(names.len());
    for (first_seq, file_name) in names {
        found.push(read_found(fs, dir, &file_name, first_seq, &manifest, true)?);
    }
    crate::recovery::demote_unfinished_seal(&mut found)?;
    if let Some(pos) = found.iter().position(|f| f.footer.is_none())
        && found.iter().skip(pos).any(|f| f.footer.is_some())
    {
        // `pos` was just found: only for the message.
        let name = found.get(pos).map(|f| f.name.clone()).unwrap_or_default();
        return Err(Corruption::new(Location::file(name), CorruptionKind::UnsealedInMiddle).into());
    }
    let checkpoints = load_checkpoints(fs, dir, options, limit.as_ref())?;
    let checkpoint_sizes: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    let tree_dir = dir.join(layout::TREE);
    let mut levels = Vec::with_capacity(crate::tree::LEVELS);
    for k in 0..crate::tree::LEVELS {
        levels.push(LevelFile::open(
            fs,
            &tree_dir.join(crate::tree::level_file_name(k)),
            true,
        )?);
    }
    let sealed: u64 = found
        .iter()
        .filter_map(|f| f.footer.map(|footer| footer.end_seq()))
        .max()
        .unwrap_or(0);

    let mut stream = StreamTree {
        tree: Frontier::new(),
        levels,
        sealed,
    };
    let mut next_check = checkpoints.iter().peekable();
    let mut last_matching = 0u64;
    let mut expected_seq = 0u64;
    let mut chain = manifest.genesis();
    let mut last_recorded: Option<i64> = None;
    let mut report = VerifyReport {
        segments: 0,
        sealed_segments: 0,
        records: 0,
        bytes: 0,
        frame_bytes: 0,
        chain_head: chain,
        unacknowledged_tail_bytes: 0,
        root: sealog_format::merkle::empty_root(),
        checkpoints: 0,
        checkpoints_authenticated: options.public_key.is_some(),
        newest_checkpoint: None,
        sidecars_checked: 0,
        sidecars_missing: Vec::new(),
        key_filters_checked: 0,
        key_filters_missing: 0,
        archived_not_local: Vec::new(),
        policy_note_covers: None,
        indexes_checked: !options.log_only,
        elapsed: Duration::ZERO,
    };
    let note = crate::policy_note::find(fs, dir, &manifest.store_id)?;
    // Seqs of the privacy-policy records read, and the end of the last
    // run of records not read (archived and removed).
    let mut policies: Vec<u64> = Vec::new();
    let mut unread_below = 0u64;
    let absent = crate::damage::KnownAbsent::load(fs, dir)?;
    let mut expected_no = 0u64;
    let mut sidecar_problem: Option<Corruption> = None;
    // Not read when only the log is checked.
    let key_filters = (!options.log_only).then(|| {
        let mut catalog = crate::key_filter::read_catalog(
            fs,
            &dir.join(crate::key_filter::FILE),
            &manifest.store_id,
            false,
        );
        catalog.drop_torn_last();
        catalog
    });
    // Entries past one that does not read whole are not used by readers,
    // and the writer overwrites from there; one that ends past the end of
    // the file, or is followed by nothing but zeros, or is the last and
    // has a page that does not check, is an append in progress (or cut
    // short by a crash).
    if let Some(key_filters) = &key_filters
        && let Some((offset, problem)) = &key_filters.problem
        && !key_filters.cut_short()
    {
        sidecar_problem = Some(Corruption::new(
            Location::file(crate::key_filter::FILE).at(*offset),
            CorruptionKind::KeyFilters {
                problem: problem.clone(),
            },
        ));
    }
    // The workers compare each segment's leaves with level 0 on their own
    // handle (and, to name what changed in a compressed segment, with
    // level 1); the stream checks the levels above.
    let leaves_file = LevelFile::open(fs, &tree_dir.join(crate::tree::level_file_name(0)), true)?;
    let level1_file = LevelFile::open(fs, &tree_dir.join(crate::tree::level_file_name(1)), true)?;
    let mut interrupted: Option<(String, u64)> = None;
    // Records of the unsealed segment right after the sealed ones (whose
    // seal may have been interrupted after its leaves were written).
    let mut sealing = 0u64;
    let leaf_pool = LeafPool::default();
    let column_pool = ColumnPools::default();
    let mut consume = |index: usize, summary: Result<Summary>| -> Result<bool> {
        let Some(f) = found.get(index) else {
            return Ok(false);
        };
        if let Some(limit) = &limit {
            // Segments started after the snapshot of a live store.
            if f.header.first_seq >= limit.seq && expected_seq >= limit.seq {
                return Ok(false);
            }
        }
        if f.header.segment_no > expected_no && absent.covers(expected_no..f.header.segment_no) {
            for p in absent.run(expected_no..f.header.segment_no) {
                check_pruned(
                    p,
                    leaves_file.as_ref(),
                    &mut expected_seq,
                    &mut chain,
                    &mut stream,
                    &mut next_check,
                    &mut last_matching,
                    &mut report,
                )?;
                last_recorded = Some(p.footer.max_recorded_at.as_nanos());
                unread_below = p.end_seq();
            }
            expected_no = f.header.segment_no;
        }
        check_link(f, expected_no, expected_seq, &chain)?;
        expected_no += 1;
        let mut summary = summary?;
        // The committer syncs a segment before it writes the next, so an
        // interrupted write can only end the last segment with records
        // (recovery refuses the same store for the same reason).
        if let Some((earlier, at)) = &interrupted
            && summary.count > 0
        {
            return Err(Corruption::new(
                Location::file(&f.name),
                CorruptionKind::Layout(format!(
                    "holds records although the earlier segment {earlier} ends in an \
                     interrupted write at byte {at}"
                )),
            )
            .into());
        }
        if let Some(at) = summary.interrupted_at {
            interrupted = Some((f.name.clone(), at));
        }
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
        // The leaves, a run at a time up to each checkpoint inside them
        // (one at the very start of this segment, size = its first seq, has
        // no chain value from it), and the checkpoints at their end.
        let mut rest = summary.leaves.as_slice();
        // (An empty segment leaves them to the next.)
        if !rest.is_empty() {
            loop {
                while let Some(check) = next_check.next_if(|c| c.size == stream.size()) {
                    let chain_at = summary
                        .chains_at
                        .iter()
                        .find(|(size, _)| *size == check.size)
                        .map(|(_, h)| *h);
                    check_checkpoint(check, &stream, chain_at, last_matching)?;
                    last_matching = check.size;
                    report.checkpoints += 1;
                    report.newest_checkpoint = Some(check.size);
                }
                if rest.is_empty() {
                    break;
                }
                let (run, after) = rest.split_at(stream.until_next(next_check.peek(), rest.len()));
                stream.extend(run)?;
                rest = after;
            }
        }
        if f.footer.is_some() {
            report.sealed_segments += 1;
        } else if f.header.first_seq == stream.sealed {
            sealing = summary.count;
        }
        match summary.sidecar {
            SidecarCheck::NotChecked => {}
            SidecarCheck::Matches => report.sidecars_checked += 1,
            SidecarCheck::Missing(name) => report.sidecars_missing.push(name),
            SidecarCheck::Differs(problem) => {
                sidecar_problem.get_or_insert(problem);
            }
        }
        match summary.key_filter {
            SidecarCheck::NotChecked => {}
            SidecarCheck::Matches => report.key_filters_checked += 1,
            SidecarCheck::Missing(_) => report.key_filters_missing += 1,
            SidecarCheck::Differs(problem) => {
                sidecar_problem.get_or_insert(problem);
            }
        }
        policies.extend_from_slice(&summary.policies);
        report.segments += 1;
        report.records += summary.count;
        report.bytes += summary.bytes;
        report.frame_bytes += summary.frame_bytes;
        report.unacknowledged_tail_bytes += summary.tail_bytes;
        expected_seq = f.header.first_seq + summary.count;
        chain = summary.chain_head;
        last_recorded = summary.last_recorded.or(last_recorded);
        leaf_pool.give(std::mem::take(&mut summary.leaves));
        Ok(true)
    };
    let cx = SegmentContext {
        fs,
        limit: limit.as_ref(),
        stored: [leaves_file.as_ref(), level1_file.as_ref()],
        checkpoint_sizes: &checkpoint_sizes,
        key_filters: key_filters.as_ref(),
        leaf_pool: &leaf_pool,
        column_pool: &column_pool,
    };
    pipeline(cx, &found, &mut consume)?;
    // Checkpoints of size 0, or beyond what the log holds.
    for check in next_check {
        if check.size == 0 {
            check_checkpoint(check, &stream, Some(manifest.genesis()), 0)?;
            report.checkpoints += 1;
            continue;
        }
        return Err(Corruption::new(
            Location::file(check.source.clone()),
            CorruptionKind::Truncated {
                have: stream.size(),
                signed: check.size,
            },
        )
        .into());
    }
    // Leaf hashes of records that no segment holds: the newest segment
    // files were removed or cut (the open refuses the same store).
    let have = stream.sealed + sealing;
    if let Some(leaves) = leaves_before
        && leaves > have
    {
        let location = match found.iter().find(|f| f.header.first_seq == stream.sealed) {
            Some(f) if sealing > 0 => Location::file(&f.name),
            _ => Location::file(layout::segment_name(have)),
        };
        return Err(Corruption::new(
            location.seq(have),
            CorruptionKind::RecordsMissing {
                have,
                sealed: leaves,
            },
        )
        .into());
    }
    // The log is intact; a sidecar that disagrees with it is reported now.
    if let Some(problem) = sidecar_problem {
        return Err(problem.into());
    }
    if let Some(note) = note {
        report.policy_note_covers = check_policy_note(
            &note,
            &policies,
            expected_seq,
            unread_below,
            limit.is_some(),
        )?;
    }
    report.chain_head = chain;
    report.root = stream.root();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Compares the privacy-policy note with the policy records read
/// (`policies`, in log order) of a log whose records end at `end`, all
/// read from `unread_below` on. Returns the seq the note covers when it
/// could be checked: it covers no more than the log (a live store's
/// snapshot may end before what the writer noted since), and no records
/// it covers went unread.
fn check_policy_note(
    note: &sealog_format::segment::PolicyNote,
    policies: &[u64],
    end: u64,
    unread_below: u64,
    live: bool,
) -> Result<Option<u64>> {
    if note.covered > end && live {
        return Ok(None);
    }
    let newest = policies.iter().copied().rfind(|&seq| seq < note.covered);
    if note.covered <= end && newest.is_none_or(|seq| seq < unread_below) && unread_below > 0 {
        // The newest may be among the records not read.
        return Ok(None);
    }
    if note.covered > end || newest != note.newest {
        return Err(Corruption::new(
            Location::file(crate::policy_note::FILE),
            CorruptionKind::PolicyNote {
                covered: note.covered,
                records: end,
                stored: note.newest,
                computed: newest,
            },
        )
        .into());
    }
    Ok(Some(note.covered))
}

/// Checks a segment archived and removed from the store with what the
/// store kept of it: its leaf hashes in `tree/leaves` must chain from the
/// value before it to its footer's chain head and give its footer's Merkle
/// root; they go into the tree over the log, which checks the level files
/// and the checkpoints over them.
#[allow(clippy::too_many_arguments)]
fn check_pruned(
    p: &crate::pruned::PrunedSegment,
    leaves_file: Option<&LevelFile>,
    expected_seq: &mut u64,
    chain: &mut Hash,
    stream: &mut StreamTree,
    next_check: &mut std::iter::Peekable<std::slice::Iter<'_, CheckpointCheck>>,
    last_matching: &mut u64,
    report: &mut VerifyReport,
) -> Result<()> {
    let name = p.name();
    let at_pruned = || Location::file(crate::pruned::PRUNED_FILE).seq(p.first_seq());
    if p.first_seq() != *expected_seq || p.header.chain_in != *chain {
        return Err(Corruption::new(
            at_pruned(),
            CorruptionKind::Layout(format!(
                "the pruned segment {name} does not start where the log before it ends (seq \
                 {}, its chain value)",
                *expected_seq
            )),
        )
        .into());
    }
    let count = usize::try_from(p.footer.record_count).unwrap_or(usize::MAX);
    let leaves_name = format!("{}/{}", layout::TREE, crate::tree::level_file_name(0));
    let leaves = match leaves_file {
        Some(file) if p.end_seq() <= file.len() => file.read(p.first_seq(), count)?,
        _ => Vec::new(),
    };
    let leaves = match leaves.iter().position(crate::tree::not_stored) {
        None if leaves.len() == count => leaves,
        Some(i) => {
            return Err(Corruption::new(
                Location::file(leaves_name)
                    .at((p.first_seq() + i as u64) * crate::tree::LEAF_LEN)
                    .seq(p.first_seq() + i as u64),
                CorruptionKind::Layout(format!(
                    "the leaf hashes of the pruned segment {name} are not stored (zeros from \
                     seq {}): the chain across it cannot be checked",
                    p.first_seq() + i as u64
                )),
            )
            .into());
        }
        None => {
            return Err(Corruption::new(
                Location::file(leaves_name).seq(p.first_seq()),
                CorruptionKind::Layout(format!(
                    "the leaf hashes of the pruned segment {name} are missing: the chain \
                     across it cannot be checked"
                )),
            )
            .into());
        }
    };
    let mut frontier = Frontier::new();
    let mut rest = leaves.as_slice();
    while !rest.is_empty() {
        while let Some(check) = next_check.next_if(|c| c.size == stream.size()) {
            check_checkpoint(check, stream, Some(*chain), *last_matching)?;
            *last_matching = check.size;
            report.checkpoints += 1;
            report.newest_checkpoint = Some(check.size);
        }
        let (run, after) = rest.split_at(stream.until_next(next_check.peek(), rest.len()));
        for leaf in run {
            *chain = sealog_format::chain::link(chain, leaf);
        }
        frontier.extend(run)?;
        stream.extend(run)?;
        rest = after;
    }
    while let Some(check) = next_check.next_if(|c| c.size == stream.size()) {
        check_checkpoint(check, stream, Some(*chain), *last_matching)?;
        *last_matching = check.size;
        report.checkpoints += 1;
        report.newest_checkpoint = Some(check.size);
    }
    let at_leaves = || {
        Location::file(format!(
            "{}/{}",
            layout::TREE,
            crate::tree::level_file_name(0)
        ))
        .at(p.first_seq() * crate::tree::LEAF_LEN)
        .seq(p.first_seq())
    };
    if *chain != p.footer.chain_head {
        return Err(Corruption::new(
            at_leaves(),
            CorruptionKind::HashMismatch {
                what: "chain head of a pruned segment (pruned.log) against its leaf hashes",
                stored: p.footer.chain_head,
                computed: *chain,
            },
        )
        .into());
    }
    if frontier.root() != p.footer.merkle_root {
        return Err(Corruption::new(
            at_leaves(),
            CorruptionKind::HashMismatch {
                what: "Merkle root of a pruned segment (pruned.log) against its leaf hashes",
                stored: p.footer.merkle_root,
                computed: frontier.root(),
            },
        )
        .into());
    }
    *expected_seq = p.end_seq();
    report.records += p.footer.record_count;
    report.archived_not_local.push(name);
    Ok(())
}

/// The sealed segment `f`'s index sidecar, mapped (read once, in order,
/// by the check: not copied into fresh memory the kernel has to zero
/// first, 12 MB for a 64 MiB segment); `None` when there is none.
fn map_sidecar(fs: &dyn Vfs, f: &Found) -> Result<Option<Mapped>> {
    let path = f.path.with_extension("idx");
    match fs.open(&path, OpenMode::Read).and_then(|file| file.map()) {
        Ok(map) => {
            map.will_need(0, map.len());
            Ok(Some(map))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("map", &path, e)),
    }
}

/// The sidecar of a sealed segment's records (`image`, its frames at
/// `offsets`) in `layout`; `None` when the index cannot hold them.
fn encode_from_records(
    image: &[u8],
    offsets: &[u64],
    header: &sealog_format::segment::SegmentHeader,
    identity: sealog_format::index::SegmentIdentity,
    name: &str,
    layout: crate::sidecar::SidecarLayout,
) -> Option<Vec<u8>> {
    let records = crate::image::frames_at(name, image, header.first_seq, offsets.iter().copied());
    crate::sidecar::encode_records_as(identity, records, name, layout).ok()
}

/// Compares a sidecar file with the one its records give, byte for byte,
/// saying where it first differs.
fn compare_sidecar(expected: &[u8], actual: &[u8], name: String, segment: &str) -> SidecarCheck {
    match crate::sidecar::describe_difference(expected, actual) {
        None => SidecarCheck::Matches,
        Some((offset, problem)) => SidecarCheck::Differs(Corruption::new(
            Location::file(name).at(offset),
            CorruptionKind::Sidecar {
                segment: segment.to_owned(),
                problem,
            },
        )),
    }
}

/// Compares a sealed segment's key-filter entry with the one `sidecar`,
/// the index its records give, gives.
fn check_key_filter(
    key_filters: &crate::key_filter::Catalog,
    identity: &sealog_format::index::SegmentIdentity,
    segment: &str,
    sidecar: Option<&[u8]>,
) -> Result<SidecarCheck> {
    let Some(stored) = key_filters.read_entry(identity.first_seq) else {
        return Ok(SidecarCheck::Missing(segment.to_owned()));
    };
    let (offset, stored) = stored?;
    // An entry for another segment of that first seq (one sealed again
    // after a torn seal, say) is not used by readers: as good as none.
    let stale = sealog_format::keyfilter::EntryHead::parse(&stored)
        .is_ok_and(|head| head.identity != *identity);
    if stale {
        return Ok(SidecarCheck::Missing(segment.to_owned()));
    }
    let Some(sidecar) = sidecar else {
        return Ok(SidecarCheck::NotChecked);
    };
    // Bytes just encoded from the records: read in place, not checked again.
    let expected = sealog_format::index::IndexReader::open(sidecar)
        .and_then(|reader| sealog_format::keyfilter::KeyFilterBuilder::from_sidecar(&reader))
        .map(|builder| builder.encode(identity));
    let Ok(expected) = expected else {
        return Ok(SidecarCheck::NotChecked);
    };
    let differs = expected
        .iter()
        .zip(&stored)
        .position(|(a, b)| a != b)
        .or((expected.len() != stored.len()).then(|| expected.len().min(stored.len())));
    Ok(match differs {
        None => SidecarCheck::Matches,
        Some(at) => SidecarCheck::Differs(Corruption::new(
            Location::file(crate::key_filter::FILE).at(offset + at as u64),
            CorruptionKind::KeyFilters {
                problem: format!(
                    "the entry of {segment} differs from the filter its records give at byte {at} \
                     of the entry ({})",
                    if at < sealog_format::keyfilter::ENTRY_HEADER_LEN {
                        "its header"
                    } else {
                        "its page CRCs or filter bits"
                    }
                ),
            },
        )),
    })
}

fn check_checkpoint(
    check: &CheckpointCheck,
    stream: &StreamTree,
    chain_at: Option<Hash>,
    last_matching: u64,
) -> Result<()> {
    let root_ok = stream.root() == check.root;
    let chain_ok = match (check.chain_head, chain_at) {
        (Some(signed), Some(now)) => signed == now,
        _ => true,
    };
    if root_ok && chain_ok {
        return Ok(());
    }
    Err(Corruption::new(
        Location::file(check.source.clone()).seq(last_matching),
        CorruptionKind::CheckpointMismatch {
            size: check.size,
            first_divergent: (last_matching, check.size),
        },
    )
    .into())
}

/// Verifies segments on worker threads and hands the results to `consume`
/// in log order, keeping at most a few segments' results in memory.
fn pipeline(
    cx: SegmentContext<'_>,
    found: &[Found],
    consume: &mut dyn FnMut(usize, Result<Summary>) -> Result<bool>,
) -> Result<()> {
    let workers = crate::spread::cores().min(found.len().max(1));
    let window = workers * 2;
    let next = AtomicUsize::new(0);
    let slots: Vec<parking_lot::Mutex<Option<Result<Summary>>>> = (0..found.len())
        .map(|_| parking_lot::Mutex::new(None))
        .collect();
    let gate = parking_lot::Mutex::new((0usize, false)); // (consumed, abort)
    let moved = parking_lot::Condvar::new();
    let mut outcome = Ok(());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = found.get(i) else { break };
                    {
                        let mut g = gate.lock();
                        while !g.1 && i >= g.0 + window {
                            moved.wait(&mut g);
                        }
                        if g.1 {
                            break;
                        }
                    }
                    let followed = i + 1 < found.len();
                    let result = verify_segment(cx, f, followed);
                    if let Some(slot) = slots.get(i) {
                        *slot.lock() = Some(result);
                    }
                    let _g = gate.lock();
                    moved.notify_all();
                }
            });
        }
        for (i, slot) in slots.iter().enumerate() {
            let result = {
                let mut g = gate.lock();
                loop {
                    if let Some(r) = slot.lock().take() {
                        break r;
                    }
                    moved.wait(&mut g);
                }
            };
            let go_on = consume(i, result);
            let mut g = gate.lock();
            g.0 = i + 1;
            match go_on {
                Ok(true) => {}
                Ok(false) => {
                    g.1 = true;
                    moved.notify_all();
                    break;
                }
                Err(e) => {
                    g.1 = true;
                    outcome = Err(e);
                    moved.notify_all();
                    break;
                }
            }
            moved.notify_all();
        }
        gate.lock().1 = true;
        moved.notify_all();
    });
    outcome
}

/// What the walk of a segment gathers from its records, in order.
struct Gathered<'a> {
    chained: Chained<'a>,
    /// Each record's frame offset.
    offsets: Vec<u64>,
    /// The seqs of privacy-policy records.
    policies: Vec<u64>,
    count: u64,
    min_event: i64,
    max_event: i64,
    first_recorded: Option<i64>,
    last_recorded: Option<i64>,
    /// The end of the last frame.
    end: u64,
}

impl<'a> Gathered<'a> {
    /// Adds the next record `r` (`policy`: it is a privacy policy).
    fn add<V: Decoded<'a>>(&mut self, r: &WalkedRecord<'a, V>, policy: bool) {
        self.offsets.push(r.offset);
        if policy {
            self.policies.push(r.view.seq());
        }
        let t = r.view.event_time().as_nanos();
        self.min_event = self.min_event.min(t);
        self.max_event = self.max_event.max(t);
        let recorded = r.view.recorded_at().as_nanos();
        self.first_recorded.get_or_insert(recorded);
        self.last_recorded = Some(recorded);
        self.count += 1;
        self.end = r.offset + r.frame_len as u64;
        self.chained
            .add(r.body, r.commit.then_some((self.end, recorded)));
    }
}

/// What the check of every segment reads besides the segment.
#[derive(Clone, Copy)]
struct SegmentContext<'a> {
    fs: &'a dyn Vfs,
    limit: Option<&'a Limit>,
    /// Level 0 (`tree/leaves`) and level 1.
    stored: [Option<&'a LevelFile>; 2],
    checkpoint_sizes: &'a [u64],
    /// `None`: the log only, no index files checked.
    key_filters: Option<&'a crate::key_filter::Catalog>,
    leaf_pool: &'a LeafPool,
    /// The inverted columns of sidecars' checks.
    column_pool: &'a ColumnPools,
}

fn verify_segment(cx: SegmentContext<'_>, f: &Found, followed: bool) -> Result<Summary> {
    let SegmentContext {
        fs,
        limit,
        stored: [stored_leaves, stored_level1],
        checkpoint_sizes,
        key_filters,
        leaf_pool,
        column_pool,
    } = cx;
    let wanted: Vec<u64> = checkpoint_sizes
        .iter()
        .copied()
        .filter(|&s| s > f.header.first_seq)
        .collect();
    let (image, file_len) = match &f.footer {
        // Sealed segments are never written again: map them (a compressed
        // one is decoded, every block checked, and its image verified).
        Some(_) => {
            let image = f.image()?;
            let len = image.len() as u64;
            (image, len)
        }
        // Others may still be written (or sealed and cut) by a live store:
        // copy them with positioned reads, never map them.
        None => {
            let (bytes, len) = read_unsealed(fs, f, limit)?;
            (Mapped::from_vec(bytes), len)
        }
    };
    // Every byte is read, in order: have the kernel read the whole file
    // now, in large requests, rather than a read-ahead window per fault.
    image.will_need(0, image.len());
    let location = |offset: u64, seq: u64| Location::file(&f.name).at(offset).seq(seq);
    let max_records = match (&f.footer, limit) {
        (Some(footer), _) => footer.record_count,
        (None, Some(limit)) => limit.seq.saturating_sub(f.header.first_seq),
        (None, None) => u64::MAX,
    };
    // Records are hashed a batch at a time, several at once.
    let mut walker = FrameWalker::new(&image, f.header.first_seq, None).without_leaves();
    // Room for a sealed segment's records up front (its footer says how
    // many; no frame is under 32 bytes, which bounds a damaged count). An
    // unsealed one's count is unknown: its vectors grow.
    let expected_records = f.footer.as_ref().map_or(0, |footer| {
        usize::try_from(footer.record_count.min(image.len() as u64 / 32)).unwrap_or(0)
    });
    // A sealed segment's index sidecar, checked against the records as
    // they are read (`content`), where it lies: mapped, as the segment is.
    let identity = f
        .footer
        .as_ref()
        .map(|footer| crate::sidecar::identity(&f.header, footer));
    let sidecar_file = match (&identity, key_filters) {
        (Some(_), Some(_)) => map_sidecar(fs, f)?,
        _ => None,
    };
    let mut content = match (&sidecar_file, &identity) {
        (Some(file), Some(identity)) => Some(ContentCheck::new(
            file,
            identity,
            expected_records,
            column_pool,
        )),
        _ => None,
    };
    let chained = Chained::new(
        f.header.first_seq,
        f.header.chain_in,
        wanted,
        leaf_pool.take(expected_records),
    );
    let mut g = Gathered {
        chained,
        offsets: Vec::with_capacity(expected_records),
        policies: Vec::new(),
        count: 0,
        min_event: i64::MAX,
        max_event: i64::MIN,
        first_recorded: None,
        last_recorded: None,
        end: sealog_format::segment::HEADER_LEN as u64,
    };
    // Records are checked without making views (`record::check`: text is
    // checked as UTF-8, ASCII 8 bytes at a time, but not made into `&str`):
    // the log and the sidecar's index need only their bytes.
    while g.count < max_records {
        let Some(r) = walker.next_as::<sealog_format::record::Checked>() else {
            break;
        };
        if let Some(Ok(check)) = &mut content {
            // Below `max_records`, a footer's count of at most `u32::MAX`.
            check.record(
                u32::try_from(g.count).unwrap_or(u32::MAX),
                r.offset,
                &r.view,
            );
        }
        g.add(&r, crate::policy_note::is_policy_checked(&r.view, r.body));
    }
    let Gathered {
        chained,
        offsets,
        mut policies,
        count,
        min_event,
        max_event,
        first_recorded,
        last_recorded,
        end,
    } = g;
    let Chained {
        mut leaves,
        chain,
        mut chains_at,
        committed: (committed, last_commit_recorded),
        ..
    } = chained.finish();
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
        let mut interrupted_at = None;
        let from = usize::try_from(committed.2).unwrap_or(usize::MAX);
        let seal_debris = followed
            && count == committed.0
            && image
                .get(from..)
                .is_some_and(|rest| crate::segment::interrupted_seal(rest, committed.2));
        if let Some(stop) = stop.as_ref().filter(|_| !seal_debris) {
            let tail = classify_tail(&image, stop);
            if tail == Tail::Torn || count > committed.0 {
                interrupted_at = Some(committed.2);
            }
            match tail {
                Tail::Corrupt(kind) => {
                    let seq = f.header.first_seq + count;
                    return Err(Corruption::new(location(stop.at(), seq), kind).into());
                }
                Tail::Torn | Tail::Clean => {
                    let from = usize::try_from(committed.2).unwrap_or(usize::MAX);
                    // A count for the report.
                    tail_bytes = image
                        .get(from..)
                        .unwrap_or_default()
                        .iter()
                        .filter(|&&b| b != 0)
                        .count() as u64;
                }
            }
        }
        let (count, chain_head, frames_end) = if reached_limit {
            (count, chain, end)
        } else {
            committed
        };
        leaves.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        policies.retain(|&seq| seq < f.header.first_seq + count);
        chains_at.retain(|(size, _)| *size <= f.header.first_seq + count);
        return Ok(Summary {
            count,
            chain_head,
            leaves,
            chains_at,
            first_recorded: if count > 0 { first_recorded } else { None },
            last_recorded: if reached_limit {
                last_recorded
            } else {
                last_commit_recorded
            },
            bytes: file_len,
            frame_bytes: frames_end.saturating_sub(sealog_format::segment::HEADER_LEN as u64),
            tail_bytes,
            interrupted_at,
            sidecar: SidecarCheck::NotChecked,
            key_filter: SidecarCheck::NotChecked,
            policies,
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
    // A frame end (from disk) past the file has no end marker after it.
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
    let mut frontier = Frontier::new();
    frontier.extend(&leaves)?;
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
        // For the message: zeros when the stored leaf cannot be read.
        let stored = stored_leaves
            .and_then(|l| l.read(index, 1).ok())
            .and_then(|v| v.first().copied())
            .unwrap_or_default();
        return Err(Corruption::new(
            location(offsets.get(ordinal).copied().unwrap_or(0), index),
            CorruptionKind::RecordChanged {
                stored,
                // `ordinal` indexes the leaves just computed.
                computed: leaves.get(ordinal).copied().unwrap_or_default(),
            },
        )
        .into());
    }
    if !matches_footer
        && let Some((first, stored, computed)) = first_block_difference(stored_level1, f, &leaves)?
    {
        let ordinal = (first - f.header.first_seq) as usize;
        let at = offsets.get(ordinal).copied().unwrap_or(0);
        return Err(Corruption::new(
            location(at, first),
            CorruptionKind::RecordsChanged {
                first,
                count: crate::tree::BLOCK as u64,
                stored,
                computed,
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
    let identity = crate::sidecar::identity(&f.header, footer);
    let (sidecar, key_filter) = match key_filters {
        Some(key_filters) => {
            // The sidecar the records give, encoded, when the file's check
            // says it differs (to say where), when there is no file, or
            // when the check could not run. A record the index cannot hold
            // (the seal could not have written a sidecar either) leaves
            // nothing to compare.
            let encode = |layout| {
                encode_from_records(&image, &offsets, &f.header, identity, &f.name, layout)
            };
            let same = content.map(|check| check.and_then(ContentCheck::finish));
            let name = crate::sidecar::sidecar_name(f.header.first_seq);
            let (sidecar, expected) = match (&sidecar_file, same) {
                (None, _) => {
                    let wanted = key_filters.holds(identity.first_seq);
                    let expected = wanted
                        .then(|| encode(crate::sidecar::SidecarLayout::CURRENT))
                        .flatten();
                    (SidecarCheck::Missing(name), expected.map(Cow::Owned))
                }
                (Some(file), Some(Ok(()))) => {
                    (SidecarCheck::Matches, Some(Cow::Borrowed(&file[..])))
                }
                (Some(file), _) => match encode(crate::sidecar::SidecarLayout::of(file)) {
                    None => (SidecarCheck::NotChecked, None),
                    Some(expected) => (
                        compare_sidecar(&expected, file, name, &f.name),
                        Some(Cow::Owned(expected)),
                    ),
                },
            };
            let key_filter =
                check_key_filter(key_filters, &identity, &f.name, expected.as_deref())?;
            (sidecar, key_filter)
        }
        None => (SidecarCheck::NotChecked, SidecarCheck::NotChecked),
    };
    drop(image);
    Ok(Summary {
        count,
        chain_head: chain,
        leaves,
        chains_at,
        first_recorded,
        last_recorded,
        bytes: f.len,
        frame_bytes: end.saturating_sub(sealog_format::segment::HEADER_LEN as u64),
        tail_bytes: 0,
        interrupted_at: None,
        sidecar,
        key_filter,
        policies,
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
        // None only without records, which a footer never has (refused on
        // reading it).
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
/// store, else the whole file (retrying if a live writer cuts it
/// meanwhile); and the length read. The zero-filled space ahead of an
/// active segment's data (tens of MiB) is read a MiB at a time and not
/// kept beyond the first zero MiB after the data: the walk and the tail
/// checks see the same bytes up to there and nothing but zeros after.
fn read_unsealed(fs: &dyn Vfs, f: &Found, limit: Option<&Limit>) -> Result<(Vec<u8>, u64)> {
    const CHUNK: usize = 1 << 20;
    let bound = limit.and_then(|l| {
        l.open_ends
            .iter()
            .find(|(first, _)| *first == f.header.first_seq)
            .map(|(_, end)| *end)
    });
    let file = fs
        .open(&f.path, crate::fs::OpenMode::Read)
        .map_err(|e| Error::io("open", &f.path, e))?;
    let mut chunk = vec![0u8; CHUNK];
    let mut attempts = 0;
    'read: loop {
        let len = file.size().map_err(|e| Error::io("stat", &f.path, e))?;
        let len = bound.map_or(len, |b| b.min(len));
        // Room for the whole file up front (pages never written cost
        // nothing): the image is never moved as it grows.
        let mut image = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // Zero bytes read and not kept (yet), and whether the last chunk
        // kept was all zeros.
        let mut zeros_left_out = 0usize;
        let mut kept_zeros = false;
        let mut at = 0u64;
        while at < len {
            let n = usize::try_from(len - at).map_or(CHUNK, |rest| rest.min(CHUNK));
            let part = &mut chunk[..n];
            match file.read_exact_at(part, at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && attempts < 3 => {
                    attempts += 1;
                    continue 'read;
                }
                Err(e) => return Err(Error::io("read", &f.path, e)),
            }
            let zero = crate::segment::all_zero(part);
            if zero && kept_zeros {
                zeros_left_out += n;
            } else {
                image.resize(image.len() + zeros_left_out, 0);
                zeros_left_out = 0;
                image.extend_from_slice(part);
                kept_zeros = zero;
            }
            at += n as u64;
        }
        return Ok((image, len));
    }
}
