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

use std::io;
use std::path::Path;
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

    /// Decides whether this call fails.
    fn check(&self, op: Op, path: &Path) -> Option<Fault> {
        let mut state = self.state.lock();
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
}

#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    path: std::path::PathBuf,
    file: Arc<dyn VfsFile>,
}

#[derive(Debug)]
struct NoLock;
impl LockGuard for NoLock {}

impl Vfs for FaultFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.real.create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.real.read_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        if mode == OpenMode::CreateNew
            && let Some(fault) = self.check(Op::Create, path)
        {
            return Err(fault.error());
        }
        Ok(Arc::new(FaultFile {
            fs: self.clone(),
            path: path.to_owned(),
            file: self.real.open(path, mode)?,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let fault = self.check(Op::Rename, to);
        if let Some(log) = &mut self.state.lock().recording
            && let Some(last) = log.last_mut()
        {
            last.from = Some(from.to_owned());
        }
        if let Some(fault) = fault {
            return Err(fault.error());
        }
        self.real.rename(from, to)?;
        let mut state = self.state.lock();
        state.renamed.remove(to);
        state.renamed.insert(from.to_owned(), to.to_owned());
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some(fault) = self.check(Op::Remove, path) {
            return Err(fault.error());
        }
        self.real.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if let Some(fault) = self.check(Op::SyncDir, path) {
            return Err(fault.error());
        }
        self.real.sync_dir(path)
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
        match self.fs.check(Op::Write, &self.path) {
            None => self.file.write_all_at(buf, offset),
            Some(Fault::ShortWrite) => {
                let half = buf.get(..buf.len() / 2).unwrap_or_default();
                self.file.write_all_at(half, offset)?;
                Err(Fault::ShortWrite.error())
            }
            Some(fault) => Err(fault.error()),
        }
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        match self.fs.check(Op::Write, &self.path) {
            None => self.file.write_all_vectored_at(bufs, offset),
            Some(Fault::ShortWrite) => {
                let joined: Vec<u8> = bufs.concat();
                let half = joined.get(..joined.len() / 2).unwrap_or_default();
                self.file.write_all_at(half, offset)?;
                Err(Fault::ShortWrite.error())
            }
            Some(fault) => Err(fault.error()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        if let Some(fault) = self.fs.check(Op::SyncData, &self.path) {
            return Err(fault.error());
        }
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        if let Some(fault) = self.fs.check(Op::SyncAll, &self.path) {
            return Err(fault.error());
        }
        self.file.sync_all()
    }

    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if let Some(fault) = self.fs.check(Op::SetLen, &self.path) {
            return Err(fault.error());
        }
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if let Some(fault) = self.fs.check(Op::Allocate, &self.path) {
            return Err(fault.error());
        }
        self.file.allocate(len)
    }

    fn map(&self) -> io::Result<Mapped> {
        self.file.map()
    }
}
