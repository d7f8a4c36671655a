//! The idempotency journal (`idempotency.log`, specified in
//! docs/format.md): its lines, loading it, appending to it and compacting
//! it. Every file operation goes through the store's [`Vfs`], so the
//! fault-injecting filesystem of the tests reaches it as it reaches the
//! store's own files.
//!
//! Appending a line writes it at the end of the last whole line and syncs
//! it (`fdatasync`) before the batch is acknowledged. Lines appended while
//! a write and sync is under way wait for it, then go together in the
//! next one (group commit: one `fdatasync` for all of them, not one each).
//! After a failed write or sync the file is reopened and cut back to the
//! last synced line before the next append: what a failed `fdatasync`
//! left in the page cache is never relied upon, and every line of the
//! group that failed is refused.
//!
//! Compaction runs in the background ([`Journal::compact`]): it copies
//! the live keys to `idempotency.log.tmp` without the appenders' lock,
//! then takes it only to add the lines appended meanwhile, sync, rename
//! and sync the directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};
use sealog::{OpenMode, Receipt, Store, Vfs, VfsFile};
use serde::{Deserialize, Serialize};

use super::Key;

/// Longest journal line read; longer ones are damage.
const MAX_LINE: u64 = 4096;

const JOURNAL_VERSION: u32 = 1;

/// Lines beyond the keys held (twice over) that a journal may hold
/// before it is compacted.
pub(super) const SLACK_LINES: usize = 4096;

/// One line of the journal: a completed batch's key and where its records
/// are, enough to rebuild and check its receipts from the store.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Line {
    v: u32,
    principal: String,
    pub(super) key: String,
    /// SHA-256 of the framing byte and the body, hex.
    pub(super) fingerprint: String,
    first_seq: u64,
    pub(super) count: u64,
    /// Leaf hash and chain value of the batch's first record, and the
    /// chain value after its last, hex.
    first_leaf: String,
    first_chain: String,
    last_chain: String,
    /// When the line was made, ms since the Unix epoch: once the batch
    /// was queued (it is written while the batch is committed).
    pub(super) at_ms: u64,
}

pub(super) fn hex32(field: &'static str, text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|e| format!("`{field}` is not 64 hex digits: {e}"))?;
    Ok(out)
}

/// A line as it is written: [`Line`]'s fields in the same order, borrowed,
/// with the hashes in hex on the stack (no allocation but the line's own).
#[derive(Serialize)]
struct LineOut<'a> {
    v: u32,
    principal: &'a str,
    key: &'a str,
    fingerprint: &'a str,
    first_seq: u64,
    count: u64,
    first_leaf: &'a str,
    first_chain: &'a str,
    last_chain: &'a str,
    at_ms: u64,
}

/// The journal line of a completed batch, with its end of line; `None`
/// for a batch a restart could not check (empty, or not one run of
/// consecutive seqs, as every batch is written).
pub(super) fn encode_line(
    key: &Key,
    fingerprint: &[u8; 32],
    receipts: &[Receipt],
    at_ms: u64,
) -> Option<Vec<u8>> {
    let (first, last) = (receipts.first()?, receipts.last()?);
    let consecutive = receipts
        .iter()
        .zip(first.seq..)
        .all(|(r, seq)| r.seq == seq);
    if !consecutive {
        return None;
    }
    let mut digits = [[0u8; 64]; 4];
    for (out, bytes) in digits.iter_mut().zip([
        fingerprint,
        &first.leaf_hash,
        &first.chain_hash,
        &last.chain_hash,
    ]) {
        hex::encode_to_slice(bytes, out).ok()?;
    }
    let [fingerprint, first_leaf, first_chain, last_chain] = digits
        .each_ref()
        .map(|h| std::str::from_utf8(h).unwrap_or_default());
    let line = LineOut {
        v: JOURNAL_VERSION,
        principal: &key.0,
        key: &key.1,
        fingerprint,
        first_seq: first.seq,
        count: receipts.len() as u64,
        first_leaf,
        first_chain,
        last_chain,
        at_ms,
    };
    let mut bytes = Vec::with_capacity(320 + key.0.len() + key.1.len());
    serde_json::to_writer(&mut bytes, &line).ok()?;
    bytes.push(b'\n');
    Some(bytes)
}

impl Line {
    /// The line as the journal holds it, with its end of line.
    pub(super) fn encode(&self) -> Option<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self).ok()?;
        bytes.push(b'\n');
        Some(bytes)
    }

    /// Whether the line's records all lie past the end of a log of `len`
    /// records: a batch whose line was synced but which was not.
    pub(super) fn past_end(&self, len: u64) -> bool {
        self.first_seq >= len
    }

    /// The receipts again, from the records in `store`; an error says why
    /// they cannot be trusted to be this batch's.
    pub(super) fn receipts(&self, store: &Store) -> Result<Vec<Receipt>, String> {
        let first_leaf = hex32("first_leaf", &self.first_leaf)?;
        let mut chain = hex32("first_chain", &self.first_chain)?;
        let last_chain = hex32("last_chain", &self.last_chain)?;
        let end = self
            .first_seq
            .checked_add(self.count)
            .filter(|&end| self.count > 0 && end <= store.len())
            .ok_or_else(|| {
                format!(
                    "seqs {}..+{} are not in the log (it holds {})",
                    self.first_seq,
                    self.count,
                    store.len()
                )
            })?;
        let mut receipts = Vec::with_capacity(usize::try_from(self.count).unwrap_or(0));
        for seq in self.first_seq..end {
            let raw = store
                .get_raw(seq)
                .map_err(|e| format!("reading seq {seq}: {e}"))?
                .ok_or_else(|| format!("seq {seq} is not in the log"))?;
            let view = sealog::format::record::decode(&raw)
                .map_err(|e| format!("decoding seq {seq}: {e}"))?;
            let leaf_hash = sealog::format::merkle::leaf_hash(&raw);
            if seq == self.first_seq {
                if leaf_hash != first_leaf {
                    return Err(format!("seq {seq} is not the record the key was given for"));
                }
            } else {
                chain = sealog::format::chain::link(&chain, &leaf_hash);
            }
            receipts.push(Receipt {
                seq,
                recorded_at: view.recorded_at,
                leaf_hash,
                chain_hash: chain,
            });
        }
        if chain != last_chain {
            return Err(format!(
                "the chain after seq {} differs from the one recorded for the key",
                end - 1
            ));
        }
        Ok(receipts)
    }
}

/// What loading the journal found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Keys remembered again.
    pub keys: usize,
    /// Keys older than the time-to-live, dropped.
    pub expired: usize,
    /// Lines of batches that were never acknowledged: their records lie
    /// past the end of the log (the line is synced while its batch is
    /// committed, and the server stopped, or its store failed, first).
    /// Their keys are forgotten; this is not damage.
    pub unacknowledged: usize,
    /// Lines that could not be used (their keys are forgotten).
    pub damaged: usize,
    /// The first of them: its line number or key, and what was wrong.
    pub first_damage: Option<String>,
}

impl Loaded {
    pub(super) fn note_damage(&mut self, line: Option<usize>, reason: String) {
        self.damaged += 1;
        if self.first_damage.is_none() {
            self.first_damage = Some(match line {
                Some(n) => format!("line {n}: {reason}"),
                None => reason,
            });
        }
    }
}

/// Reads a [`VfsFile`] from the start, for [`BufReader`].
struct VfsReader {
    file: Arc<dyn VfsFile>,
    at: u64,
    size: u64,
}

impl Read for VfsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.size.saturating_sub(self.at);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Reads the journal at `path` (a missing file is an empty one): its
/// lines by key, the last line of a key counting.
pub(super) fn read_lines(
    fs: &dyn Vfs,
    path: &Path,
    loaded: &mut Loaded,
) -> std::io::Result<HashMap<Key, Line>> {
    let mut lines = HashMap::new();
    let file = match fs.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lines),
        Err(e) => return Err(e),
    };
    let size = file.size()?;
    let mut reader = BufReader::new(VfsReader { file, at: 0, size });
    let mut buf = Vec::new();
    for number in 1usize.. {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if n as u64 > MAX_LINE {
                // Skip the rest of the overlong line.
                loop {
                    buf.clear();
                    let m = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf)?;
                    if m == 0 || buf.last() == Some(&b'\n') {
                        break;
                    }
                }
                loaded.note_damage(Some(number), format!("longer than {MAX_LINE} bytes"));
            } else {
                loaded.note_damage(Some(number), "cut short (no end of line)".into());
            }
            continue;
        }
        match serde_json::from_slice::<Line>(&buf) {
            Ok(line) if line.v == JOURNAL_VERSION => {
                lines.insert(Arc::new((line.principal.clone(), line.key.clone())), line);
            }
            Ok(line) => loaded.note_damage(
                Some(number),
                format!("version {} is not one this build reads", line.v),
            ),
            Err(e) => loaded.note_damage(Some(number), format!("not a journal line: {e}")),
        }
    }
    Ok(lines)
}

/// The journal file, as appenders and the compactor share it.
pub(super) struct Journal {
    fs: Arc<dyn Vfs>,
    path: PathBuf,
    tmp: PathBuf,
    /// The appenders' lock (held while a group of lines is written and
    /// synced).
    state: Mutex<State>,
    /// The lines waiting for the next write, and whether one is under way.
    queue: Mutex<Queue>,
    /// Lines written whose keys the table does not hold as completed yet,
    /// so that a compaction keeps them. A lock of its own, not the
    /// appenders': a batch that completes settles its key on an HTTP
    /// worker thread, which must not wait for the next group's sync.
    /// Taken inside the appenders' lock when lines are added, so that a
    /// compaction's snapshot (taken under both) sees each line either
    /// here or in `since_snapshot`.
    unsettled: Mutex<HashMap<Key, Vec<u8>>>,
    /// Signalled when a group's write and sync finished: to the appenders
    /// waiting on a thread, and to those waiting in a task.
    group_done: Condvar,
    group_done_tasks: tokio::sync::Notify,
    /// One compaction at a time.
    compacting: Mutex<()>,
}

/// The outcome of one group's write and sync, shared by its appenders:
/// the journal's line count after it, or why it failed.
type Outcome = Arc<OnceLock<Result<usize, (std::io::ErrorKind, String)>>>;

/// Ends a group's write: its appenders are told, and the next group may
/// start. Also when the writer unwinds, so that its group is refused
/// rather than waited for forever.
struct GroupFinished<J: std::ops::Deref<Target = Journal>> {
    journal: J,
    outcome: Outcome,
}

impl<J: std::ops::Deref<Target = Journal>> Drop for GroupFinished<J> {
    fn drop(&mut self) {
        let _ = self.outcome.set(Err((
            std::io::ErrorKind::Other,
            "the idempotency journal's writer failed".to_owned(),
        )));
        self.journal.queue.lock().writing = false;
        self.journal.group_done.notify_all();
        self.journal.group_done_tasks.notify_waiters();
    }
}

/// Lines waiting to be written together.
#[derive(Default)]
struct Queue {
    lines: Vec<(Key, Vec<u8>)>,
    /// Set once they are written and synced (or failed).
    outcome: Outcome,
    /// An appender is writing and syncing a group now.
    writing: bool,
}

struct State {
    /// `None` after a failure: reopened (and cut back to `len`) before
    /// the next append.
    file: Option<Arc<dyn VfsFile>>,
    /// Bytes of whole, synced lines.
    len: u64,
    /// Lines in the file (live or not).
    lines: usize,
    /// The directory entry of the file may not be durable yet (after a
    /// rename whose directory sync failed, or a creation).
    dir_unsynced: bool,
    /// While a compaction copies the live keys: the lines appended since
    /// it took its snapshot.
    since_snapshot: Option<Vec<u8>>,
}

impl Journal {
    /// Replaces the file at `path` by `text` (`count` lines) and opens it
    /// for appending.
    pub(super) fn create(
        fs: Arc<dyn Vfs>,
        path: &Path,
        text: &[u8],
        count: usize,
    ) -> std::io::Result<Journal> {
        let journal = Journal {
            fs,
            path: path.to_owned(),
            tmp: path.with_extension("log.tmp"),
            state: Mutex::new(State {
                file: None,
                len: 0,
                lines: 0,
                dir_unsynced: false,
                since_snapshot: None,
            }),
            unsettled: Mutex::new(HashMap::new()),
            queue: Mutex::new(Queue::default()),
            group_done: Condvar::new(),
            group_done_tasks: tokio::sync::Notify::new(),
            compacting: Mutex::new(()),
        };
        let tmp = journal.write_tmp(text)?;
        tmp.sync_data()?;
        let file = journal.install()?;
        let mut state = journal.state.lock();
        state.file = Some(file);
        state.len = text.len() as u64;
        state.lines = count;
        drop(state);
        Ok(journal)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to a new temporary file.
    fn write_tmp(&self, text: &[u8]) -> std::io::Result<Arc<dyn VfsFile>> {
        match self.fs.remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tmp = self.fs.open(&self.tmp, OpenMode::CreateNew)?;
        tmp.write_all_at(text, 0)?;
        Ok(tmp)
    }

    /// Renames the (synced) temporary file over the journal, syncs the
    /// directory and opens the result.
    fn install(&self) -> std::io::Result<Arc<dyn VfsFile>> {
        self.fs.rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            self.fs.sync_dir(dir)?;
        }
        self.fs.open(&self.path, OpenMode::ReadWrite)
    }

    /// Appends `line` (for `key`) and syncs it; returns the journal's
    /// line count. An error means the line may not be durable: the batch
    /// must not be acknowledged.
    ///
    /// Blocks: the line joins the next group, and the caller either
    /// writes and syncs that group itself or waits for the appender that
    /// does.
    pub(super) fn append(&self, key: &Key, line: Vec<u8>) -> std::io::Result<usize> {
        let mut queue = self.queue.lock();
        queue.lines.push((key.clone(), line));
        let mine = queue.outcome.clone();
        loop {
            if let Some(outcome) = mine.get() {
                return outcome
                    .clone()
                    .map_err(|(kind, message)| std::io::Error::new(kind, message));
            }
            if queue.writing {
                self.group_done.wait(&mut queue);
                continue;
            }
            // No write under way: this appender writes the group its line
            // is in (and any queued with it).
            let Queue { lines, outcome, .. } = std::mem::take(&mut *queue);
            queue.writing = true;
            drop(queue);
            let guard = GroupFinished {
                journal: self,
                outcome: outcome.clone(),
            };
            let written = self
                .write_group(lines)
                .map_err(|e| (e.kind(), e.to_string()));
            let _ = outcome.set(written);
            drop(guard);
            queue = self.queue.lock();
        }
    }

    /// [`Journal::append`] from a task: it waits for its line's group
    /// without holding a thread, and writes and syncs the group on a
    /// blocking thread when no other appender is writing one.
    pub(super) async fn append_async(
        self: &Arc<Self>,
        key: &Key,
        line: Vec<u8>,
    ) -> std::io::Result<usize> {
        let mine = {
            let mut queue = self.queue.lock();
            queue.lines.push((key.clone(), line));
            queue.outcome.clone()
        };
        loop {
            // Registered before the look below: a group finished after it
            // wakes this task.
            let finished = self.group_done_tasks.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let group = {
                let mut queue = self.queue.lock();
                if let Some(outcome) = mine.get() {
                    return outcome
                        .clone()
                        .map_err(|(kind, message)| std::io::Error::new(kind, message));
                }
                if queue.writing {
                    None
                } else {
                    let Queue { lines, outcome, .. } = std::mem::take(&mut *queue);
                    queue.writing = true;
                    Some((lines, outcome))
                }
            };
            let Some((lines, outcome)) = group else {
                finished.await;
                continue;
            };
            // Whatever becomes of this task, or of the blocking thread, the
            // group is finished: the guard goes with the closure, and runs
            // when it is dropped, run or not (a runtime shutting down drops
            // it unrun).
            let guard = GroupFinished {
                journal: self.clone(),
                outcome,
            };
            let write = tokio::task::spawn_blocking(move || {
                let written = guard
                    .journal
                    .write_group(lines)
                    .map_err(|e| (e.kind(), e.to_string()));
                let _ = guard.outcome.set(written);
                drop(guard);
            });
            // A failed blocking thread has finished the group (its guard
            // ran while unwinding): the outcome says so.
            let _ = write.await;
        }
    }

    /// Writes `lines` at the end of the last whole line, in one write, and
    /// syncs them.
    fn write_group(&self, lines: Vec<(Key, Vec<u8>)>) -> std::io::Result<usize> {
        let mut state = self.state.lock();
        let file = match &state.file {
            Some(f) => f.clone(),
            None => {
                // After a failure: what is past the last synced line may be
                // a torn line, and what a failed sync left behind is not
                // trusted.
                let f = match self.fs.open(&self.path, OpenMode::ReadWrite) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        state.dir_unsynced = true;
                        state.len = 0;
                        state.lines = 0;
                        self.fs.open(&self.path, OpenMode::CreateNew)?
                    }
                    Err(e) => return Err(e),
                };
                f.set_len(state.len)?;
                state.file = Some(f.clone());
                f
            }
        };
        let at = state.len;
        let joined: Vec<u8>;
        let bytes: &[u8] = match lines.as_slice() {
            [(_, one)] => one,
            _ => {
                let mut all = Vec::with_capacity(lines.iter().map(|(_, l)| l.len()).sum());
                for (_, line) in &lines {
                    all.extend_from_slice(line);
                }
                joined = all;
                &joined
            }
        };
        let written = file
            .write_all_at(bytes, at)
            .and_then(|()| file.sync_data())
            .and_then(|()| match (state.dir_unsynced, self.path.parent()) {
                (true, Some(dir)) => self.fs.sync_dir(dir),
                _ => Ok(()),
            });
        if let Err(e) = written {
            state.file = None;
            return Err(e);
        }
        state.dir_unsynced = false;
        state.len += bytes.len() as u64;
        state.lines += lines.len();
        if let Some(since) = &mut state.since_snapshot {
            since.extend_from_slice(bytes);
        }
        self.unsettled.lock().extend(lines);
        Ok(state.lines)
    }

    /// The key's batch completed: the table holds it now.
    pub(super) fn settle(&self, key: &Key) {
        self.unsettled.lock().remove(key);
    }

    /// Rewrites the file with the lines of `live` (called without any
    /// lock, it takes the table's through `live`) and the keys not yet
    /// settled. Appenders wait only while the lines they appended
    /// meanwhile are added, and for the sync, rename and directory sync.
    pub(super) fn compact(
        &self,
        live: impl FnOnce(&mut Vec<u8>, &HashMap<Key, Vec<u8>>) -> usize,
    ) -> std::io::Result<()> {
        let _one = self.compacting.lock();
        let unsettled = {
            let mut state = self.state.lock();
            state.since_snapshot = Some(Vec::new());
            self.unsettled.lock().clone()
        };
        let result = self.compact_from(unsettled, live);
        self.state.lock().since_snapshot = None;
        result
    }

    fn compact_from(
        &self,
        unsettled: HashMap<Key, Vec<u8>>,
        live: impl FnOnce(&mut Vec<u8>, &HashMap<Key, Vec<u8>>) -> usize,
    ) -> std::io::Result<()> {
        let mut text = Vec::new();
        let mut count = 0usize;
        for line in unsettled.values() {
            text.extend_from_slice(line);
            count += 1;
        }
        count += live(&mut text, &unsettled);
        let tmp = self.write_tmp(&text)?;
        tmp.sync_data()?;
        let mut state = self.state.lock();
        let since = state.since_snapshot.take().unwrap_or_default();
        let since_lines = since.iter().filter(|&&b| b == b'\n').count();
        tmp.write_all_at(&since, text.len() as u64)?;
        tmp.sync_data()?;
        if let Err(e) = self.fs.rename(&self.tmp, &self.path) {
            let _ = self.fs.remove_file(&self.tmp);
            return Err(e);
        }
        // The journal is the new file from here on, whatever follows.
        state.len = (text.len() + since.len()) as u64;
        state.lines = count + since_lines;
        state.file = None;
        state.dir_unsynced = true;
        if let Some(dir) = self.path.parent() {
            self.fs.sync_dir(dir)?;
        }
        state.dir_unsynced = false;
        state.file = Some(self.fs.open(&self.path, OpenMode::ReadWrite)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sealog::fault::{Fault, FaultFs, Op};

    use super::*;

    fn key(k: &str) -> Key {
        Arc::new(("p".to_owned(), k.to_owned()))
    }

    fn line(k: &str) -> Vec<u8> {
        format!("{{\"{k}\":1}}\n").into_bytes()
    }

    /// An empty journal on a fault-injecting filesystem, in a fresh
    /// directory.
    fn empty() -> (tempfile::TempDir, Arc<FaultFs>, Arc<Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::new());
        let path = dir.path().join("idempotency.log");
        let journal = Arc::new(Journal::create(fs.clone(), &path, b"", 0).unwrap());
        (dir, fs, journal)
    }

    /// Waits until `done` holds of the queue.
    fn until(journal: &Journal, done: impl Fn(&Queue) -> bool) {
        for _ in 0..10_000 {
            if done(&journal.queue.lock()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the appenders never got there");
    }

    /// Appends `a` and holds its write (the appenders' lock is taken
    /// first), then queues `more` behind it; returns once all wait, with
    /// the appenders' lock released to the caller's `then`.
    fn grouped(
        journal: &Arc<Journal>,
        more: &[&'static str],
        then: impl FnOnce(),
    ) -> Vec<(&'static str, std::io::Result<usize>)> {
        let held = journal.state.lock();
        let appender = |k: &'static str| {
            let journal = journal.clone();
            std::thread::spawn(move || (k, journal.append(&key(k), line(k))))
        };
        let mut threads = vec![appender("a")];
        // `a` writes its group and waits for the lock held here.
        until(journal, |q| q.writing && q.lines.is_empty());
        threads.extend(more.iter().map(|&k| appender(k)));
        until(journal, |q| q.lines.len() == more.len());
        then();
        drop(held);
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn lines_appended_during_a_write_share_the_next_sync() {
        let (dir, fs, journal) = empty();
        let path = dir.path().join("idempotency.log");
        let syncs = fs.count(Op::SyncData);
        let results = grouped(&journal, &["b", "c", "d"], || {});
        for (k, result) in &results {
            assert!(result.is_ok(), "{k}: {result:?}");
        }
        // One sync for `a`, one for the three queued behind it.
        assert_eq!(fs.count(Op::SyncData) - syncs, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut got: Vec<&str> = text.lines().collect();
        got.sort_unstable();
        assert_eq!(got, ["{\"a\":1}", "{\"b\":1}", "{\"c\":1}", "{\"d\":1}"]);
        assert_eq!(journal.state.lock().lines, 4);
    }

    #[test]
    fn a_failed_sync_refuses_every_line_of_its_group_and_none_is_kept() {
        let (dir, fs, journal) = empty();
        let path = dir.path().join("idempotency.log");
        // `a`'s sync passes, the next (the group of b, c, d) fails.
        let results = grouped(&journal, &["b", "c", "d"], || {
            fs.fail(Op::SyncData, Some("idempotency.log"), 1, Fault::Io);
        });
        for (k, result) in &results {
            assert_eq!(result.is_ok(), *k == "a", "{k}: {result:?}");
        }
        journal.append(&key("e"), line("e")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"e\":1}\n",
            "the failed group is cut off before the next line"
        );
        assert_eq!(journal.state.lock().lines, 2);
        let unsettled = journal.unsettled.lock();
        assert!(unsettled.contains_key(&key("e")));
        assert!(!unsettled.contains_key(&key("b")));
    }

    /// A line made by `encode_line` reads back as the [`Line`] it names, and
    /// that line encodes to the same bytes: the borrowed writer and the
    /// format's struct agree, field order and escaping included.
    #[test]
    fn written_lines_read_back_as_the_same_line() {
        let receipt = |seq: u64, b: u8| Receipt {
            seq,
            recorded_at: sealog::format::Timestamp::from_nanos(1_700_000_000_000_000_000),
            leaf_hash: [b; 32],
            chain_hash: [b.wrapping_add(1); 32],
        };
        let key: Key = Arc::new(("svc \"a\"".to_owned(), "k\\1/é".to_owned()));
        let receipts = [receipt(7, 0xab), receipt(8, 0x01), receipt(9, 0xfe)];
        let bytes = encode_line(&key, &[0x5a; 32], &receipts, 1_796_212_800_000).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let line: Line = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(line.encode().unwrap(), bytes);
        assert_eq!(
            (line.principal.as_str(), line.key.as_str()),
            (key.0.as_str(), key.1.as_str())
        );
        assert_eq!(
            (line.first_seq, line.count, line.at_ms),
            (7, 3, 1_796_212_800_000)
        );
        assert_eq!(line.fingerprint, "5a".repeat(32));
        assert_eq!(line.first_leaf, "ab".repeat(32));
        assert_eq!(line.last_chain, "ff".repeat(32));
        // Not one run of seqs: no line.
        assert!(encode_line(&key, &[0; 32], &[receipt(7, 0), receipt(9, 0)], 0).is_none());
        assert!(encode_line(&key, &[0; 32], &[], 0).is_none());
    }

    /// Settling a key (an HTTP worker thread does, when a batch completes)
    /// does not wait for the group being written and synced: the
    /// appenders' lock is held here, as a writer holds it through its
    /// `fdatasync`.
    #[test]
    fn settling_does_not_wait_for_a_sync() {
        let (_dir, _fs, journal) = empty();
        journal.append(&key("a"), line("a")).unwrap();
        let writing = journal.state.lock();
        let (done, settled) = std::sync::mpsc::channel();
        let settler = {
            let journal = journal.clone();
            std::thread::spawn(move || {
                journal.settle(&key("a"));
                done.send(()).unwrap();
            })
        };
        let outcome = settled.recv_timeout(std::time::Duration::from_secs(30));
        drop(writing);
        settler.join().unwrap();
        assert!(outcome.is_ok(), "settle waited for the appenders' lock");
        assert!(journal.unsettled.lock().is_empty());
    }

    /// As [`grouped`], with `more` appended by tasks.
    async fn grouped_tasks(
        journal: &Arc<Journal>,
        more: &[&'static str],
        then: impl FnOnce(),
    ) -> Vec<(&'static str, std::io::Result<usize>)> {
        let held = journal.state.lock();
        let first = {
            let journal = journal.clone();
            std::thread::spawn(move || ("a", journal.append(&key("a"), line("a"))))
        };
        until(journal, |q| q.writing && q.lines.is_empty());
        let tasks: Vec<_> = more
            .iter()
            .map(|&k| {
                let journal = journal.clone();
                tokio::spawn(async move { (k, journal.append_async(&key(k), line(k)).await) })
            })
            .collect();
        until(journal, |q| q.lines.len() == more.len());
        then();
        drop(held);
        let mut results = vec![first.join().unwrap()];
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_wait_for_their_group_and_share_its_sync() {
        let (dir, fs, journal) = empty();
        let path = dir.path().join("idempotency.log");
        let syncs = fs.count(Op::SyncData);
        let results = grouped_tasks(&journal, &["b", "c", "d"], || {}).await;
        for (k, result) in &results {
            assert!(result.is_ok(), "{k}: {result:?}");
        }
        assert_eq!(fs.count(Op::SyncData) - syncs, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!journal.queue.lock().writing);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_refuses_every_task_of_its_group() {
        let (dir, fs, journal) = empty();
        let path = dir.path().join("idempotency.log");
        let results = grouped_tasks(&journal, &["b", "c"], || {
            fs.fail(Op::SyncData, Some("idempotency.log"), 1, Fault::Io);
        })
        .await;
        for (k, result) in &results {
            assert_eq!(result.is_ok(), *k == "a", "{k}: {result:?}");
        }
        journal.append_async(&key("e"), line("e")).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"e\":1}\n"
        );
    }
}
