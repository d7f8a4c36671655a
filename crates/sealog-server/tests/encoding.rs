//! `Content-Encoding` on ingest: gzip and zstd bodies are decoded (their
//! decoded size under the same limits as a plain body), other encodings
//! are refused with 415, and a body that is not what its label says gets
//! a clear 400. Nothing of a refused body is written.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::io::Write as _;

use axum::http::Method;
use sealog_server::Layer;
use sealog_testkit::client::{Client, ClientResponse};

use sealog_testkit::server::{Setup, TestServer, event};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

fn ndjson(from: u64, n: u64) -> Vec<u8> {
    let mut body = String::new();
    for i in from..from + n {
        body.push_str(&event("alice", "doc.read", i).to_string());
        body.push('\n');
    }
    body.into_bytes()
}

async fn post(c: &mut Client, encoding: &str, body: Vec<u8>) -> ClientResponse {
    c.request(
        Method::POST,
        "/v1/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", encoding),
        ],
        body,
    )
    .await
    .unwrap()
}

async fn count(c: &mut Client) -> usize {
    let r = c
        .get("/v1/events?action=doc.read&limit=1000")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["records"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_bodies_are_decoded_and_ingested() {
    let server = TestServer::start(Setup::default()).await;
    let mut c = server.admin();
    let r = post(&mut c, "gzip", gzip(&ndjson(0, 100))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], 100);
    let r = post(&mut c, "zstd", zstd(&ndjson(100, 50))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], 50);
    // Case and `x-gzip` as HTTP allows; several gzip members are one body,
    // as `cat a.gz b.gz` is for gunzip; so are several zstd frames.
    let mut members = gzip(&ndjson(150, 3));
    members.extend(gzip(&ndjson(153, 2)));
    let r = post(&mut c, "X-GZIP", members).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], 5);
    let mut frames = zstd(&ndjson(155, 4));
    frames.extend(zstd(&ndjson(159, 1)));
    let r = post(&mut c, "zstd", frames).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], 5);
    let r = post(&mut c, "identity", ndjson(160, 1)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(count(&mut c).await, 161);
    // The events are the ones sent.
    let r = c.get("/v1/events?request_id=req-123").await.unwrap();
    assert_eq!(r.json()["records"][0]["resource"]["id"], "123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_encodings_get_415_and_mislabelled_bodies_a_clear_400() {
    let server = TestServer::start(Setup::default()).await;
    let mut c = server.admin();
    let plain = ndjson(0, 3);

    let r = post(&mut c, "br", plain.clone()).await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_encoding");
    assert!(r.text().contains("`Content-Encoding: br` is not accepted"));
    assert_eq!(r.header("accept-encoding").as_deref(), Some("gzip, zstd"));
    let r = post(&mut c, "gzip, zstd", zstd(&gzip(&plain))).await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("more than one"), "{}", r.text());

    // A plain body labelled gzip: refused, saying so, not `invalid_utf8`.
    let r = post(&mut c, "gzip", plain.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_encoding");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("labelled `Content-Encoding: gzip` but is not valid gzip data"),
        "{message}"
    );
    assert_eq!(r.json()["error"]["offset"], 0);
    let r = post(&mut c, "zstd", plain.clone()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_encoding");

    // Cut short, or with bytes after the end: refused, nothing written.
    let whole = gzip(&plain);
    let r = post(&mut c, "gzip", whole[..whole.len() - 4].to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("truncated"), "{}", r.text());
    let whole = zstd(&plain);
    let r = post(&mut c, "zstd", whole[..whole.len() - 3].to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("truncated"), "{}", r.text());
    let mut trailing = gzip(&plain);
    trailing.extend_from_slice(b"{\"not\": \"gzip\"}\n");
    let r = post(&mut c, "gzip", trailing).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_encoding");
    assert_eq!(count(&mut c).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_applies_to_the_decoded_size() {
    let server = TestServer::start(Setup {
        layer: Layer {
            max_body_bytes: Some(64 << 10),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let mut c = server.admin();
    // 200 KiB of events compress to a few KiB, under the limit as sent.
    let big = ndjson(0, 1500);
    assert!(big.len() > 64 << 10);
    for (encoding, body) in [("gzip", gzip(&big)), ("zstd", zstd(&big))] {
        assert!(body.len() < 64 << 10);
        let r = post(&mut c, encoding, body).await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.error_code(), "body_too_large");
        assert!(
            r.text()
                .contains(&format!("decodes ({encoding}) to more than")),
            "{}",
            r.text()
        );
    }
    assert_eq!(count(&mut c).await, 0);
}
