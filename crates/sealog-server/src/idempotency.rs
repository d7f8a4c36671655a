//! `Idempotency-Key`: a retried batch gets the original receipts instead
//! of being written twice.
//!
//! Keys are scoped to the principal (two tokens may use the same key) and
//! remembered in memory, bounded by count, by the receipts they hold and
//! by age (defaults: 100,000 keys, 1,000,000 receipts, 24 h); the oldest
//! are forgotten first. They do not survive a restart of the server: a
//! client that retries across a restart may write a batch twice (see
//! docs/api.md). A request whose key is in flight waits for the first
//! one's result; the same key with a different body is refused (422). Only
//! successful batches are remembered: a refused batch wrote nothing, so
//! its retry is simply tried again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sealog::Receipt;
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
                    },
                );
                table.order.push_back((key, now));
                self.evict(&mut table);
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

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// True if no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
