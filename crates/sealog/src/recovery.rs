//! Opening a store: checking what is on disk and recovering from a crash.
//!
//! Sealed segments are checked cheaply (header and footer checksums, seq and
//! chain continuity between them, the leaf file's count, the newest
//! checkpoint's size and root); their records are only read by
//! verification. Only the segments without a footer — the active one, and
//! one whose seal was interrupted — are scanned frame by frame, so opening
//! takes the same time however large the store is. Both opens, for writing
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

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealog_format::segment::{
    END_MARKER_LEN, FOOTER_LEN, HEADER_LEN, Manifest, SegmentFooter, SegmentHeader,
};
use sealog_format::{Actor, Event, Hash, Outcome, Resource, Timestamp};

use crate::checkpoint::CheckpointLog;
use crate::damage::{Damage, DamageLog, KnownAbsent, OnDamage};
use crate::error::{Corruption, CorruptionKind, Error, Location, Result, hex};
use crate::fs::{self, LockGuard, OpenMode, Vfs, VfsFile};
use crate::layout;
use crate::options::{Preallocation, StoreOptions};
use crate::sealer::Sealing;
use crate::segment::{FrameWalker, OpenData, OpenSegment, SealedSegment, Tail, classify_tail};
use crate::sequencer::{Limits, Sequencer, Start};
use crate::store::{Config, Inner, Parts, View};
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

/// What the checks of an open found, and what to do about it: a store
/// opened for writing, or read-only without [`OnDamage::ReadAround`],
/// refuses at the first problem; one reading around damage notes it and
/// goes on.
struct Findings {
    read_around: bool,
    damage: Vec<Damage>,
}

impl Findings {
    /// Handles a problem that makes `first_seq..end_seq` unreadable.
    fn found(&mut self, e: Error, first_seq: u64, end_seq: Option<u64>) -> Result<()> {
        match e {
            Error::Corruption(c) if self.read_around => {
                tracing::info!(corruption = %c, "reading around damage");
                self.damage.push(Damage::new(*c, first_seq, end_seq));
                Ok(())
            }
            other => Err(other),
        }
    }
}

/// Where the segment checked next must start: the continuity check's
/// state as it walks the segments in log order.
struct Links {
    /// The number, first seq and chain value the next segment must have;
    /// `None` after damage, when the next segment present starts a new run
    /// (its link to what came before cannot be checked).
    expect: Option<(u64, u64, Hash)>,
    /// Every seq below this is either in a segment taken or reported as
    /// damage.
    covered: u64,
    /// The segment number after the last segment taken or skipped.
    next_no: u64,
    last_recorded: Option<i64>,
}

impl Links {
    fn new(genesis: Hash) -> Links {
        Links {
            expect: Some((0, 0, genesis)),
            covered: 0,
            next_no: 0,
            last_recorded: None,
        }
    }

    /// Checks that `f` follows what came before. Returns false if `f` must
    /// be skipped (reading around damage only; otherwise the problem is
    /// returned). A gap before `f` is reported, and `f` is taken.
    fn accept(
        &mut self,
        f: &Found,
        next_first_seq: Option<u64>,
        absent: &KnownAbsent,
        findings: &mut Findings,
    ) -> Result<bool> {
        let h = &f.header;
        let own_end = f.footer.map(|footer| footer.end_seq()).or(next_first_seq);
        match self.expect {
            Some((no, seq, chain)) => match check_link(f, no, seq, &chain) {
                Ok(()) => Ok(true),
                Err(Error::Corruption(c))
                    if matches!(c.kind, CorruptionKind::MissingSegment { .. }) =>
                {
                    if !absent.covers(no..h.segment_no) {
                        findings.found(Error::Corruption(c), seq, Some(h.first_seq))?;
                    }
                    // Known absent (archived, then pruned) or reported: the
                    // log goes on at `f`, whose link to the records before
                    // the gap cannot be checked here.
                    Ok(true)
                }
                Err(e) => {
                    findings.found(e, h.first_seq.max(self.covered), own_end)?;
                    self.skipped(f, own_end);
                    Ok(false)
                }
            },
            None => {
                if h.first_seq < self.covered || h.segment_no < self.next_no {
                    let e = corruption(
                        Location::file(&f.name).at(0),
                        CorruptionKind::Layout(format!(
                            "segment number {} starting at seq {} overlaps what comes before \
                             it (segments up to {} and seqs up to {})",
                            h.segment_no,
                            h.first_seq,
                            self.next_no.saturating_sub(1),
                            self.covered.saturating_sub(1)
                        )),
                    );
                    findings.found(e, h.first_seq.max(self.covered), own_end)?;
                    self.skipped(f, own_end);
                    return Ok(false);
                }
                if h.first_seq > self.covered && !absent.covers(self.next_no..h.segment_no) {
                    let e = corruption(
                        Location::file(layout::segment_name(self.covered)),
                        CorruptionKind::MissingSegment {
                            expected_segment_no: self.next_no,
                            expected_first_seq: self.covered,
                            next_segment_no: h.segment_no,
                            next_first_seq: h.first_seq,
                        },
                    );
                    findings.found(e, self.covered, Some(h.first_seq))?;
                }
                Ok(true)
            }
        }
    }

    fn skipped(&mut self, f: &Found, end: Option<u64>) {
        self.expect = None;
        self.covered = self.covered.max(end.unwrap_or(f.header.first_seq));
        self.next_no = self.next_no.max(f.header.segment_no + 1);
    }

    /// `f` was taken whole, ending with `footer`.
    fn sealed(&mut self, f: &Found, footer: &SegmentFooter) {
        self.expect = Some((f.header.segment_no + 1, footer.end_seq(), footer.chain_head));
        self.covered = footer.end_seq();
        self.next_no = f.header.segment_no + 1;
        self.last_recorded = Some(footer.max_recorded_at.as_nanos());
    }

    /// The unsealed segment `scan` was taken: its committed records.
    fn scanned(&mut self, scan: &ScanResult) {
        let h = &scan.found.header;
        let end = h.first_seq + scan.committed as u64;
        let chain = match scan
            .committed
            .checked_sub(1)
            .and_then(|i| scan.records.get(i))
        {
            Some(last) => {
                self.last_recorded = Some(last.recorded_at.as_nanos());
                last.chain
            }
            None => h.chain_in,
        };
        self.expect = Some((h.segment_no + 1, end, chain));
        self.covered = end;
        self.next_no = h.segment_no + 1;
    }

    /// Damage ends the records of a segment at `readable_end`; what follows
    /// up to `end` was reported.
    fn cut(&mut self, f: &Found, readable_end: u64, end: Option<u64>, last_recorded: Option<i64>) {
        self.expect = None;
        self.covered = end.unwrap_or(readable_end).max(readable_end);
        self.next_no = f.header.segment_no + 1;
        if last_recorded.is_some() {
            self.last_recorded = last_recorded;
        }
    }

    /// The seq after the last record taken, or reported: where the log
    /// ends.
    fn end(&self) -> u64 {
        self.expect.map_or(self.covered, |(_, seq, _)| seq)
    }

    /// The number, first seq and chain value of the segment that would
    /// follow. After damage at the end of the log (reading around it) the
    /// chain value there is unknown: the genesis value stands in, and only
    /// a read-only store, which starts no segment, can be in that state.
    fn next_segment(&self, manifest: &Manifest) -> (u64, u64, Hash) {
        self.expect
            .unwrap_or((self.next_no, self.covered, manifest.genesis()))
    }
}

/// A segment taken as sealed: a sealed file, or (reading around damage) a
/// segment cut or damaged before sealed ones, with a footer made from the
/// records that could be read and their frame offsets.
struct TakenSealed {
    found: Found,
    footer: SegmentFooter,
    offsets: Option<Vec<u32>>,
}

/// The number of leaf hashes in `tree/leaves`, if the file exists.
pub(crate) fn leaf_count(fs: &dyn Vfs, tree_dir: &Path) -> Result<Option<u64>> {
    let path = tree_dir.join(layout::LEAVES);
    if !fs.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
        return Ok(None);
    }
    let file = fs
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.size().map_err(|e| Error::io("stat", &path, e))?;
    Ok(Some(len / crate::tree::LEAF_LEN))
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
    });
    let view = opening.take_segments(log.sealed, log.scans, tree.as_ref(), &index_env)?;
    let view = opening.start_active(view, &log.links, &disk.manifest)?;
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
        && let Err(e) = check_checkpoint_root(&inner, checkpoint)
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

/// What an open carries from one step to the next.
struct Opening {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    options: StoreOptions,
    read_only: bool,
    findings: Findings,
    report: RecoveryReport,
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
        let absent = KnownAbsent::load(fs, &self.dir);
        let mut found = Vec::with_capacity(files.len());
        for (i, (first_seq, file_name)) in files.iter().enumerate() {
            match read_found(
                fs,
                &self.dir,
                file_name,
                *first_seq,
                &manifest,
                self.read_only,
            ) {
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
        let (taken, stop_at, last_recorded) = take_readable(f, log.links.last_recorded)?;
        let readable_end = taken.footer.end_seq().max(taken.found.header.first_seq);
        let location = Location::file(&taken.found.name)
            .at(stop_at)
            .seq(readable_end);
        self.findings.found(
            corruption(location, CorruptionKind::UnsealedInMiddle),
            readable_end,
            next_first_seq,
        )?;
        log.links
            .cut(&taken.found, readable_end, next_first_seq, last_recorded);
        if taken.footer.record_count > 0 {
            log.sealed.push(taken);
        }
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
            let mut scan = scan_unsealed(f, log.links.last_recorded)?;
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
        let readable_end = scan.found.header.first_seq + scan.committed as u64;
        self.findings
            .found(corruption(location, kind), readable_end, next_first_seq)?;
        let last_recorded = scan
            .committed
            .checked_sub(1)
            .and_then(|i| scan.records.get(i))
            .map(|r| r.recorded_at.as_nanos());
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
        let sealing = first_scan.map_or(0, |s| s.committed as u64);
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
            tree.reconcile(sealed_total)?;
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
        tree: Option<&Tree>,
        index_env: &Arc<crate::sidecar::IndexEnv>,
    ) -> Result<View> {
        let mut view = View::default();
        for taken in sealed {
            let f = taken.found;
            let map = f.file.map().map_err(|e| Error::io("map", &f.path, e))?;
            view.sealed.push(Arc::new(SealedSegment::new(
                f.header,
                taken.footer,
                f.name,
                map,
                taken.offsets,
                index_env.clone(),
            )));
        }
        let scan_count = scans.len();
        for (i, scan) in scans.into_iter().enumerate() {
            let is_last = i + 1 == scan_count;
            if !self.read_only {
                truncate_tail(&*self.fs, &self.dir, &self.options, &scan, &mut self.report)?;
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
fn check_checkpoint_root(
    inner: &Inner,
    checkpoint: &crate::checkpoint::SignedCheckpoint,
) -> Result<()> {
    let size = checkpoint.size;
    if size == 0 || inner.tree().is_none() || size > inner.readers().snapshot().len() {
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

/// Takes what can be read of a segment cut or damaged before sealed ones
/// (reading around damage only): its readable frames, as a sealed segment
/// with a footer made from them. Returns it, the byte offset where reading
/// stopped, and the recorded time of its last readable record.
fn take_readable(f: Found, last_recorded: Option<i64>) -> Result<(TakenSealed, u64, Option<i64>)> {
    let scan = scan_unsealed(f, last_recorded)?;
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
    let footer = data.footer(&scan.found.header, Timestamp::from_nanos(0));
    let last = data.last_recorded_at.map(Timestamp::as_nanos);
    let offsets = data.offsets;
    Ok((
        TakenSealed {
            found: scan.found,
            footer,
            offsets: Some(offsets),
        },
        scan.stop_at,
        last,
    ))
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
        if h.segment_no > expected_no && h.first_seq > expected_seq {
            // Named after the first missing file, which is what to restore.
            return Err(corruption(
                Location::file(layout::segment_name(expected_seq)),
                CorruptionKind::MissingSegment {
                    expected_segment_no: expected_no,
                    expected_first_seq: expected_seq,
                    next_segment_no: h.segment_no,
                    next_first_seq: h.first_seq,
                },
            ));
        }
        let kind = {
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
