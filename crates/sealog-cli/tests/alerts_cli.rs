//! `sealog alerts`, run as a process on a seeded store.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

use std::net::IpAddr;
use std::path::Path;

use assert_cmd::Command;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp};
use sealog::{Store, StoreOptions};
use serde_json::Value;

const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;

const RULES: &str = r#"version = 1

[[rule]]
name = "brute-force"
severity = "high"
kind = "threshold"
select = { action = "auth.login", outcome = "failure" }
group_by = "source_ip"
count = 5
window = "1m"

[[rule]]
name = "role-granted"
severity = "critical"
kind = "match"
select = { action = "role.grant*" }
"#;

fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(dir);
    cmd
}

fn event(action: &str, outcome: Outcome, ip: &str, t: i64) -> Event {
    Event::new(
        Actor::new("user", "alice"),
        action,
        Resource::new("session", "web"),
        outcome,
    )
    .with_time(Timestamp::from_nanos(t))
    .with_source_ip(ip.parse::<IpAddr>().unwrap())
}

/// A store with a burst of failed logins 40 days ago, another 2 days ago,
/// a role grant a day ago and reads in between. Returns the seqs of the
/// recent burst and of the grant.
fn seed(dir: &Path) -> (Vec<u64>, u64) {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let now = Timestamp::now().as_nanos();
    for i in 0..5 {
        store
            .append(event(
                "auth.login",
                Outcome::Failure,
                "198.51.100.7",
                now - 40 * DAY + i * SECOND,
            ))
            .unwrap();
    }
    let mut burst = Vec::new();
    for i in 0..60 {
        store
            .append(event(
                "doc.read",
                Outcome::Success,
                "10.0.0.1",
                now - 3 * DAY + i * SECOND,
            ))
            .unwrap();
        if i % 10 == 0 && burst.len() < 5 {
            let seq = store
                .append(event(
                    "auth.login",
                    Outcome::Failure,
                    "203.0.113.9",
                    now - 2 * DAY + i * SECOND,
                ))
                .unwrap()
                .seq;
            burst.push(seq);
        }
    }
    let grant = store
        .append(event(
            "role.grant_admin",
            Outcome::Success,
            "10.0.0.1",
            now - DAY,
        ))
        .unwrap()
        .seq;
    store.close().unwrap();
    (burst, grant)
}

#[test]
fn alerts_test_prints_what_would_have_fired_within_since_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (burst, grant) = seed(&dir);
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let before = std::fs::read_dir(&dir).unwrap().count();

    let out = sealog(&dir)
        .args(["alerts", "test", "--rules"])
        .arg(&rules)
        .args(["--since", "30d", "--json"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let alerts: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 2, "{stdout}");
    assert_eq!(alerts[0]["rule"], "brute-force");
    assert_eq!(alerts[0]["group"], "203.0.113.9");
    assert_eq!(alerts[0]["seqs"], serde_json::json!(burst));
    assert_eq!(alerts[1]["rule"], "role-granted");
    assert_eq!(alerts[1]["seqs"], serde_json::json!([grant]));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("2 alert(s) from 2 rule(s); 6 candidate record(s) read"),
        "{stderr}"
    );

    // The text form names the rule, the group and the seqs.
    let out = sealog(&dir)
        .args(["alerts", "test", "--rules"])
        .arg(&rules)
        .args(["--since", "30d"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let seqs: Vec<String> = burst.iter().map(u64::to_string).collect();
    assert!(
        text.contains(&format!(
            "brute-force source_ip=203.0.113.9 count=5 seqs={}",
            seqs.join(",")
        )),
        "{text}"
    );

    // Without --since the old burst fires too.
    let out = sealog(&dir)
        .args(["alerts", "test", "--json", "--rules"])
        .arg(&rules)
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .count(),
        3
    );

    // Nothing was appended or created.
    let store = Store::open_read_only(&dir).unwrap();
    assert_eq!(store.len(), 71);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), before);
}

#[test]
fn a_wrong_rules_file_is_a_usage_error_naming_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    seed(&dir);
    let rules = tmp.path().join("rules.toml");
    std::fs::write(
        &rules,
        RULES.replace("window = \"1m\"", "window = \"a minute\""),
    )
    .unwrap();
    let out = sealog(&dir)
        .args(["alerts", "test", "--rules"])
        .arg(&rules)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("rules.toml` line 10, rule `brute-force` (#1): key `window`"),
        "{stderr}"
    );
    assert!(stderr.contains("fix:"), "{stderr}");
}
