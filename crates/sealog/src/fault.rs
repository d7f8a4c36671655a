//! A filesystem that fails on purpose, for testing what the engine does
//! when the disk does not do what it is told (feature `fault-injection`).
//!
//! [`FaultFs`] passes every call to the real filesystem ([`StdFs`]) except
//! those matched by a rule: the `n`-th write, sync, create or rename (of a
//! file whose path contains a given string) can fail with an I/O error, run
//! out of space, or write only part of its bytes. [`FaultFs::crash`] makes
//! every later mutating call fail, as if the process had died at that
//! point: the files are left exactly as the calls so far made them.
//!
//! A process crash keeps the page cache, so it proves nothing about
//! `fsync`. A filesystem made with [`FaultFs::with_power_loss`] also keeps,
//! for every file, its contents as of its last successful `fdatasync` or
//! `fsync` and the writes, size changes and preallocations made since;
//! and for every directory, its entries as of its last directory sync and
//! the creations, renames and removals made since. [`FaultFs::power_loss`]
//! cuts the power: every later call fails, and the disk as a machine could
//! find it on restart is written into another directory, where the store
//! is opened as after a real power loss. What survives of the unsynced
//! changes is chosen by [`Unsynced`]: nothing (the adversarial case), or a
//! seeded, reproducible choice of what a real disk could have kept —
//! per file, any subset of the 512-byte sectors written since its last
//! sync, each sector holding one of the versions it went through (a sector
//! is written atomically), and any of the sizes the file had since;
//! per directory, any prefix of its entry changes since its last sync.
//!
//! The model follows the assumptions of `docs/durability.md`: a sector is
//! written atomically, bytes never written read as zero, `fdatasync` makes
//! a file's data and the size needed to read it durable (`fsync` also the
//! rest of its metadata, which the engine never reads back, so the two
//! make the same contents durable here), and neither makes the file's
//! *name* durable: only a sync of its directory does. Files and entries
//! that exist when the filesystem is made are taken as durable.
//!
//! ```no_run
//! # use std::sync::Arc;
//! use sealog::fault::{FaultFs, Fault, Op};
//! use sealog::{Store, StoreOptions};
//!
//! let fs = Arc::new(FaultFs::new());
//! // The second fdatasync of a segment file fails with EIO.
//! fs.fail(Op::SyncData, Some(".seg"), 1, Fault::Io);
//! let options = StoreOptions { fs: fs.clone(), ..StoreOptions::default() };
//! let store = Store::open("./audit", options)?;
//! # Ok::<(), sealog::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::{LockGuard, OpenMode, StdFs, Vfs, VfsFile};
use crate::mmap::Mapped;

/// An operation a rule can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A positioned write.
    Write,
    /// `fdatasync`.
    SyncData,
    /// `fsync` of a file.
    SyncAll,
    /// `fsync` of a directory.
    SyncDir,
    /// Creating a file.
    Create,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// Truncating or extending a file.
    SetLen,
    /// Preallocating a file.
    Allocate,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 9] = [
        Op::Write,
        Op::SyncData,
        Op::SyncAll,
        Op::SyncDir,
        Op::Create,
        Op::Rename,
        Op::Remove,
        Op::SetLen,
        Op::Allocate,
    ];
}

/// What a matched operation does instead of succeeding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails with `EIO` and does nothing.
    Io,
    /// Fails with `ENOSPC` (no space left on device) and does nothing.
    NoSpace,
    /// For writes: writes the first half of the bytes, then fails with
    /// `ENOSPC`. Other operations fail with `ENOSPC`.
    ShortWrite,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Io => io::Error::from(rustix::io::Errno::IO),
            Fault::NoSpace | Fault::ShortWrite => io::Error::from(rustix::io::Errno::NOSPC),
        }
    }
}

#[derive(Clone, Debug)]
struct Rule {
    op: Op,
    path_contains: Option<String>,
    /// Matching calls to let through before failing.
    skip: u64,
    fault: Fault,
    /// Fail every matching call from then on (else only once).
    sticky: bool,
    fired: bool,
}

/// One mutating call, as [`FaultFs::start_recording`] records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub op: Op,
    /// The file or directory it acted on (for a rename, the destination).
    pub path: std::path::PathBuf,
    /// For a rename, the file renamed.
    pub from: Option<std::path::PathBuf>,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    counts: std::collections::HashMap<Op, u64>,
    crashed: bool,
    /// Mutating calls since the last [`FaultFs::start_recording`],
    /// [`FaultFs::fail_nth`] or [`FaultFs::crash_at`].
    calls: u64,
    recording: Option<Vec<Call>>,
    nth: Option<(u64, Fault)>,
    nth_fired: bool,
    crash_at: Option<u64>,
    /// Where renamed files went (old path → new path), so that calls on a
    /// file opened under a temporary name report and match its name now.
    renamed: std::collections::HashMap<std::path::PathBuf, std::path::PathBuf>,
    /// What is durable, when power losses are simulated.
    disk: Option<Disk>,
}

impl State {
    fn current_name(&self, path: &Path) -> std::path::PathBuf {
        let mut path = path.to_owned();
        for _ in 0..16 {
            match self.renamed.get(&path) {
                Some(next) => path = next.clone(),
                None => break,
            }
        }
        path
    }
}

/// A filesystem that injects failures (see the module documentation).
#[derive(Debug, Default, Clone)]
pub struct FaultFs {
    real: StdFs,
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// A filesystem that, until told otherwise, behaves like [`StdFs`].
    pub fn new() -> FaultFs {
        FaultFs::default()
    }

    /// Fails the matching call after letting `skip` matching calls through;
    /// `path_contains` restricts the rule to files whose path contains it.
    /// The call after the failing one succeeds again (see
    /// [`FaultFs::fail_always`]).
    pub fn fail(&self, op: Op, path_contains: Option<&str>, skip: u64, fault: Fault) {
        self.add(op, path_contains, skip, fault, false);
    }

    /// Like [`FaultFs::fail`], but every matching call from then on fails
    /// (a disk that stays full).
    pub fn fail_always(&self, op: Op, path_contains: Option<&str>, skip: u64, fault: Fault) {
        self.add(op, path_contains, skip, fault, true);
    }

    fn add(&self, op: Op, path_contains: Option<&str>, skip: u64, fault: Fault, sticky: bool) {
        self.state.lock().rules.push(Rule {
            op,
            path_contains: path_contains.map(str::to_owned),
            skip,
            fault,
            sticky,
            fired: false,
        });
    }

    /// Removes every rule and ends a simulated crash.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.rules.clear();
        state.crashed = false;
        state.nth = None;
        state.crash_at = None;
    }

    /// From now on every mutating call fails with `EIO`, as if the process
    /// died here: files stay as the calls so far left them.
    pub fn crash(&self) {
        self.state.lock().crashed = true;
    }

    /// Starts recording every mutating call (write, sync, create, rename,
    /// remove, truncate, allocate) with its path, and restarts the call
    /// count that [`FaultFs::fail_nth`] and [`FaultFs::crash_at`] use: a
    /// test records what an operation does, then replays it failing each
    /// call in turn.
    pub fn start_recording(&self) {
        let mut state = self.state.lock();
        state.calls = 0;
        state.recording = Some(Vec::new());
    }

    /// Stops recording and returns the calls made since
    /// [`FaultFs::start_recording`], in order.
    pub fn take_recording(&self) -> Vec<Call> {
        self.state.lock().recording.take().unwrap_or_default()
    }

    /// The `n`-th mutating call from now (counting from 0, any operation,
    /// any path) fails with `fault`; the calls after it succeed.
    pub fn fail_nth(&self, n: u64, fault: Fault) {
        let mut state = self.state.lock();
        state.calls = 0;
        state.nth = Some((n, fault));
        state.nth_fired = false;
    }

    /// Whether the failure armed by [`FaultFs::fail_nth`] happened.
    pub fn nth_fired(&self) -> bool {
        self.state.lock().nth_fired
    }

    /// The process "dies" just before the `n`-th mutating call from now
    /// (counting from 0): that call and every later one fail with `EIO`,
    /// as after [`FaultFs::crash`].
    pub fn crash_at(&self, n: u64) {
        let mut state = self.state.lock();
        state.calls = 0;
        state.crash_at = Some(n);
    }

    /// How many mutating calls were made since the count was last
    /// restarted.
    pub fn calls(&self) -> u64 {
        self.state.lock().calls
    }

    /// How many calls of `op` have been made (failed ones included).
    pub fn count(&self, op: Op) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// Whether a rule fired.
    pub fn any_fired(&self) -> bool {
        self.state.lock().rules.iter().any(|r| r.fired)
    }

    /// A filesystem like [`FaultFs::new`] that also keeps what is durable,
    /// so that [`FaultFs::power_loss`] can produce the disk a power loss
    /// would leave. It holds in memory every byte written since each
    /// file's last sync: meant for small test stores.
    pub fn with_power_loss() -> FaultFs {
        let fs = FaultFs::default();
        fs.state.lock().disk = Some(Disk::default());
        fs
    }

    /// Cuts the power: every later mutating call fails with `EIO` (as
    /// after [`FaultFs::crash`]), and the directory tree under `root` as a
    /// restarted machine could find it — synced contents and entries, plus
    /// what `unsynced` keeps of the rest — is written under `to`, which
    /// must not exist yet. Call it once no call is in flight (after the
    /// store was dropped, or while its threads are stopped by the crash).
    /// Needs a filesystem made with [`FaultFs::with_power_loss`].
    pub fn power_loss(&self, root: &Path, to: &Path, unsynced: Unsynced) -> io::Result<PowerLoss> {
        let mut state = self.state.lock();
        state.crashed = true;
        let Some(disk) = &state.disk else {
            return Err(io::Error::other(
                "power_loss needs a filesystem made with FaultFs::with_power_loss",
            ));
        };
        let mut rng = match unsynced {
            Unsynced::Lost => None,
            Unsynced::Random(seed) => Some(Rng(seed)),
        };
        let mut report = PowerLoss {
            unsynced,
            files: Vec::new(),
            dropped_entries: Vec::new(),
        };
        std::fs::create_dir(to)?;
        disk.materialize(root, to, &mut rng, &mut report)?;
        Ok(report)
    }

    /// Bytes written to the file at `path` since its last sync (0 for a
    /// file without unsynced writes, or when power losses are not
    /// simulated).
    pub fn unsynced_bytes(&self, path: &Path) -> u64 {
        let state = self.state.lock();
        let Some(disk) = &state.disk else { return 0 };
        disk.by_path
            .get(path)
            .and_then(|id| disk.nodes.get(id))
            .map_or(0, |node| {
                node.pending
                    .iter()
                    .map(|m| match m {
                        Mutation::Write { bytes, .. } => bytes.len() as u64,
                        Mutation::SetLen(_) => 0,
                    })
                    .sum()
            })
    }

    /// Decides whether this call fails; if it does not, runs `record` on
    /// the state (under the same lock, so that a crash cannot fall between
    /// the decision and what it records).
    fn check_and<T>(
        &self,
        op: Op,
        path: &Path,
        record: impl FnOnce(&mut State) -> T,
    ) -> Result<T, Fault> {
        let mut state = self.state.lock();
        match decide(&mut state, op, path) {
            Some(fault) => Err(fault),
            None => Ok(record(&mut state)),
        }
    }

    /// Whether power losses are simulated.
    fn tracking(&self) -> bool {
        self.state.lock().disk.is_some()
    }

    /// The node of an open file, when power losses are simulated.
    fn node_of(&self, path: &Path) -> Option<NodeId> {
        let mut state = self.state.lock();
        let disk = state.disk.as_mut()?;
        Some(disk.node_for(path, false))
    }
}

fn decide(state: &mut State, op: Op, path: &Path) -> Option<Fault> {
    // Index snapshots of open segments are written by the indexer thread
    // whenever it catches up, so their calls come at no fixed place in a
    // scenario: they are left out of the schedule (not counted, recorded
    // or matched by rules) and fail only once the process "crashed". Their
    // writes are still subject to power losses like any other.
    if path
        .extension()
        .is_some_and(|e| e == crate::open_index::EXT)
    {
        return state.crashed.then_some(Fault::Io);
    }
    let path = &state.current_name(path);
    *state.counts.entry(op).or_insert(0) += 1;
    let index = state.calls;
    state.calls += 1;
    if let Some(log) = &mut state.recording {
        log.push(Call {
            op,
            path: path.to_owned(),
            from: None,
        });
    }
    if state.crash_at.is_some_and(|at| index >= at) {
        state.crashed = true;
    }
    if state.crashed {
        return Some(Fault::Io);
    }
    if let Some((n, fault)) = state.nth
        && n == index
    {
        state.nth = None;
        state.nth_fired = true;
        return Some(fault);
    }
    let path = path.to_string_lossy();
    for rule in &mut state.rules {
        if rule.op != op {
            continue;
        }
        if let Some(needle) = &rule.path_contains
            && !path.contains(needle.as_str())
        {
            continue;
        }
        if rule.fired && !rule.sticky {
            continue;
        }
        if rule.skip > 0 {
            rule.skip -= 1;
            continue;
        }
        rule.fired = true;
        return Some(rule.fault);
    }
    None
}

/// What a power loss keeps of the changes made since the last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsynced {
    /// Nothing: every file as of its last sync, every directory's entries
    /// as of its last sync. The adversarial case.
    Lost,
    /// A reproducible choice, from this seed, of what a disk could have
    /// kept: for each file all, none, or a random subset of the sectors
    /// written since its last sync (each holding one of the versions it
    /// went through) and one of the sizes the file had since; for each
    /// directory a prefix of its entry changes since its last sync.
    Random(u64),
}

/// What [`FaultFs::power_loss`] left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PowerLoss {
    /// The choice it was made with.
    pub unsynced: Unsynced,
    /// Files with unsynced changes, and what became of them.
    pub files: Vec<String>,
    /// Directory entry changes that did not survive (`+name` created,
    /// `-name` removed, `a -> b` renamed).
    pub dropped_entries: Vec<String>,
}

impl fmt::Display for PowerLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "power loss ({:?}):", self.unsynced)?;
        for file in &self.files {
            writeln!(f, "  file {file}")?;
        }
        for entry in &self.dropped_entries {
            writeln!(f, "  entry change lost: {entry}")?;
        }
        Ok(())
    }
}

/// The sector a disk writes atomically.
pub const SECTOR: u64 = 512;

type NodeId = u64;

/// The durable state of the files and directories the filesystem touched.
#[derive(Debug, Default)]
struct Disk {
    next_id: NodeId,
    /// Live path → node.
    by_path: HashMap<PathBuf, NodeId>,
    nodes: HashMap<NodeId, Node>,
}

/// A file or directory (an inode).
#[derive(Debug, Default)]
struct Node {
    /// Where it is now; `None` once removed or replaced by a rename.
    path: Option<PathBuf>,
    dir: bool,
    /// Files: the contents as of the last sync, if anything changed since
    /// (`None`: the live contents are durable).
    durable: Option<Vec<u8>>,
    /// Files: the changes since the last sync, in order.
    pending: Vec<Mutation>,
    /// Directories: the entries as of the last sync, if any changed since
    /// (`None`: the live entries are durable).
    entries: Option<BTreeMap<String, NodeId>>,
    /// Directories: the entry changes since the last sync, in order.
    changes: Vec<EntryChange>,
}

#[derive(Clone, Debug)]
enum Mutation {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug)]
enum EntryChange {
    Add(String, NodeId),
    Remove(String),
    Rename(String, String, NodeId),
}

impl EntryChange {
    fn apply(&self, entries: &mut BTreeMap<String, NodeId>) {
        match self {
            EntryChange::Add(name, id) => {
                entries.insert(name.clone(), *id);
            }
            EntryChange::Remove(name) => {
                entries.remove(name);
            }
            EntryChange::Rename(from, to, id) => {
                entries.remove(from);
                entries.insert(to.clone(), *id);
            }
        }
    }
}

impl fmt::Display for EntryChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryChange::Add(name, _) => write!(f, "+{name}"),
            EntryChange::Remove(name) => write!(f, "-{name}"),
            EntryChange::Rename(from, to, _) => write!(f, "{from} -> {to}"),
        }
    }
}

/// splitmix64: small, seedable, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Applies `pending` to `durable` completely: the live contents.
fn apply_all(durable: &[u8], pending: &[Mutation]) -> Vec<u8> {
    image(durable, pending, |_, n| n, durable.len() as u64, false).0
}

/// The contents a file can have after a power loss: `durable` with, for
/// every sector, the first `keep(sector, n)` of the `n` changes that
/// touched it, and `len` bytes long (or the live length with
/// `live_len`). Returns the contents and the sectors that kept every
/// change.
fn image(
    durable: &[u8],
    pending: &[Mutation],
    mut keep: impl FnMut(u64, u64) -> u64,
    len: u64,
    live_len: bool,
) -> (Vec<u8>, u64) {
    // The ranges each change covers (a shrink zeroes what it cuts).
    let mut ranges = Vec::with_capacity(pending.len());
    let mut cur = durable.len() as u64;
    let mut max = cur;
    for m in pending {
        match m {
            Mutation::Write { offset, bytes } => {
                let end = offset + bytes.len() as u64;
                ranges.push((*offset, end));
                cur = cur.max(end);
            }
            Mutation::SetLen(n) => {
                ranges.push(if *n < cur { (*n, cur) } else { (0, 0) });
                cur = *n;
            }
        }
        max = max.max(cur);
    }
    let mut touches: BTreeMap<u64, u64> = BTreeMap::new();
    for &(from, to) in &ranges {
        if from < to {
            for s in from / SECTOR..=(to - 1) / SECTOR {
                *touches.entry(s).or_insert(0) += 1;
            }
        }
    }
    let cutoffs: BTreeMap<u64, u64> = touches.iter().map(|(&s, &n)| (s, keep(s, n))).collect();
    let whole = touches
        .iter()
        .filter(|(s, n)| cutoffs.get(s) == Some(n))
        .count() as u64;
    let mut buf = durable.to_vec();
    buf.resize(usize::try_from(max).unwrap_or(usize::MAX), 0);
    let mut ranks: BTreeMap<u64, u64> = BTreeMap::new();
    for (m, &(from, to)) in pending.iter().zip(&ranges) {
        if from >= to {
            continue;
        }
        for s in from / SECTOR..=(to - 1) / SECTOR {
            let rank = ranks.entry(s).or_insert(0);
            let kept = *rank < cutoffs.get(&s).copied().unwrap_or(0);
            *rank += 1;
            if !kept {
                continue;
            }
            let lo = from.max(s * SECTOR);
            let hi = to.min((s + 1) * SECTOR);
            let (lo, hi) = (lo as usize, hi as usize);
            match m {
                Mutation::Write { offset, bytes } => {
                    let at = *offset as usize;
                    if let (Some(dst), Some(src)) =
                        (buf.get_mut(lo..hi), bytes.get(lo - at..hi - at))
                    {
                        dst.copy_from_slice(src);
                    }
                }
                Mutation::SetLen(_) => {
                    if let Some(dst) = buf.get_mut(lo..hi) {
                        dst.fill(0);
                    }
                }
            }
        }
    }
    let len = if live_len { cur } else { len };
    buf.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
    (buf, whole)
}

/// The sizes a file had: as of its last sync, then after each change.
fn sizes(durable: u64, pending: &[Mutation]) -> Vec<u64> {
    let mut cur = durable;
    let mut out = vec![cur];
    for m in pending {
        cur = match m {
            Mutation::Write { offset, bytes } => cur.max(offset + bytes.len() as u64),
            Mutation::SetLen(n) => *n,
        };
        out.push(cur);
    }
    out
}

impl Disk {
    fn new_node(&mut self, path: &Path, dir: bool) -> NodeId {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(
            id,
            Node {
                path: Some(path.to_owned()),
                dir,
                ..Node::default()
            },
        );
        self.by_path.insert(path.to_owned(), id);
        id
    }

    /// The node at a live path, created (as durable) if not yet known.
    fn node_for(&mut self, path: &Path, dir: bool) -> NodeId {
        match self.by_path.get(path) {
            Some(&id) => id,
            None => self.new_node(path, dir),
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.entry(id).or_default()
    }

    /// Before the first entry change since a directory's last sync:
    /// remembers its entries.
    fn before_entry_change(&mut self, dir: &Path) -> NodeId {
        let id = self.node_for(dir, true);
        if self.node(id).entries.is_none() {
            let mut entries = BTreeMap::new();
            if let Ok(list) = std::fs::read_dir(dir) {
                for entry in list.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    let child = self.node_for(&dir.join(&name), is_dir);
                    entries.insert(name, child);
                }
            }
            self.node(id).entries = Some(entries);
        }
        id
    }

    fn change_entries(&mut self, dir: &Path, change: EntryChange) {
        let id = self.before_entry_change(dir);
        self.node(id).changes.push(change);
    }

    /// Before the first change since a file's last sync: remembers its
    /// contents (read from the open file).
    fn before_file_change(&mut self, id: NodeId, file: &dyn VfsFile) {
        let node = self.node(id);
        if node.durable.is_none() {
            let len = file.size().unwrap_or(0);
            let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
            if file.read_exact_at(&mut bytes, 0).is_err() {
                bytes.clear();
            }
            node.durable = Some(bytes);
        }
    }

    /// Before a path goes away (removed, or replaced by a rename): keeps
    /// its durable contents, which the old entry may still point to.
    fn before_unlink(&mut self, path: &Path) {
        let Some(id) = self.by_path.remove(path) else {
            return;
        };
        let node = self.node(id);
        if !node.dir && node.durable.is_none() {
            node.durable = Some(std::fs::read(path).unwrap_or_default());
        }
        node.path = None;
    }

    fn record(&mut self, id: NodeId, file: &dyn VfsFile, mutation: Mutation) {
        self.before_file_change(id, file);
        self.node(id).pending.push(mutation);
    }

    /// A file sync covering the first `upto` pending changes returned.
    fn synced_file(&mut self, id: NodeId, upto: usize) {
        let node = self.node(id);
        let upto = upto.min(node.pending.len());
        if upto == node.pending.len() && node.path.is_some() {
            node.durable = None;
            node.pending.clear();
            return;
        }
        if let Some(durable) = &node.durable {
            let synced: Vec<Mutation> = node.pending.drain(..upto).collect();
            node.durable = Some(apply_all(durable, &synced));
        }
    }

    /// A directory sync covering the first `upto` entry changes returned.
    fn synced_dir(&mut self, id: NodeId, upto: usize) {
        let node = self.node(id);
        let upto = upto.min(node.changes.len());
        if upto == node.changes.len() {
            node.entries = None;
            node.changes.clear();
            return;
        }
        let synced: Vec<EntryChange> = node.changes.drain(..upto).collect();
        if let Some(entries) = &mut node.entries {
            for change in &synced {
                change.apply(entries);
            }
        }
    }

    /// Writes the power-lost image of directory `dir` (a live path) into
    /// `to`.
    fn materialize(
        &self,
        dir: &Path,
        to: &Path,
        rng: &mut Option<Rng>,
        report: &mut PowerLoss,
    ) -> io::Result<()> {
        let entries = self.entries_after(dir, rng, report)?;
        for (name, child) in entries {
            let dest = to.join(&name);
            let (path, node) = match child {
                Child::Node(id) => {
                    let node = self.nodes.get(&id);
                    (node.and_then(|n| n.path.clone()), node)
                }
                Child::Live(path) => (Some(path), None),
            };
            let is_dir = match node {
                Some(n) => n.dir,
                None => path.as_deref().is_some_and(Path::is_dir),
            };
            if is_dir {
                std::fs::create_dir(&dest)?;
                if let Some(path) = &path {
                    self.materialize(path, &dest, rng, report)?;
                }
                continue;
            }
            let bytes = match node {
                Some(n) => match &n.durable {
                    Some(durable) => self.file_after(n, durable, rng, report),
                    None => std::fs::read(path.as_deref().unwrap_or(Path::new("")))?,
                },
                None => std::fs::read(path.as_deref().unwrap_or(Path::new("")))?,
            };
            std::fs::write(&dest, bytes)?;
        }
        Ok(())
    }

    /// The entries of directory `dir` after the power loss.
    fn entries_after(
        &self,
        dir: &Path,
        rng: &mut Option<Rng>,
        report: &mut PowerLoss,
    ) -> io::Result<BTreeMap<String, Child>> {
        let node = self.by_path.get(dir).and_then(|id| self.nodes.get(id));
        if let Some(node) = node
            && let Some(durable) = &node.entries
        {
            let kept = match rng {
                None => 0,
                Some(rng) => match rng.upto(2) {
                    0 => 0,
                    1 => node.changes.len() as u64,
                    _ => rng.upto(node.changes.len() as u64),
                },
            } as usize;
            let mut entries = durable.clone();
            for change in node.changes.iter().take(kept) {
                change.apply(&mut entries);
            }
            for change in node.changes.iter().skip(kept) {
                report
                    .dropped_entries
                    .push(format!("{}: {change}", dir.display()));
            }
            return Ok(entries
                .into_iter()
                .map(|(name, id)| (name, Child::Node(id)))
                .collect());
        }
        let mut entries = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = dir.join(&name);
            let child = match self.by_path.get(&path) {
                Some(&id) => Child::Node(id),
                None => Child::Live(path),
            };
            entries.insert(name, child);
        }
        Ok(entries)
    }

    /// The contents of a file with unsynced changes after the power loss.
    fn file_after(
        &self,
        node: &Node,
        durable: &[u8],
        rng: &mut Option<Rng>,
        report: &mut PowerLoss,
    ) -> Vec<u8> {
        if node.pending.is_empty() {
            return durable.to_vec();
        }
        let sizes = sizes(durable.len() as u64, &node.pending);
        let name = node
            .path
            .as_deref()
            .map_or_else(|| "(removed)".to_owned(), |p| p.display().to_string());
        let (bytes, whole, how) = match rng {
            None => (durable.to_vec(), 0, "every unsynced change lost"),
            Some(rng) => match rng.upto(3) {
                0 => (durable.to_vec(), 0, "every unsynced change lost"),
                1 => {
                    let (b, w) = image(durable, &node.pending, |_, n| n, 0, true);
                    (b, w, "every unsynced change kept")
                }
                _ => {
                    let len = sizes
                        .get(rng.upto(sizes.len() as u64 - 1) as usize)
                        .copied()
                        .unwrap_or(0);
                    let (b, w) = image(durable, &node.pending, |_, n| rng.upto(n), len, false);
                    (b, w, "torn")
                }
            },
        };
        report.files.push(format!(
            "{name}: {how}: {} changes since its last sync, {whole} sectors fully kept, {} \
             bytes long (synced: {}, live: {})",
            node.pending.len(),
            bytes.len(),
            durable.len(),
            sizes.last().copied().unwrap_or(0),
        ));
        bytes
    }
}

enum Child {
    Node(NodeId),
    /// Not touched by the filesystem: durable as it is.
    Live(PathBuf),
}

#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    path: std::path::PathBuf,
    file: Arc<dyn VfsFile>,
    /// The file's node, when power losses are simulated.
    node: Option<NodeId>,
}

impl FaultFile {
    /// A write of `bytes` at `offset`, as the disk model sees it.
    fn record_write(&self, state: &mut State, offset: u64, bytes: Vec<u8>) {
        if let (Some(disk), Some(id)) = (&mut state.disk, self.node) {
            disk.record(id, &*self.file, Mutation::Write { offset, bytes });
        }
    }

    /// A sync: fails if the power was cut while it ran, else makes the
    /// changes made before it durable.
    fn sync(&self, op: Op, run: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let upto = self
            .fs
            .check_and(op, &self.path, |state| {
                let disk = state.disk.as_mut()?;
                let id = self.node?;
                Some(disk.node(id).pending.len())
            })
            .map_err(Fault::error)?;
        run()?;
        let mut state = self.fs.state.lock();
        if let Some(upto) = upto {
            if state.crashed {
                return Err(Fault::Io.error());
            }
            if let (Some(disk), Some(id)) = (&mut state.disk, self.node) {
                disk.synced_file(id, upto);
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct NoLock;
impl LockGuard for NoLock {}

impl Vfs for FaultFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if !self.tracking() {
            return self.real.create_dir_all(path);
        }
        let mut state = self.state.lock();
        let mut missing = Vec::new();
        let mut at = path;
        while !at.exists() {
            missing.push(at.to_owned());
            match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => break,
            }
        }
        for dir in missing.iter().rev() {
            if let (Some(disk), Some(parent)) = (&mut state.disk, dir.parent()) {
                disk.before_entry_change(parent);
            }
            std::fs::create_dir(dir)?;
            if let Some(disk) = &mut state.disk {
                let id = disk.new_node(dir, true);
                disk.node(id).entries = Some(BTreeMap::new());
                if let Some(parent) = dir.parent() {
                    disk.change_entries(parent, EntryChange::Add(name_of(dir), id));
                }
            }
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.real.read_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        if mode == OpenMode::CreateNew {
            let mut state = self.state.lock();
            if let Some(fault) = decide(&mut state, Op::Create, path) {
                return Err(fault.error());
            }
            if let (Some(disk), Some(parent)) = (&mut state.disk, path.parent()) {
                disk.before_entry_change(parent);
            }
            let file = self.real.open(path, mode)?;
            let node = state.disk.as_mut().map(|disk| {
                disk.before_unlink(path);
                let id = disk.new_node(path, false);
                disk.node(id).durable = Some(Vec::new());
                if let Some(parent) = path.parent() {
                    disk.change_entries(parent, EntryChange::Add(name_of(path), id));
                }
                id
            });
            return Ok(Arc::new(FaultFile {
                fs: self.clone(),
                path: path.to_owned(),
                file,
                node,
            }));
        }
        let file = self.real.open(path, mode)?;
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            path: path.to_owned(),
            file,
            node: self.node_of(path),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let fault = decide(&mut state, Op::Rename, to);
        if let Some(log) = &mut state.recording
            && let Some(last) = log.last_mut()
        {
            last.from = Some(from.to_owned());
        }
        if let Some(fault) = fault {
            return Err(fault.error());
        }
        if let Some(disk) = &mut state.disk {
            // The entries as they were, before the rename changes them.
            let id = disk.node_for(from, false);
            for dir in [from.parent(), to.parent()].into_iter().flatten() {
                disk.before_entry_change(dir);
            }
            disk.before_unlink(to);
            self.real.rename(from, to)?;
            disk.by_path.remove(from);
            disk.by_path.insert(to.to_owned(), id);
            disk.node(id).path = Some(to.to_owned());
            match (from.parent(), to.parent()) {
                (Some(a), Some(b)) if a == b => {
                    disk.change_entries(a, EntryChange::Rename(name_of(from), name_of(to), id));
                }
                (a, b) => {
                    if let Some(a) = a {
                        disk.change_entries(a, EntryChange::Remove(name_of(from)));
                    }
                    if let Some(b) = b {
                        disk.change_entries(b, EntryChange::Add(name_of(to), id));
                    }
                }
            }
        } else {
            self.real.rename(from, to)?;
        }
        state.renamed.remove(to);
        state.renamed.insert(from.to_owned(), to.to_owned());
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if let Some(fault) = decide(&mut state, Op::Remove, path) {
            return Err(fault.error());
        }
        if let Some(disk) = &mut state.disk {
            if let Some(parent) = path.parent() {
                disk.before_entry_change(parent);
            }
            disk.before_unlink(path);
            self.real.remove_file(path)?;
            if let Some(parent) = path.parent() {
                disk.change_entries(parent, EntryChange::Remove(name_of(path)));
            }
            return Ok(());
        }
        self.real.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let upto = self
            .check_and(Op::SyncDir, path, |state| {
                let disk = state.disk.as_mut()?;
                let id = disk.node_for(path, true);
                Some((id, disk.node(id).changes.len()))
            })
            .map_err(Fault::error)?;
        self.real.sync_dir(path)?;
        if let Some((id, upto)) = upto {
            let mut state = self.state.lock();
            if state.crashed {
                return Err(Fault::Io.error());
            }
            if let Some(disk) = &mut state.disk {
                disk.synced_dir(id, upto);
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.real.exists(path)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        // Tests reopen a store in the same process after a simulated crash,
        // while the crashed handle may still be alive: no locking.
        let _ = path;
        Ok(Box::new(NoLock))
    }
}

impl VfsFile for FaultFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_vectored_at(&[buf], offset)
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        // The lock is held through the write when power losses are
        // simulated, so that the model and the file never disagree.
        let mut guard = Some(self.fs.state.lock());
        let (fault, tracking) = match guard.as_mut() {
            Some(state) => (decide(state, Op::Write, &self.path), state.disk.is_some()),
            None => (None, false),
        };
        if !tracking {
            guard = None;
        }
        match fault {
            None => {
                if let Some(state) = guard.as_mut() {
                    self.record_write(state, offset, bufs.concat());
                }
                if let [one] = bufs {
                    self.file.write_all_at(one, offset)
                } else {
                    self.file.write_all_vectored_at(bufs, offset)
                }
            }
            Some(Fault::ShortWrite) => {
                let joined: Vec<u8> = bufs.concat();
                let half = joined.get(..joined.len() / 2).unwrap_or_default();
                if let Some(state) = guard.as_mut() {
                    self.record_write(state, offset, half.to_vec());
                }
                self.file.write_all_at(half, offset)?;
                Err(Fault::ShortWrite.error())
            }
            Some(fault) => Err(fault.error()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync(Op::SyncData, || self.file.sync_data())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync(Op::SyncAll, || self.file.sync_all())
    }

    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        if let Some(fault) = decide(&mut state, Op::SetLen, &self.path) {
            return Err(fault.error());
        }
        if let (Some(disk), Some(id)) = (&mut state.disk, self.node) {
            disk.record(id, &*self.file, Mutation::SetLen(len));
        }
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        if let Some(fault) = decide(&mut state, Op::Allocate, &self.path) {
            return Err(fault.error());
        }
        if let (Some(disk), Some(id)) = (&mut state.disk, self.node) {
            // Allocating extends the file to `len` (blocks read as zeros).
            let now = self.file.size()?;
            if len > now {
                disk.record(id, &*self.file, Mutation::SetLen(len));
            }
        }
        self.file.allocate(len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        // A write of zeros, as far as faults and power losses go: until a
        // sync, a power loss may bring the old bytes back.
        let mut state = self.fs.state.lock();
        if let Some(fault) = decide(&mut state, Op::Write, &self.path) {
            return Err(fault.error());
        }
        let zeros = usize::try_from(len).map_err(|_| io::Error::other("hole too large"))?;
        self.file.punch_hole(offset, len)?;
        self.record_write(&mut state, offset, vec![0; zeros]);
        Ok(())
    }

    fn map(&self) -> io::Result<Mapped> {
        self.file.map()
    }
}
