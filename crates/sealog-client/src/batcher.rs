//! [`Batcher`]: a bounded queue in front of a background task that sends
//! events in batches and hands each caller its own receipt.
//!
//! The task owns the queue's receiving end. It fills a batch until it holds
//! [`BatchOptions::max_batch_events`] events or
//! [`BatchOptions::max_batch_bytes`] bytes, or its first event has waited
//! [`BatchOptions::linger`], then sends it from a task of its own (at most
//! [`BatchOptions::max_in_flight`] at once). While every slot is busy it
//! stops taking events, so the queue fills and senders wait: that is the
//! backpressure. Each event's caller holds a oneshot receiver
//! ([`PendingReceipt`]) that the batch's task answers with the event's
//! receipt or error; an invalid event fails alone, and a batch the server
//! finds too large is split.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use sealog_format::Event;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Error, EventError};
use crate::metrics::{Counters, Metrics};
use crate::receipt::Receipt;
use crate::transport::{Client, encode_line};

/// How a [`Batcher`] queues and groups events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Events the queue holds before [`Batcher::send`] waits and
    /// [`Batcher::try_send`] fails (default 10,000).
    pub queue_capacity: usize,
    /// Events per request at most (default 1,000; the server takes up to
    /// 10,000 by default).
    pub max_batch_events: usize,
    /// A batch is sent once its NDJSON reaches this many bytes (default
    /// 4 MiB; the server takes bodies up to 16 MiB by default).
    pub max_batch_bytes: usize,
    /// How long the first event of a batch waits for others before the
    /// batch is sent (default 10 ms): the latency a lone event pays for
    /// batching.
    pub linger: Duration,
    /// Batches being sent (or retried) at once (default 4). The server
    /// commits concurrent batches with one `fdatasync`.
    pub max_in_flight: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            queue_capacity: 10_000,
            max_batch_events: 1_000,
            max_batch_bytes: 4 << 20,
            linger: Duration::from_millis(10),
            max_in_flight: 4,
        }
    }
}

/// Sends events in batches from a background task. Cheap to clone: clones
/// share the queue. How batches are formed and sent: the [crate documentation](crate).
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("client", &self.shared.client)
            .field("capacity", &self.shared.capacity)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

struct Shared {
    client: Client,
    tx: mpsc::Sender<Msg>,
    closed: AtomicBool,
    capacity: usize,
}

enum Msg {
    Event(Queued),
    /// Answered once every event queued before it is settled.
    Flush(oneshot::Sender<()>),
    /// Like a flush, and the task stops taking events.
    Close(oneshot::Sender<()>),
}

struct Queued {
    /// The event as one NDJSON line.
    line: Vec<u8>,
    reply: oneshot::Sender<Result<Receipt, Error>>,
}

/// An event that was not queued, given back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// Why the event was not queued: [`Error::InvalidEvent`],
    /// [`Error::QueueFull`] or [`Error::Closed`].
    pub error: Error,
    /// The event.
    pub event: Box<Event>,
}

/// The receipt of a queued event, once it is durable: a future that
/// resolves to the event's [`Receipt`], or the error that ended its batch.
/// Dropping it does not cancel the event.
#[derive(Debug)]
#[must_use = "an event is durable only once its receipt arrives; drop it to not wait"]
pub struct PendingReceipt {
    rx: oneshot::Receiver<Result<Receipt, Error>>,
}

impl Future for PendingReceipt {
    type Output = Result<Receipt, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Closed(
                "the batcher stopped (its runtime shut down) before this event was \
                 acknowledged: it may or may not have been written",
            ))),
        }
    }
}

impl Batcher {
    pub(crate) fn spawn(client: Client, options: BatchOptions) -> Result<Batcher, Error> {
        for (name, value) in [
            ("queue_capacity", options.queue_capacity),
            ("max_batch_events", options.max_batch_events),
            ("max_batch_bytes", options.max_batch_bytes),
            ("max_in_flight", options.max_in_flight),
        ] {
            if value == 0 {
                return Err(Error::Config(format!(
                    "BatchOptions::{name} must be at least 1"
                )));
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config(
                "a batcher sends from a task of the tokio runtime it is made on: call \
                 `Client::batcher` inside one"
                    .into(),
            )
        })?;
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let capacity = options.queue_capacity;
        runtime.spawn(run(client.clone(), options, rx));
        Ok(Batcher {
            shared: Arc::new(Shared {
                client,
                tx,
                closed: AtomicBool::new(false),
                capacity,
            }),
        })
    }

    /// Queues `event`, waiting while the queue is full. Returns once the
    /// event is queued; the [`PendingReceipt`] resolves once it is durable.
    /// An invalid event is refused at once (checked with the client's
    /// validator).
    pub async fn send(&self, event: Event) -> Result<PendingReceipt, SendError> {
        let (queued, pending) = self.prepare(event)?;
        let counters = self.counters();
        Counters::add(&counters.queued, 1);
        match self.shared.tx.send(Msg::Event(queued.0)).await {
            Ok(()) => Ok(pending),
            Err(_) => {
                Counters::sub(&counters.queued, 1);
                Err(SendError {
                    error: Error::Closed("no new events are taken"),
                    event: Box::new(queued.1),
                })
            }
        }
    }

    /// Queues `event` if there is room, else fails at once with
    /// [`Error::QueueFull`] (giving the event back).
    pub fn try_send(&self, event: Event) -> Result<PendingReceipt, SendError> {
        let (queued, pending) = self.prepare(event)?;
        let counters = self.counters();
        Counters::add(&counters.queued, 1);
        match self.shared.tx.try_send(Msg::Event(queued.0)) {
            Ok(()) => Ok(pending),
            Err(e) => {
                Counters::sub(&counters.queued, 1);
                let error = match e {
                    mpsc::error::TrySendError::Full(_) => Error::QueueFull {
                        capacity: self.shared.capacity,
                    },
                    mpsc::error::TrySendError::Closed(_) => {
                        Error::Closed("no new events are taken")
                    }
                };
                Err(SendError {
                    error,
                    event: Box::new(queued.1),
                })
            }
        }
    }

    /// Queues `event` and waits until it is durable.
    pub async fn append(&self, event: Event) -> Result<Receipt, Error> {
        self.send(event).await.map_err(|e| e.error)?.await
    }

    /// Waits until every event queued before this call is settled (durable,
    /// or failed and answered).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops taking events, sends everything queued, and waits until every
    /// event is settled. Later sends fail with [`Error::Closed`]. Call it at
    /// shutdown: events still queued when the process exits are lost.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Whether [`Batcher::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) || self.shared.tx.is_closed()
    }

    /// The queue's capacity in events.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// A snapshot of the counters (shared with the client and its other
    /// batchers).
    pub fn metrics(&self) -> Metrics {
        self.shared.client.metrics()
    }

    /// The client the batcher sends with.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    fn counters(&self) -> &Counters {
        &self.shared.client.inner.counters
    }

    #[allow(clippy::type_complexity, reason = "a private pair of halves")]
    fn prepare(&self, event: Event) -> Result<((Queued, Event), PendingReceipt), SendError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(SendError {
                error: Error::Closed("no new events are taken"),
                event: Box::new(event),
            });
        }
        if let Err(error) = self.shared.client.check(&event) {
            return Err(SendError {
                error,
                event: Box::new(event),
            });
        }
        let mut line = Vec::with_capacity(320);
        if let Err(error) = encode_line(&event, &mut line) {
            return Err(SendError {
                error,
                event: Box::new(event),
            });
        }
        let (reply, rx) = oneshot::channel();
        Ok(((Queued { line, reply }, event), PendingReceipt { rx }))
    }
}

/// The batcher's task: see the module documentation.
async fn run(client: Client, options: BatchOptions, mut rx: mpsc::Receiver<Msg>) {
    let counters = &client.inner.counters;
    let mut batch: Vec<Queued> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    // Send the current batch as soon as a slot is free (a flush asked).
    let mut urgent = false;
    let mut sending: JoinSet<u64> = JoinSet::new();
    let mut task_ids: HashMap<tokio::task::Id, u64> = HashMap::new();
    let mut running: BTreeSet<u64> = BTreeSet::new();
    let mut next_id: u64 = 0;
    // (n, waiter): answered once batches 0..n are all settled.
    let mut waiters: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
    let mut input_open = true;
    let full = |events: usize, bytes: usize| {
        events >= options.max_batch_events || bytes >= options.max_batch_bytes
    };

    loop {
        let slot_free = sending.len() < options.max_in_flight;
        let due = urgent
            || !input_open
            || full(batch.len(), batch_bytes)
            || deadline.is_some_and(|d| d <= Instant::now());
        if !batch.is_empty() && slot_free && due {
            let items = std::mem::take(&mut batch);
            let n = items.len() as u64;
            Counters::sub(&counters.queued, n);
            Counters::add(&counters.in_flight, n);
            let id = next_id;
            next_id += 1;
            running.insert(id);
            let handle = sending.spawn(deliver(client.clone(), items, id));
            task_ids.insert(handle.id(), id);
            batch_bytes = 0;
            deadline = None;
            urgent = false;
            continue;
        }
        if !input_open && batch.is_empty() && sending.is_empty() {
            break;
        }
        let can_take = input_open && !full(batch.len(), batch_bytes);
        let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            done = sending.join_next_with_id(), if !sending.is_empty() => {
                let task = match done {
                    Some(Ok((task, _))) => Some(task),
                    Some(Err(e)) => {
                        // The batch's replies were dropped with its task:
                        // its callers get `Error::Closed`.
                        tracing::error!(error = %e, "sealog: a batch's task failed");
                        Some(e.id())
                    }
                    None => None,
                };
                if let Some(id) = task.and_then(|t| task_ids.remove(&t)) {
                    running.remove(&id);
                }
            }
            () = tokio::time::sleep_until(sleep_until), if deadline.is_some() && slot_free => {}
            msg = rx.recv(), if can_take => match msg {
                None => input_open = false,
                Some(Msg::Event(q)) => {
                    if batch.is_empty() {
                        deadline = Some(Instant::now() + options.linger);
                    }
                    batch_bytes += q.line.len();
                    batch.push(q);
                }
                Some(Msg::Flush(tx)) => {
                    let n = if batch.is_empty() { next_id } else { next_id + 1 };
                    urgent |= !batch.is_empty();
                    waiters.push((n, tx));
                }
                Some(Msg::Close(tx)) => {
                    // Take what is already queued, then nothing more.
                    rx.close();
                    let n = if batch.is_empty() { next_id } else { next_id + 1 };
                    urgent |= !batch.is_empty();
                    waiters.push((n, tx));
                }
            },
        }
        // Answer waiters whose batches are all settled.
        let mut i = 0;
        while i < waiters.len() {
            let done = waiters
                .get(i)
                .is_some_and(|(n, _)| *n <= next_id && running.range(..*n).next().is_none());
            if done {
                let (_, tx) = waiters.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
    }
    for (_, tx) in waiters {
        let _ = tx.send(());
    }
}

/// Sends one batch (splitting it if the server asks) and answers each
/// event's caller.
async fn deliver(client: Client, items: Vec<Queued>, id: u64) -> u64 {
    let counters = &client.inner.counters;
    let mut work = vec![items];
    while let Some(mut items) = work.pop() {
        let size = items.iter().map(|q| q.line.len()).sum();
        let mut body = Vec::with_capacity(size);
        for q in &items {
            body.extend_from_slice(&q.line);
        }
        match client.submit(Bytes::from(body), items.len()).await {
            Ok(ack) => {
                let n = items.len() as u64;
                Counters::sub(&counters.in_flight, n);
                Counters::add(&counters.sent, n);
                for (q, receipt) in items.into_iter().zip(ack.receipts) {
                    let _ = q.reply.send(Ok(receipt));
                }
            }
            // Nothing of the batch was written: the invalid events fail
            // alone and the others go again, as a new batch (new key).
            Err(Error::InvalidEvents { errors, message })
                if !errors.is_empty()
                    && errors
                        .iter()
                        .all(|e| e.index.is_some_and(|i| i < items.len())) =>
            {
                let mut bad: BTreeMap<usize, EventError> = BTreeMap::new();
                for e in errors {
                    if let Some(i) = e.index {
                        bad.entry(i).or_insert(e);
                    }
                }
                let mut rest = Vec::new();
                for (i, q) in items.into_iter().enumerate() {
                    match bad.remove(&i) {
                        Some(mut e) => {
                            e.index = None;
                            fail(counters, q, Error::InvalidEvent(e));
                        }
                        None => rest.push(q),
                    }
                }
                if !rest.is_empty() {
                    tracing::warn!(
                        refused = %message,
                        resent = rest.len(),
                        "sealog: a batch held invalid events; sending the valid ones again"
                    );
                    work.push(rest);
                }
            }
            Err(e) if e.is_too_large() && items.len() > 1 => {
                let second = items.split_off(items.len() / 2);
                work.push(second);
                work.push(items);
            }
            Err(e) => {
                tracing::error!(
                    events = items.len(),
                    error = %e,
                    "sealog: a batch of audit events was not recorded"
                );
                for q in items {
                    fail(counters, q, e.clone());
                }
            }
        }
    }
    id
}

/// Answers one event with an error. An event nobody waits for any more is
/// logged whole (events hold no secrets): the log line is then the only
/// trace of it.
fn fail(counters: &Counters, q: Queued, error: Error) {
    Counters::sub(&counters.in_flight, 1);
    Counters::add(&counters.failed, 1);
    if q.reply.is_closed() {
        tracing::error!(
            event = %String::from_utf8_lossy(&q.line).trim_end(),
            error = %error,
            "sealog: audit event not recorded"
        );
    }
    let _ = q.reply.send(Err(error));
}
