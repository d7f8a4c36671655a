//! The routes: which handler answers which path, and the layers around
//! them.
//!
//! Handlers live in one file per group: [`ingest`] (`POST /v1/events`),
//! [`events`] (queries, exports, single records, the tail, the alerts), [`proofs`]
//! (checkpoints, inclusion and consistency proofs) and [`admin`]
//! (verification, statistics, metrics, health); [`openapi`] describes
//! them all (`GET /v1/openapi.json`). Every handler keeps the
//! same order: authenticate and authorize (the [`Authed`] extractor, which
//! records refusals), parse the query string strictly, do the work on a
//! blocking thread (the engine blocks on `fdatasync`), record the server's
//! own audit event durably, then answer with a typed body.
//!
//! Around them, from the outside in: a caught panic becomes a 500; every
//! status is counted; the request timeout (`request_timeout_secs`, not on
//! `POST /v1/verify`, which has its own) answers 503 `request_timeout`;
//! the latency of each measured endpoint is recorded under the route
//! matched ([`endpoint_of`]).
//!
//! A new endpoint touches: a handler in its group's file (taking
//! `Authed<Scope>` and, for its parameters, `RawQuery`), a path constant
//! and a `route` line here, its [`openapi::operations`] entry (the tests
//! there fail without it), [`endpoint_of`] if it has a latency
//! histogram, and, for a new refusal, a variant of `ErrorCode` and its row
//! in api.md (a test holds those two together).
//!
//! [`Authed`]: crate::auth::Authed

mod admin;
mod events;
mod hooks;
mod ingest;
mod openapi;
mod proofs;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use sealog::Store;
use serde::Serialize;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Endpoint;
use crate::state::App;
use hooks::{CountStatuses, HookLayer, Latency, TimedOut};

/// `POST` ingest, `GET` query and export.
const EVENTS: &str = "/v1/events";
/// One record.
const EVENT: &str = "/v1/events/{seq}";
/// Server-Sent Events of new records.
const TAIL: &str = "/v1/tail";
/// Server-Sent Events of the alerts raised.
const ALERTS: &str = "/v1/alerts";
/// The newest signed checkpoint.
const CHECKPOINT: &str = "/v1/checkpoint";
/// RFC 9162 inclusion proof.
const INCLUSION: &str = "/v1/proof/inclusion";
/// RFC 9162 consistency proof.
const CONSISTENCY: &str = "/v1/proof/consistency";
/// Full verification.
const VERIFY: &str = "/v1/verify";
/// Engine and server counters.
const STATS: &str = "/v1/stats";
/// Prometheus text.
const METRICS: &str = "/metrics";
/// Liveness.
const HEALTHZ: &str = "/healthz";
/// Readiness.
const READYZ: &str = "/readyz";
/// The OpenAPI document.
const OPENAPI: &str = "/v1/openapi.json";

/// The status the timeout layer answers with, turned into the 503
/// `request_timeout` body by [`hooks::TimedOut`]: no [`ErrorCode`] uses it, so
/// it cannot be mistaken for a handler's answer.
const TIMED_OUT: StatusCode = StatusCode::GATEWAY_TIMEOUT;

const NDJSON: &str = "application/x-ndjson";

/// The router with every endpoint.
pub(crate) fn router(app: Arc<App>) -> Router {
    router_and_paths(app).0
}

/// Adds the route `path` to `router`, noting the path in `paths` (the
/// OpenAPI tests compare the paths routed with the document's).
fn route(
    router: Router<Arc<App>>,
    paths: &mut Vec<&'static str>,
    path: &'static str,
    methods: MethodRouter<Arc<App>>,
) -> Router<Arc<App>> {
    paths.push(path);
    router.route(path, methods)
}

/// The router, and the path of each of its routes.
fn router_and_paths(app: Arc<App>) -> (Router, Vec<&'static str>) {
    let timeout = app.limits.request_timeout;
    let latency = HookLayer(Latency(app.clone()));
    let mut paths = Vec::new();
    let p = &mut paths;
    let mut api = Router::new();
    api = route(api, p, EVENTS, post(ingest::ingest).get(events::list));
    api = route(api, p, EVENT, get(events::one));
    api = route(api, p, TAIL, get(events::tail));
    api = route(api, p, ALERTS, get(events::alerts));
    api = route(api, p, CHECKPOINT, get(proofs::checkpoint));
    api = route(api, p, INCLUSION, get(proofs::inclusion));
    api = route(api, p, CONSISTENCY, get(proofs::consistency));
    api = route(api, p, STATS, get(admin::stats));
    api = route(api, p, METRICS, get(admin::prometheus));
    api = route(api, p, HEALTHZ, get(admin::healthz));
    api = route(api, p, READYZ, get(admin::readyz));
    api = route(api, p, OPENAPI, get(openapi::serve));
    // Each `layer` call boxes every route once more, and a boxed route
    // costs an allocation and a clone per request: the layers are stacked
    // first (the first one listed is the outermost), and applied at once.
    let api = api.layer(
        tower::ServiceBuilder::new()
            .layer(HookLayer(TimedOut(timeout)))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                TIMED_OUT, timeout,
            ))
            .layer(latency.clone()),
    );
    // Verification reads the whole log: it has its own, longer limit.
    let verify = route(Router::new(), p, VERIFY, post(admin::verify));
    let router = verify
        .route_layer(latency)
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
                .layer(HookLayer(CountStatuses(app.clone()))),
        )
        .with_state(app);
    (router, paths)
}

/// The endpoint whose latency histogram a request to `route` counts in,
/// if any.
pub(crate) fn endpoint_of(method: &Method, route: &str, headers: &HeaderMap) -> Option<Endpoint> {
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        EVENTS if method == Method::POST => Some(Endpoint::Ingest),
        EVENTS if read && wants_ndjson(headers) => Some(Endpoint::Export),
        EVENTS if read => Some(Endpoint::Query),
        EVENT if read => Some(Endpoint::Get),
        CHECKPOINT | INCLUSION | CONSISTENCY if read => Some(Endpoint::Proof),
        VERIFY if method == Method::POST => Some(Endpoint::Verify),
        _ => None,
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        ErrorCode::Internal,
        "the server hit a bug handling this request (it was not written); please report it",
    )
    .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no endpoint at `{}`; the API is described in docs/api.md (e.g. POST /v1/events, \
             GET /v1/events)",
            crate::audit::clean(req.uri().path(), 200)
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "`{} {}` is not supported; see docs/api.md for the methods of each endpoint",
            req.method(),
            crate::audit::clean(req.uri().path(), 200)
        ),
    )
}

/// A `200 application/json` body.
pub(crate) struct Json<T>(pub(crate) T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => json_bytes(StatusCode::OK, body),
            Err(e) => ApiError::new(
                ErrorCode::Internal,
                format!("serializing the response failed: {e}"),
            )
            .into_response(),
        }
    }
}

/// JSON already serialized.
pub(super) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A `200 text/plain` body (checkpoints, receipts).
fn plain_text(text: String) -> Response {
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Standard base64 of a hash, as proofs carry them.
fn b64(hash: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Whether the client asks for NDJSON.
fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .is_some_and(|a| a.contains(NDJSON) || a.contains("application/jsonl"))
}

/// Runs `f` on the blocking pool (engine calls block on I/O).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            ErrorCode::Internal,
            "a worker thread failed; the request was not completed",
        )
    })
}

/// [`blocking`] for a search or count: it first waits for one of the
/// server's read slots, so that many concurrent queries queue here rather
/// than each starting a blocking thread.
async fn blocking_read<T: Send + 'static>(
    app: &App,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let slot = app.gates.read_slot().await?;
    blocking(move || {
        let _slot = slot;
        f()
    })
    .await
}

/// The answer to an engine error; a write refusal starts a reopen.
fn store_error(app: &App, e: &sealog::Error) -> ApiError {
    app.store.report(e);
    ApiError::from_store(e)
}

/// The 409 of a checkpoint or receipt from a server without a key.
fn no_key() -> ApiError {
    ApiError::new(
        ErrorCode::NoSigningKey,
        "this server has no signing key, so it issues no checkpoints or receipts: start it with \
         --signing-key PREFIX.key (make one with `sealog keygen`)",
    )
}

/// `true`, `false` or absent (`false`), or the 400 naming `name`.
fn flag(params: &crate::params::Params, name: &str) -> Result<bool, ApiError> {
    match crate::params::get(params, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_param(
            name,
            format!(
                "`{}` is not `true` or `false`",
                crate::audit::clean(other, 32)
            ),
        )),
    }
}

fn no_record(seq: u64) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("there is no record {seq} visible to this token"),
    )
}

/// Reads a record and applies the tenant binding: another tenant's record
/// is "not found", and the attempt is recorded.
async fn visible_record<S>(
    app: &App,
    store: &Store,
    auth: &Authed<S>,
    seq: u64,
) -> Result<sealog::Record, ApiError> {
    let s = store.clone();
    let found = blocking(move || s.get(seq))
        .await?
        .map_err(|e| store_error(app, &e))?
        .ok_or_else(|| no_record(seq))?;
    if let Some(bound) = &auth.principal.tenant
        && found.event.tenant.as_deref() != Some(bound)
    {
        let reason =
            format!("is bound to tenant `{bound}` and asked for record {seq} of another tenant");
        return Err(auth.deny(app, &reason, no_record(seq)).await);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn no_error_code_uses_the_timeout_layers_status() {
        assert!(ErrorCode::ALL.iter().all(|c| c.status() != TIMED_OUT));
    }

    #[test]
    fn each_measured_endpoint_has_its_histogram() {
        let none = HeaderMap::new();
        let mut ndjson = HeaderMap::new();
        ndjson.insert(header::ACCEPT, HeaderValue::from_static(NDJSON));
        let cases = [
            (Method::POST, EVENTS, &none, Some(Endpoint::Ingest)),
            (Method::GET, EVENTS, &none, Some(Endpoint::Query)),
            (Method::GET, EVENTS, &ndjson, Some(Endpoint::Export)),
            (Method::HEAD, EVENTS, &none, Some(Endpoint::Query)),
            (Method::GET, EVENT, &none, Some(Endpoint::Get)),
            (Method::GET, CHECKPOINT, &none, Some(Endpoint::Proof)),
            (Method::GET, INCLUSION, &none, Some(Endpoint::Proof)),
            (Method::GET, CONSISTENCY, &none, Some(Endpoint::Proof)),
            (Method::POST, VERIFY, &none, Some(Endpoint::Verify)),
            (Method::GET, TAIL, &none, None),
            (Method::GET, ALERTS, &none, None),
            (Method::GET, STATS, &none, None),
            (Method::GET, METRICS, &none, None),
            (Method::GET, HEALTHZ, &none, None),
            (Method::GET, READYZ, &none, None),
        ];
        for (method, route, headers, want) in cases {
            assert_eq!(
                endpoint_of(&method, route, headers),
                want,
                "{method} {route}"
            );
        }
    }

    /// The timeout layers as the router stacks them, around a handler
    /// that takes longer than the limit.
    #[tokio::test]
    async fn a_request_past_the_timeout_is_answered_503_request_timeout() {
        use std::time::Duration;
        use tower::ServiceExt as _;
        let limit = Duration::from_millis(50);
        let router: Router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "fine" }))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                TIMED_OUT, limit,
            ))
            .layer(HookLayer(TimedOut(limit)));
        let call = |path: &'static str| {
            let router = router.clone();
            async move {
                let req = Request::builder()
                    .uri(path)
                    .body(axum::body::Body::empty())
                    .unwrap();
                router.oneshot(req).await.unwrap()
            }
        };
        let r = call("/slow").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("retry with the same Idempotency-Key"),
            "{body}"
        );
        let r = call("/fast").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}
