//! `sealog compress` and compressed sealed segments, through the binary:
//! what it rewrites and reports, that every reading command answers as
//! before, what `stats` shows, how it refuses bad input, and how a damaged
//! compressed block is reported and read around.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use sealog::format::compressed::CompressedSegment;
use sealog::format::frame::{self, FrameRead};
use sealog::format::segment::HEADER_LEN;
use serde_json::Value;
use support::cli::{event_line, segment_files, store_dir};

mod support;

/// Small segments, so that a few thousand events fill several (each
/// sealed one holds ~94 KiB of records, enough blocks of ~16 KiB to
/// compress with a trained dictionary).
const SEGMENT_SIZE: &str = "128KiB";

/// Events imported: three sealed segments and an open one.
const EVENTS: u64 = 4000;

/// The magic a compressed segment file starts with (docs/format.md).
const MAGIC: &[u8; 8] = b"SEALOGSZ";

/// `sealog` on the store in `dir`, with the same segment size for every
/// command (a writer opened without it would grow the open segment).
fn sealog(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealog"));
    cmd.env_remove("SEALOG_DATA_DIR")
        .env_remove("SEALOG_COMPRESS")
        .env_remove("SEALOG_SEGMENT_SIZE")
        .env("NO_COLOR", "1")
        .arg("--data-dir")
        .arg(dir)
        .arg("--segment-size")
        .arg(SEGMENT_SIZE);
    cmd
}

/// Imports `EVENTS` events (without --compress) into a new store in `dir`;
/// returns its sealed segment files (all but the open one, the last).
fn sealed_store(dir: &Path) -> Vec<PathBuf> {
    let input: String = (0..EVENTS).map(|i| event_line(i) + "\n").collect();
    sealog(dir)
        .args(["import", "-"])
        .write_stdin(input)
        .assert()
        .success();
    let mut files = segment_files(dir);
    assert!(files.len() >= 4, "{files:?}");
    files.pop();
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len > 64 << 10, "{}: {len} bytes", f.display());
    }
    files
}

fn is_compressed(file: &Path) -> bool {
    std::fs::read(file).unwrap().starts_with(MAGIC)
}

fn first_seq(file: &Path) -> u64 {
    file.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// `segments/NAME.seg`, as errors name it relative to the store.
fn name(file: &Path) -> String {
    format!("segments/{}", file.file_name().unwrap().to_str().unwrap())
}

fn stdout(cmd: &mut Command, args: &[&str]) -> String {
    let out = cmd.args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn seqs(ndjson: &[u8]) -> Vec<u64> {
    let mut seqs: Vec<u64> = String::from_utf8_lossy(ndjson)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

/// What the reading commands print, to compare before and after.
const READS: [&[&str]; 6] = [
    &["query", "--format", "ndjson", "--limit", "10000"],
    &[
        "query", "--format", "ndjson", "--actor", "u1", "--limit", "10000",
    ],
    &["query", "--count-by", "actor", "--format", "json"],
    &["query", "--count"],
    &["export", "--format", "ndjson"],
    &["export", "--format", "csv"],
];

#[test]
fn compress_rewrites_every_sealed_segment_and_reads_answer_the_same() {
    let (_tmp, dir) = store_dir();
    let sealed = sealed_store(&dir);
    let n = sealed.len();
    let open = segment_files(&dir).pop().unwrap();
    assert!(
        sealed.iter().all(|f| !is_compressed(f)),
        "a writer without --compress stores segments as written"
    );
    let sizes: Vec<u64> = sealed
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    let before: Vec<String> = READS.iter().map(|a| stdout(&mut sealog(&dir), a)).collect();
    assert_eq!(seqs(before[0].as_bytes()).len() as u64, EVENTS);
    assert_eq!(before[3].trim(), EVENTS.to_string());

    sealog(&dir)
        .arg("compress")
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(format!(
                r"^compressed {n} sealed segments: [0-9.]+ KiB → [0-9.]+ KiB \([0-9]+\.[0-9]× smaller\); 0 were compressed already\n$"
            ))
            .unwrap(),
        );
    for (f, size) in sealed.iter().zip(&sizes) {
        assert!(is_compressed(f), "{} is not compressed", f.display());
        let now = std::fs::metadata(f).unwrap().len();
        assert!(now * 2 < *size, "{}: {size} → {now} bytes", f.display());
    }
    assert!(!is_compressed(&open), "the open segment stays as written");

    sealog(&dir)
        .arg("compress")
        .assert()
        .success()
        .stdout(format!(
            "nothing to compress: {n} sealed segments, all compressed already\n"
        ));

    sealog(&dir)
        .arg("verify")
        .assert()
        .success()
        .stdout(predicate::str::contains("OK: the store at"))
        .stdout(predicate::str::contains(format!("records     {}", "4,000")));

    for (args, expected) in READS.iter().zip(&before) {
        let after = stdout(&mut sealog(&dir), args);
        assert!(
            after == *expected,
            "`{}` differs after compress",
            args.join(" ")
        );
    }
}

#[test]
fn stats_shows_the_compressed_segments() {
    let (_tmp, dir) = store_dir();
    let sealed = sealed_store(&dir);
    let n = sealed.len() as u64;

    let text = stdout(&mut sealog(&dir), &["stats"]);
    assert!(!text.contains("compressed"), "{text}");
    let json: Value =
        serde_json::from_str(&stdout(&mut sealog(&dir), &["stats", "--json"])).unwrap();
    assert_eq!(json["bytes"]["compressed"]["segments"], 0, "{json:#}");
    assert_eq!(json["bytes"]["compressed"]["bytes"], 0, "{json:#}");
    let records = json["bytes"]["records"].as_u64().unwrap();
    let stored = json["bytes"]["stored"].as_u64().unwrap();
    let leaf_bytes = json["bytes"]["leaf_file"]["bytes"].as_u64().unwrap();

    sealog(&dir).arg("compress").assert().success();

    let text = stdout(&mut sealog(&dir), &["stats"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("compressed"))
        .unwrap_or_else(|| panic!("no compressed line:\n{text}"));
    assert!(
        line.contains(&format!("in {n} sealed segments stored compressed")),
        "{line}"
    );
    assert!(line.contains("× smaller)"), "{line}");
    // Right under the record frames it is part of.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == line).unwrap();
    assert!(lines[at - 1].trim_start().starts_with("records"), "{text}");
    assert!(text.contains("events           4,000"), "{text}");

    let json: Value =
        serde_json::from_str(&stdout(&mut sealog(&dir), &["stats", "--json"])).unwrap();
    let compressed = &json["bytes"]["compressed"];
    assert_eq!(compressed["segments"], n, "{json:#}");
    let on_disk: u64 = sealed
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(compressed["bytes"], on_disk, "{json:#}");
    // The record frames they hold: those of every segment but the open one.
    let in_sealed = compressed["records"].as_u64().unwrap();
    assert!(in_sealed > 2 * on_disk, "{json:#}");
    assert!(in_sealed < records, "{json:#}");
    assert_eq!(
        json["bytes"]["records"], records,
        "the records are the same"
    );
    assert_eq!(json["events"], EVENTS, "{json:#}");
    // The leaf hashes inside the compressed segments are freed: the leaf
    // file keeps its length, and only what it holds counts as stored.
    let leaves = &json["bytes"]["leaf_file"];
    assert_eq!(leaves["bytes"], leaf_bytes, "{json:#}");
    let freed = leaf_bytes - leaves["allocated"].as_u64().unwrap();
    assert!(freed > 0, "{json:#}");
    let b = &json["bytes"];
    let all = b["total"]["bytes"].as_u64().unwrap();
    let reserved = b["preallocated"].as_u64().unwrap() + b["spare"]["bytes"].as_u64().unwrap();
    assert_eq!(
        b["stored"].as_u64().unwrap(),
        all - reserved - freed,
        "{json:#}"
    );
    assert!(b["stored"].as_u64().unwrap() < stored);
    assert!(
        text.contains("the leaf hashes of compressed segments freed)"),
        "{text}"
    );
}

#[test]
fn a_writer_opens_a_compressed_store_and_goes_on() {
    let (_tmp, dir) = store_dir();
    let sealed = sealed_store(&dir);
    sealog(&dir).arg("compress").assert().success();
    sealog(&dir)
        .args(["import", "-"])
        .write_stdin(
            (EVENTS..EVENTS + 1500)
                .map(|i| event_line(i) + "\n")
                .collect::<String>(),
        )
        .assert()
        .success();
    assert!(sealed.iter().all(|f| is_compressed(f)));
    sealog(&dir)
        .args(["query", "--count"])
        .assert()
        .success()
        .stdout(format!("{}\n", EVENTS + 1500));
    sealog(&dir)
        .args(["query", "--request-id", "req-1234", "--format", "ndjson"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""seq":1234,"#));
    sealog(&dir).arg("verify").assert().success();
    // The segment sealed since is compressed by the next `compress`; the
    // earlier ones are not counted again.
    sealog(&dir).arg("compress").assert().success().stdout(
        predicate::str::is_match(format!(
            r"^compressed [1-9][0-9]* sealed segments: .*; {} were compressed already\n$",
            sealed.len()
        ))
        .unwrap(),
    );
    sealog(&dir).arg("verify").assert().success();
}

#[test]
fn compress_on_a_missing_store_is_a_usage_error_and_creates_nothing() {
    let (_tmp, dir) = store_dir();
    sealog(&dir)
        .arg("compress")
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(format!(
            "error: no sealog store at `{}`",
            dir.display()
        )))
        .stderr(predicate::str::contains("--data-dir"));
    assert!(!dir.exists(), "compress creates no store");
}

#[test]
fn compress_refuses_levels_outside_1_to_19() {
    let (_tmp, dir) = store_dir();
    let sealed = sealed_store(&dir);
    for level in ["0", "20"] {
        sealog(&dir)
            .args(["compress", "--level", level])
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(format!(
                "invalid value '{level}' for '--level <N>'"
            )))
            .stderr(predicate::str::contains("1..=19"));
        assert!(sealed.iter().all(|f| !is_compressed(f)), "--level {level}");
    }
    sealog(&dir)
        .args(["compress", "--level", "19"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(format!(
            "compressed {} sealed segments",
            sealed.len()
        )));
    assert!(sealed.iter().all(|f| is_compressed(f)));
}

/// A compressed store whose middle sealed segment has a byte flipped in its
/// last block's stored bytes. Returns the damaged file, the block's number
/// and stored offset, and the seqs of the records in it.
fn damaged_store(dir: &Path) -> (PathBuf, usize, u64, Vec<u64>) {
    let sealed = sealed_store(dir);
    sealog(dir).arg("compress").assert().success();
    let target = sealed[1].clone();
    let mut bytes = std::fs::read(&target).unwrap();
    let parsed = CompressedSegment::parse(&bytes).unwrap();
    let i = parsed.block_count() - 1;
    let block = parsed.block(i).unwrap();
    // The records in the block: the frames of the image that start in it.
    let image = parsed.decode_image().unwrap();
    let mut pos = HEADER_LEN;
    let mut seq = first_seq(&target);
    let mut lost = Vec::new();
    while let Ok(FrameRead::Frame(f)) = frame::read_frame(&image[pos..]) {
        if (block.image_offset..block.image_end()).contains(&(pos as u64)) {
            lost.push(seq);
        }
        pos += f.len;
        seq += 1;
    }
    assert!(!lost.is_empty() && lost.len() < 1000, "{lost:?}");
    assert_eq!(*lost.last().unwrap(), first_seq(&sealed[2]) - 1);
    let at = (block.stored_offset + u64::from(block.stored_len) / 2) as usize;
    bytes[at] ^= 0x10;
    std::fs::write(&target, &bytes).unwrap();
    (target, i, block.stored_offset, lost)
}

#[test]
fn a_damaged_compressed_block_fails_verify_naming_the_file_and_block() {
    let (_tmp, dir) = store_dir();
    let (file, block, offset, _) = damaged_store(&dir);
    let path = dir.join(name(&file));
    sealog(&dir)
        .arg("verify")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: TAMPERING OR CORRUPTION DETECTED: the compressed segment does not decode",
        ))
        .stderr(predicate::str::contains(format!("(block {block})")))
        .stderr(predicate::str::contains(format!(
            "where: file {}, byte offset {offset}",
            path.display()
        )))
        .stderr(predicate::str::contains(format!(
            "fix:   records of {} cannot be read from this copy",
            path.display()
        )))
        .stderr(predicate::str::contains(format!(
            "the archive's {}",
            name(&file)
        )))
        .stderr(predicate::str::contains("sealog restore"))
        .stderr(predicate::str::contains("--allow-damaged"));
    // A reading command refuses too, with the same advice.
    sealog(&dir)
        .args(["query", "--format", "ndjson", "--limit", "10000"])
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("error: the store is damaged"))
        .stderr(predicate::str::contains(format!(
            "where: file {}, byte offset {offset}",
            path.display()
        )))
        .stderr(predicate::str::contains("cannot be read from this copy"));
}

/// `sealog query` of every record, reading around damage; succeeded.
fn query_allowing_damage(dir: &Path) -> assert_cmd::assert::Assert {
    sealog(dir)
        .args([
            "query",
            "--format",
            "ndjson",
            "--limit",
            "10000",
            "--allow-damaged",
        ])
        .assert()
        .success()
}

#[test]
fn allow_damaged_reads_every_record_outside_the_damaged_block() {
    let (_tmp, dir) = store_dir();
    let (file, _, _, lost) = damaged_store(&dir);
    let path = dir.join(name(&file));
    let expected: Vec<u64> = (0..EVENTS).filter(|s| !lost.contains(s)).collect();
    let (first, last) = (lost[0], *lost.last().unwrap());

    let out =
        query_allowing_damage(&dir).stderr(predicate::str::contains(path.display().to_string()));
    assert_eq!(seqs(&out.get_output().stdout), expected);
    // A query that needs no record of the block does not meet the damage.
    sealog(&dir)
        .args(["query", "--request-id", "req-5", "--format", "ndjson"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""seq":5,"#));

    let out = sealog(&dir)
        .args(["export", "--allow-damaged"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "warning: damaged store, seqs {first} to {last} left out ({} records)",
            lost.len()
        )))
        .stderr(predicate::str::contains(path.display().to_string()));
    assert_eq!(seqs(&out.get_output().stdout), expected);
}

/// A query reads newest first, so it meets the records of a damaged block
/// in descending order: they are one range all the same, named once.
#[test]
fn allow_damaged_query_names_a_damaged_block_once() {
    let (_tmp, dir) = store_dir();
    let (_, _, _, lost) = damaged_store(&dir);
    let out = query_allowing_damage(&dir);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let warnings = stderr.matches("warning: damaged store").count();
    assert_eq!(warnings, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "seqs {} to {} left out ({} records)",
            lost[0],
            lost.last().unwrap(),
            lost.len()
        )),
        "{stderr}"
    );
}
