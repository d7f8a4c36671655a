//! A complete store written by format version 1 lives in
//! `tests/fixtures/store-v1`: sealed segments, an active segment, the leaf
//! file and the manifest, with the records it must contain in
//! `tests/fixtures/store-v1.ndjson`. Every future build must read it,
//! verify it, and keep appending to a copy of it.
//!
//! Regenerate only for a deliberate format change (and keep the old one):
//! `SEALOG_WRITE_FIXTURES=1 cargo test -p sealog-tests --test store_fixture`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::{Path, PathBuf};

use sealog::format::Record;
use sealog::{Preallocation, Store, StoreOptions};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-v1")
}

fn options() -> StoreOptions {
    StoreOptions {
        segment_size: 4 << 10,
        preallocation: Preallocation::None,
        ..StoreOptions::default()
    }
}

fn write_fixture(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(dir, options()).unwrap();
    for i in 0..50 {
        store
            .append_batch(sealog_tests::events(i * 3, i * 3 + 3))
            .unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    let store = Store::open_read_only(dir).unwrap();
    let mut ndjson = String::new();
    for record in store.scan(..) {
        ndjson.push_str(&serde_json::to_string(&record.unwrap()).unwrap());
        ndjson.push('\n');
    }
    std::fs::write(dir.with_extension("ndjson"), ndjson).unwrap();
}

fn expected() -> Vec<Record> {
    std::fs::read_to_string(fixture_dir().with_extension("ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_version_1_store_reads_and_verifies() {
    if std::env::var_os("SEALOG_WRITE_FIXTURES").is_some() {
        write_fixture(&fixture_dir());
    }
    let expected = expected();
    assert_eq!(expected.len(), 150);
    let store = Store::open_read_only(fixture_dir()).unwrap();
    assert!(store.damage().is_empty());
    let records: Vec<Record> = store.scan(..).map(|r| r.unwrap()).collect();
    assert_eq!(records, expected);
    let report = store.verify().unwrap();
    assert_eq!(report.records, 150);
    assert!(report.sealed_segments >= 3, "{report:?}");
}

#[test]
fn a_copy_of_the_version_1_store_keeps_accepting_appends() {
    if std::env::var_os("SEALOG_WRITE_FIXTURES").is_some() {
        return; // the other test is rewriting the fixture
    }
    let copy = tempfile::tempdir().unwrap();
    for entry in walk(&fixture_dir()) {
        let dest = copy.path().join(entry.strip_prefix(fixture_dir()).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dest).unwrap();
    }
    let store = Store::open(copy.path(), options()).unwrap();
    assert!(
        store.recovery_report().is_clean(),
        "{:?}",
        store.recovery_report()
    );
    for i in 0..10 {
        store
            .append_batch(sealog_tests::events(100 + i * 4, 104 + i * 4))
            .unwrap();
    }
    store.wait_sealed().unwrap();
    assert_eq!(store.len(), 190);
    store.verify().unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
