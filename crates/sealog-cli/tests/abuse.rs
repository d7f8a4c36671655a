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

/// `sealog token create`; the secret is the last line.
fn create_token(dir: &Path, name: &str, scopes: &str) -> String {
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
    /// `sealog serve` on `dir` with 64 KiB segments, started by `sh` after
    /// `ulimit` (e.g. `-n 400`; empty: none).
    fn start(dir: &Path, ulimit: &str, extra: &[&str]) -> Served {
        let bin = env!("CARGO_BIN_EXE_sealog");
        let limit = if ulimit.is_empty() {
            String::new()
        } else {
            format!("ulimit {ulimit} && ")
        };
        let script = format!(
            "{limit}dir=\"$1\" && shift && exec \"$0\" --data-dir \"$dir\" --segment-size 65536 \
             serve --listen 127.0.0.1:0 \"$@\""
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
    let served = Served::start(&dir, "-n 400", &["--header-timeout-secs", "60"]);
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
    let served = Served::start(&dir, "-Sn 300", &[]);
    assert_eq!(soft_open_file_limit(served.pid()), hard);
    let stderr = served.terminate();
    if hard >= 10_000 + 256 {
        assert!(!stderr.contains("serving at most"), "{stderr}");
    }
}
