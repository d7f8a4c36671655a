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
//! directory), every key is also appended there and synced before its
//! batch is acknowledged, and loaded again when the server starts: an
//! acknowledged key survives a restart, a crash or a power loss. The line
//! is written while the batch's commit group is synced, from the receipts
//! the batch has once queued; a line whose batch never became durable
//! names records past the log's end, and loading forgets it. If the
//! journal cannot be written the batch (durable in the log) is not
//! acknowledged; a retry with its key gets the receipts once the key's
//! line is durable. The journal is compacted by a background task, never
//! on the way to an acknowledgement ([`journal`]). A loaded key's receipts
//! are rebuilt from the log and checked against the journal's leaf and
//! chain hashes; a key that does not check out is forgotten (and
//! reported), never answered wrongly. docs/format.md specifies the file.

mod journal;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sealog::{Receipt, Store, Vfs};
use tokio::sync::Notify;

pub(crate) use journal::Loaded;
use journal::{Journal, Line};

/// A key as the table holds it: the principal and the `Idempotency-Key`,
/// shared (the table, its age order, the journal's queue and its unsettled
/// lines each hold it; a compaction copies every held one under the
/// table's lock).
type Key = Arc<(String, String)>;

/// A completed key as a compaction copies it from the table: the key, its
/// body's fingerprint, its receipts and when its line was made.
type HeldKey = (Key, [u8; 32], Arc<Vec<Receipt>>, u64);

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
        /// The key's journal line is durable (or there is no journal).
        journaled: bool,
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
    journal: OnceLock<Arc<Journal>>,
    /// The journal holds many more lines than keys: the background task
    /// compacts it.
    compaction_due: AtomicBool,
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
    /// Seen before with the same body: answer these receipts, once the
    /// key is journaled ([`Idempotency::journal_again`] if not).
    Replay {
        /// The batch's receipts.
        receipts: Arc<Vec<Receipt>>,
        /// False if writing the key's journal line failed: the batch is
        /// written but its key would not survive a restart.
        journaled: bool,
    },
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
    /// Remembers the receipts of the successful batch; `journaled` says
    /// whether its journal line is durable.
    pub fn complete(mut self, receipts: Arc<Vec<Receipt>>, journaled: bool) {
        if let Some(key) = self.key.take() {
            self.owner.finish(key, Some((receipts, journaled)));
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
            journal: OnceLock::new(),
            compaction_due: AtomicBool::new(false),
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
        let key: Key = Arc::new((principal.to_owned(), key.to_owned()));
        loop {
            let notified = {
                let mut table = self.table.lock();
                self.expire(&mut table);
                match table.entries.get(&key) {
                    Some(Entry::Done {
                        fingerprint: f,
                        receipts,
                        journaled,
                        ..
                    }) => {
                        return if *f == fingerprint {
                            Begin::Replay {
                                receipts: receipts.clone(),
                                journaled: *journaled,
                            }
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

    fn finish(&self, key: Key, receipts: Option<(Arc<Vec<Receipt>>, bool)>) {
        let mut table = self.table.lock();
        match receipts {
            None => {
                table.entries.remove(&key);
            }
            Some((receipts, journaled)) => {
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
                        journaled,
                    },
                );
                table.order.push_back((key.clone(), now));
                self.evict(&mut table);
                drop(table);
                // Lock order: the journal's, then the table's; never the
                // other way round.
                if let Some(journal) = self.journal.get() {
                    journal.settle(&key);
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
    /// Every file operation goes through `fs` (the store's filesystem).
    pub fn open_journal(
        &self,
        fs: Arc<dyn Vfs>,
        path: &Path,
        store: &Store,
    ) -> std::io::Result<Loaded> {
        let mut loaded = Loaded::default();
        let lines = journal::read_lines(fs.as_ref(), path, &mut loaded)?;
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
                let fingerprint = match journal::hex32("fingerprint", &line.fingerprint) {
                    Ok(f) => f,
                    Err(reason) => {
                        loaded.note_damage(None, reason);
                        continue;
                    }
                };
                let receipts = match line.receipts(store) {
                    Ok(r) => r,
                    // Written while its batch was committed, and the
                    // batch never became durable (the server stopped or
                    // its store failed first): never acknowledged.
                    Err(_) if line.past_end(store.len()) => {
                        loaded.unacknowledged += 1;
                        continue;
                    }
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
                        journaled: true,
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
        let journal = Journal::create(fs, path, &text, kept)?;
        if self.journal.set(Arc::new(journal)).is_err() {
            return Err(std::io::Error::other(
                "the idempotency journal is open already",
            ));
        }
        Ok(loaded)
    }

    /// Appends a completed batch's key to the journal (if there is one)
    /// and syncs it, before the batch is acknowledged. Blocking file I/O:
    /// call it off the async runtime. An error means the key's line may
    /// not be durable: the batch must not be acknowledged (complete its
    /// slot with `journaled: false`; a retry with the key calls
    /// [`Idempotency::journal_again`]).
    pub fn journal_batch(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &[u8; 32],
        receipts: &[Receipt],
    ) -> std::io::Result<()> {
        let Some((journal, key, line)) = self.line_of(principal, key, fingerprint, receipts) else {
            return Ok(());
        };
        let lines = journal.append(&key, line)?;
        self.note_journal_lines(lines);
        Ok(())
    }

    /// [`Idempotency::journal_batch`] from the async runtime: the task
    /// waits for the group its line joins without holding a thread; the
    /// group is written and synced on a blocking thread. The ingest route
    /// calls it while the batch is committed, with the receipts the batch
    /// has once queued (`sealog::Appending::queued_receipts`), and
    /// acknowledges the batch once both are durable; if the batch fails,
    /// it calls [`Idempotency::forget_line`].
    pub async fn journal_batch_async(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &[u8; 32],
        receipts: &[Receipt],
    ) -> std::io::Result<()> {
        let Some((journal, key, line)) = self.line_of(principal, key, fingerprint, receipts) else {
            return Ok(());
        };
        let lines = journal.append_async(&key, line).await?;
        self.note_journal_lines(lines);
        Ok(())
    }

    /// The journal and the line of a completed batch, if there is a
    /// journal and the batch is one a restart could check (a run of
    /// consecutive seqs).
    fn line_of(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &[u8; 32],
        receipts: &[Receipt],
    ) -> Option<(&Arc<Journal>, Key, Vec<u8>)> {
        let journal = self.journal.get()?;
        let key: Key = Arc::new((principal.to_owned(), key.to_owned()));
        let line = journal::encode_line(&key, fingerprint, receipts, unix_ms(SystemTime::now()))?;
        Some((journal, key, line))
    }

    /// A keyed batch whose journal line was written while it was being
    /// committed, and which then failed (it is not acknowledged): the
    /// background compaction, due now, rewrites the journal without its
    /// line. (The table forgets the key when the batch's slot is dropped.)
    /// Once the store is reopened, the line's seqs go to other records: a
    /// restart that found the line still there would forget the key as
    /// unusable and report it.
    pub fn forget_line(&self, principal: &str, key: &str) {
        if let Some(journal) = self.journal.get() {
            journal.settle(&Arc::new((principal.to_owned(), key.to_owned())));
            self.compaction_due.store(true, Ordering::Relaxed);
        }
    }

    /// Marks a compaction due once the journal holds `lines` lines, well
    /// past the keys the table holds (every key in flight or completed).
    fn note_journal_lines(&self, lines: usize) {
        if lines > self.len().saturating_mul(2) + journal::SLACK_LINES {
            self.compaction_due.store(true, Ordering::Relaxed);
        }
    }

    /// Journals the key of a completed batch whose first journal write
    /// failed, and marks it journaled: then its receipts may be answered.
    pub fn journal_again(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &[u8; 32],
        receipts: &[Receipt],
    ) -> std::io::Result<()> {
        self.journal_batch(principal, key, fingerprint, receipts)?;
        let key: Key = Arc::new((principal.to_owned(), key.to_owned()));
        if let Some(journal) = self.journal.get() {
            journal.settle(&key);
        }
        if let Some(Entry::Done { journaled, .. }) = self.table.lock().entries.get_mut(&key) {
            *journaled = true;
        }
        Ok(())
    }

    /// Compacts the journal if it has grown well past the keys held
    /// (`Ok(true)`): the background task calls it, never an ingest.
    /// Blocking file I/O.
    pub fn compact_journal(&self) -> std::io::Result<bool> {
        let Some(journal) = self.journal.get() else {
            return Ok(false);
        };
        if !self.compaction_due.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let compacted = journal.compact(|text, unsettled| {
            // What each held key's line needs, copied under the table's
            // lock (every keyed batch takes it, on a runtime worker
            // thread); the lines are made after it is released. Made under
            // the lock, 100,000 keys' lines held it for a tenth of a second
            // or more, and every request of the server waited.
            let held: Vec<HeldKey> = {
                let table = self.table.lock();
                table
                    .entries
                    .iter()
                    .filter_map(|(key, entry)| match entry {
                        Entry::Done {
                            fingerprint,
                            receipts,
                            at_ms,
                            journaled: true,
                            ..
                        } => Some((key.clone(), *fingerprint, receipts.clone(), *at_ms)),
                        _ => None,
                    })
                    .collect()
            };
            let mut count = 0;
            for (key, fingerprint, receipts, at_ms) in &held {
                if !unsettled.contains_key(key)
                    && let Some(bytes) = journal::encode_line(key, fingerprint, receipts, *at_ms)
                {
                    text.extend_from_slice(&bytes);
                    count += 1;
                }
            }
            count
        });
        if compacted.is_err() {
            // Try again at the next round.
            self.compaction_due.store(true, Ordering::Relaxed);
        }
        compacted.map(|()| true)
    }

    /// The journal's file, if there is one.
    pub fn journal_path(&self) -> Option<&Path> {
        self.journal.get().map(|j| j.path())
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.table.lock().entries.len()
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use sealog::fault::{Fault, FaultFs, Op, Unsynced};
    use sealog::format::{Actor, Resource};
    use sealog::{Durability, Event, Outcome, StdFs, StoreOptions};

    fn event(i: u64) -> Event {
        Event::new(
            Actor::new("user", "journal"),
            "x.create",
            Resource::new("thing", i.to_string()),
            Outcome::Success,
        )
    }

    fn std_fs() -> Arc<dyn Vfs> {
        Arc::new(StdFs)
    }

    /// Begins `key`, appends a two-event batch, journals it and completes
    /// the slot; returns the receipts and what journaling said.
    async fn ingest(
        table: &Arc<Idempotency>,
        store: &Store,
        key: &str,
        i: u64,
    ) -> (Arc<Vec<Receipt>>, std::io::Result<()>) {
        ingest_with(table, store, key, i, Durability::Buffered).await
    }

    /// [`ingest`] with the store's appends made durable as `durability`
    /// says (a power loss keeps only synced records).
    async fn ingest_with(
        table: &Arc<Idempotency>,
        store: &Store,
        key: &str,
        i: u64,
        durability: Durability,
    ) -> (Arc<Vec<Receipt>>, std::io::Result<()>) {
        let fingerprint = [u8::try_from(i % 251).unwrap(); 32];
        let Begin::Proceed(slot) = table.begin("p", key, fingerprint).await else {
            panic!("{key} is new");
        };
        let receipts = store
            .append_batch_with(&[event(i), event(i)], durability)
            .unwrap();
        let journaled = table.journal_batch("p", key, &fingerprint, &receipts);
        let receipts = Arc::new(receipts);
        slot.complete(receipts.clone(), journaled.is_ok());
        (receipts, journaled)
    }

    #[tokio::test]
    async fn appends_never_compact_and_the_background_compaction_keeps_the_newest_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("log"), StoreOptions::default()).unwrap();
        let path = dir.path().join("idempotency.log");
        let table = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        assert_eq!(table.open_journal(std_fs(), &path, &store).unwrap().keys, 0);
        assert!(!table.compact_journal().unwrap(), "nothing to compact yet");
        let mut last = None;
        for i in 0..5_000u64 {
            let key = format!("k{i}");
            let (receipts, journaled) = ingest(&table, &store, &key, i).await;
            journaled.unwrap();
            last = Some((key, [u8::try_from(i % 251).unwrap(); 32], receipts));
        }
        assert_eq!(table.len(), 100);
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines(), 5_000, "an ingest only appends its line");
        assert!(table.compact_journal().unwrap(), "the journal is due");
        assert_eq!(lines(), 100, "compaction keeps the keys held");
        assert!(!table.compact_journal().unwrap(), "and is not due again");
        // Appending goes on at the end of the compacted file.
        ingest(&table, &store, "after", 7).await.1.unwrap();
        assert_eq!(lines(), 101);
        // A new table (a restarted server) remembers the newest 100 keys.
        let restarted = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        let loaded = restarted.open_journal(std_fs(), &path, &store).unwrap();
        assert_eq!((loaded.keys, loaded.damaged), (100, 0), "{loaded:?}");
        let (key, fingerprint, receipts) = last.unwrap();
        match restarted.begin("p", &key, fingerprint).await {
            Begin::Replay {
                receipts: r,
                journaled: true,
            } => assert_eq!(*r, *receipts),
            _ => panic!("the newest key is remembered"),
        }
        assert!(matches!(
            restarted.begin("p", "k0", [0; 32]).await,
            Begin::Proceed(_)
        ));
        assert_eq!(
            lines(),
            100,
            "loading rewrote the journal with the keys it kept"
        );
    }

    #[test]
    fn lines_appended_while_a_compaction_copies_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idempotency.log");
        let journal = Journal::create(std_fs(), &path, b"", 0).unwrap();
        let key = |k: &str| Arc::new(("p".to_owned(), k.to_owned()));
        journal
            .append(&key("old"), b"{\"old\":1}\n".to_vec())
            .unwrap();
        journal.settle(&key("old"));
        journal
            .append(&key("unsettled"), b"{\"unsettled\":1}\n".to_vec())
            .unwrap();
        journal
            .compact(|text, unsettled| {
                assert!(unsettled.contains_key(&key("unsettled")));
                // An ingest appends while the live keys are copied.
                journal
                    .append(&key("during"), b"{\"during\":1}\n".to_vec())
                    .unwrap();
                text.extend_from_slice(b"{\"live\":1}\n");
                1
            })
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text, "{\"unsettled\":1}\n{\"live\":1}\n{\"during\":1}\n",
            "the superseded line is gone, the unsettled, live and concurrent ones are kept"
        );
        journal
            .append(&key("next"), b"{\"next\":1}\n".to_vec())
            .unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("{\"during\":1}\n{\"next\":1}\n")
        );
        assert!(!dir.path().join("idempotency.log.tmp").exists());
    }

    #[tokio::test]
    async fn a_failed_fsync_of_the_journal_is_not_acknowledged_and_the_retry_journals_it() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::new());
        let options = StoreOptions {
            fs: fs.clone(),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path().join("log"), options).unwrap();
        let path = dir.path().join("idempotency.log");
        let table = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        table.open_journal(fs.clone(), &path, &store).unwrap();
        ingest(&table, &store, "before", 1).await.1.unwrap();
        fs.fail(Op::SyncData, Some("idempotency.log"), 0, Fault::Io);
        let (receipts, journaled) = ingest(&table, &store, "k", 2).await;
        assert!(journaled.is_err(), "the journal's fdatasync failed");
        assert!(fs.any_fired());
        // The retry is not answered before the key is durable ...
        let fingerprint = [2; 32];
        let Begin::Replay {
            receipts: r,
            journaled: false,
        } = table.begin("p", "k", fingerprint).await
        else {
            panic!("the key is held, marked not journaled");
        };
        assert_eq!(*r, *receipts, "and is not written twice");
        // ... which journaling it again makes it.
        table.journal_again("p", "k", &fingerprint, &r).unwrap();
        assert!(matches!(
            table.begin("p", "k", fingerprint).await,
            Begin::Replay {
                journaled: true,
                ..
            }
        ));
        ingest(&table, &store, "after", 3).await.1.unwrap();
        drop(table);
        let restarted = Idempotency::new(100, 10_000, Duration::from_secs(3600));
        let loaded = restarted.open_journal(std_fs(), &path, &store).unwrap();
        assert_eq!(
            (loaded.keys, loaded.damaged),
            (3, 0),
            "the line whose sync failed was cut off and written again: {loaded:?}"
        );
    }

    /// What a fault-matrix case does with the journal.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// A keyed ingest's append and sync.
        Append,
        /// A background compaction.
        Compact,
    }

    /// One case: a store and journal on a filesystem that simulates power
    /// loss, `step` run with its `n`-th filesystem call failing with
    /// `fault`, or with the process dying just before it (`None`; no
    /// `fail`: run to record its calls). Every key whose journal write
    /// succeeded (or, without a crash, was retried with success) must
    /// survive a power loss. Returns the calls the step made.
    async fn journal_case(
        step: Step,
        fail: Option<(u64, Option<Fault>)>,
    ) -> Vec<sealog::fault::Call> {
        let crash = matches!(fail, Some((_, None)));
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (fs, store, table) = on_power_loss_fs(&data, 4);
        let mut acknowledged = Vec::new();
        for i in 0..6u64 {
            let key = format!("k{i}");
            let (receipts, journaled) =
                ingest_with(&table, &store, &key, i, Durability::Group).await;
            journaled.unwrap();
            if i >= 2 {
                acknowledged.push((key, i, receipts));
            }
        }
        table.compaction_due.store(true, Ordering::Relaxed);
        let start = || {
            fs.start_recording();
            match fail {
                Some((n, Some(fault))) => fs.fail_nth(n, fault),
                Some((n, None)) => fs.crash_at(n),
                None => {}
            }
        };
        let (stepped, calls) = match step {
            Step::Append => {
                let Begin::Proceed(slot) = table.begin("p", "step", [99; 32]).await else {
                    panic!("the key is new");
                };
                let receipts = store
                    .append_batch_with(&[event(99), event(99)], Durability::Group)
                    .unwrap();
                start();
                let journaled = table.journal_batch("p", "step", &[99; 32], &receipts);
                let calls = fs.take_recording();
                let receipts = Arc::new(receipts);
                slot.complete(receipts.clone(), journaled.is_ok());
                if journaled.is_err() && !crash {
                    table
                        .journal_again("p", "step", &[99; 32], &receipts)
                        .unwrap();
                }
                if journaled.is_ok() || !crash {
                    acknowledged.push(("step".to_owned(), 99, receipts));
                }
                (journaled.map(|()| true), calls)
            }
            Step::Compact => {
                start();
                let compacted = table.compact_journal();
                (compacted, fs.take_recording())
            }
        };
        if fs.nth_fired() || crash {
            assert!(stepped.is_err(), "{step:?}: a failed call is reported");
        }
        if fail.is_some() && !crash {
            // The journal goes on working after the failure. (Without a
            // failure the power goes right after the step.)
            let (receipts, journaled) =
                ingest_with(&table, &store, "next", 100, Durability::Group).await;
            journaled.unwrap_or_else(|e| panic!("{step:?} {fail:?}: the next append failed: {e}"));
            acknowledged.push(("next".to_owned(), 100, receipts));
        }
        drop(table);
        drop(store);
        let after = dir.path().join("after");
        fs.power_loss(&data, &after, Unsynced::Lost).unwrap();
        let store = Store::open(&after, StoreOptions::default()).unwrap();
        let restarted = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        let loaded = restarted
            .open_journal(std_fs(), &after.join(IDEMPOTENCY_JOURNAL_NAME), &store)
            .unwrap();
        assert_eq!(loaded.damaged, 0, "{step:?} {fail:?}: {loaded:?}");
        for (key, i, receipts) in &acknowledged {
            match restarted
                .begin("p", key, [u8::try_from(i % 251).unwrap(); 32])
                .await
            {
                Begin::Replay {
                    receipts: r,
                    journaled: true,
                } => assert_eq!(*r, **receipts),
                _ => panic!("{step:?} {fail:?}: the acknowledged key {key} was lost"),
            }
        }
        calls
    }

    /// The line of a batch that failed after its line was synced is gone
    /// after the next background compaction, which its failure made due.
    #[tokio::test]
    async fn a_failed_batchs_line_is_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("log"), StoreOptions::default()).unwrap();
        let path = dir.path().join("idempotency.log");
        let table = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        table.open_journal(std_fs(), &path, &store).unwrap();
        ingest(&table, &store, "kept", 1).await.1.unwrap();
        let Begin::Proceed(slot) = table.begin("p", "failed", [2; 32]).await else {
            panic!("the key is new");
        };
        let appending = store.append_batch_async_with([event(2)], Durability::Group);
        let queued = appending.queued_receipts().unwrap().to_vec();
        table
            .journal_batch_async("p", "failed", &[2; 32], &queued)
            .await
            .unwrap();
        // The batch failed: the route drops its slot and forgets the line.
        drop(slot);
        table.forget_line("p", "failed");
        assert!(table.compact_journal().unwrap(), "a compaction is due");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"kept\""), "{text}");
        drop(appending);
    }

    /// A store in `data` on a filesystem that can lose power, and a table of
    /// at most `max_keys` keys journaled there.
    fn on_power_loss_fs(data: &Path, max_keys: usize) -> (Arc<FaultFs>, Store, Arc<Idempotency>) {
        let fs = Arc::new(FaultFs::with_power_loss());
        let options = StoreOptions {
            fs: fs.clone(),
            durability: Durability::Group,
            // The power-loss filesystem keeps unsynced bytes in memory:
            // no zero-filled segment.
            preallocation: sealog::Preallocation::None,
            segment_size: 1 << 20,
            ..StoreOptions::default()
        };
        let store = Store::open(data, options).unwrap();
        let path = data.join(IDEMPOTENCY_JOURNAL_NAME);
        let table = Arc::new(Idempotency::new(
            max_keys,
            10_000,
            Duration::from_secs(3600),
        ));
        table.open_journal(fs.clone(), &path, &store).unwrap();
        (fs, store, table)
    }

    /// A keyed batch's line is synced while its commit group is: if the
    /// power goes after the line's sync and before the group's, the
    /// restarted server finds a line whose records are past the log's end.
    /// That batch was never acknowledged: its key is forgotten (a retry
    /// writes it), counted apart, not reported as damage, and the rewritten
    /// journal drops it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_line_synced_before_its_batch_is_forgotten_as_unacknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (fs, store, table) = on_power_loss_fs(&data, 100);
        let path = data.join(IDEMPOTENCY_JOURNAL_NAME);
        let (kept, journaled) = ingest_with(&table, &store, "durable", 1, Durability::Group).await;
        journaled.unwrap();
        // Queued, its line synced, its group not yet.
        let Begin::Proceed(slot) = table.begin("p", "lost", [2; 32]).await else {
            panic!("the key is new");
        };
        let appending = store.append_batch_async_with([event(2), event(2)], Durability::Buffered);
        let queued = appending.queued_receipts().unwrap().to_vec();
        table
            .journal_batch_async("p", "lost", &[2; 32], &queued)
            .await
            .unwrap();
        assert!(fs.unsynced_bytes(&path) == 0, "the line is synced");
        drop(slot);
        fs.crash();
        drop(appending);
        drop(table);
        drop(store);
        let after = dir.path().join("after");
        fs.power_loss(&data, &after, Unsynced::Lost).unwrap();
        let store = Store::open(&after, StoreOptions::default()).unwrap();
        assert_eq!(store.len(), 2, "the second batch was never synced");
        let restarted = Arc::new(Idempotency::new(100, 10_000, Duration::from_secs(3600)));
        let journal = after.join(IDEMPOTENCY_JOURNAL_NAME);
        let loaded = restarted.open_journal(std_fs(), &journal, &store).unwrap();
        assert_eq!(
            (loaded.keys, loaded.unacknowledged, loaded.damaged),
            (1, 1, 0),
            "{loaded:?}"
        );
        match restarted.begin("p", "durable", [1; 32]).await {
            Begin::Replay { receipts, .. } => assert_eq!(receipts, kept),
            _ => panic!("the acknowledged key is remembered"),
        }
        assert!(
            matches!(
                restarted.begin("p", "lost", [2; 32]).await,
                Begin::Proceed(_)
            ),
            "the unacknowledged key is forgotten"
        );
        let text = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"durable\""), "{text}");
    }

    const IDEMPOTENCY_JOURNAL_NAME: &str = crate::IDEMPOTENCY_JOURNAL;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_failing_call_of_the_journal_leaves_every_acknowledged_key_durable() {
        for step in [Step::Append, Step::Compact] {
            let calls = journal_case(step, None).await;
            assert!(
                calls.iter().all(|c| c.path.ends_with("idempotency.log")
                    || c.path.ends_with("idempotency.log.tmp")
                    || c.op == Op::SyncDir),
                "{step:?} touches only the journal: {calls:?}"
            );
            match step {
                Step::Append => assert_eq!(
                    calls.iter().map(|c| c.op).collect::<Vec<_>>(),
                    [Op::Write, Op::SyncData],
                    "an append writes and syncs its line"
                ),
                Step::Compact => assert!(
                    [Op::Create, Op::Rename, Op::SyncDir]
                        .iter()
                        .all(|op| calls.iter().any(|c| c.op == *op)),
                    "{calls:?}"
                ),
            }
            for n in 0..calls.len() as u64 {
                for fault in [Fault::Io, Fault::NoSpace, Fault::ShortWrite] {
                    journal_case(step, Some((n, Some(fault)))).await;
                }
                journal_case(step, Some((n, None))).await;
            }
        }
    }
}
