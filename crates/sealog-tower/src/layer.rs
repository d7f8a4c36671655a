//! [`AuditLayer`] and its service: one audit event per request.
//!
//! A request goes through four steps:
//!
//! 1. **Begin** ([`Draft::begin`]): the request id is chosen and set on the
//!    request (header and [`RequestId`] extension); the client's address,
//!    user agent, route, action, resource, actor, tenant and failure policy
//!    are taken from the request as it arrives; an [`AuditContext`] goes
//!    into the extensions for the code inside to complete.
//! 2. Under `FailClosed`, a sink that reports it cannot write refuses the
//!    request before it runs.
//! 3. **Serve**: the inner service runs. A drop guard records the request
//!    if its future is dropped before it answers (the client went away, or
//!    a panic unwinds through it).
//! 4. **Record**: the event is built from the response and handed to the
//!    sink from a task of its own (so that a client going away cannot
//!    cancel it half-way); the response waits for the event to be queued
//!    (`FailOpen`) or durable (`FailClosed`). A gRPC response whose status
//!    comes in trailers is recorded when its body ends ([`AuditBody`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use sealog_format::{Actor, Event, Metadata, Outcome, Resource, Source, Timestamp};
use serde_json::Value;
use tower::{Layer, Service};

use crate::body::{AuditBody, Deferred};
use crate::config::{AuditConfig, AuditMetrics, FailurePolicy, ResponseInfo, UnmatchedRoute};
use crate::context::{self, AuditContext, RequestId};
use crate::proxy;
use crate::sink::{AuditSink, BoxFuture, Receipt, SinkError, SinkErrorKind};

/// The connection's peer address, for services without axum's
/// `ConnectInfo`: insert it into each request's extensions (in a plain
/// hyper server, from the accepted socket's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A tower layer that records an audit event per request. See the
/// [crate documentation](crate).
#[derive(Clone)]
pub struct AuditLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub sink: Arc<dyn AuditSink>,
    pub config: AuditConfig,
    pub counters: Counters,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub recorded: AtomicU64,
    pub durable: AtomicU64,
    pub failed: AtomicU64,
    pub withheld: AtomicU64,
    pub skipped: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl AuditLayer {
    /// A layer recording into `sink` as `config` says.
    pub fn new(sink: impl AuditSink, config: AuditConfig) -> AuditLayer {
        AuditLayer::with_shared_sink(Arc::new(sink), config)
    }

    /// A layer recording into a sink shared with other layers.
    pub fn with_shared_sink(sink: Arc<dyn AuditSink>, config: AuditConfig) -> AuditLayer {
        AuditLayer {
            shared: Arc::new(Shared {
                sink,
                config,
                counters: Counters::default(),
            }),
        }
    }

    /// A layer to place further in, after the middleware that authenticates
    /// requests: it runs the actor and tenant extractors again on the
    /// request as it is there, so that the actor an auth middleware put in
    /// the extensions is recorded, while the outer layer still records the
    /// requests that middleware refuses.
    ///
    /// ```text
    /// Router::new().route(…)
    ///     .layer(audit.capture_layer())   // sees the user the auth middleware set
    ///     .layer(from_fn(authenticate))   // sets Extension<User>, or answers 401
    ///     .layer(audit)                   // outermost: records every request, 401s too
    /// ```
    pub fn capture_layer(&self) -> CaptureLayer {
        CaptureLayer {
            shared: self.shared.clone(),
        }
    }

    /// A snapshot of the layer's counters.
    pub fn metrics(&self) -> AuditMetrics {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AuditMetrics {
            recorded: get(&c.recorded),
            durable: get(&c.durable),
            failed: get(&c.failed),
            withheld: get(&c.withheld),
            skipped: get(&c.skipped),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> AuditService<S> {
        AuditService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of an [`AuditLayer`].
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for AuditService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuditService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<AuditBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let (mut parts, body) = request.into_parts();

        if shared.config.skip.as_ref().is_some_and(|skip| skip(&parts)) {
            add(&shared.counters.skipped);
            let id = set_request_id(&shared.config, &mut parts);
            let future = inner.call(Request::from_parts(parts, body));
            return Box::pin(async move {
                let mut response = future.await?;
                put_request_id(&shared.config, response.headers_mut(), &id);
                Ok(response.map(AuditBody::new))
            });
        }

        let draft = Draft::begin(&shared, &mut parts);
        if draft.policy == FailurePolicy::FailClosed
            && let Err(e) = shared.sink.health()
        {
            add(&shared.counters.withheld);
            tracing::error!(
                request_id = %draft.request_id,
                error = %e,
                "sealog: request refused before it ran: the audit log cannot record it"
            );
            let response = withheld(&shared.config, &draft.request_id, draft.grpc_request);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let future = inner.call(Request::from_parts(parts, body));
        Box::pin(async move {
            let mut guard = Guard {
                shared: shared.clone(),
                draft: Some(draft),
            };
            let result = future.await;
            let Some(draft) = guard.draft.take() else {
                return result.map(|r| r.map(AuditBody::new));
            };
            match result {
                Ok(response) => Ok(finish(shared, draft, response).await),
                Err(error) => {
                    let policy = draft.policy;
                    let event = draft.event(&shared, ResponseInfo::none(), End::ServiceError);
                    let _ = tokio::spawn(record(shared, event, policy)).await;
                    Err(error)
                }
            }
        })
    }
}

/// Records the event of a response and returns the response to send.
async fn finish<B>(
    shared: Arc<Shared>,
    draft: Draft,
    response: Response<B>,
) -> Response<AuditBody<B>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    let (mut head, body) = response.into_parts();
    put_request_id(&shared.config, &mut head.headers, &draft.request_id);
    let grpc = grpc_status(&head.headers);
    if is_grpc(&head.headers) && grpc.is_none() && head.status == StatusCode::OK {
        // The gRPC status comes in the trailers: record when they do.
        let deferred = Deferred::new(shared, draft, head.status);
        return Response::from_parts(head, AuditBody::deferred(body, deferred));
    }
    let policy = draft.policy;
    let request_id = draft.request_id.clone();
    let grpc_request = draft.grpc_request;
    let info = ResponseInfo::of(head.status, grpc);
    let event = draft.event(&shared, info, End::Response);
    let result = join(tokio::spawn(record(shared.clone(), event, policy)).await);
    match (policy, result) {
        (FailurePolicy::FailClosed, Err(e)) => {
            add(&shared.counters.withheld);
            tracing::error!(
                request_id = %request_id,
                status = head.status.as_u16(),
                error = %e,
                "sealog: response withheld: its audit record was not written (the handler ran)"
            );
            withheld(&shared.config, &request_id, grpc_request)
        }
        (_, Ok(Some(receipt))) => {
            head.extensions.insert(receipt);
            Response::from_parts(head, AuditBody::new(body))
        }
        _ => Response::from_parts(head, AuditBody::new(body)),
    }
}

pub(crate) fn join(
    result: Result<Result<Option<Receipt>, SinkError>, tokio::task::JoinError>,
) -> Result<Option<Receipt>, SinkError> {
    result.unwrap_or_else(|e| {
        Err(SinkError::new(
            SinkErrorKind::Failed,
            format!("the task recording the audit event failed: {e}"),
        ))
    })
}

/// Hands `event` to the sink; under `FailClosed`, waits until it is
/// durable. Failures are counted and logged with the event.
pub(crate) async fn record(
    shared: Arc<Shared>,
    event: Event,
    policy: FailurePolicy,
) -> Result<Option<Receipt>, SinkError> {
    let config = &shared.config;
    let copy = event.clone();
    let result = async {
        let durable =
            match tokio::time::timeout(config.enqueue_timeout, shared.sink.submit(event)).await {
                Ok(Ok(durable)) => durable,
                Ok(Err(unrecorded)) => return Err(unrecorded.error),
                Err(_) => {
                    return Err(SinkError::new(
                        SinkErrorKind::TimedOut,
                        format!(
                            "the audit queue stayed full for {} ms",
                            config.enqueue_timeout.as_millis()
                        ),
                    ));
                }
            };
        add(&shared.counters.recorded);
        match policy {
            FailurePolicy::FailOpen => Ok(None),
            FailurePolicy::FailClosed => {
                match tokio::time::timeout(config.durable_timeout, durable).await {
                    Ok(Ok(receipt)) => {
                        add(&shared.counters.durable);
                        Ok(Some(receipt))
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(SinkError::new(
                        SinkErrorKind::TimedOut,
                        format!(
                            "the audit event was not durable within {} ms (it may still be \
                             written)",
                            config.durable_timeout.as_millis()
                        ),
                    )),
                }
            }
        }
    }
    .await;
    if let Err(e) = &result {
        add(&shared.counters.failed);
        tracing::error!(
            event = %serde_json::to_string(&copy).unwrap_or_default(),
            error = %e,
            "sealog: audit event not recorded"
        );
    }
    result
}

/// Records `event` without anyone waiting: from a task if a runtime is at
/// hand, else straight into the queue if it has room.
pub(crate) fn record_detached(shared: &Arc<Shared>, event: Event) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(record(shared.clone(), event, FailurePolicy::FailOpen));
        }
        Err(_) => match shared.sink.try_submit(event) {
            Ok(_) => add(&shared.counters.recorded),
            Err(u) => {
                add(&shared.counters.failed);
                tracing::error!(
                    event = %serde_json::to_string(&u.event).unwrap_or_default(),
                    error = %u.error,
                    "sealog: audit event not recorded"
                );
            }
        },
    }
}

/// Records a request whose future was dropped before it answered.
struct Guard {
    shared: Arc<Shared>,
    draft: Option<Draft>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(draft) = self.draft.take() {
            let end = if std::thread::panicking() {
                End::Panicked
            } else {
                End::Cancelled
            };
            let event = draft.event(&self.shared, ResponseInfo::none(), end);
            record_detached(&self.shared, event);
        }
    }
}

/// How the request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// A response (or a gRPC status) came back.
    Response,
    /// The service returned an error instead of a response.
    ServiceError,
    /// The future was dropped before a response: the client went away.
    Cancelled,
    /// The future was dropped by a panic.
    Panicked,
    /// The response body failed after its head was sent.
    BodyError,
    /// A gRPC response ended without a `grpc-status`.
    NoGrpcStatus,
}

/// Everything known about a request before its response.
pub(crate) struct Draft {
    time: Timestamp,
    started: Instant,
    pub request_id: RequestId,
    method: Method,
    route: String,
    action: String,
    resource: Resource,
    source: Option<Source>,
    via: Option<IpAddr>,
    unparsable: bool,
    ctx: AuditContext,
    pub policy: FailurePolicy,
    pub grpc_request: bool,
}

impl Draft {
    /// Reads the request's head and prepares it for the service (request id
    /// header, [`RequestId`] and [`AuditContext`] extensions).
    pub fn begin(shared: &Shared, parts: &mut Parts) -> Draft {
        let config = &shared.config;
        let request_id = set_request_id(config, parts);
        let peer = peer_ip(config, parts);
        let resolved = proxy::resolve(
            peer,
            &parts.headers,
            &config.trusted_proxies,
            config.forwarded_header,
        );
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .map(|v| clean_text(&String::from_utf8_lossy(v.as_bytes()), MAX_USER_AGENT))
            .filter(|ua| !ua.is_empty());
        let source = Source {
            ip: resolved.client,
            user_agent,
        };
        let route = route(config, parts);
        let action = match &config.action {
            Some(f) => f(parts, &route),
            None => default_action(&parts.method),
        };
        let resource = config
            .resource
            .as_ref()
            .and_then(|f| f(parts, &route))
            .unwrap_or_else(|| Resource::new("http.route", route.clone()));
        let ctx = AuditContext::new(request_id.clone());
        ctx.offer(
            context::Source::Layer,
            config.actor.as_ref().and_then(|f| f(parts)),
            None,
            config.tenant.as_ref().and_then(|f| f(parts)),
        );
        parts.extensions.insert(ctx.clone());
        let policy = config
            .policy_for
            .as_ref()
            .map_or(config.policy, |f| f(parts));
        Draft {
            time: Timestamp::now(),
            started: Instant::now(),
            request_id,
            method: parts.method.clone(),
            route,
            action,
            resource,
            source: (!source.is_empty()).then_some(source),
            via: resolved.via,
            unparsable: resolved.unparsable,
            ctx,
            policy,
            grpc_request: is_grpc(&parts.headers),
        }
    }

    /// The event, once the request ended as `end`.
    pub fn event(self, shared: &Shared, info: ResponseInfo, end: End) -> Event {
        let o = self.ctx.take();
        let outcome = match end {
            End::Response | End::NoGrpcStatus => {
                o.outcome.unwrap_or_else(|| (shared.config.outcome)(&info))
            }
            End::ServiceError | End::Cancelled | End::Panicked | End::BodyError => Outcome::Failure,
        };
        let mut http = Metadata::new();
        http.insert("method".into(), Value::from(self.method.as_str()));
        http.insert("route".into(), Value::from(self.route));
        if let Some(status) = info.status {
            http.insert("status".into(), Value::from(status.as_u16()));
        }
        if let Some(code) = info.grpc_status {
            http.insert("grpc_status".into(), Value::from(code));
        }
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        http.insert("duration_ms".into(), Value::from(micros as f64 / 1000.0));
        if let Some(via) = self.via {
            http.insert("forwarded_by".into(), Value::from(via.to_string()));
        }
        if self.unparsable {
            http.insert("forwarded_for_unparsable".into(), Value::from(true));
        }
        match end {
            End::Response => {}
            End::ServiceError => {
                http.insert("service_error".into(), Value::from(true));
            }
            End::Cancelled => {
                http.insert("cancelled".into(), Value::from(true));
            }
            End::Panicked => {
                http.insert("panicked".into(), Value::from(true));
            }
            End::BodyError => {
                http.insert("body_error".into(), Value::from(true));
            }
            End::NoGrpcStatus => {
                http.insert("grpc_status_missing".into(), Value::from(true));
            }
        }
        // The layer's own facts last: the service cannot overwrite them.
        let mut metadata = o.metadata;
        metadata.insert("http".into(), Value::Object(http));
        let mut event = Event::new(
            o.actor
                .unwrap_or_else(|| Actor::new("anonymous", "anonymous")),
            o.action.unwrap_or(self.action),
            o.resource.unwrap_or(self.resource),
            outcome,
        );
        event.time = Some(self.time);
        event.tenant = o.tenant;
        event.source = self.source;
        event.request_id = Some(self.request_id.as_str().to_owned());
        event.reason = o.reason;
        event.metadata = Some(metadata);
        event
    }
}

/// The user agent is cut to the store's limit for it.
const MAX_USER_AGENT: usize = 512;
/// Routes are cut to the store's limit for an identifier.
const MAX_ROUTE: usize = 256;
/// A received request id is kept only up to the store's limit for it.
const MAX_REQUEST_ID: usize = 128;

/// Chooses the request id and sets it on the request.
fn set_request_id(config: &AuditConfig, parts: &mut Parts) -> RequestId {
    let received = config
        .accept_request_id
        .then(|| parts.headers.get(&config.request_id_header))
        .flatten()
        .map(HeaderValue::as_bytes)
        .filter(|v| acceptable_request_id(v))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned);
    let id = RequestId::new(&received.unwrap_or_else(generate_request_id));
    put_request_id(config, &mut parts.headers, &id);
    parts.extensions.insert(id.clone());
    id
}

fn put_request_id(config: &AuditConfig, headers: &mut HeaderMap, id: &RequestId) {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(config.request_id_header.clone(), value);
    }
}

/// 1 to 128 printable ASCII characters, no spaces: safe in a header, a log
/// line and the store's `request_id`.
fn acceptable_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A random (version 4) UUID.
fn generate_request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No system randomness: the clock and a counter keep ids distinct.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        b[..8].copy_from_slice(&Timestamp::now().as_nanos().to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = |r: std::ops::Range<usize>| b.get(r).map(hex_of).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn peer_ip(config: &AuditConfig, parts: &Parts) -> Option<IpAddr> {
    if let Some(f) = &config.peer {
        return f(parts);
    }
    if let Some(PeerAddr(addr)) = parts.extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

fn route(config: &AuditConfig, parts: &Parts) -> String {
    if let Some(f) = &config.route {
        return clean_route(&f(parts));
    }
    #[cfg(feature = "axum")]
    if let Some(matched) = parts.extensions.get::<axum::extract::MatchedPath>() {
        return clean_route(matched.as_str());
    }
    match &config.unmatched_route {
        UnmatchedRoute::Path => clean_route(parts.uri.path()),
        UnmatchedRoute::Fixed(name) => clean_route(name),
    }
}

/// `http.<method>`, the method lowercased (an extension method's other
/// characters become `_`).
fn default_action(method: &Method) -> String {
    let name: String = method
        .as_str()
        .chars()
        .take(100)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '_',
        })
        .collect();
    format!("http.{name}")
}

/// A route as an identifier: printable ASCII kept, everything else
/// percent-encoded, cut to the store's limit; never empty.
fn clean_route(route: &str) -> String {
    let mut out = String::with_capacity(route.len().min(MAX_ROUTE));
    for b in route.bytes() {
        let piece = if (0x21..=0x7e).contains(&b) {
            char::from(b).to_string()
        } else {
            format!("%{b:02X}")
        };
        if out.len() + piece.len() > MAX_ROUTE {
            break;
        }
        out.push_str(&piece);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Free text from a header (the user agent): without the characters the
/// store refuses in it (controls, bidirectional embeddings and overrides,
/// line and paragraph separators), cut to `max` bytes.
fn clean_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let refused = c.is_control()
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}');
        if refused {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The answer to a request whose audit record could not be written
/// (`FailClosed`): `503 audit_unavailable`, or gRPC `UNAVAILABLE`. Says
/// nothing of the cause (that goes to the log), only the request id to
/// quote.
pub(crate) fn withheld<B>(
    config: &AuditConfig,
    id: &RequestId,
    grpc: bool,
) -> Response<AuditBody<B>> {
    let mut response = if grpc {
        let mut r = Response::new(AuditBody::full(Bytes::new()));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from_static("14"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static(
                "the%20audit%20record%20of%20this%20request%20could%20not%20be%20written",
            ),
        );
        r
    } else {
        let body = serde_json::json!({"error": {
            "code": "audit_unavailable",
            "message": "the audit record of this request could not be written, so its outcome \
                        is not confirmed; retry later, and quote the request id if it persists",
            "request_id": id.as_str(),
        }});
        let mut r = Response::new(AuditBody::full(Bytes::from(body.to_string())));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    put_request_id(config, response.headers_mut(), id);
    response
}

/// The layer made by [`AuditLayer::capture_layer`].
#[derive(Clone)]
pub struct CaptureLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CaptureLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for CaptureLayer {
    type Service = CaptureService<S>;

    fn layer(&self, inner: S) -> CaptureService<S> {
        CaptureService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`CaptureLayer`].
#[derive(Clone)]
pub struct CaptureService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for CaptureService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for CaptureService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        let Some(ctx) = request.extensions().get::<AuditContext>().cloned() else {
            return self.inner.call(request);
        };
        let (parts, body) = request.into_parts();
        let config = &self.shared.config;
        ctx.offer(
            context::Source::Capture,
            config.actor.as_ref().and_then(|f| f(&parts)),
            None,
            config.tenant.as_ref().and_then(|f| f(&parts)),
        );
        self.inner.call(Request::from_parts(parts, body))
    }
}

impl ResponseInfo {
    pub(crate) fn none() -> ResponseInfo {
        ResponseInfo {
            status: None,
            grpc_status: None,
        }
    }

    pub(crate) fn of(status: StatusCode, grpc_status: Option<i32>) -> ResponseInfo {
        ResponseInfo {
            status: Some(status),
            grpc_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_safe() {
        assert!(acceptable_request_id(b"req-1"));
        assert!(acceptable_request_id(&[b'a'; 128]));
        assert!(!acceptable_request_id(&[b'a'; 129]));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(b"two words"));
        assert!(!acceptable_request_id(b"line\nbreak"));
        assert!(!acceptable_request_id("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn generated_request_ids_are_v4_uuids() {
        let a = generate_request_id();
        let b = generate_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn routes_are_printable_ascii_within_the_limit() {
        assert_eq!(clean_route("/customers/{id}"), "/customers/{id}");
        assert_eq!(clean_route("/caf\u{e9} x"), "/caf%C3%A9%20x");
        assert_eq!(clean_route(""), "/");
        assert_eq!(clean_route(&"/a".repeat(300)).len(), 256);
    }

    #[test]
    fn user_agents_lose_what_the_store_refuses() {
        assert_eq!(clean_text("curl/8.5", 512), "curl/8.5");
        assert_eq!(clean_text("evil\u{202E}gpj.exe\r\n", 512), "evilgpj.exe");
        assert_eq!(clean_text(&"\u{e9}".repeat(300), 512).len(), 512);
        assert_eq!(clean_text("\u{e9}".repeat(300).as_str(), 511).len(), 510);
    }

    #[test]
    fn default_actions_are_valid_machine_names() {
        assert_eq!(default_action(&Method::DELETE), "http.delete");
        let odd = Method::from_bytes(b"M-SEARCH").expect("method");
        assert_eq!(default_action(&odd), "http.m-search");
        let odd = Method::from_bytes(b"PROP!FIND").expect("method");
        assert_eq!(default_action(&odd), "http.prop_find");
    }
}
