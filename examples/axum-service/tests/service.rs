//! The example service over TCP on loopback, recording into an embedded
//! store: authenticated and refused requests, the handler's own action and
//! resource, and the unrecorded health check.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::time::Duration;

use sealog::format::{Actor, Outcome, Resource};
use sealog::{Store, StoreOptions};
use sealog_example_axum::{app, audit_layer, serve};
use sealog_tower::StoreSink;

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let mut lines = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    if let Some(token) = auth {
        lines.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    lines.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, lines.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn example_service_records_each_request_with_its_user_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let sink = StoreSink::new(store.clone()).unwrap();
    let layer = audit_layer(sink.clone(), &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app(layer), async {
        let _ = stopped.await;
    }));

    assert_eq!(request(addr, "GET", "/healthz", None).await, 200);
    assert_eq!(request(addr, "GET", "/customers/7", None).await, 401);
    assert_eq!(
        request(addr, "GET", "/customers/7", Some("alice-token")).await,
        200
    );
    assert_eq!(
        request(addr, "DELETE", "/customers/7", Some("alice-token")).await,
        204
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    sink.close().await;
    for _ in 0..200 {
        if store.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let records: Vec<_> = store.scan(..).map(Result::unwrap).collect();
    assert_eq!(records.len(), 3, "the health check is not recorded");
    let anonymous = Actor::new("anonymous", "anonymous");
    let alice = Actor::new("user", "alice");
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            (
                &r.event.actor,
                r.event.action.as_str(),
                &r.event.resource,
                r.event.outcome,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                &anonymous,
                "http.get",
                &Resource::new("http.route", "/customers/{id}"),
                Outcome::Denied
            ),
            (
                &alice,
                "http.get",
                &Resource::new("http.route", "/customers/{id}"),
                Outcome::Success
            ),
            (
                &alice,
                "customer.delete",
                &Resource::new("customer", "7"),
                Outcome::Success
            ),
        ]
    );
}
