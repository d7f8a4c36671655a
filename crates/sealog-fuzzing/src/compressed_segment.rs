//! `compressed_segment`: the compressed sealed segment container
//! (`sealog_format::compressed`, `docs/format.md` "Compressed sealed
//! segments"), read every way the engine reads one.
//!
//! The input is a compressed segment file. It is read as the engine reads
//! one: [`parse_head`] on its first 368 bytes and its length (an open),
//! [`CompressedSegment::parse`] and [`BlockIndex::open`] (a first read,
//! which must agree: same errors, same blocks), single blocks through a
//! [`BlockDecoder`] (a record read: `block_at` for the frame's offset, then
//! [`read_stored_block`] with a decoder made from the dictionary), and
//! [`CompressedSegment::decode_image`] (verify, archive).
//!
//! Properties: nothing panics; `parse_head` on the first 368 bytes and on
//! the whole file agree, and it agrees with `parse` on the header and
//! footer whenever `parse` succeeds (and refuses any other file length).
//! For a file that parses: the blocks cover the frames without gaps, and
//! `block_at` finds each block from its first and last image byte and
//! nothing outside the frames; reading a block (`read_block`, and
//! `read_stored_block` with the engine's decoder, which agree) fails or
//! gives exactly the table's length; `decode_image` succeeds exactly when
//! every block reads, and then gives `image_len` bytes: the header's
//! encoding, the blocks, the end marker and the footer's encoding. When the
//! image compresses again (`compress` with the default options), the new
//! file parses to the same header and footer, decodes to the same image,
//! and every frame of the image reads whole from the block `block_at`
//! names.
//!
//! Every file is read twice: as given, and with every CRC it holds
//! rewritten to match the bytes it covers (as the format's own property
//! tests damage files), so that a mutation reaches the checks and the zstd
//! decompression behind the CRCs, which a fuzzer passes only by luck.
//! The committed inputs stay plain files.
//!
//! Images over [`MAX_IMAGE`] bytes (a 64 KiB file of zstd frames can
//! describe gigabytes) are checked structurally only: no block is
//! decompressed, so that no run is slow or large.

use sealog_format::compressed::{
    self, BlockDecoder, BlockIndex, CompressOptions, CompressedSegment, TABLE_OFFSET, parse_head,
    read_stored_block,
};
use sealog_format::frame::{self, FrameRead};
use sealog_format::segment::{
    END_MARKER_LEN, FOOTER_LEN, HEADER_LEN, SegmentFooter, SegmentHeader,
};

/// Where the verbatim segment header and footer sit in a compressed file.
const HEADER_AT: usize = compressed::CONTAINER_HEAD_LEN;
const FOOTER_AT: usize = HEADER_AT + HEADER_LEN;

// Where the CRCs sit (`docs/format.md`, "Compressed sealed segments",
// "Segment header", "Segment footer"), and the fields that place them.
/// The container head's CRC, of its bytes 0..60.
const HEAD_CRC_AT: usize = 60;
/// The head's block count, dictionary length and dictionary CRC.
const HEAD_BLOCKS_AT: usize = 16;
const HEAD_DICT_LEN_AT: usize = 20;
const HEAD_DICT_CRC_AT: usize = 44;
/// The segment header's CRC, of its bytes 0..124; the footer's, of 0..172.
const HEADER_CRC_AT: usize = HEADER_AT + HEADER_LEN - 4;
const FOOTER_CRC_AT: usize = FOOTER_AT + FOOTER_LEN - 4;
/// A block table entry's stored length and CRC.
const ENTRY_STORED_LEN_AT: usize = 8;
const ENTRY_CRC_AT: usize = 12;

/// The largest image the target decompresses (16 MiB: two blocks of the
/// format's largest).
pub const MAX_IMAGE: u64 = 16 << 20;

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    check(data);
    let fixed = with_crcs_rewritten(data);
    if fixed != data {
        check(&fixed);
    }
}

/// Every property, on one file.
fn check(data: &[u8]) {
    let _ = compressed::is_compressed(data);
    let len = data.len() as u64;
    // An open reads the first 368 bytes and the file's length.
    let head = parse_head(data.get(..TABLE_OFFSET).unwrap_or(data), len);
    assert_eq!(
        head,
        parse_head(data, len),
        "parse_head reads more than the first {TABLE_OFFSET} bytes"
    );
    // The engine's record reads check the file with `BlockIndex::open`:
    // the same checks, the same errors.
    let index = BlockIndex::open(data);
    let segment = match CompressedSegment::parse(data) {
        Ok(segment) => segment,
        Err(e) => {
            assert_eq!(index.err(), Some(e), "BlockIndex::open and parse: error");
            return;
        }
    };
    let Ok(index) = index else {
        panic!("parse succeeds, BlockIndex::open fails");
    };
    let _ = format!("{segment:?}");
    match &head {
        Ok((header, footer)) => {
            assert_eq!(header, segment.header(), "parse_head and parse: header");
            assert_eq!(footer, segment.footer(), "parse_head and parse: footer");
        }
        Err(e) => panic!("parse succeeds, parse_head fails: {e}"),
    }
    for other in [len.saturating_sub(1), len + 1] {
        assert!(
            parse_head(data, other).is_err(),
            "parse_head accepts a length of {other} for a {len}-byte file"
        );
    }
    blocks(data, &segment);
    same_index(data, &segment, &index);
    if segment.image_len() > MAX_IMAGE {
        return;
    }
    let read = read_blocks(data, &segment);
    let image = segment.decode_image();
    match (&read, &image) {
        (Some(blocks), Ok(image)) => check_image(data, &segment, blocks, image),
        (None, Err(_)) => {}
        (Some(_), Err(e)) => panic!("every block reads, decode_image fails: {e}"),
        (None, Ok(_)) => panic!("decode_image succeeds, a block or the decoder fails"),
    }
    if let Ok(image) = image {
        round_trip(&image);
    }
}

/// The block table as `parse` checked it, and `block_at` on it.
fn blocks(data: &[u8], segment: &CompressedSegment<'_>) {
    let n = segment.block_count();
    let frames_end = segment.footer().frames_end;
    assert!(n >= 1, "a parsed segment has no block");
    assert_eq!(
        segment.image_len(),
        frames_end + (END_MARKER_LEN + FOOTER_LEN) as u64,
        "image_len"
    );
    assert!(segment.block(n).is_none(), "block {n} of {n}");
    let mut end = HEADER_LEN as u64;
    let mut stored = None;
    for i in 0..n {
        let Some(b) = segment.block(i) else {
            panic!("block {i} of {n} is missing");
        };
        assert_eq!(b.image_offset, end, "block {i} does not follow the last");
        assert!(b.len >= 1, "block {i} is empty");
        assert!(b.stored_len >= 1, "block {i} stores nothing");
        if let Some(at) = stored {
            assert_eq!(b.stored_offset, at, "block {i}'s stored bytes");
        }
        let stored_end = b.stored_offset + u64::from(b.stored_len);
        assert!(
            stored_end <= data.len() as u64,
            "block {i} is stored past the end of the file"
        );
        stored = Some(stored_end);
        assert_eq!(
            segment.block_at(b.image_offset),
            Some(i),
            "block_at of block {i}'s first byte"
        );
        assert_eq!(
            segment.block_at(b.image_end() - 1),
            Some(i),
            "block_at of block {i}'s last byte"
        );
        end = b.image_end();
    }
    assert_eq!(end, frames_end, "the blocks end before frames_end");
    assert_eq!(
        stored,
        Some(data.len() as u64),
        "the file ends after the blocks"
    );
    for outside in [0, HEADER_LEN as u64 - 1, frames_end, u64::MAX] {
        assert_eq!(
            segment.block_at(outside),
            None,
            "block_at({outside}) is outside the frames"
        );
    }
}

/// The blocks and the dictionary a `BlockIndex` reads in place are those
/// `parse` gives, and `block_at` agrees.
fn same_index(data: &[u8], segment: &CompressedSegment<'_>, index: &BlockIndex) {
    let n = segment.block_count();
    assert_eq!(index.block_count(), n, "BlockIndex: block count");
    assert_eq!(
        index.dictionary(data),
        segment.dictionary(),
        "BlockIndex: dictionary"
    );
    assert_eq!(index.block(data, n), None, "BlockIndex: block {n} of {n}");
    for i in 0..n {
        let b = segment.block(i);
        assert_eq!(index.block(data, i), b, "BlockIndex: block {i}");
        if let Some(b) = b {
            for at in [b.image_offset, b.image_end() - 1] {
                assert_eq!(
                    index.block_at(data, at),
                    Some(i),
                    "BlockIndex: block_at({at})"
                );
            }
        }
    }
    let frames_end = segment.footer().frames_end;
    for outside in [0, HEADER_LEN as u64 - 1, frames_end, u64::MAX] {
        assert_eq!(
            index.block_at(data, outside),
            None,
            "BlockIndex: block_at({outside})"
        );
    }
}

/// Every block, read as `read_block` reads it and as the engine does (its
/// own decoder, made from the dictionary, and the entry alone); `None` if
/// the decoder or any block fails.
fn read_blocks(data: &[u8], segment: &CompressedSegment<'_>) -> Option<Vec<Vec<u8>>> {
    let decoder = segment.decoder();
    let engine = BlockDecoder::new(segment.dictionary());
    assert_eq!(
        decoder.is_ok(),
        engine.is_ok(),
        "decoder() and BlockDecoder::new disagree on the dictionary"
    );
    let (Ok(mut decoder), Ok(mut engine)) = (decoder, engine) else {
        return None;
    };
    let n = segment.block_count();
    assert!(
        segment.read_block(n, &mut decoder).is_err(),
        "read_block({n}) of {n} blocks"
    );
    let mut all = Some(Vec::with_capacity(n));
    for i in 0..n {
        let Some(b) = segment.block(i) else {
            panic!("block {i} of {n} is missing");
        };
        let read = segment.read_block(i, &mut decoder);
        assert_eq!(
            read,
            read_stored_block(data, i, &b, &mut engine),
            "read_block and read_stored_block differ on block {i}"
        );
        match read {
            Ok(bytes) => {
                assert_eq!(bytes.len(), b.len as usize, "block {i}'s length");
                if let Some(all) = &mut all {
                    all.push(bytes);
                }
            }
            Err(_) => all = None,
        }
    }
    all
}

/// The decoded image: header, blocks, end marker, footer.
fn check_image(data: &[u8], segment: &CompressedSegment<'_>, blocks: &[Vec<u8>], image: &[u8]) {
    assert_eq!(
        image.len() as u64,
        segment.image_len(),
        "the image's length"
    );
    let header = segment.header().encode();
    let footer = segment.footer().encode();
    assert_eq!(
        image.get(..HEADER_LEN),
        Some(&header[..]),
        "the image's header"
    );
    assert_eq!(
        data.get(HEADER_AT..FOOTER_AT),
        Some(&header[..]),
        "the file's header"
    );
    let tail = image.len().saturating_sub(FOOTER_LEN);
    assert_eq!(image.get(tail..), Some(&footer[..]), "the image's footer");
    assert_eq!(
        data.get(FOOTER_AT..TABLE_OFFSET),
        Some(&footer[..]),
        "the file's footer"
    );
    assert_eq!(SegmentHeader::decode(image).as_ref(), Ok(segment.header()));
    assert_eq!(SegmentFooter::decode(image).as_ref(), Ok(segment.footer()));
    let mut at = HEADER_LEN;
    for (i, bytes) in blocks.iter().enumerate() {
        assert_eq!(
            image.get(at..at + bytes.len()),
            Some(&bytes[..]),
            "block {i} in the image"
        );
        at += bytes.len();
    }
    assert!(
        frame::is_end_marker(image.get(at..).unwrap_or_default()),
        "no end marker after the blocks"
    );
}

/// The image compressed again reads back the same, and every frame reads
/// whole from the block `block_at` names.
fn round_trip(image: &[u8]) {
    let Ok(file) = compressed::compress(image, &CompressOptions::default()) else {
        return;
    };
    let segment = match CompressedSegment::parse(&file) {
        Ok(s) => s,
        Err(e) => panic!("a file compress wrote does not parse: {e}"),
    };
    let head = parse_head(file.get(..TABLE_OFFSET).unwrap_or(&file), file.len() as u64);
    assert_eq!(
        head.as_ref().ok(),
        Some(&(*segment.header(), *segment.footer())),
        "parse_head on a file compress wrote"
    );
    let (header, footer) = match (SegmentHeader::decode(image), SegmentFooter::decode(image)) {
        (Ok(h), Ok(f)) => (h, f),
        _ => panic!("compress took an image whose header or footer does not decode"),
    };
    assert_eq!(segment.header(), &header, "round trip: header");
    assert_eq!(segment.footer(), &footer, "round trip: footer");
    match segment.decode_image() {
        Ok(back) => assert!(back == image, "round trip: the image differs"),
        Err(e) => panic!("a file compress wrote does not decode: {e}"),
    }
    let mut decoder = match segment.decoder() {
        Ok(d) => d,
        Err(e) => panic!("a file compress wrote has a dictionary zstd cannot load: {e}"),
    };
    let mut last: Option<(usize, Vec<u8>)> = None;
    let mut at = HEADER_LEN;
    let frames_end = usize::try_from(footer.frames_end).unwrap_or(usize::MAX);
    while at < frames_end {
        let Ok(FrameRead::Frame(expected)) = frame::read_frame(&image[at..frames_end]) else {
            panic!("compress took an image with no frame at {at}");
        };
        let Some(i) = segment.block_at(at as u64) else {
            panic!("no block holds the frame at {at}");
        };
        if last.as_ref().is_none_or(|(j, _)| *j != i) {
            match segment.read_block(i, &mut decoder) {
                Ok(bytes) => last = Some((i, bytes)),
                Err(e) => panic!("block {i} of a file compress wrote: {e}"),
            }
        }
        let (Some((_, bytes)), Some(b)) = (&last, segment.block(i)) else {
            unreachable!("block {i} was just read");
        };
        let start = (at as u64 - b.image_offset) as usize;
        match frame::read_frame(bytes.get(start..).unwrap_or_default()) {
            Ok(FrameRead::Frame(got)) => assert_eq!(got, expected, "the frame at {at}"),
            other => panic!("the frame at {at} does not read from block {i}: {other:?}"),
        }
        at += expected.len;
    }
}

/// `data` with every CRC it holds rewritten to match the bytes it covers,
/// as far as its (perhaps mutated) fields place them: each block's stored
/// bytes (in the table), the table, the dictionary (in the head), the
/// segment header and footer, and the container head last.
fn with_crcs_rewritten(data: &[u8]) -> Vec<u8> {
    let mut file = data.to_vec();
    if file.len() < compressed::CONTAINER_HEAD_LEN {
        return file;
    }
    if file.len() >= TABLE_OFFSET {
        for (start, crc_at) in [(HEADER_AT, HEADER_CRC_AT), (FOOTER_AT, FOOTER_CRC_AT)] {
            let crc = crc32(&file[start..crc_at]);
            put_u32(&mut file, crc_at, crc);
        }
        let n = u32_at(&file, HEAD_BLOCKS_AT) as usize;
        let d = u32_at(&file, HEAD_DICT_LEN_AT) as usize;
        let table_end = n
            .checked_mul(compressed::BLOCK_ENTRY_LEN)
            .and_then(|t| t.checked_add(TABLE_OFFSET));
        let dictionary_at = table_end.and_then(|t| t.checked_add(4));
        let blocks_at = dictionary_at.and_then(|a| a.checked_add(d));
        if let (Some(table_end), Some(dictionary_at), Some(blocks_at)) =
            (table_end, dictionary_at, blocks_at)
            && blocks_at <= file.len()
        {
            let mut at = blocks_at;
            for i in 0..n {
                let entry = TABLE_OFFSET + i * compressed::BLOCK_ENTRY_LEN;
                let stored_len = u32_at(&file, entry + ENTRY_STORED_LEN_AT) as usize;
                let Some(end) = at.checked_add(stored_len).filter(|&e| e <= file.len()) else {
                    break;
                };
                let crc = crc32(&file[at..end]);
                put_u32(&mut file, entry + ENTRY_CRC_AT, crc);
                at = end;
            }
            let crc = crc32(&file[TABLE_OFFSET..table_end]);
            put_u32(&mut file, table_end, crc);
            let crc = crc32(&file[dictionary_at..blocks_at]);
            put_u32(&mut file, HEAD_DICT_CRC_AT, crc);
        }
    }
    let crc = crc32(&file[..HEAD_CRC_AT]);
    put_u32(&mut file, HEAD_CRC_AT, crc);
    file
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..)
        .and_then(|b| b.first_chunk::<4>())
        .map_or(0, |b| u32::from_le_bytes(*b))
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(dst) = bytes.get_mut(at..at + 4) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

/// CRC-32 (IEEE 802.3, as `crc32fast` computes it), by table.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_ieee_crc() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    /// The committed seeds are whole files: rewriting their CRCs changes
    /// nothing, so their second reading is skipped.
    #[test]
    fn the_seeds_crcs_are_already_right() -> std::io::Result<()> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/compressed_segment"
        );
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                let file = std::fs::read(&path)?;
                assert!(
                    CompressedSegment::parse(&file).is_ok(),
                    "{}",
                    path.display()
                );
                assert!(with_crcs_rewritten(&file) == file, "{}", path.display());
                seeds += 1;
            }
        }
        assert!(seeds > 0, "no seed in {dir}");
        Ok(())
    }
}
