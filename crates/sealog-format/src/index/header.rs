//! The fixed header and the section table: what every sidecar starts
//! with, and the segment identity the header records.
//!
//! The header says which segment the sidecar belongs to and where the
//! section table is; the table gives each section's kind, field, CRC,
//! offset and length. [`RawHeader::read`] checks a header in the order
//! `docs/format.md` lists the rules, so that a file with several faults
//! always reports the same one.

use super::bytes::{array_at, crc32, patch, to_u64, u16_at, u32_at, u64_at};
use super::error::{IndexError, Region};
use super::layout::{
    ENTRY_CRC_AT, ENTRY_FIELD_AT, ENTRY_LEN_AT, ENTRY_OFFSET_AT, FIRST_SEQ_AT, FLAGS_AT,
    FOOTER_CRC_AT, FORMAT_VERSION, HEADER_CRC_AT, HEADER_CRC_LEN, HEADER_LEN, HEADER_LEN_AT, MAGIC,
    MAX_HEADER_LEN, MAX_RECORDS, RECORD_COUNT_AT, SECTION_COUNT_AT, SECTION_ENTRY_LEN,
    SEGMENT_NO_AT, STORE_ID_AT, STORE_ID_LEN, SectionKind, TABLE_CRC_AT, VERSION_AT,
};

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

impl SegmentIdentity {
    /// Checks that `self`, the identity a sidecar records, is `expected`,
    /// the segment's; the error names the first field that differs.
    pub(super) fn check_is(&self, expected: &SegmentIdentity) -> Result<(), IndexError> {
        let found = self;
        let mismatch = |what: &'static str, expected: String, found: String| {
            Err(IndexError::IdentityMismatch {
                what,
                expected,
                found,
            })
        };
        let hex = |id: &[u8; 16]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if found.store_id != expected.store_id {
            return mismatch("store id", hex(&expected.store_id), hex(&found.store_id));
        }
        if found.segment_no != expected.segment_no {
            let (e, f) = (expected.segment_no, found.segment_no);
            return mismatch("segment number", e.to_string(), f.to_string());
        }
        if found.first_seq != expected.first_seq {
            let (e, f) = (expected.first_seq, found.first_seq);
            return mismatch("first sequence number", e.to_string(), f.to_string());
        }
        if found.record_count != expected.record_count {
            let (e, f) = (expected.record_count, found.record_count);
            return mismatch("record count", e.to_string(), f.to_string());
        }
        if found.segment_footer_crc != expected.segment_footer_crc {
            let (e, f) = (expected.segment_footer_crc, found.segment_footer_crc);
            return mismatch(
                "segment footer CRC",
                format!("{e:#010x}"),
                format!("{f:#010x}"),
            );
        }
        Ok(())
    }
}

/// The fixed header, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawHeader {
    pub(super) version: u16,
    pub(super) header_len: u16,
    pub(super) flags: u32,
    pub(super) identity: SegmentIdentity,
    pub(super) section_count: u32,
    pub(super) table_crc: u32,
}

impl RawHeader {
    /// The header of a sidecar written by this version, for the segment
    /// `identity`, with a section table of `section_count` entries whose
    /// CRC is `table_crc`.
    pub(super) fn new(identity: SegmentIdentity, section_count: u32, table_crc: u32) -> Self {
        RawHeader {
            version: FORMAT_VERSION,
            header_len: HEADER_LEN as u16,
            flags: 0,
            identity,
            section_count,
            table_crc,
        }
    }

    /// The header's bytes, its CRC last.
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let id = &self.identity;
        patch(&mut out, 0, &MAGIC);
        patch(&mut out, VERSION_AT, &self.version.to_le_bytes());
        patch(&mut out, HEADER_LEN_AT, &self.header_len.to_le_bytes());
        patch(&mut out, FLAGS_AT, &self.flags.to_le_bytes());
        patch(&mut out, STORE_ID_AT, &id.store_id);
        patch(&mut out, SEGMENT_NO_AT, &id.segment_no.to_le_bytes());
        patch(&mut out, FIRST_SEQ_AT, &id.first_seq.to_le_bytes());
        patch(&mut out, RECORD_COUNT_AT, &id.record_count.to_le_bytes());
        patch(
            &mut out,
            FOOTER_CRC_AT,
            &id.segment_footer_crc.to_le_bytes(),
        );
        patch(
            &mut out,
            SECTION_COUNT_AT,
            &self.section_count.to_le_bytes(),
        );
        patch(&mut out, TABLE_CRC_AT, &self.table_crc.to_le_bytes());
        let crc = crc32(out.get(..HEADER_CRC_AT).unwrap_or_default());
        patch(&mut out, HEADER_CRC_AT, &crc.to_le_bytes());
        out
    }

    /// Reads the fields after the magic from the first bytes of a file.
    fn decode(h: &[u8; HEADER_LEN]) -> RawHeader {
        RawHeader {
            version: u16_at(h, VERSION_AT),
            header_len: u16_at(h, HEADER_LEN_AT),
            flags: u32_at(h, FLAGS_AT),
            identity: SegmentIdentity {
                store_id: array_at::<STORE_ID_LEN>(h, STORE_ID_AT),
                segment_no: u64_at(h, SEGMENT_NO_AT),
                first_seq: u64_at(h, FIRST_SEQ_AT),
                record_count: u64_at(h, RECORD_COUNT_AT),
                segment_footer_crc: u32_at(h, FOOTER_CRC_AT),
            },
            section_count: u32_at(h, SECTION_COUNT_AT),
            table_crc: u32_at(h, TABLE_CRC_AT),
        }
    }

    /// Reads and checks the header at the start of `bytes`: magic, version,
    /// header length, header CRC, flags and the record-count limit, in that
    /// order. The header is `header_len` bytes long; the section table
    /// follows it.
    pub(super) fn read(bytes: &[u8]) -> Result<RawHeader, IndexError> {
        let file_len = to_u64(bytes.len());
        if let Some(magic) = bytes.first_chunk::<8>()
            && *magic != MAGIC
        {
            return Err(IndexError::BadMagic { found: *magic });
        }
        let Some(fixed) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(IndexError::Truncated {
                what: "header",
                offset: 0,
                needed: to_u64(HEADER_LEN),
                available: file_len,
            });
        };
        let header = RawHeader::decode(fixed);
        if header.version != FORMAT_VERSION {
            return Err(IndexError::UnsupportedVersion {
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        let header_len = header.header_len;
        if usize::from(header_len) < HEADER_LEN
            || header_len > MAX_HEADER_LEN
            || !header_len.is_multiple_of(8)
        {
            return Err(IndexError::BadHeaderLength { found: header_len });
        }
        let header_len = usize::from(header_len);
        let Some(full_header) = bytes.get(..header_len) else {
            return Err(IndexError::Truncated {
                what: "header",
                offset: 0,
                needed: to_u64(header_len),
                available: file_len,
            });
        };
        let (covered, stored) = full_header.split_at(header_len - HEADER_CRC_LEN);
        let stored = u32_at(stored, 0);
        let actual = crc32(covered);
        if stored != actual {
            return Err(IndexError::ChecksumMismatch {
                region: Region::Header,
                offset: 0,
                len: to_u64(covered.len()),
                expected: stored,
                actual,
            });
        }
        if header.flags != 0 {
            return Err(IndexError::UnsupportedFlags {
                flags: header.flags,
            });
        }
        let record_count = header.identity.record_count;
        if record_count > MAX_RECORDS {
            return Err(IndexError::TooLarge {
                what: "record count",
                value: record_count,
                limit: MAX_RECORDS,
            });
        }
        Ok(header)
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
        patch(&mut out, 0, &self.kind.to_le_bytes());
        patch(&mut out, ENTRY_FIELD_AT, &self.field.to_le_bytes());
        patch(&mut out, ENTRY_CRC_AT, &self.crc.to_le_bytes());
        patch(&mut out, ENTRY_OFFSET_AT, &self.offset.to_le_bytes());
        patch(&mut out, ENTRY_LEN_AT, &self.len.to_le_bytes());
        out
    }

    #[inline]
    pub(super) fn decode(e: &[u8; SECTION_ENTRY_LEN]) -> RawSection {
        RawSection {
            kind: u16_at(e, 0),
            field: u16_at(e, ENTRY_FIELD_AT),
            crc: u32_at(e, ENTRY_CRC_AT),
            offset: u64_at(e, ENTRY_OFFSET_AT),
            len: u64_at(e, ENTRY_LEN_AT),
        }
    }

    /// The region an error about this entry, at position `index` of the
    /// table, names.
    pub(super) fn region(&self, index: usize) -> Region {
        Region::Section {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            kind: self.kind,
            field: self.field,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;

    #[test]
    fn header_reads_back_every_field_it_encodes() {
        let identity = SegmentIdentity {
            store_id: *b"0123456789abcdef",
            segment_no: u64::MAX - 1,
            first_seq: 1 << 40,
            record_count: MAX_RECORDS,
            segment_footer_crc: 0x0102_0304,
        };
        let header = RawHeader::new(identity, 7, 0xfeed_f00d);
        let bytes = header.encode();
        assert_eq!(&bytes[..8], b"SEALOGIX");
        assert_eq!(
            u32_at(&bytes, HEADER_CRC_AT),
            crc32(&bytes[..HEADER_CRC_AT])
        );
        assert_eq!(RawHeader::read(&bytes).unwrap(), header);
        let mut flipped = bytes;
        flipped[STORE_ID_AT] ^= 1;
        assert!(matches!(
            RawHeader::read(&flipped),
            Err(IndexError::ChecksumMismatch {
                region: Region::Header,
                offset: 0,
                len: 68,
                ..
            })
        ));
    }

    #[test]
    fn section_entries_read_back_every_field_they_encode() {
        let entry = RawSection {
            kind: 0xfff0,
            field: 9,
            crc: 0xdead_beef,
            offset: 1 << 33,
            len: u64::MAX,
        };
        let bytes = entry.encode();
        assert_eq!(RawSection::decode(&bytes), entry);
        let info = SectionInfo::from_raw(entry);
        assert_eq!(info.kind, SectionKind::Unknown(0xfff0));
        assert_eq!(
            (info.field, info.crc, info.offset, info.len),
            (9, 0xdead_beef, 1 << 33, u64::MAX)
        );
        assert_eq!(
            entry.region(3).to_string(),
            "section #3 (section of unknown kind 65520, field resource_id)"
        );
    }

    #[test]
    fn an_identity_mismatch_names_the_first_field_that_differs() {
        let ours = identity(5);
        ours.check_is(&ours).unwrap();
        let differ = |change: fn(&mut SegmentIdentity)| {
            let mut theirs = ours;
            change(&mut theirs);
            match ours.check_is(&theirs) {
                Err(IndexError::IdentityMismatch { what, .. }) => what,
                other => panic!("expected a mismatch, got {other:?}"),
            }
        };
        assert_eq!(differ(|i| i.store_id[15] ^= 1), "store id");
        assert_eq!(differ(|i| i.segment_no += 1), "segment number");
        assert_eq!(differ(|i| i.first_seq += 1), "first sequence number");
        assert_eq!(differ(|i| i.record_count += 1), "record count");
        assert_eq!(differ(|i| i.segment_footer_crc ^= 1), "segment footer CRC");
        assert_eq!(
            differ(|i| {
                i.segment_no += 1;
                i.segment_footer_crc ^= 1;
            }),
            "segment number"
        );
    }

    #[test]
    fn identity_is_checked() {
        let m = small_model();
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let mut other = m.identity;
        other.segment_footer_crc ^= 1;
        let err = r.check_identity(&other).unwrap_err();
        assert!(matches!(
            err,
            IndexError::IdentityMismatch {
                what: "segment footer CRC",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "index sidecar belongs to another segment: its segment footer CRC is 0xdeadbeef, \
             the segment's is 0xdeadbeee; rebuild the sidecar"
        );
        other = m.identity;
        other.store_id[0] ^= 1;
        assert!(matches!(
            r.check_identity(&other),
            Err(IndexError::IdentityMismatch {
                what: "store id",
                ..
            })
        ));
    }
}
