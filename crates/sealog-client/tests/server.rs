//! The client against a real `sealog serve`: batching with a receipt per
//! caller, a server restarted mid-stream, answers lost after the server
//! wrote the batch, backpressure, invalid events, refused tokens and TLS
//! with a private CA. Every test counts what reached the log by
//! `request_id`, with the server stopped.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Log;
use sealog_client::{BatchOptions, Client, Error, RetryPolicy};
use sealog_format::{Actor, Event, Outcome, Resource};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn event(i: usize) -> Event {
    Event::new(
        Actor::new("user", format!("u{}", i % 7)),
        "customer.update",
        Resource::new("customer", i.to_string()),
        Outcome::Success,
    )
    .with_request_id(format!("req-{i}"))
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
        give_up_after: Some(Duration::from_secs(60)),
    }
}

fn client(log: &Log, url: &str) -> Client {
    Client::builder(url)
        .bearer_token(&log.token)
        .retry(quick_retries())
        .build()
        .unwrap()
}

/// Asserts that `req-0` .. `req-{n-1}` are each in the log exactly once.
fn assert_each_once(log: &Log, n: usize) {
    let ids = log.request_ids();
    let expected: BTreeSet<String> = (0..n).map(|i| format!("req-{i}")).collect();
    let found: BTreeSet<String> = ids.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&found).take(5).collect();
    assert!(missing.is_empty(), "lost events, e.g. {missing:?}");
    let twice: Vec<_> = ids.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(twice.is_empty(), "duplicated events, e.g. {twice:?}");
    assert_eq!(ids.len(), n, "unexpected events in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batcher_sends_batches_and_answers_each_caller_with_its_receipt() {
    let mut log = Log::new();
    log.start();
    let client = client(&log, &log.url());
    let batcher = client
        .batcher(BatchOptions {
            max_batch_events: 50,
            linger: Duration::from_millis(5),
            ..BatchOptions::default()
        })
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..20 {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in t * 50..(t + 1) * 50 {
                let pending = batcher.send(event(i)).await.unwrap();
                receipts.push(pending);
            }
            let mut seqs = Vec::new();
            for r in receipts {
                seqs.push(r.await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    batcher.close().await;
    assert_eq!(seqs.len(), 1000, "every caller got a distinct seq");
    let m = batcher.metrics();
    assert_eq!((m.sent, m.failed, m.queued, m.in_flight), (1000, 0, 0, 0));
    assert!(m.batches < 1000 / 5, "events were batched: {m:?}");
    assert!(
        batcher
            .send(event(0))
            .await
            .is_err_and(|e| matches!(e.error, Error::Closed(_))),
        "a closed batcher takes no event"
    );
    log.stop();
    assert_each_once(&log, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_stream_loses_nothing_and_writes_nothing_twice() {
    let mut log = Log::new();
    log.start();
    let client = client(&log, &log.url());
    let batcher = client
        .batcher(BatchOptions {
            max_batch_events: 20,
            linger: Duration::from_millis(2),
            ..BatchOptions::default()
        })
        .unwrap();
    let producer = {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..3000 {
                pending.push(batcher.send(event(i)).await.unwrap());
                if i % 100 == 99 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let mut results = Vec::new();
            for p in pending {
                results.push(p.await);
            }
            results
        })
    };
    // Let part of the stream through, then restart the server under it.
    while batcher.metrics().sent < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| log.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| {
        log.start();
    });
    let results = producer.await.unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .take(3)
        .collect();
    assert!(failed.is_empty(), "events failed: {failed:?}");
    batcher.close().await;
    let m = batcher.metrics();
    assert_eq!(m.sent, 3000);
    assert!(m.retried > 0, "the outage was retried through: {m:?}");
    log.stop();
    assert_each_once(&log, 3000);
}

/// A TCP proxy that, for its first `drop_first` connections, forwards the
/// request, waits for the server's answer and closes the connection
/// without passing the answer on: the server wrote the batch, the client
/// never heard.
async fn answer_eating_proxy(upstream: u16, drop_first: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            let eat = n <= drop_first;
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                if !eat {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let (mut client_read, _client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let forward = async {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let mut answer = [0u8; 1];
                tokio::select! {
                    () = forward => {}
                    // The first byte of the answer: the batch is durable.
                    _ = server_read.read(&mut answer) => {}
                }
                // Both halves drop here: the client sees the connection
                // close without an answer.
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_are_retried_with_the_same_key_and_not_written_twice() {
    let mut log = Log::new();
    log.start();
    let proxy = answer_eating_proxy(log.port, 3).await;
    let client = client(&log, &format!("http://127.0.0.1:{proxy}"));
    // One request at a time, so that the first three requests are the ones
    // whose answers are lost.
    let events: Vec<Event> = (0..10).map(event).collect();
    let receipts = client.append_batch(&events).await.unwrap();
    assert_eq!(receipts.len(), 10);
    let more: Vec<Event> = (10..20).map(event).collect();
    client.append_batch(&more).await.unwrap();
    let m = client.metrics();
    assert!(m.retried >= 3, "{m:?}");
    assert!(
        m.replayed >= 1,
        "the server replayed a batch it had written: {m:?}"
    );
    log.stop();
    assert_each_once(&log, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_makes_send_wait_and_try_send_fail_until_the_server_is_back() {
    let mut log = Log::new();
    // No server yet: every batch is retried, so the queue fills.
    let client = Client::builder(log.url())
        .bearer_token(&log.token)
        .retry(RetryPolicy {
            give_up_after: None,
            ..quick_retries()
        })
        .build()
        .unwrap();
    let batcher = client
        .batcher(BatchOptions {
            queue_capacity: 8,
            max_batch_events: 2,
            max_in_flight: 1,
            linger: Duration::ZERO,
            ..BatchOptions::default()
        })
        .unwrap();
    let mut pending = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        match batcher.try_send(event(i)) {
            Ok(p) => pending.push(p),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (next, refused) = refused.expect("the queue filled up");
    assert!(
        matches!(refused.error, Error::QueueFull { capacity: 8 }),
        "{}",
        refused.error
    );
    assert_eq!(
        refused.event.request_id.as_deref(),
        Some(format!("req-{next}").as_str())
    );
    // At most the queue, the batch in flight and the batch being filled.
    assert!(pending.len() <= 8 + 2 + 2, "{} taken", pending.len());
    let m = batcher.metrics();
    assert!(m.queued >= 8, "{m:?}");
    // `send` waits for room.
    let waiting = {
        let batcher = batcher.clone();
        let e = *refused.event;
        tokio::spawn(async move { batcher.send(e).await.map_err(|e| e.error)?.await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "send returned while the queue was full"
    );
    tokio::task::block_in_place(|| {
        log.start();
    });
    for p in pending {
        p.await.unwrap();
    }
    waiting.await.unwrap().unwrap();
    batcher.close().await;
    log.stop();
    assert_each_once(&log, next + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_fail_alone_with_the_servers_errors_and_are_not_retried() {
    let mut log = Log::new();
    log.start();
    // No local check: the server's verdict is what is tested.
    let unchecked = Client::builder(log.url())
        .bearer_token(&log.token)
        .retry(quick_retries())
        .validator(None)
        .build()
        .unwrap();
    let batcher = unchecked
        .batcher(BatchOptions {
            linger: Duration::from_millis(200),
            ..BatchOptions::default()
        })
        .unwrap();
    let mut bad_action = event(2);
    bad_action.action = "Customer Update".into();
    let mut secret = serde_json::Map::new();
    secret.insert("password".into(), "hunter2".into());
    let with_secret = event(4).with_metadata(secret);
    let mut pending = Vec::new();
    for e in [event(0), event(1), bad_action, event(3), with_secret] {
        pending.push(batcher.send(e).await.unwrap());
    }
    let mut results = Vec::new();
    for p in pending {
        results.push(p.await);
    }
    for i in [0, 1, 3] {
        assert!(results[i].is_ok(), "event {i}: {:?}", results[i]);
    }
    match &results[2] {
        Err(Error::InvalidEvent(e)) => assert_eq!(e.field, "action"),
        other => panic!("event 2: {other:?}"),
    }
    match &results[4] {
        Err(Error::InvalidEvent(e)) => assert_eq!(e.field, "metadata.password"),
        other => panic!("event 4: {other:?}"),
    }
    let m = batcher.metrics();
    assert_eq!((m.sent, m.failed, m.retried), (3, 2, 0), "{m:?}");

    // One request, all or nothing: the errors name each event by index.
    let mut bad = event(6);
    bad.actor.kind = "User".into();
    let err = unchecked
        .append_batch(&[event(5), bad])
        .await
        .expect_err("refused");
    match &err {
        Error::InvalidEvents { errors, .. } => {
            assert_eq!(errors.len(), 1);
            assert_eq!(
                (errors[0].index, errors[0].field.as_str()),
                (Some(1), "actor.type")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(unchecked.metrics().retried, 0);

    // With the default local check, the event never leaves the process.
    let checked = client(&log, &log.url());
    let mut bad = event(7);
    bad.action = String::new();
    let refused = checked
        .batcher(BatchOptions::default())
        .unwrap()
        .send(bad)
        .await
        .expect_err("refused locally");
    assert!(matches!(&refused.error, Error::InvalidEvent(e) if e.field == "action"));
    batcher.close().await;
    log.stop();
    let ids = log.request_ids();
    let found: Vec<&str> = ids.keys().map(String::as_str).collect();
    assert_eq!(found, ["req-0", "req-1", "req-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_is_returned_without_retrying() {
    let mut log = Log::new();
    log.start();
    let client = Client::builder(log.url())
        .bearer_token("not-a-token")
        .retry(quick_retries())
        .build()
        .unwrap();
    let err = client.append(&event(0)).await.expect_err("refused");
    match &err {
        Error::Rejected { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (401, "invalid_token"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.metrics().retried, 0);
    assert_eq!(client.metrics().failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_is_trusted_only_when_given() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let mut log = Log::new();
    let cert = fixtures.join("cert.pem");
    let key = fixtures.join("key.pem");
    let served = log.start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(served.url.starts_with("https://"), "{}", served.url);
    let url = format!("https://localhost:{}", log.port);
    let trusted = Client::builder(&url)
        .bearer_token(&log.token)
        .ca_certificate_file(fixtures.join("ca.pem"))
        .retry(quick_retries())
        .build()
        .unwrap();
    trusted.append(&event(0)).await.unwrap();

    // The system's roots do not know the test CA: refused at once.
    let untrusted = Client::builder(&url)
        .bearer_token(&log.token)
        .retry(quick_retries())
        .build()
        .unwrap();
    let err = untrusted.append(&event(1)).await.expect_err("refused");
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert_eq!(untrusted.metrics().retried, 0);
    log.stop();
    assert_each_once(&log, 1);
}
