//! `sealog serve` as a process at the limit of its file descriptors: it
//! raises its soft open-file limit to the hard one, and connections beyond
//! what the limit allows wait while the store keeps writing (new segment
//! and index files included).
//!
//! The server is the spawned binary, so its file descriptors are its own.
//! Nothing here asserts a speed.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sealog::Store;
use sealog_testkit::client::Client;
use sealog_testkit::process::{self, Served};
use sealog_testkit::runtime;

const BIN: &str = env!("CARGO_BIN_EXE_sealog");

/// `sealog serve` on `dir` on a free loopback port, started by `sh` after
/// `ulimit ULIMIT` (e.g. `-n 400`), with `extra` flags.
fn serve_with_ulimit(dir: &Path, ulimit: &str, extra: &[&str]) -> Served {
    let script = format!(
        "ulimit {ulimit} && dir=\"$1\" && shift && exec \"$0\" --data-dir \"$dir\" \
         --segment-size {} serve --listen 127.0.0.1:0 \"$@\"",
        process::SEGMENT_SIZE
    );
    let mut cmd = process::command("sh");
    cmd.arg("-c").arg(script).arg(BIN).arg(dir).args(extra);
    Served::start(cmd)
}

/// SIGTERM; its standard error, once it exited 0.
fn terminate(served: Served) -> String {
    let (status, stderr) = served.terminate();
    assert!(status.success(), "{stderr}");
    stderr
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
    let token = process::create_token(BIN, &dir, "load", "ingest,query");
    // A hard limit of 400 descriptors: the server cannot raise it, so it
    // serves at most 400 - 256 connections.
    let served = serve_with_ulimit(&dir, "-n 400", &["--header-timeout-secs", "60"]);
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
    let stderr = terminate(served);
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
    let served = serve_with_ulimit(&dir, "-Sn 300", &["--create"]);
    assert_eq!(soft_open_file_limit(served.pid()), hard);
    let stderr = terminate(served);
    if hard >= 10_000 + 256 {
        assert!(!stderr.contains("serving at most"), "{stderr}");
    }
}
