//! `docs/format.md` and the code must agree: this test reads the tables of
//! the specification and checks them against what the encoders write.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::HashMap;

use sealog_format::frame;
use sealog_format::segment::{self, Manifest, SegmentFooter, SegmentHeader};
use sealog_format::{Timestamp, record};

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/format.md")).unwrap()
}

/// The rows (offset, size, field text) of the table under `heading`.
fn table(spec: &str, heading: &str) -> Vec<(usize, usize, String)> {
    let start = spec
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    spec[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            Some((
                cells.first()?.parse().ok()?,
                cells.get(1)?.parse().ok()?,
                cells.get(2)?.to_string(),
            ))
        })
        .collect()
}

/// Checks that the table covers `bytes` exactly, in order, and that magic,
/// version and length rows hold what the code writes.
fn check(heading: &str, bytes: &[u8], magic: &[u8; 8], len: usize) {
    let rows = table(&spec(), heading);
    assert!(!rows.is_empty(), "{heading}: no table");
    let mut next = 0;
    let mut seen: HashMap<&str, bool> = HashMap::new();
    for (offset, size, field) in &rows {
        assert_eq!(
            *offset, next,
            "{heading}: row `{field}` starts at {offset}, expected {next}"
        );
        next = offset + size;
        let at = &bytes[*offset..offset + size];
        if field.starts_with("magic") {
            assert_eq!(at, magic, "{heading}: magic");
            seen.insert("magic", true);
        } else if field.starts_with("format version") {
            assert_eq!(at, 1u16.to_le_bytes(), "{heading}: version");
            seen.insert("version", true);
        } else if field.contains("length") && *size == 2 {
            assert_eq!(at, (len as u16).to_le_bytes(), "{heading}: length");
            seen.insert("length", true);
        } else if field.starts_with("CRC-32") {
            assert_eq!(
                at,
                crc32fast::hash(&bytes[..*offset]).to_le_bytes(),
                "{heading}: crc"
            );
            seen.insert("crc", true);
        }
    }
    assert_eq!(
        next, len,
        "{heading}: the table covers {next} bytes, the structure has {len}"
    );
    for key in ["magic", "version", "length", "crc"] {
        assert!(seen.contains_key(key), "{heading}: no {key} row");
    }
}

#[test]
fn the_manifest_table_matches_the_code() {
    let m = Manifest {
        store_id: [3; 16],
        created_at: Timestamp::from_nanos(9),
    };
    check(
        "## Store manifest",
        &m.encode(),
        &segment::MANIFEST_MAGIC,
        segment::MANIFEST_LEN,
    );
}

#[test]
fn the_segment_header_table_matches_the_code() {
    let h = SegmentHeader {
        store_id: [3; 16],
        segment_no: 1,
        first_seq: 2,
        chain_in: [4; 32],
        created_at: Timestamp::from_nanos(5),
    };
    check(
        "### Segment header",
        &h.encode(),
        &segment::SEGMENT_MAGIC,
        segment::HEADER_LEN,
    );
}

#[test]
fn the_segment_footer_table_matches_the_code() {
    let f = SegmentFooter {
        first_seq: 1,
        record_count: 2,
        segment_no: 3,
        frames_end: 400,
        min_event_time: Timestamp::from_nanos(5),
        max_event_time: Timestamp::from_nanos(6),
        min_recorded_at: Timestamp::from_nanos(7),
        max_recorded_at: Timestamp::from_nanos(8),
        merkle_root: [9; 32],
        chain_head: [10; 32],
        store_id: [11; 16],
        sealed_at: Timestamp::from_nanos(12),
    };
    check(
        "### Segment footer",
        &f.encode(),
        &segment::FOOTER_MAGIC,
        segment::FOOTER_LEN,
    );
}

#[test]
fn the_frame_table_and_end_marker_match_the_code() {
    let rows = table(&spec(), "### Frames");
    let layout: Vec<(usize, usize)> = rows.iter().map(|(o, s, _)| (*o, *s)).collect();
    assert_eq!(&layout[..4], &[(0, 4), (4, 1), (5, 3), (8, 4)]);
    assert_eq!(frame::FRAME_HEADER_LEN, 12);
    assert_eq!(frame::FRAME_CRC_OFFSET, 8);
    assert!(spec().contains("00 00 00 00  80 00 00 00  CRC-32(00 00 00 00 80 00 00 00)"));
    assert_eq!(&frame::end_marker()[..8], &[0, 0, 0, 0, 0x80, 0, 0, 0]);
    assert!(spec().contains("4,194,304"));
    assert_eq!(record::MAX_RECORD_LEN, 4_194_304);
}

#[test]
fn the_record_example_is_the_minimal_fixture() {
    let spec = spec();
    let start = spec.find("Example — the minimal record").unwrap();
    let block = &spec[start..];
    let block = &block[block.find("```text").unwrap() + 7..];
    let block = &block[..block.find("```").unwrap()];
    let mut bytes = Vec::new();
    for line in block.lines() {
        let hex: String = line
            .split("  ")
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        bytes.extend(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()),
        );
    }
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v1/record-minimal.bin"
    ))
    .unwrap();
    assert_eq!(bytes, fixture);
    assert!(spec.contains("sealog/chain/genesis/v1"));
    assert_eq!(
        sealog_format::chain::GENESIS_DOMAIN,
        b"sealog/chain/genesis/v1"
    );
}

#[test]
fn the_index_sidecar_example_is_what_the_encoder_writes() {
    use sealog_format::index::{IndexBuilder, IndexField, SegmentIdentity};
    let spec = spec();
    let start = spec.find("A segment (`store_id` `00 01 … 0f`").unwrap();
    let block = &spec[start..];
    let block = &block[block.find("```").unwrap() + 3..];
    let block = &block[..block.find("```").unwrap()];
    let mut documented = Vec::new();
    for line in block.lines().filter(|l| l.contains(':')) {
        let hex = line.split_once(": ").unwrap().1.split("  ").next().unwrap();
        documented.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap()),
        );
    }
    assert_eq!(documented.len(), 412);
    let mut b = IndexBuilder::new(SegmentIdentity {
        store_id: std::array::from_fn(|i| i as u8),
        segment_no: 7,
        first_seq: 1000,
        record_count: 3,
        segment_footer_crc: 0xdead_beef,
    });
    b.set_columns(
        vec![0, 180, 400],
        vec![
            1_700_000_000_000_000_000,
            1_699_999_999_000_000_000,
            1_700_000_001_000_000_000,
        ],
    )
    .unwrap();
    for (term, ordinal) in [(&b"alice"[..], 0), (b"bob", 1), (b"alice", 2)] {
        b.add_term(IndexField::Actor, term, ordinal).unwrap();
    }
    for (ordinal, id) in [b"r-1", b"r-2", b"r-3"].into_iter().enumerate() {
        b.add_hashed(IndexField::RequestId, id, ordinal as u32)
            .unwrap();
    }
    b.add_ip(IndexField::SourceIp, "10.0.0.1".parse().unwrap(), 0)
        .unwrap();
    b.add_ip(IndexField::SourceIp, "::ffff:10.0.0.2".parse().unwrap(), 1)
        .unwrap();
    b.add_ip(IndexField::SourceIp, "2001:db8::1".parse().unwrap(), 2)
        .unwrap();
    assert_eq!(b.encode().unwrap(), documented);
}
