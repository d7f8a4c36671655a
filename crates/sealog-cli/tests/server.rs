//! `sealog serve` as a process: end to end over real HTTP (ingest, every
//! predicate, a receipt verified offline with only the public key after
//! the server stopped), `kill -9` during concurrent ingest, SIGTERM, TLS,
//! configuration precedence and tokens.
//!
//! `SEALOG_SERVER_CRASH_CYCLES` sets the number of kill -9 cycles (default
//! 3; a soak run uses more).

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sealog::Store;
use sealog_testkit::client::Client;
use sealog_testkit::process::{self, Served};
use sealog_testkit::runtime;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sealog");

fn sealog() -> Command {
    process::command(BIN)
}

fn serve_cmd(dir: &Path, extra: &[&str]) -> Command {
    process::serve_command(BIN, dir, extra)
}

fn init(dir: &Path) {
    process::init(BIN, dir);
}

fn create_token(dir: &Path, name: &str, scopes: &str) -> String {
    process::create_token(BIN, dir, name, scopes)
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let prefix = dir.join("log");
    let out = sealog()
        .args(["keygen", "--name", "e2e.example/log", "--out"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(out.status.success());
    (dir.join("log.key"), dir.join("log.pub"))
}

fn ev(i: u64, actor: &str, action: &str, extra: Value) -> Value {
    let mut e = json!({
        "actor": {"type": "user", "id": actor},
        "action": action,
        "resource": {"type": "customer", "id": i.to_string()},
        "outcome": "success",
        "request_id": format!("e{i}"),
        "time": format!("2026-02-{:02}T00:00:00Z", i + 1),
    });
    if let (Some(o), Value::Object(x)) = (e.as_object_mut(), extra) {
        o.extend(x);
    }
    e
}

async fn ids(c: &mut Client, q: &str) -> BTreeSet<String> {
    let r = c.get(&format!("/v1/events?{q}")).await.unwrap();
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn ingest_query_and_a_receipt_verified_offline_after_the_server_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (key, public) = keygen(tmp.path());
    let token = create_token(&dir, "e2e", "ingest,query");
    let key_arg = key.to_str().unwrap().to_owned();
    let mut cmd = serve_cmd(&dir, &[]);
    cmd.env("SEALOG_SIGNING_KEY", &key_arg);
    let served = Served::start(cmd);
    assert!(served.url.starts_with("http://127.0.0.1:"));
    let rt = runtime();
    let receipt_text = rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap().with_token(token.clone());
        let events = [
            ev(
                0,
                "alice",
                "customer.delete",
                json!({"tenant": "acme", "source": {"ip": "10.1.1.1"}}),
            ),
            ev(
                1,
                "alice",
                "customer.export",
                json!({"outcome": "denied", "tenant": "acme"}),
            ),
            ev(
                2,
                "bob",
                "invoice.create",
                json!({"resource": {"type": "invoice", "id": "9"}, "source": {"ip": "192.0.2.7"}}),
            ),
            ev(
                3,
                "bob",
                "auth.login",
                json!({"outcome": "failure", "tenant": "globex", "source": {"ip": "10.2.2.2"}}),
            ),
            ev(
                4,
                "carol",
                "report.export",
                json!({"resource": {"type": "report"}}),
            ),
        ];
        let r = c
            .post_json("/v1/events", events[0].to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c
            .post_json("/v1/events", json!([events[1], events[2]]).to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let nd = format!("{}\n{}\n", events[3], events[4]);
        let r = c.post_ndjson("/v1/events", nd).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["receipts"][1]["seq"], 4);
        for (q, want) in [
            ("actor=user:alice", vec!["e0", "e1"]),
            ("action=customer.delete", vec!["e0"]),
            ("action=*.export", vec!["e1", "e4"]),
            ("action=invoice.create&action=auth.login", vec!["e2", "e3"]),
            ("resource=invoice:9", vec!["e2"]),
            ("resource_type=report", vec!["e4"]),
            ("outcome=denied", vec!["e1"]),
            ("tenant=acme", vec!["e0", "e1"]),
            ("source_ip=192.0.2.7", vec!["e2"]),
            ("source_ip=10.0.0.0/8", vec!["e0", "e3"]),
            ("request_id=e3", vec!["e3"]),
            (
                "from=2026-02-02T00:00:00Z&to=2026-02-04T00:00:00Z",
                vec!["e1", "e2"],
            ),
        ] {
            assert_eq!(ids(&mut c, q).await, set(&want), "{q}");
        }
        // Order, limit, cursor.
        let r = c
            .get("/v1/events?actor=user:bob&order=oldest&limit=1")
            .await
            .unwrap();
        let page = r.json();
        assert_eq!(page["records"][0]["request_id"], "e2");
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let r = c
            .get(&format!(
                "/v1/events?actor=user:bob&order=oldest&limit=1&cursor={cursor}"
            ))
            .await
            .unwrap();
        assert_eq!(r.json()["records"][0]["request_id"], "e3");
        let r = c.get("/v1/events/3?proof=true").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    });
    let (status, stderr) = served.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("store synced and closed"), "{stderr}");

    // Offline, with only the public key: the CLI and the format crate.
    let receipt = tmp.path().join("e3.tlog-proof");
    std::fs::write(&receipt, &receipt_text).unwrap();
    let out = sealog()
        .arg("verify-receipt")
        .arg(&receipt)
        .arg("--public-key")
        .arg(&public)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["record"]["request_id"], "e3");
    let pub_text = std::fs::read_to_string(&public).unwrap();
    let verifier = sealog::format::note::VerifierKey::parse(pub_text.trim_end()).unwrap();
    let parsed = sealog::format::receipt::Receipt::from_bytes(receipt_text.as_bytes()).unwrap();
    let (_, bytes) = parsed.verify_extra_as_entry(&verifier).unwrap();
    let record = sealog::format::record::decode_record(&bytes).unwrap();
    assert_eq!(record.seq, 3);
    // The log itself verifies, and holds the queries the server recorded.
    let store = Store::open_read_only(&dir).unwrap();
    store.verify().unwrap();
    let queries = store
        .scan(..)
        .filter(|r| r.as_ref().unwrap().event.action == "log.query")
        .count();
    assert_eq!(queries, 14);
}

fn crash_cycles() -> u64 {
    std::env::var("SEALOG_SERVER_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Clients posting batches with unique request ids until told to stop;
/// returns the ids of every 2xx'd batch.
fn ingest_until(
    url: &str,
    token: &str,
    clients: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tag: u64,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|k| {
            let (url, token, stop) = (url.to_owned(), token.to_owned(), stop.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let mut c = Client::new(&url).unwrap().with_token(token);
                    let mut acked = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let batch: Vec<String> = (0..20).map(|i| format!("c{tag}-{k}-{n}-{i}")).collect();
                        let body: String = batch
                            .iter()
                            .map(|id| {
                                format!(
                                    "{{\"actor\":{{\"type\":\"user\",\"id\":\"load\"}},\"action\":\"load.write\",\"resource\":{{\"type\":\"r\"}},\"outcome\":\"success\",\"request_id\":\"{id}\"}}\n"
                                )
                            })
                            .collect();
                        n += 1;
                        match c.post_ndjson("/v1/events", body).await {
                            Ok(r) if r.status == 200 => {
                                assert_eq!(r.json()["count"], 20);
                                acked.extend(batch);
                            }
                            Ok(r) if r.status == 503 => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                            // The server died or is shutting down.
                            Err(_) => {
                                c.disconnect();
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    acked
                })
            })
        })
        .collect()
}

#[test]
fn kill_9_during_concurrent_ingest_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token = create_token(&dir, "load", "ingest,query");
    let mut acked: Vec<String> = Vec::new();
    let mut rng: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for cycle in 0..crash_cycles() {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let served = Served::start(serve_cmd(&dir, &[]));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = ingest_until(&served.url, &token, 4, stop.clone(), cycle);
        std::thread::sleep(Duration::from_millis(200 + (rng >> 33) % 600));
        served.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            acked.extend(c.join().unwrap());
        }
    }
    assert!(!acked.is_empty());
    // Recovery on a writable open, then everything acknowledged is there.
    let store = Store::open(&dir, sealog::StoreOptions::default()).unwrap();
    store.verify().unwrap();
    let present: BTreeSet<String> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter_map(|r| r.event.request_id)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|a| !present.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    eprintln!(
        "{} kill -9 cycles of the server, {} acknowledged events, none lost, verify passed",
        crash_cycles(),
        acked.len()
    );
    store.close().unwrap();
}

#[test]
fn sigterm_during_ingest_exits_0_and_keeps_every_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token = create_token(&dir, "load", "ingest");
    let served = Served::start(serve_cmd(&dir, &[]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = ingest_until(&served.url, &token, 4, stop.clone(), 0);
    std::thread::sleep(Duration::from_millis(400));
    let (status, stderr) = served.terminate();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.join().unwrap());
    }
    assert_eq!(status.code(), Some(0), "{stderr}");
    for line in [
        "SIGTERM received",
        "no longer accepting",
        "in-flight requests finished",
        "store synced and closed",
    ] {
        assert!(stderr.contains(line), "`{line}` missing from: {stderr}");
    }
    assert!(!acked.is_empty());
    let store = Store::open_read_only(&dir).unwrap();
    store.verify().unwrap();
    let present: BTreeSet<String> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter_map(|r| r.event.request_id)
        .collect();
    assert!(acked.iter().all(|a| present.contains(a)));
    assert_eq!(store.recovery_report().truncations.len(), 0);
}

#[test]
fn tls_serves_https_with_the_given_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let token = create_token(&dir, "tls", "ingest,query");
    let served = Served::start(serve_cmd(
        &dir,
        &[
            "--tls-cert",
            fixtures.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            fixtures.join("key.pem").to_str().unwrap(),
        ],
    ));
    assert!(served.url.starts_with("https://"), "{}", served.url);
    let port = served.url.rsplit(':').next().unwrap().to_owned();
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::new(&format!("https://localhost:{port}"))
            .unwrap()
            .trust(Some(&fixtures.join("ca.pem")))
            .unwrap()
            .with_token(token);
        let r = c
            .post_json("/v1/events", ev(0, "tls", "x.y", json!({})).to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c.get("/v1/events").await.unwrap();
        assert_eq!(r.status, 200);
        // Plain HTTP to the TLS port gets nowhere.
        let mut plain = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        assert!(
            plain
                .get("/healthz")
                .await
                .map(|r| r.status != 200)
                .unwrap_or(true)
        );
        // A client that does not trust the CA is refused.
        let mut untrusting = Client::new(&format!("https://localhost:{port}")).unwrap();
        assert!(untrusting.get("/healthz").await.is_err());
    });
    let (status, stderr) = served.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn settings_come_from_flags_then_environment_then_the_config_file_then_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let from_file = tmp.path().join("from-file");
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"{}\"\nmax_body_bytes = 100000\nmax_batch_events = 3\n",
            from_file.display()
        ),
    )
    .unwrap();
    // The flag beats the file's listen address; the environment beats the
    // file's body limit; the file's data directory and batch limit apply.
    let mut cmd = sealog();
    cmd.arg("serve")
        .arg("--create")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("SEALOG_MAX_BODY_BYTES", "600");
    let served = Served::start(cmd);
    assert!(
        from_file.join("STORE").exists(),
        "the file's data_dir is used"
    );
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap();
        let big: Vec<Value> = (0..2).map(|i| ev(i, "cfg", "x.y", json!({"reason": "r".repeat(300)}))).collect();
        let r = c.post_json("/v1/events", Value::Array(big).to_string()).await.unwrap();
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.error_code(), "body_too_large");
        assert!(r.text().contains("600 bytes"));
        let tiny = r#"{"actor":{"type":"u","id":"a"},"action":"a.b","resource":{"type":"r"},"outcome":"success"}"#;
        let four = format!("{tiny}\n").repeat(4);
        let r = c.post_ndjson("/v1/events", four).await.unwrap();
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.error_code(), "too_many_events", "the file's batch limit applies");
    });
    let (status, _) = served.terminate();
    assert!(status.success());

    // An unknown key in the file is refused by name.
    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let out = sealog()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

#[test]
fn with_no_settings_at_all_the_server_uses_the_default_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = sealog();
    // Only the port differs from nothing at all, so parallel test runs and
    // other servers on this machine cannot collide on 7807.
    cmd.current_dir(tmp.path())
        .args(["serve", "--create"])
        .env("SEALOG_LISTEN", "127.0.0.1:0");
    let served = Served::start(cmd);
    assert!(tmp.path().join("sealog-data/STORE").exists());
    assert!(
        served
            .stderr_with("NO AUTHENTICATION")
            .contains("NO AUTHENTICATION")
    );
    let (status, _) = served.terminate();
    assert!(status.success());

    // Without tokens, a non-loopback address is refused before binding.
    let out = sealog()
        .current_dir(tmp.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without authentication") && err.contains("sealog token create"),
        "{err}"
    );
}

#[test]
fn token_commands_print_the_secret_once_and_revocation_works_on_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let secret = create_token(&dir, "svc", "ingest,query");
    let out = sealog()
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "token", "create", "--name", "acme-app", "--scopes", "ingest", "--tenant", "acme",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bound to tenant `acme`"));
    let file = std::fs::read_to_string(dir.join("tokens.json")).unwrap();
    assert!(!file.contains(&secret), "the secret is not stored");
    let list = sealog()
        .arg("--data-dir")
        .arg(&dir)
        .args(["token", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("svc") && list.contains("acme-app") && !list.contains("slg_"),
        "{list}"
    );
    // Duplicate names and bad scopes are usage errors.
    let dup = sealog()
        .arg("--data-dir")
        .arg(&dir)
        .args(["token", "create", "--name", "svc", "--scopes", "query"])
        .output()
        .unwrap();
    assert_eq!(dup.status.code(), Some(2));
    let bad = sealog()
        .arg("--data-dir")
        .arg(&dir)
        .args(["token", "create", "--name", "x", "--scopes", "read"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope `read`"));

    let served = Served::start(serve_cmd(&dir, &[]));
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap().with_token(secret.clone());
        assert_eq!(c.get("/v1/events").await.unwrap().status, 200);
        let out = sealog()
            .arg("--data-dir")
            .arg(&dir)
            .args(["token", "revoke", "svc"])
            .output()
            .unwrap();
        assert!(out.status.success());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let r = c.get("/v1/events").await.unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.error_code(), "revoked_token");
    });
    let (status, _) = served.terminate();
    assert!(status.success());
    let store = Store::open_read_only(&dir).unwrap();
    let failed: Vec<_> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter(|r| r.event.action == "auth.failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].event.actor.id, "svc");
}

#[test]
fn sigterm_as_soon_as_the_address_is_printed_shuts_down_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Without the handlers in place before the address line, about one
    // start in ten was killed by the signal.
    for _ in 0..10 {
        let served = Served::start(serve_cmd(&dir, &["--create"]));
        let (status, stderr) = served.terminate();
        assert_eq!(status.code(), Some(0), "{status}: {stderr}");
        assert!(stderr.contains("SIGTERM received"), "{stderr}");
        assert!(stderr.contains("store synced and closed"), "{stderr}");
    }
}

#[test]
fn serve_on_a_missing_store_exits_2_and_serve_create_makes_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = serve_cmd(&dir, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("no sealog store at `{}`", dir.display()))
            && stderr.contains("sealog init")
            && stderr.contains("serve --create"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing was created");
    let served = Served::start(serve_cmd(&dir, &["--create"]));
    assert!(dir.join("STORE").exists());
    let (status, _) = served.terminate();
    assert!(status.success());
    // Once made, the store needs no --create.
    let served = Served::start(serve_cmd(&dir, &[]));
    let (status, _) = served.terminate();
    assert!(status.success());
}

#[test]
fn the_config_file_sets_the_secret_guard_and_the_segment_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let config = tmp.path().join("server.toml");
    std::fs::write(&config, "secrets = \"redact\"\nsegment_size = \"4KiB\"\n").unwrap();
    let event = json!({
        "actor": {"type": "user", "id": "alice"},
        "action": "auth.login",
        "resource": {"type": "session"},
        "outcome": "success",
        "reason": "r".repeat(1500),
        "metadata": {"password": "hunter2", "plan": "pro"},
    });
    let start = |extra: &[&str]| {
        let mut cmd = sealog();
        cmd.arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .args(extra);
        Served::start(cmd)
    };
    let served = start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap();
        for _ in 0..6 {
            let r = c.post_json("/v1/events", event.to_string()).await.unwrap();
            assert!(r.status < 300, "{}", r.text());
        }
        let r = c.get("/v1/events?actor=user:alice").await.unwrap();
        let text = r.text();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(text.matches("[REDACTED]").count(), 6, "{text}");
    });
    let (status, _) = served.terminate();
    assert!(status.success());
    // Six ~1.6 KB events do not fit in one 4 KiB segment: the file's
    // segment size was used (the store was made with 64 KiB ones).
    let store = Store::open_read_only(&dir).unwrap();
    assert!(store.stats().segments >= 3, "{:?}", store.stats());
    drop(store);
    // A flag beats the file.
    let served = start(&["--secrets", "refuse"]);
    rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap();
        let r = c.post_json("/v1/events", event.to_string()).await.unwrap();
        assert!(r.status >= 400 && r.status < 500, "{}", r.text());
        assert!(r.text().contains("metadata.password"), "{}", r.text());
    });
    let (status, _) = served.terminate();
    assert!(status.success());
}

/// `compress = true` in the config: the running server compresses the
/// segments it seals (its compressor thread), reads from them over HTTP,
/// and the store verifies after it stopped.
#[test]
fn a_server_with_compress_compresses_its_sealed_segments_and_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let config = tmp.path().join("server.toml");
    std::fs::write(&config, "compress = true\nsegment_size = \"64KiB\"\n").unwrap();
    let mut cmd = sealog();
    cmd.arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let served = Served::start(cmd);
    let compressed = |dir: &Path| {
        std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                (path.extension().is_some_and(|x| x == "seg")
                    && std::fs::read(&path)
                        .unwrap()
                        .starts_with(&sealog::format::compressed::COMPRESSED_MAGIC))
                .then_some(path)
            })
            .count()
    };
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap();
        // ~2,000 events of ~300 bytes: several 64 KiB segments.
        for batch in 0..20 {
            let body: Vec<Value> = (0..100)
                .map(|i| {
                    let n = batch * 100 + i;
                    json!({
                        "actor": {"type": "user", "id": format!("user{}", n % 7)},
                        "action": "doc.read",
                        "resource": {"type": "doc", "id": n.to_string()},
                        "outcome": "success",
                        "request_id": format!("r{n:06}"),
                        "metadata": {"pad": "p".repeat(150)},
                    })
                })
                .collect();
            let r = c
                .post_json("/v1/events", Value::Array(body).to_string())
                .await
                .unwrap();
            assert!(r.status < 300, "{}", r.text());
        }
        let started = std::time::Instant::now();
        while compressed(&dir) < 3 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "{} segments compressed after two minutes",
                compressed(&dir)
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let r = c
            .get("/v1/events?actor=user:user3&limit=1000")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let found = r.text().matches("\"action\":\"doc.read\"").count();
        assert_eq!(
            found,
            (0..2000).filter(|n| n % 7 == 3).count(),
            "{}",
            r.text()
        );
    });
    let (status, _) = served.terminate();
    assert!(status.success());
    let report = sealog::verify_dir(&dir).unwrap();
    assert!(report.records >= 2000, "{report:?}");
    assert!(compressed(&dir) >= 3);
}
