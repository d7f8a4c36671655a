//! The helpers of the `sealog` command-line tests (`cli_*.rs`): `sealog`
//! on a store, store directories, JSON output and stores of known events.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use sealog::format::{Actor, Event, Outcome, Resource};
use sealog::{Preallocation, Store, StoreOptions};
use serde_json::Value;

/// Segments small enough that tests cross segment boundaries and stores
/// are quick to create.
const SEGMENT_SIZE: &str = "65536";

/// `sealog` on the store in `dir`.
pub fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(dir)
        .arg("--segment-size")
        .arg(SEGMENT_SIZE);
    cmd
}

pub fn store_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    (tmp, dir)
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

pub fn ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An event line for `sealog import`.
pub fn event_line(i: u64) -> String {
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
pub fn import_events(dir: &Path, n: u64) {
    let input: String = (0..n).map(|i| event_line(i) + "\n").collect();
    sealog(dir)
        .args(["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
}

pub fn count(dir: &Path) -> u64 {
    let out = sealog(dir).args(["query", "--count"]).assert().success();
    String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .parse()
        .unwrap()
}

/// A closed store of `batches` batches of `per_batch` events in 4 KiB
/// segments, made with the library: its segment files, in order.
pub fn sealed_store_of(dir: &Path, batches: u64, per_batch: u64) -> Vec<PathBuf> {
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
    segment_files(dir)
}

/// The store's segment files, in log order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}
