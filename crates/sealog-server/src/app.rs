//! The HTTP API: routes, authentication and authorization, and the
//! handlers.
//!
//! Every handler follows the same order: authenticate and authorize
//! (refusals are recorded in the log), parse the query string strictly,
//! do the work on a blocking thread (the engine blocks on `fdatasync`),
//! record the server's own audit event durably, then answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use sealog::format::validate::Validator;
use sealog::format::{Metadata, Resource};
use sealog::{Outcome, Receipt, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::audit::{self, Origin, Principal, Refusal, RefusalLimiter};
use crate::body::{self, BodyError};
use crate::config::Limits;
use crate::error::ApiError;
use crate::handle::StoreHandle;
use crate::idempotency::{Begin, Idempotency};
use crate::ingest::{self, Framing};
use crate::metrics::{self, Endpoint, Metrics};
use crate::params::{self, FILTERS, Params, QUERY_PARAMS};
use crate::tokens::{Check, Scope, TokenStore};
use crate::wire::PageRef;

/// The peer address of a connection, added to each request.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Everything the handlers share.
pub struct App {
    /// The store.
    pub store: Arc<StoreHandle>,
    /// The tokens; `None`: unauthenticated (loopback only).
    pub tokens: Option<TokenStore>,
    /// Limits.
    pub limits: Limits,
    /// The store's event rules (to list every problem of a refused batch).
    pub validator: Validator,
    /// Counters.
    pub metrics: Metrics,
    /// Idempotency keys.
    pub idempotency: Arc<Idempotency>,
    /// Which refusals are recorded one by one.
    pub refusals: RefusalLimiter,
    ingest_bytes: Arc<Semaphore>,
    /// The permits of `ingest_bytes` (its size).
    ingest_budget: usize,
    ingest_batches: Arc<Semaphore>,
    tails: Arc<Semaphore>,
    exports: Arc<Semaphore>,
    verifying: Arc<Semaphore>,
    parsing: Arc<Semaphore>,
    /// The number of visible records, published by the follower thread.
    pub visible: watch::Receiver<u64>,
    /// Becomes true when the server shuts down (ends tail streams).
    pub stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

const NDJSON: &str = "application/x-ndjson";

/// How long a stream that met damage waits, after its last line or event,
/// before it aborts the body: hyper discards what it has not yet written
/// when a body fails, and the client should get the error as well as the
/// abort.
pub(crate) const ABORT_GRACE: Duration = Duration::from_millis(250);

impl App {
    /// The shared state.
    pub fn new(
        store: Arc<StoreHandle>,
        tokens: Option<TokenStore>,
        limits: Limits,
        validator: Validator,
        visible: watch::Receiver<u64>,
        stopping: watch::Receiver<bool>,
    ) -> App {
        let budget = usize::try_from(limits.ingest_inflight_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        App {
            store,
            tokens,
            idempotency: Arc::new(Idempotency::new(
                limits.idempotency_keys,
                limits.idempotency_receipts,
                limits.idempotency_ttl,
            )),
            refusals: RefusalLimiter::new(
                limits.refusals_per_window,
                limits
                    .refusals_per_window
                    .saturating_mul(audit::ADDRESSES_IN_FULL),
                limits.refusal_window,
                audit::MAX_ADDRESSES,
            ),
            ingest_bytes: Arc::new(Semaphore::new(budget)),
            ingest_budget: budget,
            ingest_batches: Arc::new(Semaphore::new(limits.ingest_inflight_batches.max(1))),
            tails: Arc::new(Semaphore::new(limits.max_tail_streams.max(1))),
            exports: Arc::new(Semaphore::new(limits.max_exports.max(1))),
            verifying: Arc::new(Semaphore::new(1)),
            parsing: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
            limits,
            validator,
            metrics: Metrics::default(),
            visible,
            stopping,
        }
    }
}

/// The router with every endpoint.
pub fn router(app: Arc<App>) -> Router {
    let timeout = app.limits.request_timeout;
    let api = Router::new()
        .route("/v1/events", post(ingest_events).get(list_events))
        .route("/v1/events/{seq}", get(get_event))
        .route("/v1/tail", get(crate::tail::tail))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/proof/inclusion", get(inclusion_proof))
        .route("/v1/proof/consistency", get(consistency_proof))
        .route("/v1/stats", get(stats))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(timeout, request_timeout));
    // Verification reads the whole log: it has its own, longer limit.
    Router::new()
        .route("/v1/verify", post(verify))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), count_statuses))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(app)
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server hit a bug handling this request (it was not written); please report it",
    )
    .into_response()
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request took longer than {} s and was cut off; an ingest that was cut off \
                 may or may not have been written: retry with the same Idempotency-Key",
                limit.as_secs()
            ),
        )
        .retry_after(1)
        .into_response(),
    }
}

async fn count_statuses(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    app.metrics.count_status(response.status().as_u16());
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint at `{}`; the API is described in docs/api.md (e.g. POST /v1/events, \
             GET /v1/events)",
            audit::clean(req.uri().path(), 200)
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "`{} {}` is not supported; see docs/api.md for the methods of each endpoint",
            req.method(),
            audit::clean(req.uri().path(), 200)
        ),
    )
}

/// Where a request came from.
fn origin(headers: &HeaderMap, peer: Option<Peer>, endpoint: &str) -> Origin {
    Origin {
        ip: peer.map(|p| sealog::query::canonical(p.0.ip())),
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        endpoint: endpoint.to_owned(),
    }
}

fn peer_of(req_extensions: &axum::http::Extensions) -> Option<Peer> {
    req_extensions.get::<Peer>().copied()
}

/// Records a refusal (or counts it, in a flood) and returns its error.
async fn refuse(app: &App, mut refusal: Refusal, error: ApiError) -> ApiError {
    if refusal.code.is_empty() {
        refusal.code = error.code;
    }
    if app.refusals.admit(&refusal) {
        if let Ok(store) = app.store.get()
            && let Err(e) = audit::append(store, vec![refusal.to_event()]).await
        {
            app.store.report(&e);
            eprintln!("sealog serve: could not record a refused request in the log: {e}");
        }
    } else {
        metrics::add(&app.metrics.refusals_suppressed, 1);
    }
    error
}

/// Authenticates the request and checks `scope`.
async fn authorize(
    app: &App,
    headers: &HeaderMap,
    origin: &Origin,
    scope: Scope,
) -> Result<Principal, ApiError> {
    let principal = authenticate(app, headers, origin).await?;
    require(app, &principal, origin, &[scope]).await?;
    Ok(principal)
}

/// Checks that the principal has one of `scopes`.
async fn require(
    app: &App,
    principal: &Principal,
    origin: &Origin,
    scopes: &[Scope],
) -> Result<(), ApiError> {
    if scopes.iter().any(|s| principal.has(*s)) {
        return Ok(());
    }
    let have: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
    let need: Vec<String> = scopes.iter().map(|s| format!("`{}`", s.as_str())).collect();
    let need = need.join(" or ");
    let e = ApiError::new(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        format!(
            "the token `{}` has the scopes [{}] but this endpoint needs {need}",
            principal.name,
            have.join(", "),
        ),
    )
    .with(
        "needed",
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    Err(deny(
        app,
        principal,
        origin,
        &format!("lacks the {need} scope"),
        e,
    )
    .await)
}

/// Identifies the caller from its bearer token.
async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    origin: &Origin,
) -> Result<Principal, ApiError> {
    let Some(tokens) = &app.tokens else {
        return Ok(Principal::local());
    };
    let anonymous = sealog::format::Actor::new("anonymous", "anonymous");
    let unauthorized = |code: &'static str, message: String| {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        e.challenge = true;
        e
    };
    let refusal = |actor, reason: &str| Refusal {
        action: "auth.failed",
        actor,
        reason: reason.to_owned(),
        code: "",
        origin: origin.clone(),
        status: 401,
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let e = unauthorized(
            "missing_token",
            "this endpoint needs a bearer token: send `Authorization: Bearer slg_...` (create \
             one with `sealog token create`)"
                .into(),
        );
        return Err(refuse(app, refusal(anonymous, "no Authorization header"), e).await);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let secret = match text.split_once(' ') {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() =>
        {
            rest.trim().to_owned()
        }
        _ => {
            let e = unauthorized(
                "malformed_token",
                "the Authorization header is not `Bearer <token>`".into(),
            );
            return Err(refuse(
                app,
                refusal(anonymous, "Authorization header is not a bearer token"),
                e,
            )
            .await);
        }
    };
    let entry = match tokens.check(&secret) {
        Check::Valid(entry) => entry,
        Check::Revoked(entry) => {
            let e = unauthorized(
                "revoked_token",
                format!(
                    "the token `{}` was revoked at {}; ask for a new one",
                    entry.name,
                    entry.revoked_at.clone().unwrap_or_default()
                ),
            );
            let actor = sealog::format::Actor::new("token", audit::clean(&entry.name, 256));
            return Err(refuse(app, refusal(actor, "the token is revoked"), e).await);
        }
        Check::Unknown => {
            let e = unauthorized(
                "invalid_token",
                "the bearer token is not valid (unknown to this server); check that it was \
                 copied whole"
                    .into(),
            );
            return Err(refuse(app, refusal(anonymous, "unknown token"), e).await);
        }
        Check::FileUnreadable(reason) => {
            eprintln!("sealog serve: refusing every request: {reason}");
            let e = unauthorized(
                "tokens_unavailable",
                "the server cannot read its tokens file, so it lets nobody in; the operator \
                 must fix the file"
                    .into(),
            );
            return Err(refuse(app, refusal(anonymous, "the tokens file is unreadable"), e).await);
        }
    };
    Ok(Principal {
        kind: "token",
        name: entry.name.clone(),
        scopes: entry.scopes.clone(),
        tenant: entry.tenant.clone(),
    })
}

/// Records a 403 (or a 404 hiding another tenant's record).
async fn deny(
    app: &App,
    principal: &Principal,
    origin: &Origin,
    reason: &str,
    error: ApiError,
) -> ApiError {
    let status = error.status.as_u16();
    let refusal = Refusal {
        action: "auth.denied",
        actor: principal.actor(),
        reason: format!("token `{}` {reason}", principal.name),
        // The 404 hides another tenant's record from the caller, not from
        // the trail.
        code: if status == 404 {
            "other_tenant_record"
        } else {
            ""
        },
        origin: origin.clone(),
        status,
    };
    refuse(app, refusal, error).await
}

fn tenant_forbidden(principal: &Principal, asked: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "tenant_forbidden",
        format!(
            "the token `{}` is bound to tenant `{}` and cannot read tenant `{}`",
            principal.name,
            principal.tenant.as_deref().unwrap_or_default(),
            audit::clean(asked, 128)
        ),
    )
}

/// Applies the token's tenant binding to a query.
async fn bind_tenant(
    app: &App,
    principal: &Principal,
    origin: &Origin,
    query: &mut sealog::query::Query,
) -> Result<(), ApiError> {
    if let Some(bound) = &principal.tenant {
        if let Some(asked) = &query.tenant
            && asked != bound
        {
            let reason = format!("is bound to tenant `{bound}` and asked for tenant `{asked}`");
            return Err(deny(
                app,
                principal,
                origin,
                &reason,
                tenant_forbidden(principal, asked),
            )
            .await);
        }
        query.tenant = Some(bound.clone());
    }
    Ok(())
}

/// Appends the server's audit event for a read, durably.
async fn record(app: &App, store: &Store, event: sealog::Event) -> Result<(), ApiError> {
    audit::append(store.clone(), vec![event])
        .await
        .map_err(|e| {
            app.store.report(&e);
            let mut err = ApiError::from_store(&e);
            err.message = format!(
                "the request could not be recorded in the log, so it was not served: {}",
                err.message
            );
            err
        })
}

fn read_event(
    action: &str,
    principal: &Principal,
    origin: &Origin,
    resource: Resource,
    mut metadata: Metadata,
) -> sealog::Event {
    if let Some(t) = &principal.tenant {
        metadata.insert("principal_tenant".into(), t.clone().into());
    }
    audit::event(
        action,
        principal.actor(),
        resource,
        Outcome::Success,
        origin,
        metadata,
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a worker thread failed; the request was not completed",
        )
    })
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("serializing the response failed: {e}"),
        )
    })
}

fn store_error(app: &App, e: &sealog::Error) -> ApiError {
    app.store.report(e);
    ApiError::from_store(e)
}

// ---------------------------------------------------------------- ingest

/// A parsed batch and its share of the in-flight budget.
type ParsedBatch = (ingest::Batch, body::Allowance);

/// What the blocking part of an ingest returns when it fails.
enum IngestFailure {
    Api(ApiError),
    Tenant { indices: Vec<usize>, asked: String },
    Store(sealog::Error, Option<Vec<u64>>),
}

async fn ingest_events(State(app): State<Arc<App>>, req: Request) -> Response {
    let started = Instant::now();
    let mut body_read = false;
    let result = ingest_inner(&app, req, &mut body_read).await;
    app.metrics.observe(Endpoint::Ingest, started.elapsed());
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
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{}` is not accepted: send application/json (one event or an \
                 array) or application/x-ndjson (one event per line)",
                audit::clean(other, 100)
            ),
        )),
    }
}

async fn acquire(
    semaphore: &Arc<Semaphore>,
    n: u32,
    wait: Duration,
) -> Option<OwnedSemaphorePermit> {
    match semaphore.clone().try_acquire_many_owned(n) {
        Ok(p) => Some(p),
        Err(_) => tokio::time::timeout(wait, semaphore.clone().acquire_many_owned(n))
            .await
            .ok()
            .and_then(Result::ok),
    }
}

fn saturated(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ingest_saturated",
        format!(
            "the server is ingesting as much as it accepts at once ({what}); nothing of this \
             request was written: retry after the Retry-After delay"
        ),
    )
    .retry_after(1)
}

/// The 413 of a batch whose parsed events do not fit in the whole
/// in-flight budget.
fn parsed_too_large(bytes: usize, budget: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
        format!(
            "the batch takes more memory once parsed (over {bytes} bytes with its body, events \
             with large metadata take many times their JSON size) than the server holds for \
             ingest at once (ingest_inflight_bytes = {budget}); split the batch, nothing was \
             written"
        ),
    )
    .with("ingest_inflight_bytes", budget as u64)
}

async fn ingest_inner(
    app: &Arc<App>,
    req: Request,
    body_read: &mut bool,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let origin = origin(
        &parts.headers,
        peer_of(&parts.extensions),
        "POST /v1/events",
    );
    let principal = authorize(app, &parts.headers, &origin, Scope::Ingest).await?;
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
    let idempotency_key = match parts.headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let ok = !v.is_empty()
                && v.len() <= 255
                && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    "the Idempotency-Key header must be 1 to 255 printable ASCII characters \
                     without spaces (a UUID, say)",
                ));
            }
            Some(String::from_utf8_lossy(v.as_bytes()).into_owned())
        }
    };
    // Admission: a budget of body bytes and of batches in flight, so memory
    // stays bounded however many clients send at once. The bytes are taken
    // as they arrive and the batch slot once the body is in: a share taken
    // up front, by the declared length, would let a few slow senders hold
    // the whole budget without sending anything (measured: four
    // connections declaring 16 MiB and sending a byte a second kept every
    // other client at 503 for as long as they kept reconnecting).
    let wait = app.limits.ingest_wait;
    let allowance = body::Allowance::new(app.ingest_bytes.clone(), app.ingest_budget, wait);
    let read = body::read(body, encoding, declared, max_body, allowance);
    let (body, mut allowance) = match tokio::time::timeout(app.limits.body_timeout, read).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body was not received within {} s; the connection is too slow. \
                     Nothing was written",
                    app.limits.body_timeout.as_secs()
                ),
            ));
        }
        Ok(Err(BodyError::TooLarge { decoded })) => {
            return Err(body::too_large(max_body, decoded));
        }
        Ok(Err(BodyError::Saturated)) => return Err(saturated("too many bytes in flight")),
        Ok(Err(BodyError::Encoding(e))) => return Err(e),
        Ok(Err(BodyError::Read(e))) => {
            return Err(ApiError::bad_request(
                "body_read_failed",
                format!("reading the body failed: {e}; nothing was written"),
            ));
        }
        Ok(Ok(read)) => read,
    };
    *body_read = true;
    let Some(_batch_permit) = acquire(&app.ingest_batches, 1, wait).await else {
        return Err(saturated("too many batches in flight"));
    };
    let body_len = body.len() as u64;
    let mut slot = None;
    let mut journal_as = None;
    if let Some(key) = &idempotency_key {
        let mut h = Sha256::new();
        h.update([framing as u8]);
        h.update(&body);
        let fingerprint: [u8; 32] = h.finalize().into();
        journal_as = Some((principal.name.clone(), key.clone(), fingerprint));
        match app
            .idempotency
            .begin(&principal.name, key, fingerprint)
            .await
        {
            Begin::Replay(receipts) => {
                metrics::add(&app.metrics.idempotent_replays, 1);
                let mut r = receipts_response(&receipts)?;
                r.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Ok(r);
            }
            Begin::Conflict => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used with a different body; use a new key \
                     for a new batch",
                ));
            }
            Begin::Proceed(s) => slot = Some(s),
        }
    }
    let store = app.store.get()?;
    let limits = app.limits.clone();
    let validator = app.validator.clone();
    let tenant = principal.tenant.clone();
    // Parsing is pure CPU: at most one batch per core parses at a time, so
    // that a flood of batches cannot starve queries of CPU (measured: with
    // 16 clients parsing at once, a query waited 0.3-4 s for a core).
    let parse_permit = app
        .parsing
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    // The parsed events take their share of the byte budget as they are
    // parsed, on top of the body's.
    let runtime = tokio::runtime::Handle::current();
    let parsed = blocking(move || -> Result<ParsedBatch, IngestFailure> {
        let _permit = parse_permit;
        let base = allowance.held();
        let budget = allowance.budget();
        let mut memory = |parsed: usize| {
            if base.saturating_add(parsed) > budget {
                return Err(parsed_too_large(base.saturating_add(parsed), budget));
            }
            // Grown a step at a time (a 256th of the budget, at most a
            // quarter megabyte), not event by event.
            let step = (budget / 256).clamp(4 << 10, 256 << 10);
            let want = base + parsed.next_multiple_of(step);
            allowance
                .hold_blocking(&runtime, want)
                .map_err(|_| saturated("too many bytes in flight"))
        };
        let mut batch = ingest::parse_within(&body, framing, &limits, &validator, &mut memory)
            .map_err(IngestFailure::Api)?;
        if let Some(bound) = &tenant {
            let mut indices = Vec::new();
            let mut asked = String::new();
            for (i, e) in batch.events.iter_mut().enumerate() {
                match &e.tenant {
                    None => e.tenant = Some(bound.clone()),
                    Some(t) if t == bound => {}
                    Some(t) => {
                        indices.push(i);
                        asked.clone_from(t);
                    }
                }
            }
            if !indices.is_empty() {
                return Err(IngestFailure::Tenant { indices, asked });
            }
        }
        Ok((batch, allowance))
    })
    .await?;
    let outcome = match parsed {
        Err(e) => Err(e),
        Ok((mut batch, allowance)) => {
            // From here on the batch is written whether or not the client
            // waits: a detached task appends it and remembers its
            // idempotency key, so a client that lost the connection (or hit
            // the request timeout) and retries with the same key gets these
            // receipts instead of a second copy.
            let lines = batch.lines.take();
            let task_app = app.clone();
            let journal = task_app.idempotency.clone();
            let task = tokio::spawn(async move {
                let appended = tokio::task::spawn_blocking(move || {
                    // The events' share of the budget is held until they
                    // are written, even if the client has gone.
                    let _allowance = allowance;
                    let receipts = store.append_batch(batch.events)?;
                    // Durable now: remember the key across a restart before
                    // acknowledging.
                    if let Some((principal, key, fingerprint)) = &journal_as {
                        journal.journal_batch(principal, key, fingerprint, &receipts);
                    }
                    Ok::<_, sealog::Error>(receipts)
                })
                .await;
                match appended {
                    Ok(Ok(receipts)) => {
                        let m = &task_app.metrics;
                        let n = receipts.len() as u64;
                        metrics::add(&m.ingest_requests, 1);
                        metrics::add(&m.ingest_events, n);
                        metrics::add(&m.ingest_bytes, body_len);
                        m.batch_events.record(n);
                        let receipts = Arc::new(receipts);
                        if let Some(slot) = slot {
                            slot.complete(receipts.clone());
                        }
                        Ok(receipts)
                    }
                    Ok(Err(e)) => Err(IngestFailure::Store(e, lines)),
                    Err(_) => Err(IngestFailure::Api(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "a worker thread failed; the batch may or may not have been written: \
                         retry with the same Idempotency-Key",
                    ))),
                }
            });
            task.await.map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the append task failed; retry with the same Idempotency-Key",
                )
            })?
        }
    };
    match outcome {
        Ok(receipts) => receipts_response(&receipts),
        Err(IngestFailure::Api(e)) => Err(e),
        Err(IngestFailure::Tenant { indices, asked }) => {
            let bound = principal.tenant.clone().unwrap_or_default();
            let e = ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_forbidden",
                format!(
                    "the token `{}` is bound to tenant `{bound}` and cannot write events of \
                     tenant `{}` ({} event(s), listed in `indices`); nothing was written",
                    principal.name,
                    audit::clean(&asked, 128),
                    indices.len()
                ),
            )
            .with("indices", indices.clone());
            let reason = format!(
                "is bound to tenant `{bound}` and tried to write events of tenant `{asked}`"
            );
            Err(deny(app, &principal, &origin, &reason, e).await)
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

fn receipts_response(receipts: &[Receipt]) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        crate::wire::ingest_response_json(receipts),
    ))
}

// ---------------------------------------------------------------- reads

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .is_some_and(|a| a.contains(NDJSON) || a.contains("application/jsonl"))
}

async fn list_events(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let started = Instant::now();
    let ndjson = wants_ndjson(req.headers());
    let result = list_inner(&app, raw, req, ndjson).await;
    app.metrics.observe(
        if ndjson {
            Endpoint::Export
        } else {
            Endpoint::Query
        },
        started.elapsed(),
    );
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn list_inner(
    app: &Arc<App>,
    raw: Option<String>,
    req: Request,
    ndjson: bool,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let origin = origin(&parts.headers, peer_of(&parts.extensions), "GET /v1/events");
    let principal = authorize(app, &parts.headers, &origin, Scope::Query).await?;
    let params = params::parse(raw.as_deref(), QUERY_PARAMS, &["action"])?;
    let mut query = params::query(&params)?;
    let count = params::count(&params)?;
    bind_tenant(app, &principal, &origin, &mut query).await?;
    let store = app.store.get()?;
    if let Some(grouping) = params::count_by(&params)? {
        return count_groups(
            app, store, principal, origin, params, query, grouping, ndjson,
        )
        .await;
    }
    if count {
        return count_matches(app, store, principal, origin, params, query, ndjson).await;
    }
    if ndjson {
        return export(app, store, principal, origin, params, query).await;
    }
    let q = query.clone();
    let s = store.clone();
    let page = blocking(move || s.query(&q))
        .await?
        .map_err(|e| store_error(app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    metadata.insert("returned".into(), page.records.len().into());
    record(
        app,
        &store,
        read_event(
            "log.query",
            &principal,
            &origin,
            Resource::kind("log"),
            metadata,
        ),
    )
    .await?;
    let body = to_json(&PageRef {
        records: &page.records,
        next_cursor: page.next_cursor.as_deref(),
    })?;
    Ok(json_response(StatusCode::OK, body))
}

/// `count=true`: the number of matches, `{"count": N}`.
async fn count_matches(
    app: &Arc<App>,
    store: Store,
    principal: Principal,
    origin: Origin,
    params: Params,
    query: sealog::query::Query,
    ndjson: bool,
) -> Result<Response, ApiError> {
    for paging in ["limit", "cursor"] {
        if params::get(&params, paging).is_some() {
            // A count has no pages: refuse rather than ignore.
            return Err(ApiError::bad_param(
                paging,
                "pages a listing; `count=true` counts every match: drop it",
            ));
        }
    }
    if ndjson {
        return Err(ApiError::bad_param(
            "count",
            "answers JSON, `{\"count\": N}`; drop `Accept: application/x-ndjson` or `count`",
        ));
    }
    let q = query.clone();
    let s = store.clone();
    let n = blocking(move || s.count(&q))
        .await?
        .map_err(|e| store_error(app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    metadata.insert("count".into(), n.into());
    record(
        app,
        &store,
        read_event(
            "log.query",
            &principal,
            &origin,
            Resource::kind("log"),
            metadata,
        ),
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "count": n }).to_string().into_bytes(),
    ))
}

/// `count_by=FIELD&top=N`: the matches counted by group
/// ([`sealog::Store::count_by`]), as [`crate::wire::CountsJson`].
#[allow(
    clippy::too_many_arguments,
    reason = "the pieces of one request, as for count_matches"
)]
async fn count_groups(
    app: &Arc<App>,
    store: Store,
    principal: Principal,
    origin: Origin,
    params: Params,
    query: sealog::query::Query,
    (field, top): (sealog::aggregate::CountField, usize),
    ndjson: bool,
) -> Result<Response, ApiError> {
    for paging in ["limit", "cursor"] {
        if params::get(&params, paging).is_some() {
            return Err(ApiError::bad_param(
                paging,
                "pages a listing; `count_by` counts every match: drop it",
            ));
        }
    }
    if ndjson {
        return Err(ApiError::bad_param(
            "count_by",
            "answers JSON; drop `Accept: application/x-ndjson` or `count_by`",
        ));
    }
    let s = store.clone();
    let counted = blocking(move || s.count_by(&query, field, top))
        .await?
        .map_err(|e| store_error(app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    metadata.insert("total".into(), counted.total.into());
    record(
        app,
        &store,
        read_event(
            "log.query",
            &principal,
            &origin,
            Resource::kind("log"),
            metadata,
        ),
    )
    .await?;
    let body = to_json(&crate::wire::CountsJson::from(&counted))?;
    Ok(json_response(StatusCode::OK, body))
}

async fn export(
    app: &Arc<App>,
    store: Store,
    principal: Principal,
    origin: Origin,
    params: Params,
    mut query: sealog::query::Query,
) -> Result<Response, ApiError> {
    if params::get(&params, "limit").is_some() || params::get(&params, "cursor").is_some() {
        // A stream has no pages: refuse rather than ignore.
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "`limit` and `cursor` page a JSON listing; an NDJSON export streams every match. \
             Drop them, or ask for JSON (Accept: application/json)",
        ));
    }
    query.limit = sealog::query::MAX_LIMIT;
    let Ok(permit) = app.exports.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(format!(
            "{} exports are running, the most at once; retry shortly",
            app.limits.max_exports
        )));
    };
    let matches = {
        let s = store.clone();
        let q = query.clone();
        blocking(move || s.matches(&q))
            .await?
            .map_err(|e| store_error(app, &e))?
    };
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    record(
        app,
        &store,
        read_event(
            "log.export",
            &principal,
            &origin,
            Resource::kind("log"),
            metadata,
        ),
    )
    .await?;
    // A record that cannot be read mid-way cannot change the status, which
    // is sent: the stream then carries a last line `{"error": {...}}` and is
    // aborted (the chunked body never gets its terminating chunk), so that
    // no client can take it for a complete export.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut buf = Vec::with_capacity(64 << 10);
        for item in matches {
            let failure = match item {
                // With its event time in `time`, as `sealog export` writes
                // it, so that an import keeps it.
                Ok(r) => {
                    let seq = r.seq;
                    match serde_json::to_writer(&mut buf, &r.with_event_time()) {
                        Ok(()) => {
                            buf.push(b'\n');
                            None
                        }
                        Err(e) => Some(ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("serializing record {seq} failed: {e}"),
                        )),
                    }
                }
                Err(e) => Some(ApiError::from_store(&e)),
            };
            if let Some(error) = failure {
                eprintln!("sealog serve: an export stream was cut short: {error}");
                let line = error.body().to_string();
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                let _ = tx.blocking_send(Ok(Bytes::from(std::mem::take(&mut buf))));
                let _ = tx.blocking_send(Err(std::io::Error::other(error.to_string())));
                return;
            }
            if buf.len() >= 60 << 10
                && tx
                    .blocking_send(Ok(Bytes::from(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(64 << 10),
                    ))))
                    .is_err()
            {
                return;
            }
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(Ok(Bytes::from(buf)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        if item.is_err() {
            // hyper drops what it has not yet written when a body fails:
            // give it the time to send the error line first.
            tokio::time::sleep(ABORT_GRACE).await;
        }
        Some((item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(r)
}

fn parse_seq(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_seq",
            format!(
                "`{}` is not a sequence number (a non-negative integer)",
                audit::clean(text, 64)
            ),
        )
    })
}

fn no_record(seq: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no record {seq} visible to this token"),
    )
}

fn no_key() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "no_signing_key",
        "this server has no signing key, so it issues no checkpoints or receipts: start it with \
         --signing-key PREFIX.key (make one with `sealog keygen`)",
    )
}

/// Reads a record and applies the tenant binding (another tenant's record
/// is "not found", and the attempt is recorded).
async fn visible_record(
    app: &App,
    store: &Store,
    principal: &Principal,
    origin: &Origin,
    seq: u64,
) -> Result<sealog::Record, ApiError> {
    let s = store.clone();
    let record = blocking(move || s.get(seq))
        .await?
        .map_err(|e| store_error(app, &e))?
        .ok_or_else(|| no_record(seq))?;
    if let Some(bound) = &principal.tenant
        && record.event.tenant.as_deref() != Some(bound)
    {
        let reason =
            format!("is bound to tenant `{bound}` and asked for record {seq} of another tenant");
        return Err(deny(app, principal, origin, &reason, no_record(seq)).await);
    }
    Ok(record)
}

async fn get_event(
    State(app): State<Arc<App>>,
    Path(seq): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let started = Instant::now();
    let result = get_inner(&app, &seq, raw, req).await;
    app.metrics.observe(Endpoint::Get, started.elapsed());
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn get_inner(
    app: &Arc<App>,
    seq: &str,
    raw: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let origin = origin(
        &parts.headers,
        peer_of(&parts.extensions),
        "GET /v1/events/{seq}",
    );
    let principal = authorize(app, &parts.headers, &origin, Scope::Query).await?;
    let params = params::parse(raw.as_deref(), &["proof"], &[])?;
    let proof = match params::get(&params, "proof") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_param(
                "proof",
                format!("`{}` is not `true` or `false`", audit::clean(other, 32)),
            ));
        }
    };
    let seq = parse_seq(seq)?;
    let store = app.store.get()?;
    if proof && !app.store.signs() {
        return Err(no_key());
    }
    let record = visible_record(app, &store, &principal, &origin, seq).await?;
    let resource = Resource::new("record", seq.to_string());
    if proof {
        let s = store.clone();
        let text = blocking(move || s.receipt(seq))
            .await?
            .map_err(|e| store_error(app, &e))?;
        let mut metadata = Metadata::new();
        metadata.insert("kind".into(), "receipt".into());
        record_event(
            app,
            &store,
            "log.proof",
            &principal,
            &origin,
            resource,
            metadata,
        )
        .await?;
        let mut r = text.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(r);
    }
    record_event(
        app,
        &store,
        "log.read",
        &principal,
        &origin,
        resource,
        Metadata::new(),
    )
    .await?;
    Ok(json_response(StatusCode::OK, to_json(&record)?))
}

async fn record_event(
    app: &App,
    store: &Store,
    action: &str,
    principal: &Principal,
    origin: &Origin,
    resource: Resource,
    metadata: Metadata,
) -> Result<(), ApiError> {
    record(
        app,
        store,
        read_event(action, principal, origin, resource, metadata),
    )
    .await
}

// ---------------------------------------------------------------- proofs

fn b64(hash: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

async fn checkpoint(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let started = Instant::now();
    let result = checkpoint_inner(&app, raw, req).await;
    app.metrics.observe(Endpoint::Proof, started.elapsed());
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn checkpoint_inner(
    app: &Arc<App>,
    raw: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let origin = origin(
        &parts.headers,
        peer_of(&parts.extensions),
        "GET /v1/checkpoint",
    );
    let principal = authorize(app, &parts.headers, &origin, Scope::Query).await?;
    let params = params::parse(raw.as_deref(), &["fresh"], &[])?;
    let fresh = match params::get(&params, "fresh") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_param(
                "fresh",
                format!("`{}` is not `true` or `false`", audit::clean(other, 32)),
            ));
        }
    };
    if !app.store.signs() {
        return Err(no_key());
    }
    let store = app.store.get()?;
    let s = store.clone();
    let signed = blocking(move || -> Result<sealog::SignedCheckpoint, sealog::Error> {
        if !fresh && let Some(c) = s.latest_checkpoint()? {
            return Ok(c);
        }
        s.checkpoint()
    })
    .await?
    .map_err(|e| store_error(app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("tree_size".into(), signed.size.into());
    metadata.insert("fresh".into(), fresh.into());
    record_event(
        app,
        &store,
        "log.checkpoint",
        &principal,
        &origin,
        Resource::kind("checkpoint"),
        metadata,
    )
    .await?;
    let mut r = signed.text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

async fn inclusion_proof(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let started = Instant::now();
    let result = inclusion_inner(&app, raw, req).await;
    app.metrics.observe(Endpoint::Proof, started.elapsed());
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn inclusion_inner(
    app: &Arc<App>,
    raw: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let origin = origin(
        &parts.headers,
        peer_of(&parts.extensions),
        "GET /v1/proof/inclusion",
    );
    let principal = authorize(app, &parts.headers, &origin, Scope::Query).await?;
    let store = app.store.get()?;
    let (seq, tree_size) = params::inclusion(raw.as_deref(), store.tree_size())?;
    let record = visible_record(app, &store, &principal, &origin, seq).await?;
    let s = store.clone();
    let proof = blocking(move || s.inclusion_proof(seq, tree_size))
        .await?
        .map_err(|e| store_error(app, &e))?;
    let leaf = {
        let s = store.clone();
        blocking(move || s.get_raw(seq))
            .await?
            .map_err(|e| store_error(app, &e))?
    }
    .map(|bytes| b64(&sealog::format::merkle::leaf_hash(&bytes)));
    drop(record);
    let mut metadata = Metadata::new();
    metadata.insert("kind".into(), "inclusion".into());
    metadata.insert("tree_size".into(), tree_size.into());
    record_event(
        app,
        &store,
        "log.proof",
        &principal,
        &origin,
        Resource::new("record", seq.to_string()),
        metadata,
    )
    .await?;
    let body = json!({
        "seq": seq,
        "tree_size": tree_size,
        "leaf_hash": leaf,
        "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    });
    Ok(json_response(StatusCode::OK, to_json(&body)?))
}

async fn consistency_proof(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let started = Instant::now();
    let result = consistency_inner(&app, raw, req).await;
    app.metrics.observe(Endpoint::Proof, started.elapsed());
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn consistency_inner(
    app: &Arc<App>,
    raw: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let origin = origin(
        &parts.headers,
        peer_of(&parts.extensions),
        "GET /v1/proof/consistency",
    );
    let principal = authorize(app, &parts.headers, &origin, Scope::Query).await?;
    let store = app.store.get()?;
    let (from, to) = params::consistency(raw.as_deref(), store.tree_size())?;
    let s = store.clone();
    let proof = blocking(move || s.consistency_proof(from, to))
        .await?
        .map_err(|e| store_error(app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("kind".into(), "consistency".into());
    metadata.insert("from".into(), from.into());
    metadata.insert("to".into(), to.into());
    record_event(
        app,
        &store,
        "log.proof",
        &principal,
        &origin,
        Resource::kind("log"),
        metadata,
    )
    .await?;
    let body = json!({
        "old_size": from,
        "new_size": to,
        "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    });
    Ok(json_response(StatusCode::OK, to_json(&body)?))
}

async fn verify(State(app): State<Arc<App>>, RawQuery(raw): RawQuery, req: Request) -> Response {
    let started = Instant::now();
    let result = verify_inner(&app, raw, req).await;
    app.metrics.observe(Endpoint::Verify, started.elapsed());
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn verify_inner(
    app: &Arc<App>,
    raw: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let origin = origin(
        &parts.headers,
        peer_of(&parts.extensions),
        "POST /v1/verify",
    );
    let principal = authorize(app, &parts.headers, &origin, Scope::Admin).await?;
    params::parse(raw.as_deref(), &[], &[])?;
    let Ok(_permit) = app.verifying.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "verify_running",
            "a verification is already running; wait for it to finish",
        ));
    };
    let store = app.store.get()?;
    let s = store.clone();
    let limit = app.limits.verify_timeout;
    let result = tokio::time::timeout(limit, blocking(move || s.verify()))
        .await
        .map_err(|_| {
            ApiError::unavailable(format!(
                "verification did not finish within {} s (verify_timeout_secs); run `sealog \
                 verify` on the host instead",
                limit.as_secs()
            ))
        })??;
    let (body, outcome, reason) = match result {
        Ok(report) => (
            json!({
                "intact": true,
                "segments": report.segments,
                "sealed_segments": report.sealed_segments,
                "records": report.records,
                "bytes": report.bytes,
                "root": b64(&report.root),
                "chain_head": hex::encode(report.chain_head),
                "checkpoints": report.checkpoints,
                "checkpoints_authenticated": report.checkpoints_authenticated,
                "unacknowledged_tail_bytes": report.unacknowledged_tail_bytes,
                "elapsed_secs": report.elapsed.as_secs_f64(),
            }),
            Outcome::Success,
            None,
        ),
        Err(sealog::Error::Corruption(c)) => (
            json!({
                "intact": false,
                "problem": c.to_string(),
                "file": c.location.file,
                "offset": c.location.offset,
                "seq": c.location.seq,
            }),
            Outcome::Failure,
            Some(c.to_string()),
        ),
        Err(e) => return Err(store_error(app, &e)),
    };
    let mut metadata = Metadata::new();
    metadata.insert("intact".into(), body["intact"].clone());
    let mut event = audit::event(
        "log.verify",
        principal.actor(),
        Resource::kind("log"),
        outcome,
        &origin,
        metadata,
    );
    if let Some(r) = reason {
        event = event.with_reason(audit::clean(&r, 2048));
    }
    record(app, &store, event).await?;
    Ok(json_response(StatusCode::OK, to_json(&body)?))
}

// ---------------------------------------------------------------- status

/// Stats and metrics cover every tenant: bound tokens may not see them.
async fn operator(app: &App, headers: &HeaderMap, origin: &Origin) -> Result<Principal, ApiError> {
    let principal = authenticate(app, headers, origin).await?;
    require(app, &principal, origin, &[Scope::Query, Scope::Admin]).await?;
    if principal.tenant.is_some() {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_forbidden",
            format!(
                "the token `{}` is bound to a tenant; statistics cover every tenant and need a \
                 token without a tenant binding",
                principal.name
            ),
        );
        return Err(deny(
            app,
            &principal,
            origin,
            "is bound to a tenant and asked for statistics",
            e,
        )
        .await);
    }
    Ok(principal)
}

async fn stats(State(app): State<Arc<App>>, RawQuery(raw): RawQuery, req: Request) -> Response {
    let run = async {
        let (parts, _) = req.into_parts();
        let origin = origin(&parts.headers, peer_of(&parts.extensions), "GET /v1/stats");
        operator(&app, &parts.headers, &origin).await?;
        params::parse(raw.as_deref(), &[], &[])?;
        // While the store is being reopened the server's own figures are
        // still served, without the store's.
        let store = app.store.get().ok();
        if let Some(store) = store.clone() {
            // Figures of a store whose sealed files changed under it would
            // describe a log that the next open refuses: say so instead.
            blocking(move || store.check_segment_files())
                .await?
                .map_err(|e| store_error(&app, &e))?;
        }
        let s = store.map(|s| s.stats());
        let m = &app.metrics;
        let engine = s.map(|s| {
            json!({
                "records": s.records,
                "segments": s.segments,
                "sealed_segments": s.sealed_segments,
                "appends": s.appends,
                "appended_events": s.appended_events,
                "written_bytes": s.written_bytes,
                "commit_groups": s.commit_groups,
                "segment_rolls": s.segment_rolls,
                "index_rebuilds": s.index_rebuilds,
                "fsyncs": s.sync_latency_us.count(),
                "fsync_mean_us": s.sync_latency_us.mean(),
                "sync_latency_us": {"bounds": s.sync_latency_us.bounds, "counts": s.sync_latency_us.counts},
                "group_events": {"bounds": s.group_events.bounds, "counts": s.group_events.counts},
            })
        });
        let body = json!({
            "ready": app.store.is_ready(),
            "store": engine,
            "server": {
                "ingest_requests": metrics::get(&m.ingest_requests),
                "ingest_events": metrics::get(&m.ingest_events),
                "ingest_bytes": metrics::get(&m.ingest_bytes),
                "auth_failures": metrics::get(&m.auth_failures),
                "auth_denials": metrics::get(&m.auth_denials),
                "unavailable": metrics::get(&m.unavailable),
                "storage_full": metrics::get(&m.storage_full),
                "idempotent_replays": metrics::get(&m.idempotent_replays),
                "idempotency_keys": app.idempotency.len(),
                "refusals_suppressed": metrics::get(&m.refusals_suppressed),
                "connections": metrics::get(&m.connections),
                "tail_streams": metrics::get(&m.tail_streams),
                "store_reopens": app.store.reopens(),
            },
        });
        Ok::<_, ApiError>(json_response(StatusCode::OK, to_json(&body)?))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn prometheus(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    let run = async {
        let (parts, _) = req.into_parts();
        let origin = origin(&parts.headers, peer_of(&parts.extensions), "GET /metrics");
        operator(&app, &parts.headers, &origin).await?;
        params::parse(raw.as_deref(), &[], &[])?;
        let stats = app.store.get().ok().map(|s| s.stats());
        let dir = app.store.dir().to_path_buf();
        let ready = app.store.is_ready();
        let a = app.clone();
        let text = blocking(move || a.metrics.render(stats.as_ref(), &dir, ready)).await?;
        let mut r = text.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        Ok::<_, ApiError>(r)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.store.not_ready_reason() {
        None => json_response(StatusCode::OK, br#"{"ready":true}"#.to_vec()),
        Some(reason) => {
            let body = json!({"ready": false, "reason": reason}).to_string();
            json_response(StatusCode::SERVICE_UNAVAILABLE, body.into_bytes())
        }
    }
}

/// For the tail handler: authenticate, parse, bind the tenant, record.
pub(crate) async fn open_tail(
    app: &Arc<App>,
    headers: &HeaderMap,
    peer: Option<Peer>,
    raw: Option<String>,
) -> Result<(sealog::query::Query, OwnedSemaphorePermit, Option<u64>), ApiError> {
    let origin = origin(headers, peer, "GET /v1/tail");
    let principal = authorize(app, headers, &origin, Scope::Query).await?;
    let params = params::parse(raw.as_deref(), FILTERS, &["action"])?;
    if params::get(&params, "since").is_some() {
        return Err(ApiError::bad_param(
            "since",
            "looks back from now, and a tail streams what arrives from now on: use `from` \
             (a time or a date) to filter the streamed events by event time",
        ));
    }
    let mut query = params::query(&params)?;
    bind_tenant(app, &principal, &origin, &mut query).await?;
    query.order = sealog::query::Order::OldestFirst;
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID must be the seq of the last event received (an integer)",
                    )
                })?,
        ),
    };
    let Ok(permit) = app.tails.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(format!(
            "{} tail streams are open, the most at once; retry later",
            app.limits.max_tail_streams
        )));
    };
    let store = app.store.get()?;
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    if let Some(id) = last_id {
        metadata.insert("last_event_id".into(), id.into());
    }
    record(
        app,
        &store,
        read_event(
            "log.tail",
            &principal,
            &origin,
            Resource::kind("log"),
            metadata,
        ),
    )
    .await?;
    let _: Value = Value::Null;
    Ok((query, permit, last_id))
}
