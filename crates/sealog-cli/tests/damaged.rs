//! Reading commands on a damaged store: they exit 1 naming the damage
//! instead of printing a short answer, and `--allow-damaged` reads the rest
//! while naming every range it leaves out.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use sealog::format::frame::{self, FrameRead};
use sealog::format::segment::HEADER_LEN;
use sealog::format::{Actor, Event, Outcome, Resource};
use sealog::{Preallocation, Store, StoreOptions};
use serde_json::Value;

mod support;

const TOTAL: u64 = 240;

fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(dir);
    cmd
}

/// A closed store of `TOTAL` events in several sealed segments and an
/// active one; returns its segment files in log order.
fn sealed_store(dir: &Path) -> Vec<PathBuf> {
    let options = StoreOptions {
        segment_size: 4 << 10,
        preallocation: Preallocation::Allocate,
        ..StoreOptions::default()
    };
    let store = Store::open(dir, options).unwrap();
    for i in 0..TOTAL / 4 {
        let batch: Vec<Event> = (0..4)
            .map(|k| {
                Event::new(
                    Actor::new("user", format!("u{}", (i * 4 + k) % 3)),
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
    let files = support::cli::segment_files(dir);
    assert!(files.len() >= 5, "{files:?}");
    files
}

fn first_seq(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

fn name(path: &Path) -> String {
    format!("segments/{}", path.file_name().unwrap().to_str().unwrap())
}

/// Flips a byte inside the record of frame `n`; returns the frame's offset.
fn damage_record(file: &Path, n: usize) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let mut pos = HEADER_LEN;
    for _ in 0..n {
        let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) else {
            panic!("frame {n} of {}", file.display());
        };
        pos += f.len;
    }
    let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) else {
        panic!("frame {n} of {}", file.display());
    };
    let len = f.len;
    bytes[pos + len - 20] ^= 0x10;
    std::fs::write(file, &bytes).unwrap();
    pos
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The reading commands, each asked for everything it can show.
const READERS: [&[&str]; 7] = [
    &["query", "--count"],
    &["query", "--count-by", "actor"],
    &["query", "--format", "ndjson", "--limit", "10000"],
    &["export"],
    &["stats"],
    &["tail", "-n", "5", "--format", "ndjson"],
    &["proof", "--consistency", "--from", "1", "--to", "2"],
];

#[test]
fn a_deleted_sealed_segment_makes_every_reading_command_exit_1_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let files = sealed_store(&dir);
    let (from, to) = (first_seq(&files[1]), first_seq(&files[2]));
    std::fs::remove_file(&files[1]).unwrap();
    for args in READERS {
        sealog(&dir)
            .args(args)
            .assert()
            .code(1)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains("error: the store is damaged"))
            .stderr(predicate::str::contains(format!(
                "where: file {}",
                dir.join(name(&files[1])).display()
            )))
            .stderr(predicate::str::contains(format!(
                "seqs {from} to {}",
                to - 1
            )))
            .stderr(predicate::str::contains("restore"))
            .stderr(predicate::str::contains("sealog verify"))
            .stderr(predicate::str::contains("--allow-damaged"));
    }
}

#[test]
fn allow_damaged_reads_the_rest_and_names_the_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let files = sealed_store(&dir);
    let (from, to) = (first_seq(&files[1]), first_seq(&files[2]));
    std::fs::remove_file(&files[1]).unwrap();
    let gap = format!("seqs {from} to {} left out ({} records)", to - 1, to - from);
    let left = TOTAL - (to - from);

    for args in READERS {
        sealog(&dir)
            .args(args)
            .arg("--allow-damaged")
            .assert()
            .success()
            .stderr(predicate::str::contains(format!(
                "warning: damaged store, {gap}"
            )))
            .stderr(predicate::str::contains(name(&files[1])));
    }
    let out = sealog(&dir)
        .args([
            "query",
            "--count-by",
            "day",
            "--format",
            "json",
            "--allow-damaged",
        ])
        .assert()
        .success();
    let counted: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(counted["total"], left);
    let out = sealog(&dir)
        .args(["query", "--count", "--allow-damaged"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        left.to_string()
    );
    let out = sealog(&dir)
        .args(["export", "--allow-damaged"])
        .assert()
        .success();
    let seqs: Vec<u64> = lines(&out.get_output().stdout)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..TOTAL).filter(|s| !(from..to).contains(s)).collect();
    assert_eq!(seqs, expected);
    let out = sealog(&dir)
        .args(["stats", "--json", "--allow-damaged"])
        .assert()
        .success();
    let stats: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(stats["unreadable_events"], to - from);
    assert_eq!(stats["damage"][0]["first_seq"], from);
    assert_eq!(stats["damage"][0]["end_seq"], to);
}

#[test]
fn an_export_that_meets_a_damaged_record_exits_1_after_the_records_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let files = sealed_store(&dir);
    let target = &files[2];
    let offset = damage_record(target, 3);
    let bad = first_seq(target) + 3;

    let out = sealog(&dir)
        .arg("export")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "file {}, byte offset {offset}, seq {bad}",
            dir.join(name(target)).display()
        )))
        .stderr(predicate::str::contains("the output is incomplete"));
    let seqs: Vec<u64> = lines(&out.get_output().stdout)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..bad).collect::<Vec<_>>());
    // CSV too: the header and the rows before it.
    let out = sealog(&dir)
        .args(["export", "--format", "csv"])
        .assert()
        .code(1);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .count() as u64,
        bad + 1
    );
    // A page that holds the record fails too.
    sealog(&dir)
        .args(["query", "--limit", "10000", "--format", "ndjson"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("seq {bad}")));

    let out = sealog(&dir)
        .args(["export", "--allow-damaged"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "warning: damaged store, seq {bad} left out"
        )))
        .stderr(predicate::str::contains(format!("byte offset {offset}")));
    assert_eq!(lines(&out.get_output().stdout).len() as u64, TOTAL - 1);
}

#[test]
fn a_damaged_record_in_the_open_segment_is_refused_not_cut_short() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let files = sealed_store(&dir);
    let active = files.last().unwrap();
    // A record of the second batch (of four) in the active segment.
    let offset = damage_record(active, 5);
    let bad = first_seq(active) + 5;
    let kept = first_seq(active) + 4;
    for args in READERS {
        sealog(&dir)
            .args(args)
            .assert()
            .code(1)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(format!(
                "byte offset {offset}, seq {bad}"
            )));
    }
    let out = sealog(&dir)
        .args(["export", "--allow-damaged"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "seqs from {kept} on left out"
        )));
    assert_eq!(lines(&out.get_output().stdout).len() as u64, kept);
}
