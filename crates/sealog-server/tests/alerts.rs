//! Alert rules evaluated by the server on the live log (`alerts_rules`):
//! events ingested over HTTP raise a threshold alert, which is in the log
//! as an `alert.raised` event naming the triggering seqs, reaches a real
//! webhook receiver on loopback signed, and streams on `GET /v1/alerts`
//! to the tokens that may see it; a restart neither repeats an alert nor
//! loses the records appended while the server was down.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::BodyExt as _;
use sealog_server::Layer;
use sealog_server::tokens::Scope;
use sealog_testkit::client::{Client, Method};
use sealog_testkit::server::{Setup, TestServer, all_records};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "a-webhook-secret-of-32-bytes-000";

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    got.lock().unwrap().push((headers, body));
    StatusCode::NO_CONTENT
}

/// A webhook receiver on loopback: its URL and what it received.
async fn start_receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

fn write_rules(dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
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
count = 3
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

fn setup(rules: &Path) -> Setup {
    Setup {
        layer: Layer {
            alerts_rules: Some(rules.to_path_buf()),
            ..Layer::default()
        },
        tokens: vec![
            ("acme", vec![Scope::Query], Some("acme")),
            ("globex", vec![Scope::Query], Some("globex")),
        ],
        ..Setup::default()
    }
}

fn failed_login(ip: &str, tenant: &str) -> Value {
    json!({
        "actor": {"type": "user", "id": "alice"},
        "action": "auth.login",
        "resource": {"type": "session", "id": "web"},
        "outcome": "failure",
        "tenant": tenant,
        "source": {"ip": ip},
    })
}

/// Ingests `n` failed logins from `ip` over HTTP; their seqs.
async fn burst(c: &mut Client, ip: &str, tenant: &str, n: usize) -> Vec<u64> {
    let body: String = (0..n)
        .map(|_| format!("{}\n", failed_login(ip, tenant)))
        .collect();
    let r = c.post_ndjson("/v1/events", body).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

/// An open SSE stream and what is buffered of it.
struct Stream {
    body: hyper::body::Incoming,
    buf: String,
}

async fn open_alerts(c: &mut Client, last_id: Option<u64>) -> Stream {
    let last = last_id.map(|i| i.to_string());
    let headers: Vec<(&str, &str)> = match &last {
        Some(l) => vec![("last-event-id", l.as_str())],
        None => Vec::new(),
    };
    let r = c
        .send(Method::GET, "/v1/alerts", &headers, Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    Stream {
        body: r.into_body(),
        buf: String::new(),
    }
}

/// The next `n` `alert` events: (id, alert).
async fn read_alerts(s: &mut Stream, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(end) = s.buf.find("\n\n") {
            let block: String = s.buf.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                assert_eq!(kind.as_deref(), Some("alert"), "{block}");
                out.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
        if out.len() >= n {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(20), s.body.frame())
            .await
            .expect("an alert within 20 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            s.buf.push_str(&String::from_utf8_lossy(&data));
        }
    }
    out
}

/// Waits until the receiver holds `n` requests.
async fn wait_deliveries(got: &Received, n: usize) {
    for _ in 0..400 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the webhook received {} request(s), not {n}",
        got.lock().unwrap().len()
    );
}

/// Waits until the evaluator's cursor has passed every record of the log.
async fn wait_cursor(dir: &Path, admin: &mut Client) {
    let len = admin.get("/v1/stats").await.unwrap().json()["store"]["records"]
        .as_u64()
        .unwrap();
    let file = dir.join("alerts").join("rules.cursor");
    for _ in 0..400 {
        if let Ok(Some(c)) = sealog_alerts::runner::Cursor::load(&file)
            && c.next_seq >= len
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the alert cursor never reached {len}");
}

fn alert_events(dir: &Path) -> Vec<sealog::Record> {
    all_records(dir)
        .into_iter()
        .filter(|r| r.event.action == "alert.raised")
        .collect()
}

fn check_signature(headers: &HeaderMap, body: &[u8]) {
    let ts = headers["x-sealog-timestamp"].to_str().unwrap();
    let sig = headers["x-sealog-signature"].to_str().unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sig, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_events_raise_an_alert_that_is_logged_delivered_signed_and_streamed_per_tenant() {
    let (url, got) = start_receiver().await;
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = write_rules(rules_dir.path(), &url);
    let server = TestServer::start(setup(&rules)).await;
    let mut admin = server.admin();
    // The evaluator starts at the end of the log: wait until it is there.
    wait_cursor(&server.dir, &mut admin).await;
    let mut live_client = server.admin();
    let mut live = open_alerts(&mut live_client, None).await;

    let acme = burst(&mut admin, "203.0.113.9", "acme", 3).await;
    wait_deliveries(&got, 1).await;
    let (headers, body) = got.lock().unwrap()[0].clone();
    check_signature(&headers, &body);
    let delivered: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(delivered["rule"], "brute-force");
    assert_eq!(delivered["seqs"], json!(acme));
    assert_eq!(delivered["tenant"], "acme");
    assert_eq!(
        headers["x-sealog-alert-id"],
        delivered["id"].as_str().unwrap()
    );

    // The live stream got the same alert, its id the seq of its event.
    let first = read_alerts(&mut live, 1).await;
    assert_eq!(first[0].1, delivered);

    let globex = burst(&mut admin, "198.51.100.5", "globex", 3).await;
    let acme2 = burst(&mut admin, "192.0.2.44", "acme", 3).await;
    wait_deliveries(&got, 3).await;
    let rest = read_alerts(&mut live, 2).await;
    assert_eq!(rest[0].1["seqs"], json!(globex));
    assert_eq!(rest[1].1["seqs"], json!(acme2));

    // Tenant-bound tokens replay from the start and see their own only.
    let mut acme_client = server.client(Some(&server.secret("acme")));
    let mut acme_stream = open_alerts(&mut acme_client, Some(0)).await;
    let seen = read_alerts(&mut acme_stream, 2).await;
    assert_eq!(seen[0].0, first[0].0);
    assert_eq!(seen[1].0, rest[1].0, "acme's stream skips globex's alert");
    let mut globex_client = server.client(Some(&server.secret("globex")));
    let mut globex_stream = open_alerts(&mut globex_client, Some(0)).await;
    let seen = read_alerts(&mut globex_stream, 1).await;
    assert_eq!(seen[0].0, rest[0].0, "globex's stream skips acme's alert");
    let r = server
        .client(Some(&server.secret("globex")))
        .get("/v1/alerts?tenant=acme")
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "tenant_forbidden");
    drop((live, acme_stream, globex_stream));

    // The log holds one alert.raised event per alert, naming the rule and
    // the triggering seqs, at the seqs the stream gave.
    let dir = server.stop().await;
    let events = alert_events(&dir);
    assert_eq!(events.len(), 3);
    let e = &events[0];
    assert_eq!(e.seq, first[0].0);
    assert_eq!(
        (e.event.actor.kind.as_str(), e.event.actor.id.as_str()),
        ("service", "sealog-alerts")
    );
    assert_eq!(e.event.resource.id.as_deref(), Some("brute-force"));
    assert_eq!(e.event.tenant.as_deref(), Some("acme"));
    let metadata = e.event.metadata.as_ref().unwrap();
    assert_eq!(metadata["seqs"], json!(acme));
    assert_eq!(metadata["rule"], "brute-force");
    assert_eq!(metadata["alert_id"], delivered["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_raises_an_alert_again_nor_loses_records_appended_while_stopped() {
    let (url, got) = start_receiver().await;
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = write_rules(rules_dir.path(), &url);
    let server = TestServer::start(setup(&rules)).await;
    let root = server.secret("root");
    let mut admin = server.admin();
    wait_cursor(&server.dir, &mut admin).await;
    burst(&mut admin, "203.0.113.9", "acme", 3).await;
    wait_deliveries(&got, 1).await;
    // Two of the next burst before the stop, the third while stopped.
    let mut second = burst(&mut admin, "198.51.100.5", "acme", 2).await;
    wait_cursor(&server.dir, &mut admin).await;
    let dir = server.stop().await;
    assert_eq!(alert_events(&dir).len(), 1);
    {
        let store = sealog::Store::open(&dir, sealog_testkit::server::signing_options()).unwrap();
        let event: sealog::Event =
            serde_json::from_value(failed_login("198.51.100.5", "acme")).unwrap();
        second.push(store.append(event).unwrap().seq);
        store.close().unwrap();
    }

    let server = TestServer::start_in(&dir, setup(&rules)).await;
    let mut admin = server.client(Some(&root));
    wait_deliveries(&got, 2).await;
    wait_cursor(&dir, &mut admin).await;
    // Give a wrongly repeated alert time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = got.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "the first alert is not delivered again");
    let alert: Value = serde_json::from_slice(&requests[1].1).unwrap();
    assert_eq!(
        alert["seqs"],
        json!(second),
        "the records before the stop count with the one appended while stopped"
    );
    let dir = server.stop().await;
    let events = alert_events(&dir);
    assert_eq!(events.len(), 2, "one event per alert");
    assert_eq!(
        events[1].event.metadata.as_ref().unwrap()["seqs"],
        json!(second)
    );
}
