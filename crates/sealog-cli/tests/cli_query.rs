//! Reading with the `sealog` command line, run as a process: `sealog
//! query` (filters, pages, time ranges, counts by group), `sealog tail`,
//! `sealog export` and `sealog stats`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use predicates::prelude::*;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp};
use sealog::{Preallocation, Store, StoreOptions};
use serde_json::Value;

use support::cli::{import_events, json, ndjson, sealog, store_dir};

// ---------------------------------------------------------------- query

#[test]
fn query_filters_pages_counts_and_formats() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 90);
    let q = |args: &[&str]| {
        let out = sealog(&dir).arg("query").args(args).assert().success();
        out.get_output().clone()
    };
    // Default: newest first, NDJSON when stdout is not a terminal.
    let all = ndjson(&q(&[]).stdout);
    assert_eq!(all.len(), 90);
    assert_eq!(all[0]["seq"], 89);
    let oldest = ndjson(&q(&["--oldest-first", "--limit", "5"]).stdout);
    assert_eq!(
        oldest
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );

    let by_actor = ndjson(&q(&["--actor", "user:u1"]).stdout);
    assert_eq!(by_actor.len(), 23);
    assert!(by_actor.iter().all(|r| r["actor"]["id"] == "u1"));
    assert_eq!(ndjson(&q(&["--actor", "u1"]).stdout).len(), 23);
    let globbed = ndjson(&q(&["--action", "customer.*"]).stdout);
    assert_eq!(globbed.len(), 60);
    let either = ndjson(&q(&["--action", "auth.login", "--action", "customer.read"]).stdout);
    assert_eq!(either.len(), 60);
    assert_eq!(
        ndjson(&q(&["--outcome", "denied", "--tenant", "t1"]).stdout).len(),
        15
    );
    assert_eq!(ndjson(&q(&["--resource", "customer:c7"]).stdout).len(), 1);
    assert_eq!(ndjson(&q(&["--resource", "customer:"]).stdout).len(), 90);
    assert_eq!(
        ndjson(&q(&["--resource-type", "customer"]).stdout).len(),
        90
    );
    assert_eq!(ndjson(&q(&["--request-id", "req-42"]).stdout).len(), 1);
    assert_eq!(ndjson(&q(&["--source-ip", "10.0.0.0/24"]).stdout).len(), 45);
    assert_eq!(ndjson(&q(&["--source-ip", "10.0.1.2"]).stdout).len(), 1);
    let range = [
        "--from",
        "2025-11-23T10:00:10Z",
        "--to",
        "2025-11-23T10:00:20Z",
    ];
    assert_eq!(ndjson(&q(&range).stdout).len(), 10);
    assert_eq!(ndjson(&q(&["--since", "1d"]).stdout).len(), 0);

    // Pages with a cursor.
    let page = json(&q(&["--limit", "40", "--format", "json"]).stdout);
    assert_eq!(page["records"].as_array().unwrap().len(), 40);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let page2 = json(&q(&["--limit", "40", "--format", "json", "--cursor", &cursor]).stdout);
    assert_eq!(page2["records"][0]["seq"], 49);
    let ndjson_page = q(&["--limit", "40", "--cursor", &cursor]);
    assert_eq!(ndjson(&ndjson_page.stdout).len(), 40);
    assert!(String::from_utf8_lossy(&ndjson_page.stderr).contains("--cursor"));
    let last = json(
        &q(&[
            "--limit",
            "40",
            "--format",
            "json",
            "--cursor",
            page2["next_cursor"].as_str().unwrap(),
        ])
        .stdout,
    );
    assert_eq!(last["records"].as_array().unwrap().len(), 10);
    assert!(last["next_cursor"].is_null());

    assert_eq!(
        String::from_utf8_lossy(&q(&["--count", "--action", "auth.*"]).stdout).trim(),
        "30"
    );

    let table = String::from_utf8(q(&["--format", "table", "--limit", "3"]).stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for header in [
        "SEQ",
        "TIME (UTC)",
        "ACTOR",
        "ACTION",
        "RESOURCE",
        "OUTCOME",
        "TENANT",
        "SOURCE IP",
    ] {
        assert!(lines[0].contains(header), "{table}");
    }
    assert!(
        lines[1].contains("user:u1") && lines[1].contains("customer:c89"),
        "{table}"
    );
    assert!(lines[1].contains("2025-11-23 10:01:29.000"), "{table}");
}

/// An event line for `sealog import` at `time`, with `id` as its request id.
fn timed_line(id: &str, time: Timestamp) -> String {
    format!(
        r#"{{"time":"{time}","actor":{{"type":"user","id":"alice"}},"action":"doc.read","resource":{{"type":"doc","id":"1"}},"outcome":"success","request_id":"{id}"}}"#
    )
}

fn request_ids(output: &[u8]) -> Vec<String> {
    ndjson(output)
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn since_leaves_out_events_dated_after_now() {
    let (_tmp, dir) = store_dir();
    let now = Timestamp::now().as_nanos();
    let minutes = |m: i64| Timestamp::from_nanos(now + m * 60_000_000_000);
    let input = [
        timed_line("recent", minutes(-30)),
        timed_line("future", minutes(120)),
        timed_line("old", minutes(-180)),
    ]
    .join("\n");
    sealog(&dir)
        .args(["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
    let out = sealog(&dir)
        .args(["query", "--since", "1h", "--format", "ndjson"])
        .assert()
        .success();
    assert_eq!(request_ids(&out.get_output().stdout), ["recent"]);
    let out = sealog(&dir)
        .args(["export", "--since", "1h"])
        .assert()
        .success();
    assert_eq!(request_ids(&out.get_output().stdout), ["recent"]);
    // --from alone has no end: the future-dated event is there.
    let from = minutes(-60).to_string();
    let out = sealog(&dir)
        .args([
            "query",
            "--from",
            &from,
            "--format",
            "ndjson",
            "--oldest-first",
        ])
        .assert()
        .success();
    assert_eq!(request_ids(&out.get_output().stdout), ["recent", "future"]);
}

#[test]
fn a_date_alone_means_that_whole_utc_day_and_order_time_sorts_by_event_time() {
    let (_tmp, dir) = store_dir();
    let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
    // Appended out of event-time order, as late batches arrive.
    let input = [
        timed_line("27-noon", t("2026-11-27T12:00:00Z")),
        timed_line("26-last", t("2026-11-26T23:59:59.999Z")),
        timed_line("27-first", t("2026-11-27T00:00:00Z")),
        timed_line("28-first", t("2026-11-28T00:00:00Z")),
        timed_line("27-last", t("2026-11-27T23:59:59.999999999Z")),
    ]
    .join("\n");
    sealog(&dir)
        .args(["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
    let day = [
        "--from",
        "2026-11-27",
        "--until",
        "2026-11-27",
        "--format",
        "ndjson",
    ];
    let out = sealog(&dir).arg("query").args(day).assert().success();
    assert_eq!(
        request_ids(&out.get_output().stdout),
        ["27-last", "27-first", "27-noon"],
        "newest first by seq"
    );
    let out = sealog(&dir)
        .arg("query")
        .args(day)
        .args(["--order", "time"])
        .assert()
        .success();
    assert_eq!(
        request_ids(&out.get_output().stdout),
        ["27-last", "27-noon", "27-first"]
    );
    let out = sealog(&dir)
        .args(["query", "--order", "time", "--oldest-first", "--limit", "2"])
        .args(["--format", "ndjson"])
        .assert()
        .success()
        .stderr(predicate::str::contains("--cursor v1.to."));
    assert_eq!(
        request_ids(&out.get_output().stdout),
        ["26-last", "27-first"]
    );
    let out = sealog(&dir)
        .args(["export", "--order", "time", "--to", "2026-11-28T00:00:00Z"])
        .assert()
        .success();
    assert_eq!(
        request_ids(&out.get_output().stdout),
        ["26-last", "27-first", "27-noon", "27-last"]
    );
    sealog(&dir)
        .args(["query", "--from", "2026-11-31"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--from"));
}

#[test]
fn query_counts_by_group_with_every_filter_in_every_format() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 90);
    let q = |args: &[&str]| {
        let out = sealog(&dir).arg("query").args(args).assert().success();
        out.get_output().stdout.clone()
    };
    // Tenant t1 holds the 45 odd events, 15 of each outcome: ties come by
    // key, and the third group is summed.
    let counted = json(&q(&[
        "--tenant",
        "t1",
        "--count-by",
        "outcome",
        "--top",
        "2",
        "--format",
        "json",
    ]));
    assert_eq!(
        counted,
        serde_json::json!({
            "count_by": "outcome",
            "groups": [{"key": "denied", "count": 15}, {"key": "failure", "count": 15}],
            "total": 45,
            "other_groups": 1,
            "other_count": 15,
            "missing": 0,
        })
    );
    let table = String::from_utf8(q(&[
        "--tenant",
        "t1",
        "--count-by",
        "outcome",
        "--top",
        "2",
        "--format",
        "table",
    ]))
    .unwrap();
    assert_eq!(
        table,
        "COUNT  OUTCOME\n   15  denied\n   15  failure\n   15  (1 other group)\n   45  total\n"
    );
    // Every event is at 10:MM on one day; a time filter narrows them.
    let hours = json(&q(&[
        "--count-by",
        "hour",
        "--from",
        "2025-11-23T10:01:00Z",
        "--format",
        "json",
    ]));
    assert_eq!(hours["groups"][0]["key"], "2025-11-23T10:00:00Z");
    assert_eq!(hours["groups"][0]["count"], 30);
    // NDJSON: the same document on one line.
    let line = ndjson(&q(&["--count-by", "source_ip", "--actor", "user:u1"]));
    assert_eq!(line.len(), 1);
    assert_eq!(line[0]["total"], 23);
    // Ties come by key, bytewise.
    assert_eq!(line[0]["groups"][0]["key"], "10.0.1.10");
    for (args, expected) in [
        (&["--count-by", "seq"][..], "--count-by"),
        (&["--count-by", "actor", "--top", "0"], "--top"),
        (&["--top", "5"], "--count-by"),
        (&["--count-by", "actor", "--count"], "--count"),
    ] {
        sealog(&dir)
            .arg("query")
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(expected));
    }
}

#[test]
fn bad_query_flags_are_usage_errors_naming_the_flag() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 3);
    let cases: [(&[&str], &str); 7] = [
        (&["--action", "Customer.*"], "--action"),
        (&["--source-ip", "10.0.0.0/33"], "--source-ip"),
        (&["--source-ip", "not-an-ip"], "--source-ip"),
        (&["--since", "3y"], "--since `3y` is not a duration"),
        (&["--from", "yesterday"], "--from"),
        (&["--cursor", "garbage"], "--cursor"),
        (&["--limit", "0"], "--limit"),
    ];
    for (args, expected) in cases {
        sealog(&dir)
            .arg("query")
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(expected));
    }
    sealog(&dir)
        .args([
            "query",
            "--from",
            "2026-01-02T00:00:00Z",
            "--to",
            "2026-01-01T00:00:00Z",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty"));
}

// ---------------------------------------------------------------- tail

#[test]
fn tail_prints_the_last_matches_oldest_first() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 50);
    let out = sealog(&dir).args(["tail", "-n", "4"]).assert().success();
    let seqs: Vec<u64> = ndjson(&out.get_output().stdout)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [46, 47, 48, 49]);
    let out = sealog(&dir)
        .args(["tail", "--outcome", "denied", "--format", "table"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(text.lines().skip(1).all(|l| l.contains("denied")), "{text}");
}

#[test]
fn tail_follows_a_store_another_process_holds_open_for_writing() {
    let (_tmp, dir) = store_dir();
    let options = StoreOptions {
        segment_size: 8 << 10,
        preallocation: Preallocation::Allocate,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir, options).unwrap();
    let event = |i: u64, outcome| {
        Event::new(
            Actor::new("user", format!("u{i}")),
            "auth.login",
            Resource::kind("session"),
            outcome,
        )
    };
    store.append(event(0, Outcome::Denied)).unwrap();
    store.append(event(1, Outcome::Success)).unwrap();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealog"))
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "tail",
            "-f",
            "--outcome",
            "denied",
            "--interval",
            "50",
            "--format",
            "ndjson",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> Value {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("tail -f printed nothing");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next()["actor"]["id"], "u0");
    // New records, across several segments, while this process holds the
    // store open for writing.
    for i in 2..120 {
        let outcome = if i % 10 == 0 {
            Outcome::Denied
        } else {
            Outcome::Success
        };
        store.append(event(i, outcome)).unwrap();
    }
    for i in (10..120).step_by(10) {
        let r = next();
        assert_eq!(r["actor"]["id"], format!("u{i}"));
        assert_eq!(r["seq"], i);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    store.close().unwrap();
}

// ---------------------------------------------------------------- export

#[test]
fn export_csv_quotes_fields_and_flattens_nested_ones() {
    let (_tmp, dir) = store_dir();
    sealog(&dir)
        .args([
            "append",
            "--actor",
            "user:alice",
            "--action",
            "customer.delete",
            "--resource",
            "customer:4471",
            "--outcome",
            "denied",
            "--user-agent",
            "Mozilla/5.0 (X11, Linux)",
            "--reason",
            "said \"no\", twice",
            "--metadata",
            r#"{"note":"a,b","n":1}"#,
            "--on-behalf-of",
            "user:support-7",
        ])
        .assert()
        .success();
    import_events(&dir, 3);
    let out = sealog(&dir)
        .args(["export", "--format", "csv"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains(r#""said ""no"", twice""#), "{text}");
    assert!(text.contains(r#""Mozilla/5.0 (X11, Linux)""#), "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers[..5],
        ["seq", "recorded_at", "time", "actor.type", "actor.id"]
    );
    assert!(headers.contains(&"actor.on_behalf_of.id".to_owned()));
    assert!(headers.contains(&"source.user_agent".to_owned()));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let first = &rows[0];
    assert_eq!(&first[col("seq")], "0");
    assert_eq!(&first[col("actor.id")], "alice");
    assert_eq!(&first[col("actor.on_behalf_of.id")], "support-7");
    assert_eq!(&first[col("reason")], "said \"no\", twice");
    assert_eq!(&first[col("source.user_agent")], "Mozilla/5.0 (X11, Linux)");
    let metadata: Value = serde_json::from_str(&first[col("metadata")]).unwrap();
    assert_eq!(metadata["note"], "a,b");
    assert_eq!(&rows[1][col("source.ip")], "10.0.0.1");
}

#[test]
fn export_streams_every_match_oldest_first() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 250);
    let out = sealog(&dir)
        .args(["export", "--outcome", "denied"])
        .assert()
        .success();
    let records = ndjson(&out.get_output().stdout);
    assert_eq!(records.len(), 83);
    assert!(
        records
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    let out = sealog(&dir)
        .args(["export", "--newest-first"])
        .assert()
        .success();
    let records = ndjson(&out.get_output().stdout);
    assert_eq!(records.len(), 250);
    assert_eq!(records[0]["seq"], 249);
    sealog(&dir)
        .args(["export", "--format", "xml"])
        .assert()
        .code(2);
}

// ---------------------------------------------------------------- stats

#[test]
fn stats_reports_segments_events_bytes_and_times() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 700);
    let out = sealog(&dir).args(["stats", "--json"]).assert().success();
    let s = json(&out.get_output().stdout);
    assert_eq!(s["events"], 700);
    let sealed = s["segments"]["sealed"].as_u64().unwrap();
    assert!(sealed >= 1, "{s}");
    assert_eq!(s["segments"]["open"], 1);
    assert_eq!(s["engine"]["records"], 700);
    let in_use = s["bytes"]["segments_in_use"].as_u64().unwrap();
    assert!(in_use > 700 * 60 && in_use < 700 * 400, "{s}");
    assert!(s["bytes"]["leaf_file"]["bytes"].as_u64().unwrap() >= sealed * 32);
    assert!(s["bytes"]["total"]["bytes"].as_u64().unwrap() >= in_use);
    let per_event = s["bytes_per_event"].as_f64().unwrap();
    assert!((60.0..400.0).contains(&per_event), "{s}");
    assert_eq!(s["event_time"]["earliest"], "2025-11-23T10:00:00Z");
    assert_eq!(s["event_time"]["latest"], "2025-11-23T10:11:39Z");
    sealog(&dir)
        .arg("stats")
        .assert()
        .success()
        .stdout(predicate::str::contains("events           700"))
        .stdout(predicate::str::contains("leaf file"))
        .stdout(predicate::str::contains("bytes per event"));
}

#[test]
fn stats_counts_the_spare_and_gives_bytes_per_event_over_what_holds_data() {
    let (_tmp, dir) = store_dir();
    // A writer that stays open long enough to zero-fill its spare.
    let options = StoreOptions {
        segment_size: 64 << 10,
        preallocation: Preallocation::ZeroFill,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir, options).unwrap();
    for i in 0..4 {
        store
            .append(Event::new(
                Actor::new("user", format!("u{i}")),
                "auth.login",
                Resource::kind("session"),
                Outcome::Success,
            ))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !store.stats().spare_ready {
        assert!(std::time::Instant::now() < deadline, "no spare was made");
        std::thread::sleep(Duration::from_millis(10));
    }
    store.close().unwrap();
    let out = sealog(&dir).args(["stats", "--json"]).assert().success();
    let s = json(&out.get_output().stdout);
    assert_eq!(s["bytes"]["spare"]["files"], 1, "{s}");
    assert_eq!(s["bytes"]["spare"]["bytes"], 64 << 10, "{s}");
    assert!(s["bytes"]["other"]["bytes"].as_u64().unwrap() < 4096, "{s}");
    let records = s["bytes"]["records"].as_u64().unwrap();
    let per_event = s["bytes_per_event"].as_f64().unwrap();
    assert_eq!(per_event, records as f64 / 4.0, "{s}");
    assert!((40.0..200.0).contains(&per_event), "{s}");
    // Everything stored, reservations not counted: a few hundred bytes per
    // event on a 4-event store, not the 64 KiB segment and spare.
    let stored = s["bytes_per_event_stored"].as_f64().unwrap();
    assert!(stored > per_event && stored < 2048.0, "{s}");
    assert_eq!(
        s["bytes"]["preallocated"].as_u64().unwrap(),
        (64 << 10) - s["bytes"]["segments_in_use"].as_u64().unwrap(),
        "{s}"
    );
    let text = sealog(&dir).arg("stats").assert().success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        text.contains("spare segment       64.0 KiB  (1 files"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("bytes per event"))
        .unwrap();
    assert!(
        line.contains(&format!("{per_event:.1} of records")),
        "{line}"
    );
}
