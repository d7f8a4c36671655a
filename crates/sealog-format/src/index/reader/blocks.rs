//! Lookups by block checksums: the block-checksum sections of the
//! columns (kind 6), hashed indexes (kind 7) and term dictionaries (kind
//! 9), the check of one block, and lookups that have the caller check
//! each block they read.

use roaring::RoaringBitmap;

use super::IndexReader;
use crate::index::bytes::{crc32, sub, to_u64};
use crate::index::columns::{self, BlockCrcs};
use crate::index::dictionary::TermDict;
use crate::index::error::{IndexError, Region};
use crate::index::field::IndexField;
use crate::index::hashed::{HashedIndex, term_key};
use crate::index::header::RawSection;
use crate::index::layout::{
    HASHED_HEADER_LEN, HASHED_KEY_LEN, OFFSET_WIDTH, ORDINAL_LEN, SectionKind,
};

impl<'a> IndexReader<'a> {
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

    /// Where the directory of the term dictionary of `field` lies in the
    /// file, as (start, end): its header, term entries and term heap, the
    /// part a lookup's binary search reads, without the bitmap heap after
    /// it. Unchecked, for read-ahead advice: a damaged header gives a
    /// short range (never a panic); `None` without such a dictionary.
    pub fn dict_directory(&self, field: IndexField) -> Option<(u64, u64)> {
        let section = self.section(self.section_for(SectionKind::TermDict, field.id())?)?;
        let data = self.dicts.get(field)?;
        let dict = TermDict::view(data, field, self.identity.record_count);
        let (_, _, bitmaps_at) = dict.part_offsets();
        Some((section.offset, section.offset.saturating_add(bitmaps_at)))
    }

    /// Appends to `out` the file ranges (start, end) a lookup of `term` in
    /// the term dictionary of `field` reads: the entries and terms its
    /// binary search compares and, if the term is there, its entry and
    /// bitmap; with block checksums, each widened to the blocks
    /// [`dict_term_checked`](Self::dict_term_checked) checks for it.
    /// Unchecked, for read-ahead advice once the directory
    /// ([`dict_directory`](Self::dict_directory)) is in memory: a damaged
    /// dictionary gives wrong ranges, never a panic.
    pub fn dict_lookup_ranges(&self, field: IndexField, term: &[u8], out: &mut Vec<(u64, u64)>) {
        let (Some(data), Some(section)) = (
            self.dicts.get(field),
            self.section_for(SectionKind::TermDict, field.id())
                .and_then(|i| self.section(i)),
        ) else {
            return;
        };
        let block = self
            .dict_blocks(field)
            .and_then(|(_, crcs)| BlockCrcs::view(crcs).block_len())
            .filter(|&len| len > 0)
            .unwrap_or(1);
        let dict = TermDict::view(data, field, self.identity.record_count);
        let (at, len) = (section.offset, section.len);
        dict.find_reading(term, &mut |start, end| {
            let first = start / block * block;
            let last = end.div_ceil(block).saturating_mul(block).min(len);
            out.push((at.saturating_add(first), at.saturating_add(last)));
        });
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
}

#[cfg(test)]
mod tests {
    use crate::index::testing::*;
    use crate::index::*;

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
    fn a_lookup_names_the_ranges_it_reads_within_the_directory_and_its_bitmap() {
        let bytes = with_actors(9_500, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let field = IndexField::Actor;
        let dict = r.field(field).unwrap();
        let section = r
            .section(r.section_for(SectionKind::TermDict, field.id()).unwrap())
            .unwrap();
        let (start, end) = r.dict_directory(field).unwrap();
        assert_eq!(start, section.offset);
        // The directory: 16 bytes of header, 20 a term, the term heap.
        let heap: usize = dict.iter().map(|t| t.term.len()).sum();
        assert_eq!(end - start, 16 + 20 * 5_000 + heap as u64);
        assert!(end < section.offset + section.len);
        for term in [
            "actor-0000",
            "actor-2500",
            "actor-4499",
            "actor-4999",
            "absent",
            "",
        ] {
            let mut ranges = Vec::new();
            r.dict_lookup_ranges(field, term.as_bytes(), &mut ranges);
            assert!(!ranges.is_empty(), "{term}");
            // Past the directory's last block: a bitmap's blocks.
            let last_block_end = section.offset + (end - section.offset).div_ceil(4096) * 4096;
            let beyond: Vec<_> = ranges
                .iter()
                .filter(|&&(_, e)| e > last_block_end)
                .collect();
            match dict.find(term.as_bytes()) {
                // A term of one record is inline: no bitmap to read.
                Some(i) if dict.inline_ordinal(i).is_some() => {
                    assert!(beyond.is_empty(), "{term}: {beyond:?}");
                }
                Some(i) => {
                    let bitmap = dict.bitmap_bytes(i).unwrap();
                    let at = bitmap.as_ptr() as u64 - bytes.as_ptr() as u64;
                    assert!(
                        ranges
                            .iter()
                            .any(|&(s, e)| s <= at && at + bitmap.len() as u64 <= e),
                        "{term}: {ranges:?}"
                    );
                    if at >= last_block_end {
                        assert!(!beyond.is_empty(), "{term}");
                    }
                }
                None => assert!(beyond.is_empty(), "{term}: {beyond:?}"),
            }
            // The same blocks the checked lookup reads.
            let mut read = Vec::new();
            r.dict_term_checked(field, term.as_bytes(), &mut |block| {
                read.push(block);
                Ok(())
            })
            .unwrap();
            // Whole blocks of the section's 4 KiB grid.
            for &(s, e) in &ranges {
                assert_eq!((s - section.offset) % 4096, 0, "{term}");
                assert!(
                    (e - section.offset).is_multiple_of(4096) || e == section.offset + section.len,
                    "{term}"
                );
            }
            let mut named: Vec<u64> = ranges
                .iter()
                .flat_map(|&(s, e)| (s - section.offset) / 4096..=(e - 1 - section.offset) / 4096)
                .collect();
            named.push(0);
            named.sort_unstable();
            named.dedup();
            read.sort_unstable();
            read.dedup();
            assert_eq!(named, read, "{term}");
        }
        // Another field, or a damaged header: nothing, or a short range.
        assert_eq!(r.dict_directory(IndexField::Tenant), None);
        let mut none = Vec::new();
        r.dict_lookup_ranges(IndexField::Tenant, b"x", &mut none);
        assert!(none.is_empty());
        let mut damaged = bytes.clone();
        damaged[section.offset as usize] ^= 0xFF;
        let d = IndexReader::open(&damaged).unwrap();
        let (s, e) = d.dict_directory(field).unwrap();
        assert!(e - s <= 16, "{s}..{e}");
        d.dict_lookup_ranges(field, b"actor-0001", &mut none);
        assert!(none.is_empty());
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
}
