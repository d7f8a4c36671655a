//! The honest clients of an abuse run, measured in every phase: durable
//! NDJSON ingest with idempotency keys and retries, a query in a loop, and
//! a probe of `GET /healthz` on a fresh connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealog_testkit::client::{Client, Method};
use tokio::time::{sleep, timeout};

use super::shared::{PhaseSamples, Shared, Tally, lock, micros};
use crate::Failure;

const HONEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn honest_client(url: &str, token: Option<&str>) -> Result<Client, Failure> {
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
pub(super) struct IngestReport {
    pub(super) acked: Vec<String>,
    pub(super) events_by_phase: [u64; 4],
    pub(super) latency: PhaseSamples,
    pub(super) requests: u64,
    pub(super) retries: Tally,
    pub(super) errors: Tally,
    pub(super) gave_up: u64,
}

#[allow(clippy::too_many_arguments, reason = "one task's whole configuration")]
pub(super) async fn honest_ingest(
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

pub(super) async fn honest_query(
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
pub(super) async fn fresh_probe(
    shared: Arc<Shared>,
    url: String,
    stop: Arc<AtomicBool>,
) -> PhaseSamples {
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
