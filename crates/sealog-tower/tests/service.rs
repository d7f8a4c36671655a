//! The layer over plain tower/hyper services (no axum): gRPC-shaped
//! responses (a trailers-only status, a status in the trailers, none at
//! all, and `FailClosed` turning a failed write into `UNAVAILABLE`),
//! requests abandoned before their answer, panicking handlers, and the
//! `PeerAddr` extension.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use sealog::fault::{Fault, FaultFs, Op};
use sealog::{Record, Store, StoreOptions};
use sealog_format::Outcome;
use sealog_tower::{AuditConfig, AuditLayer, FailurePolicy, PeerAddr, StoreSink};
use tower::{Layer as _, ServiceExt as _, service_fn};

type Frames =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn grpc_body(status: Option<&'static str>) -> Frames {
    let mut frames = vec![Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi")))];
    if let Some(status) = status {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(status));
        frames.push(Ok(Frame::trailers(trailers)));
    }
    StreamBody::new(futures_util::stream::iter(frames))
}

fn grpc_response(body: Frames, header_status: Option<&'static str>) -> Response<Frames> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    if let Some(s) = header_status {
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static(s));
    }
    r
}

fn grpc_request() -> Request<String> {
    let mut r = Request::new(String::new());
    *r.uri_mut() = "/billing.v1.Invoices/Void".parse().unwrap();
    *r.method_mut() = http::Method::POST;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    r.extensions_mut()
        .insert(PeerAddr("192.0.2.44:5123".parse::<SocketAddr>().unwrap()));
    r
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    sink: StoreSink,
}

fn fixture(fs: Option<Arc<FaultFs>>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions {
        segment_size: 256 << 10,
        ..StoreOptions::default()
    };
    if let Some(fs) = fs {
        options.fs = fs;
    }
    let store = Store::open(dir.path(), options).unwrap();
    let sink = StoreSink::new(store.clone()).unwrap();
    Fixture {
        _dir: dir,
        store,
        sink,
    }
}

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

fn http_meta(record: &Record) -> &serde_json::Map<String, serde_json::Value> {
    record.event.metadata.as_ref().unwrap()["http"]
        .as_object()
        .unwrap()
}

#[tokio::test]
async fn grpc_status_decides_the_outcome_in_headers_or_trailers() {
    let f = fixture(None);
    let layer = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailClosed));

    // A trailers-only response: the status is in the headers.
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(grpc_response(grpc_body(None), Some("7")))
    }));
    let response = svc.oneshot(grpc_request()).await.unwrap();
    response.into_body().collect().await.unwrap();
    let r = records(&f.store, 1).await;
    assert_eq!(r[0].event.outcome, Outcome::Denied);
    assert_eq!(http_meta(&r[0])["grpc_status"], 7);
    assert_eq!(http_meta(&r[0])["route"], "/billing.v1.Invoices/Void");
    let ip = r[0].event.source.as_ref().unwrap().ip.unwrap();
    assert_eq!(ip.to_string(), "192.0.2.44", "from the PeerAddr extension");

    // The status in the trailers: recorded when the body ends.
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(grpc_response(grpc_body(Some("0")), None))
    }));
    let response = svc.oneshot(grpc_request()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.store.len(), 1, "nothing recorded before the trailers");
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    let r = records(&f.store, 2).await;
    assert_eq!(r[1].event.outcome, Outcome::Success);
    assert_eq!(http_meta(&r[1])["grpc_status"], 0);

    // No status at all: a failed call.
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(grpc_response(grpc_body(None), None))
    }));
    let response = svc.oneshot(grpc_request()).await.unwrap();
    response.into_body().collect().await.unwrap();
    let r = records(&f.store, 3).await;
    assert_eq!(r[2].event.outcome, Outcome::Failure);
    assert_eq!(http_meta(&r[2])["grpc_status_missing"], true);
}

#[tokio::test]
async fn fail_closed_turns_the_grpc_status_of_an_unrecorded_call_into_unavailable() {
    let fs = Arc::new(FaultFs::new());
    let f = fixture(Some(fs.clone()));
    let layer = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailClosed));
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(grpc_response(grpc_body(Some("0")), None))
    }));
    let response = svc.oneshot(grpc_request()).await.unwrap();
    // The disk fails after the call was accepted, before it is recorded.
    fs.fail_always(Op::SyncData, None, 0, Fault::Io);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().unwrap();
    assert_eq!(trailers["grpc-status"], "14");
    assert!(trailers.contains_key("grpc-message"));
    assert_eq!(layer.metrics().withheld, 1);

    // The next call is refused before it runs, as a gRPC UNAVAILABLE.
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(grpc_response(grpc_body(Some("0")), None))
    }));
    let response = svc.oneshot(grpc_request()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["content-type"], "application/grpc");
}

#[tokio::test]
async fn abandoned_request_is_recorded_as_cancelled() {
    let f = fixture(None);
    let layer = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailOpen));
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let mut request = Request::new(String::new());
    *request.uri_mut() = "/slow".parse().unwrap();
    // The client gives up: the service's future is dropped unfinished.
    let abandoned = tokio::time::timeout(Duration::from_millis(50), svc.oneshot(request)).await;
    assert!(abandoned.is_err());
    let r = records(&f.store, 1).await;
    assert_eq!(r[0].event.outcome, Outcome::Failure);
    assert_eq!(http_meta(&r[0])["cancelled"], true);
    assert!(!http_meta(&r[0]).contains_key("status"));
}

#[tokio::test]
async fn panicking_handler_is_recorded_as_panicked() {
    let f = fixture(None);
    let layer = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailOpen));
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        if req.uri().path() == "/boom" {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let mut request = Request::new(String::new());
    *request.uri_mut() = "/boom".parse().unwrap();
    let task = tokio::spawn(svc.oneshot(request));
    assert!(task.await.is_err_and(|e| e.is_panic()));
    let r = records(&f.store, 1).await;
    assert_eq!(r[0].event.outcome, Outcome::Failure);
    assert_eq!(http_meta(&r[0])["panicked"], true);
}

#[tokio::test]
async fn service_error_is_recorded_as_a_failure_and_returned() {
    let f = fixture(None);
    let layer = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailClosed));
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Err::<Response<String>, _>(std::io::Error::other("backend down"))
    }));
    let err = svc
        .oneshot(Request::new(String::new()))
        .await
        .expect_err("the error");
    assert_eq!(err.to_string(), "backend down");
    let r = records(&f.store, 1).await;
    assert_eq!(r[0].event.outcome, Outcome::Failure);
    assert_eq!(http_meta(&r[0])["service_error"], true);
}

#[tokio::test]
async fn fail_closed_response_carries_the_receipt_of_its_event() {
    let f = fixture(None);
    let layer = AuditLayer::new(f.sink.clone(), AuditConfig::new(FailurePolicy::FailClosed));
    let svc = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    }));
    let response = svc.oneshot(Request::new(String::new())).await.unwrap();
    let receipt = response
        .extensions()
        .get::<sealog_tower::Receipt>()
        .copied()
        .unwrap();
    let record = f.store.get(receipt.seq).unwrap().unwrap();
    assert_eq!(record.recorded_at, receipt.recorded_at);
}
