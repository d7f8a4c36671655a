//! The byte layout of a sidecar: its magic and version, the fixed header,
//! the section table, the section kinds, and the fixed-width parts of each
//! section.
//!
//! `docs/format.md` ("Index sidecars") is the specification. Each offset
//! here is the previous field's offset plus that field's width, in the
//! order of the specification's tables, and each length is the last
//! field's offset plus its width: a field cannot move without every offset
//! after it moving too, and the lengths of version 1 are checked when the
//! crate compiles. Variable-size parts (the columns, the heaps, the sorted
//! arrays) are described where they are encoded and read.

use std::fmt;
use std::mem::size_of;

/// Width of every CRC-32 in the file.
const CRC_LEN: usize = size_of::<u32>();

/// The eight bytes every sidecar starts with.
pub const MAGIC: [u8; 8] = *b"SEALOGIX";

/// The format version this module writes and reads.
pub const FORMAT_VERSION: u16 = 1;

// The fixed header, field by field (offsets from the start of the file).
pub(super) const VERSION_AT: usize = MAGIC.len();
pub(super) const HEADER_LEN_AT: usize = VERSION_AT + size_of::<u16>();
pub(super) const FLAGS_AT: usize = HEADER_LEN_AT + size_of::<u16>();
pub(super) const STORE_ID_AT: usize = FLAGS_AT + size_of::<u32>();
/// Width of the store id.
pub(super) const STORE_ID_LEN: usize = 16;
pub(super) const SEGMENT_NO_AT: usize = STORE_ID_AT + STORE_ID_LEN;
pub(super) const FIRST_SEQ_AT: usize = SEGMENT_NO_AT + size_of::<u64>();
pub(super) const RECORD_COUNT_AT: usize = FIRST_SEQ_AT + size_of::<u64>();
pub(super) const FOOTER_CRC_AT: usize = RECORD_COUNT_AT + size_of::<u64>();
pub(super) const SECTION_COUNT_AT: usize = FOOTER_CRC_AT + CRC_LEN;
pub(super) const TABLE_CRC_AT: usize = SECTION_COUNT_AT + size_of::<u32>();
/// Where the header CRC of a version-1 header is; in a longer header it is
/// still the last [`HEADER_CRC_LEN`] bytes, at `header_len - HEADER_CRC_LEN`.
pub(super) const HEADER_CRC_AT: usize = TABLE_CRC_AT + CRC_LEN;
/// Width of the header CRC, the last field of every header.
pub(super) const HEADER_CRC_LEN: usize = CRC_LEN;

/// Length in bytes of the fixed header written by this version.
///
/// Readers accept longer headers (a later minor revision may append fields,
/// which this version ignores); the header CRC is always its last 4 bytes.
pub const HEADER_LEN: usize = HEADER_CRC_AT + HEADER_CRC_LEN;

/// Longest header a reader accepts.
pub(super) const MAX_HEADER_LEN: u16 = 4096;

// One section-table entry, field by field.
pub(super) const ENTRY_FIELD_AT: usize = size_of::<u16>();
pub(super) const ENTRY_CRC_AT: usize = ENTRY_FIELD_AT + size_of::<u16>();
pub(super) const ENTRY_OFFSET_AT: usize = ENTRY_CRC_AT + CRC_LEN;
pub(super) const ENTRY_LEN_AT: usize = ENTRY_OFFSET_AT + size_of::<u64>();

/// Length in bytes of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = ENTRY_LEN_AT + size_of::<u64>();

/// Sections start at offsets that are multiples of this.
pub const SECTION_ALIGN: u64 = 8;

/// Section kind of the offsets column (`record_count × u32`).
pub const KIND_OFFSETS: u16 = 1;
/// Section kind of the event-time column (`record_count × i64`).
pub const KIND_EVENT_TIMES: u16 = 2;
/// Section kind of a term dictionary (one per field).
pub const KIND_TERM_DICT: u16 = 3;
/// Section kind of a hashed index (one per field).
pub const KIND_HASHED: u16 = 4;
/// Section kind of an IP index (one per field).
pub const KIND_IP: u16 = 5;
/// Section kind of the block checksums of a column (`field` is the
/// column's kind: 1 or 2).
pub const KIND_COLUMN_BLOCKS: u16 = 6;
/// Section kind of the block checksums of a hashed index (`field` is the
/// hashed index's field).
pub const KIND_HASHED_BLOCKS: u16 = 7;
/// Section kind of a term filter (`field` is its term dictionary's field).
pub const KIND_TERM_FILTER: u16 = 8;
/// Section kind of the block checksums of a term dictionary (`field` is
/// the dictionary's field).
pub const KIND_DICT_BLOCKS: u16 = 9;

// A term filter's header: the number of hashes, then a reserved word.
pub(super) const FILTER_RESERVED_AT: usize = size_of::<u32>();
/// Length in bytes of a term filter's header.
pub const FILTER_HEADER_LEN: usize = FILTER_RESERVED_AT + size_of::<u32>();
/// Width in bytes of one hash of a term filter.
pub(super) const FILTER_HASH_LEN: usize = size_of::<u32>();
/// A term dictionary section longer than this many bytes gets a term
/// filter.
pub const TERM_FILTER_FROM: usize = 4096;

/// Length in bytes of the column blocks sealog writes checksums for. A
/// column of at most this many bytes gets no block checksums.
pub const COLUMN_BLOCK_LEN: u32 = 4096;
/// Shortest block length a reader accepts.
pub(super) const MIN_COLUMN_BLOCK_LEN: u32 = 512;
/// Longest block length a reader accepts.
pub(super) const MAX_COLUMN_BLOCK_LEN: u32 = 1 << 20;
// A column block's own header: the block length, then a reserved word.
pub(super) const BLOCKS_RESERVED_AT: usize = size_of::<u32>();
/// Length in bytes of a block-checksum section's own header.
pub const BLOCKS_HEADER_LEN: usize = BLOCKS_RESERVED_AT + size_of::<u32>();

/// The most records a segment's sidecar can describe (ordinals are `u32`).
pub const MAX_RECORDS: u64 = u32::MAX as u64;

/// Width of a stored ordinal.
pub(super) const ORDINAL_LEN: usize = size_of::<u32>();

/// Width in bytes of one value of the offsets column.
pub(super) const OFFSET_WIDTH: usize = size_of::<u32>();
/// Width in bytes of one value of the event-time column.
pub(super) const EVENT_TIME_WIDTH: usize = size_of::<i64>();

// A term dictionary's own header, field by field (offsets from the start
// of the section).
pub(super) const DICT_TERM_HEAP_LEN_AT: usize = size_of::<u32>();
pub(super) const DICT_BITMAP_HEAP_LEN_AT: usize = DICT_TERM_HEAP_LEN_AT + size_of::<u32>();
pub(super) const DICT_RESERVED_AT: usize = DICT_BITMAP_HEAP_LEN_AT + size_of::<u32>();

/// Length in bytes of a term dictionary's own header.
pub const DICT_HEADER_LEN: usize = DICT_RESERVED_AT + size_of::<u32>();

// One term entry of a dictionary, field by field.
pub(super) const TERM_LEN_AT: usize = size_of::<u32>();
pub(super) const TERM_CARDINALITY_AT: usize = TERM_LEN_AT + size_of::<u32>();
pub(super) const TERM_BITMAP_OFFSET_AT: usize = TERM_CARDINALITY_AT + size_of::<u32>();
pub(super) const TERM_BITMAP_LEN_AT: usize = TERM_BITMAP_OFFSET_AT + size_of::<u32>();

/// Length in bytes of one term entry in a term dictionary.
pub const TERM_ENTRY_LEN: usize = TERM_BITMAP_LEN_AT + size_of::<u32>();

/// The longest term, in bytes.
pub const MAX_TERM_LEN: usize = 1024;

// A hashed index's own header: an entry count, then a reserved word.
pub(super) const HASHED_RESERVED_AT: usize = size_of::<u32>();

/// Length in bytes of a hashed index's own header.
pub const HASHED_HEADER_LEN: usize = HASHED_RESERVED_AT + size_of::<u32>();
/// Width of a hashed index key.
pub(super) const HASHED_KEY_LEN: usize = size_of::<u64>();
/// Bytes per entry of a hashed index: a `u64` key and a `u32` ordinal.
pub const HASHED_ENTRY_LEN: usize = HASHED_KEY_LEN + ORDINAL_LEN;

// An IP index's own header: the IPv4 entry count, then the IPv6 one.
pub(super) const IP_COUNT6_AT: usize = size_of::<u32>();

/// Length in bytes of an IP index's own header.
pub const IP_HEADER_LEN: usize = IP_COUNT6_AT + size_of::<u32>();
/// Width of a stored IPv4 address.
pub(super) const IP_V4_LEN: usize = size_of::<u32>();
/// Width of a stored IPv6 address.
pub(super) const IP_V6_LEN: usize = size_of::<u128>();
/// Bytes per IPv4 entry of an IP index: a `u32` address and a `u32` ordinal.
pub const IP_V4_ENTRY_LEN: usize = IP_V4_LEN + ORDINAL_LEN;
/// Bytes per IPv6 entry of an IP index: 16 address bytes and a `u32` ordinal.
pub const IP_V6_ENTRY_LEN: usize = IP_V6_LEN + ORDINAL_LEN;

// The sizes of version 1, as `docs/format.md` gives them. Deriving them
// from the fields keeps the code consistent with itself; these keep it
// consistent with the specification.
const _: () = assert!(HEADER_LEN == 72 && HEADER_CRC_AT == 68);
const _: () = assert!(SECTION_ENTRY_LEN == 24);
const _: () = assert!(DICT_HEADER_LEN == 16 && TERM_ENTRY_LEN == 20);
const _: () = assert!(HASHED_HEADER_LEN == 8 && HASHED_ENTRY_LEN == 12);
const _: () = assert!(IP_HEADER_LEN == 8 && IP_V4_ENTRY_LEN == 8 && IP_V6_ENTRY_LEN == 20);
const _: () = assert!(BLOCKS_HEADER_LEN == 8);
// A value never straddles two blocks.
const _: () = assert!((MIN_COLUMN_BLOCK_LEN as usize).is_multiple_of(EVENT_TIME_WIDTH));
const _: () = assert!(
    COLUMN_BLOCK_LEN.is_power_of_two()
        && MIN_COLUMN_BLOCK_LEN <= COLUMN_BLOCK_LEN
        && COLUMN_BLOCK_LEN <= MAX_COLUMN_BLOCK_LEN
);
// Sections start at multiples of `SECTION_ALIGN`, which every column
// value's width divides, so a mapped column can be viewed in place; and a
// header's length is a multiple of 8 (readers refuse any other).
const _: () = assert!((SECTION_ALIGN as usize).is_multiple_of(EVENT_TIME_WIDTH));
const _: () = assert!(HEADER_LEN.is_multiple_of(8));

/// What kind of data a section holds, as named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SectionKind {
    /// The offsets column.
    Offsets,
    /// The event-time column.
    EventTimes,
    /// A term dictionary.
    TermDict,
    /// A hashed index.
    Hashed,
    /// An IP index.
    Ip,
    /// The block checksums of a column.
    ColumnBlocks,
    /// The block checksums of a hashed index.
    HashedBlocks,
    /// The term filter of a term dictionary.
    TermFilter,
    /// The block checksums of a term dictionary.
    DictBlocks,
    /// A kind this version does not know; readers skip such sections.
    Unknown(u16),
}

impl SectionKind {
    /// The kind stored as `kind` in a section-table entry.
    pub const fn from_u16(kind: u16) -> SectionKind {
        match kind {
            KIND_OFFSETS => SectionKind::Offsets,
            KIND_EVENT_TIMES => SectionKind::EventTimes,
            KIND_TERM_DICT => SectionKind::TermDict,
            KIND_HASHED => SectionKind::Hashed,
            KIND_IP => SectionKind::Ip,
            KIND_COLUMN_BLOCKS => SectionKind::ColumnBlocks,
            KIND_HASHED_BLOCKS => SectionKind::HashedBlocks,
            KIND_TERM_FILTER => SectionKind::TermFilter,
            KIND_DICT_BLOCKS => SectionKind::DictBlocks,
            other => SectionKind::Unknown(other),
        }
    }

    /// The value stored in a section-table entry.
    pub const fn to_u16(self) -> u16 {
        match self {
            SectionKind::Offsets => KIND_OFFSETS,
            SectionKind::EventTimes => KIND_EVENT_TIMES,
            SectionKind::TermDict => KIND_TERM_DICT,
            SectionKind::Hashed => KIND_HASHED,
            SectionKind::Ip => KIND_IP,
            SectionKind::ColumnBlocks => KIND_COLUMN_BLOCKS,
            SectionKind::HashedBlocks => KIND_HASHED_BLOCKS,
            SectionKind::TermFilter => KIND_TERM_FILTER,
            SectionKind::DictBlocks => KIND_DICT_BLOCKS,
            SectionKind::Unknown(other) => other,
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionKind::Offsets => f.write_str("offsets column"),
            SectionKind::EventTimes => f.write_str("event-time column"),
            SectionKind::TermDict => f.write_str("term dictionary"),
            SectionKind::Hashed => f.write_str("hashed index"),
            SectionKind::Ip => f.write_str("IP index"),
            SectionKind::ColumnBlocks => f.write_str("column block checksums"),
            SectionKind::HashedBlocks => f.write_str("hashed index block checksums"),
            SectionKind::TermFilter => f.write_str("term filter"),
            SectionKind::DictBlocks => f.write_str("term dictionary block checksums"),
            SectionKind::Unknown(kind) => write!(f, "section of unknown kind {kind}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn offsets_match_the_documented_tables() {
        // docs/format.md, "Header": offset of each field in table order.
        let header = [
            0,
            VERSION_AT,
            HEADER_LEN_AT,
            FLAGS_AT,
            STORE_ID_AT,
            SEGMENT_NO_AT,
            FIRST_SEQ_AT,
            RECORD_COUNT_AT,
            FOOTER_CRC_AT,
            SECTION_COUNT_AT,
            TABLE_CRC_AT,
            HEADER_CRC_AT,
        ];
        assert_eq!(header, [0, 8, 10, 12, 16, 32, 40, 48, 56, 60, 64, 68]);
        // "Section table".
        let entry = [
            0,
            ENTRY_FIELD_AT,
            ENTRY_CRC_AT,
            ENTRY_OFFSET_AT,
            ENTRY_LEN_AT,
        ];
        assert_eq!(entry, [0, 2, 4, 8, 16]);
        // "Term dictionary": its header and one term entry.
        let dict = [
            0,
            DICT_TERM_HEAP_LEN_AT,
            DICT_BITMAP_HEAP_LEN_AT,
            DICT_RESERVED_AT,
        ];
        assert_eq!(dict, [0, 4, 8, 12]);
        let term = [
            0,
            TERM_LEN_AT,
            TERM_CARDINALITY_AT,
            TERM_BITMAP_OFFSET_AT,
            TERM_BITMAP_LEN_AT,
        ];
        assert_eq!(term, [0, 4, 8, 12, 16]);
        // "Hashed index" and "IP index" headers.
        assert_eq!([0, HASHED_RESERVED_AT], [0, 4]);
        assert_eq!([0, IP_COUNT6_AT], [0, 4]);
        assert_eq!((OFFSET_WIDTH, EVENT_TIME_WIDTH), (4, 8));
    }

    #[test]
    fn section_kinds_round_trip_through_their_stored_value() {
        for kind in 0..=u16::from(u8::MAX) {
            assert_eq!(SectionKind::from_u16(kind).to_u16(), kind);
        }
        let known = [
            (KIND_OFFSETS, SectionKind::Offsets),
            (KIND_EVENT_TIMES, SectionKind::EventTimes),
            (KIND_TERM_DICT, SectionKind::TermDict),
            (KIND_HASHED, SectionKind::Hashed),
            (KIND_IP, SectionKind::Ip),
            (KIND_COLUMN_BLOCKS, SectionKind::ColumnBlocks),
            (KIND_HASHED_BLOCKS, SectionKind::HashedBlocks),
            (KIND_TERM_FILTER, SectionKind::TermFilter),
            (KIND_DICT_BLOCKS, SectionKind::DictBlocks),
        ];
        for (stored, kind) in known {
            assert_eq!(SectionKind::from_u16(stored), kind);
        }
        assert_eq!(SectionKind::from_u16(10), SectionKind::Unknown(10));
        assert_eq!(
            SectionKind::Unknown(10).to_string(),
            "section of unknown kind 10"
        );
    }

    #[test]
    fn layout_matches_the_documentation() {
        let mut m = Model::new(vec![10, -5]);
        m.offsets = vec![0, 50];
        m.identity.store_id = core::array::from_fn(|i| i as u8);
        m.identity.segment_no = 7;
        m.identity.first_seq = 1_000;
        m.identity.segment_footer_crc = 0xdead_beef;
        m.add(IndexField::Actor, b"a", [0, 1]);
        let bytes = m.encode();
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());

        // Header.
        assert_eq!(&bytes[0..8], b"SEALOGIX");
        assert_eq!(u16_at(8), 1);
        assert_eq!(u16_at(10), 72);
        assert_eq!(u32_at(12), 0);
        assert_eq!(&bytes[16..32], &m.identity.store_id);
        assert_eq!(u64_at(32), 7);
        assert_eq!(u64_at(40), 1_000);
        assert_eq!(u64_at(48), 2);
        assert_eq!(u32_at(56), 0xdead_beef);
        assert_eq!(u32_at(60), 3);
        assert_eq!(u32_at(64), crc32fast::hash(&bytes[72..72 + 3 * 24]));
        assert_eq!(u32_at(68), crc32fast::hash(&bytes[..68]));

        // Section table: (kind, field, crc, offset, len).
        let entry = |i: usize| {
            let at = 72 + 24 * i;
            (
                u16_at(at),
                u16_at(at + 2),
                u32_at(at + 4),
                u64_at(at + 8),
                u64_at(at + 16),
            )
        };
        let (kind, field, crc, offset, len) = entry(0);
        assert_eq!((kind, field, offset, len), (1, 0, 144, 8));
        assert_eq!(crc, crc32fast::hash(&bytes[144..152]));
        assert_eq!(u32_at(144), 0);
        assert_eq!(u32_at(148), 50);
        let (kind, field, _, offset, len) = entry(1);
        assert_eq!((kind, field, offset, len), (2, 0, 152, 16));
        assert_eq!(u64_at(152) as i64, 10);
        assert_eq!(u64_at(160) as i64, -5);
        let (kind, field, crc, offset, len) = entry(2);
        let bitmap = serialized([0, 1]);
        assert_eq!((kind, field, offset), (3, 1, 168));
        assert_eq!(len as usize, 16 + 20 + 1 + bitmap.len());
        assert_eq!(crc, crc32fast::hash(&bytes[168..]));

        // Dictionary: header, one entry, term heap, bitmap heap.
        assert_eq!(
            (u32_at(168), u32_at(172), u32_at(176), u32_at(180)),
            (1, 1, bitmap.len() as u32, 0)
        );
        assert_eq!(
            (
                u32_at(184),
                u32_at(188),
                u32_at(192),
                u32_at(196),
                u32_at(200)
            ),
            (0, 1, 2, 0, bitmap.len() as u32)
        );
        assert_eq!(bytes[204], b'a');
        assert_eq!(&bytes[205..], &bitmap[..]);
        assert_eq!(bytes.len(), 205 + bitmap.len());

        // The encoder and the documented layout agree byte for byte.
        let mut sections = columns(0).to_vec();
        sections[0].2 = [0u32, 50].iter().flat_map(|v| v.to_le_bytes()).collect();
        sections[1].2 = [10i64, -5].iter().flat_map(|v| v.to_le_bytes()).collect();
        sections.push((
            KIND_TERM_DICT,
            1,
            raw_dict(&[(b"a", 2, Stored::Roaring(bitmap))]),
        ));
        assert_eq!(assemble(m.identity, &sections), bytes);

        // With an inline term, a hashed index and an IP index.
        m.add(IndexField::Actor, b"b", [1]);
        m.add_hashed(IndexField::RequestId, b"x", [1]);
        m.add_hashed(IndexField::RequestId, b"y", [0, 1]);
        m.add_ip(IndexField::SourceIp, v4(10, 0, 0, 1), 1);
        m.add_ip(IndexField::SourceIp, v6(0xffff_0a00_0000), 0);
        m.add_ip(IndexField::SourceIp, v6(0x2001_0db8 << 96), 1);
        let bytes = m.encode();
        let mut pairs = vec![(fnv(b"x"), 1), (fnv(b"y"), 0), (fnv(b"y"), 1)];
        pairs.sort();
        sections[2].2 = raw_dict(&[
            (b"a", 2, Stored::Roaring(serialized([0, 1]))),
            (b"b", 1, Stored::Inline(1)),
        ]);
        sections.push((KIND_HASHED, 8, raw_hashed(&pairs)));
        sections.push((
            KIND_IP,
            7,
            raw_ip(
                &[
                    (Ipv4Addr::new(10, 0, 0, 0), 0),
                    (Ipv4Addr::new(10, 0, 0, 1), 1),
                ],
                &[(Ipv6Addr::from(0x2001_0db8u128 << 96), 1)],
            ),
        ));
        assert_eq!(assemble(m.identity, &sections), bytes);
    }

    #[test]
    fn documented_example_is_exact() {
        // The worked example of the format documentation, byte for byte.
        let documented: Vec<u8> = [
            "53 45 41 4c 4f 47 49 58",
            "01 00 48 00 00 00 00 00",
            "00 01 02 03 04 05 06 07",
            "08 09 0a 0b 0c 0d 0e 0f",
            "07 00 00 00 00 00 00 00",
            "e8 03 00 00 00 00 00 00",
            "03 00 00 00 00 00 00 00",
            "ef be ad de 05 00 00 00",
            "79 a1 9f 12 ef 3d 6b c8",
            "01 00 00 00 a1 95 eb 95",
            "c0 00 00 00 00 00 00 00",
            "0c 00 00 00 00 00 00 00",
            "02 00 00 00 d5 be 6f e4",
            "d0 00 00 00 00 00 00 00",
            "18 00 00 00 00 00 00 00",
            "03 00 01 00 1f 49 0f c1",
            "e8 00 00 00 00 00 00 00",
            "54 00 00 00 00 00 00 00",
            "04 00 08 00 b2 34 e8 c9",
            "40 01 00 00 00 00 00 00",
            "2c 00 00 00 00 00 00 00",
            "05 00 07 00 9f 3e c1 f1",
            "70 01 00 00 00 00 00 00",
            "2c 00 00 00 00 00 00 00",
            "00 00 00 00 b4 00 00 00",
            "90 01 00 00 00 00 00 00",
            "00 00 2a 36 fe 9c 97 17",
            "00 36 8f fa fd 9c 97 17",
            "00 ca c4 71 fe 9c 97 17",
            "02 00 00 00 08 00 00 00",
            "14 00 00 00 00 00 00 00",
            "00 00 00 00 05 00 00 00",
            "02 00 00 00 00 00 00 00",
            "14 00 00 00 05 00 00 00",
            "03 00 00 00 01 00 00 00",
            "01 00 00 00 00 00 00 00",
            "61 6c 69 63 65 62 6f 62",
            "3a 30 00 00 01 00 00 00",
            "00 00 01 00 10 00 00 00",
            "00 00 02 00 00 00 00 00",
            "03 00 00 00 00 00 00 00",
            "3b e2 c3 61 19 fb dd 8a",
            "ee e3 c3 61 19 fc dd 8a",
            "a1 e5 c3 61 19 fd dd 8a",
            "00 00 00 00 01 00 00 00",
            "02 00 00 00 00 00 00 00",
            "02 00 00 00 01 00 00 00",
            "01 00 00 0a 02 00 00 0a",
            "00 00 00 00 01 00 00 00",
            "20 01 0d b8 00 00 00 00",
            "00 00 00 00 00 00 00 01",
            "02 00 00 00",
        ]
        .iter()
        .flat_map(|line| line.split(' '))
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect();
        let mut m = Model::new(vec![
            1_700_000_000_000_000_000,
            1_699_999_999_000_000_000,
            1_700_000_001_000_000_000,
        ]);
        m.offsets = vec![0, 180, 400];
        m.identity.store_id = core::array::from_fn(|i| i as u8);
        m.identity.segment_no = 7;
        m.identity.first_seq = 1_000;
        m.identity.segment_footer_crc = 0xdead_beef;
        m.add(IndexField::Actor, b"alice", [0, 2]);
        m.add(IndexField::Actor, b"bob", [1]);
        for (ordinal, id) in [b"r-1", b"r-2", b"r-3"].into_iter().enumerate() {
            m.add_hashed(IndexField::RequestId, id, [ordinal as u32]);
        }
        m.add_ip(IndexField::SourceIp, v4(10, 0, 0, 1), 0);
        m.add_ip(IndexField::SourceIp, "::ffff:10.0.0.2".parse().unwrap(), 1);
        m.add_ip(IndexField::SourceIp, "2001:db8::1".parse().unwrap(), 2);
        assert_eq!(documented.len(), 412);
        assert_eq!(m.encode(), documented);
        check(&documented, &m);
        assert_eq!(fnv(b"r-1"), 0x8add_fb19_61c3_e23b);
        assert_eq!(fnv(b"r-3"), 0x8add_fd19_61c3_e5a1);
    }
}
