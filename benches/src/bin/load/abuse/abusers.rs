//! The abusive clients: idle connections held open, slow senders of
//! request heads and bodies, connections cycling through oversized and
//! malformed bodies, and the flood of failed authentications.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{sleep, sleep_until};

use super::raw::{ANSWER_TIMEOUT, Body, connect, exchange, read_answer, source_ip};
use super::shared::{OpenGuard, Shared, Tally, lock, micros};

/// Holds an idle connection until `deadline`, opening a new one whenever
/// the server closes it.
pub(super) async fn hold(
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
    tally: Arc<Tally>,
    held: Arc<Mutex<Vec<u64>>>,
) {
    while tokio::time::Instant::now() < deadline {
        let mut s = match connect(&shared, None).await {
            Ok(s) => s,
            Err(e) => {
                tally.add(format!("connect failed: {e}"));
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let open = OpenGuard::new(&shared.open);
        let since = Instant::now();
        let mut buf = [0u8; 1024];
        let ended = tokio::select! {
            r = s.read(&mut buf) => Some(r),
            () = sleep_until(deadline) => None,
        };
        drop(open);
        match ended {
            None => {
                tally.add("open until the end of its phase");
                return;
            }
            Some(Ok(0)) => tally.add("closed by the server"),
            Some(Ok(n)) => {
                let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
                let status = text.split(' ').nth(1).unwrap_or("?").to_owned();
                tally.add(format!("closed by the server with {status}"));
            }
            Some(Err(_)) => tally.add("reset by the server"),
        }
        lock(&held).push(micros(since.elapsed()));
    }
}

/// Sends a request head (`slow_body`: a whole head and then the body) a
/// byte a second until the server answers or closes, then starts again.
pub(super) async fn slow_sender(
    shared: Arc<Shared>,
    slow_body: Option<u64>,
    deadline: tokio::time::Instant,
    tally: Arc<Tally>,
    cut: Arc<Mutex<Vec<u64>>>,
) {
    while tokio::time::Instant::now() < deadline {
        let mut s = match connect(&shared, None).await {
            Ok(s) => s,
            Err(e) => {
                tally.add(format!("connect failed: {e}"));
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let _open = OpenGuard::new(&shared.open);
        let head = match slow_body {
            None => format!(
                "GET /v1/events?limit=1 HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
                shared.host
            ),
            Some(declared) => format!(
                "POST /v1/events HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\n\
                 Content-Length: {declared}\r\n\r\n",
                shared.host,
                shared.auth_header()
            ),
        };
        let since = Instant::now();
        let (mut rd, mut wr) = s.split();
        let trickle = async {
            if wr.write_all(head.as_bytes()).await.is_ok() {
                loop {
                    sleep(Duration::from_secs(1)).await;
                    if wr.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
            std::future::pending::<()>().await;
        };
        let answer = tokio::select! {
            a = read_answer(&mut rd, Duration::from_secs(3600)) => Some(a),
            () = trickle => None,
            () = sleep_until(deadline) => None,
        };
        match answer {
            Some(a) => {
                tally.add(a.label());
                lock(&cut).push(micros(since.elapsed()));
            }
            None => {
                tally.add("still sending at the end of the flood");
                return;
            }
        }
    }
}

/// The oversized and malformed bodies, by name.
pub(super) fn bad_requests(shared: &Shared) -> Vec<(&'static str, String, Body)> {
    let host = &shared.host;
    let auth = shared.auth_header();
    let post = |ct: &str, len: usize| {
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: {ct}\r\n\
             Content-Length: {len}\r\n\r\n"
        )
    };
    let fixed = |name, ct: &str, body: Vec<u8>| {
        let head = post(ct, body.len());
        (name, head, Body::Bytes(Bytes::from(body)))
    };
    let tiny = r#"{"actor":{"type":"user","id":"abuser"},"action":"abuse.write","resource":{"type":"r"},"outcome":"success"}"#;
    // 10,001 events: one more than the default max_batch_events. The last
    // line is invalid, so a server with a larger limit writes nothing
    // either.
    let mut too_many = format!("{tiny}\n").repeat(10_000);
    too_many.push_str("{\"actor\": 1}\n");
    let big_event = format!(
        r#"{{"actor":{{"type":"user","id":"abuser"}},"action":"abuse.write","resource":{{"type":"r"}},"outcome":"success","reason":"{}"}}"#,
        "x".repeat(100_000)
    );
    let mut invalid_utf8 = br#"{"actor":{"type":"user","id":"ab"#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe");
    invalid_utf8.extend_from_slice(
        br#""},"action":"abuse.write","resource":{"type":"r"},"outcome":"success"}"#,
    );
    invalid_utf8.push(b'\n');
    vec![
        (
            "declared_oversize",
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: \
                 application/json\r\nContent-Length: 4294967296\r\n\r\n"
            ),
            Body::None,
        ),
        (
            "streamed_oversize",
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: \
                 application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Body::Chunked {
                chunk: Bytes::from(vec![b' '; 64 << 10]),
                total: 64 << 20,
            },
        ),
        fixed(
            "malformed_json",
            "application/json",
            br#"{"actor": {"type": "user", "id": "#.to_vec(),
        ),
        fixed("invalid_utf8", "application/x-ndjson", invalid_utf8),
        fixed(
            "wrong_types",
            "application/x-ndjson",
            br#"{"actor":{"type":"user","id":5},"action":7,"resource":"r","outcome":"maybe"}"#
                .to_vec(),
        ),
        fixed("deep_nesting", "application/json", vec![b'['; 200_000]),
        fixed(
            "too_many_events",
            "application/x-ndjson",
            too_many.into_bytes(),
        ),
        fixed(
            "event_too_large",
            "application/json",
            big_event.into_bytes(),
        ),
        fixed("unsupported_media_type", "text/csv", b"a,b,c\n".to_vec()),
        fixed("empty_body", "application/json", Vec::new()),
        (
            "huge_header",
            format!(
                "GET /v1/events HTTP/1.1\r\nHost: {host}\r\n{auth}X-Big: {}\r\n\r\n",
                "b".repeat(1 << 20)
            ),
            Body::None,
        ),
        (
            "not_http",
            "\u{16}\u{3}\u{1}\u{2}\u{0} hello?\r\n\r\n".to_owned(),
            Body::None,
        ),
    ]
}

pub(super) async fn bad_bodies(
    shared: Arc<Shared>,
    k: usize,
    deadline: tokio::time::Instant,
    tallies: Arc<BTreeMap<&'static str, Tally>>,
) {
    let mut i = k;
    while tokio::time::Instant::now() < deadline {
        let mut requests = bad_requests(&shared);
        let n = requests.len();
        let (name, head, body) = requests.swap_remove(i % n);
        i += 1;
        let answer = exchange(&shared, head, body).await;
        if let Some(t) = tallies.get(name) {
            t.add(answer.label());
        }
    }
}

/// Requests with unknown, missing and malformed tokens, as fast as the
/// server answers them.
pub(super) async fn auth_flood(
    shared: Arc<Shared>,
    k: u64,
    connections: u64,
    sources: u64,
    deadline: tokio::time::Instant,
    tally: Arc<Tally>,
) {
    let host = shared.host.clone();
    let mut round = 0u64;
    let mut n = 0u64;
    while tokio::time::Instant::now() < deadline {
        let from = (sources > 1).then(|| source_ip((k + round * connections) % sources));
        round += 1;
        let mut s = match connect(&shared, from).await {
            Ok(s) => s,
            Err(e) => {
                tally.add(format!("connect failed: {e}"));
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _open = OpenGuard::new(&shared.open);
        let mut on_this = 0;
        while tokio::time::Instant::now() < deadline {
            n += 1;
            let request = match (k + n) % 8 {
                0 => format!("GET /v1/events?limit=10 HTTP/1.1\r\nHost: {host}\r\n\r\n"),
                1 => format!(
                    "GET /v1/events?limit=10 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic \
                     YWRtaW46YWRtaW4=\r\n\r\n"
                ),
                2 => format!(
                    "POST /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer \
                     slg_flood{k:08}{n:020}\r\nContent-Type: application/json\r\nContent-Length: \
                     2\r\n\r\n{{}}"
                ),
                _ => format!(
                    "GET /v1/events?actor=user:alice HTTP/1.1\r\nHost: {host}\r\nAuthorization: \
                     Bearer slg_flood{k:08}{n:020}\r\n\r\n"
                ),
            };
            if s.write_all(request.as_bytes()).await.is_err() {
                tally.add("write failed");
                break;
            }
            let answer = read_answer(&mut s, ANSWER_TIMEOUT).await;
            tally.add(answer.label());
            on_this += 1;
            // Many sources: move on to the next address now and then.
            if !answer.reusable() || (sources > 1 && on_this >= 10) {
                break;
            }
        }
    }
}
