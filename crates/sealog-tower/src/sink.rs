//! [`AuditSink`]: where the layer's events go, and what it hands back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sealog_format::{Event, Hash, Timestamp};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where the layer records its events: an embedded store ([`StoreSink`],
/// feature `store`) or a sealog server (`sealog_client::Batcher`, feature
/// `client`).
///
/// A sink queues events (bounded) and writes them in the background; the
/// [`Durable`] it returns for each event resolves once that event is on
/// stable storage. A sink answers every event it queued, with a receipt or
/// an error, and logs (at error level, whole) every event that failed while
/// nobody waited for its [`Durable`]: events hold no secrets, and the log
/// line is then the only trace of it.
///
/// [`StoreSink`]: crate::StoreSink
pub trait AuditSink: Send + Sync + 'static {
    /// Queues `event`, waiting while the queue is full.
    fn submit(&self, event: Event) -> BoxFuture<Result<Durable, Unrecorded>>;

    /// Queues `event` if there is room now.
    fn try_submit(&self, event: Event) -> Result<Durable, Unrecorded>;

    /// An error while the sink is known to be unable to record (its store
    /// refuses writes, it was closed). The layer's `FailClosed` policy
    /// refuses a request before running it while this is an error, so that
    /// an action is not taken when it cannot be recorded.
    fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The durability of one queued event: resolves to its [`Receipt`] once it
/// is on stable storage, or to the error that kept it from there. Dropping
/// it does not cancel the event.
#[must_use = "an event is durable only once this resolves; drop it to not wait"]
pub struct Durable(BoxFuture<Result<Receipt, SinkError>>);

impl Durable {
    /// Wraps a future that resolves when the event is durable.
    pub fn new(
        future: impl Future<Output = Result<Receipt, SinkError>> + Send + 'static,
    ) -> Durable {
        Durable(Box::pin(future))
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Durable")
    }
}

impl Future for Durable {
    type Output = Result<Receipt, SinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// An event the sink did not queue, given back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Unrecorded {
    /// Why.
    pub error: SinkError,
    /// The event.
    pub event: Box<Event>,
}

/// Why an event was not recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    kind: SinkErrorKind,
    message: String,
}

/// The kind of a [`SinkError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkErrorKind {
    /// The queue is full.
    Full,
    /// The sink was closed.
    Closed,
    /// The event breaks a rule of the event model (a bad actor type from an
    /// extractor, say): fix the code that builds it.
    Invalid,
    /// Writing failed (the store refuses writes, the server is unreachable
    /// or refused the event).
    Failed,
    /// The layer's wait for the queue or for durability ran out.
    TimedOut,
}

impl SinkError {
    /// An error of the given kind.
    pub fn new(kind: SinkErrorKind, message: impl Into<String>) -> SinkError {
        SinkError {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }
}

/// The acknowledgement of one durable event: its place in the log and the
/// hashes that commit to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Receipt {
    /// The event's sequence number.
    pub seq: u64,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
    /// `SHA-256(0x00 ‖ record bytes)`: the event's RFC 9162 Merkle leaf.
    pub leaf_hash: Hash,
    /// The BLAKE3 chain value after the event.
    pub chain_hash: Hash,
}

impl Receipt {
    /// A receipt from its parts.
    pub fn new(seq: u64, recorded_at: Timestamp, leaf_hash: Hash, chain_hash: Hash) -> Receipt {
        Receipt {
            seq,
            recorded_at,
            leaf_hash,
            chain_hash,
        }
    }
}
