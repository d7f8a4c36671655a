//! The abuse run itself, phase after phase: starts the honest clients and
//! the monitor, unleashes the abusive clients on schedule, then checks the
//! log and assembles the report as JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealog::workload::percentile;
use sealog_testkit::client::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::{sleep, sleep_until};

use super::abusers::{auth_flood, bad_bodies, bad_requests, hold, slow_sender};
use super::checks::{enc, export, refusal_events, server_stats};
use super::honest::{fresh_probe, honest_client, honest_ingest, honest_query};
use super::monitor::monitor;
use super::shared::{DONE, PHASES, PhaseSamples, Shared, Tally, failed, lock};
use crate::{Failure, LoadArgs};

#[allow(clippy::too_many_lines, reason = "the run, phase after phase")]
pub(super) async fn run_async(
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
