//! Compressed sealed segments: a sealed segment stored as zstd blocks.
//!
//! A sealed segment may be stored compressed, under the same file name. The
//! compressed file encodes the segment's *image*, the exact bytes of the
//! uncompressed sealed segment (header ‖ frames ‖ end marker ‖ footer), and
//! decoding it gives that image byte for byte: every rule about segments
//! applies to the image, and frame offsets (the sidecar's, those in errors)
//! are offsets in the image. The first 8 bytes tell the two forms apart:
//! [`SEGMENT_MAGIC`](crate::segment::SEGMENT_MAGIC) or [`COMPRESSED_MAGIC`].
//!
//! ```text
//! 0                  container head (64 bytes)
//! 64                 segment header, verbatim (the image's bytes 0..128)
//! 192                segment footer, verbatim (the image's last 176 bytes)
//! 368                block table: n entries of 16 bytes, then their CRC-32
//! 368 + 16n + 4      zstd dictionary (d bytes; none when d = 0)
//! … + d              the blocks' stored bytes, in table order; the file ends
//!                    after the last
//! ```
//!
//! A block is one zstd frame holding whole frames of the image, so that a
//! reader of one record decompresses one block ([`CompressedSegment::block_at`],
//! [`CompressedSegment::read_block`]). [`CompressedSegment::parse`] checks the
//! structure without decompressing anything; each block's stored bytes carry
//! a CRC that is checked when the block is read.
//!
//! The byte layout is in `docs/format.md`, "Compressed sealed segments".

use crate::le::{array_at, i32_at, part, put, u16_at, u32_at, u64_at};
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::EncoderDictionary;
use zstd::zstd_safe;

use crate::frame::{FRAME_HEADER_LEN, FrameRead, end_marker, is_end_marker, read_frame};
use crate::record::MAX_RECORD_LEN;
use crate::segment::{END_MARKER_LEN, FOOTER_LEN, HEADER_LEN, SegmentFooter, SegmentHeader};

/// Magic number at the start of a compressed segment file.
pub const COMPRESSED_MAGIC: [u8; 8] = *b"SEALOGSZ";
/// The container format version this code writes and reads.
pub const CONTAINER_VERSION: u16 = 1;
/// Length of the container head.
pub const CONTAINER_HEAD_LEN: usize = 64;
/// Length of one block table entry.
pub const BLOCK_ENTRY_LEN: usize = 16;
/// Where the block table starts (64 + 128 + 176 = 368).
pub const TABLE_OFFSET: usize = CONTAINER_HEAD_LEN + HEADER_LEN + FOOTER_LEN;
/// The most image bytes one block may hold (8 MiB).
pub const MAX_BLOCK_LEN: usize = 8 << 20;
/// The longest dictionary a file may carry (1 MiB).
pub const MAX_DICTIONARY_LEN: usize = 1 << 20;

const _: () = assert!(TABLE_OFFSET == 368);
// A frame always fits in a block.
const _: () = assert!(FRAME_HEADER_LEN + MAX_RECORD_LEN <= MAX_BLOCK_LEN);

// Container head field offsets.
const C_MAGIC: usize = 0;
const C_VERSION: usize = C_MAGIC + 8;
const C_LEN: usize = C_VERSION + 2;
const C_FLAGS: usize = C_LEN + 2;
const C_BLOCKS: usize = C_FLAGS + 4;
const C_DICT_LEN: usize = C_BLOCKS + 4;
const C_IMAGE_LEN: usize = C_DICT_LEN + 4;
const C_STORED_LEN: usize = C_IMAGE_LEN + 8;
const C_LEVEL: usize = C_STORED_LEN + 8;
const C_DICT_CRC: usize = C_LEVEL + 4;
const C_RESERVED: usize = C_DICT_CRC + 4;
const C_CRC: usize = CONTAINER_HEAD_LEN - 4;
const _: () = assert!(C_RESERVED + 12 == C_CRC);

// Block table entry field offsets.
const E_IMAGE_OFFSET: usize = 0;
const E_LEN: usize = E_IMAGE_OFFSET + 4;
const E_STORED_LEN: usize = E_LEN + 4;
const E_CRC: usize = E_STORED_LEN + 4;
const _: () = assert!(E_CRC + 4 == BLOCK_ENTRY_LEN);

/// Where the verbatim segment header and footer sit in the file.
const HEADER_AT: usize = CONTAINER_HEAD_LEN;
const FOOTER_AT: usize = HEADER_AT + HEADER_LEN;
/// Bytes of the table's CRC.
const TABLE_CRC_LEN: usize = 4;
/// Bytes of an image after its frames: the end marker and the footer.
const IMAGE_TAIL: u64 = (END_MARKER_LEN + FOOTER_LEN) as u64;

/// The writer's zstd level: on the realistic workload, 6 stores records in
/// 0.91 of the bytes of level 3 for 1.6 times its CPU (docs/benchmarks.md,
/// "The leaf hashes of compressed segments freed, and level 6").
const DEFAULT_LEVEL: i32 = 6;
/// The writer's block size: a block ends after the frame that brings it to
/// at least this many bytes.
const DEFAULT_BLOCK_TARGET: usize = 16 << 10;
/// The writer's dictionary size.
const DEFAULT_DICTIONARY_LEN: usize = 64 << 10;
/// The dictionary is trained on the body of every 16th frame…
const SAMPLE_EVERY: u64 = 16;
/// … if there are at least 64 such samples…
const MIN_SAMPLES: usize = 64;
/// … holding at least 16 KiB.
const MIN_SAMPLE_BYTES: usize = 16 << 10;

/// What is wrong with a compressed segment, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}{}: {problem}", .block.map(|b| format!(" (block {b})")).unwrap_or_default())]
pub struct ContainerError {
    /// Where: a byte offset in the compressed file (in the image, for an
    /// error of [`compress`]).
    pub offset: u64,
    /// The block concerned, if one is.
    pub block: Option<usize>,
    /// What is wrong, in words.
    pub problem: String,
}

impl ContainerError {
    fn at(offset: usize, problem: impl Into<String>) -> ContainerError {
        ContainerError {
            offset: offset as u64,
            block: None,
            problem: problem.into(),
        }
    }

    fn in_block(offset: u64, block: usize, problem: impl Into<String>) -> ContainerError {
        ContainerError {
            offset,
            block: Some(block),
            problem: problem.into(),
        }
    }
}

/// Whether `file` starts with the compressed segment magic.
pub fn is_compressed(file: &[u8]) -> bool {
    file.first_chunk::<8>() == Some(&COMPRESSED_MAGIC)
}

/// How [`compress`] writes a compressed segment.
#[derive(Clone, Debug)]
pub struct CompressOptions {
    /// The zstd level (default 3).
    pub level: i32,
    /// Image bytes per block: a block ends after the frame that brings it to
    /// at least this many, and a frame longer than this is a block of its
    /// own (default 16 KiB).
    pub block_target: usize,
    /// The longest dictionary to train (default 64 KiB; 0: no dictionary).
    pub dictionary_len: usize,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            level: DEFAULT_LEVEL,
            block_target: DEFAULT_BLOCK_TARGET,
            dictionary_len: DEFAULT_DICTIONARY_LEN,
        }
    }
}

/// Compresses the image of a sealed segment (the exact bytes of an
/// uncompressed sealed segment file).
///
/// Checks that the image's header and footer decode and agree (first seq,
/// segment number, store id), that the footer's `frames_end` gives the
/// image's length, that frames read one after the other from 128 to
/// `frames_end`, as many as the footer counts, and that the end marker is at
/// `frames_end`; the error's offset is in the image. Blocks are cut between
/// frames. A dictionary of at most `options.dictionary_len` bytes is trained
/// on the record bodies of every 16th frame when there are at least 64 such
/// samples of 16 KiB in all; if training fails, or zstd cannot load what it
/// made, the file has no dictionary (that is never an error).
pub fn compress(image: &[u8], options: &CompressOptions) -> Result<Vec<u8>, ContainerError> {
    compress_unless(image, options, &|| false)
        .and_then(|c| c.ok_or_else(|| ContainerError::at(0, "stopped")))
}

/// [`compress`], asking `stopped` before training the dictionary and
/// before each block (a 64 MiB segment has ~4,000): `Ok(None)` once it
/// says yes, so that a writer closing does not wait for a whole segment's
/// compression (~0.8 s of CPU).
pub fn compress_unless(
    image: &[u8],
    options: &CompressOptions,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<Vec<u8>>, ContainerError> {
    let walk = walk_image(image, options.block_target)?;
    if stopped() {
        return Ok(None);
    }
    let dictionary = train(&walk.samples, options);
    let prepared = if dictionary.is_empty() {
        None
    } else {
        EncoderDictionary::try_copy(&dictionary, options.level).ok()
    };
    let zstd_error = |e: std::io::Error| ContainerError::at(0, format!("zstd: {e}"));
    let (dictionary, mut compressor) = match &prepared {
        Some(prepared) => (
            dictionary.as_slice(),
            Compressor::with_prepared_dictionary(prepared).map_err(zstd_error)?,
        ),
        None => (&[][..], Compressor::new(options.level).map_err(zstd_error)?),
    };
    let mut entries = Vec::with_capacity(walk.blocks.len());
    let mut stored = Vec::new();
    for &(start, end) in &walk.blocks {
        if stopped() {
            return Ok(None);
        }
        let bytes = image.get(start..end).unwrap_or_default();
        let out = compressor.compress(bytes).map_err(|e| {
            ContainerError::at(
                start,
                format!("zstd could not compress image bytes {start}..{end}: {e}"),
            )
        })?;
        let too_big = || ContainerError::at(start, "a block does not fit the table's u32 fields");
        entries.push(Entry {
            image_offset: u32::try_from(start).map_err(|_| too_big())?,
            len: u32::try_from(end - start).map_err(|_| too_big())?,
            stored_len: u32::try_from(out.len()).map_err(|_| too_big())?,
            crc: crc32fast::hash(&out),
        });
        stored.extend_from_slice(&out);
    }
    let header = image.get(..HEADER_LEN).unwrap_or_default();
    let footer = image
        .get(image.len().saturating_sub(FOOTER_LEN)..)
        .unwrap_or_default();
    assemble(
        header,
        footer,
        image.len() as u64,
        options.level,
        dictionary,
        &entries,
        &stored,
    )
    .map(Some)
    .ok_or_else(|| ContainerError::at(0, "the segment has more blocks than a u32 counts"))
}

/// What [`walk_image`] found: where the blocks are cut, and the dictionary's
/// training samples.
struct ImageWalk<'a> {
    /// Each block's image bytes, `start..end`.
    blocks: Vec<(usize, usize)>,
    samples: Vec<&'a [u8]>,
}

/// Checks an image as [`compress`] describes and cuts it into blocks.
fn walk_image(image: &[u8], block_target: usize) -> Result<ImageWalk<'_>, ContainerError> {
    let min = HEADER_LEN + END_MARKER_LEN + FOOTER_LEN;
    if image.len() < min {
        return Err(ContainerError::at(
            image.len(),
            format!(
                "the image is {} bytes, shorter than a segment header, end marker and footer ({min})",
                image.len()
            ),
        ));
    }
    let footer_at = image.len() - FOOTER_LEN;
    let header = SegmentHeader::decode(image).map_err(|e| ContainerError::at(0, e.to_string()))?;
    let footer =
        SegmentFooter::decode(image).map_err(|e| ContainerError::at(footer_at, e.to_string()))?;
    if let Some(problem) = disagreement(&header, &footer) {
        return Err(ContainerError::at(footer_at, problem));
    }
    let frames_end = footer.frames_end;
    let fe_at = footer_at + 24;
    if frames_end.checked_add(IMAGE_TAIL) != Some(image.len() as u64) {
        return Err(ContainerError::at(
            fe_at,
            format!(
                "the footer's frames_end {frames_end} makes an image of frames_end + {IMAGE_TAIL} bytes; the image is {} bytes",
                image.len()
            ),
        ));
    }
    if frames_end > u64::from(u32::MAX) {
        return Err(ContainerError::at(
            fe_at,
            format!("frames_end {frames_end} is past 4 GiB: block offsets are u32"),
        ));
    }
    // Below the image's length, so a usize.
    let frames_end = frames_end as usize;
    if frames_end <= HEADER_LEN {
        return Err(ContainerError::at(
            fe_at,
            format!("the segment has no frames: frames_end is {frames_end}"),
        ));
    }
    let frames = image.get(..frames_end).unwrap_or_default();
    let mut cutter = Cutter::new(block_target);
    let mut samples = Vec::new();
    let mut count = 0u64;
    let mut at = HEADER_LEN;
    while at < frames_end {
        match read_frame(frames.get(at..).unwrap_or_default()) {
            Ok(FrameRead::Frame(frame)) => {
                if count.is_multiple_of(SAMPLE_EVERY) {
                    samples.push(frame.body);
                }
                cutter.add(at, frame.len);
                at += frame.len;
                count += 1;
            }
            Ok(FrameRead::End) => {
                return Err(ContainerError::at(
                    at,
                    format!(
                        "the frames end at {at} (a zero length), before the footer's frames_end {frames_end}"
                    ),
                ));
            }
            Err(e) => {
                return Err(ContainerError::at(at, format!("the frame at {at}: {e}")));
            }
        }
    }
    if !is_end_marker(image.get(frames_end..).unwrap_or_default()) {
        return Err(ContainerError::at(
            frames_end,
            format!("no end marker at the footer's frames_end {frames_end}"),
        ));
    }
    if count != footer.record_count {
        return Err(ContainerError::at(
            footer_at + 8,
            format!(
                "the image holds {count} frames, the footer counts {} records",
                footer.record_count
            ),
        ));
    }
    Ok(ImageWalk {
        blocks: cutter.finish(),
        samples,
    })
}

/// Cuts blocks between frames: a block ends after the frame that brings it
/// to the target; a frame longer than the target is a block of its own.
struct Cutter {
    target: usize,
    start: usize,
    end: usize,
    blocks: Vec<(usize, usize)>,
}

impl Cutter {
    fn new(target: usize) -> Cutter {
        Cutter {
            // Two blocks' worth always fits in a block.
            target: target.clamp(1, MAX_BLOCK_LEN / 2),
            start: HEADER_LEN,
            end: HEADER_LEN,
            blocks: Vec::new(),
        }
    }

    /// Adds the frame of `len` bytes at `at` (right after the previous one).
    fn add(&mut self, at: usize, len: usize) {
        let held = self.end - self.start;
        if held > 0 && (len > self.target || held + len > MAX_BLOCK_LEN) {
            self.close();
        }
        if self.start == self.end {
            self.start = at;
        }
        self.end = at + len;
        if self.end - self.start >= self.target {
            self.close();
        }
    }

    fn close(&mut self) {
        if self.end > self.start {
            self.blocks.push((self.start, self.end));
        }
        self.start = self.end;
    }

    fn finish(mut self) -> Vec<(usize, usize)> {
        self.close();
        self.blocks
    }
}

/// The dictionary for `samples`, or none (empty).
fn train(samples: &[&[u8]], options: &CompressOptions) -> Vec<u8> {
    let sample_bytes: usize = samples.iter().map(|s| s.len()).sum();
    if options.dictionary_len == 0 || samples.len() < MIN_SAMPLES || sample_bytes < MIN_SAMPLE_BYTES
    {
        return Vec::new();
    }
    match zstd::dict::from_samples(samples, options.dictionary_len.min(MAX_DICTIONARY_LEN)) {
        Ok(dictionary) if dictionary.len() <= MAX_DICTIONARY_LEN => dictionary,
        _ => Vec::new(),
    }
}

/// Why the header and footer of one segment cannot belong together.
fn disagreement(header: &SegmentHeader, footer: &SegmentFooter) -> Option<String> {
    if header.first_seq != footer.first_seq {
        return Some(format!(
            "the segment header and footer disagree on the first seq (header {}, footer {})",
            header.first_seq, footer.first_seq
        ));
    }
    if header.segment_no != footer.segment_no {
        return Some(format!(
            "the segment header and footer disagree on the segment number (header {}, footer {})",
            header.segment_no, footer.segment_no
        ));
    }
    if header.store_id != footer.store_id {
        return Some("the segment header and footer disagree on the store id".into());
    }
    None
}

/// One block table entry, as written.
#[derive(Clone, Copy, Debug)]
struct Entry {
    image_offset: u32,
    len: u32,
    stored_len: u32,
    crc: u32,
}

/// The file for these parts, or `None` if there are more blocks than a u32
/// counts or the dictionary is longer than a u32.
fn assemble(
    header: &[u8],
    footer: &[u8],
    image_len: u64,
    level: i32,
    dictionary: &[u8],
    entries: &[Entry],
    stored: &[u8],
) -> Option<Vec<u8>> {
    let n = u32::try_from(entries.len()).ok()?;
    let d = u32::try_from(dictionary.len()).ok()?;
    let mut head = [0u8; CONTAINER_HEAD_LEN];
    put(&mut head, C_MAGIC, &COMPRESSED_MAGIC);
    put(&mut head, C_VERSION, &CONTAINER_VERSION.to_le_bytes());
    put(&mut head, C_LEN, &(CONTAINER_HEAD_LEN as u16).to_le_bytes());
    put(&mut head, C_BLOCKS, &n.to_le_bytes());
    put(&mut head, C_DICT_LEN, &d.to_le_bytes());
    put(&mut head, C_IMAGE_LEN, &image_len.to_le_bytes());
    put(
        &mut head,
        C_STORED_LEN,
        &(stored.len() as u64).to_le_bytes(),
    );
    put(&mut head, C_LEVEL, &level.to_le_bytes());
    put(
        &mut head,
        C_DICT_CRC,
        &crc32fast::hash(dictionary).to_le_bytes(),
    );
    let crc = crc32fast::hash(part(&head, 0..C_CRC));
    put(&mut head, C_CRC, &crc.to_le_bytes());

    let mut table = Vec::with_capacity(entries.len() * BLOCK_ENTRY_LEN);
    for e in entries {
        table.extend_from_slice(&e.image_offset.to_le_bytes());
        table.extend_from_slice(&e.len.to_le_bytes());
        table.extend_from_slice(&e.stored_len.to_le_bytes());
        table.extend_from_slice(&e.crc.to_le_bytes());
    }
    let mut out = Vec::with_capacity(
        TABLE_OFFSET + table.len() + TABLE_CRC_LEN + dictionary.len() + stored.len(),
    );
    out.extend_from_slice(&head);
    out.extend_from_slice(header);
    out.extend_from_slice(footer);
    out.extend_from_slice(&table);
    out.extend_from_slice(&crc32fast::hash(&table).to_le_bytes());
    out.extend_from_slice(dictionary);
    out.extend_from_slice(stored);
    Some(out)
}

/// One block's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Offset in the image of the block's first byte.
    pub image_offset: u64,
    /// Image bytes the block holds (its uncompressed length).
    pub len: u32,
    /// Offset in the file of the block's stored (compressed) bytes.
    pub stored_offset: u64,
    /// Length of the stored bytes.
    pub stored_len: u32,
    /// CRC-32 of the stored bytes.
    pub crc: u32,
}

impl Block {
    /// The image offset one past the block's last byte.
    pub fn image_end(&self) -> u64 {
        self.image_offset + u64::from(self.len)
    }
}

/// A compressed segment file, parsed and checked structurally (no
/// decompression).
#[derive(Clone)]
pub struct CompressedSegment<'a> {
    file: &'a [u8],
    header: SegmentHeader,
    footer: SegmentFooter,
    image_len: u64,
    level: i32,
    dictionary: &'a [u8],
    dictionary_at: u64,
    blocks: Vec<Block>,
}

impl std::fmt::Debug for CompressedSegment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the file's bytes: there may be many.
        f.debug_struct("CompressedSegment")
            .field("file_len", &self.file.len())
            .field("header", &self.header)
            .field("footer", &self.footer)
            .field("image_len", &self.image_len)
            .field("level", &self.level)
            .field("dictionary_len", &self.dictionary.len())
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

/// The fields of a compressed file's head, header and footer, checked.
struct Fields<'a> {
    head: &'a [u8; CONTAINER_HEAD_LEN],
    header: SegmentHeader,
    footer: SegmentFooter,
    n: u32,
    d: u32,
    image_len: u64,
    stored_total: u64,
}

impl<'a> Fields<'a> {
    /// Reads and checks the first [`TABLE_OFFSET`] bytes of `file`.
    fn parse(file: &'a [u8]) -> Result<Fields<'a>, ContainerError> {
        let Some(head) = file.first_chunk::<CONTAINER_HEAD_LEN>() else {
            return Err(ContainerError::at(
                file.len(),
                format!(
                    "the file is {} bytes, shorter than the {CONTAINER_HEAD_LEN}-byte container head",
                    file.len()
                ),
            ));
        };
        let magic: [u8; 8] = array_at(head, C_MAGIC);
        if magic != COMPRESSED_MAGIC {
            return Err(ContainerError::at(
                C_MAGIC,
                format!(
                    "the file starts with \"{}\", not the compressed segment magic \"SEALOGSZ\"",
                    magic.escape_ascii()
                ),
            ));
        }
        let stored = u32_at(head, C_CRC);
        let computed = crc32fast::hash(part(head, 0..C_CRC));
        if stored != computed {
            return Err(ContainerError::at(
                C_CRC,
                format!(
                    "the container head's CRC-32 is {stored:#010x}, its bytes 0..{C_CRC} have {computed:#010x}"
                ),
            ));
        }
        let version = u16_at(head, C_VERSION);
        if version != CONTAINER_VERSION {
            return Err(ContainerError::at(
                C_VERSION,
                format!(
                    "container version {version}; this build reads version {CONTAINER_VERSION}"
                ),
            ));
        }
        let head_len = u16_at(head, C_LEN);
        if usize::from(head_len) != CONTAINER_HEAD_LEN {
            return Err(ContainerError::at(
                C_LEN,
                format!("the head length is {head_len}, expected {CONTAINER_HEAD_LEN}"),
            ));
        }
        let flags = u32_at(head, C_FLAGS);
        if flags != 0 {
            return Err(ContainerError::at(
                C_FLAGS,
                format!("flags {flags:#010x} are set; version 1 defines none"),
            ));
        }
        if let Some(i) = part(head, C_RESERVED..C_CRC).iter().position(|&b| b != 0) {
            return Err(ContainerError::at(
                C_RESERVED + i,
                format!("reserved head bytes {C_RESERVED}..{C_CRC} are not zero"),
            ));
        }
        let n = u32_at(head, C_BLOCKS);
        if n == 0 {
            return Err(ContainerError::at(
                C_BLOCKS,
                "the block count is 0; a compressed segment has at least one block",
            ));
        }
        let d = u32_at(head, C_DICT_LEN);
        if d as usize > MAX_DICTIONARY_LEN {
            return Err(ContainerError::at(
                C_DICT_LEN,
                format!("the dictionary length {d} exceeds the limit of {MAX_DICTIONARY_LEN}"),
            ));
        }
        let image_len = u64_at(head, C_IMAGE_LEN);
        let stored_total = u64_at(head, C_STORED_LEN);

        if file.len() < TABLE_OFFSET {
            return Err(ContainerError::at(
                file.len(),
                format!(
                    "the file is {} bytes, too short for the container head, segment header and footer ({TABLE_OFFSET})",
                    file.len()
                ),
            ));
        }
        let header = SegmentHeader::decode(part(file, HEADER_AT..FOOTER_AT))
            .map_err(|e| ContainerError::at(HEADER_AT, e.to_string()))?;
        let footer = SegmentFooter::decode(part(file, FOOTER_AT..TABLE_OFFSET))
            .map_err(|e| ContainerError::at(FOOTER_AT, e.to_string()))?;
        if let Some(problem) = disagreement(&header, &footer) {
            return Err(ContainerError::at(FOOTER_AT, problem));
        }
        let frames_end = footer.frames_end;
        if frames_end.checked_add(IMAGE_TAIL) != Some(image_len) {
            return Err(ContainerError::at(
                C_IMAGE_LEN,
                format!(
                    "the image length is {image_len}; the footer's frames_end {frames_end} makes frames_end + {IMAGE_TAIL}"
                ),
            ));
        }

        Ok(Fields {
            head,
            header,
            footer,
            n,
            d,
            image_len,
            stored_total,
        })
    }
}

/// Where the blocks of a compressed file start (the end of its head, block
/// table and dictionary), read from its head's counts unchecked: for a
/// reader that asks the kernel for those bytes before it parses them.
/// `None` if `head` is shorter than the container head.
pub fn blocks_offset(head: &[u8]) -> Option<u64> {
    let head = head.get(..CONTAINER_HEAD_LEN)?;
    Some(
        (TABLE_OFFSET + TABLE_CRC_LEN) as u64
            + u64::from(u32_at(head, C_BLOCKS)) * BLOCK_ENTRY_LEN as u64
            + u64::from(u32_at(head, C_DICT_LEN)),
    )
}

/// The segment header and footer of a compressed segment file, from its
/// first [`TABLE_OFFSET`] bytes `start` (or more) and its length: the head
/// is checked (magic, CRC, version, length, flags, reserved bytes, counts),
/// the header and footer decoded and compared, the image length and the
/// file's length (`368 + 16n + 4 + d +` the blocks' total) checked. The
/// block table and the dictionary are not read (see
/// [`CompressedSegment::parse`]): for an open that reads the headers of
/// many segments and may never read a record of most.
pub fn parse_head(
    start: &[u8],
    file_len: u64,
) -> Result<(SegmentHeader, SegmentFooter), ContainerError> {
    let fields = Fields::parse(start)?;
    // The stored total is any u64 a damaged head holds: summed checked.
    let expected = ((TABLE_OFFSET + TABLE_CRC_LEN) as u64
        + u64::from(fields.n) * BLOCK_ENTRY_LEN as u64
        + u64::from(fields.d))
    .checked_add(fields.stored_total);
    if expected != Some(file_len) {
        let make = expected.map_or_else(|| "more than 2^64".to_owned(), |e| e.to_string());
        return Err(ContainerError::at(
            C_STORED_LEN,
            format!(
                "the file is {file_len} bytes; its head gives {} blocks, a {}-byte dictionary and \
                 {} bytes of blocks, which make {make}",
                fields.n, fields.d, fields.stored_total
            ),
        ));
    }
    Ok((fields.header, fields.footer))
}

/// What [`check_container`] found in a compressed file.
struct Container<'a> {
    header: SegmentHeader,
    footer: SegmentFooter,
    image_len: u64,
    level: i32,
    dictionary: &'a [u8],
    dictionary_at: u64,
}

/// The checks of [`CompressedSegment::parse`], handing `each` every
/// block's entry in order as it is checked (the last ones may be handed
/// before a later check fails).
fn check_container<'a>(
    file: &'a [u8],
    each: &mut dyn FnMut(Block),
) -> Result<Container<'a>, ContainerError> {
    let Fields {
        head,
        header,
        footer,
        n,
        d,
        image_len,
        stored_total,
    } = Fields::parse(file)?;
    let frames_end = footer.frames_end;
    // At most 2^32 entries of 16 bytes: no overflow in u64.
    let table_len = u64::from(n) * BLOCK_ENTRY_LEN as u64;
    let table_crc_at = TABLE_OFFSET as u64 + table_len;
    let dictionary_at = table_crc_at + TABLE_CRC_LEN as u64;
    let blocks_at = dictionary_at + u64::from(d);
    let file_len = file.len() as u64;
    if blocks_at > file_len {
        return Err(ContainerError::at(
            file.len(),
            format!(
                "the file is {file_len} bytes; its block table ({n} entries) and dictionary ({d} bytes) end at {blocks_at}"
            ),
        ));
    }
    // All within the file from here on, so they are usizes.
    let (table_crc_at, dictionary_at, blocks_at) = (
        table_crc_at as usize,
        dictionary_at as usize,
        blocks_at as usize,
    );
    let table = part(file, TABLE_OFFSET..table_crc_at);
    let stored = u32_at(file, table_crc_at);
    let computed = crc32fast::hash(table);
    if stored != computed {
        return Err(ContainerError::at(
            table_crc_at,
            format!(
                "the block table's CRC-32 is {stored:#010x}, its {n} entries have {computed:#010x}"
            ),
        ));
    }
    let dictionary = part(file, dictionary_at..blocks_at);
    let stored = u32_at(head, C_DICT_CRC);
    let computed = crc32fast::hash(dictionary);
    if stored != computed {
        return Err(ContainerError::at(
            dictionary_at,
            format!(
                "the dictionary's {d} bytes have CRC-32 {computed:#010x}, the head says {stored:#010x}"
            ),
        ));
    }

    let mut image_end = HEADER_LEN as u64;
    let mut stored_at = blocks_at as u64;
    for (i, entry) in table.chunks_exact(BLOCK_ENTRY_LEN).enumerate() {
        let entry_at = (TABLE_OFFSET + i * BLOCK_ENTRY_LEN) as u64;
        let image_offset = u64::from(u32_at(entry, E_IMAGE_OFFSET));
        let len = u32_at(entry, E_LEN);
        let stored_len = u32_at(entry, E_STORED_LEN);
        if image_offset != image_end {
            let problem = match i {
                0 => format!(
                    "block 0 starts at {image_offset}, not at {HEADER_LEN} (the end of the segment header)"
                ),
                _ => {
                    format!("block {i} starts at {image_offset}, the previous ends at {image_end}")
                }
            };
            return Err(ContainerError::in_block(entry_at, i, problem));
        }
        if len == 0 || len as usize > MAX_BLOCK_LEN {
            return Err(ContainerError::in_block(
                entry_at + E_LEN as u64,
                i,
                format!("block {i}'s length is {len}; a block holds 1 to {MAX_BLOCK_LEN} bytes"),
            ));
        }
        if stored_len == 0 {
            return Err(ContainerError::in_block(
                entry_at + E_STORED_LEN as u64,
                i,
                format!("block {i}'s stored length is 0"),
            ));
        }
        let stored_end = stored_at + u64::from(stored_len);
        if stored_end > file_len {
            return Err(ContainerError::in_block(
                entry_at + E_STORED_LEN as u64,
                i,
                format!(
                    "block {i}'s {stored_len} stored bytes at {stored_at} run past the end of the file ({file_len} bytes)"
                ),
            ));
        }
        each(Block {
            image_offset,
            len,
            stored_offset: stored_at,
            stored_len,
            crc: u32_at(entry, E_CRC),
        });
        image_end = image_offset + u64::from(len);
        stored_at = stored_end;
    }
    if image_end != frames_end {
        let last = (n as usize).saturating_sub(1);
        return Err(ContainerError::in_block(
            (TABLE_OFFSET + last * BLOCK_ENTRY_LEN) as u64,
            last,
            format!("the last block ends at {image_end}, the footer's frames_end is {frames_end}"),
        ));
    }
    let total = stored_at - blocks_at as u64;
    if total != stored_total {
        return Err(ContainerError::at(
            C_STORED_LEN,
            format!("the blocks' stored lengths add up to {total}, the head says {stored_total}"),
        ));
    }
    if stored_at != file_len {
        return Err(ContainerError {
            offset: stored_at,
            block: None,
            problem: format!("the file is {file_len} bytes; its blocks end at {stored_at}"),
        });
    }
    Ok(Container {
        header,
        footer,
        image_len,
        level: i32_at(head, C_LEVEL),
        dictionary,
        dictionary_at: dictionary_at as u64,
    })
}

impl<'a> CompressedSegment<'a> {
    /// Reads a compressed segment file and checks its structure: the
    /// head's magic, version, length, zero flags and reserved bytes and CRC;
    /// a block count of at least 1 and a dictionary of at most 1 MiB; a
    /// segment header and footer that decode and agree (first seq, segment
    /// number, store id); an image length of `frames_end + 12 + 176`; the
    /// table's and the dictionary's CRCs; blocks of 1 byte to 8 MiB, the
    /// first at 128, each where the previous ends, the last ending at
    /// `frames_end`, with stored lengths of at least 1 byte that add up to
    /// the head's total; and a file that ends after the last block. The
    /// blocks' own CRCs are checked as they are read.
    pub fn parse(file: &'a [u8]) -> Result<CompressedSegment<'a>, ContainerError> {
        let mut blocks = Vec::new();
        let c = check_container(file, &mut |b| blocks.push(b))?;
        Ok(CompressedSegment {
            file,
            header: c.header,
            footer: c.footer,
            image_len: c.image_len,
            level: c.level,
            dictionary: c.dictionary,
            dictionary_at: c.dictionary_at,
            blocks,
        })
    }

    /// The segment header (the image's first 128 bytes).
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The segment footer (the image's last 176 bytes).
    pub fn footer(&self) -> &SegmentFooter {
        &self.footer
    }

    /// The image's length: `frames_end + 12 + 176`.
    pub fn image_len(&self) -> u64 {
        self.image_len
    }

    /// The zstd level the blocks were written with (informational).
    pub fn level(&self) -> i32 {
        self.level
    }

    /// The zstd dictionary (empty: none).
    pub fn dictionary(&self) -> &'a [u8] {
        self.dictionary
    }

    /// How many blocks the segment has (at least 1).
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Block `i`'s entry.
    pub fn block(&self, i: usize) -> Option<Block> {
        self.blocks.get(i).copied()
    }

    /// The block holding image offset `offset` (`HEADER_LEN <= offset <
    /// frames_end`), by binary search; `None` outside the frames.
    pub fn block_at(&self, offset: u64) -> Option<usize> {
        if offset < HEADER_LEN as u64 || offset >= self.footer.frames_end {
            return None;
        }
        // The blocks cover 128..frames_end without gaps (parse checked).
        self.blocks
            .partition_point(|b| b.image_offset <= offset)
            .checked_sub(1)
    }

    /// A decoder for this segment's blocks (its dictionary loaded).
    pub fn decoder(&self) -> Result<BlockDecoder, ContainerError> {
        BlockDecoder::new(self.dictionary).map_err(|e| ContainerError {
            offset: self.dictionary_at,
            ..e
        })
    }

    /// Checks block `i`'s stored CRC, decompresses it with `decoder` (made
    /// for this segment's dictionary), and checks that exactly the table's
    /// length came out: the image bytes `image_offset..image_offset + len`.
    pub fn read_block(
        &self,
        i: usize,
        decoder: &mut BlockDecoder,
    ) -> Result<Vec<u8>, ContainerError> {
        let Some(block) = self.blocks.get(i) else {
            return Err(ContainerError::in_block(
                (TABLE_OFFSET as u64).saturating_add((i as u64).saturating_mul(16)),
                i,
                format!(
                    "there is no block {i}: the segment has {}",
                    self.blocks.len()
                ),
            ));
        };
        read_stored_block(self.file, i, block, decoder)
    }

    /// The whole image: header bytes ‖ every block ‖ end marker ‖ footer
    /// bytes (`image_len` bytes).
    pub fn decode_image(&self) -> Result<Vec<u8>, ContainerError> {
        let mut decoder = self.decoder()?;
        // The image length is checked against the table, not against what
        // the blocks hold: reserve no more than a generous ratio of the file
        // up front, and grow past it as blocks come out.
        let reserve = self
            .image_len
            .min((self.file.len() as u64).saturating_mul(16));
        let mut image = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        image.extend_from_slice(part(self.file, HEADER_AT..FOOTER_AT));
        for i in 0..self.blocks.len() {
            image.extend_from_slice(&self.read_block(i, &mut decoder)?);
        }
        image.extend_from_slice(&end_marker());
        image.extend_from_slice(part(self.file, FOOTER_AT..TABLE_OFFSET));
        if image.len() as u64 != self.image_len {
            return Err(ContainerError::at(
                C_IMAGE_LEN,
                format!(
                    "the image decodes to {} bytes, the head says {}",
                    image.len(),
                    self.image_len
                ),
            ));
        }
        Ok(image)
    }
}

/// Reads block `i`, whose entry is `block` ([`CompressedSegment::block`]),
/// from `file`, the compressed segment file the entry was parsed from:
/// checks the CRC of its stored bytes, decompresses them with `decoder` and
/// checks that exactly `block.len` bytes came out. This is
/// [`CompressedSegment::read_block`] for a reader that keeps the block
/// table apart from the file's bytes.
pub fn read_stored_block(
    file: &[u8],
    i: usize,
    block: &Block,
    decoder: &mut BlockDecoder,
) -> Result<Vec<u8>, ContainerError> {
    if block.len == 0 || block.len as usize > MAX_BLOCK_LEN {
        return Err(ContainerError::in_block(
            block.stored_offset,
            i,
            format!(
                "block {i}'s length is {}; a block holds 1 to {MAX_BLOCK_LEN} bytes",
                block.len
            ),
        ));
    }
    let Some(stored) = usize::try_from(block.stored_offset)
        .ok()
        .and_then(|at| file.get(at..at.checked_add(block.stored_len as usize)?))
    else {
        return Err(ContainerError::in_block(
            block.stored_offset,
            i,
            format!(
                "block {i}'s {} stored bytes at {} are not all in the file ({} bytes)",
                block.stored_len,
                block.stored_offset,
                file.len()
            ),
        ));
    };
    let computed = crc32fast::hash(stored);
    if computed != block.crc {
        return Err(ContainerError::in_block(
            block.stored_offset,
            i,
            format!(
                "block {i}'s stored bytes have CRC-32 {computed:#010x}, the table says {:#010x}",
                block.crc
            ),
        ));
    }
    decoder
        .decompress(stored, block.len as usize, i)
        .map_err(|problem| ContainerError::in_block(block.stored_offset, i, problem))
}

/// Blocks whose stored offset a [`BlockIndex`] keeps (the others' are
/// summed from the table, up to 63 entries).
const STORED_EVERY: usize = 64;

/// A compressed segment file's block table, checked as
/// [`CompressedSegment::parse`] checks it, then read in place from the
/// file (which the caller keeps, unchanged, and passes to each call):
/// where every block is, for a reader that keeps many segments open. A
/// parsed table is 32 bytes a block (128 KB for a 64 MiB segment); this
/// keeps 8 bytes every 64 blocks.
#[derive(Clone, Debug)]
pub struct BlockIndex {
    blocks: usize,
    frames_end: u64,
    dictionary: std::ops::Range<usize>,
    /// The stored offset of blocks 0, 64, 128, ….
    stored_at: Vec<u64>,
}

impl BlockIndex {
    /// Checks `file` as [`CompressedSegment::parse`] does (the same errors)
    /// and indexes its block table.
    pub fn open(file: &[u8]) -> Result<BlockIndex, ContainerError> {
        let mut blocks = 0usize;
        let mut stored_at = Vec::new();
        let c = check_container(file, &mut |b| {
            if blocks.is_multiple_of(STORED_EVERY) {
                stored_at.push(b.stored_offset);
            }
            blocks += 1;
        })?;
        let dictionary_at = c.dictionary_at as usize;
        Ok(BlockIndex {
            blocks,
            frames_end: c.footer.frames_end,
            dictionary: dictionary_at..dictionary_at + c.dictionary.len(),
            stored_at,
        })
    }

    /// How many blocks the segment has (at least 1).
    pub fn block_count(&self) -> usize {
        self.blocks
    }

    /// The zstd dictionary in `file` (empty: none).
    pub fn dictionary<'f>(&self, file: &'f [u8]) -> &'f [u8] {
        file.get(self.dictionary.clone()).unwrap_or_default()
    }

    /// Block `i`'s entry, read from `file` (`None` past the last block, or
    /// if `file` is not the file indexed and is too short).
    pub fn block(&self, file: &[u8], i: usize) -> Option<Block> {
        if i >= self.blocks {
            return None;
        }
        let first = i / STORED_EVERY * STORED_EVERY;
        let mut stored_offset = *self.stored_at.get(i / STORED_EVERY)?;
        for j in first..i {
            stored_offset += u64::from(u32_at(entry(file, j)?, E_STORED_LEN));
        }
        let e = entry(file, i)?;
        Some(Block {
            image_offset: u64::from(u32_at(e, E_IMAGE_OFFSET)),
            len: u32_at(e, E_LEN),
            stored_offset,
            stored_len: u32_at(e, E_STORED_LEN),
            crc: u32_at(e, E_CRC),
        })
    }

    /// The block holding image offset `offset` (`HEADER_LEN <= offset <
    /// frames_end`), by binary search over the table in `file`; `None`
    /// outside the frames.
    pub fn block_at(&self, file: &[u8], offset: u64) -> Option<usize> {
        if offset < HEADER_LEN as u64 || offset >= self.frames_end {
            return None;
        }
        // The blocks cover 128..frames_end without gaps (open checked).
        let (mut lo, mut hi) = (0, self.blocks);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if u64::from(u32_at(entry(file, mid)?, E_IMAGE_OFFSET)) <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

/// The bytes of block table entry `i` in `file`.
fn entry(file: &[u8], i: usize) -> Option<&[u8]> {
    let at = TABLE_OFFSET.checked_add(i.checked_mul(BLOCK_ENTRY_LEN)?)?;
    file.get(at..at.checked_add(BLOCK_ENTRY_LEN)?)
}

/// Decompresses the blocks of one segment, with its dictionary prepared
/// once; reusable, and `Send`.
pub struct BlockDecoder {
    /// A zstd context that has digested the dictionary (if any) once and
    /// uses it for every frame.
    decompressor: Decompressor<'static>,
    dictionary_len: usize,
}

impl std::fmt::Debug for BlockDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDecoder")
            .field("dictionary_len", &self.dictionary_len)
            .finish_non_exhaustive()
    }
}

impl BlockDecoder {
    /// A decoder for blocks written with `dictionary` (empty: none). A
    /// dictionary zstd cannot load is an error (at offset 0: the decoder does
    /// not know where the dictionary is; [`CompressedSegment::decoder`]
    /// says).
    pub fn new(dictionary: &[u8]) -> Result<BlockDecoder, ContainerError> {
        let decompressor = if dictionary.is_empty() {
            Decompressor::new()
        } else {
            Decompressor::with_dictionary(dictionary)
        }
        .map_err(|e| {
            ContainerError::at(
                0,
                format!(
                    "zstd cannot load the {}-byte dictionary: {e}",
                    dictionary.len()
                ),
            )
        })?;
        Ok(BlockDecoder {
            decompressor,
            dictionary_len: dictionary.len(),
        })
    }

    /// Makes this decoder one for blocks written with `dictionary` (empty:
    /// none), as [`BlockDecoder::new`] would make it, keeping its zstd
    /// context: making a context costs several times what digesting a
    /// dictionary into one does (~45 µs against ~6 µs for a 64 KiB
    /// dictionary, in a microbenchmark). A dictionary zstd cannot load is
    /// an error, as for [`BlockDecoder::new`], and leaves the decoder
    /// with no dictionary.
    pub fn set_dictionary(&mut self, dictionary: &[u8]) -> Result<(), ContainerError> {
        self.dictionary_len = 0;
        self.decompressor.set_dictionary(dictionary).map_err(|e| {
            // The context keeps no dictionary after a failed load.
            let _ = self.decompressor.set_dictionary(&[]);
            ContainerError::at(
                0,
                format!(
                    "zstd cannot load the {}-byte dictionary: {e}",
                    dictionary.len()
                ),
            )
        })?;
        self.dictionary_len = dictionary.len();
        Ok(())
    }

    /// Decompresses block `block`'s `stored` bytes, which must be one zstd
    /// frame of exactly `len` bytes.
    fn decompress(&mut self, stored: &[u8], len: usize, block: usize) -> Result<Vec<u8>, String> {
        match zstd_safe::find_frame_compressed_size(stored) {
            Ok(frame) if frame == stored.len() => {}
            Ok(frame) => {
                return Err(format!(
                    "block {block}'s {} stored bytes are not one zstd frame: the first is {frame} bytes",
                    stored.len()
                ));
            }
            Err(code) => {
                return Err(format!(
                    "block {block}'s stored bytes are not a zstd frame: {}",
                    zstd_safe::get_error_name(code)
                ));
            }
        }
        match zstd_safe::get_frame_content_size(stored) {
            Ok(Some(size)) if size != len as u64 => {
                return Err(format!(
                    "block {block} decompresses to {size} bytes (its zstd frame header says), the table says {len}"
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(format!("block {block}'s zstd frame header is damaged"));
            }
        }
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| format!("no memory for block {block}'s {len} bytes"))?;
        match self.decompressor.decompress_to_buffer(stored, &mut out) {
            Ok(n) if n == len && out.len() == len => Ok(out),
            Ok(n) => Err(format!(
                "block {block} decompresses to {n} bytes, the table says {len}"
            )),
            Err(e) => Err(format!(
                "block {block} does not decompress to its {len} bytes: {e}"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
