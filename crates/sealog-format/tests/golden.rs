//! Golden fixtures: every on-disk structure of format version 1, as bytes
//! committed to the repository. Each test decodes the committed bytes,
//! checks known values, re-encodes them and requires the identical bytes,
//! and checks that today's encoder still produces them. A failure here means
//! the format changed: bump the version and keep reading the old one.
//!
//! Regenerate (only for a deliberate format change) with
//! `SEALOG_WRITE_FIXTURES=1 cargo test -p sealog-format --test golden`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::PathBuf;

use sealog_format::frame::{self, FrameRead};
use sealog_format::record;
use sealog_format::segment::{Manifest, SegmentFooter, SegmentHeader};
use sealog_format::{Actor, Event, Metadata, Outcome, Principal, Resource, Timestamp};

fn fixture(name: &str, expected: &[u8]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(name);
    if std::env::var_os("SEALOG_WRITE_FIXTURES").is_some() {
        std::fs::write(&path, expected).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        bytes, expected,
        "{name}: today's encoder no longer produces the committed bytes"
    );
    bytes
}

fn full_event() -> Event {
    let mut metadata = Metadata::new();
    metadata.insert(
        "before".into(),
        serde_json::json!({"plan": "free", "seats": 3}),
    );
    metadata.insert(
        "after".into(),
        serde_json::json!({"plan": "pro", "seats": 10}),
    );
    metadata.insert("ratio".into(), serde_json::json!(0.25));
    Event::new(
        Actor::new("user", "alice@example.com"),
        "customer.plan_change",
        Resource::new("customer", "4471"),
        Outcome::Success,
    )
    .with_time(Timestamp::parse_rfc3339("2026-11-23T17:25:00.123456789Z").unwrap())
    .on_behalf_of(Principal::new("user", "support-7"))
    .with_session_id("sess-91")
    .with_tenant("acme")
    .with_source_ip("2001:db8::17".parse().unwrap())
    .with_user_agent("Mozilla/5.0 (X11; Linux x86_64)")
    .with_request_id("req-0001")
    .with_reason("upgrade requested in ticket SUP-311")
    .with_metadata(metadata)
}

fn minimal_event() -> Event {
    Event::new(
        Actor::new("system", "cron"),
        "job.run",
        Resource::kind("job"),
        Outcome::Failure,
    )
}

const RECORDED_AT: i64 = 1_795_454_700_000_000_000;

#[test]
fn a_full_record() {
    let expected = record::encode(&full_event(), 42, Timestamp::from_nanos(RECORDED_AT)).unwrap();
    let bytes = fixture("record-full.bin", &expected);
    let view = record::decode(&bytes).unwrap();
    assert_eq!(view.seq, 42);
    assert_eq!(view.actor_id, "alice@example.com");
    assert_eq!(view.on_behalf_of, Some(("user", "support-7")));
    assert_eq!(view.source_ip, Some("2001:db8::17".parse().unwrap()));
    assert_eq!(
        view.flags,
        record::KNOWN_FLAGS,
        "every optional field is present"
    );
    let decoded = view.to_record().unwrap();
    assert_eq!(decoded.event, full_event());
    assert_eq!(record::encode_record(&decoded).unwrap(), bytes);
}

#[test]
fn a_minimal_record() {
    let expected = record::encode(&minimal_event(), 0, Timestamp::from_nanos(RECORDED_AT)).unwrap();
    let bytes = fixture("record-minimal.bin", &expected);
    assert_eq!(
        &bytes[..4],
        &[1, 2, 0, 0],
        "version 1, outcome failure, no flags"
    );
    let decoded = record::decode_record(&bytes).unwrap();
    assert_eq!(decoded.event, minimal_event());
    assert_eq!(decoded.event_time(), Timestamp::from_nanos(RECORDED_AT));
    assert_eq!(record::encode_record(&decoded).unwrap(), bytes);
}

#[test]
fn frames_and_the_end_marker() {
    let body = record::encode(&minimal_event(), 7, Timestamp::from_nanos(RECORDED_AT)).unwrap();
    let mut expected = Vec::new();
    frame::encode_frame(&body, 0, &mut expected).unwrap();
    frame::encode_frame(&body, frame::FRAME_COMMIT, &mut expected).unwrap();
    expected.extend_from_slice(&frame::end_marker());
    let bytes = fixture("frames.bin", &expected);
    let FrameRead::Frame(a) = frame::read_frame(&bytes).unwrap() else {
        panic!()
    };
    assert!(!a.is_commit());
    let FrameRead::Frame(b) = frame::read_frame(&bytes[a.len..]).unwrap() else {
        panic!()
    };
    assert!(b.is_commit());
    assert_eq!(a.body, body.as_slice());
    assert!(frame::is_end_marker(&bytes[a.len + b.len..]));
    let mut reencoded = Vec::new();
    frame::encode_frame(a.body, a.flags, &mut reencoded).unwrap();
    frame::encode_frame(b.body, b.flags, &mut reencoded).unwrap();
    reencoded.extend_from_slice(&frame::end_marker());
    assert_eq!(reencoded, bytes);
}

#[test]
fn a_segment_header() {
    let header = SegmentHeader {
        store_id: *b"sealog-fixture-1",
        segment_no: 3,
        first_seq: 123_456,
        chain_in: [0xC4; 32],
        created_at: Timestamp::from_nanos(RECORDED_AT),
    };
    let bytes = fixture("segment-header.bin", &header.encode());
    let decoded = SegmentHeader::decode(&bytes).unwrap();
    assert_eq!(decoded, header);
    assert_eq!(decoded.encode().as_slice(), bytes.as_slice());
}

#[test]
fn a_segment_footer() {
    let footer = SegmentFooter {
        first_seq: 123_456,
        record_count: 1000,
        segment_no: 3,
        frames_end: 301_234,
        min_event_time: Timestamp::from_nanos(RECORDED_AT - 5_000_000_000),
        max_event_time: Timestamp::from_nanos(RECORDED_AT + 1),
        min_recorded_at: Timestamp::from_nanos(RECORDED_AT),
        max_recorded_at: Timestamp::from_nanos(RECORDED_AT + 9_000),
        merkle_root: [0x4D; 32],
        chain_head: [0xC8; 32],
        store_id: *b"sealog-fixture-1",
        sealed_at: Timestamp::from_nanos(RECORDED_AT + 10_000),
    };
    let bytes = fixture("segment-footer.bin", &footer.encode());
    let decoded = SegmentFooter::decode(&bytes).unwrap();
    assert_eq!(decoded, footer);
    assert_eq!(decoded.encode().as_slice(), bytes.as_slice());
    assert_eq!(decoded.file_len(), 301_234 + 12 + 176);
}

#[test]
fn a_store_manifest() {
    let manifest = Manifest {
        store_id: *b"sealog-fixture-1",
        created_at: Timestamp::from_nanos(RECORDED_AT),
    };
    let bytes = fixture("manifest.bin", &manifest.encode());
    let decoded = Manifest::decode(&bytes).unwrap();
    assert_eq!(decoded, manifest);
    assert_eq!(decoded.encode().as_slice(), bytes.as_slice());
    // The genesis value is part of the format too.
    let genesis = fixture("genesis.bin", &decoded.genesis());
    assert_eq!(genesis.as_slice(), decoded.genesis().as_slice());
}

/// An image of `records` frames of the minimal event, or the full one
/// (seqs from 123,456, request ids varied), with a header and a footer
/// that agree with its framing (record count, `frames_end`; the times and
/// hashes are placeholders, which the container does not read).
fn segment_image(records: u64, full: bool) -> Vec<u8> {
    let header = SegmentHeader {
        store_id: *b"sealog-fixture-1",
        segment_no: 3,
        first_seq: 123_456,
        chain_in: [0xC4; 32],
        created_at: Timestamp::from_nanos(RECORDED_AT),
    };
    let mut image = header.encode().to_vec();
    for i in 0..records {
        let mut event = if full { full_event() } else { minimal_event() };
        event.request_id = Some(format!("req-{:06}", i * 7919 % 1_000_003));
        let body = record::encode(&event, 123_456 + i, Timestamp::from_nanos(RECORDED_AT)).unwrap();
        frame::encode_frame(&body, frame::FRAME_COMMIT, &mut image).unwrap();
    }
    let frames_end = image.len() as u64;
    image.extend_from_slice(&frame::end_marker());
    let footer = SegmentFooter {
        first_seq: 123_456,
        record_count: records,
        segment_no: 3,
        frames_end,
        min_event_time: Timestamp::from_nanos(RECORDED_AT),
        max_event_time: Timestamp::from_nanos(RECORDED_AT),
        min_recorded_at: Timestamp::from_nanos(RECORDED_AT),
        max_recorded_at: Timestamp::from_nanos(RECORDED_AT),
        merkle_root: [0x4D; 32],
        chain_head: [0xC8; 32],
        store_id: *b"sealog-fixture-1",
        sealed_at: Timestamp::from_nanos(RECORDED_AT + 10_000),
    };
    image.extend_from_slice(&footer.encode());
    image
}

/// Compressed segments (container 1), with and without a dictionary: the
/// committed files decode to today's image byte for byte. Only decoding is
/// fixed: a later zstd may compress to other bytes, which every reader
/// still reads, so these files are written once and never compared with
/// today's encoder.
#[test]
fn compressed_segments() {
    use sealog_format::compressed::{CompressOptions, CompressedSegment, compress};
    for (name, records, full, dictionary_len) in [
        ("segment-compressed.bin", 40, false, 0),
        ("segment-compressed-dictionary.bin", 1_100, true, 4 << 10),
    ] {
        let image = segment_image(records, full);
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/v1")
            .join(name);
        if std::env::var_os("SEALOG_WRITE_FIXTURES").is_some() && !path.exists() {
            let options = CompressOptions {
                level: 19,
                block_target: 1 << 10,
                dictionary_len,
            };
            std::fs::write(&path, compress(&image, &options).unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let segment = CompressedSegment::parse(&bytes).unwrap();
        assert_eq!(
            segment.dictionary().is_empty(),
            dictionary_len == 0,
            "{name}"
        );
        assert!(segment.block_count() > 1, "{name}");
        assert_eq!(segment.header().first_seq, 123_456);
        assert_eq!(segment.footer().record_count, records);
        assert!(
            segment.decode_image().unwrap() == image,
            "{name}: the image differs"
        );
    }
}
