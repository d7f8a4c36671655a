//! The layer in a real axum service over TCP, recording into a real sealog
//! server (started in-process on loopback) through `sealog_client`'s
//! batcher: the stored events' fields, each request recorded once, and
//! both failure policies while the server is away.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use sealog::{Record, Store, StoreOptions};
use sealog_client::{BatchOptions, Batcher, Client, RetryPolicy};
use sealog_format::{Actor, Outcome, Resource};
use sealog_server::tokens::{self, Scope};
use sealog_server::{Layer, Server};
use sealog_tower::{AuditConfig, AuditLayer, FailurePolicy, TrustedProxies};
use serde_json::Value;
use tokio::sync::oneshot;

/// A sealog server on 127.0.0.1 with an `ingest` token.
struct Running {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    url: String,
    token: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sealog_server::ServerError>>,
}

async fn start_server() -> Running {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, token) =
        tokens::create(&dir.join("tokens.json"), "app", vec![Scope::Ingest], None).unwrap();
    let settings = Layer {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.clone()),
        ..Layer::default()
    }
    .resolve()
    .unwrap();
    let options = StoreOptions {
        segment_size: 256 << 10,
        ..StoreOptions::default()
    };
    let server = Server::bind(&settings, options).await.unwrap();
    let url = server.url();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        _tmp: tmp,
        dir,
        url,
        token,
        stop,
        task,
    }
}

impl Running {
    /// Stops the server gracefully; the directory stays for reading.
    async fn stop(self) -> (tempfile::TempDir, PathBuf) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        (self._tmp, self.dir)
    }
}

fn batcher(url: &str, token: &str, retry: RetryPolicy) -> Batcher {
    Client::builder(url)
        .bearer_token(token)
        .retry(retry)
        .build()
        .unwrap()
        .batcher(BatchOptions::default())
        .unwrap()
}

fn all_records(dir: &Path) -> Vec<Record> {
    let store = Store::open_read_only(dir).unwrap();
    store.scan(..).map(Result::unwrap).collect()
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

fn user_from_header(parts: &http::request::Parts) -> Option<Actor> {
    let id = parts.headers.get("x-user")?.to_str().ok()?;
    Some(Actor::new("user", id))
}

fn http_meta(record: &Record) -> &serde_json::Map<String, Value> {
    record.event.metadata.as_ref().unwrap()["http"]
        .as_object()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_recorded_once_each_in_a_sealog_server_with_their_fields() {
    let server = start_server().await;
    let sink = batcher(&server.url, &server.token, RetryPolicy::default());
    // The service sits behind a proxy on the loopback address.
    let config = AuditConfig::new(FailurePolicy::FailClosed)
        .trusted_proxies(TrustedProxies::new(["127.0.0.1/32"]).unwrap())
        .actor(user_from_header);
    let audit = AuditLayer::new(sink.clone(), config);
    let app = Router::new()
        .route("/customers/{id}", delete(|| async { "deleted" }))
        .route("/admin", get(|| async { StatusCode::FORBIDDEN }))
        .layer(audit.clone());
    let addr = serve(app).await;

    let (status, headers, body) = send(
        addr,
        "DELETE",
        "/customers/4471?confirm=yes",
        &[
            ("user-agent", "billing/2.3"),
            ("x-request-id", "req-delete-4471"),
            ("x-user", "alice"),
            // 198.51.100.7 was written by the client itself; 203.0.113.9 is
            // the address the trusted proxy (the peer) received it from.
            ("x-forwarded-for", "198.51.100.7, 203.0.113.9"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "deleted"));
    assert_eq!(headers["x-request-id"], "req-delete-4471");
    let (status, headers, _) = send(addr, "GET", "/admin", &[("x-user", "bob")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let generated = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a generated UUID: {generated}");

    // FailClosed answered only once each event was durable on the server.
    let m = audit.metrics();
    assert_eq!((m.recorded, m.durable, m.failed), (2, 2, 0), "{m:?}");
    sink.close().await;
    let (_tmp, dir) = server.stop().await;
    let records = all_records(&dir);
    assert_eq!(records.len(), 2, "one event per request");

    let e = &records[0].event;
    assert_eq!(e.actor, Actor::new("user", "alice"));
    assert_eq!(e.action, "http.delete");
    assert_eq!(e.resource, Resource::new("http.route", "/customers/{id}"));
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.request_id.as_deref(), Some("req-delete-4471"));
    let source = e.source.as_ref().unwrap();
    assert_eq!(source.ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(source.user_agent.as_deref(), Some("billing/2.3"));
    let http = http_meta(&records[0]);
    assert_eq!(http["method"], "DELETE");
    assert_eq!(http["route"], "/customers/{id}");
    assert_eq!(http["status"], 200);
    assert_eq!(http["forwarded_by"], "127.0.0.1");

    let e = &records[1].event;
    assert_eq!(e.actor, Actor::new("user", "bob"));
    assert_eq!(e.outcome, Outcome::Denied);
    assert_eq!(e.request_id.as_deref(), Some(generated.as_str()));
    // No forwarding header: the trusted proxy itself is the client.
    assert_eq!(
        e.source.as_ref().unwrap().ip,
        Some("127.0.0.1".parse().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_away_fail_closed_withholds_and_fail_open_answers() {
    let server = start_server().await;
    let url = server.url.clone();
    let token = server.token.clone();
    let retry = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        give_up_after: Some(Duration::from_millis(500)),
        ..RetryPolicy::default()
    };
    let sink = batcher(&url, &token, retry);
    let config = AuditConfig::new(FailurePolicy::FailOpen).failure_policy_for(|parts| {
        if parts.uri.path() == "/transfer" {
            FailurePolicy::FailClosed
        } else {
            FailurePolicy::FailOpen
        }
    });
    let audit = AuditLayer::new(sink.clone(), config);
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/transfer",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "transferred"
                }
            }),
        )
        .layer(audit.clone());
    let addr = serve(app).await;

    // Recorded while the server is up.
    let (status, _, _) = send(addr, "POST", "/transfer", &[("x-request-id", "t-up")]).await;
    assert_eq!(status, StatusCode::OK);
    let (_tmp, dir) = server.stop().await;

    let (status, headers, body) =
        send(addr, "POST", "/transfer", &[("x-request-id", "t-down")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-request-id"], "t-down");
    assert!(body.contains("audit_unavailable"), "{body}");
    assert!(
        !body.contains("transferred"),
        "the handler's answer is withheld"
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "the handler ran all the same"
    );

    let (status, _, body) = send(addr, "GET", "/", &[("x-request-id", "open-down")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    // The FailOpen event is given up on after the retry budget, and counted.
    for _ in 0..1000 {
        if sink.metrics().failed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.metrics().failed, 2, "{:?}", sink.metrics());
    let m = audit.metrics();
    assert_eq!((m.durable, m.withheld, m.failed), (1, 1, 1), "{m:?}");

    sink.close().await;
    let ids: BTreeMap<String, usize> = all_records(&dir)
        .into_iter()
        .filter_map(|r| r.event.request_id)
        .map(|id| (id, 1))
        .collect();
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["t-up"]);
}
