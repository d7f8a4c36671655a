//! The runner against a real webhook receiver on loopback: signed
//! deliveries, retries after the receiver fails, the dead-letter file, the
//! `alert.raised` event in the log, and a restart that resumes from the
//! cursor without appending an alert twice.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use sealog::format::{Actor, Event, Outcome, Resource};
use sealog::query::Query;
use sealog::{Store, StoreOptions, Timestamp};
use sealog_alerts::deliver::Delivery;
use sealog_alerts::runner::{FollowOptions, Raised};
use sealog_alerts::{ALERT_ACTION, Deliverer, DeliveryOptions, RuleSet};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "a-webhook-secret-of-32-bytes-000";

/// What the receiver got, and how many requests it still fails with 503.
#[derive(Default)]
struct Receiver {
    requests: Vec<(HeaderMap, Bytes)>,
    fail_first: usize,
}

async fn receive(
    State(state): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut r = state.lock().unwrap();
    r.requests.push((headers, body));
    if r.requests.len() <= r.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_receiver(fail_first: usize) -> (SocketAddr, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver {
        requests: Vec::new(),
        fail_first,
    }));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

fn write_rules(dir: &Path, url: &str) -> PathBuf {
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
    let path = dir.join("rules.toml");
    std::fs::write(
        &path,
        format!(
            r#"version = 1

[[rule]]
name = "brute-force"
severity = "high"
kind = "threshold"
select = {{ action = "auth.login", outcome = "failure" }}
group_by = "source_ip"
count = 5
window = "1m"

[[webhook]]
url = "{url}"
secret_file = "hook.secret"
"#
        ),
    )
    .unwrap();
    path
}

fn failed_login(ip: &str, t: Timestamp) -> Event {
    Event::new(
        Actor::new("user", "alice"),
        "auth.login",
        Resource::new("session", "web"),
        Outcome::Failure,
    )
    .with_time(t)
    .with_source_ip(ip.parse::<IpAddr>().unwrap())
}

struct Running {
    stop: oneshot::Sender<()>,
    raised: mpsc::UnboundedReceiver<Raised>,
    task: tokio::task::JoinHandle<sealog_alerts::Result<()>>,
}

fn start_follow(store: &Arc<Store>, rules: &Path, state: &Path, attempts: u32) -> Running {
    let set = RuleSet::load(rules).unwrap();
    let delivery = DeliveryOptions {
        attempts,
        initial_backoff: Duration::from_millis(20),
        ..DeliveryOptions::new(state.join("dead-letter.ndjson"))
    };
    let (deliverer, _task) = Deliverer::start(set.webhooks.clone(), delivery).unwrap();
    let options = FollowOptions {
        cursor_file: state.join("rules.cursor"),
        interval: Duration::from_millis(50),
        history: Duration::from_secs(3600),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (tx, raised) = mpsc::unbounded_channel();
    let task = tokio::spawn(sealog_alerts::runner::follow(
        store.clone(),
        set,
        deliverer,
        options,
        async move {
            let _ = stopped.await;
        },
        move |r: &Raised| {
            let _ = tx.send(r.clone());
        },
    ));
    Running { stop, raised, task }
}

/// Waits until the runner's cursor has moved to `seq`.
async fn wait_cursor(state: &Path, seq: u64) {
    for _ in 0..200 {
        if let Ok(Some(c)) = sealog_alerts::runner::Cursor::load(&state.join("rules.cursor"))
            && c.next_seq >= seq
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the cursor never reached {seq}");
}

fn alert_events(store: &Store) -> Vec<sealog::Record> {
    store
        .matches(&Query {
            actions: vec![sealog::query::ActionPattern::new(ALERT_ACTION).unwrap()],
            order: sealog::query::Order::OldestFirst,
            ..Query::default()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_signed_retried_recorded_once_and_resumed_from_the_cursor_after_a_restart() {
    let (addr, receiver) = start_receiver(2).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let rules = write_rules(dir.path(), &format!("http://{addr}/hook"));
    let store = Arc::new(Store::open(dir.path().join("data"), StoreOptions::default()).unwrap());
    // History before the runner's first start is not alerted on.
    let t0 = Timestamp::now();
    store.append(failed_login("192.0.2.1", t0)).unwrap();

    let mut run = start_follow(&store, &rules, &state, 5);
    wait_cursor(&state, 1).await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        let t = Timestamp::from_nanos(t0.as_nanos() + (i + 1) * 1_000_000_000);
        seqs.push(store.append(failed_login("203.0.113.9", t)).unwrap().seq);
    }
    let raised = tokio::time::timeout(Duration::from_secs(20), run.raised.recv())
        .await
        .expect("an alert is raised")
        .unwrap();
    assert_eq!(raised.alert.rule, "brute-force");
    assert_eq!(raised.alert.seqs, seqs);
    assert_eq!(
        raised.deliveries,
        [Delivery::Delivered {
            url: format!("http://{addr}/hook"),
            attempt: 3
        }],
        "delivered at the third attempt, after two 503s"
    );

    // Every attempt carried the same alert, signed over timestamp.body.
    {
        let r = receiver.lock().unwrap();
        assert_eq!(r.requests.len(), 3);
        for (n, (headers, body)) in r.requests.iter().enumerate() {
            let ts = headers["x-sealog-timestamp"].to_str().unwrap();
            let sig = headers["x-sealog-signature"].to_str().unwrap();
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(body);
            let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(sig, expected, "attempt {}", n + 1);
            assert_eq!(
                headers["x-sealog-attempt"].to_str().unwrap(),
                (n + 1).to_string()
            );
            assert_eq!(
                headers["x-sealog-alert-id"].to_str().unwrap(),
                raised.alert.id
            );
            let alert: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(alert["rule"], "brute-force");
            assert_eq!(alert["seqs"], serde_json::json!(seqs));
        }
    }

    // The log proves it: an alert.raised event naming the rule and the seqs.
    let events = alert_events(&store);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(Some(e.seq), raised.event_seq);
    assert_eq!(
        (e.event.actor.kind.as_str(), e.event.actor.id.as_str()),
        ("service", "sealog-alerts")
    );
    assert_eq!(e.event.resource.id.as_deref(), Some("brute-force"));
    let metadata = e.event.metadata.as_ref().unwrap();
    assert_eq!(metadata["seqs"], serde_json::json!(seqs));
    assert_eq!(metadata["rule"], "brute-force");
    assert_eq!(e.event.request_id, Some(raised.alert.request_id()));

    // Stop; while stopped, a burst from another address is appended, and
    // the cursor is set back to the first burst, as a crash after the
    // alert's append but before the cursor's save would leave it.
    let end = store.len();
    wait_cursor(&state, end).await;
    run.stop.send(()).unwrap();
    run.task.await.unwrap().unwrap();
    let mut burst2 = Vec::new();
    for i in 0..5 {
        let t = Timestamp::from_nanos(t0.as_nanos() + (10 + i) * 1_000_000_000);
        burst2.push(store.append(failed_login("198.51.100.5", t)).unwrap().seq);
    }
    sealog_alerts::runner::Cursor {
        next_seq: seqs[0],
        store_id: hex::encode(store.store_id()),
    }
    .save(&state.join("rules.cursor"))
    .unwrap();

    // Restart: the first alert is raised again with the same id, delivered
    // again (at least once) but not appended twice; the burst appended
    // while the runner was stopped is not missed.
    let mut run = start_follow(&store, &rules, &state, 5);
    let again = tokio::time::timeout(Duration::from_secs(20), run.raised.recv())
        .await
        .expect("the first alert is raised again")
        .unwrap();
    assert_eq!(again.alert.id, raised.alert.id);
    assert_eq!(again.event_seq, None, "its event is already in the log");
    let missed = tokio::time::timeout(Duration::from_secs(20), run.raised.recv())
        .await
        .expect("the burst appended while stopped raises its alert")
        .unwrap();
    assert_eq!(missed.alert.group, "198.51.100.5");
    assert_eq!(missed.alert.seqs, burst2);
    assert!(missed.event_seq.is_some());
    let events = alert_events(&store);
    assert_eq!(events.len(), 2, "one event per alert");
    wait_cursor(&state, store.len()).await;
    assert!(run.raised.try_recv().is_err());
    assert_eq!(receiver.lock().unwrap().requests.len(), 5);
    run.stop.send(()).unwrap();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_no_attempt_delivered_goes_to_the_dead_letter_file() {
    let (addr, receiver) = start_receiver(usize::MAX).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let rules = write_rules(dir.path(), &format!("http://{addr}/hook"));
    let store = Arc::new(Store::open(dir.path().join("data"), StoreOptions::default()).unwrap());
    let mut run = start_follow(&store, &rules, &state, 3);
    wait_cursor(&state, 0).await;
    let t0 = Timestamp::now();
    for i in 0..5 {
        store
            .append(failed_login(
                "203.0.113.9",
                Timestamp::from_nanos(t0.as_nanos() + i),
            ))
            .unwrap();
    }
    let raised = tokio::time::timeout(Duration::from_secs(20), run.raised.recv())
        .await
        .expect("an alert is raised")
        .unwrap();
    match &raised.deliveries[..] {
        [
            Delivery::DeadLettered {
                attempts: 3, error, ..
            },
        ] => {
            assert!(error.contains("503"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(receiver.lock().unwrap().requests.len(), 3);
    let text = std::fs::read_to_string(state.join("dead-letter.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["alert"]["id"], raised.alert.id.as_str());
    assert_eq!(lines[0]["attempts"], 3);
    assert_eq!(lines[0]["url"], format!("http://{addr}/hook"));
    // The alert is in the log all the same.
    assert_eq!(alert_events(&store).len(), 1);
    run.stop.send(()).unwrap();
    run.task.await.unwrap().unwrap();
}
