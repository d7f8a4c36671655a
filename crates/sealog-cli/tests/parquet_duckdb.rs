//! The Parquet export read by a real SQL engine: DuckDB answers the
//! incident questions over `sealog export --format parquet`, and over the
//! Parquet copies `sealog archive --parquet` puts beside archived segments,
//! with the same rows as `sealog query` / `sealog export` on the same store.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

mod support;

use std::path::Path;

use assert_cmd::Command;
use sealog::format::merkle::leaf_hash;
use sealog::format::note::SigningKey;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp};
use sealog::workload::{Workload, WorkloadShape};
use sealog::{Store, StoreOptions};

use support::peers::duckdb;

const EVENTS: u64 = 6_000;
const MINUTE: i64 = 60 * 1_000_000_000;

fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR").arg("--data-dir").arg(dir);
    cmd
}

/// A store of the synthetic workload (three weeks from 2026-01-01) plus
/// login failures at recent times, so "the last hour" has answers.
fn make_store(dir: &Path) {
    make_store_sealed(dir, false);
}

/// [`make_store`], with every record in a sealed segment when `seal_all`
/// (so an archive holds them all).
fn make_store_sealed(dir: &Path, seal_all: bool) {
    let store = Store::open(
        dir,
        StoreOptions {
            segment_size: 256 * 1024,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let w = Workload::with_shape(
        2026,
        WorkloadShape {
            total: EVENTS,
            actors: 200,
            tenants: 20,
            time_span: 21 * 24 * 60 * MINUTE,
            ..WorkloadShape::default()
        },
    );
    for start in (0..EVENTS).step_by(500) {
        store
            .append_batch(w.events(start, (start + 500).min(EVENTS)))
            .unwrap();
    }
    let now = Timestamp::now().as_nanos();
    let mut failed = Vec::new();
    for i in 0..40i64 {
        // Every 5 minutes back from now: 11 within the last hour.
        let mut e = Event::new(
            Actor::new("user", format!("u{:05}", i % 3)),
            if i % 4 == 3 {
                "auth.login"
            } else {
                "auth.login_failed"
            },
            Resource::kind("session"),
            if i % 4 == 3 {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .with_time(Timestamp::from_nanos(now - (i * 5 + 2) * MINUTE))
        .with_tenant("tenant-003")
        .with_source_ip(format!("198.51.100.{}", i + 1).parse().unwrap());
        if i == 5 {
            // Awkward text survives the trip.
            e = e.with_reason("a \"quoted\", multi\nline | reason é");
        }
        failed.push(e);
    }
    store.append_batch(&failed).unwrap();
    if seal_all {
        store.roll().unwrap();
        store.wait_sealed().unwrap();
    }
    store.close().unwrap();
}

fn seqs_of_ndjson(out: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn sealog_seqs(dir: &Path, args: &[&str]) -> Vec<u64> {
    let out = sealog(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    seqs_of_ndjson(&out.stdout)
}

fn duck_seqs(source: &str, sql_where: &str, tail: &str) -> Vec<u64> {
    let script = format!(
        "import duckdb\n\
         con = duckdb.connect()\n\
         con.execute(\"SET TimeZone='UTC'\")\n\
         rows = con.execute(\"\"\"SELECT seq FROM {source} WHERE {sql_where} {tail}\"\"\").fetchall()\n\
         print(' '.join(str(r[0]) for r in rows))\n"
    );
    duckdb(&script)
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn duckdb_over_the_parquet_export_answers_the_incident_questions_like_sealog_query() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    make_store(&dir);
    let lake = tmp.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    let out = sealog(&dir)
        .args(["export", "--format", "parquet", "--out"])
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let single = tmp.path().join("all.parquet");
    let out = sealog(&dir)
        .args(["export", "--format", "parquet", "--out"])
        .arg(&single)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Hive partitions by event date: three weeks of January 2026 and today.
    let dates: Vec<String> = std::fs::read_dir(&lake)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(dates.iter().all(|d| d.starts_with("date=")), "{dates:?}");
    assert!(dates.len() >= 21, "{dates:?}");
    assert!(dates.contains(&"date=2026-01-01".to_owned()), "{dates:?}");
    let part = std::fs::read_dir(lake.join("date=2026-01-01"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(part, vec!["part-0.parquet".to_owned()]);

    let lake_src = format!(
        "read_parquet('{}/**/*.parquet', hive_partitioning = true)",
        lake.display()
    );
    let file_src = format!("read_parquet('{}')", single.display());

    // Every row is there once, in both layouts, with its partition date
    // equal to its event date.
    let script = format!(
        "import duckdb\n\
         con = duckdb.connect()\n\
         con.execute(\"SET TimeZone='UTC'\")\n\
         print(con.execute(\"SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM {lake_src}\").fetchone())\n\
         print(con.execute(\"SELECT count(*) FROM {lake_src} WHERE CAST(date AS VARCHAR) <> strftime(time, '%Y-%m-%d')\").fetchone())\n\
         print(con.execute(\"SELECT count(*) FROM {file_src}\").fetchone())\n\
         print(con.execute(\"SELECT typeof(time), typeof(recorded_at), typeof(outcome), typeof(leaf_hash), typeof(seq) FROM {file_src} LIMIT 1\").fetchone())\n"
    );
    let total = EVENTS + 40;
    let answer = duckdb(&script);
    let lines: Vec<&str> = answer.lines().collect();
    assert_eq!(lines[0], format!("({total}, {total}, 0, {})", total - 1));
    assert_eq!(lines[1], "(0,)");
    assert_eq!(lines[2], format!("({total},)"));
    // Timestamps with a time zone at nanosecond precision: DuckDB reads
    // timestamp[ns, UTC] as TIMESTAMPTZ_NS.
    assert_eq!(
        lines[3],
        "('TIMESTAMPTZ_NS', 'TIMESTAMPTZ_NS', 'VARCHAR', 'BLOB', 'UBIGINT')"
    );

    incident_questions_agree(&dir, &lake_src, &file_src);
}

/// The incident questions, each asked of `sealog` over the store at `dir`
/// and of DuckDB over the Parquet sources: the same seqs, in the same
/// order. `lake_src` must be date-partitioned (Hive).
fn incident_questions_agree(dir: &Path, lake_src: &str, file_src: &str) {
    // 1. The newest 100 events of one actor.
    let a = sealog_seqs(
        dir,
        &[
            "query",
            "--actor",
            "user:u00000",
            "--limit",
            "100",
            "--format",
            "ndjson",
        ],
    );
    let b = duck_seqs(
        lake_src,
        "actor_type = 'user' AND actor_id = 'u00000'",
        "ORDER BY seq DESC LIMIT 100",
    );
    assert_eq!(a.len(), 100);
    assert_eq!(a, b, "newest 100 of an actor");

    // 2. Failed logins in the last hour.
    let a = sealog_seqs(
        dir,
        &["export", "--action", "auth.login_failed", "--since", "1h"],
    );
    let b = duck_seqs(
        lake_src,
        "action = 'auth.login_failed' AND time >= now() - INTERVAL 1 HOUR AND time <= now()",
        "ORDER BY seq",
    );
    assert!(!a.is_empty() && a.len() < 30, "{a:?}");
    assert_eq!(a, b, "failed logins in the last hour");

    // 3. Denied events of a tenant.
    let a = sealog_seqs(
        dir,
        &["export", "--outcome", "denied", "--tenant", "tenant-003"],
    );
    let b = duck_seqs(
        lake_src,
        "outcome = 'denied' AND tenant = 'tenant-003'",
        "ORDER BY seq",
    );
    assert!(a.len() > 5, "{a:?}");
    assert_eq!(a, b, "denied events of a tenant");

    // 4. Exports by an actor.
    let a = sealog_seqs(
        dir,
        &["export", "--action", "*.export", "--actor", "u00001"],
    );
    let b = duck_seqs(
        lake_src,
        "action LIKE '%.export' AND actor_id = 'u00001'",
        "ORDER BY seq",
    );
    assert!(!a.is_empty());
    assert_eq!(a, b, "exports by an actor");

    // 5. Action + outcome + tenant in a one-week range, by event time.
    let a = sealog_seqs(
        dir,
        &[
            "export",
            "--action",
            "*.read",
            "--outcome",
            "success",
            "--tenant",
            "tenant-010",
            "--from",
            "2026-01-05",
            "--until",
            "2026-01-11",
            "--order",
            "time",
        ],
    );
    let b = duck_seqs(
        file_src,
        "action LIKE '%.read' AND outcome = 'success' AND tenant = 'tenant-010' \
         AND time >= TIMESTAMPTZ '2026-01-05 00:00:00+00' AND time < TIMESTAMPTZ '2026-01-12 00:00:00+00'",
        "ORDER BY time, seq",
    );
    assert!(!a.is_empty());
    assert_eq!(a, b, "action, outcome and tenant in a week");

    // 6. Everything from one network.
    let a = sealog_seqs(dir, &["export", "--source-ip", "10.7.0.0/16"]);
    let b = duck_seqs(lake_src, "source_ip LIKE '10.7.%'", "ORDER BY seq");
    assert!(!a.is_empty());
    assert_eq!(a, b, "events from a network");

    // 7. How many denied in a week (a count).
    let out = sealog(dir)
        .args([
            "query",
            "--outcome",
            "denied",
            "--from",
            "2026-01-08",
            "--until",
            "2026-01-14",
            "--count",
        ])
        .output()
        .unwrap();
    let count: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let b = duck_seqs(
        lake_src,
        "outcome = 'denied' AND date BETWEEN '2026-01-08' AND '2026-01-14'",
        "",
    );
    assert!(count > 0);
    assert_eq!(count, b.len() as u64, "denied in a week");
}

#[test]
fn duckdb_over_an_archive_with_parquet_copies_answers_like_sealog_query() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    make_store_sealed(&dir, true);
    let archive = tmp.path().join("archive");
    let url = format!("file://{}", archive.display());
    // The archive's manifests carry a checkpoint signed with the log's key.
    let key = SigningKey::from_seed("cli.parquet.test/log", &[7; 32]).unwrap();
    let key_file = tmp.path().join("log.key");
    std::fs::write(&key_file, format!("{}\n", key.to_text())).unwrap();
    let out = sealog(&dir)
        .arg("--signing-key")
        .arg(&key_file)
        .args(["archive", "--parquet", "--to", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sealog(&dir)
        .args(["verify", "--archive", &url, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = EVENTS + 40;
    assert_eq!(report["records"], total);
    assert!(report["segments"].as_u64().unwrap() > 1, "{report}");
    assert_eq!(report["parquet_segments"], report["segments"], "{report}");

    // The bucket's Parquet copies, read as one date-partitioned table.
    let lake_src = format!(
        "read_parquet('{}/parquet/**/*.parquet', hive_partitioning = true)",
        archive.display()
    );
    let script = format!(
        "import duckdb\n\
         con = duckdb.connect()\n\
         con.execute(\"SET TimeZone='UTC'\")\n\
         print(con.execute(\"SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM {lake_src}\").fetchone())\n\
         print(con.execute(\"SELECT count(*) FROM {lake_src} WHERE CAST(date AS VARCHAR) <> strftime(time, '%Y-%m-%d')\").fetchone())\n"
    );
    let answer = duckdb(&script);
    let lines: Vec<&str> = answer.lines().collect();
    assert_eq!(lines[0], format!("({total}, {total}, 0, {})", total - 1));
    assert_eq!(lines[1], "(0,)");
    incident_questions_agree(&dir, &lake_src, &lake_src);
}

#[test]
fn a_parquet_row_carries_every_field_and_the_leaf_hash_of_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    make_store(&dir);
    let file = tmp.path().join("auth.parquet");
    let out = sealog(&dir)
        .args([
            "export", "--format", "parquet", "--action", "auth.*", "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!(
        "import duckdb, json\n\
         con = duckdb.connect()\n\
         con.execute(\"SET TimeZone='UTC'\")\n\
         rows = con.execute(\"SELECT seq, epoch_ns(recorded_at), epoch_ns(time), actor_type, actor_id, action, resource_type, resource_id, outcome, tenant, source_ip, reason, metadata, hex(leaf_hash) FROM read_parquet('{}') ORDER BY seq\").fetchall()\n\
         for r in rows: print(json.dumps([str(x) if x is not None else None for x in r]))\n",
        file.display()
    );
    let rows: Vec<Vec<Option<String>>> = duckdb(&script)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 40);
    let store = Store::open_read_only(&dir).unwrap();
    for row in rows {
        let cell = |i: usize| row[i].clone();
        let seq: u64 = cell(0).unwrap().parse().unwrap();
        let record = store.get(seq).unwrap().unwrap();
        let e = &record.event;
        assert_eq!(cell(1).unwrap(), record.recorded_at.as_nanos().to_string());
        assert_eq!(cell(2).unwrap(), record.event_time().as_nanos().to_string());
        assert_eq!(cell(3).as_deref(), Some(e.actor.kind.as_str()));
        assert_eq!(cell(4).as_deref(), Some(e.actor.id.as_str()));
        assert_eq!(cell(5).as_deref(), Some(e.action.as_str()));
        assert_eq!(cell(6).as_deref(), Some(e.resource.kind.as_str()));
        assert_eq!(cell(7), e.resource.id.clone());
        assert_eq!(cell(8).as_deref(), Some(e.outcome.as_str()));
        assert_eq!(cell(9), e.tenant.clone());
        assert_eq!(
            cell(10),
            e.source
                .as_ref()
                .and_then(|s| s.ip)
                .map(|ip| ip.to_string())
        );
        assert_eq!(cell(11), e.reason.clone());
        assert_eq!(cell(12), None);
        // The row's leaf hash is the Merkle leaf of the stored record: the
        // seq and the hash tie the row to `sealog proof --seq`.
        let bytes = store.get_raw(seq).unwrap().unwrap();
        assert_eq!(
            cell(13).unwrap().to_ascii_lowercase(),
            hex::encode(leaf_hash(&bytes))
        );
    }
}

#[test]
fn a_parquet_export_never_replaces_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    make_store(&dir);
    let file = tmp.path().join("a.parquet");
    std::fs::write(&file, b"keep me").unwrap();
    let out = sealog(&dir)
        .args(["export", "--format", "parquet", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.parquet") && err.contains("fix:"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // A partitioned export into a directory that has the same part fails
    // naming it, and leaves no temporary file.
    let lake = tmp.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    for expect_ok in [true, false] {
        let out = sealog(&dir)
            .args([
                "export", "--format", "parquet", "--action", "auth.*", "--out",
            ])
            .arg(&lake)
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            expect_ok,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !expect_ok {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("exists already") && err.contains("part-"),
                "{err}"
            );
        }
    }
    let leftovers = walk(&lake)
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .count();
    assert_eq!(leftovers, 0);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}
