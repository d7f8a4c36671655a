//! [`IndexReader`]: a sidecar read in place, straight from its bytes.
//!
//! [`IndexReader::open`] checks the header, the section table and the
//! placement of every section, in time proportional to the number of
//! sections, and notes where each known section is.
//! [`IndexReader::check_section`] checks one section's CRC and structure,
//! by handing it to the module that owns its kind;
//! [`IndexReader::parse`] does both for the whole file. Lookups hand out
//! views ([`TermDict`], [`HashedIndex`], [`IpIndex`]) over the sections.
//! Reading a column, hashed index or dictionary a checked block at a time
//! is in `blocks`.

use roaring::RoaringBitmap;

mod blocks;
mod derived;

pub use derived::DerivedKinds;

use super::bytes::{align_up, crc32, sub, to_u64};
use super::columns::{self, Columns};
use super::dictionary::{BitmapShapes, TermDict};
use super::error::{IndexError, Region};
use super::field::{IndexField, PerField};
use super::filter::TermFilter;
use super::hashed::HashedIndex;
use super::header::{RawHeader, RawSection, SectionInfo, SegmentIdentity};
use super::ip::IpIndex;
use super::layout::{SECTION_ENTRY_LEN, SectionKind};

/// A sidecar, read in place.
///
/// A reader is a cheap view (a few hundred bytes, no heap) over the file's
/// bytes, meant to be created per query. There are two ways to get one:
///
/// * [`parse`](Self::parse) checks the whole file: everything
///   [`open`](Self::open) checks, then every section with
///   [`check_section`](Self::check_section);
/// * [`open`](Self::open) checks the header, the section table and the
///   placement of the sections, in time proportional to the number of
///   sections, without reading the sections themselves. The caller then
///   checks, once, each section it uses (see
///   [`section_for`](Self::section_for) and
///   [`column_sections`](Self::column_sections)) and remembers that it did.
///
/// Lookups on a section that was not checked are memory-safe and never
/// panic, but may return wrong answers or errors if the section is damaged.
/// Term bitmaps are decoded, and fully checked, by [`TermDict::bitmap`].
#[derive(Debug, Clone, Copy)]
pub struct IndexReader<'a> {
    bytes: &'a [u8],
    identity: SegmentIdentity,
    table: &'a [[u8; SECTION_ENTRY_LEN]],
    /// Where the section table ends (the first section's padding starts).
    table_end: u64,
    /// Table positions of the offsets and event-time columns.
    column_sections: [usize; 2],
    columns: Columns<'a>,
    /// Table position and bytes of the block checksums of the offsets and
    /// of the event-time column, where the file has them.
    blocks: [Option<(usize, &'a [u8])>; 2],
    /// Section bytes per known field, for each index kind.
    dicts: PerField<&'a [u8]>,
    hashed: PerField<&'a [u8]>,
    ips: PerField<&'a [u8]>,
}

impl<'a> IndexReader<'a> {
    /// Checks a whole sidecar and returns a reader over it.
    ///
    /// Equivalent to [`open`](Self::open) followed by
    /// [`check_section`](Self::check_section) of every section. Its cost is
    /// proportional to the file's size; verification and rebuilds use it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, IndexError> {
        let reader = Self::open(bytes)?;
        for index in 0..reader.table.len() {
            reader.check_section(index)?;
        }
        Ok(reader)
    }

    /// Checks a sidecar's header, section table and section placement, and
    /// returns a reader over it, without reading the sections.
    ///
    /// Checked: magic, version, header length, header CRC, flags, the
    /// record-count limit, the table's bounds and CRC, the table's order,
    /// each section's position and bounds, the end of the file, and the
    /// presence, field id and length of both columns. Not checked: the
    /// sections' CRCs and contents, and the padding before each section,
    /// which [`check_section`](Self::check_section) checks one section at a
    /// time (and the block checks with a section's first block).
    ///
    /// Costs O(number of sections), reads no byte past the section table
    /// (a store opens hundreds of sidecars and reads a few sections of
    /// each) and does not allocate.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        let file_len = to_u64(bytes.len());
        let header = RawHeader::read(bytes)?;
        let header_len = usize::from(header.header_len);
        let identity = header.identity;
        let record_count = identity.record_count;

        // Section table.
        let table_start = to_u64(header_len);
        let table_len = u64::from(header.section_count) * to_u64(SECTION_ENTRY_LEN);
        let Some(table_bytes) = sub(bytes, table_start, table_len) else {
            return Err(IndexError::Truncated {
                what: "section table",
                offset: table_start,
                needed: table_len,
                available: file_len.saturating_sub(table_start),
            });
        };
        let actual = crc32(table_bytes);
        if actual != header.table_crc {
            return Err(IndexError::ChecksumMismatch {
                region: Region::SectionTable,
                offset: table_start,
                len: table_len,
                expected: header.table_crc,
                actual,
            });
        }
        let (table, _) = table_bytes.as_chunks::<SECTION_ENTRY_LEN>();

        // Sections, in table order.
        let mut offsets: Option<(usize, &'a [u8])> = None;
        let mut event_times: Option<(usize, &'a [u8])> = None;
        let mut dicts = PerField::new();
        let mut hashed = PerField::new();
        let mut ips = PerField::new();
        let mut blocks = [None, None];
        let mut prev_end = table_start + table_len;
        let mut prev_key: Option<(u16, u16)> = None;
        for (index, entry) in table.iter().enumerate() {
            let s = RawSection::decode(entry);
            let region = s.region(index);
            if prev_key.is_some_and(|prev| (s.kind, s.field) <= prev) {
                return Err(IndexError::SectionOrder { region });
            }
            prev_key = Some((s.kind, s.field));

            let expected = align_up(prev_end).unwrap_or(u64::MAX);
            if s.offset != expected {
                return Err(IndexError::SectionMisplaced {
                    region,
                    offset: s.offset,
                    expected,
                });
            }
            let out_of_bounds = IndexError::SectionOutOfBounds {
                region,
                offset: s.offset,
                len: s.len,
                file_len,
            };
            let Some(data) = sub(bytes, s.offset, s.len) else {
                return Err(out_of_bounds);
            };
            let field = IndexField::from_u16(s.field);
            match SectionKind::from_u16(s.kind) {
                kind @ (SectionKind::Offsets | SectionKind::EventTimes) => {
                    if s.field != 0 {
                        return Err(IndexError::BadSectionField { region });
                    }
                    let expected = columns::column_len(kind, record_count);
                    if s.len != expected {
                        return Err(IndexError::BadColumnLength {
                            column: kind,
                            expected,
                            found: s.len,
                        });
                    }
                    if kind == SectionKind::Offsets {
                        offsets = Some((index, data));
                    } else {
                        event_times = Some((index, data));
                    }
                }
                SectionKind::TermDict => dicts.set(field, data),
                SectionKind::Hashed => hashed.set(field, data),
                SectionKind::Ip => ips.set(field, data),
                SectionKind::ColumnBlocks => match SectionKind::from_u16(s.field) {
                    SectionKind::Offsets => blocks[0] = Some((index, data)),
                    SectionKind::EventTimes => blocks[1] = Some((index, data)),
                    _ => {}
                },
                SectionKind::HashedBlocks
                | SectionKind::TermFilter
                | SectionKind::DictBlocks
                | SectionKind::Unknown(_) => {}
            }
            prev_end = s.offset + s.len;
        }
        if prev_end != file_len {
            return Err(IndexError::TrailingBytes {
                offset: prev_end,
                len: file_len.saturating_sub(prev_end),
            });
        }
        let Some((offsets_index, offsets)) = offsets else {
            return Err(IndexError::MissingSection {
                kind: SectionKind::Offsets,
            });
        };
        let Some((event_times_index, event_times)) = event_times else {
            return Err(IndexError::MissingSection {
                kind: SectionKind::EventTimes,
            });
        };

        Ok(IndexReader {
            bytes,
            identity,
            table,
            table_end: table_start + table_len,
            column_sections: [offsets_index, event_times_index],
            columns: Columns::view(offsets, event_times),
            blocks,
            dicts,
            hashed,
            ips,
        })
    }

    /// Checks section `index` of the table completely: its CRC, then its
    /// structure.
    ///
    /// * offsets column: frame offsets strictly increase;
    /// * event-time column: nothing more;
    /// * term dictionary of a known field: header and length, every entry
    ///   (bounds, tiling, term length, cardinality, inline singletons with
    ///   an ordinal below the record count, no one-record bitmap), terms
    ///   unique and sorted, and every bitmap's structure, declared number
    ///   of values, and largest value (the order of its values is checked
    ///   when [`TermDict::bitmap`] decodes it);
    /// * hashed index of a known field: header and length, entries
    ///   strictly increasing by (key, ordinal), ordinals below the record
    ///   count;
    /// * IP index of a known field: header and length, both arrays strictly
    ///   increasing by (address, ordinal), no IPv4-mapped address among the
    ///   IPv6 ones, ordinals below the record count;
    /// * block checksums of a column: the block length, the reserved word,
    ///   one checksum per block of the column (the blocks themselves are
    ///   checked by [`check_column_block`](Self::check_column_block));
    /// * any other section (unknown kind or field): its CRC only.
    ///
    /// Costs O(section length). A reader from [`parse`](Self::parse) has
    /// passed this for every section. It is
    /// [`check_section_for_lookup`](Self::check_section_for_lookup)
    /// followed by [`check_section_bitmaps`](Self::check_section_bitmaps).
    pub fn check_section(&self, index: usize) -> Result<(), IndexError> {
        self.check_section_with(index, BitmapShapes::Checked)
    }

    /// [`check_section`](Self::check_section) without the structure check
    /// of a term dictionary's bitmaps: enough to look terms up and decode
    /// their bitmaps, as [`TermDict::bitmap`] checks a bitmap's structure,
    /// values and count against its entry when it decodes it. What it
    /// leaves out costs a walk of every bitmap in the dictionary, work a
    /// lookup of one term (or of a term the segment does not have) does
    /// not need. The term entries' cardinalities are not compared with
    /// their bitmaps: before answering from cardinalities alone, call
    /// [`check_section_bitmaps`](Self::check_section_bitmaps).
    ///
    /// For every other kind of section it is the whole check.
    pub fn check_section_for_lookup(&self, index: usize) -> Result<(), IndexError> {
        self.check_section_with(index, BitmapShapes::Deferred)
    }

    /// The part of [`check_section`](Self::check_section) that
    /// [`check_section_for_lookup`](Self::check_section_for_lookup) leaves
    /// out: every bitmap of term dictionary section `index` is well formed,
    /// holds as many values as its entry says and none past the segment.
    /// Expects a section that passed the lookup check (its CRC is not
    /// checked again; its entries are, as the bitmaps are found through
    /// them). Any other section passes.
    pub fn check_section_bitmaps(&self, index: usize) -> Result<(), IndexError> {
        let Some(entry) = self.table.get(index) else {
            return Err(IndexError::SectionIndexOutOfRange {
                index,
                count: self.table.len(),
            });
        };
        let s = RawSection::decode(entry);
        let (SectionKind::TermDict, Some(field), Some(data)) = (
            SectionKind::from_u16(s.kind),
            IndexField::from_u16(s.field),
            sub(self.bytes, s.offset, s.len),
        ) else {
            return Ok(());
        };
        TermDict::check(
            data,
            field,
            self.identity.record_count,
            BitmapShapes::Checked,
        )
    }

    fn check_section_with(&self, index: usize, shapes: BitmapShapes) -> Result<(), IndexError> {
        let Some(entry) = self.table.get(index) else {
            return Err(IndexError::SectionIndexOutOfRange {
                index,
                count: self.table.len(),
            });
        };
        let s = RawSection::decode(entry);
        let region = s.region(index);
        // `open` checked the bounds; a reader is only made by `open`.
        let Some(data) = sub(self.bytes, s.offset, s.len) else {
            return Err(IndexError::SectionOutOfBounds {
                region,
                offset: s.offset,
                len: s.len,
                file_len: to_u64(self.bytes.len()),
            });
        };
        self.check_padding_before(index)?;
        let actual = crc32(data);
        if actual != s.crc {
            return Err(IndexError::ChecksumMismatch {
                region,
                offset: s.offset,
                len: s.len,
                expected: s.crc,
                actual,
            });
        }
        let record_count = self.identity.record_count;
        let field = IndexField::from_u16(s.field);
        match (SectionKind::from_u16(s.kind), field) {
            (SectionKind::Offsets, _) => columns::check_offsets(data),
            (SectionKind::TermDict, Some(field)) => {
                TermDict::check(data, field, record_count, shapes)
            }
            (SectionKind::Hashed, Some(field)) => HashedIndex::check(data, field, record_count),
            (SectionKind::Ip, Some(field)) => IpIndex::check(data, field, record_count),
            (SectionKind::ColumnBlocks, _) => match SectionKind::from_u16(s.field) {
                column @ (SectionKind::Offsets | SectionKind::EventTimes) => {
                    columns::check_block_crcs(
                        data,
                        columns::column_len(column, record_count),
                        |reason| IndexError::BadColumnBlocks { column, reason },
                    )
                }
                _ => Ok(()),
            },
            (SectionKind::TermFilter, Some(field)) => TermFilter::check(data, field),
            (SectionKind::HashedBlocks, Some(field)) => {
                let bad = |reason| IndexError::BadHashedBlocks { field, reason };
                match self.hashed.get(field) {
                    Some(hashed) => columns::check_block_crcs(data, to_u64(hashed.len()), bad),
                    None => Err(bad(
                        "the sidecar has no hashed index of this field".to_owned()
                    )),
                }
            }
            (SectionKind::DictBlocks, Some(field)) => {
                let bad = |reason| IndexError::BadDictBlocks { field, reason };
                match self.dicts.get(field) {
                    Some(dict) => columns::check_block_crcs(data, to_u64(dict.len()), bad),
                    None => Err(bad(
                        "the sidecar has no term dictionary of this field".to_owned()
                    )),
                }
            }
            _ => Ok(()),
        }
    }

    /// The bytes between section `index` and what precedes it (the section
    /// table, or the section before it) are zeros. `open` placed every
    /// section, so the range is in bounds and at most
    /// `SECTION_ALIGN - 1` bytes long.
    fn check_padding_before(&self, index: usize) -> Result<(), IndexError> {
        let Some(entry) = self.table.get(index) else {
            return Ok(());
        };
        let start = match index.checked_sub(1).and_then(|i| self.table.get(i)) {
            Some(before) => {
                let before = RawSection::decode(before);
                before.offset + before.len
            }
            None => self.table_end,
        };
        let offset = RawSection::decode(entry).offset;
        let padding = sub(self.bytes, start, offset.saturating_sub(start)).unwrap_or_default();
        match padding.iter().position(|&b| b != 0) {
            Some(pos) => Err(IndexError::NonZeroPadding {
                offset: start + to_u64(pos),
            }),
            None => Ok(()),
        }
    }

    /// Position in the section table of the section of `kind` for the field
    /// id `field` (`0` for a column), if the file has one.
    ///
    /// For example `section_for(SectionKind::Hashed,
    /// IndexField::RequestId.id())`. A binary search over the table.
    pub fn section_for(&self, kind: SectionKind, field: u16) -> Option<usize> {
        let key = (kind.to_u16(), field);
        self.table
            .binary_search_by_key(&key, |entry| {
                let s = RawSection::decode(entry);
                (s.kind, s.field)
            })
            .ok()
    }

    /// Positions in the section table of the offsets column and of the
    /// event-time column, in that order (every sidecar has both).
    pub fn column_sections(&self) -> [usize; 2] {
        self.column_sections
    }

    /// Position in the section table of the term filter of the dictionary
    /// of `field`, if the file has one (a dictionary of at most
    /// [`TERM_FILTER_FROM`](super::TERM_FILTER_FROM) bytes has none).
    pub fn term_filter_section(&self, field: IndexField) -> Option<usize> {
        self.section_for(SectionKind::TermFilter, field.id())
    }

    /// The term filter of the dictionary of `field`, if the file has one
    /// (read in place; check its section before trusting an "absent").
    pub fn term_filter(&self, field: IndexField) -> Option<TermFilter<'a>> {
        let s = RawSection::decode(self.table.get(self.term_filter_section(field)?)?);
        Some(TermFilter::view(sub(self.bytes, s.offset, s.len)?, field))
    }

    /// Number of sections in the table.
    pub fn section_count(&self) -> usize {
        self.table.len()
    }

    /// The section at position `index` of the table.
    pub fn section(&self, index: usize) -> Option<SectionInfo> {
        self.table
            .get(index)
            .map(|entry| SectionInfo::from_raw(RawSection::decode(entry)))
    }

    /// The segment this sidecar belongs to.
    pub fn identity(&self) -> &SegmentIdentity {
        &self.identity
    }

    /// Checks that this sidecar belongs to the segment `expected`.
    pub fn check_identity(&self, expected: &SegmentIdentity) -> Result<(), IndexError> {
        self.identity.check_is(expected)
    }

    /// Number of records in the segment (ordinals are `0..record_count`).
    pub fn record_count(&self) -> u64 {
        self.identity.record_count
    }

    /// Byte offset of record `ordinal`'s frame in the segment file.
    #[inline]
    pub fn offset(&self, ordinal: u32) -> Option<u32> {
        self.columns.offset(ordinal)
    }

    /// The ordinal of the record whose frame starts at `frame_offset`.
    pub fn ordinal_at(&self, frame_offset: u32) -> Option<u32> {
        self.columns.ordinal_at(frame_offset)
    }

    /// Event time (UTC nanoseconds) of record `ordinal`.
    #[inline]
    pub fn event_time(&self, ordinal: u32) -> Option<i64> {
        self.columns.event_time(ordinal)
    }

    /// Ordinals of the records whose event time `t` is in `from <= t < to`.
    ///
    /// One branch-free pass over the event-time column.
    pub fn time_filter(&self, from: i64, to: i64) -> RoaringBitmap {
        self.columns.time_filter(from, to)
    }

    /// The ordinals of `candidates` whose event time `t` is in
    /// `from <= t < to`; cheaper than [`time_filter`](Self::time_filter)
    /// when the candidates are few. Ordinals past the segment are dropped.
    pub fn time_filter_in(&self, from: i64, to: i64, candidates: &RoaringBitmap) -> RoaringBitmap {
        self.columns.time_filter_in(from, to, candidates)
    }

    /// The term dictionary of `field`, or `None` if the sidecar has none
    /// (then queries on the field use another index or scan the segment).
    pub fn field(&self, field: IndexField) -> Option<TermDict<'a>> {
        let data = self.dicts.get(field)?;
        Some(TermDict::view(data, field, self.identity.record_count))
    }

    /// The term dictionaries of every field this version knows, in field
    /// id order (dictionaries of unknown field ids are skipped).
    pub fn fields(&self) -> impl Iterator<Item = TermDict<'a>> + '_ {
        IndexField::ALL
            .iter()
            .filter_map(|&field| self.field(field))
    }

    /// The hashed index of `field`, or `None` if the sidecar has none.
    pub fn hashed(&self, field: IndexField) -> Option<HashedIndex<'a>> {
        let data = self.hashed.get(field)?;
        Some(HashedIndex::view(data, field, self.identity.record_count))
    }

    /// The hashed indexes of every field this version knows, in field id
    /// order.
    pub fn hashed_fields(&self) -> impl Iterator<Item = HashedIndex<'a>> + '_ {
        IndexField::ALL
            .iter()
            .filter_map(|&field| self.hashed(field))
    }

    /// The IP index of `field`, or `None` if the sidecar has none.
    pub fn ip(&self, field: IndexField) -> Option<IpIndex<'a>> {
        let data = self.ips.get(field)?;
        Some(IpIndex::view(data, field, self.identity.record_count))
    }

    /// The IP indexes of every field this version knows, in field id order.
    pub fn ip_fields(&self) -> impl Iterator<Item = IpIndex<'a>> + '_ {
        IndexField::ALL.iter().filter_map(|&field| self.ip(field))
    }

    /// Every section of the file, in table order, including the ones this
    /// version skips.
    pub fn sections(&self) -> impl ExactSizeIterator<Item = SectionInfo> + 'a {
        self.table
            .iter()
            .map(|entry| SectionInfo::from_raw(RawSection::decode(entry)))
    }
}

#[cfg(test)]
mod tests;
