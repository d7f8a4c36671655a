//! The human-readable report of an abuse run (without `--json`), printed
//! from the JSON report.

use serde_json::Value;

use super::shared::PHASES;
use crate::{Failure, Out, thousands};

pub(super) fn print_report(out: &mut Out, r: &Value) -> Result<(), Failure> {
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
