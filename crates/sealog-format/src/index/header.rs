//! The fixed header and the section table: what every sidecar starts
//! with, and the segment identity the header records.
//!
//! The header says which segment the sidecar belongs to and where the
//! section table is; the table gives each section's kind, field, CRC,
//! offset and length.

use super::bytes::{Cursor, Writer};
use super::layout::{HEADER_LEN, MAGIC, SECTION_ENTRY_LEN, SectionKind};

/// The segment a sidecar belongs to.
///
/// Stored in the sidecar's header so that the engine can reject a sidecar
/// that was written for another segment (see
/// [`IndexReader::check_identity`](super::IndexReader::check_identity)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SegmentIdentity {
    /// The store the segment belongs to.
    pub store_id: [u8; 16],
    /// The segment's number within the store.
    pub segment_no: u64,
    /// Sequence number of the segment's first record (ordinal 0).
    pub first_seq: u64,
    /// Number of records in the segment.
    pub record_count: u64,
    /// The CRC-32 stored in the segment's footer.
    pub segment_footer_crc: u32,
}

/// The fixed header, as stored.
pub(super) struct RawHeader {
    pub(super) version: u16,
    pub(super) header_len: u16,
    pub(super) flags: u32,
    pub(super) identity: SegmentIdentity,
    pub(super) section_count: u32,
    pub(super) table_crc: u32,
}

impl RawHeader {
    /// Writes the first 68 bytes of a header (everything but the CRC).
    pub(super) fn encode(&self) -> [u8; HEADER_LEN - 4] {
        let mut out = [0u8; HEADER_LEN - 4];
        let mut w = Writer::new(&mut out);
        w.put(&MAGIC);
        w.put(&self.version.to_le_bytes());
        w.put(&self.header_len.to_le_bytes());
        w.put(&self.flags.to_le_bytes());
        w.put(&self.identity.store_id);
        w.put(&self.identity.segment_no.to_le_bytes());
        w.put(&self.identity.first_seq.to_le_bytes());
        w.put(&self.identity.record_count.to_le_bytes());
        w.put(&self.identity.segment_footer_crc.to_le_bytes());
        w.put(&self.section_count.to_le_bytes());
        w.put(&self.table_crc.to_le_bytes());
        out
    }

    /// Reads the fields after the magic from the first 72 bytes of a file.
    pub(super) fn decode(h: &[u8; HEADER_LEN]) -> Option<RawHeader> {
        let mut r = Cursor::new(h);
        r.array::<8>()?;
        Some(RawHeader {
            version: r.u16()?,
            header_len: r.u16()?,
            flags: r.u32()?,
            identity: SegmentIdentity {
                store_id: r.array()?,
                segment_no: r.u64()?,
                first_seq: r.u64()?,
                record_count: r.u64()?,
                segment_footer_crc: r.u32()?,
            },
            section_count: r.u32()?,
            table_crc: r.u32()?,
        })
    }
}

/// One entry of the section table, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawSection {
    pub(super) kind: u16,
    pub(super) field: u16,
    pub(super) crc: u32,
    pub(super) offset: u64,
    pub(super) len: u64,
}

impl RawSection {
    pub(super) fn encode(&self) -> [u8; SECTION_ENTRY_LEN] {
        let mut out = [0u8; SECTION_ENTRY_LEN];
        let mut w = Writer::new(&mut out);
        w.put(&self.kind.to_le_bytes());
        w.put(&self.field.to_le_bytes());
        w.put(&self.crc.to_le_bytes());
        w.put(&self.offset.to_le_bytes());
        w.put(&self.len.to_le_bytes());
        out
    }

    pub(super) fn decode(e: &[u8; SECTION_ENTRY_LEN]) -> RawSection {
        RawSection {
            kind: u16::from_le_bytes([e[0], e[1]]),
            field: u16::from_le_bytes([e[2], e[3]]),
            crc: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            offset: u64::from_le_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]),
            len: u64::from_le_bytes([e[16], e[17], e[18], e[19], e[20], e[21], e[22], e[23]]),
        }
    }
}

/// A section of a sidecar, as listed by
/// [`IndexReader::sections`](super::IndexReader::sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// What the section holds.
    pub kind: SectionKind,
    /// The field id (0 for columns).
    pub field: u16,
    /// Offset of the section in the file.
    pub offset: u64,
    /// Length of the section.
    pub len: u64,
    /// CRC-32 of the section's bytes.
    pub crc: u32,
}

impl SectionInfo {
    pub(super) fn from_raw(s: RawSection) -> SectionInfo {
        SectionInfo {
            kind: SectionKind::from_u16(s.kind),
            field: s.field,
            offset: s.offset,
            len: s.len,
            crc: s.crc,
        }
    }
}
