//! `POST /v1/events`: a batch, durable before the answer, all or nothing,
//! idempotent with a key.
//!
//! The order: authorize; check the query string (none), the framing, the
//! encoding and the declared length; read the body within the byte budget
//! (`body_timeout`); take a batch slot; look the idempotency key up
//! (replay, conflict, or go ahead); parse (one batch per core at a time; a
//! small body in place, a larger one on a blocking thread), metering the
//! parsed events against the budget and applying the tenant binding; then
//! queue the batch for the committer and wait for it in a detached task
//! (no thread parked: the committer wakes it), so that a batch that got
//! this far is written and its key remembered even if the client goes
//! away; answer the receipts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealog::{Receipt, Store};
use sha2::{Digest, Sha256};

use super::{blocking, json_bytes, store_error};
use crate::audit;
use crate::auth::{Authed, IngestScope};
use crate::body::{self, Allowance, BodyError};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{Begin, Slot};
use crate::ingest::{self, Framing};
use crate::metrics;
use crate::params;
use crate::state::{App, saturated};

/// A parsed batch and its share of the in-flight budget.
type ParsedBatch = (ingest::Batch, Allowance);

/// What the blocking part of an ingest returns when it fails.
enum IngestFailure {
    Api(ApiError),
    Tenant {
        indices: Vec<usize>,
        asked: String,
    },
    Store(sealog::Error, Option<Vec<u64>>),
    /// Written, but its idempotency key could not be made durable.
    Unjournaled(Arc<Vec<Receipt>>, std::io::Error),
}

/// The key a batch is remembered under: principal, key, fingerprint.
type JournalKey = (String, String, [u8; 32]);

/// The handler.
pub(super) async fn ingest(
    State(app): State<Arc<App>>,
    auth: Result<Authed<IngestScope>, ApiError>,
    req: Request,
) -> Response {
    let mut body_read = false;
    let result = match auth {
        Ok(auth) => ingest_batch(&app, auth, req, &mut body_read).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            if !body_read {
                // The body was refused unread: the connection cannot carry
                // another request, and the client should know before it
                // sends one.
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    }
}

async fn ingest_batch(
    app: &Arc<App>,
    auth: Authed<IngestScope>,
    req: Request,
    body_read: &mut bool,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    params::parse(parts.uri.query(), &[], &[])?;
    let framing = framing(&parts.headers)?;
    let encoding = body::Encoding::of(&parts.headers)?;
    let max_body = app.limits.max_body_bytes;
    let declared: Option<u64> = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(body::too_large(max_body, None));
    }
    let idempotency_key = idempotency_key(&parts.headers)?;
    let (body, allowance) = read_body(app, body, encoding, declared).await?;
    *body_read = true;
    let _batch_permit = app.admission.batch_slot().await?;
    let body_len = body.len() as u64;
    let mut slot = None;
    let mut journal_as = None;
    if let Some(key) = &idempotency_key {
        let mut h = Sha256::new();
        h.update([framing as u8]);
        h.update(&body);
        let fingerprint: [u8; 32] = h.finalize().into();
        journal_as = Some((auth.principal.name.clone(), key.clone(), fingerprint));
        match app
            .idempotency
            .begin(&auth.principal.name, key, fingerprint)
            .await
        {
            Begin::Replay {
                receipts,
                journaled,
            } => {
                if !journaled {
                    let idempotency = app.idempotency.clone();
                    let (principal, key) = (auth.principal.name.clone(), key.clone());
                    let r = receipts.clone();
                    blocking(move || idempotency.journal_again(&principal, &key, &fingerprint, &r))
                        .await?
                        .map_err(|e| unjournaled(app, &receipts, &e))?;
                }
                metrics::add(&app.metrics.idempotent_replays, 1);
                let mut r = receipts_response(&receipts);
                r.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Ok(r);
            }
            Begin::Conflict => {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was already used with a different body; use a new key \
                     for a new batch",
                ));
            }
            Begin::Proceed(s) => slot = Some(s),
        }
    }
    let store = app.store.get()?;
    let parsed = parse_batch(app, &auth, body, framing, allowance).await?;
    let outcome = match parsed {
        Err(e) => Err(e),
        Ok((batch, allowance)) => {
            append_detached(app, store, batch, allowance, journal_as, slot, body_len).await
        }
    };
    match outcome {
        Ok(receipts) => Ok(receipts_response(&receipts)),
        Err(IngestFailure::Api(e)) => Err(e),
        Err(IngestFailure::Unjournaled(receipts, e)) => Err(unjournaled(app, &receipts, &e)),
        Err(IngestFailure::Tenant { indices, asked }) => {
            let bound = auth.principal.tenant.clone().unwrap_or_default();
            let e = ApiError::new(
                ErrorCode::TenantForbidden,
                format!(
                    "the token `{}` is bound to tenant `{bound}` and cannot write events of \
                     tenant `{}` ({} event(s), listed in `indices`); nothing was written",
                    auth.principal.name,
                    audit::clean(&asked, 128),
                    indices.len()
                ),
            )
            .with("indices", indices.clone());
            let reason = format!(
                "is bound to tenant `{bound}` and tried to write events of tenant `{asked}`"
            );
            Err(auth.deny(app, &reason, e).await)
        }
        Err(IngestFailure::Store(e, lines)) => {
            let err = store_error(app, &e);
            let batch = ingest::Batch {
                events: Vec::new(),
                lines,
            };
            Err(ingest::with_lines(err, &batch))
        }
    }
}

/// The answer to a batch that was written but whose idempotency key could
/// not be made durable: not an acknowledgement, since a retry after a
/// restart would write the batch again.
fn unjournaled(app: &App, receipts: &[Receipt], e: &std::io::Error) -> ApiError {
    let path = app
        .idempotency
        .journal_path()
        .map_or_else(String::new, |p| format!(" `{}`", p.display()));
    let seqs = match (receipts.first(), receipts.last()) {
        (Some(first), Some(last)) => format!("seqs {}..={}", first.seq, last.seq),
        _ => "no records".to_owned(),
    };
    let message = format!(
        "the batch was written ({seqs}) but its Idempotency-Key could not be recorded in the \
         idempotency journal{path} ({e}), so it is not acknowledged: retry with the same \
         Idempotency-Key to get its receipts once the journal can be written"
    );
    if e.kind() == std::io::ErrorKind::StorageFull {
        ApiError::new(ErrorCode::StorageFull, message).retry_after(1)
    } else {
        ApiError::unavailable(message)
    }
}

fn framing(headers: &HeaderMap) -> Result<Framing, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Framing::Json);
    };
    let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or_default().trim();
    match mime {
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(Framing::Ndjson),
        "application/json" | "" => Ok(Framing::Json),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type `{}` is not accepted: send application/json (one event or an \
                 array) or application/x-ndjson (one event per line)",
                audit::clean(other, 100)
            ),
        )),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let ok = !v.is_empty() && v.len() <= 255 && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "the Idempotency-Key header must be 1 to 255 printable ASCII characters without \
             spaces (a UUID, say)",
        ));
    }
    Ok(Some(String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

/// Reads the body within the byte budget and `body_timeout`.
///
/// Admission: a budget of body bytes and of batches in flight, so memory
/// stays bounded however many clients send at once. The bytes are taken
/// as they arrive and the batch slot once the body is in: a share taken
/// up front, by the declared length, would let a few slow senders hold
/// the whole budget without sending anything (measured: four connections
/// declaring 16 MiB and sending a byte a second kept every other client at
/// 503 for as long as they kept reconnecting).
async fn read_body(
    app: &App,
    body: Body,
    encoding: body::Encoding,
    declared: Option<u64>,
) -> Result<(Bytes, Allowance), ApiError> {
    let max_body = app.limits.max_body_bytes;
    let read = body::read(
        body,
        encoding,
        declared,
        max_body,
        app.admission.allowance(),
    );
    match tokio::time::timeout(app.limits.body_timeout, read).await {
        Err(_) => Err(ApiError::new(
            ErrorCode::BodyTimeout,
            format!(
                "the body was not received within {} s; the connection is too slow. Nothing \
                 was written",
                app.limits.body_timeout.as_secs()
            ),
        )),
        Ok(Err(BodyError::TooLarge { decoded })) => Err(body::too_large(max_body, decoded)),
        Ok(Err(BodyError::Saturated)) => Err(saturated("too many bytes in flight")),
        Ok(Err(BodyError::Encoding(e))) => Err(e),
        Ok(Err(BodyError::Read(e))) => Err(ApiError::new(
            ErrorCode::BodyReadFailed,
            format!("reading the body failed: {e}; nothing was written"),
        )),
        Ok(Ok(read)) => Ok(read),
    }
}

/// The 413 of a batch whose parsed events do not fit in the whole
/// in-flight budget.
fn parsed_too_large(bytes: usize, budget: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BatchTooLarge,
        format!(
            "the batch takes more memory once parsed (over {bytes} bytes with its body, events \
             with large metadata take many times their JSON size) than the server holds for \
             ingest at once (ingest_inflight_bytes = {budget}); split the batch, nothing was \
             written"
        ),
    )
    .with("ingest_inflight_bytes", budget as u64)
}

/// Bodies up to this size are parsed on the task that read them: a few
/// events take microseconds to parse, less than the two thread switches of
/// a hand-off to the blocking pool and back (measured: with 64 clients
/// posting one event each, the hand-offs were the largest cost of the
/// request). Larger bodies are parsed on a blocking thread.
const INLINE_PARSE_BYTES: usize = 16 << 10;

/// Parses the body and applies the tenant binding.
///
/// Parsing is pure CPU: at most one batch per core parses at a time, so
/// that a flood of batches cannot starve queries of CPU (measured: with 16
/// clients parsing at once, a query waited 0.3-4 s for a core). A small
/// body is parsed in place (see [`INLINE_PARSE_BYTES`]), a larger one on a
/// blocking thread. The parsed events take their share of the byte
/// budget as they are parsed, on top of the body's; a small body whose
/// share cannot be had without waiting is parsed again on a blocking
/// thread, which waits for it.
async fn parse_batch(
    app: &App,
    auth: &Authed<IngestScope>,
    body: Bytes,
    framing: Framing,
    mut allowance: Allowance,
) -> Result<Result<ParsedBatch, IngestFailure>, ApiError> {
    let limits = app.limits.clone();
    let validator = app.validator.clone();
    let tenant = auth.principal.tenant.clone();
    let parse_permit = app.admission.parse_slot().await?;
    // What the body holds: the parsed events are metered on top of it
    // (also when a small body is parsed again, after its first parse took
    // part of its share).
    let base = allowance.held();
    let budget = allowance.budget();
    if body.len() <= INLINE_PARSE_BYTES {
        let mut would_wait = false;
        let mut memory = |parsed: usize| {
            let want = meter(base, parsed, budget)?;
            if allowance.try_hold(want) {
                Ok(())
            } else {
                would_wait = true;
                Err(saturated("too many bytes in flight"))
            }
        };
        let parsed = ingest::parse_within(&body, framing, &limits, &validator, &mut memory);
        if !would_wait {
            drop(parse_permit);
            return Ok(parsed.map_err(IngestFailure::Api).and_then(|mut batch| {
                bind_tenant(&mut batch, tenant.as_deref())?;
                Ok((batch, allowance))
            }));
        }
    }
    let runtime = tokio::runtime::Handle::current();
    blocking(move || -> Result<ParsedBatch, IngestFailure> {
        let _permit = parse_permit;
        let mut memory = |parsed: usize| {
            let want = meter(base, parsed, budget)?;
            allowance
                .hold_blocking(&runtime, want)
                .map_err(|_| saturated("too many bytes in flight"))
        };
        let mut batch = ingest::parse_within(&body, framing, &limits, &validator, &mut memory)
            .map_err(IngestFailure::Api)?;
        bind_tenant(&mut batch, tenant.as_deref())?;
        Ok((batch, allowance))
    })
    .await
}

/// The bytes to hold once `parsed` bytes of events are parsed on top of
/// the `base` held for the body, or the 413 when they exceed the budget.
///
/// Grown in steps, not event by event: doubling from 4 KiB up to a step
/// of a 256th of the budget (at most a quarter megabyte), then a step at a
/// time. A batch of a few events holds 4 KiB: with a flat step of a 256th
/// of the budget, each single-event request held 256 KiB of the default
/// 64 MiB, and 256 of them took it all.
fn meter(base: usize, parsed: usize, budget: usize) -> Result<usize, ApiError> {
    if base.saturating_add(parsed) > budget {
        return Err(parsed_too_large(base.saturating_add(parsed), budget));
    }
    const FIRST: usize = 4 << 10;
    let step = (budget / 256).clamp(FIRST, 256 << 10);
    let share = if parsed <= step {
        parsed.max(1).next_power_of_two().clamp(FIRST, step)
    } else {
        parsed.next_multiple_of(step)
    };
    Ok(base + share)
}

/// Gives the events without a tenant the token's, and refuses those of
/// another tenant.
fn bind_tenant(batch: &mut ingest::Batch, tenant: Option<&str>) -> Result<(), IngestFailure> {
    let Some(bound) = tenant else {
        return Ok(());
    };
    let mut indices = Vec::new();
    let mut asked = String::new();
    for (i, e) in batch.events.iter_mut().enumerate() {
        match &e.tenant {
            None => e.tenant = Some(bound.to_owned()),
            Some(t) if t == bound => {}
            Some(t) => {
                indices.push(i);
                asked.clone_from(t);
            }
        }
    }
    if indices.is_empty() {
        Ok(())
    } else {
        Err(IngestFailure::Tenant { indices, asked })
    }
}

/// Appends the batch and waits for it, detached from the request: if the
/// request is dropped first, the rest moves to a task of its own.
///
/// The batch is queued for the committer, so it is written whether or not
/// the client waits, and waited for until durable (no thread waits: the
/// committer wakes the task when its commit group is synced); its
/// idempotency key's journal line is synced meanwhile, so a client that
/// lost the connection (or hit the request timeout) and retries with the
/// same key gets these receipts instead of a second copy.
async fn append_detached(
    app: &Arc<App>,
    store: Store,
    mut batch: ingest::Batch,
    allowance: Allowance,
    journal_as: Option<JournalKey>,
    slot: Option<Slot>,
    body_len: u64,
) -> Result<Arc<Vec<Receipt>>, IngestFailure> {
    let lines = batch.lines.take();
    let events = batch.events;
    if journal_as.is_none() && slot.is_none() && body_len <= INLINE_PARSE_BYTES as u64 {
        // Nothing to do after the batch is durable but count it: no task
        // of its own (a spawn and a wake-up per request). Queued now, so it
        // is written whether or not the client waits; if the request goes
        // away first, `InlineAppend` moves the wait to a task.
        let mut inline = InlineAppend {
            appending: Some(store.append_batch_async(events)),
            allowance: Some(allowance),
            app: app.clone(),
            body_len,
        };
        let Some(appending) = inline.appending.as_mut() else {
            unreachable!("set just above");
        };
        let appended = appending.await;
        inline.appending = None;
        return match appended {
            Ok(receipts) => {
                count_ingest(app, receipts.len() as u64, body_len);
                Ok(Arc::new(receipts))
            }
            Err(e) => Err(IngestFailure::Store(e, lines)),
        };
    }
    let task_app = app.clone();
    // On the request's own task while the request waits for it (no spawn,
    // and no second wake-up to hand the outcome over), moved to a task of
    // its own if the request is dropped first: the batch is written and
    // its key remembered whether or not the client waits.
    let work = DetachOnDrop::new(async move {
        // The events' share of the budget is held until they are written,
        // even if the client has gone.
        let _allowance = allowance;
        // Validating, encoding and hashing a large batch takes a while:
        // that is done on a blocking thread (one per core at a time), a
        // small batch's here.
        let appending = if body_len <= INLINE_PARSE_BYTES as u64 {
            store.append_batch_async(events)
        } else {
            let permit = match task_app.admission.encode_slot().await {
                Ok(permit) => permit,
                Err(e) => return Err(IngestFailure::Api(e)),
            };
            let encoded = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                store.append_batch_async(events)
            });
            match encoded.await {
                Ok(appending) => appending,
                Err(_) => {
                    return Err(IngestFailure::Api(ApiError::new(
                        ErrorCode::Internal,
                        "a worker thread failed; the batch may or may not have been written: \
                         retry with the same Idempotency-Key",
                    )));
                }
            }
        };
        // A keyed batch's journal line is made from the receipts the batch
        // has once queued, and written and synced while the batch's commit
        // group is: the acknowledgement waits for both, one sync's time
        // rather than two in turn (lines queued meanwhile go in the same
        // write, on a blocking thread; the journal is compacted in the
        // background). A line whose records never became durable (the store
        // failed, or the machine stopped first) names seqs past the log's
        // end when the journal is loaded again, and is forgotten there.
        let queued = appending.queued_receipts().map(<[Receipt]>::to_vec);
        let early_line = journal_as.is_some() && queued.is_some();
        let (appended, journaled) = match (&journal_as, queued) {
            (Some((principal, key, fingerprint)), Some(queued)) => {
                let journal =
                    task_app
                        .idempotency
                        .journal_batch_async(principal, key, fingerprint, &queued);
                tokio::join!(appending, journal)
            }
            _ => (appending.await, Ok(())),
        };
        let receipts = match appended {
            Ok(receipts) => receipts,
            Err(e) => {
                // Not acknowledged, and its line synced: the next
                // compaction drops the line (the table forgets the key
                // too). A batch refused before it was queued, or whose
                // line failed, left none.
                if early_line
                    && journaled.is_ok()
                    && let Some((principal, key, _)) = &journal_as
                {
                    task_app.idempotency.forget_line(principal, key);
                }
                return Err(IngestFailure::Store(e, lines));
            }
        };
        count_ingest(&task_app, receipts.len() as u64, body_len);
        let receipts = Arc::new(receipts);
        if let Some(slot) = slot {
            slot.complete(receipts.clone(), journaled.is_ok());
        }
        match journaled {
            Ok(()) => Ok(receipts),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    first_seq = receipts.first().map(|r| r.seq),
                    "could not write the idempotency journal: the batch is written but not \
                     acknowledged"
                );
                Err(IngestFailure::Unjournaled(receipts, e))
            }
        }
    });
    work.await
}

/// A future polled on the task that awaits it, and moved to a task of its
/// own (spawned on the current runtime) if it is dropped unfinished.
///
/// [`InlineAppend`] does the same for an unkeyed small batch without the
/// box: its `Appending` is `Unpin` and can be moved to a task as it is,
/// which keeps an allocation off the most common POST.
struct DetachOnDrop<F: Future + Send + 'static>
where
    F::Output: Send,
{
    work: Option<Pin<Box<F>>>,
}

impl<F: Future + Send + 'static> DetachOnDrop<F>
where
    F::Output: Send,
{
    fn new(work: F) -> Self {
        DetachOnDrop {
            work: Some(Box::pin(work)),
        }
    }
}

impl<F: Future + Send + 'static> Future for DetachOnDrop<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `None` only once finished: an `.await` never polls it again.
        let Some(work) = self.work.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(out)
    }
}

impl<F: Future + Send + 'static> Drop for DetachOnDrop<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(work) = self.work.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(work);
        }
    }
}

/// Counts a durable batch of `events` events from a body of `body_len`
/// bytes.
fn count_ingest(app: &App, events: u64, body_len: u64) {
    let m = &app.metrics;
    metrics::add(&m.ingest_requests, 1);
    metrics::add(&m.ingest_events, events);
    metrics::add(&m.ingest_bytes, body_len);
    m.batch_events.record(events);
}

/// A small batch's append, awaited on the request's own task. If the
/// request is dropped before the batch is durable (the client went away,
/// the request timed out), the rest of the wait moves to a task of its
/// own, which holds the events' share of the budget until they are
/// written and counts them, as the detached path does.
struct InlineAppend {
    appending: Option<sealog::Appending>,
    allowance: Option<Allowance>,
    app: Arc<App>,
    body_len: u64,
}

impl Drop for InlineAppend {
    fn drop(&mut self) {
        let Some(appending) = self.appending.take() else {
            return;
        };
        let allowance = self.allowance.take();
        let (app, body_len) = (self.app.clone(), self.body_len);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _allowance = allowance;
                if let Ok(receipts) = appending.await {
                    count_ingest(&app, receipts.len() as u64, body_len);
                }
            });
        }
    }
}

fn receipts_response(receipts: &[Receipt]) -> Response {
    json_bytes(
        axum::http::StatusCode::OK,
        crate::wire::ingest_response_json(receipts),
    )
}

#[cfg(test)]
mod tests {
    use super::{DetachOnDrop, meter};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Work dropped unfinished by the request that awaited it goes on in a
    /// task of its own; finished work is not run again.
    #[tokio::test]
    async fn work_dropped_unfinished_goes_on_in_a_task() {
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let (finished_tx, finished) = tokio::sync::oneshot::channel();
        let work = DetachOnDrop::new(async move {
            let _ = gate.await;
            let _ = finished_tx.send("done");
        });
        // The request waits a moment, then goes away.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(10), work).await;
        assert!(waited.is_err(), "the work waits for its gate");
        go.send(()).unwrap();
        assert_eq!(finished.await.unwrap(), "done");

        let runs = Arc::new(AtomicBool::new(false));
        let ran = runs.clone();
        let work = DetachOnDrop::new(async move { ran.swap(true, Ordering::SeqCst) });
        assert!(!work.await, "run once, on the awaiting task");
        assert!(runs.load(Ordering::SeqCst));
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn a_small_batch_holds_a_small_share() {
        // One ~1 KB event under the default 64 MiB budget: 4 KiB on top of
        // its body, so thousands of single-event requests fit at once.
        assert_eq!(meter(300, 1_000, 64 * MIB).ok(), Some(300 + 4096));
        assert_eq!(meter(0, 5_000, 64 * MIB).ok(), Some(8192));
        // Doubling up to the step (a 256th of the budget, 256 KiB here),
        // then a step at a time.
        assert_eq!(meter(0, 200 << 10, 64 * MIB).ok(), Some(256 << 10));
        assert_eq!(meter(0, (256 << 10) + 1, 64 * MIB).ok(), Some(512 << 10));
        assert_eq!(
            meter(0, 3 * MIB + 5, 64 * MIB).ok(),
            Some(3 * MIB + (256 << 10))
        );
        // A small budget has small steps (8 KiB for 2 MiB).
        assert_eq!(meter(0, 5_000, 2 * MIB).ok(), Some(8 << 10));
        assert_eq!(meter(0, 9_000, 2 * MIB).ok(), Some(16 << 10));
    }

    #[test]
    fn the_share_only_grows_and_covers_what_is_parsed() {
        let budget = 64 * MIB;
        let mut last = 0;
        for parsed in (1..4 * MIB).step_by(997) {
            let share = meter(0, parsed, budget).unwrap_or_default();
            assert!(share >= parsed, "{share} < {parsed}");
            assert!(share >= last, "{share} after {last}");
            last = share;
        }
    }

    #[test]
    fn events_past_the_budget_are_refused() {
        assert!(meter(MIB, 63 * MIB + 1, 64 * MIB).is_err());
        assert!(meter(MIB, 63 * MIB, 64 * MIB).is_ok());
    }
}
