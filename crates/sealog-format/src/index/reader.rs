//! [`IndexReader`]: a sidecar read in place, straight from its bytes.
//!
//! [`IndexReader::open`] checks the header, the section table and the
//! placement of every section, in time proportional to the number of
//! sections, and notes where each known section is.
//! [`IndexReader::check_section`] checks one section's CRC and structure,
//! by handing it to the module that owns its kind;
//! [`IndexReader::parse`] does both for the whole file. Lookups hand out
//! views ([`TermDict`], [`HashedIndex`], [`IpIndex`]) over the sections.

use roaring::RoaringBitmap;

use super::bytes::{align_up, crc32, sub, to_u64};
use super::columns::{self, BlockCrcs, Columns};
use super::dictionary::{BitmapShapes, TermDict};
use super::error::{IndexError, Region};
use super::field::{IndexField, PerField};
use super::filter::TermFilter;
use super::hashed::{HashedIndex, term_key};
use super::header::{RawHeader, RawSection, SectionInfo, SegmentIdentity};
use super::ip::IpIndex;
use super::layout::{
    HASHED_HEADER_LEN, HASHED_KEY_LEN, OFFSET_WIDTH, ORDINAL_LEN, SECTION_ENTRY_LEN, SectionKind,
};

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

    /// Position in the section table of the block checksums of `column`
    /// ([`SectionKind::Offsets`] or [`SectionKind::EventTimes`]), if the
    /// file has them.
    pub fn column_blocks_section(&self, column: SectionKind) -> Option<usize> {
        self.blocks_of(column).map(|(index, _)| index)
    }

    fn blocks_of(&self, column: SectionKind) -> Option<(usize, &'a [u8])> {
        match column {
            SectionKind::Offsets => self.blocks[0],
            SectionKind::EventTimes => self.blocks[1],
            _ => None,
        }
    }

    /// The block of `column` that holds the value of record `ordinal`, and
    /// the byte range of that block in the file; `None` if the column has
    /// no usable block checksums or no such ordinal. Cheap: reads the
    /// block length only (from a section that may not have been checked).
    pub fn column_block_of(&self, column: SectionKind, ordinal: u32) -> Option<(u64, u64, u64)> {
        let (_, data) = self.blocks_of(column)?;
        let block_len = BlockCrcs::view(data).block_len()?;
        let section = self.section(self.column_section(column)?)?;
        let at = u64::from(ordinal) * to_u64(columns::width(column));
        if at >= section.len {
            return None;
        }
        let block = at / block_len;
        let start = block * block_len;
        let len = block_len.min(section.len - start);
        Some((block, section.offset + start, len))
    }

    /// Number of blocks `column` has checksums for (0 without them).
    pub fn column_block_count(&self, column: SectionKind) -> u64 {
        self.blocks_of(column)
            .map_or(0, |(_, data)| BlockCrcs::view(data).count())
    }

    fn column_section(&self, column: SectionKind) -> Option<usize> {
        match column {
            SectionKind::Offsets => Some(self.column_sections[0]),
            SectionKind::EventTimes => Some(self.column_sections[1]),
            _ => None,
        }
    }

    /// Checks block `block` of `column` against its stored checksum and,
    /// for the offsets column, that the offsets in it strictly increase.
    /// The caller checks the block-checksum section first
    /// ([`column_blocks_section`](Self::column_blocks_section),
    /// [`check_section`](Self::check_section)); values read from a
    /// checked block are then as sound as those of a checked column.
    pub fn check_column_block(&self, column: SectionKind, block: u64) -> Result<(), IndexError> {
        let Some((_, data)) = self.blocks_of(column) else {
            return Err(IndexError::MissingSection {
                kind: SectionKind::ColumnBlocks,
            });
        };
        let crcs = BlockCrcs::view(data);
        let region = Region::ColumnBlock {
            kind: column.to_u16(),
            block,
        };
        let (Some(block_len), Some(expected), Some(section)) = (
            crcs.block_len(),
            crcs.crc(block),
            self.column_section(column).and_then(|i| self.section(i)),
        ) else {
            return Err(IndexError::BadColumnBlocks {
                column,
                reason: format!("there is no checksum of block {block}"),
            });
        };
        if block == 0
            && let Some(index) = self.column_section(column)
        {
            self.check_padding_before(index)?;
        }
        let start = block.saturating_mul(block_len);
        let len = block_len.min(section.len.saturating_sub(start));
        let offset = section.offset + start;
        let bytes = sub(self.bytes, offset, len).unwrap_or_default();
        let actual = crc32(bytes);
        if actual != expected || len == 0 {
            return Err(IndexError::ChecksumMismatch {
                region,
                offset,
                len,
                expected,
                actual,
            });
        }
        if column == SectionKind::Offsets {
            let (values, _) = bytes.as_chunks::<OFFSET_WIDTH>();
            columns::check_offsets_from(
                start / to_u64(OFFSET_WIDTH),
                values.iter().map(|b| u32::from_le_bytes(*b)),
            )?;
        }
        Ok(())
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

    /// Position in the section table of the block checksums of the term
    /// dictionary of `field`, if the file has them (a dictionary of at
    /// most one block has none).
    pub fn dict_blocks_section(&self, field: IndexField) -> Option<usize> {
        self.dict_blocks(field).map(|(index, _)| index)
    }

    /// Table position and bytes of the block checksums of the term
    /// dictionary of `field`.
    fn dict_blocks(&self, field: IndexField) -> Option<(usize, &'a [u8])> {
        let index = self.section_for(SectionKind::DictBlocks, field.id())?;
        let s = RawSection::decode(self.table.get(index)?);
        Some((index, sub(self.bytes, s.offset, s.len)?))
    }

    /// Number of blocks the term dictionary of `field` has checksums for
    /// (0 without them).
    pub fn dict_block_count(&self, field: IndexField) -> u64 {
        self.dict_blocks(field)
            .map_or(0, |(_, data)| BlockCrcs::view(data).count())
    }

    /// Checks block `block` of the term dictionary of `field` against its
    /// stored checksum and, in block 0, the padding before the dictionary
    /// and its header (adding up to the section's length, reserved word
    /// zero). The caller checks the block-checksum section first
    /// ([`dict_blocks_section`](Self::dict_blocks_section),
    /// [`check_section`](Self::check_section)).
    pub fn check_dict_block(&self, field: IndexField, block: u64) -> Result<(), IndexError> {
        let (data, start, _) = self.checked_block(
            SectionKind::TermDict,
            self.dicts.get(field),
            self.dict_blocks(field),
            field,
            block,
            |reason| IndexError::BadDictBlocks { field, reason },
            Region::DictBlock {
                field: field.id(),
                block,
            },
        )?;
        TermDict::check_block(data, field, start)
    }

    /// The records that have `term` in the term dictionary of `field`,
    /// reading only blocks that `check(block)` passes: block 0 (the
    /// header), the blocks of the entries and terms its binary search
    /// compares, and those of the entry, term and bitmap it finds, whose
    /// entry is then checked on its own and whose bitmap is checked as it
    /// is decoded. `check` is the caller's, as for
    /// [`hashed_candidates_checked`](Self::hashed_candidates_checked).
    ///
    /// `Ok(None)` if the dictionary has no block checksums (check the
    /// whole section and use [`field`](Self::field)); `Ok(Some(empty))` if
    /// the sidecar has no dictionary of `field`.
    pub fn dict_term_checked(
        &self,
        field: IndexField,
        term: &[u8],
        check: &mut dyn FnMut(u64) -> Result<(), IndexError>,
    ) -> Result<Option<RoaringBitmap>, IndexError> {
        let Some(data) = self.dicts.get(field) else {
            return Ok(Some(RoaringBitmap::new()));
        };
        let Some((_, crcs)) = self.dict_blocks(field) else {
            return Ok(None);
        };
        let Some(block_len) = BlockCrcs::view(crcs).block_len() else {
            return Err(IndexError::BadDictBlocks {
                field,
                reason: "its block length is not one a reader accepts".to_owned(),
            });
        };
        // The header first: the view's parts are found from it.
        check(0)?;
        let dict = TermDict::view(data, field, self.identity.record_count);
        let mut blocks = Vec::new();
        let found = dict.find_reading(term, &mut |start, end| {
            if end > start {
                blocks.extend(start / block_len..=(end - 1) / block_len);
            }
        });
        blocks.sort_unstable();
        blocks.dedup();
        for block in blocks {
            check(block)?;
        }
        let Some(index) = found else {
            return Ok(Some(RoaringBitmap::new()));
        };
        dict.check_entry(index)?;
        match dict.inline_ordinal(index) {
            Some(ordinal) => Ok(Some(std::iter::once(ordinal).collect())),
            None => dict.bitmap(index).map(Some),
        }
    }

    /// Position in the section table of the block checksums of the hashed
    /// index of `field`, if the file has them (a hashed index of at most
    /// one block has none).
    pub fn hashed_blocks_section(&self, field: IndexField) -> Option<usize> {
        self.hashed_blocks(field).map(|(index, _)| index)
    }

    /// Table position and bytes of the block checksums of the hashed index
    /// of `field` (found in the table when asked: a reader stays small).
    fn hashed_blocks(&self, field: IndexField) -> Option<(usize, &'a [u8])> {
        let index = self.section_for(SectionKind::HashedBlocks, field.id())?;
        let s = RawSection::decode(self.table.get(index)?);
        Some((index, sub(self.bytes, s.offset, s.len)?))
    }

    /// Number of blocks the hashed index of `field` has checksums for (0
    /// without them).
    pub fn hashed_block_count(&self, field: IndexField) -> u64 {
        self.hashed_blocks(field)
            .map_or(0, |(_, data)| BlockCrcs::view(data).count())
    }

    /// Checks block `block` of the hashed index of `field` against its
    /// stored checksum, then what a lookup relies on in it: the keys in it
    /// do not decrease, its ordinals are below the record count, and, in
    /// block 0, the section's header adds up to its length. The caller
    /// checks the block-checksum section first
    /// ([`hashed_blocks_section`](Self::hashed_blocks_section),
    /// [`check_section`](Self::check_section)).
    pub fn check_hashed_block(&self, field: IndexField, block: u64) -> Result<(), IndexError> {
        let (data, start, len) = self.checked_block(
            SectionKind::Hashed,
            self.hashed.get(field),
            self.hashed_blocks(field),
            field,
            block,
            |reason| IndexError::BadHashedBlocks { field, reason },
            Region::HashedBlock {
                field: field.id(),
                block,
            },
        )?;
        HashedIndex::check_block(data, field, self.identity.record_count, start, len)
    }

    /// Checks block `block` of the section of `kind` and `field` whose
    /// bytes are `data`, against the block checksums `crcs` (table position
    /// and bytes): the padding before the section with block 0, then the
    /// block's CRC. Returns the section's bytes and the block's start and
    /// length in them. `bad` says what is wrong with the checksums,
    /// `region` names the block in a mismatch.
    #[allow(clippy::too_many_arguments, reason = "one call per indexed kind")]
    fn checked_block(
        &self,
        kind: SectionKind,
        data: Option<&'a [u8]>,
        crcs: Option<(usize, &'a [u8])>,
        field: IndexField,
        block: u64,
        bad: impl Fn(String) -> IndexError,
        region: Region,
    ) -> Result<(&'a [u8], u64, u64), IndexError> {
        let index = self.section_for(kind, field.id());
        let (Some(data), Some((_, crcs)), Some(section)) =
            (data, crcs, index.and_then(|i| self.section(i)))
        else {
            return Err(IndexError::MissingSection {
                kind: match kind {
                    SectionKind::Hashed => SectionKind::HashedBlocks,
                    _ => SectionKind::DictBlocks,
                },
            });
        };
        let crcs = BlockCrcs::view(crcs);
        let (Some(block_len), Some(expected)) = (crcs.block_len(), crcs.crc(block)) else {
            return Err(bad(format!("there is no checksum of block {block}")));
        };
        if block == 0
            && let Some(index) = index
        {
            self.check_padding_before(index)?;
        }
        let start = block.saturating_mul(block_len);
        let len = block_len.min(to_u64(data.len()).saturating_sub(start));
        let bytes = sub(data, start, len).unwrap_or_default();
        let actual = crc32(bytes);
        if actual != expected || len == 0 {
            return Err(IndexError::ChecksumMismatch {
                region,
                offset: section.offset + start,
                len,
                expected,
                actual,
            });
        }
        Ok((data, start, len))
    }

    /// The candidates of `term` in the hashed index of `field` (see
    /// [`HashedIndex::candidates`]), reading only blocks that
    /// `check(block)` passes: the block holding the section's header, each
    /// block a key the search reads lies in, and the blocks of the keys and
    /// ordinals it returns. A search of a large index then checks a few
    /// blocks instead of the whole section. `check` is the caller's (it
    /// remembers what it checked, and calls
    /// [`check_hashed_block`](Self::check_hashed_block) for the rest); its
    /// first error is returned.
    ///
    /// `Ok(None)` if the index has no block checksums (check the whole
    /// section and use [`hashed`](Self::hashed)); `Ok(Some(empty))` if the
    /// sidecar has no hashed index of `field`.
    pub fn hashed_candidates_checked(
        &self,
        field: IndexField,
        term: &[u8],
        check: &mut dyn FnMut(u64) -> Result<(), IndexError>,
    ) -> Result<Option<RoaringBitmap>, IndexError> {
        let Some(index) = self.hashed(field) else {
            return Ok(Some(RoaringBitmap::new()));
        };
        let Some((_, crcs)) = self.hashed_blocks(field) else {
            return Ok(None);
        };
        let Some(block_len) = BlockCrcs::view(crcs).block_len() else {
            return Err(IndexError::BadHashedBlocks {
                field,
                reason: "its block length is not one a reader accepts".to_owned(),
            });
        };
        let entries = index.len();
        let key_block = |i: usize| to_u64(HASHED_HEADER_LEN + i * HASHED_KEY_LEN) / block_len;
        let ordinal_block = |i: usize| {
            to_u64(HASHED_HEADER_LEN + entries * HASHED_KEY_LEN + i * ORDINAL_LEN) / block_len
        };
        let mut blocks = vec![0u64];
        let range = index.key_range_reading(term_key(term), &mut |i| {
            if i < entries {
                blocks.push(key_block(i));
            }
        });
        if let (Some(first), Some(last)) = (range.clone().next(), range.clone().last()) {
            blocks.extend(key_block(first)..=key_block(last));
            blocks.extend(ordinal_block(first)..=ordinal_block(last));
        }
        blocks.sort_unstable();
        blocks.dedup();
        for block in blocks {
            check(block)?;
        }
        Ok(Some(index.ordinals_in(range)))
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
mod tests {
    use crate::index::testing::*;
    use crate::index::*;

    #[test]
    fn unknown_fields_and_section_kinds_are_skipped() {
        let mut sections = columns(3).to_vec();
        sections.push((KIND_TERM_DICT, 3, raw_dict(&[(b"r", 1, Stored::Inline(2))])));
        sections.push((KIND_TERM_DICT, 40, b"a future dictionary layout".to_vec()));
        sections.push((KIND_HASHED, 9, raw_hashed(&[(fnv(b"id"), 1)])));
        sections.push((KIND_HASHED, 41, b"a future hashed index".to_vec()));
        sections.push((KIND_IP, 42, b"a future IP index".to_vec()));
        sections.push((10, 0, b"a future section".to_vec()));
        sections.push((10, 7, Vec::new()));
        let bytes = assemble(identity(3), &sections);
        let r = IndexReader::parse(&bytes).unwrap();
        assert_eq!(
            r.fields().map(|d| d.field()).collect::<Vec<_>>(),
            [IndexField::Resource]
        );
        assert_eq!(
            r.hashed_fields().map(|h| h.field()).collect::<Vec<_>>(),
            [IndexField::ResourceId]
        );
        assert_eq!(r.ip_fields().count(), 0);
        assert_eq!(r.sections().len(), 9);
        assert_eq!(r.sections().nth(7).unwrap().kind, SectionKind::Unknown(10));
        assert_eq!(r.section_for(SectionKind::Unknown(10), 7), Some(8));
        assert_eq!(r.section_for(SectionKind::Hashed, 41), Some(5));
        let ids = r.hashed(IndexField::ResourceId).unwrap();
        assert_eq!(ids.candidates(b"id").iter().collect::<Vec<_>>(), [1]);
        // Skipped sections still have their CRC checked.
        let mut damaged = bytes.clone();
        let future = r.section(5).unwrap();
        damaged[future.offset as usize] ^= 1;
        let opened = IndexReader::open(&damaged).unwrap();
        assert!(matches!(
            opened.check_section(5),
            Err(IndexError::ChecksumMismatch { .. })
        ));
        let d = r.field(IndexField::Resource).unwrap();
        assert_eq!(
            d.bitmap(d.find(b"r").unwrap())
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [2]
        );
    }

    #[test]
    fn section_table_rules() {
        let [offsets, times] = columns(2);
        let dict = (KIND_TERM_DICT, 1, raw_dict(&[]));
        let id = identity(2);
        // Out of order, duplicated.
        let swapped = assemble(id, &[times.clone(), offsets.clone()]);
        assert!(matches!(
            IndexReader::parse(&swapped),
            Err(IndexError::SectionOrder { .. })
        ));
        let twice = assemble(
            id,
            &[offsets.clone(), times.clone(), dict.clone(), dict.clone()],
        );
        assert!(matches!(
            IndexReader::parse(&twice),
            Err(IndexError::SectionOrder { .. })
        ));
        // Missing columns.
        let missing = assemble(id, std::slice::from_ref(&offsets));
        assert!(matches!(
            IndexReader::parse(&missing),
            Err(IndexError::MissingSection {
                kind: SectionKind::EventTimes
            })
        ));
        // Column of the wrong length, column with a field id.
        let short = assemble(identity(3), &[offsets.clone(), times.clone()]);
        assert!(matches!(
            IndexReader::parse(&short),
            Err(IndexError::BadColumnLength {
                column: SectionKind::Offsets,
                expected: 12,
                found: 8
            })
        ));
        let with_field = assemble(id, &[(KIND_OFFSETS, 1, offsets.2.clone()), times.clone()]);
        assert!(matches!(
            IndexReader::parse(&with_field),
            Err(IndexError::BadSectionField { .. })
        ));
        // Offsets must increase.
        let flat = (
            KIND_OFFSETS,
            0,
            [5u32, 5].iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        assert!(matches!(
            IndexReader::parse(&assemble(id, &[flat, times.clone()])),
            Err(IndexError::OffsetsNotIncreasing {
                ordinal: 1,
                previous: 5,
                offset: 5
            })
        ));
        // A gap between sections.
        let mut gapped = assemble(id, &[offsets.clone(), times.clone()]);
        let at = 72 + 24 + 8;
        let moved = u64::from_le_bytes(gapped[at..at + 8].try_into().unwrap()) + 8;
        gapped[at..at + 8].copy_from_slice(&moved.to_le_bytes());
        gapped.splice(moved as usize - 8..moved as usize - 8, [0u8; 8]);
        reseal(&mut gapped);
        assert!(matches!(
            IndexReader::parse(&gapped),
            Err(IndexError::SectionMisplaced {
                expected: 128,
                offset: 136,
                ..
            })
        ));
        // Non-zero padding (3 records: 12-byte offsets column, 4 padding bytes).
        let [offsets3, times3] = columns(3);
        let mut padded = assemble(identity(3), &[offsets3, times3]);
        padded[72 + 48 + 12 + 1] = 1;
        reseal(&mut padded);
        assert!(matches!(
            IndexReader::parse(&padded),
            Err(IndexError::NonZeroPadding { offset: 133 })
        ));
        // `open` reads no byte past the table: the padding is found by the
        // check of the section it precedes, and only by that one.
        let opened = IndexReader::open(&padded).unwrap();
        opened.check_section(0).unwrap();
        assert!(matches!(
            opened.check_section(1),
            Err(IndexError::NonZeroPadding { offset: 133 })
        ));
        // Unknown flags, newer version, bad header length, too many records.
        let good = assemble(id, &[offsets.clone(), times.clone()]);
        let mut flagged = good.clone();
        flagged[12] = 1;
        reseal(&mut flagged);
        assert!(matches!(
            IndexReader::parse(&flagged),
            Err(IndexError::UnsupportedFlags { flags: 1 })
        ));
        let mut newer = good.clone();
        newer[8] = 2;
        assert!(matches!(
            IndexReader::parse(&newer),
            Err(IndexError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
        let mut odd = good.clone();
        odd[10] = 73;
        assert!(matches!(
            IndexReader::parse(&odd),
            Err(IndexError::BadHeaderLength { found: 73 })
        ));
        let mut huge = assemble(identity(1 << 33), &[]);
        reseal(&mut huge);
        assert!(matches!(
            IndexReader::parse(&huge),
            Err(IndexError::TooLarge { .. })
        ));
        assert!(matches!(
            IndexReader::parse(b"SEALOGIY and more"),
            Err(IndexError::BadMagic { .. })
        ));
        assert!(matches!(
            IndexReader::parse(b"SEALOGIX"),
            Err(IndexError::Truncated { .. })
        ));
    }

    #[test]
    fn longer_headers_are_accepted() {
        let [offsets, times] = columns(2);
        let base = assemble(identity(2), &[offsets, times]);
        // Insert 8 bytes of header extension before the CRC and shift
        // the sections by 8.
        let mut bytes = base[..68].to_vec();
        bytes[10..12].copy_from_slice(&80u16.to_le_bytes());
        bytes.extend_from_slice(b"future!!");
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&base[72..]);
        for i in 0..2 {
            let at = 80 + 24 * i + 8;
            let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) + 8;
            bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        }
        reseal(&mut bytes);
        let r = IndexReader::parse(&bytes).unwrap();
        assert_eq!(r.offset(1), Some(10));
    }

    #[test]
    fn open_reads_no_section() {
        let m = small_model();
        let bytes = m.encode();
        let parsed = IndexReader::parse(&bytes).unwrap();
        // Break the structure of every section behind valid CRCs: `open`
        // does not notice, `check_section` does, one section at a time.
        let mut broken = bytes.clone();
        for s in parsed.sections() {
            let at = s.offset as usize;
            match s.kind {
                // Frame offsets no longer increase.
                SectionKind::Offsets => broken[at + 4..at + 8].copy_from_slice(&[0; 4]),
                // The first count no longer matches the length.
                _ if s.len > 0 => broken[at] ^= 0x40,
                _ => {}
            }
        }
        reseal(&mut broken);
        assert!(IndexReader::parse(&broken).is_err());
        let r = IndexReader::open(&broken).unwrap();
        exercise_unchecked(&r);
        for (i, s) in parsed.sections().enumerate() {
            let result = r.check_section(i);
            if s.kind == SectionKind::EventTimes || s.len == 0 {
                result.unwrap();
            } else {
                assert!(result.is_err(), "section {i} ({:?}) passed", s.kind);
            }
        }
        // Damaged sections read as empty or wrong, never out of bounds.
        assert!(r.field(IndexField::Actor).unwrap().is_empty());
        assert!(r.hashed(IndexField::RequestId).unwrap().is_empty());
        assert!(r.ip(IndexField::SourceIp).unwrap().is_empty());
        assert_eq!(r.column_sections(), [0, 1]);
    }

    /// A sidecar of `n` records from the builder, with or without block
    /// checksums.
    fn built(n: u32, blocks: bool) -> Vec<u8> {
        let mut b = IndexBuilder::new(identity(u64::from(n)));
        b.set_columns(
            (0..n).map(|i| i * 7).collect(),
            (0..n)
                .map(|i| 1_700_000_000_000_000_000 + i64::from(i))
                .collect(),
        )
        .unwrap();
        b.set_column_blocks(blocks);
        b.encode().unwrap()
    }

    #[test]
    fn long_columns_get_block_checksums_and_each_block_checks_on_its_own() {
        // 1,500 records: a 6,000-byte offsets column (2 blocks) and a
        // 12,000-byte event-time column (3 blocks).
        let bytes = built(1_500, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let kinds: Vec<(SectionKind, u16)> = r.sections().map(|s| (s.kind, s.field)).collect();
        assert_eq!(
            kinds,
            [
                (SectionKind::Offsets, 0),
                (SectionKind::EventTimes, 0),
                (SectionKind::ColumnBlocks, KIND_OFFSETS),
                (SectionKind::ColumnBlocks, KIND_EVENT_TIMES),
            ]
        );
        assert_eq!(r.column_block_count(SectionKind::Offsets), 2);
        assert_eq!(r.column_block_count(SectionKind::EventTimes), 3);
        let offsets = r.section(0).unwrap();
        assert_eq!(
            r.column_block_of(SectionKind::Offsets, 1_023),
            Some((0, offsets.offset, 4096))
        );
        assert_eq!(
            r.column_block_of(SectionKind::Offsets, 1_024),
            Some((1, offsets.offset + 4096, 6_000 - 4096))
        );
        assert_eq!(r.column_block_of(SectionKind::Offsets, 1_500), None);
        for (column, blocks) in [(SectionKind::Offsets, 2), (SectionKind::EventTimes, 3)] {
            for block in 0..blocks {
                r.check_column_block(column, block).unwrap();
            }
            assert!(r.check_column_block(column, blocks).is_err());
        }

        // A flipped byte in the event-time column fails its block only.
        let times = r.section(1).unwrap();
        let mut damaged = bytes.clone();
        damaged[times.offset as usize + 4096 + 3] ^= 1;
        let d = IndexReader::open(&damaged).unwrap();
        assert!(d.check_section(1).is_err());
        d.check_column_block(SectionKind::EventTimes, 0).unwrap();
        d.check_column_block(SectionKind::EventTimes, 2).unwrap();
        let err = d
            .check_column_block(SectionKind::EventTimes, 1)
            .unwrap_err();
        assert!(
            matches!(
                err,
                IndexError::ChecksumMismatch {
                    region: Region::ColumnBlock {
                        kind: KIND_EVENT_TIMES,
                        block: 1
                    },
                    len: 4096,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("block #1 of the event-time column"),
            "{err}"
        );

        // Offsets out of order inside a block whose checksums were fixed:
        // the block check names the ordinal.
        let mut swapped = bytes.clone();
        let at = offsets.offset as usize + 4096 + 4 * 10;
        swapped[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        reseal(&mut swapped);
        let crcs = IndexReader::open(&swapped).unwrap().section(2).unwrap();
        let block = &swapped[offsets.offset as usize + 4096..offsets.offset as usize + 6_000];
        let crc = crc32fast::hash(block);
        let crc_at = crcs.offset as usize + 8 + 4;
        swapped[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        reseal(&mut swapped);
        let s = IndexReader::open(&swapped).unwrap();
        s.check_section(2).unwrap();
        s.check_column_block(SectionKind::Offsets, 0).unwrap();
        assert!(matches!(
            s.check_column_block(SectionKind::Offsets, 1),
            Err(IndexError::OffsetsNotIncreasing {
                ordinal: 1_034,
                offset: 0,
                ..
            })
        ));
    }

    #[test]
    fn block_checksums_are_optional_and_only_for_columns_past_one_block() {
        // 600 records: 2,400 bytes of offsets (one block: none), 4,800 of
        // event times (two blocks).
        let r_bytes = built(600, true);
        let r = IndexReader::parse(&r_bytes).unwrap();
        assert_eq!(r.column_blocks_section(SectionKind::Offsets), None);
        assert_eq!(r.column_blocks_section(SectionKind::EventTimes), Some(2));
        assert_eq!(r.column_block_of(SectionKind::Offsets, 0), None);
        // Without: the layout sidecars had before block checksums.
        let plain = built(1_500, false);
        let p = IndexReader::parse(&plain).unwrap();
        assert_eq!(p.sections().len(), 2);
        assert!(matches!(
            p.check_column_block(SectionKind::Offsets, 0),
            Err(IndexError::MissingSection { .. })
        ));
        assert_eq!(built(100, true), built(100, false));
    }

    #[test]
    fn malformed_block_checksums_are_refused_by_the_section_check() {
        let bytes = built(1_500, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let crcs = r.section(3).unwrap().offset as usize;
        for (at, value, says) in [
            (0, 1000u32, "power of two"),
            (0, 256, "power of two"),
            (0, 2 << 20, "power of two"),
            (0, 8192, "needs"),
            (4, 1, "reserved"),
        ] {
            let mut broken = bytes.clone();
            broken[crcs + at..crcs + at + 4].copy_from_slice(&value.to_le_bytes());
            reseal(&mut broken);
            let b = IndexReader::open(&broken).unwrap();
            let err = b.check_section(3).unwrap_err();
            assert!(
                matches!(
                    err,
                    IndexError::BadColumnBlocks {
                        column: SectionKind::EventTimes,
                        ..
                    }
                ) && err.to_string().contains(says),
                "{value} at {at}: {err}"
            );
            // Lookups stay in bounds whatever the header says.
            for block in 0..4 {
                let _ = b.check_column_block(SectionKind::EventTimes, block);
            }
        }
    }

    /// A sidecar of `n` records with one request id each (`id-<i / 3>`:
    /// three records per id), with or without hashed block checksums.
    fn with_request_ids(n: u32, blocks: bool) -> Vec<u8> {
        let mut b = IndexBuilder::new(identity(u64::from(n)));
        b.set_columns((0..n).map(|i| i * 7).collect(), vec![0; n as usize])
            .unwrap();
        b.set_hashed_blocks(blocks);
        b.add_hashed_field(IndexField::RequestId);
        for i in 0..n {
            b.add_hashed(IndexField::RequestId, format!("id-{}", i / 3).as_bytes(), i)
                .unwrap();
        }
        b.encode().unwrap()
    }

    #[test]
    fn a_hashed_lookup_checks_only_the_blocks_it_reads() {
        // 3,000 records: 8 + 12 × 3,000 = 36,008 bytes, 9 blocks.
        let bytes = with_request_ids(3_000, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let field = IndexField::RequestId;
        let crcs = r.hashed_blocks_section(field).expect("block checksums");
        assert_eq!(r.section(crcs).unwrap().kind, SectionKind::HashedBlocks);
        assert_eq!(r.hashed_block_count(field), 9);
        let index = r.hashed(field).unwrap();
        for term in ["id-0", "id-499", "id-999", "id-1000", "absent", ""] {
            let mut read = Vec::new();
            let got = r
                .hashed_candidates_checked(field, term.as_bytes(), &mut |block| {
                    read.push(block);
                    r.check_hashed_block(field, block)
                })
                .unwrap()
                .unwrap();
            assert_eq!(got, index.candidates(term.as_bytes()), "{term}");
            assert_eq!(read.first(), Some(&0), "the header's block first");
            assert!(read.len() < 9, "{term}: {read:?}, not every block");
        }
        for block in 0..9 {
            r.check_hashed_block(field, block).unwrap();
        }
        assert!(r.check_hashed_block(field, 9).is_err());
        // Without block checksums: nothing to check by block, no section.
        let plain = with_request_ids(3_000, false);
        let p = IndexReader::parse(&plain).unwrap();
        assert_eq!(p.hashed_blocks_section(field), None);
        assert!(matches!(
            p.hashed_candidates_checked(field, b"id-0", &mut |_| Ok(())),
            Ok(None)
        ));
        assert_eq!(
            bytes.len() - plain.len(),
            SECTION_ENTRY_LEN + BLOCKS_HEADER_LEN + 9 * 4,
            "one more section: a table entry, a header and 9 checksums"
        );
        // Small indexes get none either.
        let small = with_request_ids(300, true);
        let s = IndexReader::parse(&small).unwrap();
        assert_eq!(s.hashed_blocks_section(field), None);
    }

    #[test]
    fn a_damaged_or_forged_hashed_block_is_refused_when_read() {
        let bytes = with_request_ids(3_000, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let field = IndexField::RequestId;
        let hashed = r
            .section(r.section_for(SectionKind::Hashed, field.id()).unwrap())
            .unwrap();
        let crcs = r.section(r.hashed_blocks_section(field).unwrap()).unwrap();
        // A flipped bit in block 2: that block fails, naming itself; the
        // others still pass, so lookups that do not read it go on.
        let mut flipped = bytes.clone();
        let at = hashed.offset as usize + 2 * 4096 + 100;
        flipped[at] ^= 1;
        let f = IndexReader::open(&flipped).unwrap();
        let err = f.check_hashed_block(field, 2).unwrap_err();
        assert!(
            matches!(
                err,
                IndexError::ChecksumMismatch {
                    region: Region::HashedBlock { block: 2, .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("block #2 of the hashed index of field request_id"),
            "{err}"
        );
        f.check_hashed_block(field, 1).unwrap();
        // Two keys of block 1 swapped, with that block's checksum, and then
        // every other checksum, fixed as a forger would: the block's own
        // check finds the order broken.
        let mut forged = bytes.clone();
        let key = hashed.offset as usize + 4096 + 8 * 4;
        let (a, b) = (key, key + 8);
        let mut first = [0u8; 8];
        first.copy_from_slice(&forged[a..a + 8]);
        forged.copy_within(b..b + 8, a);
        forged[b..b + 8].copy_from_slice(&first);
        let block = &forged[hashed.offset as usize + 4096..hashed.offset as usize + 8192];
        let crc = crc32fast::hash(block);
        let entry = crcs.offset as usize + BLOCKS_HEADER_LEN + 4;
        forged[entry..entry + 4].copy_from_slice(&crc.to_le_bytes());
        reseal(&mut forged);
        let g = IndexReader::open(&forged).unwrap();
        let err = g.check_hashed_block(field, 1).unwrap_err();
        assert!(matches!(err, IndexError::BadHashedIndex { .. }), "{err:?}");
        assert!(
            g.check_section(g.section_for(SectionKind::Hashed, field.id()).unwrap())
                .is_err()
        );
        // Block checksums that do not fit the index are refused by their
        // section's check.
        let mut short = bytes.clone();
        short[crcs.offset as usize..crcs.offset as usize + 4]
            .copy_from_slice(&8192u32.to_le_bytes());
        reseal(&mut short);
        let s = IndexReader::open(&short).unwrap();
        let err = s
            .check_section(s.hashed_blocks_section(field).unwrap())
            .unwrap_err();
        assert!(matches!(err, IndexError::BadHashedBlocks { .. }), "{err:?}");
    }

    /// A sidecar of `n` records with an actor each (`actor-<i % 5,000>`),
    /// with or without dictionary block checksums.
    fn with_actors(n: u32, blocks: bool) -> Vec<u8> {
        let mut b = IndexBuilder::new(identity(u64::from(n)));
        b.set_columns((0..n).map(|i| i * 7).collect(), vec![0; n as usize])
            .unwrap();
        b.set_dict_blocks(blocks);
        b.add_field(IndexField::Actor);
        for i in 0..n {
            let term = format!("actor-{:04}", i % 5_000);
            b.add_term(IndexField::Actor, term.as_bytes(), i).unwrap();
        }
        b.encode().unwrap()
    }

    #[test]
    fn a_dictionary_lookup_checks_only_the_blocks_it_reads() {
        // 5,000 terms, each with 2 records (a bitmap) but the last 500,
        // with one (inline).
        let bytes = with_actors(9_500, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let field = IndexField::Actor;
        let crcs = r.dict_blocks_section(field).expect("block checksums");
        assert_eq!(r.section(crcs).unwrap().kind, SectionKind::DictBlocks);
        let dict = r.field(field).unwrap();
        let section = r
            .section(r.section_for(SectionKind::TermDict, field.id()).unwrap())
            .unwrap();
        let blocks = section.len.div_ceil(4096);
        assert!(blocks >= 8, "{blocks} blocks");
        assert_eq!(r.dict_block_count(field), blocks);
        for term in [
            "actor-0000",
            "actor-2500",
            "actor-4999",
            "actor-5000",
            "absent",
            "",
        ] {
            let mut read = Vec::new();
            let got = r
                .dict_term_checked(field, term.as_bytes(), &mut |block| {
                    read.push(block);
                    r.check_dict_block(field, block)
                })
                .unwrap()
                .unwrap();
            let want = dict
                .find(term.as_bytes())
                .map_or_else(RoaringBitmap::new, |i| dict.bitmap(i).unwrap());
            assert_eq!(got, want, "{term}");
            assert_eq!(read.first(), Some(&0), "the header's block first");
            assert!(read.len() * 2 < blocks as usize, "{term}: {read:?}");
        }
        for block in 0..blocks {
            r.check_dict_block(field, block).unwrap();
        }
        assert!(r.check_dict_block(field, blocks).is_err());
        // Without block checksums: nothing to check by block, no section.
        let plain = with_actors(9_500, false);
        let p = IndexReader::parse(&plain).unwrap();
        assert_eq!(p.dict_blocks_section(field), None);
        assert!(matches!(
            p.dict_term_checked(field, b"actor-0001", &mut |_| Ok(())),
            Ok(None)
        ));
        assert_eq!(
            bytes.len() - plain.len(),
            SECTION_ENTRY_LEN + BLOCKS_HEADER_LEN + blocks as usize * 4,
            "one more section: a table entry, a header and a checksum a block"
        );
        // A dictionary of one block gets none.
        let small = with_actors(20, true);
        let s = IndexReader::parse(&small).unwrap();
        assert_eq!(s.dict_blocks_section(field), None);
    }

    #[test]
    fn a_damaged_dictionary_block_is_refused_by_the_lookups_that_read_it() {
        let bytes = with_actors(9_500, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let field = IndexField::Actor;
        let at = r
            .section(r.section_for(SectionKind::TermDict, field.id()).unwrap())
            .unwrap()
            .offset as usize;
        let term = b"actor-2500";
        let mut read = Vec::new();
        r.dict_term_checked(field, term, &mut |block| {
            read.push(block);
            Ok(())
        })
        .unwrap();
        let last = *read.last().unwrap();
        for block in [0, last] {
            let mut damaged = bytes.clone();
            damaged[at + block as usize * 4096 + 9] ^= 0x20;
            let d = IndexReader::open(&damaged).unwrap();
            let err = d
                .dict_term_checked(field, term, &mut |b| d.check_dict_block(field, b))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    IndexError::ChecksumMismatch {
                        region: Region::DictBlock { block: b, .. },
                        ..
                    } if b == block
                ),
                "block {block}: {err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("block #{block} of the term dictionary"))
            );
            // The whole section's check finds it too.
            assert!(
                d.check_section(d.section_for(SectionKind::TermDict, field.id()).unwrap())
                    .is_err()
            );
        }
        // A block-checksum section without its dictionary is malformed.
        let mut sections = columns(3).to_vec();
        sections.push((KIND_DICT_BLOCKS, IndexField::Actor.id(), {
            let mut crcs = 4096u32.to_le_bytes().to_vec();
            crcs.extend_from_slice(&[0; 4]);
            crcs
        }));
        let orphan = assemble(identity(3), &sections);
        let o = IndexReader::open(&orphan).unwrap();
        let err = o.check_section(2).unwrap_err();
        assert!(matches!(err, IndexError::BadDictBlocks { .. }), "{err}");
    }

    #[test]
    fn reader_is_a_small_view() {
        // Re-created per query: it must stay cheap to make and to copy.
        assert!(std::mem::size_of::<IndexReader<'_>>() <= 640);
    }
}
