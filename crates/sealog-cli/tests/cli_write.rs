//! Writing with the `sealog` command line, run as a process: `sealog
//! append` and `sealog import` (receipts, batches, rejected lines, exit
//! codes and messages), secrets in events and the privacy rules.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

mod support;

use std::time::Duration;

use predicates::prelude::*;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp};
use sealog::{Store, StoreOptions};
use serde_json::Value;

use support::cli::{count, event_line, import_events, json, ndjson, sealog, store_dir};

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
