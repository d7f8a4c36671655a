//! The `sealog` command line, run as a process: success paths, exit codes
//! and the messages of every subcommand.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use sealog::format::checkpoint::{self, Checkpoint};
use sealog::format::merkle::{Hash, inclusion_proof, leaf_hash, root};
use sealog::format::note::SigningKey;
use sealog::format::receipt::Receipt;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp, record};
use sealog::{Preallocation, Store, StoreOptions};
use serde_json::Value;

/// Segments small enough that tests cross segment boundaries and stores
/// are quick to create.
const SEGMENT_SIZE: &str = "65536";

/// `sealog` on the store in `dir`.
fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(dir)
        .arg("--segment-size")
        .arg(SEGMENT_SIZE);
    cmd
}

fn store_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    (tmp, dir)
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An event line for `sealog import`.
fn event_line(i: u64) -> String {
    let outcome = ["success", "failure", "denied"][(i % 3) as usize];
    let action = ["customer.read", "customer.delete", "auth.login"][(i % 3) as usize];
    format!(
        r#"{{"time":"2025-11-23T10:{:02}:{:02}Z","actor":{{"type":"user","id":"u{}"}},"action":"{action}","resource":{{"type":"customer","id":"c{i}"}},"outcome":"{outcome}","tenant":"t{}","source":{{"ip":"10.0.{}.{}"}},"request_id":"req-{i}"}}"#,
        (i / 60) % 60,
        i % 60,
        i % 4,
        i % 2,
        i % 2,
        i % 250 + 1
    )
}

/// Imports `n` events (`event_line(0..n)`) into the store in `dir`.
fn import_events(dir: &Path, n: u64) {
    let input: String = (0..n).map(|i| event_line(i) + "\n").collect();
    sealog(dir)
        .args(["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
}

fn count(dir: &Path) -> u64 {
    let out = sealog(dir).args(["query", "--count"]).assert().success();
    String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------- append

#[test]
fn append_prints_a_receipt_and_the_event_reads_back() {
    let (_tmp, dir) = store_dir();
    let out = sealog(&dir)
        .args([
            "append",
            "--actor",
            "user:alice",
            "--action",
            "customer.delete",
            "--resource",
            "customer:4471",
            "--outcome",
            "success",
            "--tenant",
            "acme",
            "--source-ip",
            "203.0.113.9",
            "--user-agent",
            "curl/8.5",
            "--request-id",
            "req-1",
            "--reason",
            "erasure request",
            "--metadata",
            r#"{"plan":"pro"}"#,
            "--time",
            "2026-11-23T17:25:00Z",
            "--on-behalf-of",
            "user:support-7",
            "--session-id",
            "s-1",
        ])
        .assert()
        .success();
    let receipt = json(&out.get_output().stdout);
    assert_eq!(receipt["seq"], 0);
    for key in ["leaf_hash", "chain_hash"] {
        let h = receipt[key].as_str().unwrap();
        assert_eq!(h.len(), 64, "{key}: {h}");
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
    Timestamp::parse_rfc3339(receipt["recorded_at"].as_str().unwrap()).unwrap();

    let out = sealog(&dir)
        .args(["query", "--format", "ndjson"])
        .assert()
        .success();
    let records = ndjson(&out.get_output().stdout);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["seq"], 0);
    assert_eq!(r["actor"]["on_behalf_of"]["id"], "support-7");
    assert_eq!(r["actor"]["session_id"], "s-1");
    assert_eq!(r["source"]["user_agent"], "curl/8.5");
    assert_eq!(r["metadata"]["plan"], "pro");
    assert_eq!(r["time"], "2026-11-23T17:25:00Z");
}

#[test]
fn append_takes_the_event_as_json() {
    let (_tmp, dir) = store_dir();
    let event = r#"{"actor":{"type":"user","id":"bob"},"action":"auth.login","resource":{"type":"session"},"outcome":"denied"}"#;
    sealog(&dir)
        .args(["append", "--json", event])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""seq":0"#));
    sealog(&dir)
        .args(["append", "--json", "-"])
        .write_stdin(event)
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""seq":1"#));
    assert_eq!(count(&dir), 2);
}

#[test]
fn append_refuses_bad_flags_with_exit_2() {
    let (_tmp, dir) = store_dir();
    let base = [
        "append",
        "--action",
        "a.b",
        "--resource",
        "r",
        "--outcome",
        "success",
    ];
    sealog(&dir)
        .args(base)
        .args(["--actor", "alice"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--actor `alice` is not TYPE:ID"))
        .stderr(predicate::str::contains("e.g. --actor user:alice"));
    sealog(&dir)
        .args([
            "append",
            "--actor",
            "user:a",
            "--action",
            "a.b",
            "--resource",
            "r",
        ])
        .args(["--outcome", "maybe"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("maybe"));
    sealog(&dir)
        .args([
            "append",
            "--actor",
            "user:a",
            "--resource",
            "r",
            "--outcome",
            "success",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--action"));
    sealog(&dir)
        .args(base)
        .args(["--actor", "user:a", "--json", "{}"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
    sealog(&dir)
        .args(base)
        .args(["--actor", "user:a", "--time", "yesterday"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--time"))
        .stderr(predicate::str::contains("RFC 3339"));
    assert!(
        !dir.join("STORE").exists(),
        "no store is created by refused appends"
    );
}

#[test]
fn append_names_the_field_of_bad_json_and_invalid_events() {
    let (_tmp, dir) = store_dir();
    let cases: [(&[&str], &str); 9] = [
        (
            &[
                "--json",
                r#"{"actor":{"type":"user","id":5},"action":"a.b","resource":{"type":"r"},"outcome":"success"}"#,
            ],
            "`actor.id`",
        ),
        (
            &[
                "--json",
                r#"{"actor":{"type":"user","id":"a"},"action":"a.b","resource":{"type":"r"},"outcome":"success","source":{"ip":"300.1.1.1"}}"#,
            ],
            "`source.ip`",
        ),
        (&["--json", "{not json"], "is not a JSON event"),
        (
            &[
                "--actor",
                "user:a",
                "--action",
                "Customer.Delete",
                "--resource",
                "r",
                "--outcome",
                "success",
            ],
            "`action` must be",
        ),
        (
            &[
                "--actor",
                "user:a",
                "--action",
                "a.b",
                "--resource",
                "r",
                "--outcome",
                "success",
                "--metadata",
                "[1]",
            ],
            "`metadata` must be a JSON object",
        ),
        (
            &[
                "--actor",
                "user:a",
                "--action",
                "a.b",
                "--resource",
                "r",
                "--outcome",
                "success",
                "--metadata",
                r#"{"password":"x"}"#,
            ],
            "`metadata.password` looks like a secret",
        ),
        (
            &[
                "--actor",
                "user:a",
                "--action",
                "a.b",
                "--resource",
                "r",
                "--outcome",
                "success",
                "--metadata",
                r#"{"role":"user","role":"admin"}"#,
            ],
            "`metadata.role` the key `role` appears more than once",
        ),
        (
            &[
                "--json",
                r#"{"actor":{"type":"user","id":"a"},"action":"a.b","resource":{"type":"r"},"outcome":"success","metadata":{"u":{"role":"user","role":"admin"}}}"#,
            ],
            "`metadata.u.role` the key `role` appears more than once",
        ),
        (
            &[
                "--actor",
                "user:\u{202E}nimda",
                "--action",
                "a.b",
                "--resource",
                "r",
                "--outcome",
                "success",
            ],
            "`actor.id` contains U+202E (RIGHT-TO-LEFT OVERRIDE",
        ),
    ];
    for (args, expected) in cases {
        sealog(&dir)
            .arg("append")
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(expected))
            .stderr(
                predicate::str::contains("nothing was written")
                    .or(predicate::str::contains("fix:")),
            );
    }
}

// ---------------------------------------------------------------- import

#[test]
fn import_appends_in_batches_and_prints_a_summary() {
    let (tmp, dir) = store_dir();
    let file = tmp.path().join("events.ndjson");
    let mut text: String = (0..250).map(|i| event_line(i) + "\n").collect();
    text.push_str("\n   \n"); // blank lines are skipped
    std::fs::write(&file, text).unwrap();
    sealog(&dir)
        .arg("import")
        .arg(&file)
        .args(["--batch", "100"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(
                r"imported 250 events from .* in 3 batches, [0-9.]+ s, [0-9]+ events/s",
            )
            .unwrap(),
        );
    assert_eq!(count(&dir), 250);
    sealog(&dir).arg("verify").assert().success();
}

#[test]
fn a_bad_line_stops_the_import_and_nothing_of_its_batch_is_written() {
    let (tmp, dir) = store_dir();
    let file = tmp.path().join("events.ndjson");
    let mut lines: Vec<String> = (0..30).map(event_line).collect();
    lines[16] = lines[16].replace(r#""id":"u0""#, r#""id":"""#);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    sealog(&dir)
        .arg("import")
        .arg(&file)
        .args(["--batch", "10"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 17"))
        .stderr(predicate::str::contains("`actor.id` must not be empty"))
        .stderr(predicate::str::contains(
            "10 events (lines 1-10) were imported",
        ))
        .stderr(predicate::str::contains("tail -n +11"));
    // The first batch (lines 1-10) is written, nothing of lines 11-20.
    assert_eq!(count(&dir), 10);
}

#[test]
fn skip_invalid_writes_rejected_lines_to_a_rejects_file() {
    let (tmp, dir) = store_dir();
    let file = tmp.path().join("events.ndjson");
    let mut lines: Vec<String> = (0..20).map(event_line).collect();
    lines[3] = "not json".into();
    lines[12] = lines[12].replace(r#""outcome":"success""#, r#""outcome":"maybe""#);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    sealog(&dir)
        .arg("import")
        .arg(&file)
        .arg("--skip-invalid")
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 18 events"))
        .stdout(predicate::str::contains("rejected 2 lines"));
    let rejects = tmp.path().join("events.ndjson.rejects.ndjson");
    let rejected = ndjson(&std::fs::read(&rejects).unwrap());
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["line"], 4);
    assert_eq!(rejected[0]["input"], "not json");
    assert_eq!(rejected[1]["line"], 13);
    assert_eq!(rejected[1]["field"], "outcome");
    assert_eq!(count(&dir), 18);

    let custom = tmp.path().join("custom.ndjson");
    let (_tmp2, other) = store_dir();
    sealog(&other)
        .args(["import", "--skip-invalid", "--rejects"])
        .arg(&custom)
        .arg("-")
        .write_stdin(lines.join("\n"))
        .assert()
        .success();
    assert_eq!(ndjson(&std::fs::read(&custom).unwrap()).len(), 2);
}

#[test]
fn exported_records_import_again() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 40);
    let exported = sealog(&dir).arg("export").assert().success();
    let exported = exported.get_output().stdout.clone();
    let (_tmp2, copy) = store_dir();
    // Shift the seqs so that they cannot be kept by accident.
    sealog(&copy)
        .args([
            "append",
            "--actor",
            "user:x",
            "--action",
            "a.b",
            "--resource",
            "r",
            "--outcome",
            "success",
        ])
        .assert()
        .success();
    sealog(&copy)
        .args(["import", "-"])
        .write_stdin(exported.clone())
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 40 events"));
    let original = ndjson(&exported);
    let copied = ndjson(
        &sealog(&copy)
            .arg("export")
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(copied.len(), 41);
    for (a, b) in original.iter().zip(&copied[1..]) {
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("seq");
            v.as_object_mut().unwrap().remove("recorded_at");
            v
        };
        assert_eq!(strip(a), strip(b));
        assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
    }
}

/// The server's own audit events carry no `time`: their event time is the
/// time the store recorded them. Copying them must not move them to the
/// time of the import.
#[test]
fn export_then_import_keeps_the_event_times_of_events_without_time() {
    let (_tmp, dir) = store_dir();
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let mut params = sealog::format::Metadata::new();
    params.insert("params".into(), serde_json::json!({"actor": "user:alice"}));
    let audit = Event::new(
        Actor::new("system", "sealog-server"),
        "log.query",
        Resource::kind("log"),
        Outcome::Success,
    )
    .with_source_ip("127.0.0.1".parse().unwrap())
    .with_user_agent("curl/8.5")
    .with_metadata(params);
    let timed = Event::new(
        Actor::new("user", "alice"),
        "customer.delete",
        Resource::new("customer", "4471"),
        Outcome::Denied,
    )
    .with_time(Timestamp::parse_rfc3339("2025-11-23T10:00:00.123456789Z").unwrap())
    .with_tenant("acme")
    .with_request_id("req-1")
    .with_reason("ticket SEC-12");
    for event in [&audit, &timed, &audit] {
        store.append(event).unwrap();
    }
    let original: Vec<sealog::Record> = store.scan(..).map(|r| r.unwrap()).collect();
    store.close().unwrap();

    let exported = sealog(&dir).arg("export").assert().success();
    let exported = exported.get_output().stdout.clone();
    for (line, record) in ndjson(&exported).iter().zip(&original) {
        assert_eq!(
            line["time"].as_str(),
            Some(record.event_time().to_rfc3339().as_str()),
            "{line}"
        );
    }
    std::thread::sleep(Duration::from_millis(5));
    let (_tmp2, copy) = store_dir();
    sealog(&copy)
        .args(["import", "-"])
        .write_stdin(exported)
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 3 events"));
    let store = Store::open_read_only(&copy).unwrap();
    let copied: Vec<sealog::Record> = store.scan(..).map(|r| r.unwrap()).collect();
    assert_eq!(copied.len(), original.len());
    for (a, b) in original.iter().zip(&copied) {
        assert_eq!(b.event_time(), a.event_time(), "seq {}", a.seq);
        assert!(b.recorded_at > a.recorded_at, "a new recorded time");
        // Everything else the import takes is the same event.
        assert_eq!(b.event, a.clone().with_event_time().event);
    }
}

#[test]
fn import_of_an_unreadable_file_is_a_usage_error() {
    let (tmp, dir) = store_dir();
    sealog(&dir)
        .arg("import")
        .arg(tmp.path().join("missing.ndjson"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read import file"));
    sealog(&dir)
        .args(["import", "x", "--rejects", "r.ndjson"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--skip-invalid"));
}

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

#[test]
fn reading_a_missing_store_is_a_usage_error() {
    let (_tmp, dir) = store_dir();
    for cmd in ["query", "tail", "export", "stats", "verify"] {
        sealog(&dir)
            .arg(cmd)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("no sealog store at"))
            .stderr(predicate::str::contains("--data-dir"));
    }
    assert!(!dir.exists(), "reading commands create nothing");
}

#[test]
fn unknown_commands_and_flags_exit_2() {
    let (_tmp, dir) = store_dir();
    sealog(&dir).arg("frobnicate").assert().code(2);
    sealog(&dir).args(["query", "--bogus"]).assert().code(2);
    sealog(&dir).args(["tail", "-n", "x"]).assert().code(2);
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

// ---------------------------------------------------------------- verify

#[test]
fn verify_an_intact_store_exits_0_with_a_summary() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 600);
    sealog(&dir)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains("is intact"))
        .stdout(predicate::str::contains("records     600"))
        .stdout(predicate::str::is_match(r"segments    \d+ \(\d+ sealed, 1 open\)").unwrap())
        .stdout(predicate::str::contains("MB/s"));
    let out = sealog(&dir).args(["verify", "--json"]).assert().success();
    let report = json(&out.get_output().stdout);
    assert_eq!(report["intact"], true);
    assert_eq!(report["records"], 600);
}

/// A closed store of several sealed segments, made with the library.
fn sealed_store(dir: &Path) -> Vec<PathBuf> {
    sealed_store_of(dir, 60, 4)
}

/// A closed store of `batches` batches of `per_batch` events in 4 KiB
/// segments, made with the library: its segment files, in order.
fn sealed_store_of(dir: &Path, batches: u64, per_batch: u64) -> Vec<PathBuf> {
    let options = StoreOptions {
        segment_size: 4 << 10,
        preallocation: Preallocation::Allocate,
        ..StoreOptions::default()
    };
    let store = Store::open(dir, options).unwrap();
    for i in 0..batches {
        let batch: Vec<Event> = (0..per_batch)
            .map(|k| {
                Event::new(
                    Actor::new("user", format!("u{}", i * per_batch + k)),
                    "customer.read",
                    Resource::new("customer", format!("c{i}")),
                    Outcome::Success,
                )
            })
            .collect();
        store.append_batch(batch).unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn verify_a_tampered_store_exits_1_naming_the_file_offset_and_seq() {
    let (_tmp, dir) = store_dir();
    let files = sealed_store(&dir);
    assert!(files.len() >= 4, "{files:?}");
    sealog(&dir).arg("verify").assert().success();
    let target = &files[1];
    let mut bytes = std::fs::read(target).unwrap();
    // A byte inside the first record of the second segment (after the
    // 128-byte header and the 12-byte frame header).
    let offset = 128 + 12 + 20;
    bytes[offset] ^= 0x01;
    std::fs::write(target, &bytes).unwrap();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    sealog(&dir)
        .arg("verify")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("TAMPERING OR CORRUPTION DETECTED"))
        .stderr(predicate::str::contains(format!("segments/{name}")))
        .stderr(predicate::str::contains("byte offset 128"))
        .stderr(predicate::str::contains("seq "))
        .stderr(predicate::str::contains("checksum"));
    let out = sealog(&dir).args(["verify", "--json"]).assert().code(1);
    let report = json(&out.get_output().stdout);
    assert_eq!(report["intact"], false);
    assert_eq!(report["offset"], 128);
    assert!(report["file"].as_str().unwrap().ends_with(&name));
    sealog(&dir).args(["verify", "--bogus"]).assert().code(2);
}

// ---------------------------------------------------------------- keys and receipts

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("log");
    sealog(tmp.path())
        .args(["keygen", "--name", "audit.example.com/prod", "--out"])
        .arg(&prefix)
        .assert()
        .success()
        .stdout(predicate::str::contains("audit.example.com/prod+"));
    let key = std::fs::read_to_string(tmp.path().join("log.key")).unwrap();
    let public = std::fs::read_to_string(tmp.path().join("log.pub")).unwrap();
    assert!(key.starts_with("PRIVATE+KEY+audit.example.com/prod+") && key.ends_with('\n'));
    assert_eq!(key.matches('\n').count(), 1);
    let signing = SigningKey::parse(key.trim_end()).unwrap();
    assert_eq!(public, format!("{}\n", signing.verifier().to_text()));
    let mode = std::fs::metadata(tmp.path().join("log.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    sealog(tmp.path())
        .args(["keygen", "--name", "audit.example.com/prod", "--out"])
        .arg(&prefix)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("log.key")).unwrap(),
        key
    );
    sealog(tmp.path())
        .args(["keygen", "--name", "bad name", "--out"])
        .arg(tmp.path().join("other"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--name"));
    sealog(tmp.path())
        .args(["keygen", "--name", "x"])
        .assert()
        .code(2);
}

/// A log of `n` sealog records, signed with `key`, and the receipt of
/// record `index`.
fn receipt(key: &SigningKey, n: u64, index: u64) -> Receipt {
    let records: Vec<Vec<u8>> = (0..n)
        .map(|seq| {
            let event = Event::new(
                Actor::new("user", format!("u{seq}")),
                "customer.delete",
                Resource::new("customer", format!("c{seq}")),
                Outcome::Success,
            )
            .with_tenant("acme");
            record::encode(
                &event,
                seq,
                Timestamp::from_nanos(1_800_000_000_000_000_000 + seq as i64),
            )
            .unwrap()
        })
        .collect();
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
    let checkpoint = Checkpoint {
        origin: key.name().to_owned(),
        size: n,
        root: root(&leaves),
        extensions: vec!["sealog test".into()],
    };
    let signed = checkpoint::sign(&checkpoint, key).unwrap();
    Receipt {
        extra: Some(records[index as usize].clone()),
        index,
        proof: inclusion_proof(&leaves[..], index, n).unwrap(),
        checkpoint: signed,
    }
}

#[test]
fn verify_receipt_accepts_a_valid_receipt_and_says_why_others_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sealog(t)
        .args(["keygen", "--name", "example.com/sealog", "--out"])
        .arg(t.join("log"))
        .assert()
        .success();
    let key = SigningKey::parse(
        std::fs::read_to_string(t.join("log.key"))
            .unwrap()
            .trim_end(),
    )
    .unwrap();
    let good = receipt(&key, 7, 3);
    std::fs::write(t.join("good.tlog-proof"), good.to_text()).unwrap();
    let verify = |file: &str, public: &str| {
        let mut cmd = sealog(t);
        cmd.arg("verify-receipt")
            .arg(t.join(file))
            .arg("--public-key")
            .arg(t.join(public));
        cmd
    };
    let out = verify("good.tlog-proof", "log.pub").assert().success();
    let doc = json(&out.get_output().stdout);
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["tree_size"], 7);
    assert_eq!(doc["origin"], "example.com/sealog");
    assert_eq!(doc["record"]["seq"], 3);
    assert_eq!(doc["record"]["actor"]["id"], "u3");
    assert_eq!(doc["record"]["tenant"], "acme");

    // The record altered.
    let mut altered = good.clone();
    let extra = altered.extra.as_mut().unwrap();
    let at = extra.windows(2).position(|w| w == b"u3").unwrap();
    extra[at + 1] = b'4';
    std::fs::write(t.join("altered.tlog-proof"), altered.to_text()).unwrap();
    verify("altered.tlog-proof", "log.pub")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("INVALID"))
        .stderr(predicate::str::contains("inclusion proof does not verify"));
    // Another log's key.
    sealog(t)
        .args(["keygen", "--name", "example.com/sealog", "--out"])
        .arg(t.join("other"))
        .assert()
        .success();
    verify("good.tlog-proof", "other.pub")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("signature"));
    // A different index.
    let mut moved = good.clone();
    moved.index = 4;
    std::fs::write(t.join("moved.tlog-proof"), moved.to_text()).unwrap();
    verify("moved.tlog-proof", "log.pub").assert().code(1);
    // Not a receipt at all.
    std::fs::write(t.join("garbage.tlog-proof"), "hello\n").unwrap();
    verify("garbage.tlog-proof", "log.pub")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "not a well-formed tlog-proof@v1 receipt",
        ));
    // Usage errors: unreadable files, a malformed key, the private key.
    verify("missing.tlog-proof", "log.pub").assert().code(2);
    verify("good.tlog-proof", "missing.pub").assert().code(2);
    verify("good.tlog-proof", "log.key")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("private key"));
    std::fs::write(t.join("junk.pub"), "junk\n").unwrap();
    verify("good.tlog-proof", "junk.pub")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("malformed"));
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

// ---------------------------------------------------------------- bench

#[test]
fn bench_reports_throughput_latency_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sealog(&tmp.path().join("unused"))
        .args([
            "bench",
            "--events",
            "3000",
            "--batch",
            "100",
            "--threads",
            "2",
            "--json",
            "--preallocation",
            "allocate",
            "--dir",
        ])
        .arg(tmp.path())
        .assert()
        .success();
    let r = json(&out.get_output().stdout);
    for key in [
        "events_per_sec",
        "mb_per_sec",
        "p50_us",
        "p95_us",
        "p99_us",
        "max_us",
        "fsyncs",
        "events_per_fsync",
    ] {
        assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {r}");
    }
    assert_eq!(r["events"], 3000);
    assert_eq!(r["batch"], 100);
    assert_eq!(r["threads"], 2);
    assert_eq!(r["durability"], "group");
    assert_eq!(r["appends"], 30);
    assert!(r["p50_us"].as_f64() <= r["p99_us"].as_f64());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the store is removed"
    );

    let out = sealog(&tmp.path().join("unused"))
        .args([
            "bench",
            "--events",
            "500",
            "--batch",
            "1",
            "--threads",
            "4",
            "--durability",
            "buffered",
            "--preallocation",
            "allocate",
            "--keep",
            "--dir",
        ])
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("events/s"))
        .stdout(predicate::str::contains("p99"));
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("(kept)"), "{text}");
    let kept: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept.into_iter().next().unwrap().unwrap().path();
    sealog(&kept)
        .args(["query", "--count"])
        .assert()
        .success()
        .stdout("500\n");
}

#[test]
fn bench_emits_the_generated_events() {
    let (_tmp, dir) = store_dir();
    let out = sealog(&dir)
        .args(["bench", "--emit", "ndjson", "--events", "20"])
        .assert()
        .success();
    let lines = out.get_output().stdout.clone();
    let events = ndjson(&lines);
    assert_eq!(events.len(), 20);
    for e in &events {
        Event::from_json(e.to_string().as_bytes()).unwrap();
    }
    // The same seed gives the same events; they import as they are.
    let again = sealog(&dir)
        .args(["bench", "--emit", "ndjson", "--events", "20"])
        .assert()
        .success();
    assert_eq!(again.get_output().stdout, lines);
    sealog(&dir)
        .args(["import", "-"])
        .write_stdin(lines)
        .assert()
        .success();
    assert_eq!(count(&dir), 20);

    let out = sealog(&dir)
        .args(["bench", "--emit", "csv", "--events", "5"])
        .assert()
        .success();
    let mut reader = csv::Reader::from_reader(&out.get_output().stdout[..]);
    assert_eq!(&reader.headers().unwrap()[0], "time");
    assert_eq!(reader.records().count(), 5);
}

// ---------------------------------------------------------------- help

#[test]
fn every_subcommand_explains_its_flags_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    for sub in [
        "init",
        "append",
        "import",
        "query",
        "tail",
        "verify",
        "keygen",
        "verify-receipt",
        "stats",
        "export",
        "bench",
    ] {
        let out = sealog(tmp.path()).args([sub, "--help"]).assert().success();
        let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(help.contains("Examples:"), "{sub}: {help}");
        assert!(help.contains("Example: --data-dir"), "{sub}: {help}");
        assert!(
            help.contains("Example: --segment-size 16MiB"),
            "{sub}: the segment size is a documented option: {help}"
        );
    }
}

#[test]
fn checkpoints_receipts_and_signed_verification_end_to_end() {
    let (tmp, dir) = store_dir();
    let prefix = tmp.path().join("log");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--name", "audit.example.com/test", "--out"])
        .arg(&prefix)
        .assert()
        .success();
    let key = tmp.path().join("log.key");
    let public = tmp.path().join("log.pub");
    let lines: String = (0..300).map(|i| event_line(i) + "\n").collect();
    sealog(&dir)
        .arg("--signing-key")
        .arg(&key)
        .args(["import", "-"])
        .write_stdin(lines)
        .assert()
        .success();

    // Sign a checkpoint of the whole log and keep it "elsewhere".
    let out = sealog(&dir)
        .arg("--signing-key")
        .arg(&key)
        .arg("checkpoint")
        .assert()
        .success();
    let kept = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(kept.starts_with("audit.example.com/test\n300\n"), "{kept}");
    assert!(kept.contains("\nsealog-chain "), "{kept}");
    let kept_path = tmp.path().join("checkpoint.txt");
    std::fs::write(&kept_path, &kept).unwrap();
    // Without a key, signing is refused with a hint; --latest prints it.
    sealog(&dir)
        .env_remove("SEALOG_SIGNING_KEY")
        .arg("checkpoint")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--signing-key"));
    sealog(&dir)
        .args(["checkpoint", "--latest"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\n300\n"));

    // A receipt, verified offline with only the public key.
    let out = sealog(&dir)
        .args(["proof", "--seq", "123"])
        .assert()
        .success();
    let receipt_path = tmp.path().join("r.tlog-proof");
    std::fs::write(&receipt_path, &out.get_output().stdout).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .arg("verify-receipt")
        .arg(&receipt_path)
        .arg("--public-key")
        .arg(&public)
        .assert()
        .success()
        .stdout(predicate::str::contains("req-123"));

    // A consistency proof that verifies with the RFC algorithm.
    let out = sealog(&dir)
        .args([
            "proof",
            "--consistency",
            "--from",
            "100",
            "--to",
            "300",
            "--json",
        ])
        .assert()
        .success();
    let v = json(&out.get_output().stdout);
    assert_eq!(
        (v["old_size"].as_u64(), v["new_size"].as_u64()),
        (Some(100), Some(300))
    );
    let store = Store::open_read_only(&dir).unwrap();
    let proof: Vec<Hash> = v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    sealog::format::merkle::verify_consistency(
        100,
        300,
        &store.root(100).unwrap(),
        &store.root(300).unwrap(),
        &proof,
    )
    .unwrap();
    drop(store);

    // Signed verification passes with the right key, fails with another.
    sealog(&dir)
        .arg("verify")
        .arg("--public-key")
        .arg(&public)
        .arg("--checkpoint")
        .arg(&kept_path)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "checked with the public key, all valid",
        ));
    let other = tmp.path().join("other");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--name", "audit.example.com/test", "--out"])
        .arg(&other)
        .assert()
        .success();
    sealog(&dir)
        .arg("verify")
        .arg("--public-key")
        .arg(tmp.path().join("other.pub"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("checkpoint rejected"));
    // Passing the private key where the public key belongs gets a hint.
    sealog(&dir)
        .arg("verify")
        .arg("--public-key")
        .arg(&key)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("private key"));
}

// ---------------------------------------------------------------- first steps

/// The `sh` block of README.md that contains `marker`, as written.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    readme
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no README block with {marker:?}"))
        .to_owned()
}

/// Runs README commands with `bash -e` in `cwd`, where `sealog` is this
/// build's binary and nothing of the environment sets a sealog option.
fn run_readme(cwd: &Path, script: &str) -> std::process::Output {
    let bin = cwd.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("sealog");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sealog"), &link).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = sealog_testkit::process::command("bash")
        .arg("-ec")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_readme_first_steps_run_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    // keygen, append with --signing-key, query, proof --seq 0 (without the
    // key: the append signed a checkpoint as it closed), verify-receipt,
    // verify --public-key; with the default segment size.
    let block = readme_block("alias sealog=");
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("alias "))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = run_readme(tmp.path(), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"valid\": true"), "{stdout}");
    assert!(
        stdout.contains("signatures  1 checked with the public key, all valid"),
        "{stdout}"
    );
    let receipt = std::fs::read_to_string(tmp.path().join("first.tlog-proof")).unwrap();
    assert!(receipt.starts_with("c2sp.org/tlog-proof@v1\n"), "{receipt}");
}

#[test]
fn the_readme_server_steps_run_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let first = readme_block("alias sealog=");
    let first: String = first
        .lines()
        .filter(|l| !l.starts_with("alias "))
        .map(|l| format!("{l}\n"))
        .collect();
    run_readme(tmp.path(), &first);
    // The server steps on a free port instead of 7807 (tests run in
    // parallel, and other servers may use it); curl retries while the
    // server starts; the server is stopped with SIGTERM at the end.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let block = readme_block("sealog token create").replace("7807", &port.to_string());
    assert!(block.contains("serve &"), "{block}");
    let script = format!(
        "export SEALOG_LISTEN=127.0.0.1:{port}\n\
         curl() {{ command curl -sSf --retry 50 --retry-connrefused --retry-delay 0 \
         --retry-max-time 20 \"$@\"; }}\n\
         {block}\nkill -TERM $!\nwait $!\n"
    );
    let out = run_readme(tmp.path(), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"id\":\"alice\""), "{stdout}");
    sealog(&tmp.path().join("sealog-data"))
        .arg("verify-receipt")
        .arg(tmp.path().join("0.tlog-proof"))
        .arg("--public-key")
        .arg(tmp.path().join("demo.pub"))
        .assert()
        .success()
        .stdout(predicate::str::contains("customer.delete"));
}

#[test]
fn init_creates_an_empty_store_once_and_refuses_a_foreign_directory() {
    let (tmp, dir) = store_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_sealog"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--segment-size", "128KiB", "init"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("created an empty store"), "{text}");
    assert!(dir.join("STORE").exists());
    let first = dir.join("segments/00000000000000000000.seg");
    assert_eq!(std::fs::metadata(&first).unwrap().len(), 128 << 10);
    // Commands that need a store now work; a second init changes nothing.
    assert_eq!(count(&dir), 0);
    sealog(&dir)
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("already exists"));
    assert_eq!(std::fs::metadata(&first).unwrap().len(), 128 << 10);
    // A directory holding something else is not made a store.
    let foreign = tmp.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    sealog(&foreign)
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("notes.txt"))
        .stderr(predicate::str::contains("directory of its own"));
    assert!(!foreign.join("STORE").exists());
}

#[test]
fn segment_sizes_take_units_and_are_bounded() {
    let (_tmp, dir) = store_dir();
    for (size, message) in [
        ("16MB", "MiB"),
        ("2KiB", "outside"),
        ("2GiB", "outside"),
        ("lots", "not a size"),
    ] {
        Command::new(env!("CARGO_BIN_EXE_sealog"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["--segment-size", size, "init"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    assert!(!dir.exists(), "nothing was created");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .arg("--data-dir")
        .arg(&dir)
        .env("SEALOG_SEGMENT_SIZE", "1MiB")
        .arg("init")
        .assert()
        .success();
    let first = dir.join("segments/00000000000000000000.seg");
    assert_eq!(std::fs::metadata(first).unwrap().len(), 1 << 20);
}

#[test]
fn commands_other_than_writers_refuse_a_missing_store_and_create_nothing() {
    let (tmp, dir) = store_dir();
    let key = tmp.path().join("log");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--name", "audit.example.com/test", "--out"])
        .arg(&key)
        .assert()
        .success();
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["token", "create", "--name", "app", "--scopes", "ingest"],
        vec!["token", "list"],
        vec!["checkpoint"],
        vec!["stats"],
        vec!["proof", "--seq", "0"],
    ] {
        let out = sealog(&dir)
            .arg("--signing-key")
            .arg(tmp.path().join("log.key"))
            .args(&args)
            .timeout(Duration::from_secs(60))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!("no sealog store at `{}`", dir.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("sealog init --data-dir"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("--create"), "{args:?}: {stderr}");
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }
    // A tokens file elsewhere needs its directory to exist.
    let elsewhere = tmp.path().join("etc/sealog/tokens.json");
    sealog(&dir)
        .args([
            "token", "create", "--name", "app", "--scopes", "ingest", "--tokens",
        ])
        .arg(&elsewhere)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"))
        .stderr(predicate::str::contains("mkdir -p"));
    assert!(!tmp.path().join("etc").exists());
}

#[test]
fn proof_without_a_covering_checkpoint_says_how_to_sign_one_and_signs_with_the_key() {
    let (tmp, dir) = store_dir();
    import_events(&dir, 3);
    sealog(&dir)
        .args(["proof", "--seq", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no signed checkpoint covers record 1 yet (the store has none)",
        ))
        .stderr(predicate::str::contains(
            "--signing-key PREFIX.key proof --seq 1",
        ));
    let prefix = tmp.path().join("log");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--name", "audit.example.com/test", "--out"])
        .arg(&prefix)
        .assert()
        .success();
    let out = sealog(&dir)
        .arg("--signing-key")
        .arg(tmp.path().join("log.key"))
        .args(["proof", "--seq", "1"])
        .assert()
        .success();
    let path = tmp.path().join("1.tlog-proof");
    std::fs::write(&path, &out.get_output().stdout).unwrap();
    sealog(&dir)
        .arg("verify-receipt")
        .arg(&path)
        .arg("--public-key")
        .arg(tmp.path().join("log.pub"))
        .assert()
        .success();
    // The checkpoint it signed is in the history: no key needed any more.
    sealog(&dir)
        .args(["proof", "--seq", "2"])
        .assert()
        .success();
    sealog(&dir)
        .args(["proof", "--seq", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "record 3 does not exist (the log has 3 records)",
        ));
}

#[test]
fn verify_counts_the_signatures_it_checked_and_says_when_there_were_none() {
    let (tmp, dir) = store_dir();
    import_events(&dir, 5);
    let prefix = tmp.path().join("log");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--name", "audit.example.com/test", "--out"])
        .arg(&prefix)
        .assert()
        .success();
    let public = tmp.path().join("log.pub");
    let out = sealog(&dir)
        .arg("verify")
        .arg("--public-key")
        .arg(&public)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("signatures  NONE checked"), "{text}");
    assert!(text.contains("sealog checkpoint --signing-key"), "{text}");
    assert!(!text.contains("signatures checked"), "{text}");
    let out = sealog(&dir)
        .args(["verify", "--json", "--public-key"])
        .arg(&public)
        .assert()
        .success();
    assert_eq!(json(&out.get_output().stdout)["signatures_checked"], 0);
    // A writer with the key signs one as it closes; then one is checked,
    // and the records after it are said to be uncovered.
    sealog(&dir)
        .arg("--signing-key")
        .arg(tmp.path().join("log.key"))
        .args(["import", "-"])
        .write_stdin(event_line(5) + "\n")
        .assert()
        .success();
    import_events(&dir, 2);
    let out = sealog(&dir)
        .arg("verify")
        .arg("--public-key")
        .arg(&public)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("signatures  1 checked with the public key, all valid; the last 2 records are not covered"),
        "{text}"
    );
}

#[test]
fn verify_rates_are_over_the_records_not_the_preallocated_segment() {
    let (_tmp, dir) = store_dir();
    import_events(&dir, 10);
    let out = sealog(&dir).args(["verify", "--json"]).assert().success();
    let v = json(&out.get_output().stdout);
    let stats = sealog(&dir).args(["stats", "--json"]).assert().success();
    let s = json(&stats.get_output().stdout);
    let records = v["record_bytes"].as_u64().unwrap();
    assert_eq!(Some(records), s["bytes"]["records"].as_u64(), "{v} {s}");
    // The open segment is read whole (64 KiB), but only its records count.
    assert!(v["bytes"].as_u64().unwrap() >= 65536, "{v}");
    assert!(records > 10 * 60 && records < 10 * 400, "{v}");
    let secs = v["elapsed_secs"].as_f64().unwrap();
    let rate = v["mb_per_sec"].as_f64().unwrap();
    if secs > 0.0 {
        assert!(
            (rate - records as f64 / 1e6 / secs).abs() < 1e-6 * rate.max(1.0),
            "{v}"
        );
    }
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

// ---------------------------------------------------------------- secrets

#[test]
fn secrets_are_refused_with_the_fix_by_default_and_redacted_with_secrets_redact() {
    let (_tmp, dir) = store_dir();
    let append = || {
        let mut cmd = sealog(&dir);
        cmd.args([
            "append",
            "--actor",
            "user:alice",
            "--action",
            "auth.login",
            "--resource",
            "session",
            "--outcome",
            "success",
            "--metadata",
            r#"{"password":"hunter2","plan":"pro"}"#,
        ]);
        cmd
    };
    append()
        .assert()
        .code(2)
        .stderr(predicate::str::contains("metadata.password"))
        .stderr(predicate::str::contains("--secrets redact"));
    append().args(["--secrets", "redact"]).assert().success();
    append().env("SEALOG_SECRETS", "redact").assert().success();
    append().args(["--secrets", "allow"]).assert().code(2);
    let line = r#"{"actor":{"type":"user","id":"bob"},"action":"db.connect","resource":{"type":"db"},"outcome":"success","metadata":{"db":{"api_key":"k-123","host":"h"}}}"#;
    sealog(&dir)
        .args(["import", "-"])
        .write_stdin(format!("{line}\n"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("metadata.db.api_key"))
        .stderr(predicate::str::contains("--secrets redact"));
    sealog(&dir)
        .args(["import", "--secrets", "redact", "-"])
        .write_stdin(format!("{line}\n"))
        .assert()
        .success();
    let out = sealog(&dir).args(["export"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        !text.contains("hunter2") && !text.contains("k-123"),
        "{text}"
    );
    assert_eq!(text.matches("[REDACTED]").count(), 3, "{text}");
    assert_eq!(text.matches(r#""plan":"pro""#).count(), 2, "{text}");
    assert!(text.contains(r#""host":"h""#), "{text}");
}

#[test]
fn rejected_lines_are_kept_owner_only_with_secret_values_redacted() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, dir) = store_dir();
    let rejects = tmp.path().join("rejects.ndjson");
    std::fs::write(&rejects, "old contents\n").unwrap();
    std::fs::set_permissions(&rejects, std::fs::Permissions::from_mode(0o644)).unwrap();
    let lines = [
        event_line(0),
        r#"{"actor":{"type":"user","id":"a"},"action":"auth.login","resource":{"type":"s"},"outcome":"success","metadata":{"password":"hunter2","plan":"pro"}}"#.to_owned(),
        "token=abc123 not json".to_owned(),
        r#"{"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"s"},"outcome":"maybe","metadata":{"db":{"api_key":"k-123"}}}"#.to_owned(),
        "plain garbage".to_owned(),
        event_line(1),
    ];
    sealog(&dir)
        .args(["import", "--skip-invalid", "--rejects"])
        .arg(&rejects)
        .arg("-")
        .write_stdin(lines.join("\n") + "\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("rejected 4 lines"));
    let mode = std::fs::metadata(&rejects).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&rejects).unwrap();
    for secret in ["old contents", "hunter2", "abc123", "k-123"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let rejected = ndjson(text.as_bytes());
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    assert_eq!(rejected[0]["field"], "metadata.password");
    let input: Value = serde_json::from_str(rejected[0]["input"].as_str().unwrap()).unwrap();
    assert_eq!(input["metadata"]["password"], "[REDACTED]");
    assert_eq!(input["metadata"]["plan"], "pro");
    assert!(rejected[1]["input"].as_str().unwrap().contains("withheld"));
    let input: Value = serde_json::from_str(rejected[2]["input"].as_str().unwrap()).unwrap();
    assert_eq!(input["metadata"]["db"]["api_key"], "[REDACTED]");
    assert_eq!(input["outcome"], "maybe");
    assert_eq!(rejected[3]["input"], "plain garbage");
    assert_eq!(count(&dir), 2);
}

#[test]
fn privacy_flags_transform_appends_imports_and_queries() {
    let (tmp, dir) = store_dir();
    let key = tmp.path().join("privacy.key");
    std::fs::write(&key, [4u8; 32]).unwrap();
    let key_arg = key.to_str().unwrap();
    let rules = [
        "--privacy",
        "actor.id=hash",
        "--privacy",
        "source.ip=mask",
        "--privacy-key",
        key_arg,
    ];
    sealog(&dir)
        .args([
            "append",
            "--actor",
            "user:alice",
            "--action",
            "auth.login",
            "--resource",
            "session",
            "--outcome",
            "success",
            "--source-ip",
            "198.51.100.77",
        ])
        .args(rules)
        .assert()
        .success();
    let line = r#"{"actor":{"type":"user","id":"bob"},"action":"db.connect","resource":{"type":"db"},"outcome":"success","source":{"ip":"198.51.100.5"},"metadata":{"email":"bob@example.com"}}"#;
    sealog(&dir)
        .args(["import", "--privacy", "metadata.email=drop", "-"])
        .args(rules)
        .write_stdin(format!("{line}\n"))
        .assert()
        .success();
    let query = |args: &[&str]| -> Vec<Value> {
        let out = sealog(&dir)
            .args(["query", "--format", "ndjson"])
            .args(args)
            .assert()
            .success();
        ndjson(&out.get_output().stdout)
    };
    let with_key = |filter: &[&str]| -> Vec<Value> {
        let mut args = filter.to_vec();
        args.extend(rules);
        query(&args)
    };
    let alice = with_key(&["--actor", "user:alice"]);
    assert_eq!(alice.len(), 1, "{alice:?}");
    let hashed = sealog::privacy::PrivacyKey::from_bytes(&[4u8; 32])
        .unwrap()
        .hash(b"alice");
    assert_eq!(alice[0]["actor"]["id"], hashed.as_str());
    assert_eq!(alice[0]["source"]["ip"], "198.51.100.0");
    let bob = with_key(&["--actor", "bob", "--source-ip", "198.51.100.5"]);
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert!(
        bob[0]
            .get("metadata")
            .is_none_or(|m| m.get("email").is_none())
    );
    assert_eq!(with_key(&["--source-ip", "198.51.100.0/24"]).len(), 2);
    for cmd in ["tail", "export"] {
        let out = sealog(&dir)
            .args([cmd, "--format", "ndjson", "--actor", "user:alice"])
            .args(rules)
            .assert()
            .success();
        let found = ndjson(&out.get_output().stdout);
        assert_eq!(found.len(), 1, "{cmd}: {found:?}");
        assert_eq!(found[0]["actor"]["id"], hashed.as_str(), "{cmd}");
    }
    // Without the key, clear values are not in the records; the stored
    // form is. The query says why it may find nothing (after its answer:
    // the check runs beside the query).
    assert!(query(&["--actor", "user:alice"]).is_empty());
    sealog(&dir)
        .args(["query", "--actor", "user:alice"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: the log records that its writer applies the privacy rules",
        ));
    // With the newest writer's rules and key, no warning.
    sealog(&dir)
        .args([
            "query",
            "--actor",
            "user:alice",
            "--privacy",
            "metadata.email=drop",
        ])
        .args(rules)
        .assert()
        .success()
        .stderr(predicate::str::contains("warning:").not());
    assert_eq!(query(&["--actor", &format!("user:{hashed}")]).len(), 1);
    // A short key and a hash rule without a key are usage errors.
    std::fs::write(&key, [4u8; 8]).unwrap();
    sealog(&dir)
        .args(["query", "--actor", "alice"])
        .args(rules)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("at least 32"));
    sealog(&dir)
        .args(["query", "--actor", "alice", "--privacy", "actor.id=hash"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--privacy-key"));
}

/// A store with more segment files than the process's limit on open files
/// is still read and written: an open closes each sealed segment's file
/// once it is mapped, and every command raises its soft limit to the hard
/// one.
#[cfg(unix)]
#[test]
fn a_store_with_more_segments_than_the_open_file_limit_is_read() {
    let (_tmp, dir) = store_dir();
    let segments = sealed_store_of(&dir, 280, 20).len();
    assert!(segments > 64, "{segments} segment files");
    // `sealog ARGS` under the limits `ulimit` sets.
    let under = |limits: &str, args: &[&str]| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("{limits} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_sealog"))
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .env_remove("SEALOG_DATA_DIR")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for limits in ["ulimit -Sn 48", "ulimit -n 48"] {
        let read = under(limits, &["query", "--count"]);
        assert!(
            read.status.success(),
            "{limits}: {}",
            String::from_utf8_lossy(&read.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "5600");
    }
    // A writer, too, under the hard limit and under a soft one it raises.
    let event = r#"{"actor":{"type":"user","id":"u1"},"action":"customer.read","resource":{"type":"customer","id":"c1"},"outcome":"success"}"#;
    for limits in ["ulimit -n 48", "ulimit -Sn 48"] {
        let append = under(
            limits,
            &["--segment-size", "4096", "append", "--json", event],
        );
        assert!(
            append.status.success(),
            "{limits}: {}",
            String::from_utf8_lossy(&append.stderr)
        );
    }
    let count = under("true", &["query", "--count"]);
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "5602");
}
