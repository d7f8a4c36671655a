//! Idempotency, saturation (503 with Retry-After), a full disk (507 and
//! recovery when space returns), and slow clients being cut off.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use sealog::fault::{Fault, FaultFs, Op};
use sealog::{Store, StoreOptions};
use sealog_server::Layer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sealog_testkit::server::{Setup, TestServer, event};

fn batch(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| format!("{}\n", event("idem", "x.create", i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_gets_the_original_receipts_and_is_written_once() {
    let server = TestServer::start(Setup::default()).await;
    let mut c = server.admin();
    let key = [
        ("content-type", "application/x-ndjson"),
        ("idempotency-key", "batch-0001"),
    ];
    let first = c
        .request(Method::POST, "/v1/events", &key, batch(0, 5))
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.header("idempotent-replayed").is_none());
    let again = c
        .request(Method::POST, "/v1/events", &key, batch(0, 5))
        .await
        .unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), first.json(), "the same receipts");
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    // The same key with another body is refused.
    let other = c
        .request(Method::POST, "/v1/events", &key, batch(100, 5))
        .await
        .unwrap();
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(other.error_code(), "idempotency_key_reused");
    // Concurrent requests with one key: one write, the same receipts.
    let key2 = [
        ("content-type", "application/x-ndjson"),
        ("idempotency-key", "batch-0002"),
    ];
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = server.admin();
        tasks.push(tokio::spawn(async move {
            c.request(Method::POST, "/v1/events", &key2, batch(200, 50))
                .await
                .unwrap()
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.json());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    // A refused batch is not remembered: fixing it and retrying works.
    let key3 = [
        ("content-type", "application/json"),
        ("idempotency-key", "batch-0003"),
    ];
    let r = c
        .request(Method::POST, "/v1/events", &key3, "{\"bad\": 1}")
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = c
        .request(Method::POST, "/v1/events", &key3, "{\"bad\": 1}")
        .await
        .unwrap();
    assert_eq!(r.status, 400, "the retry is checked again, not replayed");
    let dir = server.stop().await;
    let n = sealog_testkit::server::all_records(&dir)
        .iter()
        .filter(|r| r.event.actor.id == "idem")
        .count();
    assert_eq!(n, 5 + 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_client_hung_up_is_still_remembered_under_its_key() {
    let server = TestServer::start(Setup::default()).await;
    let token = server.secret("root");
    let body = batch(0, 200);
    let addr = server.url.trim_start_matches("http://").to_owned();
    // Send the whole request, then hang up without reading the answer.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = ingest_head(
        &addr,
        &token,
        "application/x-ndjson\r\nIdempotency-Key: lost-answer",
        body.len(),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The retry gets the first attempt's receipts if it got as far as
    // writing (the usual case), or is written now if the hang-up came
    // first; never both.
    let mut c = server.admin();
    let key = [
        ("content-type", "application/x-ndjson"),
        ("idempotency-key", "lost-answer"),
    ];
    let r = c
        .request(Method::POST, "/v1/events", &key, body.clone())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["receipts"][0]["seq"], 0);
    let dir = server.stop().await;
    let n = sealog_testkit::server::all_records(&dir)
        .iter()
        .filter(|r| r.event.actor.id == "idem")
        .count();
    assert_eq!(n, 200, "written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_batches_whose_clients_hung_up_give_back_their_slots_and_are_counted_once_written() {
    // Two batch slots: if a hung-up request kept its share of the budget,
    // the honest requests after them would be refused.
    let server = TestServer::start(Setup {
        layer: Layer {
            ingest_inflight_batches: Some(2),
            ingest_wait_ms: Some(200),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let token = server.secret("root");
    let addr = server.url.trim_start_matches("http://").to_owned();
    for i in 0..40 {
        let body = event("gone", "x.create", i).to_string();
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let request = ingest_head(&addr, &token, "application/json", body.len()) + &body;
        s.write_all(request.as_bytes()).await.unwrap();
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = server.admin();
    for i in 0..5 {
        let r = c
            .post_json("/v1/events", event("honest", "x.y", i).to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "batch {i}: {}", r.text());
    }
    let metrics = c.get("/metrics").await.unwrap().text();
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sealog_ingest_events_total "))
        .unwrap()
        .parse()
        .unwrap();
    let dir = server.stop().await;
    let records = sealog_testkit::server::all_records(&dir);
    let gone = records
        .iter()
        .filter(|r| r.event.actor.id == "gone")
        .count() as u64;
    let honest = records
        .iter()
        .filter(|r| r.event.actor.id == "honest")
        .count() as u64;
    assert_eq!(honest, 5);
    assert!(gone > 0, "no hung-up request was read");
    // Every hung-up request the server read is written and counted; one
    // dropped before it was read is neither.
    assert_eq!(counted, gone + honest, "{metrics}");
}

/// The head of a `POST /v1/events` request to `addr` of `content_length`
/// bytes of `content_type` (which may end with further header lines).
fn ingest_head(addr: &str, token: &str, content_type: &str, content_length: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// Sends the head of an ingest request that declares `declared` bytes and
/// the first `sent` bytes of its body (a JSON prefix, then spaces), and
/// keeps the connection open (a slow sender).
async fn slow_sender(url: &str, token: &str, declared: usize, sent: usize) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut body = String::from("{\"actor\":");
    while body.len() < sent {
        body.push(' ');
    }
    let head = ingest_head(addr, token, "application/json", declared) + &body;
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

async fn read_response(s: &mut TcpStream, within: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_ingest_answers_503_with_retry_after_and_slow_senders_are_cut_off() {
    let server = TestServer::start(Setup {
        layer: Layer {
            ingest_inflight_bytes: Some(8000),
            ingest_wait_ms: Some(100),
            body_timeout_secs: Some(1),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let token = server.secret("root");
    // The slow sender has sent 7,000 bytes of its body: they are in the
    // server's memory and hold 7,000 of the 8,000 bytes of the budget, more
    // than a small batch needs with its parsed event.
    let mut slow = slow_sender(&server.url, &token, 10_000, 7000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = server.admin();
    let r = c
        .post_json("/v1/events", event("a", "x.y", 1).to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "ingest_saturated");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    // The slow sender is cut off after the body timeout...
    let started = Instant::now();
    let answer = read_response(&mut slow, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // ...and its share of the budget is free again.
    let r = c
        .post_json("/v1/events", event("a", "x.y", 2).to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.get("/metrics").await.unwrap();
    assert!(
        r.text().contains("sealog_http_unavailable_total 1"),
        "{}",
        r.text()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_hold_neither_the_byte_budget_they_declare_nor_a_batch_slot() {
    let server = TestServer::start(Setup {
        layer: Layer {
            ingest_inflight_bytes: Some(1 << 20),
            ingest_inflight_batches: Some(2),
            ingest_wait_ms: Some(100),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let token = server.secret("root");
    // Two declare the whole byte budget, two more than there are batch
    // slots; all four send a few bytes and then nothing.
    let mut slow = Vec::new();
    for declared in [1 << 20, 1 << 20, 100, 100] {
        slow.push(slow_sender(&server.url, &token, declared, 20).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = server.admin();
    for i in 0..5 {
        let r = c
            .post_json("/v1/events", event("honest", "x.y", i).to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "batch {i}: {}", r.text());
    }
    drop(slow);
    let dir = server.stop().await;
    let n = sealog_testkit::server::all_records(&dir)
        .iter()
        .filter(|r| r.event.actor.id == "honest")
        .count();
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = TestServer::start(Setup {
        layer: Layer {
            header_timeout_secs: Some(1),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_the_server_recovers_when_space_returns() {
    let fs = Arc::new(FaultFs::new());
    let options = StoreOptions {
        fs: fs.clone(),
        ..sealog_testkit::server::small_options()
    };
    let server = TestServer::start(Setup {
        options,
        ..Setup::default()
    })
    .await;
    let mut c = server.admin();
    let mut acked: Vec<String> = Vec::new();
    let post = async |c: &mut sealog_testkit::client::Client, i: u64| {
        c.post_json("/v1/events", event("disk", "x.y", i).to_string())
            .await
            .unwrap()
    };
    for i in 0..5 {
        let r = post(&mut c, i).await;
        assert_eq!(r.status, 200);
        acked.push(format!("req-{i}"));
    }
    // The disk fills up.
    fs.fail_always(Op::Write, Some(".seg"), 0, Fault::NoSpace);
    let r = post(&mut c, 100).await;
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(r.error_code(), "storage_full");
    assert!(r.header("retry-after").is_some());
    // The batch that hit the full disk is not acknowledged, and the answer
    // does not claim it was not written: its fate is known at the reopen.
    assert!(r.text().contains("disk filled up"), "{}", r.text());
    assert!(r.text().contains("NOT acknowledged"), "{}", r.text());
    let mut anon = server.client(None);
    let ready = anon.get("/readyz").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
    // While full, writes keep failing with 507 (or 503 while reopening).
    for i in 101..104 {
        let r = post(&mut c, i).await;
        assert!(matches!(r.status, 503 | 507), "{}: {}", r.status, r.text());
    }
    // Space returns: the server reopens the store by itself.
    fs.clear();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 200;
    loop {
        let r = post(&mut c, i).await;
        if r.status == 200 {
            acked.push(format!("req-{i}"));
            break;
        }
        assert!(matches!(r.status, 503 | 507), "{}: {}", r.status, r.text());
        assert!(Instant::now() < deadline, "no recovery: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
        i += 1;
    }
    assert_eq!(anon.get("/readyz").await.unwrap().status, 200);
    let r = c.get("/v1/stats").await.unwrap();
    assert!(r.json()["server"]["store_reopens"].as_u64().unwrap() >= 1);
    assert!(r.json()["server"]["storage_full"].as_u64().unwrap() >= 1);
    let dir = server.stop().await;
    let store = Store::open_read_only(&dir).unwrap();
    store.verify().unwrap();
    let present: Vec<String> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter(|r| r.event.actor.id == "disk")
        .map(|r| r.event.request_id.unwrap())
        .collect();
    for a in &acked {
        assert!(present.contains(a), "{a} was acknowledged but is missing");
    }
    // The outage itself is on the record.
    let reopened: Vec<_> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter(|r| r.event.action == "store.reopened")
        .collect();
    assert!(!reopened.is_empty());
    let meta = reopened[0].event.metadata.as_ref().unwrap();
    assert_eq!(meta["error_kind"], "StorageFull");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let server = TestServer::start(Setup {
        layer: Layer {
            max_connections: Some(2),
            ..Layer::default()
        },
        ..Setup::default()
    })
    .await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let idle1 = TcpStream::connect(&addr).await.unwrap();
    let idle2 = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = server.client(None);
    let waiting = tokio::spawn(async move { third.get("/healthz").await.unwrap().status });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(idle1);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(status, 200);
    drop(idle2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_survive_a_restart_and_a_damaged_journal_forgets_only_its_damage() {
    let server = TestServer::start(Setup::default()).await;
    let root = server.secret("root");
    let mut c = server.admin();
    let ndjson = |key: &'static str| {
        [
            ("content-type", "application/x-ndjson"),
            ("idempotency-key", key),
        ]
    };
    let a = c
        .request(Method::POST, "/v1/events", &ndjson("key-a"), batch(0, 5))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let b = c
        .request(Method::POST, "/v1/events", &ndjson("key-b"), batch(10, 3))
        .await
        .unwrap();
    assert_eq!(b.status, 200, "{}", b.text());
    let dir = server.stop().await;

    // Damage the journal: a copy of key-b's line under another key whose
    // chain does not match the log, a line that is not JSON, an overlong
    // line, and a last line cut short.
    let journal = dir.join(sealog_server::IDEMPOTENCY_JOURNAL);
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let line_b = text.lines().find(|l| l.contains("\"key-b\"")).unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(line_b).unwrap();
    forged["key"] = "key-c".into();
    forged["last_chain"] = "00".repeat(32).into();
    let mut damaged = text.clone();
    damaged.push_str(&format!("{forged}\nnot json\n{}\n", "x".repeat(5000)));
    damaged.push_str(&line_b[..line_b.len() / 2]);
    std::fs::write(&journal, damaged).unwrap();

    let server = TestServer::start_in(&dir, Setup::default()).await;
    let mut c = server.client(Some(&root));
    let again = c
        .request(Method::POST, "/v1/events", &ndjson("key-a"), batch(0, 5))
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json(), a.json(), "key-a: the original receipts");
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    let again = c
        .request(Method::POST, "/v1/events", &ndjson("key-b"), batch(10, 3))
        .await
        .unwrap();
    assert_eq!(again.json(), b.json(), "key-b: the original receipts");
    let other = c
        .request(Method::POST, "/v1/events", &ndjson("key-a"), batch(100, 5))
        .await
        .unwrap();
    assert_eq!(other.status, 422, "{}", other.text());
    // The forged key was not trusted: its batch is written as new.
    let forged = c
        .request(Method::POST, "/v1/events", &ndjson("key-c"), batch(10, 3))
        .await
        .unwrap();
    assert_eq!(forged.status, 200, "{}", forged.text());
    assert!(forged.header("idempotent-replayed").is_none());
    assert_ne!(forged.json(), b.json());
    // Loading rewrote the journal with the usable keys; key-c was added.
    let text = std::fs::read_to_string(&journal).unwrap();
    let keys: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 3, "{text}");
    for k in ["key-a", "key-b", "key-c"] {
        assert!(keys.iter().any(|x| x == k), "{k} in {text}");
    }
    let dir = server.stop().await;
    let n = sealog_testkit::server::all_records(&dir)
        .iter()
        .filter(|r| r.event.actor.id == "idem")
        .count();
    assert_eq!(
        n,
        5 + 3 + 3,
        "key-a and key-b written once, key-c's batch once more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_journal_sync_failed_is_not_acknowledged_and_its_retry_is_written_once() {
    let fs = Arc::new(FaultFs::new());
    let options = StoreOptions {
        fs: fs.clone(),
        ..sealog_testkit::server::signing_options()
    };
    let server = TestServer::start(Setup {
        options,
        ..Setup::default()
    })
    .await;
    let root = server.secret("root");
    let mut c = server.admin();
    let key = [
        ("content-type", "application/x-ndjson"),
        ("idempotency-key", "journal-fails"),
    ];
    // The journal goes through the store's filesystem: its fdatasync fails.
    fs.fail(Op::SyncData, Some("idempotency.log"), 0, Fault::Io);
    let r = c
        .request(Method::POST, "/v1/events", &key, batch(0, 3))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "unavailable");
    let message = r.text();
    assert!(
        message.contains("idempotency.log") && message.contains("not acknowledged"),
        "{message}"
    );
    assert!(r.header("retry-after").is_some());
    // While the journal still fails, the retry is refused the same way.
    fs.fail(Op::SyncData, Some("idempotency.log"), 0, Fault::Io);
    let r = c
        .request(Method::POST, "/v1/events", &key, batch(0, 3))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    // Once it works, the retry gets the receipts of the batch written first.
    let r = c
        .request(Method::POST, "/v1/events", &key, batch(0, 3))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    let receipts = r.json();
    let dir = server.stop().await;
    // The key is durable: a restarted server replays it too.
    let server = TestServer::start_in(&dir, Setup::default()).await;
    let mut c = server.client(Some(&root));
    let r = c
        .request(Method::POST, "/v1/events", &key, batch(0, 3))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), receipts);
    let dir = server.stop().await;
    let n = sealog_testkit::server::all_records(&dir)
        .iter()
        .filter(|r| r.event.actor.id == "idem")
        .count();
    assert_eq!(n, 3, "the batch was written once");
}
