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

// "Event and record JSON": the examples and tables of that section, checked
// against the code. Each value goes through the record body (encode, then
// decode), as a stored record does before it is shown.

/// The text of the spec from `heading` to the next heading.
fn section<'a>(spec: &'a str, heading: &str) -> &'a str {
    let start = spec
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    let rest = &spec[start + heading.len()..];
    let end = rest.find("\n#").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// The rows of a two-column table: each cell without its backticks
/// (`omitted`, `refused` stay plain words).
fn pairs(section: &str) -> Vec<(String, String)> {
    let rows: Vec<(String, String)> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split(" | ")
                .map(str::trim)
                .collect();
            assert_eq!(cells.len(), 2, "row {l}");
            let strip = |c: &str| c.trim_matches('`').to_owned();
            (strip(cells[0]), strip(cells[1]))
        })
        .collect();
    assert!(rows.len() >= 3, "no table in {section}");
    rows
}

const MINIMAL: &str =
    r#"{"actor":{"type":"u","id":"x"},"action":"a","resource":{"type":"r"},"outcome":"success"}"#;

/// An event's JSON as a stored record shows it: parsed, encoded into a
/// record body, decoded, written.
fn as_stored(event_json: &str) -> Result<String, String> {
    let event =
        sealog_format::Event::from_json(event_json.as_bytes()).map_err(|e| e.to_string())?;
    let body = record::encode(&event, 7, Timestamp::from_nanos(1_000_000_000))
        .map_err(|e| e.to_string())?;
    let record = record::decode_record(&body).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string(&record).unwrap())
}

/// `MINIMAL` with `fragment` (`"key": value`) set at the top level.
fn with_fragment(fragment: &str) -> String {
    let mut base: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(MINIMAL).unwrap();
    let extra: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&format!("{{{fragment}}}")).unwrap();
    for (k, v) in extra {
        base.insert(k, v);
    }
    serde_json::to_string(&base).unwrap()
}

#[test]
fn the_record_json_example_is_written_exactly_as_the_spec_shows() {
    let spec = spec();
    let text = section(&spec, "#### Key order");
    let block = text
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap()
        .trim();
    let record: sealog_format::Record = serde_json::from_str(block).unwrap();
    assert_eq!(serde_json::to_string(&record).unwrap(), block);
    // The same text once the record went through its body.
    let body = record::encode(&record.event, record.seq, record.recorded_at).unwrap();
    let stored = record::decode_record(&body).unwrap();
    assert_eq!(serde_json::to_string(&stored).unwrap(), block);
    // The numbered list gives the order of the event's keys.
    let listed: Vec<String> = text
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect();
    let value: serde_json::Value = serde_json::from_str(block).unwrap();
    let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    let mut expected = vec!["seq".to_owned(), "recorded_at".to_owned()];
    expected.extend(listed);
    assert_eq!(keys, expected, "the list and the example disagree");
    let actor: Vec<&String> = value["actor"].as_object().unwrap().keys().collect();
    assert_eq!(actor, ["type", "id", "on_behalf_of", "session_id"]);
    let source: Vec<&String> = value["source"].as_object().unwrap().keys().collect();
    assert_eq!(source, ["ip", "user_agent"]);
}

#[test]
fn absent_and_null_fields_are_written_as_the_spec_says() {
    let spec = spec();
    for (fragment, written) in pairs(section(&spec, "#### Absent and null")) {
        let out =
            as_stored(&with_fragment(&fragment)).unwrap_or_else(|e| panic!("{fragment}: {e}"));
        let key = fragment.split('"').nth(1).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        if written == "omitted" {
            assert!(value.get(key).is_none(), "{fragment}: {out}");
        } else {
            assert!(
                out.contains(&written),
                "{fragment}: `{out}` lacks `{written}`"
            );
        }
        assert!(!out.contains("null"), "{fragment}: {out}");
    }
}

#[test]
fn times_are_read_and_written_as_the_spec_says() {
    let spec = spec();
    for (input, written) in pairs(section(&spec, "#### Times")) {
        let parsed = Timestamp::parse_rfc3339(&input);
        if written == "refused" {
            assert!(parsed.is_err(), "{input} was accepted");
            continue;
        }
        let t = parsed.unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(t.to_rfc3339(), written, "{input}");
        // The same through a record's `time` and `recorded_at`.
        let out = as_stored(&with_fragment(&format!(r#""time": "{input}""#))).unwrap();
        assert!(out.contains(&format!(r#""time":"{written}""#)), "{out}");
    }
}

#[test]
fn ip_addresses_are_read_and_written_as_the_spec_says() {
    let spec = spec();
    for (input, written) in pairs(section(&spec, "#### IP addresses")) {
        let out = as_stored(&with_fragment(&format!(r#""source": {{"ip": "{input}"}}"#)));
        if written == "refused" {
            assert!(out.is_err(), "{input} was accepted: {out:?}");
            continue;
        }
        let out = out.unwrap_or_else(|e| panic!("{input}: {e}"));
        assert!(
            out.contains(&format!(r#""source":{{"ip":"{written}"}}"#)),
            "{input}: {out}"
        );
    }
}

#[test]
fn metadata_is_normalised_as_the_spec_says() {
    let spec = spec();
    for (input, written) in pairs(section(&spec, "#### Metadata")) {
        let event = format!(
            "{},\"metadata\":{input}}}",
            MINIMAL.strip_suffix('}').unwrap()
        );
        let out = as_stored(&event);
        if written == "refused" {
            assert!(out.is_err(), "{input} was accepted: {out:?}");
            continue;
        }
        let out = out.unwrap_or_else(|e| panic!("{input}: {e}"));
        assert!(
            out.ends_with(&format!(r#""metadata":{written}}}"#)),
            "{input}: {out}"
        );
    }
    // What the prose says and a table cannot show: U+007F is written as is.
    let out = as_stored(&format!(
        "{},\"metadata\":{{\"s\":\"\\u007f\"}}}}",
        MINIMAL.strip_suffix('}').unwrap()
    ))
    .unwrap();
    assert!(out.ends_with("\"metadata\":{\"s\":\"\u{7f}\"}}"), "{out:?}");
}
