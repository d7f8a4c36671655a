//! `sealog bench --http URL`: the request path of a running server.
//!
//! Three rows, each at every `--connections` count, against the same
//! server in one run: `GET /healthz` (what the HTTP stack itself does per
//! second, the yardstick), `POST /v1/events` with one event (durable
//! before its answer), and `GET /v1/events?actor=ACTOR&limit=10` (a
//! one-actor page, whose read the server records durably before
//! answering). Each connection is a keep-alive HTTP/1.1 connection driven
//! by one task that sends its next request as soon as the answer to the
//! previous one is read; every answer is read in full and must be 2xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use sealog::workload::percentile;
use tokio::net::TcpStream;

use crate::common::{Out, rate, thousands};
use crate::error::CliError;

/// What `--http` measures with.
pub struct HttpBench {
    /// `http://HOST:PORT`.
    pub url: String,
    /// Connection counts, each row is run at each.
    pub connections: Vec<u64>,
    /// How long each row runs.
    pub duration: Duration,
    /// Bearer token, for a server with tokens.
    pub token: Option<String>,
    /// `TYPE:ID` of the events posted and of the actor queried.
    pub actor: String,
    /// One JSON object per row instead of text.
    pub json: bool,
}

/// Where to connect.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    authority: String,
    token: Option<String>,
}

/// One request of a row.
#[derive(Clone)]
struct Call {
    method: Method,
    path: String,
    body: Option<Bytes>,
}

/// A row's result.
struct RowResult {
    requests: u64,
    failures: u64,
    /// The first failure, for the message.
    first_failure: Option<String>,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

fn parse_url(url: &str) -> Result<(String, u16), CliError> {
    let hint = "give --http http://HOST:PORT (the address `sealog serve` prints)";
    if url.starts_with("https://") {
        return Err(CliError::usage(
            format!("`{url}`: bench --http measures plain HTTP only"),
            "run it on the server's host against a plain-HTTP listener (e.g. a second \
             `sealog serve --listen 127.0.0.1:PORT` of a copy of the store), or use the load \
             generator of the benchmarks, which speaks TLS (docs/benchmarks.md)",
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(CliError::usage(
            format!("`{url}` is not an http:// URL"),
            hint,
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let port_of = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| CliError::usage(format!("`{p}` is not a port number"), hint))
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        // [IPv6]:PORT
        let Some((host, rest)) = v6.split_once(']') else {
            return Err(CliError::usage(
                format!("`{url}`: no `]` after the IPv6 address"),
                hint,
            ));
        };
        match rest.strip_prefix(':') {
            Some(p) => (host, port_of(p)?),
            None if rest.is_empty() => (host, 80),
            None => return Err(CliError::usage(format!("`{url}` is not HOST:PORT"), hint)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, p)) => (host, port_of(p)?),
            None => (authority, 80),
        }
    };
    if host.is_empty() {
        return Err(CliError::usage(format!("`{url}` names no host"), hint));
    }
    Ok((host.to_owned(), port))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The event each POST sends: about 200 bytes of JSON.
fn event_body(actor: &str) -> Result<Bytes, CliError> {
    let (kind, id) = actor.split_once(':').ok_or_else(|| {
        CliError::usage(
            format!("--actor `{actor}` is not TYPE:ID"),
            "give the actor as TYPE:ID, e.g. --actor user:alice",
        )
    })?;
    let event = serde_json::json!({
        "actor": {"type": kind, "id": id},
        "action": "document.read",
        "resource": {"type": "document", "id": "doc-4711"},
        "outcome": "success",
        "source": {"ip": "10.1.2.3", "user_agent": "sealog-bench/1"},
        "metadata": {"request": "bench"}
    });
    serde_json::to_vec(&event)
        .map(Bytes::from)
        .map_err(|e| CliError::failed(format!("serializing the event: {e}"), "report this bug"))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Result<Sender, String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.authority))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", target.authority))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one request and reads the whole answer, returned: `Err` with a
/// description for a failure or a non-2xx status.
async fn send(sender: &mut Sender, target: &Target, call: &Call) -> Result<Bytes, String> {
    let mut req = Request::builder()
        .method(call.method.clone())
        .uri(call.path.as_str())
        .header(header::HOST, target.authority.as_str());
    if let Some(t) = &target.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if call.body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(call.body.clone().unwrap_or_default()))
        .map_err(|e| format!("building the request: {e}"))?;
    sender
        .ready()
        .await
        .map_err(|e| format!("the connection closed: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("the request failed: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    if status.is_success() {
        Ok(body)
    } else {
        let text = String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default());
        Err(format!(
            "{} {} answered {status}: {}",
            call.method,
            call.path,
            text.trim()
        ))
    }
}

/// The server's CPU time so far, in seconds (`process_cpu_seconds_total`
/// of its `/metrics`); `None` when it does not say.
async fn server_cpu(target: &Target) -> Option<f64> {
    let mut sender = connect(target).await.ok()?;
    let call = Call {
        method: Method::GET,
        path: "/metrics".into(),
        body: None,
    };
    let text = send(&mut sender, target, &call).await.ok()?;
    process_cpu_seconds(&String::from_utf8_lossy(&text))
}

/// `process_cpu_seconds_total` in a Prometheus text exposition.
fn process_cpu_seconds(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
        .and_then(|v| v.trim().parse().ok())
        .filter(|v: &f64| v.is_finite())
}

/// Runs one row: `connections` connections sending `call` for `duration`.
async fn run_row(target: &Target, call: &Call, connections: u64, duration: Duration) -> RowResult {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..connections {
        let (target, call, stop) = (target.clone(), call.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            let mut first_failure = None;
            let mut sender: Option<Sender> = None;
            while !stop.load(Ordering::Relaxed) {
                if sender.is_none() {
                    match connect(&target).await {
                        Ok(s) => sender = Some(s),
                        Err(e) => {
                            failures += 1;
                            first_failure.get_or_insert(e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else {
                    continue;
                };
                let t = Instant::now();
                match send(s, &target, &call).await {
                    Ok(_) => {
                        latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
                    }
                    Err(e) => {
                        failures += 1;
                        first_failure.get_or_insert(e);
                        // A refused request may close the connection.
                        sender = None;
                    }
                }
            }
            (latencies, failures, first_failure)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut result = RowResult {
        requests: 0,
        failures: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        match task.await {
            Ok((latencies, failures, first)) => {
                result.latencies_us.extend(latencies);
                result.failures += failures;
                if result.first_failure.is_none() {
                    result.first_failure = first;
                }
            }
            Err(e) => {
                result.failures += 1;
                result
                    .first_failure
                    .get_or_insert_with(|| format!("a connection task failed: {e}"));
            }
        }
    }
    // Requests answered after the stop are counted over the time they took.
    result.elapsed = started.elapsed();
    result.requests = result.latencies_us.len() as u64;
    result.latencies_us.sort_unstable();
    result
}

/// Runs the three rows at each connection count and prints them.
pub fn run(args: &HttpBench) -> Result<(), CliError> {
    let (host, port) = parse_url(&args.url)?;
    let target = Target {
        authority: if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        },
        host,
        port,
        token: args.token.clone(),
    };
    let rows = [
        (
            "healthz",
            Call {
                method: Method::GET,
                path: "/healthz".into(),
                body: None,
            },
        ),
        (
            "post_one_event",
            Call {
                method: Method::POST,
                path: "/v1/events".into(),
                body: Some(event_body(&args.actor)?),
            },
        ),
        (
            "query_actor_10",
            Call {
                method: Method::GET,
                path: format!("/v1/events?actor={}&limit=10", encode(&args.actor)),
                body: None,
            },
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sealog-bench")
        .build()
        .map_err(|e| CliError::failed(format!("starting the runtime: {e}"), "report this bug"))?;
    let mut out = Out::new();
    if !args.json {
        out.line(&format!(
            "sealog bench --http {}: {} s per row, connections {}",
            args.url,
            args.duration.as_secs(),
            args.connections
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    runtime.block_on(async {
        // One of each first: a server that refuses them (no token, a
        // read-only store) is named now rather than after a silent run.
        let mut sender = connect(&target)
            .await
            .map_err(|e| CliError::failed(e, "check that `sealog serve` runs at that URL"))?;
        for (_, call) in &rows {
            send(&mut sender, &target, call).await.map_err(|e| {
                CliError::failed(
                    e,
                    "give --token a token with the ingest and query scopes for a server with \
                     tokens",
                )
            })?;
        }
        drop(sender);
        for &connections in &args.connections {
            let mut healthz_rate = None;
            for (name, call) in &rows {
                let cpu_before = server_cpu(&target).await;
                let r = run_row(&target, call, connections, args.duration).await;
                let cpu_after = server_cpu(&target).await;
                // The server's CPU time (every thread: HTTP, committer,
                // indexer, sealer) per request answered.
                let cpu_us = cpu_before
                    .zip(cpu_after)
                    .filter(|_| r.requests > 0)
                    .map(|(b, a)| (a - b).max(0.0) * 1e6 / r.requests as f64);
                let secs = r.elapsed.as_secs_f64();
                let per_sec = rate(r.requests as f64, secs);
                let ratio = match healthz_rate {
                    None => {
                        healthz_rate = Some(per_sec);
                        1.0
                    }
                    Some(h) if h > 0.0 => per_sec / h,
                    Some(_) => 0.0,
                };
                let lat = &r.latencies_us;
                let p = |q: f64| percentile(lat, q) as f64 / 1000.0;
                let row = serde_json::json!({
                    "row": name,
                    "connections": connections,
                    "requests": r.requests,
                    "failures": r.failures,
                    "first_failure": r.first_failure,
                    "elapsed_secs": secs,
                    "requests_per_sec": per_sec,
                    "ratio_to_healthz": ratio,
                    "p50_ms": p(0.50),
                    "p99_ms": p(0.99),
                    "max_ms": lat.last().copied().unwrap_or(0) as f64 / 1000.0,
                    "server_cpu_us_per_request": cpu_us,
                });
                if args.json {
                    out.json_line(&row)?;
                } else {
                    out.line(&format!(
                        "  {name:<15} c={connections:<4} {:>9} req/s  {:>5.2}x healthz  p50 \
                         {:.2} ms  p99 {:.2} ms  max {:.1} ms{}{}",
                        thousands(per_sec.round() as u64),
                        ratio,
                        p(0.50),
                        p(0.99),
                        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
                        match cpu_us {
                            Some(us) => format!("  server CPU {us:.1} us/req"),
                            None => String::new(),
                        },
                        match &r.first_failure {
                            None => String::new(),
                            Some(f) => format!("  ({} failed, first: {f})", thousands(r.failures)),
                        }
                    ))?;
                }
                out.flush()?;
            }
        }
        Ok::<(), CliError>(())
    })?;
    out.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn the_server_cpu_time_is_read_from_its_metrics() {
        let text = "# HELP x y\nprocess_cpu_seconds_total_other 9\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.25\nz 1\n";
        assert_eq!(process_cpu_seconds(text), Some(12.25));
        assert_eq!(process_cpu_seconds("sealog_x 1\n"), None);
        assert_eq!(process_cpu_seconds("process_cpu_seconds_total NaN\n"), None);
    }

    #[test]
    fn urls_are_host_and_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:7807").unwrap(),
            ("127.0.0.1".into(), 7807)
        );
        assert_eq!(
            parse_url("http://localhost/").unwrap(),
            ("localhost".into(), 80)
        );
        assert_eq!(
            parse_url("http://[::1]:9000").unwrap(),
            ("::1".into(), 9000)
        );
        assert!(parse_url("https://h:1").is_err());
        assert!(parse_url("h:1").is_err());
        assert!(parse_url("http://h:x").is_err());
        assert!(parse_url("http://:80").is_err());
        assert_eq!(parse_url("http://[::1]").unwrap(), ("::1".into(), 80));
        assert!(parse_url("http://[::1").is_err());
    }

    #[test]
    fn the_event_is_about_two_hundred_bytes_and_valid() {
        let body = event_body("user:alice").unwrap();
        assert!((150..=260).contains(&body.len()), "{}", body.len());
        sealog::Event::from_json(&body).unwrap();
        assert!(event_body("alice").is_err());
    }
}
