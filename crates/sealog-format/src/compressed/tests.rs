//! Tests of the compressed segment container.

use super::*;
use crate::event::Timestamp;
use crate::frame::{FRAME_COMMIT, Frame, encode_frame};
use proptest::prelude::*;
use std::sync::LazyLock;

const ACTORS: [&str; 6] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.org",
    "svc-billing",
    "svc-deploy",
    "root",
];
const ACTIONS: [&str; 5] = [
    "user.login",
    "user.logout",
    "document.read",
    "document.update",
    "role.grant",
];

/// A JSON-ish record body, different for each `i`; every 211th is long.
fn body(i: usize) -> Vec<u8> {
    let note = match i % 211 {
        0 => "x".repeat(3_000 + i % 1_000),
        _ => format!("attempt {}", i % 7),
    };
    format!(
        r#"{{"seq":{i},"time":"2025-06-01T12:{:02}:{:02}.{:09}Z","actor":{{"id":"{}","type":"user"}},"action":"{}","resource":{{"type":"document","id":"doc-{}"}},"outcome":"{}","request_id":"{:016x}","source":{{"ip":"10.0.{}.{}"}},"metadata":{{"note":"{note}"}}}}"#,
        i / 60 % 60,
        i % 60,
        i.wrapping_mul(7_919) % 1_000_000_000,
        ACTORS[i % ACTORS.len()],
        ACTIONS[i * 7 % ACTIONS.len()],
        i * 31 % 997,
        if i.is_multiple_of(13) { "failure" } else { "success" },
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        i / 256 % 256,
        i % 256,
    )
    .into_bytes()
}

fn header() -> SegmentHeader {
    SegmentHeader {
        store_id: [7; 16],
        segment_no: 3,
        first_seq: 1_000,
        chain_in: [9; 32],
        created_at: Timestamp::from_nanos(11),
    }
}

fn footer(record_count: u64, frames_end: u64) -> SegmentFooter {
    SegmentFooter {
        first_seq: 1_000,
        record_count,
        segment_no: 3,
        frames_end,
        min_event_time: Timestamp::from_nanos(5),
        max_event_time: Timestamp::from_nanos(50),
        min_recorded_at: Timestamp::from_nanos(12),
        max_recorded_at: Timestamp::from_nanos(20),
        merkle_root: [1; 32],
        chain_head: [2; 32],
        store_id: [7; 16],
        sealed_at: Timestamp::from_nanos(30),
    }
}

/// A sealed segment image holding `bodies`, as the writer lays it out.
fn image_of(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut image = header().encode().to_vec();
    for (i, b) in bodies.iter().enumerate() {
        let flags = if i % 5 == 4 || i + 1 == bodies.len() {
            FRAME_COMMIT
        } else {
            0
        };
        encode_frame(b, flags, &mut image).unwrap();
    }
    let frames_end = image.len() as u64;
    image.extend_from_slice(&end_marker());
    image.extend_from_slice(&footer(bodies.len() as u64, frames_end).encode());
    image
}

/// Each frame's offset in `image` and the frame.
fn frames(image: &[u8]) -> Vec<(usize, Frame<'_>)> {
    let frames_end = SegmentFooter::decode(image).unwrap().frames_end as usize;
    let mut at = HEADER_LEN;
    let mut out = Vec::new();
    while at < frames_end {
        let FrameRead::Frame(f) = read_frame(&image[at..frames_end]).unwrap() else {
            panic!("no frame at {at}")
        };
        out.push((at, f));
        at += f.len;
    }
    out
}

static IMAGE: LazyLock<Vec<u8>> =
    LazyLock::new(|| image_of(&(0..4_000).map(body).collect::<Vec<_>>()));
static WITH_DICTIONARY: LazyLock<Vec<u8>> =
    LazyLock::new(|| compress(&IMAGE, &CompressOptions::default()).unwrap());
static WITHOUT_DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let options = CompressOptions {
        dictionary_len: 0,
        ..CompressOptions::default()
    };
    compress(&IMAGE, &options).unwrap()
});
/// A smaller file, with a dictionary and many blocks, for the proptests.
static SMALL: LazyLock<(Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
    let image = image_of(&(0..1_100).map(body).collect::<Vec<_>>());
    let options = CompressOptions {
        level: 1,
        block_target: 8 << 10,
        dictionary_len: 8 << 10,
    };
    let file = compress(&image, &options).unwrap();
    (image, file)
});

/// Whether damage in `file` is found by parsing it or decoding it.
fn damage_found(file: &[u8]) -> bool {
    match CompressedSegment::parse(file) {
        Err(_) => true,
        Ok(segment) => segment.decode_image().is_err(),
    }
}

/// Rewrites every CRC the container and the segment header and footer
/// hold, as far as the (perhaps damaged) fields allow, so that damage
/// reaches the checks behind them.
fn fix_crcs(file: &mut [u8]) {
    if file.len() < CONTAINER_HEAD_LEN {
        return;
    }
    if file.len() >= TABLE_OFFSET {
        fix_segment_and_table_crcs(file);
    }
    let crc = crc32fast::hash(&file[..C_CRC]);
    file[C_CRC..CONTAINER_HEAD_LEN].copy_from_slice(&crc.to_le_bytes());
}

fn fix_segment_and_table_crcs(file: &mut [u8]) {
    let crc = crc32fast::hash(&file[HEADER_AT..HEADER_AT + 124]);
    file[HEADER_AT + 124..FOOTER_AT].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&file[FOOTER_AT..FOOTER_AT + 172]);
    file[FOOTER_AT + 172..TABLE_OFFSET].copy_from_slice(&crc.to_le_bytes());
    let n = u32_at(file, C_BLOCKS) as usize;
    let d = u32_at(file, C_DICT_LEN) as usize;
    let table_end = TABLE_OFFSET + n * BLOCK_ENTRY_LEN;
    if table_end + TABLE_CRC_LEN + d <= file.len() {
        let mut at = table_end + TABLE_CRC_LEN + d;
        for i in 0..n {
            let entry = TABLE_OFFSET + i * BLOCK_ENTRY_LEN;
            let stored_len = u32_at(file, entry + E_STORED_LEN) as usize;
            if at + stored_len <= file.len() {
                let crc = crc32fast::hash(&file[at..at + stored_len]);
                file[entry + E_CRC..entry + BLOCK_ENTRY_LEN].copy_from_slice(&crc.to_le_bytes());
            }
            at += stored_len;
        }
        let crc = crc32fast::hash(&file[TABLE_OFFSET..table_end]);
        file[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
        let dictionary = table_end + TABLE_CRC_LEN;
        let crc = crc32fast::hash(&file[dictionary..dictionary + d]);
        file[C_DICT_CRC..C_DICT_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// `index` (over `file`) gives the blocks of `segment` (parsed from it),
/// and finds the same block for the first and last byte of each and for
/// offsets outside the frames.
fn same_blocks(
    file: &[u8],
    segment: &CompressedSegment<'_>,
    index: &BlockIndex,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(index.block_count(), segment.block_count());
    prop_assert_eq!(index.dictionary(file), segment.dictionary());
    for i in 0..segment.block_count() {
        let b = segment.block(i).unwrap();
        prop_assert_eq!(index.block(file, i), Some(b));
        for at in [b.image_offset, b.image_end() - 1] {
            prop_assert_eq!(index.block_at(file, at), segment.block_at(at));
            prop_assert_eq!(index.block_at(file, at), Some(i));
        }
    }
    prop_assert_eq!(index.block(file, segment.block_count()), None);
    let frames_end = segment.footer().frames_end;
    for at in [0, 127, frames_end, frames_end + 1, u64::MAX] {
        prop_assert_eq!(index.block_at(file, at), None);
    }
    // A file too short for the table reads as no block, not a panic.
    prop_assert_eq!(index.block(&file[..TABLE_OFFSET], 0), None);
    Ok(())
}

/// Parses `file`, decodes it every way a reader may, and checks what
/// must hold of whatever parses; never panics.
fn read_every_way(file: &[u8]) -> Result<(), TestCaseError> {
    let _ = is_compressed(file);
    let index = BlockIndex::open(file);
    let segment = match CompressedSegment::parse(file) {
        Ok(segment) => segment,
        Err(e) => {
            // The same checks, the same error.
            prop_assert_eq!(index.err(), Some(e));
            return Ok(());
        }
    };
    let index = index.expect("parse succeeds, so does BlockIndex::open");
    same_blocks(file, &segment, &index)?;
    prop_assert!(segment.block_count() >= 1);
    prop_assert_eq!(segment.block(0).map(|b| b.image_offset), Some(128));
    let _ = format!("{segment:?}");
    if let Ok(image) = segment.decode_image() {
        prop_assert_eq!(image.len() as u64, segment.image_len());
    }
    if let Ok(mut decoder) = segment.decoder() {
        for i in 0..segment.block_count() + 1 {
            if let Ok(bytes) = segment.read_block(i, &mut decoder) {
                prop_assert_eq!(bytes.len(), segment.block(i).unwrap().len as usize);
            }
        }
    }
    Ok(())
}

#[test]
fn an_image_round_trips_with_a_dictionary() {
    let segment = CompressedSegment::parse(&WITH_DICTIONARY).unwrap();
    assert!(!segment.dictionary().is_empty(), "a dictionary was trained");
    assert!(segment.dictionary().len() <= 64 << 10);
    assert_eq!(segment.level(), CompressOptions::default().level);
    assert_eq!(segment.image_len(), IMAGE.len() as u64);
    assert_eq!(segment.header(), &header());
    assert_eq!(segment.footer().record_count, 4_000);
    assert!(WITH_DICTIONARY.len() * 3 < IMAGE.len(), "it compresses");
    assert_eq!(segment.decode_image().unwrap(), *IMAGE);
    assert!(is_compressed(&WITH_DICTIONARY));
    assert!(!is_compressed(&IMAGE));
    assert!(!is_compressed(b"SEALOGS"));
}

#[test]
fn an_image_round_trips_without_a_dictionary() {
    let segment = CompressedSegment::parse(&WITHOUT_DICTIONARY).unwrap();
    assert!(segment.dictionary().is_empty());
    assert_eq!(u32_at(&WITHOUT_DICTIONARY, C_DICT_LEN), 0);
    assert_eq!(u32_at(&WITHOUT_DICTIONARY, C_DICT_CRC), 0);
    assert_eq!(segment.decode_image().unwrap(), *IMAGE);
    // Too few samples: no dictionary either.
    let image = image_of(&(0..1_000).map(body).collect::<Vec<_>>());
    let file = compress(&image, &CompressOptions::default()).unwrap();
    let segment = CompressedSegment::parse(&file).unwrap();
    assert!(segment.dictionary().is_empty(), "63 samples");
    assert_eq!(segment.decode_image().unwrap(), image);
}

#[test]
fn a_compression_asked_to_stop_stops_before_its_next_block() {
    let options = CompressOptions::default();
    let blocks = CompressedSegment::parse(&WITH_DICTIONARY)
        .unwrap()
        .block_count();
    assert!(blocks > 4, "{blocks} blocks");
    for stop_after in [0, 1, 3, blocks] {
        let asked = std::cell::Cell::new(0);
        let stopped = || {
            asked.set(asked.get() + 1);
            asked.get() > stop_after
        };
        assert_eq!(
            compress_unless(&IMAGE, &options, &stopped).unwrap(),
            None,
            "stopped after {stop_after} blocks"
        );
        assert_eq!(
            asked.get(),
            stop_after + 1,
            "asked before training, then once a block"
        );
    }
    // Never asked to stop: the bytes `compress` gives.
    let asked = std::cell::Cell::new(0);
    let never = || {
        asked.set(asked.get() + 1);
        false
    };
    assert_eq!(
        compress_unless(&IMAGE, &options, &never)
            .unwrap()
            .as_deref(),
        Some(&WITH_DICTIONARY[..])
    );
    assert_eq!(asked.get(), blocks + 1);
}

#[test]
fn blocks_hold_whole_frames_and_reach_the_target() {
    let segment = CompressedSegment::parse(&WITH_DICTIONARY).unwrap();
    let starts: std::collections::HashSet<u64> =
        frames(&IMAGE).iter().map(|(at, _)| *at as u64).collect();
    let n = segment.block_count();
    assert!(n > 50, "{n} blocks");
    for i in 0..n {
        let b = segment.block(i).unwrap();
        assert!(
            starts.contains(&b.image_offset),
            "block {i} starts on a frame"
        );
        if i + 1 < n {
            assert_eq!(segment.block(i + 1).unwrap().image_offset, b.image_end());
            assert!(b.len as usize >= 16 << 10, "block {i} is {} bytes", b.len);
        }
    }
    assert!(segment.block(n).is_none());
    assert_eq!(
        segment.block(n - 1).unwrap().image_end(),
        segment.footer().frames_end
    );
}

#[test]
fn every_frame_is_in_the_block_block_at_names() {
    for file in [&*WITH_DICTIONARY, &*WITHOUT_DICTIONARY] {
        let segment = CompressedSegment::parse(file).unwrap();
        let mut decoder = segment.decoder().unwrap();
        let mut cache: Option<(usize, Vec<u8>)> = None;
        for (at, frame) in frames(&IMAGE) {
            let i = segment.block_at(at as u64).unwrap();
            let block = segment.block(i).unwrap();
            if cache.as_ref().map(|(j, _)| *j) != Some(i) {
                cache = Some((i, segment.read_block(i, &mut decoder).unwrap()));
            }
            let bytes = &cache.as_ref().unwrap().1;
            assert_eq!(bytes.len(), block.len as usize);
            let within = (at as u64 - block.image_offset) as usize;
            let FrameRead::Frame(found) = read_frame(&bytes[within..]).unwrap() else {
                panic!("no frame at {at}")
            };
            assert_eq!(found, frame, "the frame at {at}");
            assert!(
                within + frame.len <= bytes.len(),
                "the frame at {at} is whole"
            );
        }
        let frames_end = segment.footer().frames_end;
        assert_eq!(segment.block_at(127), None);
        assert_eq!(segment.block_at(128), Some(0));
        assert_eq!(
            segment.block_at(frames_end - 1),
            Some(segment.block_count() - 1)
        );
        assert_eq!(segment.block_at(frames_end), None);
        assert_eq!(segment.block_at(u64::MAX), None);
    }
}

#[test]
fn a_frame_longer_than_the_target_is_a_block_of_its_own() {
    let mut bodies: Vec<Vec<u8>> = (0..40).map(body).collect();
    bodies[17] = vec![b'z'; 40_000];
    bodies[18] = vec![b'y'; 20_000];
    let image = image_of(&bodies);
    let file = compress(&image, &CompressOptions::default()).unwrap();
    let segment = CompressedSegment::parse(&file).unwrap();
    let all = frames(&image);
    for k in [17, 18] {
        let (at, frame) = all[k];
        let block = segment.block(segment.block_at(at as u64).unwrap()).unwrap();
        assert_eq!(block.image_offset, at as u64, "frame {k} starts its block");
        assert_eq!(block.len as usize, frame.len, "frame {k} is alone");
    }
    assert_eq!(segment.decode_image().unwrap(), image);
}

#[test]
fn a_one_frame_segment_is_one_block() {
    let image = image_of(&[b"{}".to_vec()]);
    let file = compress(&image, &CompressOptions::default()).unwrap();
    let segment = CompressedSegment::parse(&file).unwrap();
    assert_eq!(segment.block_count(), 1);
    assert!(segment.dictionary().is_empty());
    assert_eq!(
        segment.block(0).unwrap(),
        Block {
            image_offset: 128,
            len: 14,
            stored_offset: (TABLE_OFFSET + 16 + 4) as u64,
            stored_len: segment.block(0).unwrap().stored_len,
            crc: segment.block(0).unwrap().crc,
        }
    );
    assert_eq!(segment.decode_image().unwrap(), image);
}

#[test]
fn the_bytes_sit_where_the_spec_says() {
    let file = &*WITH_DICTIONARY;
    let segment = CompressedSegment::parse(file).unwrap();
    let n = segment.block_count();
    let d = segment.dictionary().len();
    assert_eq!(&file[0..8], b"SEALOGSZ");
    assert_eq!(&file[8..10], &[1, 0]);
    assert_eq!(&file[10..12], &[64, 0]);
    assert_eq!(&file[12..16], &[0; 4]);
    assert_eq!(u32_at(file, 16) as usize, n);
    assert_eq!(u32_at(file, 20) as usize, d);
    assert_eq!(u64_at(file, 24), IMAGE.len() as u64);
    let total: u64 = (0..n)
        .map(|i| u64::from(segment.block(i).unwrap().stored_len))
        .sum();
    assert_eq!(u64_at(file, 32), total);
    assert_eq!(i32_at(file, 40), CompressOptions::default().level);
    assert_eq!(u32_at(file, 44), crc32fast::hash(segment.dictionary()));
    assert_eq!(&file[48..60], &[0; 12]);
    assert_eq!(u32_at(file, 60), crc32fast::hash(&file[..60]));
    assert_eq!(&file[64..192], &IMAGE[..128]);
    assert_eq!(&file[192..368], &IMAGE[IMAGE.len() - 176..]);
    let table_end = 368 + 16 * n;
    assert_eq!(
        u32_at(file, table_end),
        crc32fast::hash(&file[368..table_end])
    );
    assert_eq!(
        &file[table_end + 4..table_end + 4 + d],
        segment.dictionary()
    );
    let mut at = table_end + 4 + d;
    for i in 0..n {
        let e = 368 + 16 * i;
        let b = segment.block(i).unwrap();
        assert_eq!(u64::from(u32_at(file, e)), b.image_offset);
        assert_eq!(u32_at(file, e + 4), b.len);
        assert_eq!(u32_at(file, e + 8), b.stored_len);
        assert_eq!(b.stored_offset, at as u64);
        let stored = &file[at..at + b.stored_len as usize];
        assert_eq!(u32_at(file, e + 12), crc32fast::hash(stored));
        // One zstd frame, with the dictionary's id when there is one.
        assert_eq!(&stored[..4], &0xFD2F_B528u32.to_le_bytes());
        at += b.stored_len as usize;
    }
    assert_eq!(at, file.len());
    assert_eq!(&segment.dictionary()[..4], &0xEC30_A437u32.to_le_bytes());
}

/// The rows (offset, size, field) of the first table after `heading`
/// in `docs/format.md`.
fn doc_table(heading: &str) -> Vec<(usize, usize, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/format.md"))
        .unwrap();
    let start = doc.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            Some((
                cells[0].parse().ok()?,
                cells[1].parse().ok()?,
                cells[2].to_string(),
            ))
        })
        .collect()
}

#[test]
fn the_format_document_tables_match_the_code() {
    let file = &*WITH_DICTIONARY;
    for (heading, len) in [
        ("#### Container head (64 bytes)", CONTAINER_HEAD_LEN),
        ("#### Block table entry (16 bytes)", BLOCK_ENTRY_LEN),
    ] {
        let rows = doc_table(heading);
        let mut next = 0;
        for (offset, size, _) in &rows {
            assert_eq!(*offset, next, "{heading}");
            next = offset + size;
        }
        assert_eq!(next, len, "{heading}");
    }
    let head = doc_table("#### Container head (64 bytes)");
    let field = |at: usize| head.iter().find(|r| r.0 == at).unwrap().2.clone();
    assert!(field(0).contains("`SEALOGSZ`"));
    assert!(field(0).contains("53 45 41 4C 4F 47 53 5A"));
    assert_eq!(
        b"SEALOGSZ"
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" "),
        "53 45 41 4C 4F 47 53 5A"
    );
    assert!(field(C_DICT_CRC).starts_with("CRC-32 of the dictionary"));
    assert!(field(C_CRC).starts_with("CRC-32 of bytes 0..60"));
    assert_eq!(u32_at(file, C_CRC), crc32fast::hash(&file[..C_CRC]));
    assert_eq!(field(C_RESERVED), "reserved, zero");
}

#[test]
fn a_flipped_byte_anywhere_is_found() {
    let file = &*WITH_DICTIONARY;
    let segment = CompressedSegment::parse(file).unwrap();
    let d = segment.dictionary().len();
    let table_end = TABLE_OFFSET + 16 * segment.block_count() + 4;
    // Every byte of the head, header, footer and table; every 61st of
    // the dictionary.
    let positions = (0..table_end).chain((table_end..table_end + d).step_by(61));
    for at in positions {
        let mut bad = file.clone();
        bad[at] ^= 0x20;
        assert!(
            CompressedSegment::parse(&bad).is_err(),
            "a flip at {at} parsed"
        );
    }
    // One byte in each block: parse is fine, reading the block is not.
    let mut decoder = segment.decoder().unwrap();
    for i in 0..segment.block_count() {
        let b = segment.block(i).unwrap();
        let at = (b.stored_offset + u64::from(b.stored_len) / 2) as usize;
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let damaged = CompressedSegment::parse(&bad).unwrap();
        let err = damaged.read_block(i, &mut decoder).unwrap_err();
        assert_eq!((err.offset, err.block), (b.stored_offset, Some(i)));
        assert!(
            err.problem
                .starts_with(&format!("block {i}'s stored bytes have CRC-32 0x")),
            "{err}"
        );
        if i % 17 == 0 {
            assert!(damage_found(&bad));
        }
    }
}

#[test]
fn a_truncated_or_extended_file_is_refused() {
    let file = &*WITH_DICTIONARY;
    for len in (0..file.len()).step_by(97).chain([file.len() - 1]) {
        assert!(
            CompressedSegment::parse(&file[..len]).is_err(),
            "{len} bytes parsed"
        );
    }
    let mut longer = file.clone();
    longer.push(0);
    let err = CompressedSegment::parse(&longer).unwrap_err();
    assert_eq!(err.offset, file.len() as u64, "{err}");
    let err = CompressedSegment::parse(&file[..file.len() - 1]).unwrap_err();
    assert!(
        err.problem.contains("run past the end of the file"),
        "{err}"
    );
    assert_eq!(
        err.block,
        Some(CompressedSegment::parse(file).unwrap().block_count() - 1)
    );
}

#[test]
fn damage_messages_say_what_and_where() {
    let file = &*WITHOUT_DICTIONARY;
    let segment = CompressedSegment::parse(file).unwrap();
    let n = segment.block_count();
    let entries: Vec<Entry> = (0..n)
        .map(|i| {
            let b = segment.block(i).unwrap();
            Entry {
                image_offset: b.image_offset as u32,
                len: b.len,
                stored_len: b.stored_len,
                crc: b.crc,
            }
        })
        .collect();
    let stored = &file[segment.block(0).unwrap().stored_offset as usize..];
    let rebuild = |entries: &[Entry]| {
        assemble(
            &IMAGE[..128],
            &IMAGE[IMAGE.len() - 176..],
            IMAGE.len() as u64,
            CompressOptions::default().level,
            &[],
            entries,
            stored,
        )
        .unwrap()
    };
    assert_eq!(&rebuild(&entries), file);

    // Lengths moved from block 3 to block 4: the structure holds, the
    // blocks do not.
    let mut moved = entries.clone();
    moved[3].len -= 10;
    moved[4].image_offset -= 10;
    moved[4].len += 10;
    let bad = rebuild(&moved);
    let damaged = CompressedSegment::parse(&bad).unwrap();
    let mut decoder = damaged.decoder().unwrap();
    let err = damaged.read_block(3, &mut decoder).unwrap_err();
    let len = entries[3].len;
    assert_eq!(
        err.to_string(),
        format!(
            "byte {} (block 3): block 3 decompresses to {len} bytes (its zstd frame header says), the table says {}",
            segment.block(3).unwrap().stored_offset,
            len - 10
        )
    );
    assert!(damaged.decode_image().is_err());

    // A gap between blocks.
    let mut gap = entries.clone();
    gap[5].image_offset += 1;
    let err = CompressedSegment::parse(&rebuild(&gap)).unwrap_err();
    let end5 = entries[5].image_offset;
    assert_eq!(
        err.problem,
        format!(
            "block 5 starts at {}, the previous ends at {end5}",
            end5 + 1
        )
    );
    assert_eq!(
        (err.offset, err.block),
        ((TABLE_OFFSET + 5 * 16) as u64, Some(5))
    );

    // The last block short of frames_end.
    let mut short = entries.clone();
    short[n - 1].len -= 1;
    let err = CompressedSegment::parse(&rebuild(&short)).unwrap_err();
    assert!(err.problem.starts_with("the last block ends at"), "{err}");

    // An empty block, an oversized one, an empty stored length.
    let mut zero = entries.clone();
    zero[0].len = 0;
    let err = CompressedSegment::parse(&rebuild(&zero)).unwrap_err();
    assert_eq!(
        err.problem,
        format!("block 0's length is 0; a block holds 1 to {MAX_BLOCK_LEN} bytes")
    );
    let mut huge = entries.clone();
    huge[0].len = MAX_BLOCK_LEN as u32 + 1;
    assert!(
        CompressedSegment::parse(&rebuild(&huge))
            .unwrap_err()
            .problem
            .contains("8388609")
    );
    let mut empty = entries.clone();
    empty[0].stored_len = 0;
    let err = CompressedSegment::parse(&rebuild(&empty)).unwrap_err();
    assert_eq!(err.problem, "block 0's stored length is 0");

    // Block 0 not at 128.
    let mut late = entries.clone();
    late[0].image_offset = 140;
    let err = CompressedSegment::parse(&rebuild(&late)).unwrap_err();
    assert_eq!(
        err.problem,
        "block 0 starts at 140, not at 128 (the end of the segment header)"
    );

    // The table's CRC.
    let mut bad = file.clone();
    bad[TABLE_OFFSET + 1] ^= 1;
    let err = CompressedSegment::parse(&bad).unwrap_err();
    assert_eq!(err.offset, (TABLE_OFFSET + 16 * n) as u64);
    assert!(
        err.problem.starts_with("the block table's CRC-32 is 0x"),
        "{err}"
    );

    // The head's CRC, then the fields behind it.
    let mut bad = file.clone();
    bad[C_LEVEL] ^= 1;
    let err = CompressedSegment::parse(&bad).unwrap_err();
    assert!(
        err.problem.starts_with("the container head's CRC-32"),
        "{err}"
    );
    for (at, value, expected) in [
        (
            C_VERSION,
            2u32,
            "container version 2; this build reads version 1",
        ),
        (
            C_FLAGS,
            1,
            "flags 0x00000001 are set; version 1 defines none",
        ),
        (
            C_BLOCKS,
            0,
            "the block count is 0; a compressed segment has at least one block",
        ),
        (C_RESERVED + 4, 1, "reserved head bytes 48..60 are not zero"),
    ] {
        let mut bad = file.clone();
        bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
        if at == C_VERSION {
            bad[at + 2..at + 4].copy_from_slice(&64u16.to_le_bytes());
        }
        fix_crcs(&mut bad);
        let err = CompressedSegment::parse(&bad).unwrap_err();
        assert_eq!((err.offset, err.problem.as_str()), (at as u64, expected));
    }
    let mut bad = file.clone();
    bad[C_STORED_LEN] ^= 1;
    fix_crcs(&mut bad);
    let err = CompressedSegment::parse(&bad).unwrap_err();
    assert!(
        err.problem
            .starts_with("the blocks' stored lengths add up to"),
        "{err}"
    );
    let mut bad = file.clone();
    bad[C_IMAGE_LEN] ^= 1;
    fix_crcs(&mut bad);
    let err = CompressedSegment::parse(&bad).unwrap_err();
    assert!(err.problem.starts_with("the image length is"), "{err}");

    // Header and footer of different segments.
    let mut bad = file.clone();
    bad[HEADER_AT + 32] ^= 1;
    fix_crcs(&mut bad);
    let err = CompressedSegment::parse(&bad).unwrap_err();
    assert_eq!(
        err.problem,
        "the segment header and footer disagree on the segment number (header 2, footer 3)"
    );

    // Another magic.
    let err = CompressedSegment::parse(&IMAGE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "byte 0: the file starts with \"SEALOGSG\", not the compressed segment magic \"SEALOGSZ\""
    );
    assert!(CompressedSegment::parse(&[]).is_err());
    assert!(
        segment
            .read_block(n, &mut segment.decoder().unwrap())
            .is_err()
    );
}

#[test]
fn the_dictionary_is_checked_and_a_bad_one_is_an_error() {
    let file = &*WITH_DICTIONARY;
    let segment = CompressedSegment::parse(file).unwrap();
    let d = segment.dictionary().len();
    let at = TABLE_OFFSET + 16 * segment.block_count() + 4;
    // A flip in its body: its CRC says so.
    let mut bad = file.clone();
    bad[at + d / 2] ^= 0x40;
    let err = CompressedSegment::parse(&bad).unwrap_err();
    assert_eq!(err.offset, at as u64);
    assert!(
        err.problem
            .starts_with(&format!("the dictionary's {d} bytes have CRC-32 0x"))
    );
    // A damaged header behind a fixed CRC: zstd refuses to load it.
    let mut bad = file.clone();
    for b in &mut bad[at + 8..at + 200] {
        *b = 0xff;
    }
    fix_crcs(&mut bad);
    let damaged = CompressedSegment::parse(&bad).unwrap();
    let err = damaged.decode_image().unwrap_err();
    assert_eq!(err.offset, at as u64, "{err}");
    assert!(err.problem.starts_with("zstd cannot load the"), "{err}");
    let junk = [0x37, 0xa4, 0x30, 0xec, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff];
    assert!(BlockDecoder::new(&junk).is_err());
    // Blocks written with a dictionary need it.
    let mut plain = BlockDecoder::new(&[]).unwrap();
    let err = segment.read_block(0, &mut plain).unwrap_err();
    assert_eq!(err.block, Some(0));
}

#[test]
fn a_block_of_two_zstd_frames_is_refused() {
    let image = image_of(&(0..20).map(body).collect::<Vec<_>>());
    let frames_end = image.len() - 188;
    let half = frames(&image)[10].0;
    let first = zstd::bulk::compress(&image[128..half], 3).unwrap();
    let second = zstd::bulk::compress(&image[half..frames_end], 3).unwrap();
    let stored = [first.clone(), second].concat();
    let entry = Entry {
        image_offset: 128,
        len: (frames_end - 128) as u32,
        stored_len: stored.len() as u32,
        crc: crc32fast::hash(&stored),
    };
    let file = assemble(
        &image[..128],
        &image[frames_end + 12..],
        image.len() as u64,
        3,
        &[],
        &[entry],
        &stored,
    )
    .unwrap();
    let segment = CompressedSegment::parse(&file).unwrap();
    let err = segment.decode_image().unwrap_err();
    assert_eq!(
        err.problem,
        format!(
            "block 0's {} stored bytes are not one zstd frame: the first is {} bytes",
            stored.len(),
            first.len()
        )
    );
}

#[test]
fn a_block_is_read_from_its_entry_and_the_file_alone() {
    let file = &*WITH_DICTIONARY;
    let segment = CompressedSegment::parse(file).unwrap();
    let blocks: Vec<Block> = (0..segment.block_count())
        .map(|i| segment.block(i).unwrap())
        .collect();
    let mut decoder = BlockDecoder::new(segment.dictionary()).unwrap();
    for (i, b) in blocks.iter().enumerate().step_by(7) {
        assert_eq!(
            read_stored_block(file, i, b, &mut decoder).unwrap(),
            IMAGE[b.image_offset as usize..b.image_end() as usize]
        );
    }
    let b = blocks[1];
    let past = Block {
        stored_offset: file.len() as u64 - 2,
        ..b
    };
    let err = read_stored_block(file, 1, &past, &mut decoder).unwrap_err();
    assert!(err.problem.contains("are not all in the file"), "{err}");
    let huge = Block { len: u32::MAX, ..b };
    assert!(read_stored_block(file, 1, &huge, &mut decoder).is_err());
    let err = read_stored_block(&file[..100], 1, &b, &mut decoder).unwrap_err();
    assert_eq!((err.offset, err.block), (b.stored_offset, Some(1)));
}

#[test]
fn a_block_index_reads_the_table_in_place_as_parse_reads_it() {
    for file in [&*WITH_DICTIONARY, &*WITHOUT_DICTIONARY] {
        let segment = CompressedSegment::parse(file).unwrap();
        // Past one stored offset kept: blocks summed from the table too.
        assert!(
            segment.block_count() > STORED_EVERY + 1,
            "{}",
            segment.block_count()
        );
        let index = BlockIndex::open(file).unwrap();
        same_blocks(file, &segment, &index).unwrap();
        let mut decoder = BlockDecoder::new(index.dictionary(file)).unwrap();
        let b = index.block(file, segment.block_count() - 1).unwrap();
        assert_eq!(
            read_stored_block(file, segment.block_count() - 1, &b, &mut decoder).unwrap(),
            IMAGE[b.image_offset as usize..b.image_end() as usize]
        );
    }
    // A damaged table: the error parse gives.
    let mut bad = WITH_DICTIONARY.clone();
    bad[TABLE_OFFSET + 5] ^= 1;
    let e = CompressedSegment::parse(&bad).unwrap_err();
    assert_eq!(BlockIndex::open(&bad).unwrap_err(), e);
}

#[test]
fn a_decoder_given_another_dictionary_reads_as_a_new_one_for_it() {
    let with = CompressedSegment::parse(&WITH_DICTIONARY).unwrap();
    let without = CompressedSegment::parse(&WITHOUT_DICTIONARY).unwrap();
    // Another segment's dictionary: trained on other records.
    let other_image = image_of(&(4_000..8_000).map(body).collect::<Vec<_>>());
    let other_file = compress(&other_image, &CompressOptions::default()).unwrap();
    let other = CompressedSegment::parse(&other_file).unwrap();
    assert!(!other.dictionary().is_empty());
    assert_ne!(other.dictionary(), with.dictionary());
    let block = |s: &CompressedSegment<'_>, i: usize, d: &mut BlockDecoder| s.read_block(i, d);
    let mut decoder = BlockDecoder::new(with.dictionary()).unwrap();
    let last = other.block_count() - 1;
    for (segment, image) in [
        (&other, &other_image),
        (&without, &*IMAGE),
        (&with, &*IMAGE),
        (&other, &other_image),
    ] {
        decoder.set_dictionary(segment.dictionary()).unwrap();
        assert!(
            format!("{decoder:?}")
                .contains(&format!("dictionary_len: {}", segment.dictionary().len()))
        );
        for i in [0, 1, last.min(segment.block_count() - 1)] {
            let b = segment.block(i).unwrap();
            let mut fresh = BlockDecoder::new(segment.dictionary()).unwrap();
            let read = block(segment, i, &mut decoder).unwrap();
            assert_eq!(read, block(segment, i, &mut fresh).unwrap());
            assert_eq!(read, image[b.image_offset as usize..b.image_end() as usize]);
        }
    }
    // Blocks read with the wrong dictionary fail, as with a new decoder.
    decoder.set_dictionary(with.dictionary()).unwrap();
    assert!(block(&other, 0, &mut decoder).is_err());
    // A dictionary zstd refuses: an error, and then no dictionary.
    let junk = [0x37, 0xa4, 0x30, 0xec, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff];
    assert!(decoder.set_dictionary(&junk).is_err());
    assert!(format!("{decoder:?}").contains("dictionary_len: 0"));
    let b = without.block(0).unwrap();
    assert_eq!(
        block(&without, 0, &mut decoder).unwrap(),
        IMAGE[b.image_offset as usize..b.image_end() as usize]
    );
}

#[test]
fn a_decoder_is_send_and_serves_any_number_of_blocks() {
    fn send<T: Send>(_: &T) {}
    let segment = CompressedSegment::parse(&WITH_DICTIONARY).unwrap();
    let mut decoder = segment.decoder().unwrap();
    send(&decoder);
    assert!(format!("{decoder:?}").contains("dictionary_len"));
    let last = segment.block_count() - 1;
    for i in [0, last, 0, 1, last] {
        assert_eq!(
            segment.read_block(i, &mut decoder).unwrap().len(),
            segment.block(i).unwrap().len as usize
        );
    }
    let handle = std::thread::spawn(move || {
        let segment = CompressedSegment::parse(&WITH_DICTIONARY).unwrap();
        segment.read_block(1, &mut decoder).unwrap()
    });
    let b = segment.block(1).unwrap();
    assert_eq!(
        handle.join().unwrap(),
        IMAGE[b.image_offset as usize..b.image_end() as usize]
    );
}

#[test]
fn compress_refuses_an_image_that_is_not_a_sealed_segment() {
    let image = image_of(&(0..30).map(body).collect::<Vec<_>>());
    let all = frames(&image);
    let options = CompressOptions::default();
    let frames_end = image.len() - 188;

    // A damaged frame: named at its offset in the image.
    let (at, _) = all[7];
    let mut bad = image.clone();
    bad[at + 20] ^= 1;
    let err = compress(&bad, &options).unwrap_err();
    assert_eq!(err.offset, at as u64);
    assert!(
        err.problem
            .starts_with(&format!("the frame at {at}: frame checksum mismatch")),
        "{err}"
    );

    // A zero length before frames_end.
    let mut bad = image.clone();
    bad[at..at + 4].copy_from_slice(&[0; 4]);
    let err = compress(&bad, &options).unwrap_err();
    assert!(
        err.problem
            .contains("(a zero length), before the footer's frames_end"),
        "{err}"
    );

    // No end marker.
    let mut bad = image.clone();
    bad[frames_end + 4] = 0;
    let err = compress(&bad, &options).unwrap_err();
    assert_eq!(err.offset, frames_end as u64);

    // A footer that counts other records, or that does not match the
    // header, or the length.
    let bodies: Vec<Vec<u8>> = (0..30).map(body).collect();
    let mut bad = image_of(&bodies);
    let f = footer(31, frames_end as u64).encode();
    let len = bad.len();
    bad[len - 176..].copy_from_slice(&f);
    let err = compress(&bad, &options).unwrap_err();
    assert_eq!(
        err.problem,
        "the image holds 30 frames, the footer counts 31 records"
    );
    let mut other = footer(30, frames_end as u64);
    other.first_seq = 1;
    bad[len - 176..].copy_from_slice(&other.encode());
    let err = compress(&bad, &options).unwrap_err();
    assert!(
        err.problem.contains("first seq (header 1000, footer 1)"),
        "{err}"
    );
    let err = compress(&image[..image.len() - 1], &options).unwrap_err();
    assert_eq!(err.offset, (image.len() - 1 - 176) as u64, "{err}");
    let mut longer = image.clone();
    longer.insert(200, 0);
    assert!(compress(&longer, &options).is_err());

    // A damaged header, a short image.
    let mut bad = image.clone();
    bad[3] ^= 1;
    assert_eq!(compress(&bad, &options).unwrap_err().offset, 0);
    assert!(compress(&image[..300], &options).is_err());
    assert!(compress(&[], &options).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any bytes parse to an error or to a segment whose reads stay
    /// within bounds, never a panic.
    #[test]
    fn any_bytes_read_as_a_segment_or_an_error(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..1_200),
        magic in any::<bool>(),
    ) {
        if magic && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&COMPRESSED_MAGIC);
            fix_crcs(&mut bytes);
        }
        read_every_way(&bytes)?;
    }

    /// A valid file with bytes changed, perhaps its CRCs fixed up and
    /// perhaps cut short, never panics a reader.
    #[test]
    fn a_mutated_file_never_panics(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix in any::<bool>(),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut file = SMALL.1.clone();
        for (at, byte) in changes {
            let at = at.index(file.len());
            file[at] = byte;
        }
        if fix {
            fix_crcs(&mut file);
        }
        if let Some(cut) = cut {
            file.truncate(cut.index(file.len()));
        }
        read_every_way(&file)?;
    }

    /// Any bodies, any block target: the image comes back, and blocks
    /// start on frames.
    #[test]
    fn any_segment_round_trips(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..3_000), 1..40),
        block_target in 1usize..20_000,
    ) {
        let image = image_of(&bodies);
        let options = CompressOptions { block_target, level: 1, ..CompressOptions::default() };
        let file = compress(&image, &options).unwrap();
        let segment = CompressedSegment::parse(&file).unwrap();
        prop_assert_eq!(segment.decode_image().unwrap(), image.clone());
        let starts: Vec<u64> = frames(&image).iter().map(|(at, _)| *at as u64).collect();
        for i in 0..segment.block_count() {
            prop_assert!(starts.contains(&segment.block(i).unwrap().image_offset));
        }
    }
}

#[test]
fn the_small_file_round_trips() {
    let (image, file) = &*SMALL;
    let segment = CompressedSegment::parse(file).unwrap();
    assert!(!segment.dictionary().is_empty());
    assert_eq!(&segment.decode_image().unwrap(), image);
}

/// A head whose stored total would overflow the file's length, or wrap it
/// around to the length of a file too short for its table, is refused by
/// `parse_head` (found by the `compressed_segment` fuzz target: the sum
/// panicked in debug builds and wrapped in release ones).
#[test]
fn a_stored_total_past_any_file_length_is_refused_by_the_head_check() {
    let file = &SMALL.1;
    let len = file.len() as u64;
    for total in [u64::MAX, u64::MAX - 100] {
        let mut bad = file.clone();
        bad[C_STORED_LEN..C_STORED_LEN + 8].copy_from_slice(&total.to_le_bytes());
        fix_crcs(&mut bad);
        let e = parse_head(&bad, len).unwrap_err();
        assert_eq!(e.offset, C_STORED_LEN as u64, "{e}");
        assert!(CompressedSegment::parse(&bad).is_err());
    }
    // A block count and a total chosen so that the unchecked sum wrapped
    // to the file's length.
    let mut bad = file.clone();
    let n = u32::try_from(len / BLOCK_ENTRY_LEN as u64 + 1_000).unwrap();
    bad[C_BLOCKS..C_BLOCKS + 4].copy_from_slice(&n.to_le_bytes());
    let d = u64::from(u32::from_le_bytes(
        bad[C_DICT_LEN..C_DICT_LEN + 4].try_into().unwrap(),
    ));
    let fixed = (TABLE_OFFSET + TABLE_CRC_LEN) as u64 + u64::from(n) * BLOCK_ENTRY_LEN as u64 + d;
    assert!(fixed > len, "the table alone is longer than the file");
    let total = len.wrapping_sub(fixed);
    bad[C_STORED_LEN..C_STORED_LEN + 8].copy_from_slice(&total.to_le_bytes());
    let crc = crc32fast::hash(&bad[..C_CRC]);
    bad[C_CRC..CONTAINER_HEAD_LEN].copy_from_slice(&crc.to_le_bytes());
    assert!(parse_head(&bad, len).is_err());
}
