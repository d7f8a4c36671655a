//! [`Client`]: one request per batch, retried with its idempotency key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use sealog_format::{Event, Validator};
use serde::Deserialize;

use crate::batcher::{BatchOptions, Batcher};
use crate::config::{ClientBuilder, RetryPolicy};
use crate::error::{Error, EventError};
use crate::metrics::{Counters, Metrics};
use crate::receipt::{IngestAnswer, Receipt};

/// A client of one sealog server. Cheap to clone: clones share the
/// connection pool and the counters.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("events_url", &self.inner.events_url.as_str())
            .finish_non_exhaustive()
    }
}

pub(crate) struct ClientInner {
    http: reqwest::Client,
    events_url: reqwest::Url,
    authorization: Option<HeaderValue>,
    retry: RetryPolicy,
    pub validator: Option<Validator>,
    pub counters: Counters,
}

/// A batch the server acknowledged.
pub(crate) struct Acknowledged {
    pub receipts: Vec<Receipt>,
}

/// How one attempt ended, when it did not succeed.
enum Failed {
    /// Retrying can help (after the server's `Retry-After`, if any).
    Retry(Error, Option<Duration>),
    /// Retrying cannot help.
    Fatal(Error),
}

impl Client {
    /// A builder for a client of the server at `url` (its base URL, such as
    /// `https://audit.internal:7807`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    pub(crate) fn from_parts(
        http: reqwest::Client,
        events_url: reqwest::Url,
        builder: ClientBuilder,
    ) -> Result<Client, Error> {
        let authorization = match &builder.token {
            None => None,
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        Error::Config(
                            "the bearer token holds characters a header cannot carry (it is \
                         printable ASCII as `sealog token create` prints it)"
                                .into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Client {
            inner: Arc::new(ClientInner {
                http,
                events_url,
                authorization,
                retry: builder.retry,
                validator: builder.validator,
                counters: Counters::default(),
            }),
        })
    }

    /// The URL events are posted to.
    pub fn events_url(&self) -> &str {
        self.inner.events_url.as_str()
    }

    /// A snapshot of the counters of this client and its batchers.
    pub fn metrics(&self) -> Metrics {
        self.inner.counters.snapshot()
    }

    /// Records one event in its own request and returns its receipt once it
    /// is durable. Retried as the [`RetryPolicy`] says, with one
    /// idempotency key for every attempt.
    pub async fn append(&self, event: &Event) -> Result<Receipt, Error> {
        self.check(event)?;
        let mut receipts = self
            .append_batch(std::slice::from_ref(event))
            .await
            .map_err(|e| match e {
                Error::InvalidEvents { mut errors, .. } if errors.len() == 1 => {
                    let mut error = errors.remove(0);
                    error.index = None;
                    Error::InvalidEvent(error)
                }
                other => other,
            })?;
        receipts
            .pop()
            .ok_or_else(|| Error::Protocol("no receipt for the event".into()))
    }

    /// Records a batch in one request, all or nothing, and returns a receipt
    /// for each event, in order, once the batch is durable. An invalid event
    /// fails the whole batch with [`Error::InvalidEvents`] listing each
    /// invalid event by index; nothing is written then. The batch must fit
    /// the server's limits (10,000 events and 16 MiB by default): a larger
    /// one is refused with a `413` [`Error::Rejected`]
    /// ([`Error::is_too_large`]).
    pub async fn append_batch(&self, events: &[Event]) -> Result<Vec<Receipt>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut errors = Vec::new();
        for (index, event) in events.iter().enumerate() {
            if let Err(Error::InvalidEvent(mut e)) = self.check(event) {
                e.index = Some(index);
                errors.push(e);
            }
        }
        if !errors.is_empty() {
            return Err(Error::InvalidEvents {
                message: format!(
                    "{} invalid event(s) in the batch; nothing was sent",
                    errors.len()
                ),
                errors,
            });
        }
        let mut body = Vec::with_capacity(events.len() * 320);
        for event in events {
            encode_line(event, &mut body)?;
        }
        let counters = &self.inner.counters;
        Counters::add(&counters.in_flight, events.len() as u64);
        let result = self.submit(Bytes::from(body), events.len()).await;
        Counters::sub(&counters.in_flight, events.len() as u64);
        match result {
            Ok(ack) => {
                Counters::add(&counters.sent, events.len() as u64);
                Ok(ack.receipts)
            }
            Err(e) => {
                Counters::add(&counters.failed, events.len() as u64);
                Err(e)
            }
        }
    }

    /// A batcher sending this client's events in batches from a background
    /// task on the current tokio runtime (an error outside one).
    pub fn batcher(&self, options: BatchOptions) -> Result<Batcher, Error> {
        Batcher::spawn(self.clone(), options)
    }

    /// Checks an event against the configured validator.
    pub(crate) fn check(&self, event: &Event) -> Result<(), Error> {
        match &self.inner.validator {
            None => Ok(()),
            Some(v) => v.check_fields(event).map(|_| ()).map_err(|e| {
                Error::InvalidEvent(EventError {
                    index: None,
                    field: e.field().to_owned(),
                    reason: e.reason(),
                })
            }),
        }
    }

    /// Sends an NDJSON body of `count` events under a fresh idempotency key,
    /// retrying transient failures with the same key.
    pub(crate) async fn submit(&self, body: Bytes, count: usize) -> Result<Acknowledged, Error> {
        let key = idempotency_key();
        let retry = &self.inner.retry;
        let started = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let (error, retry_after) = match self.attempt(body.clone(), count, &key).await {
                Ok(ack) => return Ok(ack),
                Err(Failed::Fatal(e)) => return Err(e),
                Err(Failed::Retry(e, after)) => (e, after),
            };
            let elapsed = started.elapsed();
            let remaining = match retry.give_up_after {
                Some(limit) if elapsed >= limit => {
                    return Err(Error::GaveUp {
                        attempts,
                        elapsed,
                        last: Box::new(error),
                    });
                }
                Some(limit) => limit - elapsed,
                None => Duration::MAX,
            };
            let delay = match retry_after {
                Some(after) => {
                    after.min(retry.max_retry_after) + jitter(Duration::from_millis(250))
                }
                None => backoff(retry, attempts),
            }
            .min(remaining);
            Counters::add(&self.inner.counters.retried, 1);
            tracing::warn!(
                attempt = attempts,
                events = count,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "sealog: retrying a batch of audit events"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: Bytes, count: usize, key: &str) -> Result<Acknowledged, Failed> {
        let url = &self.inner.events_url;
        let mut request = self
            .inner
            .http
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header("idempotency-key", key)
            .body(body);
        if let Some(auth) = &self.inner.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let transport = |e: &reqwest::Error| Error::Transport {
            url: url.to_string(),
            message: describe(e),
        };
        let response = request.send().await.map_err(|e| {
            if is_tls_failure(&e) {
                Failed::Fatal(Error::Tls {
                    url: url.to_string(),
                    message: describe(&e),
                })
            } else {
                Failed::Retry(transport(&e), None)
            }
        })?;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // An error while reading the answer is a lost answer: the batch may
        // have been written, and the retry (same key) finds out.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failed::Retry(transport(&e), None))?;
        if status.is_success() {
            let answer: IngestAnswer = serde_json::from_slice(&bytes).map_err(|e| {
                Failed::Fatal(Error::Protocol(format!(
                    "the answer to a batch of {count} event(s) is not `{{\"count\", \
                     \"receipts\"}}`: {e}"
                )))
            })?;
            if answer.count != count || answer.receipts.len() != count {
                return Err(Failed::Fatal(Error::Protocol(format!(
                    "{} receipt(s) (count {}) for a batch of {count} event(s)",
                    answer.receipts.len(),
                    answer.count
                ))));
            }
            let counters = &self.inner.counters;
            Counters::add(&counters.batches, 1);
            if replayed {
                Counters::add(&counters.replayed, 1);
            }
            return Ok(Acknowledged {
                receipts: answer.receipts,
            });
        }
        let refusal = Refusal::parse(&bytes);
        let code = status.as_u16();
        let retryable = matches!(code, 408 | 429) || status.is_server_error();
        if retryable {
            return Err(Failed::Retry(
                Error::Unavailable {
                    status: code,
                    code: refusal.code,
                    message: refusal.message,
                    retry_after,
                },
                retry_after,
            ));
        }
        if code == 400 && refusal.code == "invalid_events" {
            return Err(Failed::Fatal(Error::InvalidEvents {
                message: refusal.message,
                errors: refusal.errors,
            }));
        }
        Err(Failed::Fatal(Error::Rejected {
            status: code,
            code: refusal.code,
            message: refusal.message,
        }))
    }
}

/// Appends `event` as one NDJSON line.
pub(crate) fn encode_line(event: &Event, out: &mut Vec<u8>) -> Result<(), Error> {
    serde_json::to_writer(&mut *out, event)
        .map_err(|e| Error::Protocol(format!("the event cannot be encoded as JSON: {e}")))?;
    out.push(b'\n');
    Ok(())
}

/// The `error` object of a refusal (`docs/api.md`, "Errors").
struct Refusal {
    code: String,
    message: String,
    errors: Vec<EventError>,
}

impl Refusal {
    fn parse(body: &[u8]) -> Refusal {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            errors: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            index: Option<usize>,
            #[serde(default)]
            field: String,
            #[serde(default)]
            reason: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => Refusal {
                code: b.error.code,
                message: b.error.message,
                errors: b
                    .error
                    .errors
                    .into_iter()
                    .map(|i| EventError {
                        index: i.index,
                        field: i.field,
                        reason: i.reason,
                    })
                    .collect(),
            },
            // Not the server's JSON (a proxy's error page, say): keep the
            // start of it as the message.
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let mut message: String = text.chars().take(300).collect();
                if message.trim().is_empty() {
                    message = "(no body)".into();
                }
                Refusal {
                    code: String::new(),
                    message,
                    errors: Vec::new(),
                }
            }
        }
    }
}

/// An error and its causes on one line (reqwest's own message alone is
/// "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether the request failed in the TLS handshake itself (an untrusted or
/// wrong certificate, a peer that is not TLS), as opposed to the network.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    std::error::Error::source(e).is_some_and(holds_rustls_error)
}

fn holds_rustls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<rustls::Error>() {
        return true;
    }
    // An `io::Error` hides the error it wraps from `source()`.
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && holds_rustls_error(inner)
    {
        return true;
    }
    e.source().is_some_and(holds_rustls_error)
}

/// A fresh idempotency key: 128 random bits in hex.
pub(crate) fn idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness (never seen on Linux): the time, the process
        // and a counter still make a key no other batch of this token uses.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = sealog_format::Timestamp::now().as_nanos();
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..].copy_from_slice(&(n as u32).to_le_bytes());
    }
    hex::encode(bytes)
}

/// Exponential backoff with equal jitter: between half the delay and all of
/// it, the delay doubling per attempt up to the cap.
fn backoff(retry: &RetryPolicy, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let delay = retry
        .initial_backoff
        .saturating_mul(1u32 << exp)
        .min(retry.max_backoff);
    delay / 2 + jitter(delay / 2)
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let r = getrandom::u64().unwrap_or(nanos / 2);
    Duration::from_nanos(r % (nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let retry = RetryPolicy::default();
        for attempt in 1..30 {
            let full = retry
                .initial_backoff
                .saturating_mul(1u32 << (attempt - 1).min(20))
                .min(retry.max_backoff);
            let d = backoff(&retry, attempt);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_distinct_printable_ascii() {
        let a = idempotency_key();
        let b = idempotency_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_refusal_that_is_not_json_keeps_its_text() {
        let r = Refusal::parse(b"<html>502 Bad Gateway</html>");
        assert_eq!(r.code, "");
        assert!(r.message.contains("502 Bad Gateway"));
        let r = Refusal::parse(
            br#"{"error": {"code": "invalid_events", "message": "m", "errors": [{"index": 1, "line": 2, "field": "action", "reason": "bad"}]}}"#,
        );
        assert_eq!(r.code, "invalid_events");
        assert_eq!(
            r.errors,
            vec![EventError {
                index: Some(1),
                field: "action".into(),
                reason: "bad".into()
            }]
        );
    }
}
