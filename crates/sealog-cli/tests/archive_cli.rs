//! `sealog archive`, `sealog verify --archive` and `sealog restore` as a
//! user runs them, against a real S3 API server (`moto`) on loopback.

#[path = "../../sealog-archive/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sealog::format::note::SigningKey;
use sealog::format::{Actor, Event, Outcome, Resource};
use sealog::{CheckpointOptions, Preallocation, Store, StoreOptions};
use sealog_archive::{Target, TargetOptions, layout};
use support::{Moto, Proxy, ProxyMode};

const BUCKET: &str = "sealog-cli";

fn key() -> SigningKey {
    SigningKey::from_seed("cli.archive.test/log", &[5; 32]).expect("key")
}

fn grow(dir: &Path, n: usize) {
    let store = Store::open(
        dir,
        StoreOptions {
            segment_size: 8192,
            preallocation: Preallocation::Allocate,
            checkpoints: Some(CheckpointOptions::new(key())),
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new(
                Actor::new("user", format!("u{}", i % 9)),
                "invoice.read",
                Resource::new("invoice", i.to_string()),
                Outcome::Success,
            )
        })
        .collect();
    for chunk in events.chunks(25) {
        store.append_batch(chunk.to_vec()).expect("append");
    }
    store.roll().expect("roll");
    store.wait_sealed().expect("sealed");
    store.close().expect("close");
}

fn sealog(dir: &Path, endpoint: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.arg("--data-dir").arg(dir);
    for (k, v) in Moto::env(endpoint) {
        cmd.env(k, v);
    }
    cmd.env_remove("SEALOG_SIGNING_KEY");
    cmd
}

fn objects(url: &str, endpoint: &str) -> Vec<String> {
    let target = Target::open(
        url,
        TargetOptions {
            config: Moto::config(endpoint),
            ..TargetOptions::default()
        },
    )
    .expect("target");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(target.list(""))
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn kill_9_of_archive_follow_mid_upload_resumes_with_nothing_duplicated_or_missing() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 1);
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 1500);
    let url = format!("s3://{BUCKET}/follow");
    let direct = moto.endpoint();

    // A slow link, so that the kill lands in the middle of the uploads.
    proxy.set(ProxyMode::Slow(Duration::from_millis(15)));
    let log = tmp.path().join("follow.log");
    let mut child = sealog(&store, &proxy.endpoint())
        .args(["archive", "--to", &url, "--follow", "--interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn sealog archive --follow");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let names = objects(&url, &direct);
        if names.len() >= 6 {
            assert!(
                !names.iter().any(|n| n.starts_with(layout::MANIFESTS)),
                "killed too late: the round finished ({names:?})"
            );
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "sealog archive --follow exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no upload started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let before = objects(&url, &direct);

    // Resume at full speed: what was uploaded is found, not written again.
    proxy.set(ProxyMode::Pass);
    let out = sealog(&store, &proxy.endpoint())
        .args(["archive", "--to", &url, "--once", "--json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds = json_lines(&out.stdout);
    let first = rounds.first().expect("a round");
    assert_eq!(first["round"], 1);
    let already = first["objects_already_there"].as_u64().unwrap_or(0);
    assert!(
        already + 1 >= before.len() as u64,
        "every object uploaded before the kill is found again ({already} of {})",
        before.len()
    );

    // Follow picks up newly sealed segments.
    let follow_log = tmp.path().join("follow2.log");
    let mut child = sealog(&store, &proxy.endpoint())
        .args(["archive", "--to", &url, "--follow", "--interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&follow_log).expect("log"))
        .spawn()
        .expect("spawn follow");
    grow(&store, 200);
    let local = sealog::verify_dir(&store).expect("local");
    let pubkey = tmp.path().join("log.pub");
    std::fs::write(&pubkey, format!("{}\n", key().verifier().to_text())).expect("pub");
    let verify = || {
        let out = sealog(&store, &direct)
            .args(["verify", "--archive", &url, "--json", "--public-key"])
            .arg(&pubkey)
            .output()
            .expect("verify");
        let report = json_lines(&out.stdout).pop();
        (out, report)
    };
    // A round may cover part of the new segments (the follower can wake
    // while they are still being sealed); wait until one covers them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !objects(&url, &direct).contains(&layout::manifest(2))
        || verify().1.and_then(|r| r["records"].as_u64()) != Some(local.records)
    {
        assert!(
            Instant::now() < deadline,
            "follow did not archive the new segments in 60 s; objects: {:?}; last verify: {:?}; \
             follower's log:\n{}",
            objects(&url, &direct),
            verify().1,
            std::fs::read_to_string(&follow_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");

    // The archive is whole: every object listed once, none unlisted.
    let (out, report) = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report.expect("report");
    assert_eq!(report["intact"], true);
    assert_eq!(report["unlisted"], serde_json::json!([]));
    assert_eq!(report["records"].as_u64(), Some(local.records));
}

#[test]
fn verify_archive_exits_1_naming_the_altered_object_and_restore_rebuilds_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 300);
    let archive = tmp.path().join("archive");
    let url = format!("file://{}", archive.display());
    let out = sealog(&store, "http://127.0.0.1:9")
        .args(["archive", "--to", &url])
        .output()
        .expect("archive");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("archived round 1"), "{text}");
    assert!(text.contains("MB/s"), "{text}");

    let restored = tmp.path().join("restored");
    let out = sealog(&restored, "http://127.0.0.1:9")
        .args(["restore", "--from", &url])
        .output()
        .expect("restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sealog(&restored, "http://127.0.0.1:9")
        .args(["verify"])
        .output()
        .expect("verify restored");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let victim = archive.join(layout::segment(0));
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[300] ^= 0x10;
    std::fs::write(&victim, bytes).expect("write");
    let out = sealog(&store, "http://127.0.0.1:9")
        .args(["verify", "--archive", &url])
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TAMPERING"), "{err}");
    assert!(err.contains(&layout::segment(0)), "{err}");
    assert!(err.contains("where:") && err.contains("fix:"), "{err}");

    // A non-empty target is refused, as a usage error.
    let out = sealog(&restored, "http://127.0.0.1:9")
        .args(["restore", "--from", &url])
        .output()
        .expect("restore");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn retain_local_removes_archived_segments_and_every_read_still_sees_one_log() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    grow(&dir, 400);
    let url = format!("s3://{BUCKET}/retain");
    let endpoint = proxy.endpoint();
    let segments_before = std::fs::read_dir(dir.join("segments"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();

    let out = sealog(&dir, &endpoint)
        .args(["archive", "--to", &url, "--retain-local", "0s", "--json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let pruned = lines
        .iter()
        .find_map(|l| l.get("pruned").and_then(|p| p.as_array()).cloned())
        .expect("a prune report");
    assert!(pruned.len() >= 3, "{lines:?}");
    for name in &pruned {
        let name = name.as_str().expect("a name");
        assert!(!dir.join(name).exists(), "{name} was removed");
    }
    assert!(dir.join("pruned.log").exists());
    let segments_after = std::fs::read_dir(dir.join("segments"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();
    assert_eq!(segments_after + pruned.len(), segments_before);

    // verify: intact, naming what is archived, not local.
    let out = sealog(&dir, &endpoint)
        .args(["verify"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("archived, not local"), "{text}");

    // query: every record, old ones fetched from the archive.
    let cache = tmp.path().join("cache");
    let query = |cache: &Path| {
        sealog(&dir, &endpoint)
            .args([
                "query",
                "--limit",
                "10000",
                "--format",
                "ndjson",
                "--archive-cache-dir",
            ])
            .arg(cache)
            .output()
            .expect("run")
    };
    let out = query(&cache);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 400 + pruned.len(), "every record, one log");
    assert!(
        records
            .iter()
            .any(|r| r.get("action").and_then(|a| a.as_str()) == Some("archive.pruned")),
        "the removal is an audit event"
    );

    // proof of a record in a removed segment.
    let out = sealog(&dir, &endpoint)
        .args(["proof", "--seq", "1"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stats: what was removed, and how far the archive is behind.
    let out = sealog(&dir, &endpoint)
        .args(["stats", "--json", "--archive", &url])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let archive = &stats["archive"];
    assert_eq!(archive["pruned_segments"], pruned.len());
    assert_eq!(archive["lag_records"], 0, "{archive}");
    assert_eq!(archive["lag_segments"], 0, "{archive}");
    assert!(
        archive["archived_records"].as_u64().unwrap_or(0) >= 400,
        "{archive}"
    );
    assert!(
        archive["last_round"]["seconds_ago"].as_f64().is_some(),
        "{archive}"
    );

    // The archive unreachable, nothing cached: exit 1 naming segment and URL.
    proxy.set(ProxyMode::Down);
    let out = query(&tmp.path().join("empty-cache"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in segment `segments/"), "{err}");
    assert!(err.contains("removed from this store"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("fix:"), "{err}");
    assert!(out.stdout.is_empty(), "never a shorter answer");
}

/// A plain HTTP/1.0 request to a server on loopback: status and body.
fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of metric `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until `done` holds (or fails after `limit`).
fn metrics_until(base: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, text) = http(base, "GET", "/metrics", "");
        if status == 200 && done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_archives_after_each_seal_removes_old_segments_and_reports_lag_and_failures() {
    use std::io::BufRead;
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    grow(&dir, 400);
    let url = format!("s3://{BUCKET}/served");
    // The server signs a checkpoint at each seal: what each round relies on.
    let key_file = tmp.path().join("log.key");
    std::fs::write(&key_file, format!("{}\n", key().to_text())).expect("key");
    let mut child = sealog(&dir, &proxy.endpoint())
        .arg("--signing-key")
        .arg(&key_file)
        .args(["--segment-size", "8192", "serve", "--listen", "127.0.0.1:0"])
        .args(["--archive", &url, "--archive-retain-local", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let child = Kill(child);
    let first = lines.next().expect("a line").expect("text");
    let base = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();

    // The sealed segments are archived, then removed locally.
    let text = metrics_until(&base, Duration::from_secs(90), |t| {
        metric(t, "sealog_archive_lag_records") == Some(0.0)
            && metric(t, "sealog_archive_pruned_segments_total").unwrap_or(0.0) >= 3.0
    });
    assert!(metric(&text, "sealog_archive_archived_records").unwrap_or(0.0) >= 400.0);
    assert!(metric(&text, "sealog_archive_seconds_since_success").unwrap_or(-1.0) >= 0.0);
    assert!(!dir.join("segments/00000000000000000000.seg").exists());
    // A record of a removed segment is served from the archive.
    let (status, body) = http(&base, "GET", "/v1/events/1", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"seq\":1"), "{body}");

    // The archive goes away; new seals are not archived: lag, then failures.
    proxy.set(ProxyMode::Down);
    for batch in 0..5 {
        let events: String = (0..40)
            .map(|i| {
                format!(
                    "{{\"actor\":{{\"type\":\"user\",\"id\":\"u{i}\"}},\"action\":\"doc.read\",\
                     \"resource\":{{\"type\":\"doc\",\"id\":\"{batch}-{i}\"}},\
                     \"outcome\":\"success\"}}\n"
                )
            })
            .collect();
        let (status, body) = http(&base, "POST", "/v1/events", &events);
        assert_eq!(status, 200, "{body}");
    }
    metrics_until(&base, Duration::from_secs(120), |t| {
        metric(t, "sealog_archive_lag_records").unwrap_or(0.0) > 0.0
            && metric(t, "sealog_archive_failures_total").unwrap_or(0.0) >= 1.0
            && metric(t, "sealog_archive_lag_segments").unwrap_or(0.0) >= 1.0
    });
    // Back: the backlog is archived.
    proxy.set(ProxyMode::Pass);
    let text = metrics_until(&base, Duration::from_secs(120), |t| {
        metric(t, "sealog_archive_lag_records") == Some(0.0)
            && metric(t, "sealog_archive_consecutive_failures") == Some(0.0)
    });
    assert!(metric(&text, "sealog_archive_rounds_total").unwrap_or(0.0) >= 2.0);
    drop(child);
}
