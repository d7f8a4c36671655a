//! `load --http URL --abuse`: load and abuse against a running
//! server on loopback, bounded in count and time, while honest clients
//! work and are measured.
//!
//! The run has four phases:
//!
//! 1. **baseline** (`--baseline-secs`): the honest clients alone. They run
//!    through every phase: `--honest-clients` connections ingest NDJSON
//!    batches of `--honest-batch` events at `--honest-rate` events/s in
//!    all (durable acknowledgements, a unique `request_id` per event and an
//!    `Idempotency-Key` per batch, so a retry never writes twice); one
//!    client queries `GET /v1/events?actor=…&limit=100` in a loop; and a
//!    probe opens a fresh connection twice a second for `GET /healthz`.
//! 2. **flood** (`--abuse-secs`), everything at once: `--hold` idle
//!    connections (reopened whenever the server closes one); `--slow`
//!    senders trickling a request head a byte a second and `--slow`
//!    trickling an ingest body; `--bad-bodies` connections cycling through
//!    oversized and malformed bodies; `--auth-flood` connections sending
//!    unknown, missing and malformed tokens (from `--auth-sources`
//!    loopback addresses).
//! 3. **over the limit** (`--over-limit-secs`): `--over-limit` idle
//!    connections at once, above the server's `max_connections`; the
//!    rest of the abuse has stopped.
//! 4. **after** (`--after-secs`): the honest clients alone again.
//!
//! Then it checks that every acknowledged honest event is in the log (an
//! NDJSON export of the honest actor), that `POST /v1/verify` finds the
//! log intact, and that the flood of failed authentications did not write
//! one event each (the server records the first few per address and
//! window and summarizes the rest). It exits 1 if a check fails.
//!
//! Memory is the server's own `VmRSS` / `VmHWM` from
//! `/proc/<--server-pid>/status`, sampled every 250 ms; open connections
//! are counted by the driver and read from the server's `/v1/stats`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt as _;
use sealog::workload::percentile;
use sealog_testkit::client::{Client, Method};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{sleep, sleep_until, timeout};

use crate::{Failure, LoadArgs, Out, thousands};

/// The flags of `--abuse`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Load and abuse (with --http URL --abuse)")]
pub struct AbuseArgs {
    /// With --http: instead of the write benchmark, abuse the server (held
    /// connections, slow senders, bad bodies, failed authentications)
    /// while honest clients ingest and query, then check that nothing
    /// acknowledged was lost. The token needs the scopes ingest, query
    /// and admin (admin for the final verification).
    ///
    /// Example: --http http://127.0.0.1:7807 --abuse --server-pid 4242
    #[arg(long, requires = "http")]
    pub abuse: bool,

    /// Seconds of honest load alone before the flood.
    ///
    /// Example: --baseline-secs 5
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub baseline_secs: u64,

    /// Seconds the flood lasts.
    ///
    /// Example: --abuse-secs 60
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub abuse_secs: u64,

    /// Seconds with --over-limit connections open (0: no such phase).
    ///
    /// Example: --over-limit-secs 0
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub over_limit_secs: u64,

    /// Seconds of honest load alone after the abuse.
    ///
    /// Example: --after-secs 10
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub after_secs: u64,

    /// Idle connections held during the flood (below the server's
    /// max_connections, default 10,000).
    ///
    /// Example: --hold 2000
    #[arg(long, default_value_t = 5_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub hold: u64,

    /// Idle connections held at once in the over-the-limit phase (above
    /// the server's max_connections; 0: no such phase).
    ///
    /// Example: --over-limit 12000
    #[arg(long, default_value_t = 11_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub over_limit: u64,

    /// Slow senders of each kind: request heads trickled a byte a second,
    /// and ingest bodies trickled a byte a second.
    ///
    /// Example: --slow 100
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub slow: u64,

    /// The Content-Length the slow ingest senders declare (and never
    /// send).
    ///
    /// Example: --slow-body-bytes 8388608
    #[arg(long, default_value_t = 1_000, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(2..))]
    pub slow_body_bytes: u64,

    /// Connections cycling through oversized and malformed bodies.
    ///
    /// Example: --bad-bodies 8
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub bad_bodies: u64,

    /// Connections sending requests with unknown, missing or malformed
    /// tokens as fast as the server answers.
    ///
    /// Example: --auth-flood 500
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub auth_flood: u64,

    /// Distinct loopback source addresses of the failed authentications
    /// (127.1.0.0 and up; 1: all from 127.0.0.1).
    ///
    /// Example: --auth-sources 5000
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub auth_sources: u64,

    /// Honest ingest connections.
    ///
    /// Example: --honest-clients 8
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub honest_clients: u64,

    /// Events per honest ingest request.
    ///
    /// Example: --honest-batch 1000
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub honest_batch: u64,

    /// Honest events per second, all honest ingest connections together.
    ///
    /// Example: --honest-rate 20000
    #[arg(long, default_value_t = 5_000, value_name = "EVENTS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub honest_rate: u64,

    /// The server's process id, to sample its memory (VmRSS, VmHWM) from
    /// /proc/PID/status.
    ///
    /// Example: --server-pid $(pgrep -n sealog)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Write the request_id of every acknowledged honest event to FILE, one
    /// per line (to check the store independently afterwards).
    ///
    /// Example: --record-acked acked.txt
    #[arg(long, value_name = "FILE")]
    pub record_acked: Option<PathBuf>,

    /// Seconds to wait at the end for the server's summaries of refused
    /// requests (written when an address's 10-second window ends).
    ///
    /// Example: --summary-wait-secs 0
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub summary_wait_secs: u64,
}

const PHASES: [&str; 4] = ["baseline", "flood", "over_limit", "after"];
const DONE: u8 = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const HONEST_TIMEOUT: Duration = Duration::from_secs(30);

fn failed(message: String) -> Failure {
    Failure::failed(
        message,
        "check that `sealog serve` runs at that URL, and --token if it has tokens",
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Counts of outcomes, by label ("401 invalid_token", "closed", ...).
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, label: impl Into<String>) {
        *lock(&self.0).entry(label.into()).or_insert(0) += 1;
    }

    fn total(&self) -> u64 {
        lock(&self.0).values().sum()
    }

    fn json(&self) -> Value {
        json!(*lock(&self.0))
    }
}

/// What the run shares between its tasks.
struct Shared {
    addr: SocketAddr,
    host: String,
    token: Option<String>,
    phase: AtomicU8,
    /// Abusive connections open now (held, slow, flooding), client side.
    open: AtomicI64,
    /// Connection attempts in progress (a burst of thousands of SYNs
    /// would only overflow the server's accept queue).
    connecting: Semaphore,
}

impl Shared {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    fn auth_header(&self) -> String {
        match &self.token {
            Some(t) => format!("Authorization: Bearer {t}\r\n"),
            None => String::new(),
        }
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGuard<'a>(&'a AtomicI64);

impl<'a> OpenGuard<'a> {
    fn new(open: &'a AtomicI64) -> OpenGuard<'a> {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Latency samples per phase, in microseconds.
#[derive(Default)]
struct PhaseSamples {
    ok: [Vec<u64>; 4],
    errors: [u64; 4],
}

impl PhaseSamples {
    fn push(&mut self, phase: u8, us: u64) {
        if let Some(v) = self.ok.get_mut(usize::from(phase)) {
            v.push(us);
        }
    }

    fn error(&mut self, phase: u8) {
        if let Some(e) = self.errors.get_mut(usize::from(phase)) {
            *e += 1;
        }
    }

    fn merge(&mut self, other: PhaseSamples) {
        for (a, b) in self.ok.iter_mut().zip(other.ok) {
            a.extend(b);
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
    }

    fn json(&mut self) -> Value {
        let mut out = serde_json::Map::new();
        for ((name, v), errors) in PHASES.iter().zip(self.ok.iter_mut()).zip(self.errors) {
            v.sort_unstable();
            let ms = |us: u64| us as f64 / 1000.0;
            out.insert(
                (*name).to_owned(),
                json!({
                    "n": v.len(),
                    "errors": errors,
                    "p50_ms": ms(percentile(v, 0.50)),
                    "p99_ms": ms(percentile(v, 0.99)),
                    "max_ms": ms(v.last().copied().unwrap_or(0)),
                }),
            );
        }
        Value::Object(out)
    }
}

// ------------------------------------------------------------ raw HTTP

/// How a raw exchange ended.
#[derive(Debug)]
enum Answer {
    Response {
        status: u16,
        code: String,
        close: bool,
    },
    /// The server closed the connection without answering.
    Closed,
    /// The connection was reset.
    Reset,
    /// Nothing within [`ANSWER_TIMEOUT`].
    TimedOut,
    /// The connection could not be opened.
    ConnectFailed(String),
}

impl Answer {
    fn label(&self) -> String {
        match self {
            Answer::Response { status, code, .. } if code.is_empty() => status.to_string(),
            Answer::Response { status, code, .. } => format!("{status} {code}"),
            Answer::Closed => "closed without an answer".into(),
            Answer::Reset => "reset".into(),
            Answer::TimedOut => format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            Answer::ConnectFailed(e) => format!("connect failed: {e}"),
        }
    }

    /// Whether the connection can carry another request.
    fn reusable(&self) -> bool {
        matches!(self, Answer::Response { close: false, .. })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (head and a Content-Length body).
async fn read_answer(r: &mut (impl AsyncRead + Unpin), within: Duration) -> Answer {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    let mut head: Option<(usize, u16, usize, bool)> = None;
    loop {
        if head.is_none()
            && let Some(end) = find(&buf, b"\r\n\r\n")
        {
            let text = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
            let mut lines = text.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut length = 0usize;
            let mut close = false;
            for line in lines {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
            head = Some((end + 4, status, length.min(1 << 20), close));
        }
        if let Some((start, status, length, close)) = head
            && buf.len() >= start + length
        {
            let body = buf.get(start..start + length).unwrap_or_default();
            let code = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Answer::Response {
                status,
                code,
                close,
            };
        }
        if buf.len() > 1 << 20 {
            return Answer::Closed;
        }
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => return Answer::TimedOut,
            Ok(Ok(0)) => return Answer::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Answer::Reset,
            Ok(Err(_)) => return Answer::Closed,
        }
    }
}

/// The `j`-th flood source address: 127.1.0.0 and up.
fn source_ip(j: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)).wrapping_add(j as u32))
}

async fn connect(shared: &Shared, from: Option<Ipv4Addr>) -> Result<TcpStream, String> {
    let _permit = shared
        .connecting
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    let socket = match shared.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    if let (Some(ip), SocketAddr::V4(_)) = (from, shared.addr) {
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    match timeout(CONNECT_TIMEOUT, socket.connect(shared.addr)).await {
        Err(_) => Err(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e.kind().to_string()),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// A request body for [`exchange`].
enum Body {
    None,
    Bytes(Bytes),
    /// Chunked transfer encoding, `chunk` repeated until `total` bytes.
    Chunked {
        chunk: Bytes,
        total: usize,
    },
}

/// Opens a connection, sends `head` and `body` while reading the answer
/// (a server may answer before the body is sent), and closes.
async fn exchange(shared: &Shared, head: String, body: Body) -> Answer {
    let mut s = match connect(shared, None).await {
        Ok(s) => s,
        Err(e) => return Answer::ConnectFailed(e),
    };
    let _open = OpenGuard::new(&shared.open);
    let (mut rd, mut wr) = s.split();
    // A small body goes out with its head, as clients send it, so that
    // the server reads both at once.
    let (head, body) = match body {
        Body::Bytes(b) if b.len() <= 64 << 10 => {
            let mut whole = head.into_bytes();
            whole.extend_from_slice(&b);
            (whole, Body::None)
        }
        other => (head.into_bytes(), other),
    };
    let send = async {
        if wr.write_all(&head).await.is_ok() {
            match body {
                Body::None => {}
                Body::Bytes(b) => {
                    let _ = wr.write_all(&b).await;
                }
                Body::Chunked { chunk, total } => {
                    let mut sent = 0;
                    let size = format!("{:x}\r\n", chunk.len());
                    while sent < total {
                        if wr.write_all(size.as_bytes()).await.is_err()
                            || wr.write_all(&chunk).await.is_err()
                            || wr.write_all(b"\r\n").await.is_err()
                        {
                            break;
                        }
                        sent += chunk.len();
                    }
                    let _ = wr.write_all(b"0\r\n\r\n").await;
                }
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        a = read_answer(&mut rd, ANSWER_TIMEOUT) => a,
        () = send => Answer::Closed,
    }
}

// ------------------------------------------------------------ abuse

/// Holds an idle connection until `deadline`, opening a new one whenever
/// the server closes it.
async fn hold(
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
async fn slow_sender(
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
fn bad_requests(shared: &Shared) -> Vec<(&'static str, String, Body)> {
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

async fn bad_bodies(
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
async fn auth_flood(
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

// ------------------------------------------------------------ honest clients

fn honest_client(url: &str, token: Option<&str>) -> Result<Client, Failure> {
    let c = Client::new(url)
        .map_err(|e| Failure::usage(e.to_string(), "give --http http://HOST:PORT"))?;
    Ok(match token {
        Some(t) => c.with_token(t.to_owned()),
        None => c,
    })
}

fn honest_event(actor: &str, id: &str) -> String {
    format!(
        r#"{{"actor":{{"type":"user","id":"{actor}"}},"action":"document.update","resource":{{"type":"document","id":"{id}"}},"outcome":"success","tenant":"honest","source":{{"ip":"192.0.2.10","user_agent":"sealog-bench-abuse/1"}},"request_id":"{id}","reason":"steady honest ingest during an abuse run","metadata":{{"plan":"pro","size":4471,"pad":"abcdefghijklmnopqrstuvwxyz0123456789"}}}}"#
    )
}

#[derive(Default)]
struct IngestReport {
    acked: Vec<String>,
    events_by_phase: [u64; 4],
    latency: PhaseSamples,
    requests: u64,
    retries: Tally,
    errors: Tally,
    gave_up: u64,
}

#[allow(clippy::too_many_arguments, reason = "one task's whole configuration")]
async fn honest_ingest(
    shared: Arc<Shared>,
    mut client: Client,
    actor: String,
    k: u64,
    interval: Duration,
    batch: u64,
    stop: Arc<AtomicBool>,
) -> IngestReport {
    let mut report = IngestReport::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            return report;
        }
        let ids: Vec<String> = (0..batch).map(|i| format!("{actor}-{k}-{n}-{i}")).collect();
        let mut body = String::with_capacity(ids.len() * 420);
        for id in &ids {
            body.push_str(&honest_event(&actor, id));
            body.push('\n');
        }
        let body = Bytes::from(body);
        let key = format!("{actor}-{k}-{n}");
        n += 1;
        let phase = shared.phase();
        let started = Instant::now();
        let give_up = started + Duration::from_secs(120);
        loop {
            report.requests += 1;
            let headers = [
                ("content-type", "application/x-ndjson"),
                ("idempotency-key", key.as_str()),
            ];
            let sent = timeout(
                HONEST_TIMEOUT,
                client.request(Method::POST, "/v1/events", &headers, body.clone()),
            )
            .await;
            match sent {
                Ok(Ok(r)) if r.status == 200 => {
                    if r.json()["count"].as_u64() == Some(batch) {
                        report.latency.push(phase, micros(started.elapsed()));
                        if let Some(e) = report.events_by_phase.get_mut(usize::from(shared.phase()))
                        {
                            *e += batch;
                        }
                        report.acked.extend(ids);
                    } else {
                        report
                            .errors
                            .add(format!("200 with a wrong count: {}", r.text()));
                    }
                    break;
                }
                // Nothing written (saturated, or a timeout the key makes
                // safe to retry): retry after the server's delay.
                Ok(Ok(r)) if matches!(r.status, 503 | 408) => {
                    report
                        .retries
                        .add(format!("{} {}", r.status, r.error_code()));
                    let wait = r
                        .header("retry-after")
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(1);
                    sleep(Duration::from_millis(100 + 400 * wait)).await;
                }
                Ok(Ok(r)) => {
                    report
                        .errors
                        .add(format!("{} {}", r.status, r.error_code()));
                    report.latency.error(phase);
                    break;
                }
                Ok(Err(e)) => {
                    report.retries.add(format!("connection: {e}"));
                    client.disconnect();
                    sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    report
                        .retries
                        .add(format!("no answer within {} s", HONEST_TIMEOUT.as_secs()));
                    client.disconnect();
                }
            }
            if Instant::now() > give_up {
                report.gave_up += 1;
                report.latency.error(phase);
                break;
            }
        }
    }
}

async fn honest_query(
    shared: Arc<Shared>,
    mut client: Client,
    path: String,
    stop: Arc<AtomicBool>,
) -> (PhaseSamples, Tally) {
    let mut samples = PhaseSamples::default();
    let failures = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let phase = shared.phase();
        let t = Instant::now();
        match timeout(HONEST_TIMEOUT, client.get(&path)).await {
            Ok(Ok(r)) if r.status == 200 => samples.push(phase, micros(t.elapsed())),
            Ok(Ok(r)) => {
                samples.error(phase);
                failures.add(format!("{} {}", r.status, r.error_code()));
            }
            Ok(Err(e)) => {
                samples.error(phase);
                failures.add(format!("connection: {e}"));
                client.disconnect();
            }
            Err(_) => {
                samples.error(phase);
                failures.add(format!("no answer within {} s", HONEST_TIMEOUT.as_secs()));
                client.disconnect();
            }
        }
        sleep(Duration::from_millis(50)).await;
    }
    (samples, failures)
}

/// A fresh connection and `GET /healthz`, twice a second.
async fn fresh_probe(shared: Arc<Shared>, url: String, stop: Arc<AtomicBool>) -> PhaseSamples {
    let samples = Arc::new(Mutex::new(PhaseSamples::default()));
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (shared, url, samples) = (shared.clone(), url.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let phase = shared.phase();
            let t = Instant::now();
            let ok = match Client::new(&url) {
                Ok(mut c) => matches!(
                    timeout(HONEST_TIMEOUT, c.get("/healthz")).await,
                    Ok(Ok(r)) if r.status == 200
                ),
                Err(_) => false,
            };
            let mut s = lock(&samples);
            if ok {
                s.push(phase, micros(t.elapsed()));
            } else {
                s.error(phase);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    std::mem::take(&mut *lock(&samples))
}

// ------------------------------------------------------------ monitoring

/// `VmRSS`, `VmHWM` and `RssAnon` of a process, in KiB. `VmRSS` counts
/// the pages of memory-mapped segments too (file-backed, reclaimable);
/// `RssAnon` is the heap and stacks.
fn memory_kib(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?, field("RssAnon:")?))
}

#[derive(Default)]
struct Monitor {
    rss_first_kib: Option<u64>,
    rss_peak_kib: [u64; 4],
    anon_peak_kib: [u64; 4],
    rss_last_kib: u64,
    anon_last_kib: u64,
    hwm_kib: u64,
    client_open_peak: [i64; 4],
    server_open_peak: [Option<u64>; 4],
}

async fn monitor(
    shared: Arc<Shared>,
    mut stats: Client,
    pid: Option<u32>,
    stop: Arc<AtomicBool>,
) -> Monitor {
    let mut m = Monitor::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        k += 1;
        let phase = usize::from(shared.phase().min(3));
        if let Some((rss, hwm, anon)) = pid.and_then(memory_kib) {
            m.rss_first_kib.get_or_insert(rss);
            m.rss_last_kib = rss;
            m.anon_last_kib = anon;
            m.hwm_kib = hwm;
            if let Some(p) = m.rss_peak_kib.get_mut(phase) {
                *p = (*p).max(rss);
            }
            if let Some(p) = m.anon_peak_kib.get_mut(phase) {
                *p = (*p).max(anon);
            }
        }
        let open = shared.open.load(Ordering::Relaxed);
        if let Some(p) = m.client_open_peak.get_mut(phase) {
            *p = (*p).max(open);
        }
        if k.is_multiple_of(2)
            && let Ok(Ok(r)) = timeout(Duration::from_secs(2), stats.get("/v1/stats")).await
            && let Some(c) = r.json()["server"]["connections"].as_u64()
            && let Some(p) = m.server_open_peak.get_mut(phase)
        {
            *p = Some(p.unwrap_or(0).max(c));
        }
    }
    m
}

// ------------------------------------------------------------ checks

/// Streams `GET path` as NDJSON, calling `line` with each record.
async fn export(
    client: &mut Client,
    path: &str,
    mut line: impl FnMut(Value),
) -> Result<(), String> {
    let response = client
        .send(
            Method::GET,
            path,
            &[("accept", "application/x-ndjson")],
            Bytes::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the export: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut start = 0;
        while let Some(i) = pending
            .get(start..)
            .and_then(|p| p.iter().position(|&b| b == b'\n'))
        {
            if let Some(text) = pending.get(start..start + i)
                && let Ok(v) = serde_json::from_slice::<Value>(text)
            {
                if v.get("error").is_some() {
                    return Err(format!("the export failed: {v}"));
                }
                line(v);
            }
            start += i + 1;
        }
        pending.drain(..start);
    }
    Ok(())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn server_stats(client: &mut Client) -> Option<Value> {
    let r = client.get("/v1/stats").await.ok()?;
    (r.status == 200).then(|| r.json())
}

/// The failed authentications the server wrote since `from`: one by one,
/// and summarized (events, and the refusals they count).
async fn refusal_events(client: &mut Client, from: &str) -> Result<(u64, u64, u64), String> {
    let path = format!(
        "/v1/events?action={}&from={}&order=oldest",
        enc("auth.*"),
        enc(from)
    );
    let (mut failed, mut summaries, mut summarized) = (0, 0, 0);
    export(client, &path, |v| match v["action"].as_str() {
        Some("auth.failed") => failed += 1,
        Some("auth.refusals_summarized") => {
            summaries += 1;
            summarized += v["metadata"]["count"].as_u64().unwrap_or(0);
        }
        _ => {}
    })
    .await?;
    Ok((failed, summaries, summarized))
}

// ------------------------------------------------------------ the run

fn socket_addr(url: &str) -> Result<(SocketAddr, String), Failure> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Failure::usage(
            format!("`{url}`: --abuse speaks plain HTTP"),
            "give --http http://HOST:PORT (run the abused server without TLS, on loopback)",
        )
    })?;
    let authority = rest.split('/').next().unwrap_or_default().to_owned();
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Failure::usage(
                format!("cannot resolve `{authority}`"),
                "give --http http://127.0.0.1:PORT",
            )
        })?;
    Ok((addr, authority))
}

pub fn run(args: &LoadArgs, url: &str) -> Result<(), Failure> {
    let a = &args.abuse;
    let (addr, host) = socket_addr(url)?;
    let fd_limit = sealog_server::raise_open_file_limit();
    let needed = a.hold.max(a.over_limit) + a.auth_flood + 2 * a.slow + a.bad_bodies + 200;
    if let (_, Some(limit)) = fd_limit
        && limit < needed
    {
        return Err(Failure::usage(
            format!(
                "this run needs about {needed} file descriptors and the limit is {limit} (hard \
                 limit reached)"
            ),
            "raise it (ulimit -Hn) or lower --hold and --over-limit",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let report = runtime.block_on(run_async(args, url, addr, host, fd_limit))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let ok = report["checks"]["passed"].as_bool().unwrap_or(false);
    let mut out = Out::stdout();
    if args.json() {
        out.json_line(&report)?;
    } else {
        print_report(&mut out, &report)?;
    }
    out.flush()?;
    if ok {
        Ok(())
    } else {
        Err(Failure::failed(
            format!("a check failed: {}", report["checks"]["failures"]),
            "the report above says which",
        ))
    }
}

#[allow(clippy::too_many_lines, reason = "the run, phase after phase")]
async fn run_async(
    args: &LoadArgs,
    url: &str,
    addr: SocketAddr,
    host: String,
    fd_limit: (Option<u64>, Option<u64>),
) -> Result<Value, Failure> {
    let a = &args.abuse;
    let token = args.token.clone();
    let shared = Arc::new(Shared {
        addr,
        host,
        token: token.clone(),
        phase: AtomicU8::new(0),
        open: AtomicI64::new(0),
        connecting: Semaphore::new(256),
    });
    let mut probe = honest_client(url, token.as_deref())?;
    let r = probe
        .get("/healthz")
        .await
        .map_err(|e| failed(format!("{url}: {e}")))?;
    if r.status != 200 {
        return Err(failed(format!("{url}/healthz answered {}", r.status)));
    }
    let stats_before = server_stats(&mut probe).await;
    let started_at = sealog::Timestamp::now().to_rfc3339();
    let run_id = format!("{:08x}", sealog::Timestamp::now().as_nanos() as u32);
    let actor = format!("abuse-{run_id}");
    let stop = Arc::new(AtomicBool::new(false));

    // The honest clients, through every phase.
    let interval =
        Duration::from_secs_f64((a.honest_batch * a.honest_clients) as f64 / a.honest_rate as f64);
    let mut ingest = Vec::new();
    for k in 0..a.honest_clients {
        ingest.push(tokio::spawn(honest_ingest(
            shared.clone(),
            honest_client(url, token.as_deref())?,
            actor.clone(),
            k,
            interval,
            a.honest_batch,
            stop.clone(),
        )));
    }
    let query_path = format!(
        "/v1/events?actor={}&limit=100",
        enc(&format!("user:{actor}"))
    );
    let query = tokio::spawn(honest_query(
        shared.clone(),
        honest_client(url, token.as_deref())?,
        query_path.clone(),
        stop.clone(),
    ));
    let fresh = tokio::spawn(fresh_probe(shared.clone(), url.to_owned(), stop.clone()));
    let watch = tokio::spawn(monitor(
        shared.clone(),
        honest_client(url, token.as_deref())?,
        a.server_pid,
        stop.clone(),
    ));
    let t0 = tokio::time::Instant::now();
    let flood_start = t0 + Duration::from_secs(a.baseline_secs);
    let flood_end = flood_start + Duration::from_secs(a.abuse_secs);
    let over = a.over_limit > 0 && a.over_limit_secs > 0;
    let over_end = flood_end + Duration::from_secs(if over { a.over_limit_secs } else { 0 });
    let after_end = over_end + Duration::from_secs(a.after_secs);
    sleep_until(flood_start).await;

    // The flood.
    shared.phase.store(1, Ordering::Relaxed);
    let idle = Arc::new(Tally::default());
    let held_for = Arc::new(Mutex::new(Vec::new()));
    let slow_head = Arc::new(Tally::default());
    let slow_head_cut = Arc::new(Mutex::new(Vec::new()));
    let slow_body = Arc::new(Tally::default());
    let slow_body_cut = Arc::new(Mutex::new(Vec::new()));
    let flood = Arc::new(Tally::default());
    let case_names: Vec<&'static str> = bad_requests(&shared).iter().map(|c| c.0).collect();
    let bad: Arc<BTreeMap<&'static str, Tally>> =
        Arc::new(case_names.iter().map(|n| (*n, Tally::default())).collect());
    let mut abusers = Vec::new();
    for _ in 0..a.hold {
        abusers.push(tokio::spawn(hold(
            shared.clone(),
            over_end,
            idle.clone(),
            held_for.clone(),
        )));
    }
    for _ in 0..a.slow {
        abusers.push(tokio::spawn(slow_sender(
            shared.clone(),
            None,
            flood_end,
            slow_head.clone(),
            slow_head_cut.clone(),
        )));
        abusers.push(tokio::spawn(slow_sender(
            shared.clone(),
            Some(a.slow_body_bytes),
            flood_end,
            slow_body.clone(),
            slow_body_cut.clone(),
        )));
    }
    for k in 0..a.bad_bodies {
        abusers.push(tokio::spawn(bad_bodies(
            shared.clone(),
            usize::try_from(k).unwrap_or(0),
            flood_end,
            bad.clone(),
        )));
    }
    for k in 0..a.auth_flood {
        abusers.push(tokio::spawn(auth_flood(
            shared.clone(),
            k,
            a.auth_flood,
            a.auth_sources,
            flood_end,
            flood.clone(),
        )));
    }
    sleep_until(flood_end).await;

    // Over the limit: more idle connections, nothing else.
    let over_idle = Arc::new(Tally::default());
    if over {
        shared.phase.store(2, Ordering::Relaxed);
        for _ in a.hold..a.over_limit {
            abusers.push(tokio::spawn(hold(
                shared.clone(),
                over_end,
                over_idle.clone(),
                held_for.clone(),
            )));
        }
        sleep_until(over_end).await;
    }
    shared.phase.store(3, Ordering::Relaxed);
    for t in abusers {
        let _ = t.await;
    }
    sleep_until(after_end).await;
    shared.phase.store(DONE, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);

    let mut acked: Vec<String> = Vec::new();
    let mut events_by_phase = [0u64; 4];
    let mut ingest_latency = PhaseSamples::default();
    let (mut requests, mut gave_up) = (0u64, 0u64);
    let ingest_retries = Tally::default();
    let ingest_errors = Tally::default();
    for t in ingest {
        if let Ok(r) = t.await {
            acked.extend(r.acked);
            for (a, b) in events_by_phase.iter_mut().zip(r.events_by_phase) {
                *a += b;
            }
            ingest_latency.merge(r.latency);
            requests += r.requests;
            gave_up += r.gave_up;
            for (k, v) in lock(&r.retries.0).iter() {
                *lock(&ingest_retries.0).entry(k.clone()).or_insert(0) += v;
            }
            for (k, v) in lock(&r.errors.0).iter() {
                *lock(&ingest_errors.0).entry(k.clone()).or_insert(0) += v;
            }
        }
    }
    let (mut query_samples, query_failures) = query.await.unwrap_or_default();
    let mut fresh_samples = fresh.await.unwrap_or_default();
    let watched = watch.await.unwrap_or_default();

    // The checks.
    let mut failures: Vec<String> = Vec::new();
    if let Some(path) = &a.record_acked {
        let mut text = String::with_capacity(acked.len() * 32);
        for id in &acked {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                Failure::failed(
                    format!(
                        "cannot write the acknowledged request ids to {}: {e}",
                        path.display()
                    ),
                    "give --record-acked a writable path",
                )
            })?;
    }
    let mut present: HashMap<String, u32> = HashMap::with_capacity(acked.len());
    let honest_path = format!(
        "/v1/events?actor={}&order=oldest",
        enc(&format!("user:{actor}"))
    );
    let exported = export(&mut probe, &honest_path, |v| {
        if let Some(id) = v["request_id"].as_str() {
            *present.entry(id.to_owned()).or_insert(0) += 1;
        }
    })
    .await;
    let missing = acked.iter().filter(|id| !present.contains_key(*id)).count();
    let duplicated = present.values().filter(|&&n| n > 1).count();
    match &exported {
        Err(e) => failures.push(format!("exporting the honest events failed: {e}")),
        Ok(()) if missing > 0 => {
            failures.push(format!("{missing} acknowledged honest events are missing"));
        }
        Ok(()) => {}
    }
    let verify = match probe
        .request(Method::POST, "/v1/verify", &[], Bytes::new())
        .await
    {
        Ok(r) if r.status == 200 => {
            let v = r.json();
            if v["intact"] != json!(true) {
                failures.push(format!("verify found a problem: {v}"));
            }
            v
        }
        Ok(r) => {
            json!({"skipped": format!("POST /v1/verify answered {} {}", r.status, r.error_code())})
        }
        Err(e) => {
            failures.push(format!("POST /v1/verify failed: {e}"));
            Value::Null
        }
    };
    // The server's 401s during the run, and what it wrote about them.
    let failures_401 = |s: &Option<Value>| {
        s.as_ref()
            .and_then(|s| s["server"]["auth_failures"].as_u64())
    };
    let wait_until = Instant::now() + Duration::from_secs(a.summary_wait_secs);
    let (refused, written) = loop {
        let stats_after = server_stats(&mut probe).await;
        let refused = failures_401(&stats_after)
            .zip(failures_401(&stats_before))
            .map(|(after, before)| after.saturating_sub(before));
        let written = refusal_events(&mut probe, &started_at).await;
        let accounted = match (&written, refused) {
            (Ok((failed, _, summarized)), Some(r)) => failed + summarized >= r,
            _ => true,
        };
        if accounted || Instant::now() >= wait_until {
            break (refused, written);
        }
        sleep(Duration::from_secs(1)).await;
    };
    let stats_after = server_stats(&mut probe).await;
    let auth_report = match &written {
        Ok((failed, summaries, summarized)) => {
            let attempts = flood.total();
            if attempts > 100 && *failed * 2 > attempts {
                failures.push(format!(
                    "{failed} auth.failed events for {attempts} failed authentications: the \
                     flood was not summarized"
                ));
            }
            json!({
                "attempts_sent": attempts,
                "refused_401_by_server": refused,
                "auth_failed_events": failed,
                "summary_events": summaries,
                "summarized_refusals": summarized,
                "pending_summary": refused.map(|r| r.saturating_sub(failed + summarized)),
            })
        }
        Err(e) => {
            failures.push(format!("reading the refusal events failed: {e}"));
            Value::Null
        }
    };
    let phase_secs = [
        a.baseline_secs,
        a.abuse_secs,
        if over { a.over_limit_secs } else { 0 },
        a.after_secs,
    ];
    let rates: serde_json::Map<String, Value> = PHASES
        .iter()
        .zip(phase_secs)
        .zip(events_by_phase)
        .map(|((name, secs), n)| {
            (
                (*name).to_owned(),
                json!(if secs > 0 {
                    n as f64 / secs as f64
                } else {
                    0.0
                }),
            )
        })
        .collect();
    let per_phase = |v: &[i64; 4]| -> Value {
        PHASES
            .iter()
            .zip(v)
            .map(|(n, x)| ((*n).to_owned(), json!(x)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let per_phase_opt = |v: &[Option<u64>; 4]| -> Value {
        PHASES
            .iter()
            .zip(v)
            .map(|(n, x)| ((*n).to_owned(), json!(x)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let median_secs = |v: &Mutex<Vec<u64>>| -> Value {
        let mut v = lock(v).clone();
        v.sort_unstable();
        if v.is_empty() {
            Value::Null
        } else {
            json!(percentile(&v, 0.5) as f64 / 1e6)
        }
    };
    let bad_json: serde_json::Map<String, Value> = bad
        .iter()
        .map(|(k, t)| ((*k).to_owned(), t.json()))
        .collect();
    let report = json!({
        "url": url,
        "run": run_id,
        "honest_actor": format!("user:{actor}"),
        "settings": {
            "baseline_secs": a.baseline_secs, "abuse_secs": a.abuse_secs,
            "over_limit_secs": if over { a.over_limit_secs } else { 0 }, "after_secs": a.after_secs,
            "hold": a.hold, "over_limit": if over { a.over_limit } else { 0 }, "slow": a.slow,
            "slow_body_bytes": a.slow_body_bytes, "bad_bodies": a.bad_bodies,
            "auth_flood": a.auth_flood, "auth_sources": a.auth_sources,
            "honest_clients": a.honest_clients, "honest_batch": a.honest_batch,
            "honest_rate": a.honest_rate, "fd_limit_before": fd_limit.0, "fd_limit": fd_limit.1,
        },
        "connections": {
            "client_open_peak": per_phase(&watched.client_open_peak),
            "server_open_peak": per_phase_opt(&watched.server_open_peak),
            "idle_during_flood": idle.json(),
            "idle_over_limit": over_idle.json(),
            "held_until_closed_median_secs": median_secs(&held_for),
        },
        "memory_kib": {
            "pid": a.server_pid,
            "rss_start": watched.rss_first_kib,
            "rss_peak": per_phase(&watched.rss_peak_kib.map(|x| i64::try_from(x).unwrap_or(i64::MAX))),
            "rss_end": watched.rss_last_kib,
            "anon_peak": per_phase(&watched.anon_peak_kib.map(|x| i64::try_from(x).unwrap_or(i64::MAX))),
            "anon_end": watched.anon_last_kib,
            "hwm": watched.hwm_kib,
        },
        "honest_query": {
            "path": query_path,
            "latency": query_samples.json(),
            "failures": query_failures.json(),
        },
        "fresh_connection_healthz": fresh_samples.json(),
        "honest_ingest": {
            "acked_events": acked.len(),
            "events_per_sec": rates,
            "requests": requests,
            "latency": ingest_latency.json(),
            "retried": ingest_retries.json(),
            "errors": ingest_errors.json(),
            "gave_up": gave_up,
        },
        "abuse": {
            "slow_head": slow_head.json(),
            "slow_head_cut_median_secs": median_secs(&slow_head_cut),
            "slow_body": slow_body.json(),
            "slow_body_cut_median_secs": median_secs(&slow_body_cut),
            "bad_bodies": bad_json,
            "auth_flood": flood.json(),
            "auth_flood_per_sec": flood.total() as f64 / a.abuse_secs as f64,
        },
        "server_stats_after": stats_after.map(|s| s["server"].clone()),
        "checks": {
            "acked_missing": missing,
            "duplicated_request_ids": duplicated,
            "verify": verify,
            "refusals": auth_report,
            "passed": failures.is_empty(),
            "failures": failures,
        },
    });
    Ok(report)
}

fn print_report(out: &mut Out, r: &Value) -> Result<(), Failure> {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let n = |v: &Value| thousands(v.as_u64().unwrap_or(0));
    let ms = |v: &Value| -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} ok, {} errors)",
            f(&v["p50_ms"]),
            f(&v["p99_ms"]),
            f(&v["max_ms"]),
            n(&v["n"]),
            v["errors"]
        )
    };
    let mib = |v: &Value| format!("{:.0} MiB", f(v) / 1024.0);
    let secs = |v: &Value| {
        if v.is_null() {
            "-".to_owned()
        } else {
            format!("{:.1} s", f(v))
        }
    };
    let s = &r["settings"];
    let over = s["over_limit"].as_u64().unwrap_or(0) > 0;
    let phases: Vec<&str> = PHASES
        .iter()
        .copied()
        .filter(|p| *p != "over_limit" || over)
        .collect();
    out.line(&format!(
        "load --http --abuse: {} (run {}): {} s baseline, {} s flood, {} s over the limit, {} s after",
        r["url"].as_str().unwrap_or_default(),
        r["run"].as_str().unwrap_or_default(),
        s["baseline_secs"],
        s["abuse_secs"],
        s["over_limit_secs"],
        s["after_secs"]
    ))?;
    let c = &r["connections"];
    out.line(&format!(
        "  connections    flood: {} abusive open at peak here, {} open on the server (--hold {})",
        n(&c["client_open_peak"]["flood"]),
        n(&c["server_open_peak"]["flood"]),
        n(&s["hold"])
    ))?;
    if over {
        out.line(&format!(
            "                 over the limit: {} open here, {} on the server (--over-limit {})",
            n(&c["client_open_peak"]["over_limit"]),
            n(&c["server_open_peak"]["over_limit"]),
            n(&s["over_limit"])
        ))?;
    }
    out.line(&format!(
        "                 idle ones closed by the server after {} (median); flood: {}; over the limit: {}",
        secs(&c["held_until_closed_median_secs"]),
        c["idle_during_flood"],
        c["idle_over_limit"]
    ))?;
    let m = &r["memory_kib"];
    if m["pid"].is_null() {
        out.line("  server memory  not measured (give --server-pid)")?;
    } else {
        out.line(&format!(
            "  server memory  RSS {} at start; peak {} in the flood, {} over the limit; {} at the end; VmHWM {}",
            mib(&m["rss_start"]),
            mib(&m["rss_peak"]["flood"]),
            mib(&m["rss_peak"]["over_limit"]),
            mib(&m["rss_end"]),
            mib(&m["hwm"])
        ))?;
        out.line(&format!(
            "                 of it anonymous (heap): peak {} in the flood, {} over the limit; {} at the end",
            mib(&m["anon_peak"]["flood"]),
            mib(&m["anon_peak"]["over_limit"]),
            mib(&m["anon_end"])
        ))?;
    }
    out.line(&format!(
        "  honest query   {}",
        r["honest_query"]["path"].as_str().unwrap_or_default()
    ))?;
    for phase in &phases {
        out.line(&format!(
            "    {phase:<12} {}",
            ms(&r["honest_query"]["latency"][*phase])
        ))?;
    }
    out.line("  fresh connection, GET /healthz")?;
    for phase in &phases {
        out.line(&format!(
            "    {phase:<12} {}",
            ms(&r["fresh_connection_healthz"][*phase])
        ))?;
    }
    let i = &r["honest_ingest"];
    out.line(&format!(
        "  honest ingest  {} events acknowledged in {} requests; retried {}; errors {}; gave up {}",
        n(&i["acked_events"]),
        n(&i["requests"]),
        i["retried"],
        i["errors"],
        i["gave_up"]
    ))?;
    for phase in &phases {
        out.line(&format!(
            "    {phase:<12} {:>7.0} events/s, request {}",
            f(&i["events_per_sec"][*phase]),
            ms(&i["latency"][*phase])
        ))?;
    }
    let ab = &r["abuse"];
    out.line(&format!(
        "  slow heads     {} (cut after {}, median)",
        ab["slow_head"],
        secs(&ab["slow_head_cut_median_secs"])
    ))?;
    out.line(&format!(
        "  slow bodies    {} (cut after {}, median)",
        ab["slow_body"],
        secs(&ab["slow_body_cut_median_secs"])
    ))?;
    if let Some(cases) = ab["bad_bodies"].as_object() {
        for (name, t) in cases {
            out.line(&format!("  bad body       {name:<23} {t}"))?;
        }
    }
    out.line(&format!(
        "  auth flood     {:.0} requests/s: {}",
        f(&ab["auth_flood_per_sec"]),
        ab["auth_flood"]
    ))?;
    let ch = &r["checks"];
    let rf = &ch["refusals"];
    out.line(&format!(
        "  refusals       {} answered 401 by the server; written: {} auth.failed events and {} summaries counting {} more ({} not summarized yet)",
        n(&rf["refused_401_by_server"]),
        n(&rf["auth_failed_events"]),
        n(&rf["summary_events"]),
        n(&rf["summarized_refusals"]),
        n(&rf["pending_summary"])
    ))?;
    out.line(&format!(
        "  checks         acknowledged events missing: {}; request ids written twice: {}; verify intact: {}; passed: {}",
        ch["acked_missing"], ch["duplicated_request_ids"], ch["verify"]["intact"], ch["passed"]
    ))?;
    if let Some(list) = ch["failures"].as_array() {
        for failure in list {
            out.line(&format!(
                "  FAILED         {}",
                failure.as_str().unwrap_or_default()
            ))?;
        }
    }
    Ok(())
}
