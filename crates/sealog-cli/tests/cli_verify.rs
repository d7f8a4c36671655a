//! Checking a store with the `sealog` command line, run as a process:
//! `sealog verify` (intact, tampered, signed), `sealog keygen`, `sealog
//! verify-receipt`, `sealog checkpoint` and `sealog proof`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

mod support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use sealog::Store;
use sealog::format::checkpoint::{self, Checkpoint};
use sealog::format::merkle::{Hash, inclusion_proof, leaf_hash, root};
use sealog::format::note::SigningKey;
use sealog::format::receipt::Receipt;
use sealog::format::{Actor, Event, Outcome, Resource, Timestamp, record};

use support::cli::{event_line, import_events, json, sealed_store_of, sealog, store_dir};

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
    assert_eq!(report["indexes_checked"], true);
}

#[test]
fn verify_log_only_says_the_index_files_were_not_checked() {
    let (_tmp, dir) = store_dir();
    let files = sealed_store(&dir);
    sealog(&dir).arg("verify").assert().success().stdout(
        predicate::str::is_match(r"indexes     [1-9]\d* index sidecar\(s\) and [1-9]").unwrap(),
    );
    // A sidecar that no longer matches its records: only the full check
    // sees it.
    let sidecar = files[0].with_extension("idx");
    let mut bytes = std::fs::read(&sidecar).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&sidecar, &bytes).unwrap();
    sealog(&dir).arg("verify").assert().code(1);
    sealog(&dir)
        .args(["verify", "--log-only"])
        .assert()
        .success()
        .stdout(predicate::str::contains("is intact"))
        .stdout(predicate::str::contains(
            "indexes     NOT checked (--log-only)",
        ));
    let out = sealog(&dir)
        .args(["verify", "--log-only", "--json"])
        .assert()
        .success();
    let report = json(&out.get_output().stdout);
    assert_eq!(report["indexes_checked"], false);
    assert_eq!(report["sidecars_checked"], 0);
    sealog(&dir)
        .args(["verify", "--log-only", "--archive", "file:///nowhere"])
        .assert()
        .code(2);
}

/// A closed store of several sealed segments, made with the library.
fn sealed_store(dir: &Path) -> Vec<PathBuf> {
    sealed_store_of(dir, 60, 4)
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

// ---------------------------------------------------------------- checkpoints and proofs

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
