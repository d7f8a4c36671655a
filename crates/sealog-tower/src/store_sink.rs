//! [`StoreSink`]: events into an embedded [`sealog::Store`], written by a
//! thread of its own so that no async task ever waits on `fdatasync`.
//!
//! Requests put their events on a bounded queue; the writer thread takes
//! everything queued (up to [`StoreSinkOptions::max_batch`] events) and
//! appends it as one batch, then answers each event with its receipt. A
//! batch is atomic in the store, so one invalid event would fail the
//! others: the writer answers the invalid events with their errors and
//! appends the rest again. After a failed write the store refuses writes
//! until it is reopened, and the sink reports it in
//! [`AuditSink::health`](crate::AuditSink::health), which the layer's
//! `FailClosed` policy checks before running a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use sealog::Store;
use sealog_format::Event;
use tokio::sync::{mpsc, oneshot, watch};

use crate::sink::{AuditSink, BoxFuture, Durable, Receipt, SinkError, SinkErrorKind, Unrecorded};

/// How a [`StoreSink`] queues and batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSinkOptions {
    /// Events waiting for the writer thread at most (default 10,000).
    pub queue_capacity: usize,
    /// Events appended in one batch at most (default 1,000).
    pub max_batch: usize,
}

impl Default for StoreSinkOptions {
    fn default() -> Self {
        StoreSinkOptions {
            queue_capacity: 10_000,
            max_batch: 1_000,
        }
    }
}

/// Records events into an embedded store from a writer thread. Cheap to
/// clone: clones share the queue and the thread.
///
/// ```no_run
/// use sealog::{Store, StoreOptions};
/// use sealog_tower::{AuditConfig, AuditLayer, FailurePolicy, StoreSink};
///
/// let store = Store::open("./audit", StoreOptions::default())?;
/// let layer = AuditLayer::new(StoreSink::new(store)?, AuditConfig::new(FailurePolicy::FailOpen));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StoreSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// Taken out by `close`: the queue closes when the last clone (held by a
    /// `submit` in progress) is gone.
    tx: Mutex<Option<mpsc::Sender<Item>>>,
    /// Turns true when the writer thread has answered everything and let go
    /// of the store.
    stopped: watch::Receiver<bool>,
    state: Arc<State>,
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Set by a failed write: the store refuses writes until reopened.
    failing: Mutex<Option<String>>,
    closed: AtomicBool,
    queued: AtomicU64,
    appended: AtomicU64,
    batches: AtomicU64,
    failed: AtomicU64,
}

struct Item {
    event: Event,
    reply: oneshot::Sender<Result<Receipt, SinkError>>,
}

/// Counters of a [`StoreSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreSinkMetrics {
    /// Events waiting for the writer (a gauge).
    pub queued: u64,
    /// Events appended durably.
    pub appended: u64,
    /// Batches appended.
    pub batches: u64,
    /// Events that were not appended (invalid, or a failed write).
    pub failed: u64,
}

impl StoreSink {
    /// A sink on `store` with the default options, and its writer thread.
    pub fn new(store: Store) -> std::io::Result<StoreSink> {
        StoreSink::with_options(store, StoreSinkOptions::default())
    }

    /// A sink on `store`, and its writer thread.
    pub fn with_options(store: Store, options: StoreSinkOptions) -> std::io::Result<StoreSink> {
        let capacity = options.queue_capacity.max(1);
        let max_batch = options.max_batch.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let state = Arc::new(State::default());
        let thread_state = state.clone();
        let (stop_tx, stopped) = watch::channel(false);
        std::thread::Builder::new()
            .name("sealog-audit-writer".into())
            .spawn(move || {
                write_loop(store, rx, &thread_state, max_batch);
                let _ = stop_tx.send(true);
            })?;
        Ok(StoreSink {
            shared: Arc::new(Shared {
                tx: Mutex::new(Some(tx)),
                stopped,
                state,
                capacity,
            }),
        })
    }

    /// Stops taking events, appends everything queued, and waits until the
    /// writer thread has answered every event and let go of its store
    /// handle.
    pub async fn close(&self) {
        self.shared.state.closed.store(true, Ordering::SeqCst);
        drop(self.shared.tx.lock().take());
        let mut stopped = self.shared.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> StoreSinkMetrics {
        let s = &self.shared.state;
        StoreSinkMetrics {
            queued: s.queued.load(Ordering::Relaxed),
            appended: s.appended.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }

    #[allow(clippy::type_complexity, reason = "a private triple")]
    fn item(&self, event: Event) -> Result<(mpsc::Sender<Item>, Item, Durable), Unrecorded> {
        let tx = self.shared.tx.lock().clone();
        let Some(tx) = tx.filter(|_| !self.shared.state.closed.load(Ordering::SeqCst)) else {
            return Err(closed(event));
        };
        let (reply, rx) = oneshot::channel();
        let durable = Durable::new(async move {
            rx.await.unwrap_or_else(|_| {
                Err(SinkError::new(
                    SinkErrorKind::Closed,
                    "the audit writer thread stopped before answering",
                ))
            })
        });
        Ok((tx, Item { event, reply }, durable))
    }
}

fn closed(event: Event) -> Unrecorded {
    Unrecorded {
        error: SinkError::new(SinkErrorKind::Closed, "the audit sink is closed"),
        event: Box::new(event),
    }
}

impl AuditSink for StoreSink {
    fn submit(&self, event: Event) -> BoxFuture<Result<Durable, Unrecorded>> {
        let this = self.clone();
        Box::pin(async move {
            let (tx, item, durable) = this.item(event)?;
            let state = &this.shared.state;
            state.queued.fetch_add(1, Ordering::Relaxed);
            match tx.send(item).await {
                Ok(()) => Ok(durable),
                Err(mpsc::error::SendError(item)) => {
                    sub(&state.queued, 1);
                    Err(closed(item.event))
                }
            }
        })
    }

    fn try_submit(&self, event: Event) -> Result<Durable, Unrecorded> {
        let (tx, item, durable) = self.item(event)?;
        let state = &self.shared.state;
        state.queued.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(item) {
            Ok(()) => Ok(durable),
            Err(e) => {
                sub(&state.queued, 1);
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                let item = e.into_inner();
                if full {
                    Err(Unrecorded {
                        error: SinkError::new(
                            SinkErrorKind::Full,
                            format!(
                                "the audit queue is full ({} events waiting for the store)",
                                self.shared.capacity
                            ),
                        ),
                        event: Box::new(item.event),
                    })
                } else {
                    Err(closed(item.event))
                }
            }
        }
    }

    fn health(&self) -> Result<(), SinkError> {
        let open = self
            .shared
            .tx
            .lock()
            .as_ref()
            .is_some_and(|tx| !tx.is_closed());
        if !open || self.shared.state.closed.load(Ordering::SeqCst) {
            return Err(SinkError::new(
                SinkErrorKind::Closed,
                "the audit sink is closed",
            ));
        }
        match &*self.shared.state.failing.lock() {
            Some(cause) => Err(SinkError::new(SinkErrorKind::Failed, cause.clone())),
            None => Ok(()),
        }
    }
}

fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

/// The writer thread: see the module documentation. Ends once the queue is
/// closed (by `close`, or every sink handle dropped) and drained.
fn write_loop(store: Store, mut rx: mpsc::Receiver<Item>, state: &State, max_batch: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        sub(&state.queued, batch.len() as u64);
        append(&store, batch, state);
    }
}

fn append(store: &Store, mut batch: Vec<Item>, state: &State) {
    loop {
        match store.append_batch(batch.iter().map(|i| &i.event)) {
            Ok(receipts) => {
                state
                    .appended
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                state.batches.fetch_add(1, Ordering::Relaxed);
                *state.failing.lock() = None;
                for (item, r) in batch.into_iter().zip(receipts) {
                    let receipt = Receipt::new(r.seq, r.recorded_at, r.leaf_hash, r.chain_hash);
                    let _ = item.reply.send(Ok(receipt));
                }
                return;
            }
            Err(sealog::Error::InvalidBatch(errors)) => {
                // Nothing was written: answer the invalid events, append
                // the others again.
                let mut invalid: Vec<(usize, String)> = errors
                    .iter()
                    .map(|e| (e.index, e.error.to_string()))
                    .collect();
                invalid.sort_by_key(|e| std::cmp::Reverse(e.0));
                invalid.dedup_by_key(|e| e.0);
                for (index, message) in invalid {
                    if index < batch.len() {
                        let item = batch.remove(index);
                        fail(state, item, SinkError::new(SinkErrorKind::Invalid, message));
                    }
                }
                if batch.is_empty() {
                    return;
                }
            }
            Err(sealog::Error::InvalidEvent(e)) => {
                for item in batch {
                    fail(
                        state,
                        item,
                        SinkError::new(SinkErrorKind::Invalid, e.to_string()),
                    );
                }
                return;
            }
            Err(sealog::Error::BatchTooLarge { .. }) if batch.len() > 1 => {
                let second = batch.split_off(batch.len() / 2);
                append(store, batch, state);
                append(store, second, state);
                return;
            }
            Err(e) => {
                let message = format!("the audit store did not record the event: {e}");
                if e.is_write_refusal() || e.io_kind().is_some() {
                    *state.failing.lock() = Some(message.clone());
                }
                tracing::error!(events = batch.len(), error = %e, "sealog: audit events not recorded");
                for item in batch {
                    fail(
                        state,
                        item,
                        SinkError::new(SinkErrorKind::Failed, message.clone()),
                    );
                }
                return;
            }
        }
    }
}

/// Answers one event with an error; logs the event whole if nobody waits
/// for the answer.
fn fail(state: &State, item: Item, error: SinkError) {
    state.failed.fetch_add(1, Ordering::Relaxed);
    if item.reply.is_closed() {
        tracing::error!(
            event = %serde_json::to_string(&item.event).unwrap_or_default(),
            error = %error,
            "sealog: audit event not recorded"
        );
    }
    let _ = item.reply.send(Err(error));
}
