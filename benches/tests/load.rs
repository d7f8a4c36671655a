//! The load generator (`load`, this crate's binary) against a server
//! started in the test's process: the write benchmark over HTTP reports
//! its figures, and under abuse (held connections, slow senders, bad
//! bodies and a flood of failed authentications) honest clients are
//! served, memory stays bounded and nothing acknowledged is lost.
//!
//! The load generator is the spawned binary, so its thousands of
//! connections and its memory are its own, and the server's memory is this
//! process's. Nothing here asserts a speed: the machine is shared; bounds
//! are generous and only catch a server that stopped answering, and the
//! bound on the events a flood writes follows the time it lasted.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Instant;

use sealog::{Preallocation, Store, StoreOptions};
use sealog_server::{Layer, Limits};
use sealog_testkit::server::{Setup, TestServer, small_options};
use serde_json::Value;

/// `load` with `args`, its token in the environment; waits for it on a
/// blocking thread (the server runs on this test's runtime).
async fn load(args: Vec<String>, token: String) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = sealog_testkit::process::command(env!("CARGO_BIN_EXE_load"));
        cmd.args(args).env("SEALOG_TOKEN", token);
        Command::output(&mut cmd).unwrap()
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_benchmark_reports_throughput_latency_syncs_and_query_latency() {
    let server = TestServer::start(Setup::default()).await;
    let mut args = strings(&["--http", &server.url, "--clients", "4", "--events", "3000"]);
    args.extend(strings(&[
        "--batch",
        "100",
        "--queries",
        "5",
        "--query-clients",
        "1",
    ]));
    args.push("--json".into());
    let out = load(args, server.secret("root")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 3000);
    for key in ["events_per_sec", "mb_per_sec", "p50_us", "p99_us"] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert!(report["fsyncs"].as_u64().unwrap() > 0, "{report}");
    let q = &report["queries"]["actor_newest_100"];
    assert_eq!(q["idle"]["queries"], 5);
    assert!(q["idle"]["p50_us"].as_f64().unwrap() > 0.0);
    server.stop().await;
}

/// What each malformed body must be answered with. A request refused
/// before its body is read (a streamed oversized body, an unsupported
/// type) may also see a reset: the server closes with body bytes unread.
const BAD_BODY_ANSWERS: &[(&str, &str)] = &[
    ("declared_oversize", "413 body_too_large"),
    ("streamed_oversize", "413 body_too_large"),
    ("malformed_json", "400 malformed_json"),
    ("invalid_utf8", "400 invalid_utf8"),
    ("wrong_types", "400 invalid_events"),
    ("deep_nesting", "400 malformed_json"),
    ("too_many_events", "413 too_many_events"),
    ("event_too_large", "413 event_too_large"),
    ("unsupported_media_type", "415 unsupported_media_type"),
    ("empty_body", "400 empty_body"),
    ("huge_header", "431"),
    ("not_http", "400"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_abuse_honest_clients_are_served_memory_stays_bounded_and_nothing_acknowledged_is_lost()
 {
    // One descriptor per connection, as `sealog serve` does at start.
    sealog_server::raise_open_file_limit();
    let server = TestServer::start(Setup {
        layer: Layer {
            header_timeout_secs: Some(2),
            body_timeout_secs: Some(2),
            max_connections: Some(1200),
            ..Layer::default()
        },
        options: StoreOptions {
            segment_size: 4 << 20,
            preallocation: Preallocation::Allocate,
            ..small_options()
        },
        ..Setup::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let acked_file = tmp.path().join("acked.txt");
    let pid = std::process::id().to_string();
    let mut args = strings(&[
        "--http",
        &server.url,
        "--abuse",
        "--json",
        "--server-pid",
        &pid,
    ]);
    args.push("--record-acked".into());
    args.push(acked_file.display().to_string());
    args.extend(strings(&["--baseline-secs", "2", "--abuse-secs", "8"]));
    args.extend(strings(&["--over-limit-secs", "3", "--after-secs", "2"]));
    args.extend(strings(&[
        "--hold",
        "1000",
        "--over-limit",
        "1400",
        "--slow",
        "4",
    ]));
    args.extend(strings(&["--bad-bodies", "2", "--auth-flood", "20"]));
    args.extend(strings(&[
        "--auth-sources",
        "1000",
        "--honest-clients",
        "2",
    ]));
    args.extend(strings(&["--honest-batch", "50", "--honest-rate", "1000"]));
    args.extend(strings(&["--summary-wait-secs", "0"]));
    let started = Instant::now();
    let out = load(args, server.secret("root")).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report:#}");
    let checks = &report["checks"];
    assert_eq!(checks["passed"], true, "{report:#}");
    assert_eq!(checks["acked_missing"], 0);
    assert_eq!(checks["verify"]["intact"], true);

    // The honest clients were answered in every phase, without an error.
    // Their latency is the benchmark's figure, not a test's bound: how
    // fast depends on the machine.
    for phase in ["baseline", "flood", "over_limit", "after"] {
        let q = &report["honest_query"]["latency"][phase];
        assert!(q["n"].as_u64().unwrap() > 0, "{phase}: {q}");
        assert_eq!(q["errors"], 0, "{phase}: {report:#}");
        let i = &report["honest_ingest"]["latency"][phase];
        assert!(i["n"].as_u64().unwrap() > 0, "{phase}: {i}");
        assert_eq!(i["errors"], 0, "{phase}: {report:#}");
    }
    let ingest = &report["honest_ingest"];
    assert_eq!(ingest["errors"], serde_json::json!({}), "{ingest}");
    assert_eq!(ingest["gave_up"], 0);
    assert!(ingest["acked_events"].as_u64().unwrap() > 0, "{ingest}");

    // Memory stayed bounded (RSS in KiB, far below 1 GiB).
    let memory = &report["memory_kib"];
    for phase in ["baseline", "flood", "over_limit", "after"] {
        let rss = memory["rss_peak"][phase].as_u64().unwrap();
        assert!(rss > 0 && rss < 1 << 20, "{phase}: {memory}");
    }

    // The connections were held, and above the limit the server served no
    // more than its limit.
    let conns = &report["connections"];
    assert!(
        conns["client_open_peak"]["flood"].as_u64().unwrap() >= 500,
        "{conns}"
    );
    let served_over = conns["server_open_peak"]["over_limit"].as_u64().unwrap();
    assert!(served_over <= 1200, "{conns}");

    // Each class of abuse got the answer it should.
    let abuse = &report["abuse"];
    let labels = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let slow_head = labels(&abuse["slow_head"]);
    assert!(
        slow_head
            .iter()
            .any(|l| l == "closed without an answer" || l.starts_with("408")),
        "slow heads are cut off: {slow_head:?}"
    );
    assert!(
        labels(&abuse["slow_body"]).contains(&"408 body_timeout".to_owned()),
        "{}",
        abuse["slow_body"]
    );
    for (case, answer) in BAD_BODY_ANSWERS {
        let got = labels(&abuse["bad_bodies"][case]);
        assert!(!got.is_empty(), "{case} was not sent");
        for label in &got {
            assert!(
                label == answer
                    || (matches!(*case, "streamed_oversize" | "unsupported_media_type")
                        && label == "reset"),
                "{case}: answered {label}, expected {answer}"
            );
        }
    }
    let flood = labels(&abuse["auth_flood"]);
    assert!(
        flood.iter().all(|l| l.starts_with("401")),
        "{}",
        abuse["auth_flood"]
    );
    let attempts = checks["refusals"]["attempts_sent"].as_u64().unwrap();
    assert!(attempts > 0, "{}", checks["refusals"]);
    let refused = report["server_stats_after"]["auth_failures"]
        .as_u64()
        .unwrap();

    // Afterwards, on the store itself: every acknowledged event, a log
    // that verifies, and the flood written as a few events and summaries
    // that count every refusal.
    let dir = server.stop().await;
    // Every refusal was decided between the start of the run and the
    // server's stop.
    let lasted = started.elapsed();
    let store = Store::open_read_only(&dir).unwrap();
    store.verify().unwrap();
    let (mut present, mut failed, mut summarized) = (BTreeSet::new(), 0u64, 0u64);
    for record in store.scan(..) {
        let record = record.unwrap();
        match record.event.action.as_str() {
            "auth.failed" => failed += 1,
            "auth.refusals_summarized" => {
                summarized += record.event.metadata.as_ref().unwrap()["count"]
                    .as_u64()
                    .unwrap();
            }
            _ => {}
        }
        if let Some(id) = record.event.request_id {
            present.insert(id);
        }
    }
    let acked = std::fs::read_to_string(&acked_file).unwrap();
    let acked: Vec<&str> = acked.lines().collect();
    assert_eq!(acked.len() as u64, ingest["acked_events"].as_u64().unwrap());
    let missing = acked.iter().filter(|id| !present.contains(**id)).count();
    assert_eq!(missing, 0, "acknowledged events missing from the store");
    // The callers without a valid token share one allowance per window,
    // `refusals_per_window` times `ADDRESSES_IN_FULL` (1,000 by default,
    // where 1,000 addresses at 20 each would be 20,000), and a window
    // starts at the first refusal after the last one ended: so however
    // fast the machine, the refusals recorded one by one are at most the
    // allowance times the windows the run could span. The rest are counted
    // in summaries.
    let limits = Limits::default();
    let allowance =
        u64::from(limits.refusals_per_window) * u64::from(sealog_server::audit::ADDRESSES_IN_FULL);
    let windows = lasted.as_secs() / limits.refusal_window.as_secs() + 1;
    assert!(
        failed <= allowance * windows,
        "{failed} auth.failed events for {attempts} failed authentications in {lasted:?}: more \
         than {allowance} per {:?}",
        limits.refusal_window
    );
    assert_eq!(
        failed + summarized,
        refused,
        "every refusal is recorded or counted in a summary"
    );
}
