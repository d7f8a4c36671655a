//! `sealog serve` as a process under load and abuse: connections beyond
//! the open-file limit, and (with `sealog bench --http --abuse`) held
//! connections, slow senders, bad bodies and a flood of failed
//! authentications while honest clients ingest and query.
//!
//! The server is the spawned binary, so its memory and its file
//! descriptors are its own. Nothing here asserts a speed: the machine is
//! shared; bounds are generous and only catch a server that stopped
//! answering.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealog::Store;
use sealog_server::client::Client;
use serde_json::Value;

fn sealog() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALOG_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// `sealog token create` in the store in `dir` (made first with
/// `sealog init` if need be); the secret is the last line.
fn create_token(dir: &Path, name: &str, scopes: &str) -> String {
    let init = sealog()
        .arg("--data-dir")
        .arg(dir)
        .args(["--segment-size", "64KiB", "init"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = sealog()
        .arg("--data-dir")
        .arg(dir)
        .args(["token", "create", "--name", name, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

/// A running `sealog serve`, killed if the test fails.
struct Served {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    /// `sealog serve` on `dir` with segments of `segment_size` bytes,
    /// started by `sh` after `ulimit` (e.g. `-n 400`; empty: none).
    fn start(dir: &Path, segment_size: u64, ulimit: &str, extra: &[&str]) -> Served {
        let bin = env!("CARGO_BIN_EXE_sealog");
        let limit = if ulimit.is_empty() {
            String::new()
        } else {
            format!("ulimit {ulimit} && ")
        };
        let script = format!(
            "{limit}dir=\"$1\" && shift && exec \"$0\" --data-dir \"$dir\" --segment-size \
             {segment_size} serve --listen 127.0.0.1:0 \"$@\""
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg(bin).arg(dir).args(extra);
        for (k, _) in std::env::vars() {
            if k.starts_with("SEALOG_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealog serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let Ok(first) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("no address line; stderr: {}", stderr.lock().unwrap());
        };
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line `{first}`"))
            .to_owned();
        Served { child, url, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM; panics unless it exits 0 within 30 s.
    fn terminate(mut self) -> String {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr();
        assert!(status.success(), "{stderr}");
        stderr
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The soft open-file limit of a process, from /proc.
fn soft_open_file_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn batch(tag: &str, n: u64) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..20).map(|i| format!("{tag}-{n}-{i}")).collect();
    let body = ids
        .iter()
        .map(|id| {
            format!(
                "{{\"actor\":{{\"type\":\"user\",\"id\":\"honest\"}},\"action\":\"load.write\",\
                 \"resource\":{{\"type\":\"r\",\"id\":\"{id}\"}},\"outcome\":\"success\",\
                 \"request_id\":\"{id}\",\"reason\":\"{}\"}}\n",
                "x".repeat(200)
            )
        })
        .collect();
    (ids, body)
}

#[test]
fn connections_beyond_the_open_file_limit_wait_and_the_store_keeps_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token = create_token(&dir, "load", "ingest,query");
    // A hard limit of 400 descriptors: the server cannot raise it, so it
    // serves at most 400 - 256 connections.
    let served = Served::start(&dir, 64 << 10, "-n 400", &["--header-timeout-secs", "60"]);
    let addr = served.url.trim_start_matches("http://").to_owned();
    assert_eq!(soft_open_file_limit(served.pid()), 400);
    let rt = runtime();
    let acked = rt.block_on(async {
        let mut c = Client::new(&served.url).unwrap().with_token(token.clone());
        assert_eq!(c.get("/readyz").await.unwrap().status, 200);
        // 600 idle connections at once: more than the server may have
        // descriptors. The ones it does not serve wait in the kernel's
        // accept queue (128), the rest time out.
        let attempts: Vec<_> = (0..600)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_secs(3),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                })
            })
            .collect();
        let mut idle = Vec::new();
        for a in attempts {
            if let Ok(Ok(Ok(s))) = a.await {
                idle.push(s);
            }
        }
        assert!(idle.len() > 144, "only {} connections opened", idle.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Ingest across several segment rolls (each new segment is a new
        // file) on the connection opened first.
        let mut acked = Vec::new();
        for n in 0..60 {
            let (ids, body) = batch("fd", n);
            let r = c.post_ndjson("/v1/events", body).await.unwrap();
            assert_eq!(r.status, 200, "batch {n}: {}", r.text());
            acked.extend(ids);
        }
        assert_eq!(c.get("/readyz").await.unwrap().status, 200);
        let stats = c.get("/v1/stats").await.unwrap().json();
        assert_eq!(stats["server"]["store_reopens"], 0, "{stats}");
        let open = stats["server"]["connections"].as_u64().unwrap();
        assert!(open <= 400 - 256, "{open} connections served");
        drop(idle);
        acked
    });
    let stderr = served.terminate();
    assert!(
        stderr.contains("serving at most 144 connections at once"),
        "{stderr}"
    );
    assert!(!stderr.contains("refuses writes"), "{stderr}");
    let store = Store::open_read_only(&dir).unwrap();
    store.verify().unwrap();
    assert!(store.stats().segments > 3, "the segments rolled");
    let present: BTreeSet<String> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter_map(|r| r.event.request_id)
        .collect();
    assert!(acked.iter().all(|a| present.contains(a)));
}

#[test]
fn the_server_raises_its_soft_open_file_limit_to_the_hard_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let hard: u64 = {
        let out = Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        match text.trim().parse() {
            Ok(n) => n,
            // "unlimited": nothing to check.
            Err(_) => return,
        }
    };
    if hard <= 300 {
        return;
    }
    let served = Served::start(&dir, 64 << 10, "-Sn 300", &["--create"]);
    assert_eq!(soft_open_file_limit(served.pid()), hard);
    let stderr = served.terminate();
    if hard >= 10_000 + 256 {
        assert!(!stderr.contains("serving at most"), "{stderr}");
    }
}

/// What each malformed body must be answered with. A request refused
/// before its body is read (a streamed oversized body, an unsupported
/// type) may also see a reset: the server closes with body bytes unread.
const BAD_BODY_ANSWERS: &[(&str, &str)] = &[
    ("declared_oversize", "413 body_too_large"),
    ("streamed_oversize", "413 body_too_large"),
    ("malformed_json", "400 malformed_json"),
    ("invalid_utf8", "400 invalid_utf8"),
    ("wrong_types", "400 invalid_events"),
    ("deep_nesting", "400 malformed_json"),
    ("too_many_events", "413 too_many_events"),
    ("event_too_large", "413 event_too_large"),
    ("unsupported_media_type", "415 unsupported_media_type"),
    ("empty_body", "400 empty_body"),
    ("huge_header", "431"),
    ("not_http", "400"),
];

#[test]
fn under_abuse_honest_clients_are_served_memory_stays_bounded_and_nothing_acknowledged_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token = create_token(&dir, "abuse", "ingest,query,admin");
    let served = Served::start(
        &dir,
        4 << 20,
        "",
        &[
            "--header-timeout-secs",
            "2",
            "--body-timeout-secs",
            "2",
            "--max-connections",
            "1200",
        ],
    );
    let acked_file = tmp.path().join("acked.txt");
    let pid = served.pid().to_string();
    let out = sealog()
        .args(["bench", "--http", &served.url, "--abuse", "--json"])
        .args(["--server-pid", &pid])
        .arg("--record-acked")
        .arg(&acked_file)
        .args(["--baseline-secs", "2", "--abuse-secs", "8"])
        .args(["--over-limit-secs", "3", "--after-secs", "2"])
        .args(["--hold", "1000", "--over-limit", "1400", "--slow", "4"])
        .args([
            "--bad-bodies",
            "2",
            "--auth-flood",
            "20",
            "--auth-sources",
            "1000",
        ])
        .args([
            "--honest-clients",
            "2",
            "--honest-batch",
            "50",
            "--honest-rate",
            "1000",
        ])
        .args(["--summary-wait-secs", "0"])
        .env("SEALOG_TOKEN", &token)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report:#}");
    let checks = &report["checks"];
    assert_eq!(checks["passed"], true, "{report:#}");
    assert_eq!(checks["acked_missing"], 0);
    assert_eq!(checks["verify"]["intact"], true);

    // The honest clients were answered in every phase, none slower than a
    // generous 10 s (the machine is shared: no tighter bound).
    for phase in ["baseline", "flood", "over_limit", "after"] {
        let q = &report["honest_query"]["latency"][phase];
        assert!(q["n"].as_u64().unwrap() > 0, "{phase}: {q}");
        assert_eq!(q["errors"], 0, "{phase}: {report:#}");
        assert!(q["max_ms"].as_f64().unwrap() < 10_000.0, "{phase}: {q}");
        let i = &report["honest_ingest"]["latency"][phase];
        assert_eq!(i["errors"], 0, "{phase}: {report:#}");
        assert!(i["max_ms"].as_f64().unwrap() < 10_000.0, "{phase}: {i}");
    }
    let ingest = &report["honest_ingest"];
    assert_eq!(ingest["errors"], serde_json::json!({}), "{ingest}");
    assert_eq!(ingest["gave_up"], 0);
    assert!(ingest["acked_events"].as_u64().unwrap() > 1_000, "{ingest}");

    // Memory stayed bounded (RSS in KiB, far below 1 GiB).
    let memory = &report["memory_kib"];
    for phase in ["baseline", "flood", "over_limit", "after"] {
        let rss = memory["rss_peak"][phase].as_u64().unwrap();
        assert!(rss > 0 && rss < 1 << 20, "{phase}: {memory}");
    }

    // The connections were held, and above the limit the server served no
    // more than its limit.
    let conns = &report["connections"];
    assert!(
        conns["client_open_peak"]["flood"].as_u64().unwrap() >= 500,
        "{conns}"
    );
    let served_over = conns["server_open_peak"]["over_limit"].as_u64().unwrap();
    assert!(served_over <= 1200, "{conns}");

    // Each class of abuse got the answer it should.
    let abuse = &report["abuse"];
    let labels = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let slow_head = labels(&abuse["slow_head"]);
    assert!(
        slow_head
            .iter()
            .any(|l| l == "closed without an answer" || l.starts_with("408")),
        "slow heads are cut off: {slow_head:?}"
    );
    assert!(
        labels(&abuse["slow_body"]).contains(&"408 body_timeout".to_owned()),
        "{}",
        abuse["slow_body"]
    );
    for (case, answer) in BAD_BODY_ANSWERS {
        let got = labels(&abuse["bad_bodies"][case]);
        assert!(!got.is_empty(), "{case} was not sent");
        for label in &got {
            assert!(
                label == answer
                    || (matches!(*case, "streamed_oversize" | "unsupported_media_type")
                        && label == "reset"),
                "{case}: answered {label}, expected {answer}"
            );
        }
    }
    let flood = labels(&abuse["auth_flood"]);
    assert!(
        flood.iter().all(|l| l.starts_with("401")),
        "{}",
        abuse["auth_flood"]
    );
    let attempts = checks["refusals"]["attempts_sent"].as_u64().unwrap();
    assert!(attempts > 200, "{}", checks["refusals"]);
    let refused = report["server_stats_after"]["auth_failures"]
        .as_u64()
        .unwrap();

    // Afterwards, on the store itself: every acknowledged event, a log
    // that verifies, and the flood written as a few events and summaries
    // that count every refusal.
    served.terminate();
    let store = Store::open_read_only(&dir).unwrap();
    store.verify().unwrap();
    let (mut present, mut failed, mut summarized) = (BTreeSet::new(), 0u64, 0u64);
    for record in store.scan(..) {
        let record = record.unwrap();
        match record.event.action.as_str() {
            "auth.failed" => failed += 1,
            "auth.refusals_summarized" => {
                summarized += record.event.metadata.as_ref().unwrap()["count"]
                    .as_u64()
                    .unwrap();
            }
            _ => {}
        }
        if let Some(id) = record.event.request_id {
            present.insert(id);
        }
    }
    let acked = std::fs::read_to_string(&acked_file).unwrap();
    let acked: Vec<&str> = acked.lines().collect();
    assert_eq!(acked.len() as u64, ingest["acked_events"].as_u64().unwrap());
    let missing = acked.iter().filter(|id| !present.contains(**id)).count();
    assert_eq!(missing, 0, "acknowledged events missing from the store");
    // From 1,000 addresses, 20 each per 10 s would be 20,000; the server
    // records at most 1,000 per window from all of them, and the flood
    // spans at most two windows.
    assert!(
        failed * 10 < attempts && failed <= 2_000,
        "{failed} auth.failed events for {attempts} failed authentications"
    );
    assert_eq!(
        failed + summarized,
        refused,
        "every refusal is recorded or counted in a summary"
    );
}
