//! `Idempotency-Key`: a retried batch gets the original receipts instead
//! of being written twice.
//!
//! Keys are scoped to the principal (two tokens may use the same key) and
//! remembered in memory, bounded by count, by the receipts they hold and
//! by age (defaults: 100,000 keys, 1,000,000 receipts, 24 h); the oldest
//! are forgotten first. A request whose key is in flight waits for the
//! first one's result; the same key with a different body is refused
//! (422). Only successful batches are remembered: a refused batch wrote
//! nothing, so its retry is simply tried again.
//!
//! With a journal (`sealog serve` keeps one, `idempotency.log` in the data
//! directory), every completed key is also appended there before its
//! batch is acknowledged, and loaded again when the server starts: a key
//! survives a restart or a crash of the server. The journal is synced once
//! a second, so a power loss can forget the keys of the last second. A
//! loaded key's receipts are rebuilt from the log and checked against the
//! journal's leaf and chain hashes; a key that does not check out is
//! forgotten (and reported), never answered wrongly. docs/format.md
//! specifies the file.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sealog::{Receipt, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

type Key = (String, String);

enum Entry {
    Pending {
        fingerprint: [u8; 32],
        done: Arc<Notify>,
    },
    Done {
        fingerprint: [u8; 32],
        receipts: Arc<Vec<Receipt>>,
        at: Instant,
        /// `at` as ms since the Unix epoch, for the journal.
        at_ms: u64,
    },
}

struct Table {
    entries: HashMap<Key, Entry>,
    /// Completed keys, oldest first (may hold keys already removed).
    order: VecDeque<(Key, Instant)>,
    receipts: usize,
}

/// The idempotency table.
pub struct Idempotency {
    max_keys: usize,
    max_receipts: usize,
    ttl: Duration,
    table: Mutex<Table>,
    journal: Mutex<Option<Journal>>,
}

/// The journal file and the keys written to it that the table does not
/// hold as completed yet (so that a compaction keeps them).
struct Journal {
    file: JournalFile,
    unsettled: HashMap<Key, Vec<u8>>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// What to do with a request carrying a key.
pub enum Begin {
    /// First time: go ahead, then [`Slot::complete`].
    Proceed(Slot),
    /// Seen before with the same body: answer these receipts.
    Replay(Arc<Vec<Receipt>>),
    /// Seen before with a different body.
    Conflict,
}

/// A key being processed; dropping it without completing forgets the key
/// (and wakes anyone waiting, who then proceeds).
pub struct Slot {
    owner: Arc<Idempotency>,
    key: Option<Key>,
    done: Arc<Notify>,
}

impl Slot {
    /// Remembers the receipts of the successful batch.
    pub fn complete(mut self, receipts: Arc<Vec<Receipt>>) {
        if let Some(key) = self.key.take() {
            self.owner.finish(key, Some(receipts));
        }
        self.done.notify_waiters();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.owner.finish(key, None);
            self.done.notify_waiters();
        }
    }
}

impl Idempotency {
    /// An empty table.
    pub fn new(max_keys: usize, max_receipts: usize, ttl: Duration) -> Idempotency {
        Idempotency {
            max_keys: max_keys.max(1),
            max_receipts: max_receipts.max(1),
            ttl,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                order: VecDeque::new(),
                receipts: 0,
            }),
            journal: Mutex::new(None),
        }
    }

    /// Looks the key up, waiting while another request with it is in
    /// flight.
    pub async fn begin(
        self: &Arc<Self>,
        principal: &str,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Begin {
        let key: Key = (principal.to_owned(), key.to_owned());
        loop {
            let notified = {
                let mut table = self.table.lock();
                self.expire(&mut table);
                match table.entries.get(&key) {
                    Some(Entry::Done {
                        fingerprint: f,
                        receipts,
                        ..
                    }) => {
                        return if *f == fingerprint {
                            Begin::Replay(receipts.clone())
                        } else {
                            Begin::Conflict
                        };
                    }
                    Some(Entry::Pending {
                        fingerprint: f,
                        done,
                    }) => {
                        if *f != fingerprint {
                            return Begin::Conflict;
                        }
                        // Created under the lock: it receives the
                        // notification even before it is first polled.
                        done.clone().notified_owned()
                    }
                    None => {
                        let done = Arc::new(Notify::new());
                        table.entries.insert(
                            key.clone(),
                            Entry::Pending {
                                fingerprint,
                                done: done.clone(),
                            },
                        );
                        return Begin::Proceed(Slot {
                            owner: self.clone(),
                            key: Some(key),
                            done,
                        });
                    }
                }
            };
            notified.await;
        }
    }

    fn finish(&self, key: Key, receipts: Option<Arc<Vec<Receipt>>>) {
        let mut table = self.table.lock();
        match receipts {
            None => {
                table.entries.remove(&key);
            }
            Some(receipts) => {
                let now = Instant::now();
                let fingerprint = match table.entries.get(&key) {
                    Some(Entry::Pending { fingerprint, .. }) => *fingerprint,
                    _ => [0; 32],
                };
                table.receipts += receipts.len();
                table.entries.insert(
                    key.clone(),
                    Entry::Done {
                        fingerprint,
                        receipts,
                        at: now,
                        at_ms: unix_ms(SystemTime::now()),
                    },
                );
                table.order.push_back((key.clone(), now));
                self.evict(&mut table);
                drop(table);
                // Lock order: never the table while holding the journal's.
                if let Some(journal) = self.journal.lock().as_mut() {
                    journal.unsettled.remove(&key);
                }
            }
        }
    }

    fn expire(&self, table: &mut Table) {
        let now = Instant::now();
        while let Some((_, at)) = table.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            self.pop_oldest(table);
        }
    }

    fn evict(&self, table: &mut Table) {
        while table.order.len() > self.max_keys || table.receipts > self.max_receipts {
            if !self.pop_oldest(table) {
                break;
            }
        }
    }

    fn pop_oldest(&self, table: &mut Table) -> bool {
        let Some((key, at)) = table.order.pop_front() else {
            return false;
        };
        if let Some(Entry::Done {
            at: done_at,
            receipts,
            ..
        }) = table.entries.get(&key)
            && *done_at == at
        {
            table.receipts = table.receipts.saturating_sub(receipts.len());
            table.entries.remove(&key);
        }
        true
    }

    /// Loads the journal at `path` (a missing file is an empty one),
    /// remembers its keys whose batches `store` holds, rewrites it with
    /// just those, and from now on appends every completed key to it.
    pub fn open_journal(&self, path: &Path, store: &Store) -> std::io::Result<Loaded> {
        let mut loaded = Loaded::default();
        let mut lines: HashMap<Key, Line> = HashMap::new();
        match File::open(path) {
            Ok(file) => read_lines(file, &mut lines, &mut loaded)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let now_ms = unix_ms(SystemTime::now());
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut lines: Vec<(Key, Line)> = lines.into_iter().collect();
        lines.sort_by_key(|(_, l)| l.at_ms);
        let before = lines.len();
        lines.retain(|(_, l)| now_ms.saturating_sub(l.at_ms) < ttl_ms);
        loaded.expired = before - lines.len();
        // Only the newest keys fit the table: rebuild no receipts for the
        // others.
        let mut receipts_held = 0u64;
        let mut fit = 0usize;
        for (_, line) in lines.iter().rev() {
            receipts_held = receipts_held.saturating_add(line.count);
            if fit >= self.max_keys || receipts_held > self.max_receipts as u64 {
                break;
            }
            fit += 1;
        }
        let lines = lines.split_off(lines.len() - fit);
        let mut text = Vec::new();
        let mut kept = 0usize;
        {
            let mut table = self.table.lock();
            let now = Instant::now();
            for (key, line) in lines {
                let fingerprint = match hex32("fingerprint", &line.fingerprint) {
                    Ok(f) => f,
                    Err(reason) => {
                        loaded.note_damage(None, reason);
                        continue;
                    }
                };
                let receipts = match line.receipts(store) {
                    Ok(r) => r,
                    Err(reason) => {
                        loaded.note_damage(None, format!("key `{}`: {reason}", line.key));
                        continue;
                    }
                };
                let age = Duration::from_millis(now_ms.saturating_sub(line.at_ms));
                let at = now.checked_sub(age).unwrap_or(now);
                table.receipts += receipts.len();
                table.entries.insert(
                    key.clone(),
                    Entry::Done {
                        fingerprint,
                        receipts: Arc::new(receipts),
                        at,
                        at_ms: line.at_ms,
                    },
                );
                table.order.push_back((key, at));
                if let Some(bytes) = line.encode() {
                    text.extend_from_slice(&bytes);
                    kept += 1;
                }
            }
            self.evict(&mut table);
            loaded.keys = table.entries.len();
        }
        let mut file = JournalFile {
            path: path.to_owned(),
            file: None,
            lines: 0,
            dirty: false,
            failing: false,
        };
        file.rewrite(&text, kept)?;
        *self.journal.lock() = Some(Journal {
            file,
            unsettled: HashMap::new(),
        });
        Ok(loaded)
    }

    /// Appends a completed batch's key to the journal (if there is one),
    /// before the batch is acknowledged. Blocking file I/O: call it off
    /// the async runtime. A failure is reported on standard error once and
    /// costs only the key's memory across a restart.
    pub fn journal_batch(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &[u8; 32],
        receipts: &[Receipt],
    ) {
        let mut guard = self.journal.lock();
        let Some(journal) = guard.as_mut() else {
            return;
        };
        let key: Key = (principal.to_owned(), key.to_owned());
        let Some(line) = Line::new(&key, fingerprint, receipts, unix_ms(SystemTime::now())) else {
            return;
        };
        let Some(bytes) = line.encode() else {
            return;
        };
        match journal.file.append(&bytes) {
            Ok(()) => {
                if journal.file.failing {
                    journal.file.failing = false;
                    tracing::info!(
                        path = %journal.file.path.display(),
                        "writing the idempotency journal works again"
                    );
                }
            }
            Err(e) => {
                if !journal.file.failing {
                    journal.file.failing = true;
                    tracing::error!(
                        path = %journal.file.path.display(),
                        error = %e,
                        "could not write the idempotency journal: the batches are durable and \
                         acknowledged, but their keys will be forgotten if the server restarts"
                    );
                }
                return;
            }
        }
        journal.unsettled.insert(key, bytes);
        // The table holds every key in flight or completed.
        let live = self.len();
        if journal.file.lines > live.saturating_mul(2) + 4096 {
            let mut text = Vec::new();
            let mut count = 0usize;
            for line in journal.unsettled.values() {
                text.extend_from_slice(line);
                count += 1;
            }
            {
                let table = self.table.lock();
                for (key, entry) in &table.entries {
                    if let Entry::Done {
                        fingerprint,
                        receipts,
                        at_ms,
                        ..
                    } = entry
                        && !journal.unsettled.contains_key(key)
                        && let Some(bytes) = Line::new(key, fingerprint, receipts, *at_ms)
                            .and_then(|line| line.encode())
                    {
                        text.extend_from_slice(&bytes);
                        count += 1;
                    }
                }
            }
            if let Err(e) = journal.file.rewrite(&text, count) {
                tracing::warn!(
                    path = %journal.file.path.display(),
                    error = %e,
                    "could not compact the idempotency journal; it keeps growing until this works"
                );
            }
        }
    }

    /// Syncs the journal if anything was appended since the last sync.
    pub fn sync_journal(&self) -> std::io::Result<()> {
        let mut guard = self.journal.lock();
        let Some(journal) = guard.as_mut() else {
            return Ok(());
        };
        if !journal.file.dirty {
            return Ok(());
        }
        if let Some(f) = &journal.file.file {
            f.sync_data()?;
        }
        journal.file.dirty = false;
        Ok(())
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.table.lock().entries.len()
    }
}

/// One line of the journal: a completed batch's key and where its records
/// are, enough to rebuild and check its receipts from the store.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    v: u32,
    principal: String,
    key: String,
    /// SHA-256 of the framing byte and the body, hex.
    fingerprint: String,
    first_seq: u64,
    count: u64,
    /// Leaf hash and chain value of the batch's first record, and the
    /// chain value after its last, hex.
    first_leaf: String,
    first_chain: String,
    last_chain: String,
    /// When the batch completed, ms since the Unix epoch.
    at_ms: u64,
}

const JOURNAL_VERSION: u32 = 1;

fn hex32(field: &'static str, text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|e| format!("`{field}` is not 64 hex digits: {e}"))?;
    Ok(out)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Line {
    fn new(key: &Key, fingerprint: &[u8; 32], receipts: &[Receipt], at_ms: u64) -> Option<Line> {
        let (first, last) = (receipts.first()?, receipts.last()?);
        // A batch is written as one run of consecutive seqs.
        let consecutive = receipts
            .iter()
            .zip(first.seq..)
            .all(|(r, seq)| r.seq == seq);
        consecutive.then(|| Line {
            v: JOURNAL_VERSION,
            principal: key.0.clone(),
            key: key.1.clone(),
            fingerprint: hex::encode(fingerprint),
            first_seq: first.seq,
            count: receipts.len() as u64,
            first_leaf: hex::encode(first.leaf_hash),
            first_chain: hex::encode(first.chain_hash),
            last_chain: hex::encode(last.chain_hash),
            at_ms,
        })
    }

    /// The line as the journal holds it, with its end of line.
    fn encode(&self) -> Option<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self).ok()?;
        bytes.push(b'\n');
        Some(bytes)
    }

    /// The receipts again, from the records in `store`; an error says why
    /// they cannot be trusted to be this batch's.
    fn receipts(&self, store: &Store) -> Result<Vec<Receipt>, String> {
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
    /// Lines that could not be used (their keys are forgotten).
    pub damaged: usize,
    /// The first of them: its line number or key, and what was wrong.
    pub first_damage: Option<String>,
}

struct JournalFile {
    path: PathBuf,
    file: Option<File>,
    /// Lines in the file (live or not): compaction rewrites it when this
    /// grows well past the keys held.
    lines: usize,
    dirty: bool,
    /// The last write failed (reported once until one succeeds).
    failing: bool,
}

impl JournalFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        if let Err(e) = file.write_all(bytes) {
            // A short write leaves a torn line: the next load skips it.
            self.file = None;
            return Err(e);
        }
        self.lines += 1;
        self.dirty = true;
        Ok(())
    }

    /// Replaces the file by `lines`, atomically.
    fn rewrite(&mut self, lines: &[u8], count: usize) -> std::io::Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(lines)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = None;
        self.lines = count;
        self.dirty = false;
        Ok(())
    }
}

/// Longest journal line read; longer ones are damage.
const MAX_LINE: u64 = 4096;

fn read_lines(
    file: File,
    lines: &mut HashMap<Key, Line>,
    loaded: &mut Loaded,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(file);
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
                lines.insert((line.principal.clone(), line.key.clone()), line);
            }
            Ok(line) => loaded.note_damage(
                Some(number),
                format!("version {} is not one this build reads", line.v),
            ),
            Err(e) => loaded.note_damage(Some(number), format!("not a journal line: {e}")),
        }
    }
    Ok(())
}

impl Loaded {
    fn note_damage(&mut self, line: Option<usize>, reason: String) {
        self.damaged += 1;
        if self.first_damage.is_none() {
            self.first_damage = Some(match line {
                Some(n) => format!("line {n}: {reason}"),
                None => reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use sealog::format::{Actor, Resource};
    use sealog::{Durability, Event, Outcome, StoreOptions};

    fn event(i: u64) -> Event {
        Event::new(
            Actor::new("user", "journal"),
            "x.create",
            Resource::new("thing", i.to_string()),
            Outcome::Success,
        )
    }

    #[tokio::test]
    async fn the_journal_is_compacted_and_reloads_the_newest_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("log"), StoreOptions::default()).unwrap();
        let path = dir.path().join("idempotency.log");
        let table = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        assert_eq!(table.open_journal(&path, &store).unwrap().keys, 0);
        let mut last = None;
        for i in 0..5_000u64 {
            let key = format!("k{i}");
            let fingerprint = [u8::try_from(i % 251).unwrap(); 32];
            let Begin::Proceed(slot) = table.begin("p", &key, fingerprint).await else {
                panic!("{key} is new");
            };
            let receipts = store
                .append_batch_with(&[event(i), event(i)], Durability::Buffered)
                .unwrap();
            table.journal_batch("p", &key, &fingerprint, &receipts);
            let receipts = Arc::new(receipts);
            slot.complete(receipts.clone());
            last = Some((key, fingerprint, receipts));
        }
        assert_eq!(table.len(), 100);
        table.sync_journal().unwrap();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            (100..=2 * 100 + 4096 + 1).contains(&lines),
            "{lines} lines: compaction keeps the file near the keys held"
        );
        // A new table (a restarted server) remembers the newest 100 keys.
        let restarted = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        let loaded = restarted.open_journal(&path, &store).unwrap();
        assert_eq!((loaded.keys, loaded.damaged), (100, 0), "{loaded:?}");
        let (key, fingerprint, receipts) = last.unwrap();
        match restarted.begin("p", &key, fingerprint).await {
            Begin::Replay(r) => assert_eq!(*r, *receipts),
            _ => panic!("the newest key is remembered"),
        }
        assert!(matches!(
            restarted.begin("p", "k0", [0; 32]).await,
            Begin::Proceed(_)
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            100,
            "loading rewrote the journal with the keys it kept"
        );
    }
}
