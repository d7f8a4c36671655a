//! Term dictionaries (kind 3), read in place: for one field, its distinct
//! terms, sorted bytewise, each with the ordinals of the records that have
//! it.
//!
//! A section is a header, a table of fixed-width term entries, the term
//! heap and the bitmap heap. A term with one record stores that ordinal in
//! its entry (*inline*); a term with more stores a roaring bitmap in the
//! heap, whose structure [`super::bitmap`] checks. The encoder is in
//! [`super::postings`].

use std::ops::{Bound, Range};

use roaring::RoaringBitmap;

use super::bitmap::{check_bitmap_shape, walk_canonical};

/// Whether [`TermDict::check`] walks every bitmap's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BitmapShapes {
    /// Every bitmap: structure, declared count, largest value.
    Checked,
    /// None: each is checked when [`TermDict::bitmap`] decodes it.
    Deferred,
}
use super::bytes::{Cursor, patch, sub, to_u64, u32_at};
use super::error::IndexError;
use super::field::IndexField;
use super::layout::{
    DICT_BITMAP_HEAP_LEN_AT, DICT_HEADER_LEN, DICT_RESERVED_AT, DICT_TERM_HEAP_LEN_AT,
    MAX_TERM_LEN, TERM_BITMAP_LEN_AT, TERM_BITMAP_OFFSET_AT, TERM_CARDINALITY_AT, TERM_ENTRY_LEN,
    TERM_LEN_AT,
};

/// One term entry of a dictionary, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawTerm {
    pub(super) term_offset: u32,
    pub(super) term_len: u32,
    pub(super) cardinality: u32,
    pub(super) bitmap_offset: u32,
    pub(super) bitmap_len: u32,
}

impl RawTerm {
    pub(super) fn encode(&self) -> [u8; TERM_ENTRY_LEN] {
        let mut out = [0u8; TERM_ENTRY_LEN];
        patch(&mut out, 0, &self.term_offset.to_le_bytes());
        patch(&mut out, TERM_LEN_AT, &self.term_len.to_le_bytes());
        patch(
            &mut out,
            TERM_CARDINALITY_AT,
            &self.cardinality.to_le_bytes(),
        );
        patch(
            &mut out,
            TERM_BITMAP_OFFSET_AT,
            &self.bitmap_offset.to_le_bytes(),
        );
        patch(&mut out, TERM_BITMAP_LEN_AT, &self.bitmap_len.to_le_bytes());
        out
    }

    #[inline]
    pub(super) fn decode(e: &[u8; TERM_ENTRY_LEN]) -> RawTerm {
        RawTerm {
            term_offset: u32_at(e, 0),
            term_len: u32_at(e, TERM_LEN_AT),
            cardinality: u32_at(e, TERM_CARDINALITY_AT),
            bitmap_offset: u32_at(e, TERM_BITMAP_OFFSET_AT),
            bitmap_len: u32_at(e, TERM_BITMAP_LEN_AT),
        }
    }
}

/// The term dictionary of one field, read in place.
///
/// Terms are unique and sorted bytewise (unsigned lexicographic order, a
/// proper prefix first); a term's position is its *index*. Lookups are
/// binary searches over the entry table and never allocate. A term with a
/// single record keeps that record's ordinal in its entry (see
/// [`inline_ordinal`](Self::inline_ordinal)) instead of a bitmap.
#[derive(Debug, Clone, Copy)]
pub struct TermDict<'a> {
    field: IndexField,
    record_count: u64,
    entries: &'a [[u8; TERM_ENTRY_LEN]],
    terms: &'a [u8],
    bitmaps: &'a [u8],
}

/// The parts of a dictionary section, as [`TermDict::split`] finds them.
struct DictParts<'a> {
    term_heap_len: u32,
    bitmap_heap_len: u32,
    reserved: u32,
    entries: &'a [[u8; TERM_ENTRY_LEN]],
    terms: &'a [u8],
    bitmaps: &'a [u8],
}

/// One term of a dictionary, as yielded by [`TermDict::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermEntry<'a> {
    /// Position of the term in the dictionary.
    pub index: usize,
    /// The term's bytes.
    pub term: &'a [u8],
    /// Number of records that have the term.
    pub cardinality: u64,
}

impl<'a> TermDict<'a> {
    /// Splits a dictionary section into its header words and its three
    /// parts, checking only that the header adds up to the section's length.
    fn split(data: &'a [u8]) -> Result<DictParts<'a>, String> {
        let Some((header, rest)) = data.split_first_chunk::<DICT_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than the {DICT_HEADER_LEN}-byte dictionary header",
                data.len()
            ));
        };
        let count = u32_at(header, 0);
        let term_heap_len = u32_at(header, DICT_TERM_HEAP_LEN_AT);
        let bitmap_heap_len = u32_at(header, DICT_BITMAP_HEAP_LEN_AT);
        let reserved = u32_at(header, DICT_RESERVED_AT);
        let entries_len = u64::from(count) * to_u64(TERM_ENTRY_LEN);
        let expected = to_u64(DICT_HEADER_LEN)
            + entries_len
            + u64::from(term_heap_len)
            + u64::from(bitmap_heap_len);
        if expected != to_u64(data.len()) {
            return Err(format!(
                "the section is {} bytes, but its header ({count} terms, {term_heap_len} term \
                 bytes, {bitmap_heap_len} bitmap bytes) adds up to {expected}",
                data.len()
            ));
        }
        let mut cursor = Cursor::new(rest);
        let (Some(entries), Some(terms), Some(bitmaps)) = (
            usize::try_from(entries_len)
                .ok()
                .and_then(|n| cursor.take(n)),
            cursor.take(term_heap_len as usize),
            cursor.take(bitmap_heap_len as usize),
        ) else {
            return Err("the section is shorter than its header says".to_owned());
        };
        let (entries, _) = entries.as_chunks::<TERM_ENTRY_LEN>();
        Ok(DictParts {
            term_heap_len,
            bitmap_heap_len,
            reserved,
            entries,
            terms,
            bitmaps,
        })
    }

    /// A view of a dictionary section, without checking it. If the header
    /// does not add up to the section's length, the view is empty.
    pub(super) fn view(data: &'a [u8], field: IndexField, record_count: u64) -> Self {
        let (entries, terms, bitmaps) = match Self::split(data) {
            Ok(parts) => (parts.entries, parts.terms, parts.bitmaps),
            Err(_) => (&[][..], &[][..], &[][..]),
        };
        TermDict {
            field,
            record_count,
            entries,
            terms,
            bitmaps,
        }
    }

    /// Checks a dictionary section (whose CRC has been checked); with
    /// [`BitmapShapes::Deferred`], everything but the bitmaps' structure.
    pub(super) fn check(
        data: &'a [u8],
        field: IndexField,
        record_count: u64,
        shapes: BitmapShapes,
    ) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadDictionary { field, reason };
        let DictParts {
            term_heap_len,
            bitmap_heap_len,
            reserved,
            entries,
            terms,
            bitmaps,
        } = Self::split(data).map_err(bad)?;
        if reserved != 0 {
            return Err(bad(format!("reserved header word is {reserved:#x}, not 0")));
        }

        // Entries must tile both heaps in order, and terms must increase.
        let entry_error = |index: usize, reason: &'static str| IndexError::BadTermEntry {
            field,
            index,
            reason,
        };
        let mut term_end = 0u64;
        let mut bitmap_end = 0u64;
        let mut previous: Option<&[u8]> = None;
        for (index, entry) in entries.iter().enumerate() {
            let e = RawTerm::decode(entry);
            if u64::from(e.term_offset) != term_end {
                return Err(entry_error(
                    index,
                    "term does not start where the previous one ends",
                ));
            }
            if e.term_len as usize > MAX_TERM_LEN {
                return Err(entry_error(index, "term is longer than 1024 bytes"));
            }
            let Some(term) = sub(terms, u64::from(e.term_offset), u64::from(e.term_len)) else {
                return Err(entry_error(index, "term extends past the term heap"));
            };
            if previous.is_some_and(|prev| prev >= term) {
                return Err(IndexError::UnsortedTerms { field, index });
            }
            previous = Some(term);
            term_end += u64::from(e.term_len);

            if e.bitmap_len == 0 {
                // Inline: `bitmap_offset` is the term's only ordinal.
                if e.cardinality != 1 {
                    return Err(entry_error(
                        index,
                        "an inline entry (bitmap length 0) must have cardinality 1",
                    ));
                }
                if u64::from(e.bitmap_offset) >= record_count {
                    return Err(IndexError::OrdinalOutOfRange {
                        field,
                        term_index: Some(index),
                        ordinal: u64::from(e.bitmap_offset),
                        record_count,
                    });
                }
                continue;
            }
            if u64::from(e.bitmap_offset) != bitmap_end {
                return Err(entry_error(
                    index,
                    "bitmap does not start where the previous one ends",
                ));
            }
            let Some(bitmap) = sub(bitmaps, u64::from(e.bitmap_offset), u64::from(e.bitmap_len))
            else {
                return Err(entry_error(index, "bitmap extends past the bitmap heap"));
            };
            if e.cardinality == 0 {
                return Err(entry_error(index, "cardinality is zero"));
            }
            if e.cardinality == 1 {
                return Err(entry_error(
                    index,
                    "a term with one record must be stored inline, not as a bitmap",
                ));
            }
            if u64::from(e.cardinality) > record_count {
                return Err(entry_error(
                    index,
                    "cardinality is larger than the segment's record count",
                ));
            }
            if shapes == BitmapShapes::Checked {
                check_bitmap_shape(bitmap, u64::from(e.cardinality), field, index, record_count)?;
            }
            bitmap_end += u64::from(e.bitmap_len);
        }
        if term_end != u64::from(term_heap_len) {
            return Err(bad(format!(
                "terms use {term_end} of the {term_heap_len} term heap bytes"
            )));
        }
        if bitmap_end != u64::from(bitmap_heap_len) {
            return Err(bad(format!(
                "bitmaps use {bitmap_end} of the {bitmap_heap_len} bitmap heap bytes"
            )));
        }
        Ok(())
    }

    /// Checks what a lookup through block checksums relies on in block
    /// `start..start + len` of a dictionary section (whose CRC the caller
    /// checked): in the block that holds the header, that it adds up to
    /// the section's length and its reserved word is zero.
    pub(super) fn check_block(
        data: &'a [u8],
        field: IndexField,
        start: u64,
    ) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadDictionary { field, reason };
        let parts = Self::split(data).map_err(bad)?;
        if start == 0 && parts.reserved != 0 {
            return Err(bad(format!(
                "reserved header word is {:#x}, not 0",
                parts.reserved
            )));
        }
        Ok(())
    }

    /// Section offsets of the entry table, the term heap and the bitmap
    /// heap.
    pub(super) fn part_offsets(&self) -> (u64, u64, u64) {
        let entries_at = to_u64(DICT_HEADER_LEN);
        let terms_at = entries_at + to_u64(self.entries.len() * TERM_ENTRY_LEN);
        (entries_at, terms_at, terms_at + to_u64(self.terms.len()))
    }

    /// The section byte ranges (start, end) of entry `index` and its term.
    fn entry_ranges(&self, index: usize, read: &mut dyn FnMut(u64, u64)) {
        let (entries_at, terms_at, _) = self.part_offsets();
        let Some(e) = self.entry(index) else {
            return;
        };
        let at = entries_at + to_u64(index * TERM_ENTRY_LEN);
        read(at, at + to_u64(TERM_ENTRY_LEN));
        let term_at = terms_at + u64::from(e.term_offset);
        read(term_at, term_at + u64::from(e.term_len));
    }

    /// [`find`](Self::find), telling `read` the section byte ranges (start,
    /// end) it reads: the entries and terms its binary search compares, and
    /// those of the term found with its bitmap. A caller that checks the
    /// blocks of those ranges has checked every byte the answer rests on.
    pub(super) fn find_reading(
        &self,
        term: &[u8],
        read: &mut dyn FnMut(u64, u64),
    ) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            self.entry_ranges(mid, read);
            if self.term(mid)? < term {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.entry_ranges(lo, read);
        if self.term(lo)? != term {
            return None;
        }
        let (_, _, bitmaps_at) = self.part_offsets();
        let e = self.entry(lo)?;
        if e.bitmap_len > 0 {
            let at = bitmaps_at + u64::from(e.bitmap_offset);
            read(at, at + u64::from(e.bitmap_len));
        }
        Some(lo)
    }

    /// Checks entry `index` on its own, as [`check`](Self::check) checks
    /// each entry except for how it follows the one before: its term and
    /// bitmap inside their heaps, its term length, and its cardinality
    /// against its storage (inline or bitmap) and the record count.
    pub(super) fn check_entry(&self, index: usize) -> Result<(), IndexError> {
        let field = self.field;
        let entry_error = |reason: &'static str| IndexError::BadTermEntry {
            field,
            index,
            reason,
        };
        let Some(e) = self.entry(index) else {
            return Err(IndexError::TermIndexOutOfRange {
                field,
                index,
                len: self.len(),
            });
        };
        if e.term_len as usize > MAX_TERM_LEN {
            return Err(entry_error("term is longer than 1024 bytes"));
        }
        if sub(self.terms, u64::from(e.term_offset), u64::from(e.term_len)).is_none() {
            return Err(entry_error("term extends past the term heap"));
        }
        if e.bitmap_len == 0 {
            if e.cardinality != 1 {
                return Err(entry_error(
                    "an inline entry (bitmap length 0) must have cardinality 1",
                ));
            }
            if u64::from(e.bitmap_offset) >= self.record_count {
                return Err(IndexError::OrdinalOutOfRange {
                    field,
                    term_index: Some(index),
                    ordinal: u64::from(e.bitmap_offset),
                    record_count: self.record_count,
                });
            }
            return Ok(());
        }
        if sub(
            self.bitmaps,
            u64::from(e.bitmap_offset),
            u64::from(e.bitmap_len),
        )
        .is_none()
        {
            return Err(entry_error("bitmap extends past the bitmap heap"));
        }
        if e.cardinality < 2 {
            return Err(entry_error(
                "a term stored as a bitmap must have a cardinality of at least 2",
            ));
        }
        if u64::from(e.cardinality) > self.record_count {
            return Err(entry_error(
                "cardinality is larger than the segment's record count",
            ));
        }
        Ok(())
    }

    /// The field this dictionary indexes.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of distinct terms.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no record has the field.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn entry(&self, index: usize) -> Option<RawTerm> {
        self.entries.get(index).map(RawTerm::decode)
    }

    #[inline]
    fn term_of(&self, entry: &[u8; TERM_ENTRY_LEN]) -> &'a [u8] {
        let e = RawTerm::decode(entry);
        let start = e.term_offset as usize;
        // A checked section has every term inside the heap; in an unchecked
        // one, a term outside it reads as empty.
        self.terms
            .get(start..start.saturating_add(e.term_len as usize))
            .unwrap_or_default()
    }

    /// The term at `index`.
    #[inline]
    pub fn term(&self, index: usize) -> Option<&'a [u8]> {
        self.entries.get(index).map(|entry| self.term_of(entry))
    }

    /// Number of records that have the term at `index`.
    ///
    /// Read from the entry, without decoding the bitmap, so that a query
    /// planner can start with the rarest term.
    #[inline]
    pub fn cardinality(&self, index: usize) -> Option<u64> {
        self.entry(index).map(|e| u64::from(e.cardinality))
    }

    /// Index of the first term `>= key`.
    fn lower_bound(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|e| self.term_of(e) < key)
    }

    /// Index of the first term `> key`.
    fn upper_bound(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|e| self.term_of(e) <= key)
    }

    /// Index of `term`, if present.
    pub fn find(&self, term: &[u8]) -> Option<usize> {
        let index = self.lower_bound(term);
        (self.term(index)? == term).then_some(index)
    }

    /// Indexes of the terms that start with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> Range<usize> {
        let start = self.lower_bound(prefix);
        let tail = self.entries.get(start..).unwrap_or_default();
        let matching = tail.partition_point(|e| self.term_of(e).starts_with(prefix));
        start..start + matching
    }

    /// Indexes of the terms between `lower` and `upper`.
    pub fn range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Range<usize> {
        let start = match lower {
            Bound::Included(key) => self.lower_bound(key),
            Bound::Excluded(key) => self.upper_bound(key),
            Bound::Unbounded => 0,
        };
        let end = match upper {
            Bound::Included(key) => self.upper_bound(key),
            Bound::Excluded(key) => self.lower_bound(key),
            Bound::Unbounded => self.len(),
        };
        start..end.max(start)
    }

    /// The serialized bitmap of the term at `index` (roaring portable
    /// format), as stored and unchecked; empty for a term stored inline.
    pub fn bitmap_bytes(&self, index: usize) -> Option<&'a [u8]> {
        let e = self.entry(index)?;
        if e.bitmap_len == 0 {
            return Some(&[]);
        }
        sub(
            self.bitmaps,
            u64::from(e.bitmap_offset),
            u64::from(e.bitmap_len),
        )
    }

    /// The only ordinal of the term at `index`, if the term has a single
    /// record (such terms are stored inline, without a bitmap).
    ///
    /// Unchecked: in a section that
    /// [`IndexReader::check_section`](super::IndexReader::check_section) has not
    /// passed, the ordinal may be past the segment.
    #[inline]
    pub fn inline_ordinal(&self, index: usize) -> Option<u32> {
        let e = self.entry(index)?;
        (e.bitmap_len == 0).then_some(e.bitmap_offset)
    }

    /// Decodes the bitmap of the term at `index`: the ordinals of the
    /// records that have the term.
    ///
    /// Fails if the bitmap is malformed, if its cardinality differs from
    /// the entry's, or if it holds an ordinal past the segment.
    pub fn bitmap(&self, index: usize) -> Result<RoaringBitmap, IndexError> {
        let field = self.field;
        let (Some(e), Some(bytes)) = (self.entry(index), self.bitmap_bytes(index)) else {
            return Err(IndexError::TermIndexOutOfRange {
                field,
                index,
                len: self.len(),
            });
        };
        let bad = |reason: String| self.bad_bitmap(index, reason);
        let out_of_range = |ordinal: u64| self.out_of_range(index, ordinal);
        if let Some(ordinal) = self.inline_ordinal_of(index, &e)? {
            let mut bitmap = RoaringBitmap::new();
            bitmap.insert(ordinal);
            return Ok(bitmap);
        }
        let cardinality = u64::from(e.cardinality);
        // Walk the structure first, so that roaring only ever allocates
        // for containers whose bytes are really there.
        check_bitmap_shape(bytes, cardinality, field, index, self.record_count)?;
        let bitmap = RoaringBitmap::deserialize_from(bytes).map_err(|e| bad(e.to_string()))?;
        if bitmap.len() != cardinality {
            return Err(bad(format!(
                "it holds {} ordinals, the term entry says {cardinality}",
                bitmap.len()
            )));
        }
        if let Some(max) = bitmap.max()
            && u64::from(max) >= self.record_count
        {
            return Err(out_of_range(u64::from(max)));
        }
        Ok(bitmap)
    }

    /// The ordinal of entry `e` (of the term at `index`) if it is inline,
    /// `None` if it has a bitmap; fails if it breaks the rules of either
    /// (an inline entry is one record of the segment, a bitmap at least
    /// two).
    fn inline_ordinal_of(&self, index: usize, e: &RawTerm) -> Result<Option<u32>, IndexError> {
        let bad = |reason: String| self.bad_bitmap(index, reason);
        if e.bitmap_len != 0 {
            return match e.cardinality {
                1 => Err(bad(
                    "a bitmap of one record is not canonical (it must be stored inline)".to_owned(),
                )),
                _ => Ok(None),
            };
        }
        if e.cardinality != 1 {
            return Err(bad(format!(
                "the term is stored inline, which means one record, but its entry says {}",
                e.cardinality
            )));
        }
        if u64::from(e.bitmap_offset) >= self.record_count {
            return Err(self.out_of_range(index, u64::from(e.bitmap_offset)));
        }
        Ok(Some(e.bitmap_offset))
    }

    /// The error of a malformed bitmap of the term at `index`.
    fn bad_bitmap(&self, index: usize, reason: String) -> IndexError {
        IndexError::BadBitmap {
            field: self.field,
            term_index: index,
            reason,
        }
    }

    /// The error of an ordinal past the segment in the term at `index`.
    fn out_of_range(&self, index: usize, ordinal: u64) -> IndexError {
        IndexError::OrdinalOutOfRange {
            field: self.field,
            term_index: Some(index),
            ordinal,
            record_count: self.record_count,
        }
    }

    /// Calls `f` with the ordinals of the term at `index`, in increasing
    /// order, and checks that the term's bytes are exactly the encoding the
    /// writer gives them: one ordinal inline in the entry, or a bitmap in
    /// canonical form (`docs/format.md`, "Term bitmaps") that holds as many
    /// ordinals as the entry's cardinality, all below the segment's record
    /// count. The canonical form depends only on the ordinals, so a section
    /// that passes [`IndexReader::check_section`](super::IndexReader::check_section)
    /// and this for every term, and whose terms and their ordinals equal
    /// another such section's, has the same bytes as it.
    ///
    /// Does not allocate (except for the message of an error), unlike
    /// [`bitmap`](Self::bitmap), which decodes into a [`RoaringBitmap`].
    ///
    /// Fails if `index` is past the last term, if the entry or its bitmap
    /// is malformed or not canonical, if the count differs from the entry's
    /// cardinality, or if an ordinal is past the segment. `f` is never
    /// called with an ordinal past the segment, but on an error it may
    /// already have been called with some of the term's ordinals.
    pub fn for_each_ordinal_canonical(
        &self,
        index: usize,
        mut f: impl FnMut(u32),
    ) -> Result<(), IndexError> {
        let (field, record_count) = (self.field, self.record_count);
        let Some(e) = self.entry(index) else {
            return Err(IndexError::TermIndexOutOfRange {
                field,
                index,
                len: self.len(),
            });
        };
        let bad = |reason: String| self.bad_bitmap(index, reason);
        if let Some(ordinal) = self.inline_ordinal_of(index, &e)? {
            f(ordinal);
            return Ok(());
        }
        let Some(bytes) = self.bitmap_bytes(index) else {
            return Err(IndexError::BadTermEntry {
                field,
                index,
                reason: "bitmap extends past the bitmap heap",
            });
        };
        // The values increase, so once one is past the segment all that
        // follow are: the last one seen is the largest, as the section
        // check reports it.
        let mut past = None;
        let count = walk_canonical(bytes, |ordinal| {
            if u64::from(ordinal) < record_count {
                f(ordinal);
            } else {
                past = Some(ordinal);
            }
        })
        .map_err(|reason| bad(reason.to_owned()))?;
        if count != u64::from(e.cardinality) {
            return Err(bad(format!(
                "its containers hold {count} ordinals, the term entry says {}",
                e.cardinality
            )));
        }
        if let Some(ordinal) = past {
            return Err(self.out_of_range(index, u64::from(ordinal)));
        }
        Ok(())
    }

    /// The union of the bitmaps of the terms at `indexes` (for example a
    /// [`prefix`](Self::prefix) or [`range`](Self::range) result).
    pub fn union(&self, indexes: Range<usize>) -> Result<RoaringBitmap, IndexError> {
        let mut result = RoaringBitmap::new();
        for index in indexes {
            match self.entry(index) {
                // A valid inline entry: no bitmap to build.
                Some(e)
                    if e.bitmap_len == 0
                        && e.cardinality == 1
                        && u64::from(e.bitmap_offset) < self.record_count =>
                {
                    result.insert(e.bitmap_offset);
                }
                _ => result |= self.bitmap(index)?,
            }
        }
        Ok(result)
    }

    /// The terms, in order.
    pub fn iter(&self) -> Terms<'a> {
        self.iter_range(0..self.len())
    }

    /// The terms at `indexes`, in order.
    pub fn iter_range(&self, indexes: Range<usize>) -> Terms<'a> {
        let end = indexes.end.min(self.len());
        Terms {
            dict: *self,
            indexes: indexes.start.min(end)..end,
        }
    }
}

impl<'a> IntoIterator for &TermDict<'a> {
    type Item = TermEntry<'a>;
    type IntoIter = Terms<'a>;

    fn into_iter(self) -> Terms<'a> {
        self.iter()
    }
}

/// Iterator over the terms of a [`TermDict`].
#[derive(Debug, Clone)]
pub struct Terms<'a> {
    dict: TermDict<'a>,
    indexes: Range<usize>,
}

impl<'a> Terms<'a> {
    fn at(&self, index: usize) -> Option<TermEntry<'a>> {
        Some(TermEntry {
            index,
            term: self.dict.term(index)?,
            cardinality: self.dict.cardinality(index)?,
        })
    }
}

impl<'a> Iterator for Terms<'a> {
    type Item = TermEntry<'a>;

    fn next(&mut self) -> Option<TermEntry<'a>> {
        let index = self.indexes.next()?;
        self.at(index)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indexes.size_hint()
    }
}

impl DoubleEndedIterator for Terms<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let index = self.indexes.next_back()?;
        self.at(index)
    }
}

impl ExactSizeIterator for Terms<'_> {}

#[cfg(test)]
mod tests {
    use crate::index::testing::*;
    use crate::index::*;

    #[test]
    fn dictionary_rules() {
        let one = |o| Stored::Inline(o);
        let two = || Stored::Roaring(serialized([1, 2]));
        let check_dict = |dict: Vec<u8>| -> Result<(), IndexError> {
            let bytes = file_with_dict(4, dict);
            let r = IndexReader::open(&bytes)?;
            exercise_unchecked(&r);
            let checked = r.check_section(2);
            assert_eq!(checked.is_ok(), IndexReader::parse(&bytes).is_ok());
            checked
        };
        let unsorted = raw_dict(&[(b"b", 1, one(1)), (b"a", 1, one(1))]);
        assert!(matches!(
            check_dict(unsorted),
            Err(IndexError::UnsortedTerms { index: 1, .. })
        ));
        let duplicate = raw_dict(&[(b"a", 2, two()), (b"a", 1, one(0))]);
        assert!(matches!(
            check_dict(duplicate),
            Err(IndexError::UnsortedTerms { index: 1, .. })
        ));
        let zero = raw_dict(&[(b"a", 0, two())]);
        assert!(matches!(
            check_dict(zero),
            Err(IndexError::BadTermEntry { index: 0, .. })
        ));
        let too_many = raw_dict(&[(b"a", 5, two())]);
        assert!(matches!(
            check_dict(too_many),
            Err(IndexError::BadTermEntry { .. })
        ));
        let long = vec![b'x'; MAX_TERM_LEN + 1];
        assert!(matches!(
            check_dict(raw_dict(&[(&long, 1, one(0))])),
            Err(IndexError::BadTermEntry { .. })
        ));
        let mut reserved = raw_dict(&[]);
        reserved[12] = 1;
        assert!(matches!(
            check_dict(reserved),
            Err(IndexError::BadDictionary { .. })
        ));
        let mut longer = raw_dict(&[(b"a", 1, one(0))]);
        longer.push(0);
        assert!(matches!(
            check_dict(longer),
            Err(IndexError::BadDictionary { .. })
        ));
        assert!(matches!(
            check_dict(vec![0; 10]),
            Err(IndexError::BadDictionary { .. })
        ));
        // Entries that do not tile the bitmap heap.
        let mut overlapping = raw_dict(&[(b"a", 2, two()), (b"b", 2, two())]);
        overlapping[16 + 20 + 12..16 + 20 + 16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            check_dict(overlapping),
            Err(IndexError::BadTermEntry { index: 1, .. })
        ));
        // Inline entries take no heap bytes, wherever they are.
        check_dict(raw_dict(&[
            (b"a", 1, one(3)),
            (b"b", 2, two()),
            (b"c", 1, one(0)),
            (b"d", 2, Stored::Roaring(serialized([0, 3]))),
        ]))
        .unwrap();
    }

    #[test]
    fn single_records_are_inline_and_only_inline() {
        // The encoder stores a one-record term inline, even if the record
        // was added twice.
        let mut m = Model::new(vec![0; 5]);
        m.add(IndexField::Actor, b"solo", [3]);
        m.add(IndexField::Actor, b"pair", [1, 4]);
        let mut b = m.builder();
        b.add_term(IndexField::Actor, b"solo", 3).unwrap();
        let bytes = b.encode().unwrap();
        assert_eq!(bytes, m.encode());
        let r = IndexReader::parse(&bytes).unwrap();
        let d = r.field(IndexField::Actor).unwrap();
        let solo = d.find(b"solo").unwrap();
        assert_eq!(d.inline_ordinal(solo), Some(3));
        assert_eq!(d.cardinality(solo), Some(1));
        assert_eq!(d.bitmap(solo).unwrap().iter().collect::<Vec<_>>(), [3]);
        assert_eq!(d.inline_ordinal(d.find(b"pair").unwrap()), None);

        let decode = |card: u32, stored: Stored| {
            let bytes = file_with_dict(4, raw_dict(&[(b"t", card, stored)]));
            let r = IndexReader::open(&bytes).unwrap();
            let check = r.check_section(2);
            let bitmap = r.field(IndexField::Actor).unwrap().bitmap(0);
            (check, bitmap)
        };
        // A one-record bitmap is not canonical: refused by the check and by
        // the decoder.
        let (check, bitmap) = decode(1, Stored::Roaring(serialized([2])));
        assert!(matches!(
            check,
            Err(IndexError::BadTermEntry { index: 0, .. })
        ));
        assert!(matches!(bitmap, Err(IndexError::BadBitmap { .. })));
        // An inline entry means one record.
        let (check, bitmap) = decode(2, Stored::Inline(2));
        assert!(matches!(
            check,
            Err(IndexError::BadTermEntry { index: 0, .. })
        ));
        assert!(matches!(bitmap, Err(IndexError::BadBitmap { .. })));
        // An inline ordinal past the segment.
        let (check, bitmap) = decode(1, Stored::Inline(4));
        assert!(matches!(
            check,
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 4,
                term_index: Some(0),
                ..
            })
        ));
        assert!(matches!(
            bitmap,
            Err(IndexError::OrdinalOutOfRange { ordinal: 4, .. })
        ));
        let (check, bitmap) = decode(1, Stored::Inline(3));
        check.unwrap();
        assert_eq!(bitmap.unwrap().iter().collect::<Vec<_>>(), [3]);
    }
}
