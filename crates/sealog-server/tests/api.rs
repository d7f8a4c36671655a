//! The API over real HTTP against an in-process server: ingest in every
//! framing, queries with every predicate and pagination, single records,
//! receipts verified offline, proofs verified against trusted roots,
//! export, tail, status endpoints, the server's own audit trail. Each
//! behaviour is its own test over the same ingested fixture, so one
//! failure does not hide the others.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::Method;
use http_body_util::BodyExt as _;
use sealog::format::receipt::Receipt;
use sealog_testkit::client::Client;
use serde_json::{Value, json};

use sealog_testkit::server::{Setup, TestServer, event};

fn ids(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap_or("-").to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

async fn query(c: &mut Client, q: &str) -> BTreeSet<String> {
    let r = c.get(&format!("/v1/events?{q}&limit=1000")).await.unwrap();
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    ids(&r.json()).into_iter().collect()
}

/// The fixture: ten events with different values for every predicate.
fn fixture() -> Vec<Value> {
    let mut v = Vec::new();
    let mk = |i: u64,
              actor: &str,
              action: &str,
              rtype: &str,
              outcome: &str,
              tenant: Option<&str>,
              ip: Option<&str>,
              time: &str| {
        let mut e = json!({
            "time": time,
            "actor": {"type": "user", "id": actor},
            "action": action,
            "resource": {"type": rtype, "id": i.to_string()},
            "outcome": outcome,
            "request_id": format!("r{i}"),
        });
        if let Some(t) = tenant {
            e["tenant"] = t.into();
        }
        if let Some(ip) = ip {
            e["source"] = json!({"ip": ip, "user_agent": "test"});
        }
        e
    };
    v.push(mk(
        0,
        "alice",
        "customer.delete",
        "customer",
        "success",
        Some("acme"),
        Some("10.0.0.1"),
        "2026-01-01T00:00:00Z",
    ));
    v.push(mk(
        1,
        "alice",
        "customer.update",
        "customer",
        "failure",
        Some("acme"),
        Some("10.0.0.2"),
        "2026-01-02T00:00:00Z",
    ));
    v.push(mk(
        2,
        "bob",
        "invoice.export",
        "invoice",
        "denied",
        Some("globex"),
        Some("192.168.1.5"),
        "2026-01-03T00:00:00Z",
    ));
    v.push(mk(
        3,
        "bob",
        "auth.login",
        "session",
        "success",
        None,
        Some("2001:db8::7"),
        "2026-01-04T00:00:00Z",
    ));
    v.push(mk(
        4,
        "carol",
        "report.export",
        "report",
        "success",
        Some("acme"),
        None,
        "2026-01-05T00:00:00Z",
    ));
    v.push(mk(
        5,
        "carol",
        "customer.delete",
        "customer",
        "denied",
        Some("globex"),
        Some("10.9.9.9"),
        "2026-01-06T00:00:00Z",
    ));
    v.push(mk(
        6,
        "alice",
        "auth.login",
        "session",
        "failure",
        None,
        Some("10.0.0.1"),
        "2026-01-07T00:00:00Z",
    ));
    v.push(mk(
        7,
        "dave",
        "invoice.create",
        "invoice",
        "success",
        Some("acme"),
        None,
        "2026-01-08T00:00:00Z",
    ));
    // An actor of another type with the same id.
    let mut e = mk(
        8,
        "alice",
        "customer.delete",
        "customer",
        "success",
        None,
        None,
        "2026-01-09T00:00:00Z",
    );
    e["actor"]["type"] = "service".into();
    v.push(e);
    v.push(mk(
        9,
        "erin",
        "customer.read",
        "customer",
        "success",
        Some("acme"),
        Some("10.0.0.3"),
        "2026-01-10T00:00:00Z",
    ));
    v
}

/// A server holding the fixture, ingested in every framing: the first
/// event as one JSON object, the next three as a JSON array, the rest as
/// NDJSON. Returns the server, an admin client and the ten receipts.
async fn ingested() -> (TestServer, Client, Vec<Value>) {
    let server = TestServer::start(Setup::default()).await;
    let mut c = server.admin();
    let events = fixture();
    let mut receipts = Vec::new();
    let bodies = [
        (false, events[0].to_string(), 1),
        (false, Value::Array(events[1..4].to_vec()).to_string(), 3),
        (
            true,
            events[4..].iter().map(|e| format!("{e}\n")).collect(),
            6,
        ),
    ];
    for (ndjson, body, count) in bodies {
        let r = if ndjson {
            c.post_ndjson("/v1/events", body).await.unwrap()
        } else {
            c.post_json("/v1/events", body).await.unwrap()
        };
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["count"], count, "{}", r.text());
        receipts.extend(r.json()["receipts"].as_array().unwrap().iter().cloned());
    }
    (server, c, receipts)
}

/// The leaf hash a receipt gives (hex).
fn receipt_leaf(receipt: &Value) -> sealog::format::Hash {
    let bytes = hex::decode(receipt["leaf_hash"].as_str().unwrap()).unwrap();
    bytes.try_into().unwrap()
}

/// Hashes from a proof answer (base64).
fn hashes(values: &Value) -> Vec<sealog::format::Hash> {
    use base64::Engine as _;
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

fn test_key() -> sealog::format::note::SigningKey {
    sealog::format::note::SigningKey::from_seed("test.example/log", &[7u8; 32]).unwrap()
}

/// A fresh checkpoint from the server, opened with the public key.
async fn signed_checkpoint(c: &mut Client) -> sealog::format::checkpoint::Checkpoint {
    let r = c.get("/v1/checkpoint?fresh=true").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("test.example/log\n"), "{}", r.text());
    sealog::format::checkpoint::open(&r.text(), &test_key().verifier()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_in_every_framing_returns_one_receipt_per_event_in_order() {
    let (server, _c, receipts) = ingested().await;
    for receipt in &receipts {
        for key in ["seq", "recorded_at", "leaf_hash", "chain_hash"] {
            assert!(receipt.get(key).is_some(), "receipt has {key}: {receipt}");
        }
    }
    let seqs: Vec<u64> = receipts
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..10).collect::<Vec<u64>>());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_predicate_selects_exactly_its_events() {
    let (server, mut c, _) = ingested().await;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("actor=user%3Aalice", vec!["r0", "r1", "r6"]),
        ("actor=alice", vec!["r0", "r1", "r6", "r8"]),
        ("actor=service:alice", vec!["r8"]),
        ("action=customer.delete", vec!["r0", "r5", "r8"]),
        ("action=customer.*", vec!["r0", "r1", "r5", "r8", "r9"]),
        ("action=*.export", vec!["r2", "r4"]),
        (
            "action=invoice.create&action=auth.login",
            vec!["r3", "r6", "r7"],
        ),
        ("resource=customer:1", vec!["r1"]),
        ("resource=invoice:", vec!["r2", "r7"]),
        ("resource_type=session", vec!["r3", "r6"]),
        ("outcome=denied", vec!["r2", "r5"]),
        ("tenant=globex", vec!["r2", "r5"]),
        ("source_ip=10.0.0.1", vec!["r0", "r6"]),
        ("source_ip=10.0.0.0/8", vec!["r0", "r1", "r5", "r6", "r9"]),
        ("source_ip=2001:db8::/32", vec!["r3"]),
        ("request_id=r7", vec!["r7"]),
        (
            "from=2026-01-03T00:00:00Z&to=2026-01-06T00:00:00Z",
            vec!["r2", "r3", "r4"],
        ),
        ("actor=alice&outcome=success&tenant=acme", vec!["r0"]),
    ];
    // Every case runs; the failures are reported together.
    let mut wrong = Vec::new();
    for (q, want) in &cases {
        let got = query(&mut c, q).await;
        if got != set(want) {
            wrong.push(format!("{q}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_cursor_oldest_first_and_newest_first() {
    let (server, mut c, _) = ingested().await;
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v1/events?action=customer.*&order=oldest&limit=2".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = c.get(&path).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        got.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(got, vec!["r0", "r1", "r5", "r8", "r9"]);
    assert_eq!(pages, 3);
    let newest = c.get("/v1/events?action=customer.*&limit=2").await.unwrap();
    assert_eq!(ids(&newest.json()), vec!["r9", "r8"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_and_its_receipt_verify_offline_with_only_the_public_key() {
    let (server, mut c, receipts) = ingested().await;
    let r = c.get("/v1/events/2").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["request_id"], "r2");
    assert_eq!(r.json()["seq"], 2);
    let r = c.get("/v1/events/2?proof=true").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let receipt = Receipt::from_bytes(&r.body).unwrap();
    let (checkpoint, bytes) = receipt
        .verify_extra_as_entry(&test_key().verifier())
        .unwrap();
    assert!(checkpoint.size > 2);
    assert_eq!(
        sealog::format::merkle::leaf_hash(&bytes),
        receipt_leaf(&receipts[2]),
        "the receipt's record is the one ingested as seq 2"
    );
    let record = sealog::format::record::decode_record(&bytes).unwrap();
    assert_eq!(record.event.request_id.as_deref(), Some("r2"));
    let r = c.get("/v1/events/10000").await.unwrap();
    assert_eq!(r.status, 404);
    server.stop().await;
}

/// The proofs the API returns verify (RFC 9162, with sealog-format's
/// verifier) against roots the client trusts: the root it computes from
/// its own ingest receipts, and the root of a checkpoint it opened with
/// the public key. A proof altered in one byte does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_verify_against_the_signed_roots() {
    use sealog::format::merkle;
    let (server, mut c, receipts) = ingested().await;
    let leaves: Vec<_> = receipts.iter().map(receipt_leaf).collect();
    let root_of = |n: usize| merkle::root(&leaves[..n]);

    // Inclusion of every ingested event in the tree of the ten.
    for (seq, leaf) in leaves.iter().enumerate() {
        let r = c
            .get(&format!("/v1/proof/inclusion?seq={seq}&tree_size=10"))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        assert_eq!(answer["seq"], seq);
        assert_eq!(answer["tree_size"], 10);
        assert_eq!(
            answer["leaf_hash"].as_str().unwrap(),
            base64_encode(leaf),
            "the inclusion proof's leaf is the ingest receipt's"
        );
        let proof = hashes(&answer["proof"]);
        merkle::verify_inclusion(leaf, seq as u64, 10, &proof, &root_of(10))
            .unwrap_or_else(|e| panic!("inclusion of {seq} in 10: {e}"));
    }

    // Against a signed checkpoint: inclusion in its tree, and consistency
    // of every earlier size with it.
    let checkpoint = signed_checkpoint(&mut c).await;
    assert!(checkpoint.size >= 10);
    let size = checkpoint.size;
    let r = c
        .get(&format!("/v1/proof/inclusion?seq=4&tree_size={size}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let proof = hashes(&r.json()["proof"]);
    merkle::verify_inclusion(&leaves[4], 4, size, &proof, &checkpoint.root).unwrap();
    let mut altered = proof.clone();
    altered[0][0] ^= 1;
    assert!(
        merkle::verify_inclusion(&leaves[4], 4, size, &altered, &checkpoint.root).is_err(),
        "an altered proof must not verify"
    );
    for old in 1..=10u64 {
        let r = c
            .get(&format!("/v1/proof/consistency?from={old}&to={size}"))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        assert_eq!(answer["old_size"], old);
        assert_eq!(answer["new_size"], size);
        let proof = hashes(&answer["proof"]);
        merkle::verify_consistency(old, size, &root_of(old as usize), &checkpoint.root, &proof)
            .unwrap_or_else(|e| panic!("consistency of {old} with {size}: {e}"));
    }
    let r = c.get("/v1/proof/consistency?from=4&to=10").await.unwrap();
    let proof = hashes(&r.json()["proof"]);
    merkle::verify_consistency(4, 10, &root_of(4), &root_of(10), &proof).unwrap();
    assert!(
        merkle::verify_consistency(4, 10, &root_of(5), &root_of(10), &proof).is_err(),
        "a proof must not tie a wrong old root to the new one"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_export_streams_every_match() {
    let (server, mut c, _) = ingested().await;
    let r = c
        .request(
            Method::GET,
            "/v1/events?actor=alice&order=oldest",
            &[("accept", "application/x-ndjson")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["r0", "r1", "r6", "r8"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_stats_metrics_and_health_answer() {
    let (server, mut c, _) = ingested().await;
    let r = c
        .request(Method::POST, "/v1/verify", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["intact"], true);
    assert_eq!(r.json()["indexes_checked"], true);
    let r = c
        .request(
            Method::POST,
            "/v1/verify?log_only=true",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["intact"], true);
    assert_eq!(r.json()["indexes_checked"], false);
    let r = c
        .request(
            Method::POST,
            "/v1/verify?log_only=yes",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("log_only"), "{}", r.text());
    let r = c.get("/v1/stats").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["store"]["fsyncs"].as_u64().unwrap() > 0);
    assert_eq!(r.json()["server"]["ingest_events"], 10);
    let r = c.get("/metrics").await.unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    let missing: Vec<&str> = [
        "sealog_ingest_events_total 10",
        "sealog_fsync_duration_seconds_bucket",
        "sealog_ingest_batch_events_bucket",
        "sealog_http_request_duration_seconds_bucket{endpoint=\"query\"",
        "sealog_segments ",
        "sealog_disk_bytes ",
        "sealog_auth_failures_total",
        "sealog_http_unavailable_total",
        "sealog_http_storage_full_total",
    ]
    .into_iter()
    .filter(|series| !text.contains(series))
    .collect();
    assert!(missing.is_empty(), "metrics lack {missing:?}:\n{text}");
    let mut anon = server.client(None);
    assert_eq!(anon.get("/healthz").await.unwrap().status, 200);
    assert_eq!(anon.get("/readyz").await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_the_log_are_recorded_in_its_own_audit_trail() {
    let (server, mut c, _) = ingested().await;
    let queries = ["actor=user%3Aalice", "action=customer.*", "tenant=globex"];
    for q in queries {
        query(&mut c, q).await;
    }
    for path in [
        "/v1/events/2",
        "/v1/proof/inclusion?seq=0&tree_size=10",
        "/v1/checkpoint",
    ] {
        let r = c.get(path).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = c
        .request(
            Method::GET,
            "/v1/events?actor=alice",
            &[("accept", "application/x-ndjson")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = c
        .request(Method::POST, "/v1/verify", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    let actions: Vec<&str> = records.iter().map(|r| r.event.action.as_str()).collect();
    let logged = actions.iter().filter(|a| **a == "log.query").count();
    assert_eq!(logged, queries.len());
    let missing: Vec<&str> = [
        "log.read",
        "log.proof",
        "log.checkpoint",
        "log.export",
        "log.verify",
    ]
    .into_iter()
    .filter(|a| !actions.contains(a))
    .collect();
    assert!(missing.is_empty(), "{missing:?} missing from {actions:?}");
    let q = records
        .iter()
        .find(|r| r.event.action == "log.query")
        .unwrap();
    assert_eq!(q.event.actor.kind, "token");
    assert_eq!(q.event.actor.id, "root");
    let meta = q.event.metadata.as_ref().unwrap();
    assert_eq!(meta["params"]["actor"], "user:alice");
    assert_eq!(meta["returned"], 3);
    assert_eq!(
        q.event.source.as_ref().unwrap().ip,
        Some("127.0.0.1".parse().unwrap())
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads SSE events (id, data) until `n` have arrived.
async fn read_sse(
    body: &mut hyper::body::Incoming,
    buf: &mut String,
    n: usize,
) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                out.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
        if out.len() >= n {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("SSE event within 10 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&data));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_streams_new_matching_events_and_resumes_after_last_event_id() {
    let server = TestServer::start(Setup::default()).await;
    let mut writer = server.admin();
    // History before the tail starts is not sent.
    writer
        .post_json("/v1/events", event("old", "tail.old", 0).to_string())
        .await
        .unwrap();
    let mut follower = server.admin();
    let response = follower
        .send(
            Method::GET,
            "/v1/tail?action=tail.*",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.into_body();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let batch: String = (1..=3)
        .map(|i| {
            format!(
                "{}\n{}\n",
                event("u", "tail.new", i),
                event("u", "other.x", i)
            )
        })
        .collect();
    let r = writer.post_ndjson("/v1/events", batch).await.unwrap();
    assert_eq!(r.status, 200);
    let mut buf = String::new();
    let got = read_sse(&mut body, &mut buf, 3).await;
    let reqs: Vec<&str> = got
        .iter()
        .map(|(_, v)| v["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(reqs, vec!["req-1", "req-2", "req-3"]);
    assert!(got.iter().all(|(id, v)| v["seq"].as_u64() == Some(*id)));
    drop(body);

    // Resume after the first event: the other two again, nothing else.
    let first = got[0].0;
    let mut again = server.admin();
    let last = first.to_string();
    let response = again
        .send(
            Method::GET,
            "/v1/tail?action=tail.*",
            &[("last-event-id", last.as_str())],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut buf = String::new();
    let resumed = read_sse(&mut body, &mut buf, 2).await;
    let ids: Vec<u64> = resumed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![got[1].0, got[2].0]);
    drop(body);
    let dir = server.stop().await;
    let tails = sealog_testkit::server::all_records(&dir)
        .iter()
        .filter(|r| r.event.action == "log.tail")
        .count();
    assert_eq!(tails, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_signing_key_receipts_and_checkpoints_say_how_to_configure_one() {
    let server = TestServer::start(Setup {
        options: sealog_testkit::server::small_options(),
        ..Setup::default()
    })
    .await;
    let mut c = server.admin();
    c.post_json("/v1/events", event("a", "x.y", 0).to_string())
        .await
        .unwrap();
    for path in ["/v1/events/0?proof=true", "/v1/checkpoint"] {
        let r = c.get(path).await.unwrap();
        assert_eq!(r.status, 409, "{path}");
        assert_eq!(r.error_code(), "no_signing_key");
        assert!(r.text().contains("--signing-key"));
    }
    // Proofs need no key.
    let r = c.get("/v1/proof/inclusion?seq=0").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_server_is_open_on_loopback_and_refuses_other_addresses() {
    let server = TestServer::start(Setup {
        with_tokens: false,
        ..Setup::default()
    })
    .await;
    let mut c = server.client(None);
    let r = c
        .post_json("/v1/events", event("a", "x.y", 0).to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = c.get("/v1/events").await.unwrap();
    assert_eq!(r.status, 200);
    let dir = server.stop().await;
    let q = sealog_testkit::server::all_records(&dir)
        .into_iter()
        .find(|r| r.event.action == "log.query")
        .unwrap();
    assert_eq!(q.event.actor.kind, "local");

    let tmp = tempfile::tempdir().unwrap();
    let settings = sealog_server::Layer {
        listen: Some("0.0.0.0:0".into()),
        data_dir: Some(tmp.path().join("d")),
        ..sealog_server::Layer::default()
    }
    .resolve()
    .unwrap();
    let err = sealog_server::Server::bind(&settings, sealog_testkit::server::small_options())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("without authentication"), "{err}");
    assert!(err.contains("sealog token create"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_order_since_dates_and_count_over_http() {
    let server = TestServer::start(Setup::default()).await;
    let mut c = server.admin();
    let now = sealog::Timestamp::now().as_nanos();
    let at = |minutes: i64| sealog::Timestamp::from_nanos(now + minutes * 60_000_000_000);
    let mk = |id: &str, time: sealog::Timestamp| {
        json!({
            "time": time.to_string(),
            "actor": {"type": "user", "id": "alice"},
            "action": "doc.read",
            "resource": {"type": "doc", "id": "1"},
            "outcome": "success",
            "request_id": id,
        })
    };
    // Appended out of event-time order.
    let body: String = [
        mk("recent", at(-30)),
        mk("future", at(120)),
        mk("old", at(-180)),
        mk(
            "day",
            sealog::Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap(),
        ),
    ]
    .iter()
    .map(|e| format!("{e}\n"))
    .collect();
    let r = c.post_ndjson("/v1/events", body).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let by_time = page(&mut c, "order=time").await;
    assert_eq!(ids(&by_time), ["future", "recent", "old", "day"]);
    let by_time = page(&mut c, "order=time_oldest&limit=2").await;
    assert_eq!(ids(&by_time), ["day", "old"]);
    let cursor = by_time["next_cursor"].as_str().unwrap().to_owned();
    assert!(cursor.starts_with("v1.to."), "{cursor}");
    let r = c
        .get(&format!(
            "/v1/events?action=doc.*&order=time_oldest&limit=2&cursor={cursor}"
        ))
        .await
        .unwrap();
    assert_eq!(ids(&r.json()), ["recent", "future"]);
    // `since` ends at now, like `sealog query --since`.
    assert_eq!(ids(&page(&mut c, "since=1h").await), ["recent"]);
    assert_eq!(
        ids(&page(&mut c, "from=2026-11-27&to=2026-11-27").await),
        ["day"]
    );
    let counted = page(&mut c, "count=true&since=4h").await;
    assert_eq!(counted, json!({"count": 2}));
    let by_hour = page(&mut c, "count_by=hour&from=2026-11-27&to=2026-11-27").await;
    assert_eq!(by_hour["count_by"], "hour");
    assert_eq!(
        by_hour["groups"],
        json!([{"key": "2026-11-27T12:00:00Z", "count": 1}])
    );
    assert_eq!(by_hour["total"], 1);
    let by_actor = page(&mut c, "count_by=actor&since=4h").await;
    assert_eq!(
        by_actor,
        json!({"count_by": "actor", "groups": [{"key": "user:alice", "count": 2}],
               "total": 2, "other_groups": 0, "other_count": 0, "missing": 0})
    );

    for (q, parameter) in [
        ("count=true&limit=5", "limit"),
        ("since=1h&from=2026-01-01", "since"),
        ("since=soon", "since"),
        ("order=later", "order"),
        ("count=maybe", "count"),
        ("count_by=seq", "count_by"),
        ("count_by=actor&top=0", "top"),
        ("top=3", "top"),
        ("count_by=actor&limit=5", "limit"),
        ("count_by=actor&count=true", "count"),
    ] {
        let r = c.get(&format!("/v1/events?{q}")).await.unwrap();
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.json()["error"]["parameter"], parameter, "{q}");
    }
    let r = c.get("/v1/tail?since=1h").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["parameter"], "since");
}

async fn page(c: &mut Client, q: &str) -> Value {
    let path = format!("/v1/events?action=doc.*&{q}");
    let r = c.get(&path).await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// The count of `endpoint`'s latency histogram in a `/metrics` text.
fn latency_count(text: &str, endpoint: &str) -> u64 {
    let prefix = format!("sealog_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no latency count for {endpoint}:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_counts_in_the_latency_histogram_of_its_route() {
    let (server, mut c, _) = ingested().await;
    let counts = |text: &str| {
        ["ingest", "query", "export", "get", "proof", "verify"].map(|e| latency_count(text, e))
    };
    let before = counts(&c.get("/metrics").await.unwrap().text());
    assert_eq!(before[0], 3, "the fixture's three ingests");
    c.get("/v1/events?limit=2").await.unwrap();
    c.get("/v1/events?count=true").await.unwrap();
    c.get("/v1/events?bogus=1").await.unwrap();
    let r = c
        .request(
            Method::GET,
            "/v1/events",
            &[("accept", "application/x-ndjson")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.get("/v1/events/1").await.unwrap();
    c.get("/v1/events/1?proof=true").await.unwrap();
    c.get("/v1/checkpoint").await.unwrap();
    c.get("/v1/proof/inclusion?seq=0").await.unwrap();
    c.get("/v1/proof/consistency?from=1&to=5").await.unwrap();
    c.get("/v1/stats").await.unwrap();
    c.get("/healthz").await.unwrap();
    c.get("/nowhere").await.unwrap();
    let r = c
        .request(Method::DELETE, "/v1/events", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    // Refused requests count too, under the route they asked for.
    let mut anon = server.client(None);
    assert_eq!(anon.get("/v1/events").await.unwrap().status, 401);
    let r = c
        .request(Method::POST, "/v1/verify", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let after = counts(&c.get("/metrics").await.unwrap().text());
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        delta,
        [0, 4, 1, 2, 3, 1],
        "ingest, query (two, a refused parameter, a refused token), export, get (record, \
         receipt), proof, verify"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_name_the_route_matched_with_its_method() {
    let (server, mut c, _) = ingested().await;
    c.get("/v1/events/3").await.unwrap();
    c.get("/v1/events?actor=user%3Aalice").await.unwrap();
    c.get("/v1/proof/inclusion?seq=0").await.unwrap();
    let r = c
        .request(Method::POST, "/v1/verify", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let mut anon = server.client(None);
    assert_eq!(anon.get("/v1/checkpoint").await.unwrap().status, 401);
    let dir = server.stop().await;
    let endpoints: Vec<(String, String)> = sealog_testkit::server::all_records(&dir)
        .into_iter()
        .filter_map(|r| {
            let endpoint = r
                .event
                .metadata
                .as_ref()?
                .get("endpoint")?
                .as_str()?
                .to_owned();
            Some((r.event.action.clone(), endpoint))
        })
        .collect();
    let want = [
        ("log.read", "GET /v1/events/{seq}"),
        ("log.query", "GET /v1/events"),
        ("log.proof", "GET /v1/proof/inclusion"),
        ("log.verify", "POST /v1/verify"),
        ("auth.failed", "GET /v1/checkpoint"),
    ];
    let got: Vec<(&str, &str)> = endpoints
        .iter()
        .map(|(a, e)| (a.as_str(), e.as_str()))
        .collect();
    assert_eq!(got, want);
}

/// The value of the series line that starts with `series` in `/metrics`.
async fn metric(c: &mut Client, series: &str) -> u64 {
    let text = c.get("/metrics").await.unwrap().text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_sealed_segments_in_memory_are_the_pages_a_search_gives() {
    let server = TestServer::with_sealed_segments("page.read").await;
    let mut c = server.admin();
    let in_memory = "sealog_query_pages_total{answered=\"in_memory\"}";
    let searched = "sealog_query_pages_total{answered=\"searched\"}";
    let before = (
        metric(&mut c, in_memory).await,
        metric(&mut c, searched).await,
    );
    // The oldest events are in the first sealed segment, just written: in
    // memory. A page of more than 100 is searched.
    let small = c
        .get("/v1/events?actor=user:u&order=oldest&limit=7")
        .await
        .unwrap();
    assert_eq!(small.status, 200, "{}", small.text());
    let large = c
        .get("/v1/events?actor=user:u&order=oldest&limit=1000")
        .await
        .unwrap();
    assert_eq!(large.status, 200, "{}", large.text());
    let after = (
        metric(&mut c, in_memory).await,
        metric(&mut c, searched).await,
    );
    assert_eq!(after, (before.0 + 1, before.1 + 1));
    let (small, large) = (small.json(), large.json());
    assert_eq!(ids(&small), ids(&large)[..7]);
    assert_eq!(ids(&large).len(), 1000);
    assert_eq!(ids(&small)[0], "req-0");
    // Its cursor continues where the large page does.
    let next = small["next_cursor"].as_str().unwrap();
    let rest = c
        .get(&format!(
            "/v1/events?actor=user:u&order=oldest&limit=3&cursor={next}"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(ids(&rest), ids(&large)[7..10]);
    // A count of them all is answered from memory too, and one with a
    // value the segments' key filters lack reads no segment at all.
    let counts = "sealog_query_counts_total{answered=\"in_memory\"}";
    let before = metric(&mut c, counts).await;
    for (q, n) in [("actor=user:u", 1200), ("actor=user:nobody", 0)] {
        let r = c.get(&format!("/v1/events?{q}&count=true")).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["count"], n, "{q}");
    }
    assert_eq!(metric(&mut c, counts).await, before + 2);
    server.stop().await;
}
