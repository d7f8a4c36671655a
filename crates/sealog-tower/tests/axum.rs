//! The layer in a real axum service over TCP, recording into an embedded
//! store: the recorded fields, trusted proxies (and a spoofed
//! `X-Forwarded-For` from an untrusted peer), request ids, the capture
//! layer behind an auth middleware, and both failure policies on a store
//! whose disk fails.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Request};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use sealog::fault::{Fault, FaultFs, Op};
use sealog::{Record, Store, StoreOptions};
use sealog_format::{Actor, Outcome, Resource};
use sealog_tower::{
    AuditConfig, AuditContext, AuditLayer, FailurePolicy, ForwardedHeader, RequestId, StoreSink,
    TrustedProxies,
};
use serde_json::Value;

fn options() -> StoreOptions {
    StoreOptions {
        segment_size: 256 << 10,
        ..StoreOptions::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    sink: StoreSink,
}

fn fixture(options: StoreOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options).unwrap();
    let sink = StoreSink::new(store.clone()).unwrap();
    Fixture {
        _dir: dir,
        store,
        sink,
    }
}

/// Serves `app` on 127.0.0.1 with the peer address in `ConnectInfo`.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// Sends one request over a fresh connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(request.body(String::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The store's records once it holds `n` (FailOpen events are written
/// after the response).
async fn records(store: &Store, n: u64) -> Vec<Record> {
    for _ in 0..500 {
        if store.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.len(), n, "records in the store");
    store.scan(..).map(Result::unwrap).collect()
}

fn http_meta(record: &Record) -> &serde_json::Map<String, Value> {
    record.event.metadata.as_ref().unwrap()["http"]
        .as_object()
        .unwrap()
}

fn user_from_header(parts: &http::request::Parts) -> Option<Actor> {
    let id = parts.headers.get("x-user")?.to_str().ok()?;
    Some(Actor::new("user", id))
}

#[tokio::test]
async fn records_one_event_per_request_with_the_requests_fields() {
    let f = fixture(options());
    let config = AuditConfig::new(FailurePolicy::FailClosed)
        .actor(user_from_header)
        .tenant(|parts| {
            parts
                .headers
                .get("x-tenant")?
                .to_str()
                .ok()
                .map(str::to_owned)
        });
    let app = Router::new()
        .route("/customers/{id}", get(|| async { "customer" }))
        .route("/admin", get(|| async { StatusCode::FORBIDDEN }))
        .layer(AuditLayer::new(f.sink.clone(), config));
    let addr = serve(app).await;

    let (status, headers, _) = send(
        addr,
        "GET",
        "/customers/4471?fields=all",
        &[
            ("user-agent", "audit-test/1.0"),
            ("x-request-id", "req-abc"),
            ("x-user", "alice"),
            ("x-tenant", "acme"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "req-abc");
    let (status, _, _) = send(addr, "GET", "/admin", &[("x-user", "bob")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(addr, "POST", "/no/such/path?token=s3cr3t", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let r = records(&f.store, 3).await;
    let e = &r[0].event;
    assert_eq!(e.actor, Actor::new("user", "alice"));
    assert_eq!(e.action, "http.get");
    assert_eq!(e.resource, Resource::new("http.route", "/customers/{id}"));
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.tenant.as_deref(), Some("acme"));
    assert_eq!(e.request_id.as_deref(), Some("req-abc"));
    let source = e.source.as_ref().unwrap();
    assert_eq!(source.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(source.user_agent.as_deref(), Some("audit-test/1.0"));
    assert!(e.time.is_some());
    let http = http_meta(&r[0]);
    assert_eq!(http["method"], "GET");
    assert_eq!(http["route"], "/customers/{id}");
    assert_eq!(http["status"], 200);
    assert!(http["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(!http.contains_key("forwarded_by"));

    assert_eq!(
        (r[1].event.outcome, r[1].event.actor.id.as_str()),
        (Outcome::Denied, "bob")
    );
    let unmatched = &r[2].event;
    assert_eq!(unmatched.outcome, Outcome::Failure);
    assert_eq!(unmatched.action, "http.post");
    assert_eq!(unmatched.actor, Actor::new("anonymous", "anonymous"));
    // The path of an unmatched request, never its query string.
    assert_eq!(
        unmatched.resource,
        Resource::new("http.route", "/no/such/path")
    );
    assert!(!serde_json::to_string(unmatched).unwrap().contains("s3cr3t"));
}

#[tokio::test]
async fn handler_sets_the_domain_action_resource_reason_and_metadata() {
    let f = fixture(options());
    async fn delete_customer(Extension(audit): Extension<AuditContext>) -> StatusCode {
        audit.set_action("customer.delete");
        audit.set_resource(Resource::new("customer", "4471"));
        audit.set_reason("erasure request, ticket SEC-12");
        audit.insert_metadata("plan", "pro");
        // The layer's own facts cannot be overwritten.
        audit.insert_metadata("http", "forged");
        StatusCode::NO_CONTENT
    }
    let app = Router::new()
        .route("/customers/{id}", axum::routing::delete(delete_customer))
        .layer(AuditLayer::new(
            f.sink.clone(),
            AuditConfig::new(FailurePolicy::FailClosed),
        ));
    let addr = serve(app).await;
    let (status, _, _) = send(addr, "DELETE", "/customers/4471", &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let r = records(&f.store, 1).await;
    let e = &r[0].event;
    assert_eq!(e.action, "customer.delete");
    assert_eq!(e.resource, Resource::new("customer", "4471"));
    assert_eq!(e.reason.as_deref(), Some("erasure request, ticket SEC-12"));
    assert_eq!(e.metadata.as_ref().unwrap()["plan"], "pro");
    assert_eq!(http_meta(&r[0])["status"], 204);
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let f = fixture(options());
    // Only 10.0.0.0/8 is trusted: the test's peer, 127.0.0.1, is not.
    let config = AuditConfig::new(FailurePolicy::FailClosed)
        .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuditLayer::new(f.sink.clone(), config));
    let addr = serve(app).await;
    send(addr, "GET", "/", &[("x-forwarded-for", "203.0.113.9")]).await;
    send(addr, "GET", "/", &[("forwarded", "for=203.0.113.9")]).await;
    let r = records(&f.store, 2).await;
    for record in &r {
        let source = record.event.source.as_ref().unwrap();
        assert_eq!(source.ip, Some("127.0.0.1".parse().unwrap()));
        assert!(!http_meta(record).contains_key("forwarded_by"));
    }
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_peer_is_walked_past_the_trusted_proxies() {
    let f = fixture(options());
    let proxies = TrustedProxies::new(["127.0.0.0/8", "10.0.0.0/8"]).unwrap();
    let xff = AuditConfig::new(FailurePolicy::FailClosed).trusted_proxies(proxies.clone());
    let forwarded = AuditConfig::new(FailurePolicy::FailClosed)
        .trusted_proxies(proxies)
        .forwarded_header(ForwardedHeader::Forwarded);
    let app = Router::new()
        .route("/xff", get(|| async { "ok" }))
        .layer(AuditLayer::new(f.sink.clone(), xff));
    let app = app.merge(
        Router::new()
            .route("/fwd", get(|| async { "ok" }))
            .layer(AuditLayer::new(f.sink.clone(), forwarded)),
    );
    let addr = serve(app).await;
    // The client wrote 6.6.6.6 itself; the edge proxy saw 203.0.113.9 and
    // an inner proxy (10.0.0.2) forwarded to us.
    send(
        addr,
        "GET",
        "/xff",
        &[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")],
    )
    .await;
    send(
        addr,
        "GET",
        "/fwd",
        &[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::7]:443";proto=https, for=10.0.0.2"#,
        )],
    )
    .await;
    let r = records(&f.store, 2).await;
    let ip = |i: usize| r[i].event.source.as_ref().unwrap().ip.unwrap().to_string();
    assert_eq!(ip(0), "203.0.113.9");
    assert_eq!(ip(1), "2001:db8::7");
    assert_eq!(http_meta(&r[0])["forwarded_by"], "127.0.0.1");
}

#[tokio::test]
async fn request_id_is_propagated_or_generated_and_reaches_the_handler() {
    let f = fixture(options());
    async fn echo(Extension(id): Extension<RequestId>, headers: HeaderMap) -> String {
        let header = headers["x-request-id"].to_str().unwrap();
        assert_eq!(header, id.as_str(), "the header and the extension agree");
        id.to_string()
    }
    let app = Router::new().route("/", get(echo)).layer(AuditLayer::new(
        f.sink.clone(),
        AuditConfig::new(FailurePolicy::FailClosed),
    ));
    let addr = serve(app).await;
    let (_, h1, body1) = send(addr, "GET", "/", &[("x-request-id", "upstream-7f3a")]).await;
    let (_, h2, body2) = send(addr, "GET", "/", &[]).await;
    let (_, h3, body3) = send(addr, "GET", "/", &[("x-request-id", "two words")]).await;
    assert_eq!(
        (h1["x-request-id"].to_str().unwrap(), body1.as_str()),
        ("upstream-7f3a", "upstream-7f3a")
    );
    for (h, body) in [(&h2, &body2), (&h3, &body3)] {
        let id = h["x-request-id"].to_str().unwrap();
        assert_eq!(id, body);
        assert_eq!(id.len(), 36, "a generated UUID: {id}");
    }
    assert_ne!(body2, body3);
    let r = records(&f.store, 3).await;
    let ids: Vec<_> = r
        .iter()
        .map(|r| r.event.request_id.clone().unwrap())
        .collect();
    assert_eq!(ids, [body1, body2, body3]);
}

#[derive(Clone)]
struct User {
    id: String,
}

async fn authenticate(mut request: Request, next: Next) -> Response {
    match request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some("Bearer alice-token") => {
            request.extensions_mut().insert(User { id: "alice".into() });
            next.run(request).await
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

#[tokio::test]
async fn refusals_of_an_inner_auth_middleware_are_recorded_and_the_capture_layer_names_the_user() {
    let f = fixture(options());
    let audit = AuditLayer::new(
        f.sink.clone(),
        AuditConfig::new(FailurePolicy::FailClosed).actor(|parts| {
            parts
                .extensions
                .get::<User>()
                .map(|u| Actor::new("user", &u.id))
        }),
    );
    let app = Router::new()
        .route("/orders", get(|| async { "orders" }))
        .layer(audit.capture_layer())
        .layer(from_fn(authenticate))
        .layer(audit.clone());
    let addr = serve(app).await;
    let (status, _, _) = send(addr, "GET", "/orders", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        addr,
        "GET",
        "/orders",
        &[("authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r = records(&f.store, 2).await;
    assert_eq!(
        (&r[0].event.actor, r[0].event.outcome),
        (&Actor::new("anonymous", "anonymous"), Outcome::Denied)
    );
    assert_eq!(http_meta(&r[0])["status"], 401);
    assert_eq!(
        (&r[1].event.actor, r[1].event.outcome),
        (&Actor::new("user", "alice"), Outcome::Success)
    );
    assert_eq!(audit.metrics().durable, 2);
}

fn failing_store() -> (Fixture, Arc<FaultFs>) {
    let fs = Arc::new(FaultFs::new());
    let f = fixture(StoreOptions {
        fs: fs.clone(),
        ..options()
    });
    // From now on every fdatasync fails: the disk is gone.
    fs.fail_always(Op::SyncData, None, 0, Fault::Io);
    (f, fs)
}

#[tokio::test]
async fn fail_closed_withholds_the_response_of_a_failed_write_and_refuses_requests_while_the_store_fails()
 {
    let (f, _fs) = failing_store();
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    let audit = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailClosed));
    let app = Router::new()
        .route(
            "/transfer",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "done"
                }
            }),
        )
        .layer(audit.clone());
    let addr = serve(app).await;
    let (status, headers, body) = send(addr, "POST", "/transfer", &[("x-request-id", "t-1")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-request-id"], "t-1");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "audit_unavailable");
    assert_eq!(error["error"]["request_id"], "t-1");
    assert!(!body.contains("done"), "the handler's answer is withheld");
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the handler ran");

    // The store now refuses writes: the next request does not run at all.
    let (status, _, _) = send(addr, "POST", "/transfer", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "refused before it ran");
    let m = audit.metrics();
    assert_eq!((m.withheld, m.durable, m.failed), (2, 0, 1), "{m:?}");
}

#[tokio::test]
async fn fail_open_answers_while_the_store_fails_and_counts_the_lost_events() {
    let (f, _fs) = failing_store();
    let audit = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailOpen));
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit.clone());
    let addr = serve(app).await;
    for _ in 0..3 {
        let (status, _, body) = send(addr, "GET", "/", &[]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    for _ in 0..500 {
        if f.sink.metrics().failed == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.sink.metrics().failed, 3, "{:?}", f.sink.metrics());
    assert_eq!(audit.metrics().withheld, 0);
}

#[tokio::test]
async fn per_route_policy_fails_closed_only_where_asked() {
    let (f, _fs) = failing_store();
    let config = AuditConfig::new(FailurePolicy::FailOpen).failure_policy_for(|parts| {
        if parts.uri.path().starts_with("/admin") {
            FailurePolicy::FailClosed
        } else {
            FailurePolicy::FailOpen
        }
    });
    let app = Router::new()
        .route("/admin/keys", get(|| async { "keys" }))
        .route("/public", get(|| async { "public" }))
        .layer(AuditLayer::new(f.sink.clone(), config));
    let addr = serve(app).await;
    assert_eq!(send(addr, "GET", "/public", &[]).await.0, StatusCode::OK);
    assert_eq!(
        send(addr, "GET", "/admin/keys", &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(send(addr, "GET", "/public", &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn skipped_routes_are_not_recorded_but_get_a_request_id() {
    let f = fixture(options());
    let audit = AuditLayer::new(
        f.sink.clone(),
        AuditConfig::new(FailurePolicy::FailClosed).skip(|parts| parts.uri.path() == "/healthz"),
    );
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/work", get(|| async { "ok" }))
        .layer(audit.clone());
    let addr = serve(app).await;
    let (_, headers, _) = send(addr, "GET", "/healthz", &[]).await;
    assert!(headers.contains_key("x-request-id"));
    send(addr, "GET", "/work", &[]).await;
    let r = records(&f.store, 1).await;
    assert_eq!(http_meta(&r[0])["route"], "/work");
    assert_eq!(audit.metrics().skipped, 1);
}
