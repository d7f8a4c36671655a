//! The client's errors.
//!
//! Each says whether retrying could help: [`Error::is_retryable`] is true
//! only for the errors the client retries by itself (and reports, once it
//! gives up, inside [`Error::GaveUp`]).

use std::time::Duration;

/// What went wrong with one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventError {
    /// Position of the event in the batch the server refused, from 0 (for
    /// [`Client::append_batch`](crate::Client::append_batch); `None` for an
    /// event sent through the batcher or checked before sending).
    pub index: Option<usize>,
    /// The JSON path of the offending field (`actor.id`, `metadata.password`;
    /// empty for the whole event).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(i) = self.index {
            write!(f, "event {i}: ")?;
        }
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "`{}` {}", self.field, self.reason)
        }
    }
}

/// Everything that can go wrong.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was configured wrongly (a bad URL, an unreadable CA file).
    #[error("client configuration: {0}")]
    Config(String),
    /// The event breaks a rule of the event model; it was not sent, or the
    /// server refused it. Fix the event: sending it again cannot help.
    #[error("invalid event, not recorded: {0}")]
    InvalidEvent(EventError),
    /// The server refused the batch because of the events listed (`400
    /// invalid_events`); nothing of the batch was written.
    #[error("{message} ({})", list(.errors))]
    InvalidEvents {
        /// The server's message.
        message: String,
        /// Each invalid event, with its index in the batch.
        errors: Vec<EventError>,
    },
    /// The server refused the request for a reason retrying cannot fix: a
    /// missing, invalid or revoked token (401), a missing scope or another
    /// tenant (403), a batch too large (413), a reused idempotency key
    /// (422). Nothing was written.
    #[error("the server refused the request: {status} {code}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's error code (`invalid_token`, `batch_too_large`, ...).
        code: String,
        /// The server's message, which says what to do.
        message: String,
    },
    /// The server could not take the request now (`429`, `503`, `507`,
    /// another `5xx`, or `408`). Retried by the client.
    #[error("the server answered {status} {code}: {message}")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// The server's error code (`ingest_saturated`, `storage_full`, ...).
        code: String,
        /// The server's message.
        message: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The server could not be reached, or the connection failed before an
    /// answer arrived. Retried by the client (with the same idempotency
    /// key, so a batch the server wrote before the connection failed is not
    /// written twice).
    #[error("{url}: {message}")]
    Transport {
        /// The URL of the request.
        url: String,
        /// What failed, with its causes.
        message: String,
    },
    /// The TLS handshake with the server failed: its certificate is not
    /// trusted (give the CA with `ca_certificate_file`), is for another name,
    /// or the server does not speak TLS. Not retried: the configuration must
    /// change.
    #[error("{url}: TLS: {message}")]
    Tls {
        /// The URL of the request.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server answered success with a body that is not what the API
    /// specifies (a wrong count of receipts, say). The batch was probably
    /// written; it is not sent again.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Retrying a request did not succeed within the retry policy's time.
    /// Nothing of the batch was acknowledged.
    #[error("gave up after {attempts} attempt(s) in {:.1} s; the last error: {last}", elapsed.as_secs_f64())]
    GaveUp {
        /// Requests made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last attempt's error.
        last: Box<Error>,
    },
    /// The batcher's queue is full ([`Batcher::try_send`](crate::Batcher::try_send)).
    #[error(
        "the audit queue is full ({capacity} events waiting for the server); use `send`, which \
         waits for room, or raise `queue_capacity`"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The batcher was closed, or stopped before the event was settled (its
    /// runtime shut down): the event may or may not have been written.
    #[error("the batcher is closed: {0}")]
    Closed(&'static str),
}

impl Error {
    /// Whether the client retries this error by itself.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Transport { .. })
    }

    /// Whether the server refused the batch as too large (`413`), so that
    /// sending it in smaller parts can succeed.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::Rejected { status: 413, code, .. }
            if code == "batch_too_large" || code == "too_many_events" || code == "body_too_large")
    }

    /// The HTTP status of a refusal, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Rejected { status, .. } | Error::Unavailable { status, .. } => Some(*status),
            Error::InvalidEvents { .. } | Error::InvalidEvent(_) => Some(400),
            Error::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}

fn list(errors: &[EventError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate().take(8) {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&e.to_string());
    }
    if errors.len() > 8 {
        out.push_str(&format!("; and {} more", errors.len() - 8));
    }
    out
}
