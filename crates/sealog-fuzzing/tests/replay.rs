//! Runs every committed fuzz input — the corpus (`fuzz/corpus/<target>/`)
//! and the regressions (`fuzz/regressions/<target>/`) — through the same
//! function its cargo-fuzz target calls, so that CI re-checks every input
//! the fuzzers ever kept or crashed on without needing libFuzzer.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The input files of a folder; a folder that cannot be read fails the
/// test (a moved or misspelt folder must not replay nothing and pass).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replays the inputs of `kind/<target>`; returns how many there were.
fn replay(target: &sealog_fuzzing::Target, kind: &str) -> usize {
    replay_dir(target, &fuzz_dir().join(kind).join(target.name))
}

fn replay_dir(target: &sealog_fuzzing::Target, dir: &Path) -> usize {
    let files = inputs(dir);
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            // A fuzzer running meanwhile may replace its corpus files.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        let outcome = std::panic::catch_unwind(|| (target.run)(&bytes));
        assert!(
            outcome.is_ok(),
            "{} fails on {}: rerun with `cargo fuzz run {} {}`",
            target.name,
            file.display(),
            target.name,
            file.display()
        );
    }
    files.len()
}

#[test]
fn every_corpus_input_passes_its_target() {
    for target in sealog_fuzzing::TARGETS {
        let n = replay(target, "corpus");
        assert!(n > 0, "fuzz/corpus/{} is empty", target.name);
    }
}

/// Every folder under `fuzz/regressions/` names a target and holds at
/// least one input, and every input passes. Targets that never crashed
/// have no folder; an empty or unknown folder (a regression moved away,
/// a target renamed) fails instead of replaying nothing.
#[test]
fn every_regression_input_passes_its_target() {
    let root = fuzz_dir().join("regressions");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(
        !folders.is_empty(),
        "{} holds no regression",
        root.display()
    );
    let mut total = 0;
    for folder in &folders {
        let name = folder.file_name().unwrap().to_string_lossy();
        let target = sealog_fuzzing::TARGETS
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("fuzz/regressions/{name} names no fuzz target"));
        let n = replay_dir(target, folder);
        assert!(n > 0, "fuzz/regressions/{name} is empty");
        total += n;
    }
    eprintln!("{total} regression inputs in {} folders", folders.len());
}

#[test]
fn the_seed_generator_still_builds_valid_seeds() {
    let seeds = sealog_fuzzing::seeds::all().unwrap();
    for target in sealog_fuzzing::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| *t == target.name),
            "no seed for {}",
            target.name
        );
    }
    for (target, name, bytes) in &seeds {
        let t = sealog_fuzzing::TARGETS
            .iter()
            .find(|t| t.name == *target)
            .unwrap();
        assert!(
            bytes.len() <= sealog_fuzzing::MAX_INPUT,
            "seed {name} is too large"
        );
        (t.run)(bytes);
    }
}

#[test]
fn the_store_seeds_reach_recovery_and_verification() {
    for (target, name, bytes) in sealog_fuzzing::seeds::all().unwrap() {
        if target != "segment_recovery" {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        sealog_fuzzing::segment_recovery::materialize(&bytes, &dir).unwrap();
        let report = sealog::verify_dir(&dir).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert!(report.records > 0, "seed {name} holds no record");
        let store = sealog::Store::open(&dir, sealog::StoreOptions::default()).unwrap();
        // A torn seed loses its unfinished batch and gains a note saying so.
        assert!(store.len() + 1 >= report.records, "seed {name}");
        store.verify().unwrap();
    }
}
