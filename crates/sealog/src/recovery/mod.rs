//! Opening a store: checking what is on disk and recovering from a crash.
//!
//! Sealed segments are checked cheaply (header and footer checksums, seq and
//! chain continuity between them, the leaf file's count, the newest
//! checkpoint's size and root); their records are only read by
//! verification. Only the segments without a footer — the active one, and
//! one whose seal was interrupted — are scanned frame by frame, so opening
//! takes the same time however large the store is. A read-only open takes
//! the records a writer's index snapshot covers from it, once their frames
//! are checked, and scans only the frames after them (`crate::open_index`). Both opens, for writing
//! and read-only, run these checks through the same code ([`Links`],
//! [`Findings`]); a gap in the segment numbering consults the segments
//! known to be absent ([`KnownAbsent`]) before it is called missing.
//!
//! A scan ends at the first frame that cannot be read. If the damage is the
//! signature of an interrupted write ([`crate::segment::classify_tail`]),
//! everything after the last complete batch was never acknowledged: those
//! bytes are copied to `lost+found/`, zeroed, and the store appends a
//! `store.recovered` event that says what was removed. Any other damage is
//! corruption and opening fails, naming the file and byte offset. A
//! read-only open with [`OnDamage::ReadAround`] opens the store anyway,
//! without changing it, and lists what it cannot read.
//!
//! This module runs the steps of an open ([`open`]); its parts are `files`
//! (the files as found: segment headers and footers, the manifest, the
//! spare), `continuity` (how the segments link), `scan` (unsealed segments
//! and torn tails) and `report` (what recovery did).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealog_format::merkle::{Frontier, NodeSource};
use sealog_format::segment::{HEADER_LEN, Manifest, SegmentFooter, SegmentHeader};
use sealog_format::{Hash, Timestamp};

use crate::checkpoint::CheckpointLog;
use crate::damage::{Damage, DamageLog, KnownAbsent, OnDamage};
use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::fs::{self, LockGuard, OpenMode, Vfs};
use crate::layout;
use crate::options::{Preallocation, StoreOptions};
use crate::sealer::Sealing;
use crate::segment::{FrameWalker, OpenSegment, SealedSegment, Tail};
use crate::sequencer::{Limits, Sequencer, Start};
use crate::store::{Config, Inner, Parts, View};
use crate::tree::{LevelFile, Tree};
use crate::writer::Workers;

mod continuity;
mod files;
mod report;
mod scan;

pub(crate) use continuity::check_link;
use continuity::{Findings, Links};
pub(crate) use files::{
    Found, demote_unfinished_seal, leaf_count, list_segment_names, read_found, read_manifest,
};
use files::{find_spare, list_segments, load_manifest};
pub use report::{RecoveryReport, Truncation};
use scan::{
    ScanResult, TakenSealed, holds_committed_record, scan_unsealed, take_readable, truncate_tail,
};

fn corruption(location: Location, kind: CorruptionKind) -> Error {
    Corruption::new(location, kind).into()
}

/// Opens the store in `dir`: see the module documentation. The steps, in
/// order: lock the store and make its directories; read every segment's
/// header and footer; check the continuity of the sealed segments, then
/// scan the unsealed ones; check the newest checkpoint and the leaf file
/// against the log; reconcile the tree's files; cut torn tails and finish
/// interrupted seals; put the store's state together and start its
/// threads.
pub(crate) fn open(
    dir: &Path,
    options: StoreOptions,
    read_only: bool,
) -> Result<(Arc<Inner>, Arc<Workers>)> {
    let max_batch = options.check()?;
    if !read_only && options.on_damage == OnDamage::ReadAround {
        return Err(Error::Config(
            "reading around damage (OnDamage::ReadAround) is for read-only opens: a store \
             opened for writing must be intact"
                .into(),
        ));
    }
    let (mut opening, lock) = Opening::lock(dir, options, read_only)?;
    let disk = opening.read_segments()?;
    let (mut log, unsealed) = opening.take_sealed(disk.found, &disk.manifest, &disk.absent)?;
    opening.scan_unsealed(unsealed, &mut log, &disk.absent)?;
    let checkpoints = CheckpointLog::open(
        &*opening.fs,
        &opening.dir.join(layout::CHECKPOINTS),
        read_only,
    )?;
    let newest = opening.check_checkpoint_size(&checkpoints, &log)?;
    opening.check_leaf_count(disk.leaves_before, &log)?;
    let tree = opening.reconcile_tree(&log)?;
    let index_env = Arc::new(crate::sidecar::IndexEnv {
        fs: opening.fs.clone(),
        dir: opening.dir.clone(),
        writable: !read_only,
        rebuilds: std::sync::atomic::AtomicU64::new(0),
        store: std::sync::OnceLock::new(),
        key_filters: crate::key_filter::KeyFilters::new(
            opening.fs.clone(),
            &opening.dir,
            disk.manifest.store_id,
            !read_only,
        ),
        blocks: crate::compressed::BlockCache::default(),
    });
    if !read_only {
        index_env.key_filters.cut_torn_tail()?;
    }
    let view = opening.take_segments(
        log.sealed,
        log.scans,
        &disk.absent,
        tree.as_ref(),
        &index_env,
    )?;
    let view = opening.start_active(view, &log.links, &disk.manifest)?;
    let frontiers = std::mem::take(&mut opening.frontiers);
    let active = if read_only {
        None
    } else {
        view.open.last().cloned()
    };
    let inner = opening.into_state(Opened {
        max_batch,
        manifest: disk.manifest,
        links: log.links,
        view,
        tree,
        checkpoints,
        index_env,
        lock,
    })?;
    // The newest checkpoint's root against the tree (cheap: a few reads of
    // the level files, and the leaves of the open segments).
    if let Some(checkpoint) = &newest
        && let Err(e) = check_checkpoint_root(&inner, checkpoint, &frontiers)
    {
        match (&inner.damage, e) {
            (Some(log), Error::Corruption(c)) => {
                tracing::info!(corruption = %c, "reading around damage");
                log.push(Damage::new(*c, checkpoint.size, Some(checkpoint.size)));
            }
            (_, e) => return Err(e),
        }
    }
    if !inner.recovery().is_clean() {
        tracing::warn!(store = %inner.config().dir.display(), report = ?inner.recovery(), "recovered from an unclean shutdown");
    }
    let workers = Workers::start(inner.clone(), active)?;
    Ok((inner, workers))
}

/// One past the last record of the sealed segments taken from files.
fn log_end(view: &View) -> u64 {
    view.sealed.last().map_or(0, |s| s.footer.end_seq())
}

/// What an open carries from one step to the next.
struct Opening {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    options: StoreOptions,
    read_only: bool,
    findings: Findings,
    report: RecoveryReport,
    /// The whole log's Merkle frontiers that the index snapshots taken
    /// carry (read-only opens), for the newest checkpoint's check.
    frontiers: Vec<Frontier>,
}

/// The segment files as found, before any check of how they link.
struct OnDisk {
    manifest: Manifest,
    /// Every segment file whose header (and footer, if any) could be read,
    /// in log order.
    found: Vec<Found>,
    /// Leaf hashes in `tree/leaves` before the segments were listed.
    leaves_before: Option<u64>,
    absent: KnownAbsent,
}

/// The log as the continuity checks took it.
struct TakenLog {
    links: Links,
    /// The sealed segments taken, in log order.
    sealed: Vec<TakenSealed>,
    /// The unsealed segments taken, in log order, scanned.
    scans: Vec<ScanResult>,
}

impl TakenLog {
    /// Records in the sealed segments taken.
    fn sealed_total(&self) -> u64 {
        self.sealed.last().map_or(0, |s| s.footer.end_seq())
    }
}

/// What the last step puts together with what the open has found.
struct Opened {
    max_batch: u64,
    manifest: Manifest,
    links: Links,
    view: View,
    tree: Option<Tree>,
    checkpoints: CheckpointLog,
    index_env: Arc<crate::sidecar::IndexEnv>,
    lock: Option<Box<dyn LockGuard>>,
}

impl Opening {
    /// Takes the store's lock (writable opens; another process holding it
    /// is [`Error::Locked`]) and makes its directories, durably.
    fn lock(
        dir: &Path,
        options: StoreOptions,
        read_only: bool,
    ) -> Result<(Opening, Option<Box<dyn LockGuard>>)> {
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
        if !read_only {
            fs::create_dirs(
                &*fs,
                &[&dir.join(layout::SEGMENTS), &dir.join(layout::TREE)],
            )?;
        }
        let findings = Findings {
            read_around: read_only && options.on_damage == OnDamage::ReadAround,
            damage: Vec::new(),
        };
        let opening = Opening {
            fs,
            dir,
            options,
            read_only,
            findings,
            report: RecoveryReport::default(),
            frontiers: Vec::new(),
        };
        Ok((opening, lock))
    }

    /// Lists the segment files (removing leftovers of interrupted
    /// creations), loads or creates the manifest, and reads every header
    /// and footer. The last sealed segment counts as unsealed if its seal
    /// did not finish.
    fn read_segments(&mut self) -> Result<OnDisk> {
        let fs = &*self.fs;
        // Counted before the segments are listed. Leaves are synced before a
        // segment's footer, and the file only grows while another process
        // writes the store, so every leaf counted now belongs to a segment
        // that is sealed when the segments are listed, or to the first one
        // still unsealed then. Counted later, it could hold the leaves of a
        // segment sealed meanwhile.
        let leaves_before = leaf_count(fs, &self.dir.join(layout::TREE))?;
        let segments_dir = self.dir.join(layout::SEGMENTS);
        let files = list_segments(fs, &segments_dir, &self.options, self.read_only)?;
        let manifest = load_manifest(fs, &self.dir, !files.is_empty(), self.read_only)?;
        let absent = KnownAbsent::load(fs, &self.dir)?;
        let read = |i: usize| {
            let (first_seq, file_name) = files.get(i)?;
            let mut found = read_found(
                fs,
                &self.dir,
                file_name,
                *first_seq,
                &manifest,
                self.read_only,
            );
            // A sealed segment is mapped here (on every core for a read-only
            // open) rather than when the segments are taken (a failure is
            // met again there, and reported), and its descriptor closed: an
            // open holds a few at a time rather than one per segment, which
            // a process at the common soft limit of 1,024 could not for a
            // store of ~1,000 segments. Nothing but reads reaches a sealed
            // segment's file after this.
            if let Ok(f) = &mut found
                && f.footer.is_some()
                && let Ok(map) = f.file.map()
            {
                f.map = Some(map);
                f.file = Arc::new(crate::fs::Reopening::new(self.fs.clone(), f.path.clone()));
            }
            Some(found)
        };
        // A read-only open (every command-line query) reads the segments'
        // headers and footers on every core: a file open, a stat and two
        // reads each, ~10 µs, for each of hundreds of segments. A writable
        // open reads them in order, one call after the other, as the fault
        // matrix counts them.
        let threads = if self.read_only {
            crate::spread::cores().min(4)
        } else {
            1
        };
        crate::fs::reserve_descriptors(&self.dir, files.len());
        let (_, read) = crate::spread::in_order(files.len(), threads, read, |_| false, || ());
        let mut found = Vec::with_capacity(files.len());
        for (i, read) in read {
            // Every index below the number of files gives a read.
            let (Some((first_seq, _)), Some(read)) = (files.get(i), read) else {
                continue;
            };
            match read {
                Ok(f) => found.push(f),
                Err(e) => {
                    let next = files.get(i + 1).map(|(seq, _)| *seq);
                    self.findings.found(e, *first_seq, next)?;
                }
            }
        }
        // A seal a crash or power loss interrupted leaves the last sealed
        // segment with a damaged footer or end marker: it is unsealed again
        // (and sealed again when the segments are taken).
        demote_unfinished_seal(&mut found)?;
        // A segment whose seal was unfinished is scanned, and sealed again by
        // a writable open, through a real handle.
        for f in found
            .iter_mut()
            .filter(|f| f.footer.is_none() && f.map.is_some())
        {
            let mode = if self.read_only {
                OpenMode::Read
            } else {
                OpenMode::ReadWrite
            };
            f.map = None;
            f.file = fs
                .open(&f.path, mode)
                .map_err(|e| Error::io("open", &f.path, e))?;
        }
        Ok(OnDisk {
            manifest,
            found,
            leaves_before,
            absent,
        })
    }

    /// Checks the sealed part of the log (numbering, seqs and chain links;
    /// only the last segments may lack a footer) and takes it. Returns the
    /// log so far and the unsealed segments, still to be scanned.
    fn take_sealed(
        &mut self,
        found: Vec<Found>,
        manifest: &Manifest,
        absent: &KnownAbsent,
    ) -> Result<(TakenLog, Vec<Found>)> {
        let last_sealed = found.iter().rposition(|f| f.footer.is_some());
        let mut log = TakenLog {
            links: Links::new(manifest.genesis()),
            sealed: Vec::new(),
            scans: Vec::new(),
        };
        let mut unsealed = Vec::new();
        let mut found = found.into_iter().enumerate().peekable();
        while let Some((i, f)) = found.next() {
            if last_sealed.is_none_or(|last| i > last) {
                unsealed.push(f);
                continue;
            }
            let next_first_seq = found.peek().map(|(_, n)| n.header.first_seq);
            let Some(footer) = f.footer else {
                self.take_cut(f, next_first_seq, absent, &mut log)?;
                continue;
            };
            if log
                .links
                .accept(&f, next_first_seq, absent, &mut self.findings)?
            {
                log.links.sealed(&f, &footer);
                log.sealed.push(TakenSealed {
                    found: f,
                    footer,
                    offsets: None,
                });
            }
        }
        Ok((log, unsealed))
    }

    /// A segment without a valid footer, followed by sealed ones: cut or
    /// damaged after it was sealed. Refused, unless reading around damage:
    /// then what can be read of it is taken as a sealed segment.
    fn take_cut(
        &mut self,
        f: Found,
        next_first_seq: Option<u64>,
        absent: &KnownAbsent,
        log: &mut TakenLog,
    ) -> Result<()> {
        if !self.findings.read_around {
            return Err(corruption(
                Location::file(&f.name),
                CorruptionKind::UnsealedInMiddle,
            ));
        }
        if !log
            .links
            .accept(&f, next_first_seq, absent, &mut self.findings)?
        {
            return Ok(());
        }
        let readable = take_readable(f, log.links.last_recorded)?;
        let location = Location::file(&readable.found.name)
            .at(readable.stop_at)
            .seq(readable.end_seq);
        self.findings.found(
            corruption(location, CorruptionKind::UnsealedInMiddle),
            readable.end_seq,
            next_first_seq,
        )?;
        log.links.cut(
            &readable.found,
            readable.end_seq,
            next_first_seq,
            readable.last_recorded,
        );
        log.sealed.extend(readable.into_sealed());
        Ok(())
    }

    /// Scans the unsealed segments frame by frame, in order, and takes
    /// their committed records. Segments after an interrupted write hold no
    /// committed record and are removed (writable opens).
    fn scan_unsealed(
        &mut self,
        unsealed: Vec<Found>,
        log: &mut TakenLog,
        absent: &KnownAbsent,
    ) -> Result<()> {
        let mut pending = unsealed.into_iter().peekable();
        while let Some(f) = pending.next() {
            let next_first_seq = pending.peek().map(|n| n.header.first_seq);
            if !log
                .links
                .accept(&f, next_first_seq, absent, &mut self.findings)?
            {
                continue;
            }
            // A read-only open takes what the writer's index snapshot
            // covers (checked against the segment) instead of decoding,
            // hashing and indexing those records again.
            let base = if self.read_only {
                scan::checked_snapshot(&*self.fs, &f, log.links.last_recorded)?
            } else {
                None
            };
            let mut scan = scan_unsealed(f, log.links.last_recorded, base)?;
            self.report.from_index_snapshots += scan.base.as_ref().map_or(0, |b| b.len());
            if let Some(base) = scan.base.as_mut() {
                self.frontiers.append(&mut base.frontiers);
            }
            let followed = pending.peek().is_some();
            if followed
                && scan.records.len() == scan.committed
                && crate::segment::interrupted_seal(&scan.leftover, scan.committed_end)
            {
                // What a seal interrupted by a power loss left (see
                // `interrupted_seal`): the records are whole; seal again.
                scan.tail = Tail::Clean;
                scan.ends_in_marker = true;
            }
            if let Tail::Corrupt(kind) = &scan.tail {
                let kind = kind.clone();
                self.take_corrupt(kind, scan, next_first_seq, log)?;
                continue;
            }
            let damaged = scan.tail == Tail::Torn || scan.records.len() > scan.committed;
            if damaged && followed {
                let rest: Vec<Found> = pending.by_ref().collect();
                self.remove_after_torn_write(&scan, rest)?;
            }
            log.links.scanned(&scan);
            log.scans.push(scan);
        }
        Ok(())
    }

    /// An unsealed segment whose scan ended in damage an interrupted write
    /// cannot explain: refused, unless reading around damage (then its
    /// committed records before the damage are kept).
    fn take_corrupt(
        &mut self,
        kind: CorruptionKind,
        scan: ScanResult,
        next_first_seq: Option<u64>,
        log: &mut TakenLog,
    ) -> Result<()> {
        let location = Location::file(&scan.found.name)
            .at(scan.stop_at)
            .seq(scan.stop_seq);
        let readable_end = scan.found.header.first_seq + scan.committed_total();
        self.findings
            .found(corruption(location, kind), readable_end, next_first_seq)?;
        let last_recorded = scan.last_committed().map(|(recorded, _)| recorded);
        log.links
            .cut(&scan.found, readable_end, next_first_seq, last_recorded);
        log.scans.push(scan);
        Ok(())
    }

    /// An interrupted write in a segment followed by others: the committer
    /// syncs a segment before writing the next, so the later ones can hold
    /// no committed record. Any that does is damage; if none does, they are
    /// removed (writable opens), and the removal is made durable.
    fn remove_after_torn_write(&mut self, scan: &ScanResult, rest: Vec<Found>) -> Result<()> {
        let mut holding = false;
        for (j, later) in rest.iter().enumerate() {
            if holds_committed_record(later)? {
                holding = true;
                let e = corruption(
                    Location::file(&later.name),
                    CorruptionKind::Layout(format!(
                        "holds records although the earlier segment {} ends in an \
                         interrupted write at byte {}",
                        scan.found.name, scan.stop_at
                    )),
                );
                let end = rest.get(j + 1).map(|n| n.header.first_seq);
                self.findings.found(e, later.header.first_seq, end)?;
            }
        }
        if self.read_only || holding {
            return Ok(());
        }
        let segments_dir = self.dir.join(layout::SEGMENTS);
        for later in rest {
            self.fs
                .remove_file(&later.path)
                .map_err(|e| Error::io("remove", &later.path, e))?;
            self.report.removed.push(later.name);
        }
        self.fs
            .sync_dir(&segments_dir)
            .map_err(|e| Error::io("fsync directory", &segments_dir, e))
    }

    /// A signed checkpoint covers only records that were durable when it
    /// was signed. If the log now ends before it, what is missing was never
    /// a torn write: refuse to open for writing (which would cut and then
    /// overwrite the evidence) instead of recovering. Returns the newest
    /// checkpoint, if the history has one that parses.
    fn check_checkpoint_size(
        &mut self,
        checkpoints: &CheckpointLog,
        log: &TakenLog,
    ) -> Result<Option<crate::checkpoint::SignedCheckpoint>> {
        let log_end = log.links.end();
        let newest = match newest_checkpoint(checkpoints) {
            Ok(newest) => newest,
            Err(e) => {
                self.findings.found(e, log_end, Some(log_end))?;
                None
            }
        };
        let signed = newest.as_ref().map_or(0, |c| c.size);
        if signed > log_end {
            let location = log
                .scans
                .last()
                .map_or_else(
                    || Location::file(layout::segment_name(log_end)),
                    |s| Location::file(&s.found.name).at(s.committed_end),
                )
                .seq(log_end);
            let e = corruption(
                location,
                CorruptionKind::Truncated {
                    have: log_end,
                    signed,
                },
            );
            self.findings.found(e, log_end, Some(signed))?;
        }
        Ok(newest)
    }

    /// The leaf file against the sealed segments: it covers every sealed
    /// record (leaves are synced before a footer is written) and no more
    /// than the segment being sealed adds. Leaves beyond that are the
    /// records of segment files removed or cut at the end of the log.
    /// (After a gap reported before, the leaves of the missing segments are
    /// expected: nothing more to say.)
    fn check_leaf_count(&mut self, leaves_before: Option<u64>, log: &TakenLog) -> Result<()> {
        let sealed_total = log.sealed_total();
        let first_scan = log
            .scans
            .first()
            .filter(|s| s.found.header.first_seq == sealed_total);
        let contiguous = log.scans.is_empty() || first_scan.is_some();
        let sealing = first_scan.map_or(0, ScanResult::committed_total);
        let Some(leaves) = leaves_before else {
            return Ok(());
        };
        if !contiguous || leaves <= sealed_total + sealing {
            return Ok(());
        }
        let have = sealed_total + sealing;
        let location = match first_scan.filter(|_| sealing > 0) {
            Some(s) => Location::file(&s.found.name).at(s.committed_end),
            None => Location::file(layout::segment_name(have)),
        };
        let e = corruption(
            location.seq(have),
            CorruptionKind::RecordsMissing {
                have,
                sealed: leaves,
            },
        );
        self.findings.found(e, have, Some(leaves))
    }

    /// Opens the tree's level files and reconciles them with the sealed
    /// records: a writable open cuts what is beyond them and recomputes
    /// what is missing; a read-only one reports leaves that are short.
    fn reconcile_tree(&mut self, log: &TakenLog) -> Result<Option<Tree>> {
        let tree = Tree::open(&*self.fs, &self.dir.join(layout::TREE), self.read_only)?;
        let Some(tree) = tree else {
            return Ok(None);
        };
        let sealed_total = log.sealed_total();
        if !self.read_only {
            let taken: Vec<(&Found, &SegmentFooter)> =
                log.sealed.iter().map(|s| (&s.found, &s.footer)).collect();
            self.report.rebuilt_leaves = reconcile_leaves(tree.leaves(), &taken, sealed_total)?;
            let last = std::cell::RefCell::new(None);
            tree.reconcile(sealed_total, &|first, count| {
                leaves_of_sealed(&taken, first, count, &mut last.borrow_mut())
            })?;
            return Ok(Some(tree));
        }
        let leaves = tree.leaves().len();
        if leaves < sealed_total {
            let e = corruption(
                Location::file(format!("{}/{}", layout::TREE, layout::LEAVES))
                    .at(leaves * crate::tree::LEAF_LEN),
                CorruptionKind::LeavesShort {
                    have: leaves,
                    sealed: sealed_total,
                },
            );
            self.findings.found(e, sealed_total, Some(sealed_total))?;
        }
        if !tree.assume_persisted(sealed_total) {
            tracing::warn!(
                "the tree files do not cover the sealed records; proofs are unavailable read-only"
            );
        }
        Ok(Some(tree))
    }

    /// Maps the sealed segments; cuts the torn tail of each unsealed one
    /// (writable opens) and seals every unsealed segment but the last.
    fn take_segments(
        &mut self,
        sealed: Vec<TakenSealed>,
        scans: Vec<ScanResult>,
        absent: &KnownAbsent,
        tree: Option<&Tree>,
        index_env: &Arc<crate::sidecar::IndexEnv>,
    ) -> Result<View> {
        let mut view = View::default();
        for taken in sealed {
            let mut f = taken.found;
            let map = match f.map.take() {
                Some(map) => map,
                None => f.file.map().map_err(|e| Error::io("map", &f.path, e))?,
            };
            view.sealed.push(Arc::new(SealedSegment::new(
                f.header,
                taken.footer,
                f.name,
                map,
                f.compressed,
                taken.offsets,
                index_env.clone(),
            )));
        }
        // Segments archived and removed (`pruned.log`) take their place in
        // the log, read from the archive when a read needs them. One still
        // on disk (removal interrupted) is read from its file.
        let local: std::collections::BTreeSet<u64> =
            view.sealed.iter().map(|s| s.header.segment_no).collect();
        let end = log_end(&view);
        let mut added = false;
        for p in absent.all() {
            if !local.contains(&p.header.segment_no) && p.end_seq() <= end {
                view.sealed.push(Arc::new(SealedSegment::pruned(
                    p,
                    self.options.archive.clone(),
                    index_env.clone(),
                )));
                added = true;
            }
        }
        if added {
            view.sealed.sort_by_key(|s| s.header.first_seq);
        }
        let scan_count = scans.len();
        for (i, mut scan) in scans.into_iter().enumerate() {
            let is_last = i + 1 == scan_count;
            if !self.read_only {
                truncate_tail(&*self.fs, &self.dir, &self.options, &scan, &mut self.report)?;
            }
            let (data, index) = scan.take_open_data();
            let found = scan.found;
            let segment = Arc::new(OpenSegment::indexed_from(
                found.header,
                found.name,
                found.path,
                found.file,
                data,
                index,
            ));
            if !is_last && !self.read_only && segment.data.read().len() > 0 {
                let (sealed, index_failure) = crate::sealer::seal_with(tree, index_env, &segment)?;
                if let Some(e) = index_failure {
                    // Opening writes what it seals; a failed write fails the open.
                    return Err(e);
                }
                self.report.sealed.push(segment.name.clone());
                view.sealed.push(Arc::new(sealed));
            } else {
                view.open.push(segment);
            }
        }
        Ok(view)
    }

    /// Without an unsealed segment, a writable open starts a new active one
    /// where the log ends. Zero-filled now, so that even the first segment
    /// syncs at full speed.
    fn start_active(&self, mut view: View, links: &Links, manifest: &Manifest) -> Result<View> {
        if !view.open.is_empty() || self.read_only {
            return Ok(view);
        }
        let (segment_no, first_seq, chain_in) = links.next_segment(manifest);
        let header = SegmentHeader {
            store_id: manifest.store_id,
            segment_no,
            first_seq,
            chain_in,
            created_at: Timestamp::now(),
        };
        view.open.push(crate::segment_file::new_segment_file(
            &*self.fs,
            &self.dir,
            &self.options,
            &header,
            None,
            true,
        )?);
        Ok(view)
    }

    /// Puts the store's state together: the sequencer placed after the last
    /// record, everything taken visible and durable.
    fn into_state(self, opened: Opened) -> Result<Arc<Inner>> {
        let Opened {
            max_batch,
            manifest,
            links,
            view,
            tree,
            checkpoints,
            index_env,
            lock,
        } = opened;
        // An empty log has recorded nothing: the first append's recorded
        // time needs no floor.
        let last_recorded_at = links
            .last_recorded
            .map_or(Timestamp::default(), Timestamp::from_nanos);
        let start = match view.open.last() {
            Some(active) => {
                let data = active.data.read();
                Start {
                    next_seq: active.header.first_seq + data.len(),
                    last_recorded_at,
                    chain: data.chain_head,
                    segment_no: active.header.segment_no,
                    write_pos: data.frames_end,
                    records: data.len(),
                }
            }
            None => {
                // Read-only, with nothing unsealed.
                let (segment_no, next_seq, chain) = links.next_segment(&manifest);
                Start {
                    next_seq,
                    last_recorded_at,
                    chain,
                    segment_no,
                    write_pos: HEADER_LEN as u64,
                    records: 0,
                }
            }
        };
        let spare = if !self.read_only && self.options.preallocation == Preallocation::ZeroFill {
            find_spare(&*self.fs, &self.dir.join(layout::SEGMENTS))?
        } else {
            None
        };
        let sequencer = Sequencer::new(
            Limits {
                store_id: manifest.store_id,
                segment_end: self.options.segment_size - crate::options::SEGMENT_OVERHEAD
                    + HEADER_LEN as u64,
                max_age: self.options.segment_max_age,
            },
            start,
        );
        let read_around = self.findings.read_around;
        Ok(Inner::new(Parts {
            config: Config {
                dir: self.dir,
                fs: self.fs,
                options: self.options,
                max_batch,
                manifest,
                read_only: self.read_only,
            },
            sequencer,
            durable: start.next_seq,
            sealing: Sealing::new(spare),
            view,
            tree,
            checkpoints,
            index_env,
            recovery: self.report,
            damage: read_around.then(|| DamageLog::new(self.findings.damage)),
            lock,
        }))
    }
}

/// The newest checkpoint of the history, read as the store's own.
fn newest_checkpoint(
    checkpoints: &crate::checkpoint::CheckpointLog,
) -> Result<Option<crate::checkpoint::SignedCheckpoint>> {
    let entries = checkpoints.entries();
    let Some(text) = entries.last() else {
        return Ok(None);
    };
    crate::store::parse_signed(text).map(Some).map_err(|e| {
        corruption(
            Location::file(format!("{}#{}", layout::CHECKPOINTS, entries.len() - 1)),
            CorruptionKind::Checkpoint(e.to_string()),
        )
    })
}

/// Checks that the tree gives the root the newest checkpoint signed. Skipped
/// when the tree cannot give it cheaply (a read-only store whose tree files
/// are missing or short, which the open reports on its own).
///
/// A read-only open first tries the frontiers of the index snapshots it
/// took ([`root_from_frontier`]): where one gives the signed root, the
/// check passes without hashing the open segments' tails. Anything else
/// (no frontier, a different root) is decided by the whole computation, so
/// a frontier can only save work, never change the outcome or its report.
fn check_checkpoint_root(
    inner: &Inner,
    checkpoint: &crate::checkpoint::SignedCheckpoint,
    frontiers: &[Frontier],
) -> Result<()> {
    let size = checkpoint.size;
    if size == 0 || inner.tree().is_none() || size > inner.readers().snapshot().len() {
        return Ok(());
    }
    if root_from_frontier(inner, size, frontiers)
        .is_some_and(|root| sealog_format::merkle::ct_eq(&root, &checkpoint.root))
    {
        return Ok(());
    }
    let root = match inner.root(size) {
        Ok(root) => root,
        Err(Error::Proof(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if root == checkpoint.root {
        return Ok(());
    }
    Err(corruption(
        Location::file(layout::CHECKPOINTS).seq(size - 1),
        CorruptionKind::HashMismatch {
            what: "Merkle root of the newest signed checkpoint (against tree/ and the open \
                   segments)",
            stored: checkpoint.root,
            computed: root,
        },
    ))
}

/// The root of the tree of `size` records from the largest snapshot
/// frontier at or below `size` and the open segments' leaves after it, if
/// every subtree of that frontier that the level files hold equals theirs
/// (so the level files are checked as far as the frontier reaches into
/// them, a few reads). `None` if there is no such frontier, a subtree
/// differs, or a leaf is missing.
fn root_from_frontier(inner: &Inner, size: u64, frontiers: &[Frontier]) -> Option<Hash> {
    let frontier = frontiers
        .iter()
        .filter(|f| f.size() <= size)
        .max_by_key(|f| f.size())?;
    let tree = inner.tree()?;
    let persisted = tree.persisted();
    let view = inner.readers().snapshot();
    let fetch = |first: u64, count: usize| view.leaves_from_records(first, count);
    let stored = tree.stored_source(persisted, &fetch)?;
    let mut start = 0u64;
    let heights = (0..64u8)
        .rev()
        .filter(|&h| frontier.size() & (1u64 << h) != 0);
    for (height, hash) in heights.zip(frontier.subtrees()) {
        let width = 1u64 << height;
        if start + width <= persisted && stored.subtree(height, start >> height).ok()? != *hash {
            return None;
        }
        start += width;
    }
    let mut frontier = frontier.clone();
    while frontier.size() < size {
        let want = usize::try_from(size - frontier.size()).ok()?;
        let leaves = view.open_leaves(frontier.size(), want);
        if leaves.is_empty() {
            return None;
        }
        for leaf in leaves {
            frontier.push(leaf).ok()?;
        }
    }
    Some(frontier.root())
}

/// Makes `tree/leaves` cover exactly the sealed records. Returns how many
/// leaves had to be recomputed.
fn reconcile_leaves(
    leaves: &LevelFile,
    sealed: &[(&Found, &SegmentFooter)],
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
        let batch = segment_leaves(f, footer)?;
        // This segment ends after the leaves stored (it was skipped
        // otherwise), so fewer than its records are stored.
        let skip = have.saturating_sub(footer.first_seq);
        let write = usize::try_from(skip)
            .ok()
            .and_then(|skip| batch.get(skip..))
            .expect("fewer leaves of the segment are stored than it has records");
        leaves.write(footer.first_seq + skip, write)?;
        leaves.sync()?;
        rebuilt += write.len() as u64;
    }
    Ok(rebuilt)
}

/// The leaf hashes of every record of a sealed segment, from its records.
fn segment_leaves(f: &Found, footer: &SegmentFooter) -> Result<Vec<Hash>> {
    let map = f.image()?;
    let mut walker = FrameWalker::new(&map, f.header.first_seq, None);
    let leaves = walker.leaves(footer.record_count);
    if leaves.len() as u64 != footer.record_count {
        let stop = walker.into_stop();
        return Err(corruption(
            Location::file(&f.name).at(stop.at()),
            CorruptionKind::FieldMismatch {
                field: "record count in footer",
                stored: footer.record_count.to_string(),
                computed: leaves.len().to_string(),
            },
        ));
    }
    Ok(leaves)
}

/// The leaf hashes of records `[first, first + count)` of the sealed
/// segments, from their records (for leaves `tree/leaves` does not store,
/// when a level above them must be recomputed). `last` keeps the leaves of
/// the last segment read, by first seq: the blocks of one segment are
/// asked for one after the other.
fn leaves_of_sealed(
    sealed: &[(&Found, &SegmentFooter)],
    first: u64,
    count: usize,
    last: &mut Option<(u64, Vec<Hash>)>,
) -> Result<Vec<Hash>> {
    let end = first + count as u64;
    let mut out = Vec::with_capacity(count);
    for (f, footer) in sealed {
        if footer.end_seq() <= first || footer.first_seq >= end {
            continue;
        }
        let leaves = match last {
            Some((start, leaves)) if *start == footer.first_seq => leaves,
            _ => {
                &mut last
                    .insert((footer.first_seq, segment_leaves(f, footer)?))
                    .1
            }
        };
        let from = first.max(footer.first_seq) - footer.first_seq;
        let to = end.min(footer.end_seq()) - footer.first_seq;
        out.extend_from_slice(leaves.get(from as usize..to as usize).unwrap_or_default());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CheckpointOptions, Durability, Store};

    #[test]
    fn the_newest_checkpoint_is_checked_from_a_snapshot_frontier_that_agrees_with_the_level_files()
    {
        let dir = tempfile::tempdir().unwrap();
        let key =
            sealog_format::note::SigningKey::from_seed("audit.example.com/f", &[9u8; 32]).unwrap();
        let options = StoreOptions {
            segment_size: 4 << 20,
            preallocation: Preallocation::Allocate,
            checkpoints: Some(CheckpointOptions {
                every: None,
                ..CheckpointOptions::new(key)
            }),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        let workload = crate::workload::Workload::new(5);
        for i in (0..50_000).step_by(500) {
            store
                .append_batch_with(workload.events(i, i + 500), Durability::Group)
                .unwrap();
        }
        let checkpoint = store.checkpoint().unwrap();
        store.close().unwrap();

        let store = Store::open_read_only(dir.path()).unwrap();
        let inner = &store.inner;
        let open = inner.readers().snapshot().open.first().unwrap().clone();
        let persisted = inner.tree().unwrap().persisted();
        assert_eq!(open.header.first_seq, persisted);
        let base = crate::open_index::load(&*inner.config().fs, &open.path, &open.header).unwrap();
        let frontiers = base.frontiers;
        assert!(frontiers.len() > 1);
        let size = checkpoint.size;
        assert_eq!(
            root_from_frontier(inner, size, &frontiers),
            Some(checkpoint.root)
        );
        // From an earlier chunk's frontier and the leaves after it, too.
        let earlier = &frontiers[..1];
        assert!(earlier[0].size() < size);
        assert_eq!(
            root_from_frontier(inner, size, earlier),
            Some(checkpoint.root)
        );
        // None at or below the size: nothing to start from.
        assert_eq!(root_from_frontier(inner, persisted, &frontiers), None);
        assert_eq!(root_from_frontier(inner, size, &[]), None);
        // A frontier whose largest subtree (inside the sealed records)
        // differs from the level files' is not used.
        let last = frontiers.last().unwrap();
        let largest = 1u64 << (63 - last.size().leading_zeros());
        assert!(largest <= persisted, "{largest} leaves, {persisted} sealed");
        let mut subtrees = last.subtrees().to_vec();
        subtrees[0][0] ^= 1;
        let wrong = Frontier::from_parts(last.size(), subtrees).unwrap();
        assert_eq!(root_from_frontier(inner, size, &[wrong]), None);
    }
}
