//! `load --http URL`: the write benchmark against a running server.
//!
//! The events come from the same generator as the embedded benchmark and
//! are serialized into NDJSON request bodies before the clock starts, so
//! the client's work during the run is sending bytes and reading
//! responses. Each of --clients tasks holds one keep-alive connection and
//! takes the next batch from a shared counter; a 503 (ingest saturated) is
//! counted and retried after a short pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealog::Event;
use sealog::workload::percentile;
use sealog_testkit::client::{Client, ClientResponse};

use crate::{Failure, LoadArgs, Out, POOL_MAX, bytes, rate, thousands};

fn failed(message: String) -> Failure {
    Failure::failed(
        message,
        "check that `sealog serve` runs at that URL, and --token if it has tokens",
    )
}

fn client(args: &LoadArgs, url: &str) -> Result<Client, Failure> {
    let mut c = Client::new(url)
        .map_err(|e| Failure::usage(e.to_string(), "give --http http://HOST:PORT"))?;
    if let Some(ca) = &args.ca {
        c = c
            .trust(Some(ca))
            .map_err(|e| Failure::usage(e.to_string(), "give a PEM CA file"))?;
    }
    if let Some(t) = &args.token {
        c = c.with_token(t.clone());
    }
    Ok(c)
}

/// Query latency samples of one kind.
#[derive(Default)]
struct Samples {
    us: Vec<u64>,
    errors: u64,
}

impl Samples {
    fn summary(&mut self) -> serde_json::Value {
        self.us.sort_unstable();
        let f = |ns: u64| ns as f64 / 1000.0;
        serde_json::json!({
            "queries": self.us.len(),
            "errors": self.errors,
            "p50_us": f(percentile(&self.us, 0.50)),
            "p99_us": f(percentile(&self.us, 0.99)),
            "max_us": f(self.us.last().copied().unwrap_or(0)),
        })
    }
}

/// The two typical queries, from the workload's own values.
fn queries(sample: &Event) -> Vec<(&'static str, String)> {
    let enc = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let actor = format!("{}:{}", sample.actor.kind, sample.actor.id);
    let prefix = sample.action.split('.').next().unwrap_or("auth");
    let mut three = format!(
        "/v1/events?action={}&outcome={}&from={}&limit=100",
        enc(&format!("{prefix}.*")),
        sample.outcome.as_str(),
        enc(&sealog::Timestamp::from_nanos(0).to_rfc3339()),
    );
    if let Some(t) = &sample.tenant {
        three.push_str(&format!("&tenant={}", enc(t)));
    }
    vec![
        (
            "actor_newest_100",
            format!("/v1/events?actor={}&limit=100", enc(&actor)),
        ),
        ("three_predicates_time_range", three),
    ]
}

async fn stats_fsyncs(c: &mut Client) -> Option<u64> {
    let r = c.get("/v1/stats").await.ok()?;
    (r.status == 200).then(|| r.json()["store"]["fsyncs"].as_u64())?
}

fn ok_count(r: &ClientResponse) -> Option<u64> {
    if r.status != 200 {
        return None;
    }
    // `{"count":N,...`: no need to parse the receipts.
    let text = r.body.get(..40)?;
    let text = std::str::from_utf8(text).ok()?;
    let rest = text.strip_prefix("{\"count\":")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub fn run(args: &LoadArgs, url: &str) -> Result<(), Failure> {
    let events = args.events();
    let batch = args.batch();
    let pool_target = events.min(POOL_MAX).max(batch);
    let pool_len = pool_target.div_ceil(batch) * batch;
    let pool = args.workload().generate(pool_len);
    let sample = pool.first().cloned();
    let mut bodies: Vec<Bytes> = Vec::new();
    for chunk in pool.chunks(usize::try_from(batch).unwrap_or(1000)) {
        let mut body = Vec::with_capacity(chunk.len() * 360);
        for e in chunk {
            serde_json::to_writer(&mut body, e)
                .map_err(|e| failed(format!("serializing events: {e}")))?;
            body.push(b'\n');
        }
        bodies.push(Bytes::from(body));
    }
    drop(pool);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let clients = args.clients;
    let query_clients = args.query_clients;
    let result = runtime.block_on(async {
        let mut probe = client(args, url)?;
        let r = probe.get("/healthz").await.map_err(|e| failed(format!("{url}: {e}")))?;
        if r.status != 200 {
            return Err(failed(format!("{url}/healthz answered {}", r.status)));
        }
        let fsyncs_before = stats_fsyncs(&mut probe).await;
        let bodies = Arc::new(bodies);
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let rejected = Arc::new(AtomicU64::new(0));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut c = client(args, url)?;
            let (bodies, next, rejected, body_bytes, acked) = (
                bodies.clone(),
                next.clone(),
                rejected.clone(),
                body_bytes.clone(),
                acked.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let first = k.saturating_mul(batch);
                    if first >= events {
                        return Ok::<Vec<u64>, String>(lat);
                    }
                    let Some(body) = bodies.get((k % bodies.len() as u64) as usize).cloned() else {
                        return Ok(lat);
                    };
                    let len = body.len() as u64;
                    loop {
                        let t = Instant::now();
                        let r = c
                            .post_ndjson("/v1/events", body.clone())
                            .await
                            .map_err(|e| e.to_string())?;
                        if r.status == 503 {
                            rejected.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        let Some(n) = ok_count(&r) else {
                            return Err(format!("POST /v1/events answered {}: {}", r.status, r.text()));
                        };
                        lat.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                        acked.fetch_add(n, Ordering::Relaxed);
                        body_bytes.fetch_add(len, Ordering::Relaxed);
                        break;
                    }
                }
            }));
        }
        let query_list = sample.as_ref().map(queries).unwrap_or_default();
        let mut loaded = Vec::new();
        for _ in 0..query_clients {
            let mut c = client(args, url)?;
            let (done, list) = (done.clone(), query_list.clone());
            loaded.push(tokio::spawn(async move {
                let mut samples: Vec<Samples> = list.iter().map(|_| Samples::default()).collect();
                while !done.load(Ordering::Relaxed) {
                    for ((_, path), s) in list.iter().zip(samples.iter_mut()) {
                        let t = Instant::now();
                        match c.get(path).await {
                            Ok(r) if r.status == 200 => s
                                .us
                                .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)),
                            _ => s.errors += 1,
                        }
                    }
                }
                samples
            }));
        }
        let mut latencies = Vec::new();
        let mut failure = None;
        for t in tasks {
            match t.await {
                Ok(Ok(l)) => latencies.extend(l),
                Ok(Err(e)) => failure = Some(e),
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let elapsed = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let mut during: Vec<Samples> = query_list.iter().map(|_| Samples::default()).collect();
        for t in loaded {
            if let Ok(samples) = t.await {
                for (d, s) in during.iter_mut().zip(samples) {
                    d.us.extend(s.us);
                    d.errors += s.errors;
                }
            }
        }
        if let Some(e) = failure {
            return Err(failed(e));
        }
        let fsyncs_after = stats_fsyncs(&mut probe).await;
        let mut idle: Vec<Samples> = query_list.iter().map(|_| Samples::default()).collect();
        for _ in 0..args.queries {
            for ((_, path), s) in query_list.iter().zip(idle.iter_mut()) {
                let t = Instant::now();
                match probe.get(path).await {
                    Ok(r) if r.status == 200 => {
                        s.us.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    }
                    _ => s.errors += 1,
                }
            }
        }
        let mut query_report = serde_json::Map::new();
        for (((name, path), i), d) in query_list.iter().zip(idle.iter_mut()).zip(during.iter_mut()) {
            query_report.insert(
                (*name).to_owned(),
                serde_json::json!({
                    "path": path,
                    "idle": i.summary(),
                    "during_ingest": if query_clients > 0 { d.summary() } else { serde_json::Value::Null },
                }),
            );
        }
        Ok((
            elapsed,
            latencies,
            acked.load(Ordering::Relaxed),
            body_bytes.load(Ordering::Relaxed),
            rejected.load(Ordering::Relaxed),
            fsyncs_before.zip(fsyncs_after).map(|(a, b)| b.saturating_sub(a)),
            query_report,
        ))
    });
    let (elapsed, mut lat, acked, body_bytes, rejected, fsyncs, query_report) = result?;
    lat.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    let secs = elapsed.as_secs_f64();
    let report = serde_json::json!({
        "url": url,
        "events": acked,
        "event_size": args.event_size(),
        "batch": batch,
        "clients": clients,
        "durability": "group",
        "elapsed_secs": secs,
        "events_per_sec": rate(acked as f64, secs),
        "mb_per_sec": rate(body_bytes as f64 / 1e6, secs),
        "request_bytes_mean_per_event": if acked > 0 { body_bytes as f64 / acked as f64 } else { 0.0 },
        "requests": lat.len(),
        "rejected_503": rejected,
        "p50_us": us(percentile(&lat, 0.50)),
        "p95_us": us(percentile(&lat, 0.95)),
        "p99_us": us(percentile(&lat, 0.99)),
        "max_us": us(lat.last().copied().unwrap_or(0)),
        "fsyncs": fsyncs,
        "events_per_fsync": fsyncs.filter(|&f| f > 0).map(|f| acked as f64 / f as f64),
        "queries": query_report,
    });
    let mut out = Out::stdout();
    if args.json() {
        out.json_line(&report)?;
        return out.flush();
    }
    let f = |key: &str| {
        report
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    out.line(&format!(
        "load --http: {} events of ~{} bytes, NDJSON batches of {batch}, {clients} clients, durable acks",
        thousands(acked),
        args.event_size()
    ))?;
    out.line(&format!("  server         {url}"))?;
    out.line(&format!(
        "  throughput     {} events/s, {:.1} MB/s of request bodies ({} in {secs:.2} s)",
        thousands(f("events_per_sec").round() as u64),
        f("mb_per_sec"),
        bytes(body_bytes)
    ))?;
    out.line(&format!(
        "  request        p50 {:.0} us, p95 {:.0} us, p99 {:.0} us, max {:.0} us ({} requests, {} answered 503 and retried)",
        f("p50_us"),
        f("p95_us"),
        f("p99_us"),
        f("max_us"),
        thousands(lat.len() as u64),
        thousands(rejected)
    ))?;
    match fsyncs {
        Some(n) => out.line(&format!(
            "  syncs          {} on the server, {:.1} events per sync",
            thousands(n),
            f("events_per_fsync")
        ))?,
        None => out.line(
            "  syncs          unknown (GET /v1/stats refused: give --token with the query scope)",
        )?,
    }
    for (name, q) in &query_report {
        let line = |k: &str| {
            let s = &q[k];
            if s.is_null() {
                return "-".to_owned();
            }
            format!(
                "p50 {:.0} us, p99 {:.0} us ({} queries, {} errors)",
                s["p50_us"].as_f64().unwrap_or(0.0),
                s["p99_us"].as_f64().unwrap_or(0.0),
                s["queries"],
                s["errors"]
            )
        };
        out.line(&format!("  query {name}"))?;
        out.line(&format!("    idle         {}", line("idle")))?;
        out.line(&format!("    under ingest {}", line("during_ingest")))?;
    }
    out.flush()
}
