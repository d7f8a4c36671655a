//! `sealog forward` against real receivers on loopback: rsyslogd (plain
//! TCP and TLS, RFC 5425 octet counting) and an HTTPS collector (Python's
//! http.server behind TLS). The forwarder is killed with SIGKILL and the
//! receiver restarted mid-stream; afterwards every seq is at the receiver,
//! duplicates only within the documented resend window.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealog::workload::{Workload, WorkloadShape};
use sealog::{Store, StoreOptions};

use support::peers::{free_port, rsyslogd, rsyslogd_or_skip, tls_fixture};

fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR").arg("--data-dir").arg(dir);
    cmd
}

fn workload(total: u64) -> Workload {
    Workload::with_shape(
        7,
        WorkloadShape {
            total,
            actors: 100,
            event_size: 400,
            ..WorkloadShape::default()
        },
    )
}

fn open_store(dir: &Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            segment_size: 1 << 20,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn append(store: &Store, w: &Workload, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let end = (i + 1000).min(to);
        store.append_batch(w.events(i, end)).unwrap();
        i = end;
    }
}

/// An rsyslogd writing every message it receives to a file.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

impl Rsyslog {
    fn start(dir: &Path, tls: bool) -> Rsyslog {
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let mut r = Rsyslog {
            dir: dir.to_owned(),
            port: free_port(),
            tls,
            child: None,
        };
        r.spawn();
        r
    }

    fn out(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("rsyslog.conf");
        let driver = if self.tls {
            format!(
                "global(DefaultNetstreamDriver=\"gtls\" \
                 DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" \
                 DefaultNetstreamDriverKeyFile=\"{}\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" \
                 StreamDriver.AuthMode=\"anon\")\n",
                tls_fixture("ca.pem").display(),
                tls_fixture("cert.pem").display(),
                tls_fixture("key.pem").display()
            )
        } else {
            "module(load=\"imtcp\")\n".to_owned()
        };
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\n\
                 {driver}\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
                 template(name=\"sdmsg\" type=\"string\" string=\"%msgid% %structured-data% %msg%\\n\")\n\
                 action(type=\"omfile\" file=\"{out}\" template=\"sdmsg\")\n",
                work = self.dir.join("work").display(),
                port = self.port,
                out = self.out().display(),
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A graceful restart: SIGTERM, wait for the exit, start again on the
    /// same port.
    fn restart(&mut self) {
        self.stop();
        std::thread::sleep(Duration::from_millis(300));
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// seq → how many times it arrived, from the `seq="…"` of each line's
    /// structured data, checked against the JSON message's `seq`.
    fn received(&self) -> BTreeMap<u64, u64> {
        let text = std::fs::read_to_string(self.out()).unwrap_or_default();
        // rsyslog may be writing the last line as it is read: only lines
        // it finished (ended by a newline) count.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let mut seen = BTreeMap::new();
        for line in complete.lines() {
            let Some(start) = line.find(" seq=\"") else {
                continue;
            };
            let rest = &line[start + 6..];
            let seq: u64 = rest[..rest.find('"').unwrap()].parse().unwrap();
            let json = &line[line.find("] {").unwrap() + 2..];
            let v: serde_json::Value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("line {line:?} has no JSON message: {e}"));
            assert_eq!(v["seq"], seq, "{line}");
            assert!(
                line.starts_with(v["action"].as_str().unwrap()),
                "msgid: {line}"
            );
            *seen.entry(seq).or_insert(0) += 1;
        }
        seen
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn forwarder(dir: &Path, to: &str, extra: &[&str]) -> Child {
    sealog(dir)
        .args([
            "forward",
            "--to",
            to,
            "--batch",
            "200",
            "--interval",
            "50",
            "--timeout",
            "5",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `sealog serve --config` with `text` written to `config`; its
/// standard output (the "listening on" line) is piped.
fn start_server(dir: &Path, config: &Path, text: &str) -> Child {
    std::fs::write(config, text).unwrap();
    sealog(dir)
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops a server as a service manager does, and checks it stopped cleanly.
fn stop_server(mut server: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    assert!(server.wait().unwrap().success());
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(child: &mut Child) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    err
}

/// The whole run: forward while the store grows, kill -9 the forwarder,
/// restart it, restart the receiver, and count.
fn survives_kill_and_receiver_restart(tls: bool) {
    if !rsyslogd_or_skip(if tls {
        "forwarding over TLS"
    } else {
        "forwarding over TCP"
    }) {
        return;
    }
    const FIRST: u64 = 12_000;
    const TOTAL: u64 = 24_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let w = workload(TOTAL);
    let store = open_store(&dir);
    append(&store, &w, 0, FIRST);
    let mut rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), tls);
    let ca = tls_fixture("ca.pem");
    let (to, extra): (String, Vec<&str>) = if tls {
        (
            format!("syslog+tls://localhost:{}", rsyslog.port),
            vec!["--ca", ca.to_str().unwrap()],
        )
    } else {
        (format!("syslog+tcp://127.0.0.1:{}", rsyslog.port), vec![])
    };
    let mut fwd = forwarder(&dir, &to, &extra);
    wait_until("a quarter to arrive", Duration::from_secs(120), || {
        rsyslog.received().len() as u64 >= FIRST / 4
    });
    kill9(&mut fwd);
    // The store keeps growing (the forwarder follows it read-only while
    // this process writes).
    let mut fwd = forwarder(&dir, &to, &extra);
    append(&store, &w, FIRST, TOTAL - 4_000);
    wait_until("half to arrive", Duration::from_secs(120), || {
        rsyslog.received().len() as u64 >= TOTAL / 2
    });
    rsyslog.restart();
    append(&store, &w, TOTAL - 4_000, TOTAL);
    wait_until("every record to arrive", Duration::from_secs(180), || {
        rsyslog.received().len() as u64 >= TOTAL
    });
    let err = kill9(&mut fwd);
    rsyslog.stop();
    let seen = rsyslog.received();
    let expected: Vec<u64> = (0..TOTAL).collect();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), expected, "{err}");
    let duplicates: u64 = seen.values().map(|n| n - 1).sum();
    // At most one resend window (10,000) and the batch whose write failed
    // (200) per failed connection, and one batch (200) for the kill: the
    // documented bound. (A run that failed had 10,277: the window, part of
    // the failed batch read before rsyslog closed, and the kill's batch.)
    assert!(
        duplicates <= 10_000 + 200 + 200,
        "{duplicates} duplicates: more than the resend window allows\n{err}"
    );
    // The cursor reached the end.
    let cursor = std::fs::read_dir(dir.join("forward"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cursor"))
        .unwrap();
    let text = std::fs::read_to_string(cursor).unwrap();
    assert!(text.contains(&format!("next_seq {TOTAL}\n")), "{text}");
    store.close().unwrap();
}

#[test]
fn forwarding_over_tls_to_rsyslog_loses_nothing_across_kill_9_and_receiver_restart() {
    survives_kill_and_receiver_restart(true);
}

#[test]
fn forwarding_over_tcp_to_rsyslog_loses_nothing_across_kill_9_and_receiver_restart() {
    survives_kill_and_receiver_restart(false);
}

#[test]
fn a_second_run_resumes_from_the_cursor_and_sends_only_new_matching_records() {
    if !rsyslogd_or_skip("a_second_run_resumes_from_the_cursor_and_sends_only_new_matching_records")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let w = workload(3_000);
    let store = open_store(&dir);
    append(&store, &w, 0, 2_000);
    let rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), false);
    let to = format!("syslog+tcp://127.0.0.1:{}", rsyslog.port);
    let run = |dir: &Path| {
        let out = sealog(dir)
            .args([
                "forward",
                "--to",
                &to,
                "--until-caught-up",
                "--outcome",
                "denied",
                // A time range ending after every event: it matches all.
                "--from",
                "2000-01-01",
                "--until",
                "2200-12-31",
                "--name",
                "denials",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = run(&dir);
    assert!(first.contains("first run"), "{first}");
    append(&store, &w, 2_000, 3_000);
    let second = run(&dir);
    assert!(second.contains("from seq 2000 (resumed"), "{second}");
    let denied: Vec<u64> = (0..3_000)
        .filter(|&i| w.event(i).outcome == sealog::format::Outcome::Denied)
        .collect();
    wait_until("the denials to be written", Duration::from_secs(30), || {
        rsyslog.received().len() == denied.len()
    });
    let seen = rsyslog.received();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), denied);
    assert!(seen.values().all(|&n| n == 1), "no failure, no duplicate");
    assert!(dir.join("forward/denials.cursor").exists());
    store.close().unwrap();
}

#[test]
fn a_second_forwarder_on_the_same_cursor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = open_store(&dir);
    append(&store, &workload(10), 0, 10);
    // Nothing listens there: the first forwarder retries forever.
    let port = free_port();
    let to = format!("syslog+tcp://127.0.0.1:{port}");
    let mut first = forwarder(&dir, &to, &[]);
    wait_until(
        "the first forwarder's cursor",
        Duration::from_secs(30),
        || {
            dir.join("forward").read_dir().is_ok_and(|mut d| {
                d.any(|e| e.unwrap().path().extension().is_some_and(|x| x == "cursor"))
            })
        },
    );
    let out = sealog(&dir)
        .args(["forward", "--to", &to])
        .output()
        .unwrap();
    let err = kill9(&mut first);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another forwarder") && stderr.contains("fix:"),
        "{stderr}"
    );
    assert!(
        err.contains("cannot connect") && err.contains("retrying"),
        "{err}"
    );
    store.close().unwrap();
}

#[test]
fn a_bad_destination_or_ca_is_a_usage_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    open_store(&dir).close().unwrap();
    for (args, says) in [
        (vec!["--to", "syslog+tls://host"], "no port"),
        (vec!["--to", "ftp://host:21"], "not supported"),
        (
            vec![
                "--to",
                "syslog+tls://localhost:6514",
                "--ca",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
        (
            vec!["--to", "https://localhost/x", "--format", "cef"],
            "CEF",
        ),
        (
            vec!["--to", "syslog+tcp://localhost:514", "--since", "1h"],
            "--since",
        ),
        // `--to` is the receiver; the end of the time range is `--until`.
        (
            vec!["--to", "syslog+tcp://localhost:514", "--until", "noon"],
            "--until",
        ),
    ] {
        let out = sealog(&dir).arg("forward").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.contains("fix:"),
            "{args:?}: {err}"
        );
    }
}

/// An HTTPS collector: Python's http.server behind TLS with the test
/// certificate, appending each POSTed body to a file and answering 204 —
/// except the first `fail` requests, answered 503.
struct Collector {
    child: Child,
    port: u16,
    out: PathBuf,
    headers: PathBuf,
}

impl Collector {
    fn start(dir: &Path, fail: u32) -> Collector {
        let port = free_port();
        let out = dir.join("posted.ndjson");
        let headers = dir.join("headers.txt");
        let script = format!(
            r#"
import http.server, ssl
fails = [{fail}]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        with open({headers:?}, 'a') as f:
            f.write(str(self.headers.get('Authorization')) + ' ' + str(self.headers.get('Content-Type')) + '\n')
        if fails[0] > 0:
            fails[0] -= 1
            self.send_response(503); self.send_header('Content-Length', '4'); self.end_headers(); self.wfile.write(b'busy'); return
        with open({out:?}, 'ab') as f:
            f.write(body)
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain({cert:?}, {key:?})
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#,
            headers = headers.display().to_string(),
            out = out.display().to_string(),
            cert = tls_fixture("cert.pem").display().to_string(),
            key = tls_fixture("key.pem").display().to_string(),
        );
        let child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the collector", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Collector {
            child,
            port,
            out,
            headers,
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_forwarding_posts_ndjson_batches_and_retries_until_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let w = workload(1_500);
    let store = open_store(&dir);
    append(&store, &w, 0, 1_500);
    store.close().unwrap();
    let collector = Collector::start(tmp.path(), 2);
    let out = sealog(&dir)
        .env("SEALOG_FORWARD_AUTHORIZATION", "Bearer s3cret")
        .args([
            "forward",
            "--to",
            &format!("https://localhost:{}/ingest", collector.port),
        ])
        .args([
            "--ca",
            tls_fixture("ca.pem").to_str().unwrap(),
            "--format",
            "ocsf",
        ])
        .args(["--batch", "500", "--until-caught-up"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("answered 503 Service Unavailable: busy")
            .count(),
        2,
        "{err}"
    );
    let posted = std::fs::read_to_string(&collector.out).unwrap();
    let uids: Vec<u64> = posted
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["class_uid"].as_u64().is_some());
            v["metadata"]["uid"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    // A refused batch is sent again, and nothing else twice.
    assert_eq!(uids, (0..1_500).collect::<Vec<_>>());
    let headers = std::fs::read_to_string(&collector.headers).unwrap();
    assert_eq!(headers.lines().count(), 5, "3 batches, 2 of them twice");
    assert!(
        headers
            .lines()
            .all(|l| l == "Bearer s3cret application/x-ndjson"),
        "{headers}"
    );
}

/// POSTs an NDJSON body to the server; returns the status line.
fn post_ndjson(url: &str, body: &str) -> String {
    use std::io::{BufRead, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line
}

#[test]
fn the_server_forwards_what_it_stores_to_the_receivers_of_its_config() {
    if !rsyslogd_or_skip("the_server_forwards_what_it_stores_to_the_receivers_of_its_config") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let w = workload(1_000);
    let store = open_store(&dir);
    append(&store, &w, 0, 500);
    store.close().unwrap();
    let rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), false);
    let mut server = start_server(
        &dir,
        &tmp.path().join("sealog.toml"),
        &format!(
            "listen = \"127.0.0.1:0\"\n\n[[forward]]\nto = \"syslog+tcp://127.0.0.1:{}\"\n\
         name = \"siem\"\ninterval_ms = 50\nactions = [\"*.read\", \"*.delete\"]\n",
            rsyslog.port
        ),
    );
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let url = first.trim().trim_start_matches("listening on ").to_owned();
    let body: String = w
        .events(500, 1_000)
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    let status = post_ndjson(&url, &body);
    assert!(status.starts_with("HTTP/1.1 2"), "{status}");
    let wanted: Vec<u64> = (0..1_000)
        .filter(|&i| {
            let a = w.event(i).action;
            a.ends_with(".read") || a.ends_with(".delete")
        })
        .collect();
    wait_until("the server to forward", Duration::from_secs(60), || {
        rsyslog.received().len() >= wanted.len()
    });
    stop_server(server);
    let seen = rsyslog.received();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), wanted);
    let cursor = std::fs::read_to_string(dir.join("forward/siem.cursor")).unwrap();
    assert!(
        cursor.contains("destination syslog+tcp://127.0.0.1:"),
        "{cursor}"
    );
}

#[test]
fn a_wrong_forward_table_stops_the_server_at_start_with_its_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    open_store(&dir).close().unwrap();
    let config = tmp.path().join("sealog.toml");
    for (table, says) in [
        (
            "to = \"syslog+tls://siem:6514\"\nca = \"/nonexistent/ca.pem\"\n",
            "/nonexistent/ca.pem",
        ),
        (
            "to = \"syslog+tcp://siem:514\"\noutcome = \"maybe\"\n",
            "outcome",
        ),
        (
            "to = \"syslog+tcp://siem:514\"\ncolour = \"red\"\n",
            "colour",
        ),
    ] {
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:0\"\n[[forward]]\n{table}"),
        )
        .unwrap();
        let out = sealog(&dir)
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{table}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.contains("fix:"), "{table}: {err}");
    }
}

/// A store written under `actor.id=hash` and `source.ip=mask`: forward
/// filters name the clear values, from the command (with the same
/// `--privacy` rules and key) and from the server's `[[forward]]` tables
/// (with the server's rules), and find the records stored transformed.
#[test]
fn forward_filters_find_records_stored_under_privacy_rules() {
    if !rsyslogd_or_skip("forward_filters_find_records_stored_under_privacy_rules") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let key = tmp.path().join("privacy.key");
    std::fs::write(&key, [42u8; 32]).unwrap();
    let rules = ["actor.id=hash", "source.ip=mask"];
    let policy = sealog::privacy::PrivacyPolicy::parse(
        &rules.map(String::from),
        Some(sealog::privacy::PrivacyKey::from_file(&key).unwrap()),
    )
    .unwrap();
    let w = workload(1_000);
    let store = Store::open(
        &dir,
        StoreOptions {
            segment_size: 1 << 20,
            privacy: policy,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    append(&store, &w, 0, 1_000);
    store.close().unwrap();
    let who = w.event(0).actor;
    let clear = format!("{}:{}", who.kind, who.id);
    // Seq 0 records the policy; event i is seq i + 1.
    let wanted: Vec<u64> = (0..1_000)
        .filter(|&i| w.event(i).actor == who)
        .map(|i| i + 1)
        .collect();
    assert!(wanted.len() > 1 && wanted.len() < 1_000, "{}", wanted.len());

    // A query given other rules than the writer's is warned, naming them;
    // with the writer's rules and key it is not.
    let out = sealog(&dir)
        .args(["query", "--count", "--actor", &clear])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the log records that its writer applies the privacy rules")
            && stderr.contains("--privacy actor.id=hash,source.ip=mask --privacy-key FILE"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let out = sealog(&dir)
        .args([
            "query",
            "--count",
            "--actor",
            &clear,
            "--privacy",
            &rules.join(","),
        ])
        .arg("--privacy-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        wanted.len().to_string()
    );

    // The command, given the store's rules.
    let rsyslog = Rsyslog::start(&tmp.path().join("rsyslog"), false);
    let out = sealog(&dir)
        .args(["forward", "--until-caught-up", "--name", "one-actor"])
        .args(["--to", &format!("syslog+tcp://127.0.0.1:{}", rsyslog.port)])
        .args(["--actor", &clear, "--privacy", &rules.join(",")])
        .arg("--privacy-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the actor's events", Duration::from_secs(30), || {
        rsyslog.received().len() >= wanted.len()
    });
    assert_eq!(
        rsyslog.received().keys().copied().collect::<Vec<_>>(),
        wanted
    );

    // The server, with the rules in its config.
    let rsyslog2 = Rsyslog::start(&tmp.path().join("rsyslog2"), false);
    let server = start_server(
        &dir,
        &tmp.path().join("sealog.toml"),
        &format!(
            "listen = \"127.0.0.1:0\"\nprivacy = [\"actor.id=hash\", \"source.ip=mask\"]\n\
         privacy_key = {key:?}\n\n[[forward]]\nto = \"syslog+tcp://127.0.0.1:{}\"\n\
         name = \"siem\"\ninterval_ms = 50\nactor = {clear:?}\n",
            rsyslog2.port
        ),
    );
    wait_until("the server to forward", Duration::from_secs(60), || {
        rsyslog2.received().len() >= wanted.len()
    });
    stop_server(server);
    assert_eq!(
        rsyslog2.received().keys().copied().collect::<Vec<_>>(),
        wanted
    );
}
