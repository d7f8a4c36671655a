//! [`AuditConfig`]: what the layer records and what it does when it
//! cannot.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, StatusCode};
use sealog_format::{Actor, Outcome, Resource};

use crate::proxy::{ForwardedHeader, TrustedProxies};

/// What happens to a request whose audit event cannot be recorded.
///
/// - **`FailOpen`**: the response goes out without waiting for the event to
///   be durable; the event waits for room in the sink's queue at most
///   [`AuditConfig::enqueue_timeout`]. An event that cannot be queued, or
///   whose write fails later, is counted ([`AuditMetrics::failed`] and the
///   sink's counters) and logged whole at error level. The service stays
///   available when the audit log is not, at the price of a gap in the log
///   (visible in the counters and the logs, never silent).
/// - **`FailClosed`**: for compliance-critical routes. A request is refused
///   with `503` before it runs while the sink reports that it cannot write
///   ([`AuditSink::health`](crate::AuditSink::health): a store that refuses
///   writes, a closed sink). Otherwise the response waits until its event
///   is durable (at most [`AuditConfig::enqueue_timeout`] for room in the
///   queue plus [`AuditConfig::durable_timeout`]); if it is not, the
///   response is replaced by `503 audit_unavailable` (for gRPC:
///   `grpc-status: 14 UNAVAILABLE`). No response reports success without
///   its durable record. The handler has run by then, though: its effects
///   stand and the client is told the outcome is unknown, so make such
///   handlers idempotent, or record the intent first yourself. Each
///   response waits for a durable write: latency and throughput follow the
///   sink's group commit.
///
/// Requests the client abandons, and handlers that panic, are recorded
/// (outcome `failure`, `metadata.http.cancelled` or `panicked`) under both
/// policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Availability first: record asynchronously, count and log failures.
    FailOpen,
    /// Evidence first: no success without a durable record.
    FailClosed,
}

/// The route of a request that no route matched (an axum fallback, a `404`),
/// or of a service without matched routes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnmatchedRoute {
    /// The request's path, without its query string (the default: a scan
    /// of unknown paths is evidence too). Characters outside printable
    /// ASCII are percent-encoded; cut to 256 bytes.
    Path,
    /// A fixed name, such as `unmatched`.
    Fixed(String),
}

/// What the layer knows about the response when it decides the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseInfo {
    /// The HTTP status; `None` when there was no response (the service
    /// failed, the request was abandoned).
    pub status: Option<StatusCode>,
    /// The gRPC status (`grpc-status` of the trailers, or of the headers of
    /// a trailers-only response).
    pub grpc_status: Option<i32>,
}

/// The default outcome: gRPC `OK` is success, `PERMISSION_DENIED` (7) and
/// `UNAUTHENTICATED` (16) are denied, every other gRPC status a failure;
/// without a gRPC status, 2xx and 3xx are success, 401 and 403 denied,
/// everything else (and no response at all) a failure.
pub fn default_outcome(info: &ResponseInfo) -> Outcome {
    if let Some(code) = info.grpc_status {
        return match code {
            0 => Outcome::Success,
            7 | 16 => Outcome::Denied,
            _ => Outcome::Failure,
        };
    }
    match info.status {
        Some(s) if s.is_success() || s.is_redirection() => Outcome::Success,
        Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Outcome::Denied,
        _ => Outcome::Failure,
    }
}

type PartsFn<T> = Arc<dyn Fn(&Parts) -> T + Send + Sync>;
type RouteFn<T> = Arc<dyn Fn(&Parts, &str) -> T + Send + Sync>;

/// What the layer records, from where, and its [`FailurePolicy`].
///
/// Every extractor is a closure over the request's head ([`Parts`]: method,
/// URI, headers, extensions) as the layer sees it. An extension set by a
/// middleware outside the layer is visible; one set by a middleware inside
/// it (an auth middleware placed after the layer so that its `401`s are
/// recorded too) is seen by [`AuditLayer::capture_layer`](crate::AuditLayer::capture_layer)
/// placed after that middleware, or set with
/// [`AuditContext`](crate::AuditContext).
///
/// ```
/// use sealog_format::{Actor, Outcome};
/// use sealog_tower::{AuditConfig, FailurePolicy, TrustedProxies};
///
/// #[derive(Clone)]
/// struct User { id: String }
///
/// let config = AuditConfig::new(FailurePolicy::FailOpen)
///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
///     .actor(|parts| parts.extensions.get::<User>().map(|u| Actor::new("user", &u.id)))
///     .tenant(|parts| parts.headers.get("x-tenant")?.to_str().ok().map(str::to_owned))
///     .failure_policy_for(|parts| if parts.uri.path().starts_with("/admin") {
///         FailurePolicy::FailClosed
///     } else {
///         FailurePolicy::FailOpen
///     })
///     .skip(|parts| parts.uri.path() == "/healthz");
/// ```
#[derive(Clone)]
pub struct AuditConfig {
    pub(crate) policy: FailurePolicy,
    pub(crate) policy_for: Option<PartsFn<FailurePolicy>>,
    pub(crate) request_id_header: HeaderName,
    pub(crate) accept_request_id: bool,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) peer: Option<PartsFn<Option<IpAddr>>>,
    pub(crate) route: Option<PartsFn<String>>,
    pub(crate) unmatched_route: UnmatchedRoute,
    pub(crate) outcome: Arc<dyn Fn(&ResponseInfo) -> Outcome + Send + Sync>,
    pub(crate) actor: Option<PartsFn<Option<Actor>>>,
    pub(crate) action: Option<RouteFn<String>>,
    pub(crate) resource: Option<RouteFn<Option<Resource>>>,
    pub(crate) tenant: Option<PartsFn<Option<String>>>,
    pub(crate) skip: Option<PartsFn<bool>>,
    pub(crate) enqueue_timeout: Duration,
    pub(crate) durable_timeout: Duration,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("policy", &self.policy)
            .field("request_id_header", &self.request_id_header)
            .field("accept_request_id", &self.accept_request_id)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field("unmatched_route", &self.unmatched_route)
            .field("enqueue_timeout", &self.enqueue_timeout)
            .field("durable_timeout", &self.durable_timeout)
            .finish_non_exhaustive()
    }
}

impl AuditConfig {
    /// The defaults, with the failure policy that must be chosen: request id
    /// in `x-request-id`, no trusted proxy, the route from axum's
    /// `MatchedPath` (else the path), action `http.<method>`, resource
    /// `http.route:<route>`, actor `anonymous:anonymous` until an extractor
    /// or the service says otherwise, outcome by [`default_outcome`].
    pub fn new(policy: FailurePolicy) -> AuditConfig {
        AuditConfig {
            policy,
            policy_for: None,
            request_id_header: HeaderName::from_static("x-request-id"),
            accept_request_id: true,
            trusted_proxies: TrustedProxies::none(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            peer: None,
            route: None,
            unmatched_route: UnmatchedRoute::Path,
            outcome: Arc::new(default_outcome),
            actor: None,
            action: None,
            resource: None,
            tenant: None,
            skip: None,
            enqueue_timeout: Duration::from_secs(1),
            durable_timeout: Duration::from_secs(10),
        }
    }

    /// Chooses the failure policy per request (by path, say), instead of the
    /// one given to [`AuditConfig::new`].
    pub fn failure_policy_for(
        mut self,
        f: impl Fn(&Parts) -> FailurePolicy + Send + Sync + 'static,
    ) -> AuditConfig {
        self.policy_for = Some(Arc::new(f));
        self
    }

    /// The header carrying the request id (default `x-request-id`).
    pub fn request_id_header(mut self, name: HeaderName) -> AuditConfig {
        self.request_id_header = name;
        self
    }

    /// Whether a request id sent by the client is kept (default true). A
    /// sent id is kept only if it is 1 to 128 printable ASCII characters
    /// without spaces; any other is replaced by a generated one (a UUID).
    pub fn accept_request_id(mut self, accept: bool) -> AuditConfig {
        self.accept_request_id = accept;
        self
    }

    /// The proxies whose forwarding header is believed (default none: the
    /// peer is the client).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> AuditConfig {
        self.trusted_proxies = proxies;
        self
    }

    /// The header the trusted proxies maintain (default `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> AuditConfig {
        self.forwarded_header = header;
        self
    }

    /// How to find the connection's peer address (default: the
    /// [`PeerAddr`](crate::PeerAddr) extension, then axum's
    /// `ConnectInfo<SocketAddr>`).
    pub fn peer_addr(
        mut self,
        f: impl Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> AuditConfig {
        self.peer = Some(Arc::new(f));
        self
    }

    /// How to name the route (default: axum's `MatchedPath`, such as
    /// `/customers/{id}`, else [`AuditConfig::unmatched_route`]).
    pub fn route(mut self, f: impl Fn(&Parts) -> String + Send + Sync + 'static) -> AuditConfig {
        self.route = Some(Arc::new(f));
        self
    }

    /// The route of a request no route matched (default the path).
    pub fn unmatched_route(mut self, unmatched: UnmatchedRoute) -> AuditConfig {
        self.unmatched_route = unmatched;
        self
    }

    /// How the outcome follows from the response (default
    /// [`default_outcome`]).
    pub fn outcome(
        mut self,
        f: impl Fn(&ResponseInfo) -> Outcome + Send + Sync + 'static,
    ) -> AuditConfig {
        self.outcome = Arc::new(f);
        self
    }

    /// Who acted, from the request (e.g. the user an auth middleware put in
    /// the extensions). `None` leaves the actor to the capture layer or the
    /// service, and records `anonymous:anonymous` if nobody sets one.
    pub fn actor(
        mut self,
        f: impl Fn(&Parts) -> Option<Actor> + Send + Sync + 'static,
    ) -> AuditConfig {
        self.actor = Some(Arc::new(f));
        self
    }

    /// The action, from the request and its route (default
    /// `http.<method>`, e.g. `http.delete`). It must be a lowercase dotted
    /// machine name.
    pub fn action(
        mut self,
        f: impl Fn(&Parts, &str) -> String + Send + Sync + 'static,
    ) -> AuditConfig {
        self.action = Some(Arc::new(f));
        self
    }

    /// The resource, from the request and its route (default
    /// `{"type": "http.route", "id": <route>}`; `None` keeps the default).
    pub fn resource(
        mut self,
        f: impl Fn(&Parts, &str) -> Option<Resource> + Send + Sync + 'static,
    ) -> AuditConfig {
        self.resource = Some(Arc::new(f));
        self
    }

    /// The tenant, from the request.
    pub fn tenant(
        mut self,
        f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> AuditConfig {
        self.tenant = Some(Arc::new(f));
        self
    }

    /// Requests not to record (health checks, metrics scrapes). They still
    /// get a request id.
    pub fn skip(mut self, f: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> AuditConfig {
        self.skip = Some(Arc::new(f));
        self
    }

    /// How long an event waits for room in the sink's queue (default 1 s).
    pub fn enqueue_timeout(mut self, timeout: Duration) -> AuditConfig {
        self.enqueue_timeout = timeout;
        self
    }

    /// How long a `FailClosed` response waits for its event to be durable
    /// once queued (default 10 s).
    pub fn durable_timeout(mut self, timeout: Duration) -> AuditConfig {
        self.durable_timeout = timeout;
        self
    }
}

/// The layer's counters, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditMetrics {
    /// Events handed to the sink.
    pub recorded: u64,
    /// `FailClosed` events confirmed durable.
    pub durable: u64,
    /// Events the layer saw fail: not queued in time, or (`FailClosed`) not
    /// durable. (`FailOpen` events that fail after being queued are counted
    /// by the sink.)
    pub failed: u64,
    /// `FailClosed` responses replaced by `503`, and requests refused before
    /// running because the sink could not write.
    pub withheld: u64,
    /// Requests not recorded because [`AuditConfig::skip`] said so.
    pub skipped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, grpc: Option<i32>) -> Outcome {
        default_outcome(&ResponseInfo {
            status: StatusCode::from_u16(status).ok(),
            grpc_status: grpc,
        })
    }

    #[test]
    fn default_outcome_follows_status_and_grpc_status() {
        assert_eq!(outcome(200, None), Outcome::Success);
        assert_eq!(outcome(204, None), Outcome::Success);
        assert_eq!(outcome(302, None), Outcome::Success);
        assert_eq!(outcome(401, None), Outcome::Denied);
        assert_eq!(outcome(403, None), Outcome::Denied);
        assert_eq!(outcome(404, None), Outcome::Failure);
        assert_eq!(outcome(500, None), Outcome::Failure);
        assert_eq!(outcome(200, Some(0)), Outcome::Success);
        assert_eq!(outcome(200, Some(7)), Outcome::Denied);
        assert_eq!(outcome(200, Some(16)), Outcome::Denied);
        assert_eq!(outcome(200, Some(5)), Outcome::Failure);
        assert_eq!(
            default_outcome(&ResponseInfo {
                status: None,
                grpc_status: None
            }),
            Outcome::Failure
        );
    }
}
