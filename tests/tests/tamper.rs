//! Tampering with sealed segments is detected by verification, which names
//! where: flipped bytes, deleted, swapped and rewritten records, truncated
//! and deleted segments.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::fs;
use std::path::{Path, PathBuf};

use sealog::format::frame;
use sealog::{CorruptionKind, Error, verify_dir};
use sealog_tests::{events, frames, open, segment_files};

/// A closed store with several sealed segments and an active one.
fn sealed_store() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 4 << 10);
    for i in 0..60 {
        store.append_batch(events(i * 4, i * 4 + 4)).unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    verify_dir(dir.path()).expect("the untouched store verifies");
    let files = segment_files(dir.path());
    assert!(files.len() >= 5, "{} segments", files.len());
    (dir, files)
}

fn corruption(dir: &Path) -> sealog::Corruption {
    match verify_dir(dir) {
        Ok(report) => panic!("tampering went undetected: {report:?}"),
        Err(Error::Corruption(c)) => *c,
        Err(other) => panic!("expected a corruption report, got: {other}"),
    }
}

/// [`corruption`], which a verification of the log only (it reads the
/// records another way) must report the same.
fn corruption_in_log(dir: &Path) -> sealog::Corruption {
    let c = corruption(dir);
    let log_only = sealog::VerifyOptions {
        log_only: true,
        ..Default::default()
    };
    match sealog::verify_dir_with(dir, &log_only) {
        Err(Error::Corruption(l)) => assert_eq!(l.to_string(), c.to_string()),
        other => panic!("the log-only verification said {other:?}, the full one {c}"),
    }
    c
}

fn name(path: &Path) -> String {
    format!("segments/{}", path.file_name().unwrap().to_str().unwrap())
}

#[test]
fn flipping_any_byte_of_a_sealed_segment_is_detected_and_located() {
    let (dir, files) = sealed_store();
    let target = &files[2];
    let original = fs::read(target).unwrap();
    for offset in 0..original.len() {
        let mut bytes = original.clone();
        bytes[offset] ^= 0x20;
        fs::write(target, &bytes).unwrap();
        let c = corruption_in_log(dir.path());
        assert_eq!(c.location.file, name(target), "flip at {offset}: {c}");
    }
    fs::write(target, &original).unwrap();
    verify_dir(dir.path()).unwrap();
}

#[test]
fn a_flipped_record_byte_names_the_record() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let mut bytes = fs::read(target).unwrap();
    let (offset, len) = frames(&bytes)[3];
    bytes[offset + len - 20] ^= 1;
    fs::write(target, &bytes).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.offset, Some(offset as u64), "{c}");
    assert!(c.location.seq.is_some(), "{c}");
    assert!(matches!(c.kind, CorruptionKind::Frame(_)), "{c}");
    assert!(c.to_string().contains("checksum mismatch"), "{c}");
}

#[test]
fn deleting_a_record_is_detected() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let bytes = fs::read(target).unwrap();
    let (offset, len) = frames(&bytes)[2];
    let mut tampered = bytes[..offset].to_vec();
    tampered.extend_from_slice(&bytes[offset + len..]);
    fs::write(target, &tampered).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, name(target), "{c}");
    assert!(
        matches!(
            c.kind,
            CorruptionKind::SeqMismatch { .. } | CorruptionKind::FieldMismatch { .. }
        ),
        "{c}"
    );
}

#[test]
fn swapping_two_records_is_detected() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let bytes = fs::read(target).unwrap();
    let f = frames(&bytes);
    let (a, alen) = f[1];
    let (b, blen) = f[2];
    let mut tampered = bytes[..a].to_vec();
    tampered.extend_from_slice(&bytes[b..b + blen]);
    tampered.extend_from_slice(&bytes[a..a + alen]);
    tampered.extend_from_slice(&bytes[b + blen..]);
    fs::write(target, &tampered).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, name(target), "{c}");
    assert_eq!(c.location.offset, Some(a as u64), "{c}");
    assert!(matches!(c.kind, CorruptionKind::SeqMismatch { .. }), "{c}");
}

#[test]
fn truncating_a_sealed_segment_is_detected() {
    let (dir, files) = sealed_store();
    let target = &files[2];
    let bytes = fs::read(target).unwrap();
    fs::write(target, &bytes[..bytes.len() / 2]).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, name(target), "{c}");
    assert!(matches!(c.kind, CorruptionKind::UnsealedInMiddle), "{c}");
    // Opening for writing refuses too, naming the segment.
    let err = sealog::Store::open(dir.path(), sealog_tests::small_options(4 << 10)).unwrap_err();
    assert!(err.to_string().contains(&name(target)), "{err}");
}

#[test]
fn deleting_a_whole_sealed_segment_is_detected() {
    let (dir, files) = sealed_store();
    fs::remove_file(&files[2]).unwrap();
    let c = corruption(dir.path());
    // Named after the file to restore.
    assert_eq!(c.location.file, name(&files[2]), "{c}");
    assert!(
        matches!(
            c.kind,
            CorruptionKind::MissingSegment {
                expected_segment_no: 2,
                ..
            }
        ),
        "{c}"
    );
}

#[test]
fn deleting_the_first_segment_is_detected() {
    let (dir, files) = sealed_store();
    fs::remove_file(&files[0]).unwrap();
    let c = corruption(dir.path());
    assert!(
        matches!(
            c.kind,
            CorruptionKind::MissingSegment {
                expected_segment_no: 0,
                expected_first_seq: 0,
                next_segment_no: 1,
                ..
            }
        ),
        "{c}"
    );
}

#[test]
fn rewriting_a_record_with_a_recomputed_checksum_names_the_record() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let mut bytes = fs::read(target).unwrap();
    let (offset, len) = frames(&bytes)[3];
    let body = &bytes[offset + 12..offset + len];
    let mut record = sealog::format::record::decode_record(body).unwrap();
    // Same length, different actor: the frame layout stays valid.
    let id = record.event.actor.id.clone();
    record.event.actor.id = id.chars().rev().collect::<String>().replace('-', "_");
    assert_eq!(record.event.actor.id.len(), id.len());
    let new_body = sealog::format::record::encode_record(&record).unwrap();
    let flags = bytes[offset + 4];
    let mut new_frame = Vec::new();
    frame::encode_frame(&new_body, flags, &mut new_frame).unwrap();
    assert_eq!(new_frame.len(), len);
    bytes[offset..offset + len].copy_from_slice(&new_frame);
    fs::write(target, &bytes).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, name(target), "{c}");
    assert_eq!(c.location.offset, Some(offset as u64), "{c}");
    assert_eq!(c.location.seq, Some(record.seq), "{c}");
    assert!(
        matches!(c.kind, CorruptionKind::RecordChanged { .. }),
        "{c}"
    );
}

#[test]
fn rewriting_a_record_and_its_stored_leaf_still_fails_against_the_footer() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let mut bytes = fs::read(target).unwrap();
    let (offset, len) = frames(&bytes)[0];
    let body = bytes[offset + 12..offset + len].to_vec();
    let mut record = sealog::format::record::decode_record(&body).unwrap();
    record.event.outcome = match record.event.outcome {
        sealog::Outcome::Success => sealog::Outcome::Denied,
        _ => sealog::Outcome::Success,
    };
    let new_body = sealog::format::record::encode_record(&record).unwrap();
    let mut new_frame = Vec::new();
    frame::encode_frame(&new_body, bytes[offset + 4], &mut new_frame).unwrap();
    bytes[offset..offset + len].copy_from_slice(&new_frame);
    fs::write(target, &bytes).unwrap();
    // The attacker also fixes the stored leaf hash.
    let leaves = dir.path().join("tree/leaves");
    let mut stored = fs::read(&leaves).unwrap();
    let at = record.seq as usize * 32;
    stored[at..at + 32].copy_from_slice(&sealog::format::merkle::leaf_hash(&new_body));
    fs::write(&leaves, &stored).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, name(target), "{c}");
    assert!(
        matches!(
            c.kind,
            CorruptionKind::HashMismatch {
                what: "chain head in footer",
                ..
            }
        ),
        "{c}"
    );
}

#[test]
fn a_damaged_leaf_file_is_reported_as_such() {
    let (dir, _) = sealed_store();
    let leaves = dir.path().join("tree/leaves");
    let mut stored = fs::read(&leaves).unwrap();
    stored[5 * 32] ^= 1;
    fs::write(&leaves, &stored).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, "tree/leaves", "{c}");
    assert!(
        matches!(c.kind, CorruptionKind::LeafMismatch { index: 5 }),
        "{c}"
    );
}

#[test]
fn a_tampered_store_can_still_be_opened_read_only_for_forensics() {
    let (dir, files) = sealed_store();
    let bytes = fs::read(&files[2]).unwrap();
    fs::write(&files[2], &bytes[..bytes.len() / 2]).unwrap();
    // Refused by default; read around the damage on request.
    let err = sealog::Store::open_read_only(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&name(&files[2])), "{err}");
    let store = sealog::Store::open_read_only_with(
        dir.path(),
        sealog::StoreOptions {
            on_damage: sealog::OnDamage::ReadAround,
            ..sealog::StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(store.damage().len(), 1);
    // Records before and after the damage are readable.
    assert!(store.scan(..).count() > 0);
    for record in store.scan(..) {
        record.unwrap();
    }
    let err = store.verify().unwrap_err();
    assert!(err.to_string().contains(&name(&files[2])), "{err}");
}

/// Found by the `segment_recovery` fuzz target (a directory that
/// `verify_dir` passes must open): an unsealed segment ending in what looks
/// like an interrupted write, followed by a segment holding records, was
/// refused by recovery (the committer syncs a segment before writing the
/// next, so only the last segment with records can end in one) but passed
/// verification.
#[test]
fn an_interrupted_write_before_a_later_segment_with_records_fails_verify_as_it_fails_open() {
    let (dir, files) = sealed_store();
    let active = files.last().unwrap();
    let previous = &files[files.len() - 2];
    let store = sealog::Store::open_read_only(dir.path()).unwrap();
    let first_active: u64 = sealog_tests::first_seq_of(active);
    assert!(
        store.len() > first_active,
        "the active segment holds records"
    );
    drop(store);
    // Unseal the last sealed segment: cut its end marker and footer, and
    // leave the start of a frame that runs past the end of the file.
    let bytes = fs::read(previous).unwrap();
    let footer = sealog::format::segment::SegmentFooter::decode(
        &bytes[bytes.len() - sealog::format::segment::FOOTER_LEN..],
    )
    .unwrap();
    let mut unsealed = bytes[..footer.frames_end as usize].to_vec();
    unsealed.extend_from_slice(&[0xff, 0, 0, 0, 1, 0, 0, 0, 0xaa, 0xbb]);
    fs::write(previous, &unsealed).unwrap();

    let c = corruption(dir.path());
    assert_eq!(c.location.file, name(active), "{c}");
    assert!(
        c.to_string().contains("interrupted write") && c.to_string().contains(&name(previous)),
        "{c}"
    );
    let err = sealog::Store::open(dir.path(), sealog_tests::small_options(4 << 10))
        .expect_err("recovery refuses the store");
    assert_eq!(
        err.corruption().map(|c| c.location.file.clone()),
        Some(name(active)),
        "{err}"
    );
}

// Index sidecars: derived data, checked against the records by verify.

use sealog::format::index::{IndexField, IndexReader, SECTION_ENTRY_LEN, SectionKind};

/// The first sealed segment's sidecar, and where in it the actor term
/// dictionary's first bitmap keeps its first value: (file, section index,
/// offset of the `u16` value).
fn actor_bitmap_value(dir: &Path) -> (PathBuf, usize, usize) {
    let path = dir.join("segments/00000000000000000000.idx");
    let bytes = fs::read(&path).unwrap();
    let reader = IndexReader::parse(&bytes).unwrap();
    let (index, section) = reader
        .sections()
        .enumerate()
        .find(|(_, s)| s.kind == SectionKind::TermDict && s.field == IndexField::Actor.id())
        .unwrap();
    let at = section.offset as usize;
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
    let terms = u32_at(at);
    let term_heap = u32_at(at + 4);
    let bitmaps = at + 16 + 20 * terms + term_heap;
    // The first entry with a bitmap; bitmaps tile the heap, so it is first.
    assert!(
        (0..terms).any(|i| u32_at(at + 16 + 20 * i + 16) > 0),
        "no actor has two records"
    );
    assert_eq!(u32_at(bitmaps), 12346, "an array-container bitmap");
    // Cookie, container count, descriptions, offsets (always present
    // without run containers), then the first array container's values.
    let containers = u32_at(bitmaps + 4);
    (path, index, bitmaps + 8 + 8 * containers)
}

/// Recomputes a sidecar's section, table and header CRCs, as a forger
/// would.
fn reseal(bytes: &mut [u8], section: usize) {
    let reader = IndexReader::open(bytes).unwrap();
    let s = reader.sections().nth(section).unwrap();
    let count = reader.section_count();
    let crc = crc32fast::hash(&bytes[s.offset as usize..(s.offset + s.len) as usize]);
    let entry = 72 + SECTION_ENTRY_LEN * section;
    bytes[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
    let table = crc32fast::hash(&bytes[72..72 + SECTION_ENTRY_LEN * count]);
    bytes[64..68].copy_from_slice(&table.to_le_bytes());
    let header = crc32fast::hash(&bytes[..68]);
    bytes[68..72].copy_from_slice(&header.to_le_bytes());
}

#[test]
fn every_sidecar_of_an_untouched_store_matches_its_records() {
    let (dir, _) = sealed_store();
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.sealed_segments >= 4, "{report:?}");
    assert_eq!(
        report.sidecars_checked, report.sealed_segments,
        "{report:?}"
    );
    assert!(report.sidecars_missing.is_empty(), "{report:?}");
}

#[test]
fn a_flipped_bit_in_a_sidecar_bitmap_is_reported_with_its_file_offset_and_section() {
    let (dir, _) = sealed_store();
    let (path, _, value) = actor_bitmap_value(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[value] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, "segments/00000000000000000000.idx");
    assert_eq!(c.location.offset, Some(value as u64));
    assert!(matches!(c.kind, CorruptionKind::Sidecar { .. }), "{c}");
    let text = c.to_string();
    assert!(text.contains("term dictionary of field `actor`"), "{text}");
    assert!(text.contains("fails its own checks"), "{text}");
    assert!(text.contains("remove the index file"), "{text}");
}

/// A forger who fixes every checksum after changing which records a term
/// points at (so queries would trust the sidecar and answer wrongly) is
/// caught too: the sidecar is compared with the one the records give.
#[test]
fn an_altered_sidecar_with_valid_checksums_is_reported() {
    let (dir, _) = sealed_store();
    let (path, section, value) = actor_bitmap_value(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let first = u16::from_le_bytes([bytes[value], bytes[value + 1]]);
    let second = u16::from_le_bytes([bytes[value + 2], bytes[value + 3]]);
    let altered = if first + 1 < second {
        first + 1
    } else {
        first - 1
    };
    bytes[value..value + 2].copy_from_slice(&altered.to_le_bytes());
    reseal(&mut bytes, section);
    IndexReader::parse(&bytes).expect("the forged sidecar passes its own checks");
    fs::write(&path, &bytes).unwrap();
    let c = corruption(dir.path());
    assert_eq!(c.location.file, "segments/00000000000000000000.idx");
    assert_eq!(c.location.offset, Some(value as u64), "{c}");
    assert!(matches!(c.kind, CorruptionKind::Sidecar { .. }), "{c}");
    let text = c.to_string();
    assert!(text.contains("term dictionary of field `actor`"), "{text}");
    assert!(text.contains("checksums hold"), "{text}");
}

#[test]
fn a_missing_sidecar_is_listed_and_is_not_an_error() {
    let (dir, _) = sealed_store();
    fs::remove_file(dir.path().join("segments/00000000000000000000.idx")).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(
        report.sidecars_missing,
        vec!["segments/00000000000000000000.idx".to_owned()]
    );
    assert_eq!(report.sidecars_checked + 1, report.sealed_segments);
}

/// `log_only` skips the index files and nothing else: an altered sidecar
/// and a damaged key-filter file pass, and say they were not checked; an
/// altered record is caught as by a full verification, at the same place.
#[test]
fn a_log_only_verification_skips_the_index_files_and_still_catches_an_altered_record() {
    let log_only = sealog::VerifyOptions {
        log_only: true,
        ..sealog::VerifyOptions::default()
    };
    let (dir, files) = sealed_store();
    let full = verify_dir(dir.path()).unwrap();
    let report = sealog::verify_dir_with(dir.path(), &log_only).unwrap();
    assert!(
        full.indexes_checked && !report.indexes_checked,
        "{report:?}"
    );
    assert_eq!(
        (report.records, report.root, report.chain_head),
        (full.records, full.root, full.chain_head)
    );
    assert_eq!(
        (report.sidecars_checked, report.key_filters_checked),
        (0, 0),
        "{report:?}"
    );

    let (path, _, value) = actor_bitmap_value(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[value] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let filters = dir.path().join("key-filters");
    let mut filter_bytes = fs::read(&filters).unwrap();
    let middle = filter_bytes.len() / 2;
    filter_bytes[middle] ^= 0x10;
    fs::write(&filters, &filter_bytes).unwrap();
    assert!(matches!(
        corruption(dir.path()).kind,
        CorruptionKind::Sidecar { .. }
    ));
    let report = sealog::verify_dir_with(dir.path(), &log_only).unwrap();
    assert_eq!(report.root, full.root);

    let target = &files[1];
    let mut segment = fs::read(target).unwrap();
    let (offset, len) = frames(&segment)[3];
    segment[offset + len - 20] ^= 1;
    fs::write(target, &segment).unwrap();
    let from_full = corruption(dir.path());
    let from_log_only = match sealog::verify_dir_with(dir.path(), &log_only) {
        Err(Error::Corruption(c)) => *c,
        other => panic!("the altered record went undetected: {other:?}"),
    };
    assert_eq!(from_log_only.location, from_full.location);
    assert_eq!(from_log_only.location.offset, Some(offset as u64));
    assert!(matches!(from_log_only.kind, CorruptionKind::Frame(_)));
}
