//! The postings of a term dictionary while a sidecar is built, and their
//! canonical encoding as a dictionary section (kind 3).
//!
//! Terms may be added in any order and any number of times; the section
//! depends only on the content: terms sorted bytewise, heaps tiled in
//! order, a term of one record stored inline, and every other term's
//! ordinals as a bitmap in canonical form (built from sorted values, then
//! run-optimized). The reader is [`super::dictionary`].

use std::collections::HashMap;

use roaring::RoaringBitmap;

use super::bytes::{fit_u32, patch};
use super::dictionary::RawTerm;
use super::error::IndexError;
use super::field::IndexField;
use super::layout::{
    DICT_BITMAP_HEAP_LEN_AT, DICT_HEADER_LEN, DICT_RESERVED_AT, DICT_TERM_HEAP_LEN_AT,
    MAX_TERM_LEN, TERM_ENTRY_LEN,
};

/// Checks that `term` fits in a dictionary.
pub(super) fn check_term(field: IndexField, term: &[u8]) -> Result<(), IndexError> {
    if term.len() > MAX_TERM_LEN {
        return Err(IndexError::TermTooLong {
            field,
            len: term.len(),
            max: MAX_TERM_LEN,
        });
    }
    Ok(())
}

/// The terms of one field while building: each distinct term gets an id,
/// and every (term, record) pair is appended as `(id, ordinal)`.
/// Bitmaps are only built, already sorted, by [`encode`](Postings::encode).
#[derive(Debug, Clone, Default)]
pub(super) struct Postings {
    ids: HashMap<Box<[u8]>, u32>,
    pairs: Vec<(u32, u32)>,
}

impl Postings {
    /// The id of `term`, allocated on first use.
    fn id(&mut self, term: &[u8]) -> Result<u32, IndexError> {
        if let Some(&id) = self.ids.get(term) {
            return Ok(id);
        }
        let id = fit_u32("term count", self.ids.len())?;
        self.ids.insert(term.into(), id);
        Ok(id)
    }

    /// Records that the record `ordinal` has `term`.
    pub(super) fn add(&mut self, term: &[u8], ordinal: u32) -> Result<(), IndexError> {
        let id = self.id(term)?;
        self.pairs.push((id, ordinal));
        Ok(())
    }

    /// Records that every record in `ordinals` has `term`; an empty
    /// `ordinals` adds nothing, not even the term.
    pub(super) fn add_bitmap(
        &mut self,
        term: &[u8],
        ordinals: &RoaringBitmap,
    ) -> Result<(), IndexError> {
        if ordinals.is_empty() {
            return Ok(());
        }
        let id = self.id(term)?;
        self.pairs
            .extend(ordinals.iter().map(|ordinal| (id, ordinal)));
        Ok(())
    }

    /// Records each `(id, ordinal)` pair of `pairs`, where `id` is the
    /// position of a term in `terms`.
    pub(super) fn add_pairs(
        &mut self,
        terms: &[&[u8]],
        pairs: &[(u32, u32)],
    ) -> Result<(), IndexError> {
        let mut ids = Vec::with_capacity(terms.len());
        for term in terms {
            ids.push(self.id(term)?);
        }
        self.pairs.reserve(pairs.len());
        for &(id, ordinal) in pairs {
            let Some(&mapped) = usize::try_from(id).ok().and_then(|i| ids.get(i)) else {
                return Err(IndexError::TooLarge {
                    what: "term id",
                    value: u64::from(id),
                    limit: terms.len() as u64,
                });
            };
            self.pairs.push((mapped, ordinal));
        }
        Ok(())
    }

    /// Appends the dictionary section of `field` holding these postings to
    /// `out`.
    pub(super) fn encode(&self, out: &mut Vec<u8>, field: IndexField) -> Result<(), IndexError> {
        let postings = self;
        // Terms in bytewise order; `rank[id]` is a term's position.
        let mut sorted: Vec<(&[u8], u32)> = postings
            .ids
            .iter()
            .map(|(term, &id)| (&**term, id))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut rank = vec![0u32; sorted.len()];
        for (position, &(_, id)) in sorted.iter().enumerate() {
            if let Some(slot) = rank.get_mut(id as usize) {
                *slot = fit_u32("term count", position)?;
            }
        }

        // Bucket the ordinals by term rank (a counting sort): `ordinals` then
        // holds each term's ordinals in `starts[r]..starts[r + 1]`.
        let mut starts = vec![0usize; sorted.len() + 1];
        for &(id, _) in &postings.pairs {
            let r = rank.get(id as usize).copied().unwrap_or(0) as usize;
            if let Some(count) = starts.get_mut(r + 1) {
                *count += 1;
            }
        }
        let mut total = 0;
        for start in &mut starts {
            total += *start;
            *start = total;
        }
        let mut next = starts.clone();
        let mut ordinals = vec![0u32; postings.pairs.len()];
        for &(id, ordinal) in &postings.pairs {
            let r = rank.get(id as usize).copied().unwrap_or(0) as usize;
            if let Some(at) = next.get_mut(r) {
                if let Some(slot) = ordinals.get_mut(*at) {
                    *slot = ordinal;
                }
                *at += 1;
            }
        }

        let count = fit_u32("term count", sorted.len())?;
        let term_heap_len: usize = sorted.iter().map(|(term, _)| term.len()).sum();
        let term_heap_len_u32 = fit_u32("term heap size", term_heap_len)?;

        let start = out.len();
        let entries_start = start + DICT_HEADER_LEN;
        let heap_start = entries_start + sorted.len() * TERM_ENTRY_LEN;
        out.resize(heap_start, 0);
        out.reserve(term_heap_len);
        for (term, _) in &sorted {
            out.extend_from_slice(term);
        }

        let bitmaps_start = out.len();
        let mut entries = Vec::with_capacity(sorted.len());
        let mut term_offset = 0u32;
        for (r, &(term, _)) in sorted.iter().enumerate() {
            let range =
                starts.get(r).copied().unwrap_or(0)..starts.get(r + 1).copied().unwrap_or(0);
            let values = ordinals.get_mut(range).unwrap_or_default();
            if !values.is_sorted() {
                values.sort_unstable();
            }
            let term_len = fit_u32("term length", term.len())?;
            if let (Some(&first), Some(&last)) = (values.first(), values.last())
                && first == last
            {
                // One record (perhaps added more than once): stored inline.
                entries.push(RawTerm {
                    term_offset,
                    term_len,
                    cardinality: 1,
                    bitmap_offset: first,
                    bitmap_len: 0,
                });
                term_offset += term_len;
                continue;
            }
            // Canonical form: built by appending sorted values (array and
            // bitset containers only), then `optimize` picks each container's
            // smallest representation from its content alone.
            //
            // `from_sorted_iter` appends without looking for the bitmap's
            // maximum at each value (`try_push` does, which in a bitset
            // container is a scan of up to 1,024 words: ~90 ns a value for
            // a term most records have). Duplicates (the same record added
            // twice) are skipped first: the values must strictly increase.
            let mut last = None;
            let distinct = values
                .iter()
                .copied()
                .filter(|&v| last.replace(v) != Some(v));
            // (They do: sorted above. Were they not, collecting inserts
            // each value wherever it goes, to the same set.)
            let mut bitmap = RoaringBitmap::from_sorted_iter(distinct)
                .unwrap_or_else(|_| values.iter().copied().collect());
            bitmap.optimize();
            let bitmap_offset = out.len() - bitmaps_start;
            bitmap
                .serialize_into(&mut *out)
                .map_err(|source| IndexError::BitmapSerialize { field, source })?;
            let bitmap_len = out.len() - bitmaps_start - bitmap_offset;
            entries.push(RawTerm {
                term_offset,
                term_len,
                cardinality: u32::try_from(bitmap.len()).unwrap_or(u32::MAX),
                bitmap_offset: fit_u32("bitmap heap size", bitmap_offset)?,
                bitmap_len: fit_u32("bitmap size", bitmap_len)?,
            });
            term_offset += term_len;
        }
        let bitmap_heap_len = fit_u32("bitmap heap size", out.len() - bitmaps_start)?;

        let mut header = [0u8; DICT_HEADER_LEN];
        patch(&mut header, 0, &count.to_le_bytes());
        patch(
            &mut header,
            DICT_TERM_HEAP_LEN_AT,
            &term_heap_len_u32.to_le_bytes(),
        );
        patch(
            &mut header,
            DICT_BITMAP_HEAP_LEN_AT,
            &bitmap_heap_len.to_le_bytes(),
        );
        patch(&mut header, DICT_RESERVED_AT, &0u32.to_le_bytes());
        patch(out, start, &header);
        for (i, entry) in entries.iter().enumerate() {
            patch(out, entries_start + i * TERM_ENTRY_LEN, &entry.encode());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;

    #[test]
    fn a_term_gets_one_id_however_often_it_is_added() {
        let mut postings = Postings::default();
        postings.add(b"b", 3).unwrap();
        postings.add(b"a", 1).unwrap();
        postings.add(b"b", 3).unwrap();
        postings.add_bitmap(b"c", &RoaringBitmap::new()).unwrap();
        postings
            .add_bitmap(b"a", &[0, 2].into_iter().collect())
            .unwrap();
        postings
            .add_pairs(&[&b"a"[..], &b"b"[..]], &[(1, 4), (0, 5)])
            .unwrap();
        assert_eq!(postings.ids.len(), 2);
        let (a, b) = (postings.ids[&b"a"[..]], postings.ids[&b"b"[..]]);
        assert_eq!((a, b), (1, 0));
        assert_eq!(
            postings.pairs,
            [(b, 3), (a, 1), (b, 3), (a, 0), (a, 2), (b, 4), (a, 5)]
        );
        let mut section = Vec::new();
        postings.encode(&mut section, IndexField::Actor).unwrap();
        // Two terms, sorted: `a` with {0, 1, 2, 5}, `b` with {3, 4}.
        assert_eq!(u32::from_le_bytes(section[..4].try_into().unwrap()), 2);
        assert_eq!(&section[DICT_HEADER_LEN + 2 * TERM_ENTRY_LEN..][..2], b"ab");
    }

    #[test]
    fn a_dense_term_holds_exactly_its_records_added_in_any_order_and_twice() {
        // Every other record of 20,000 (bitset containers), added from the
        // end, some twice; and a term of a few records added twice.
        let n = 20_000u32;
        let mut b = IndexBuilder::new(identity(u64::from(n)));
        b.set_columns((0..n).map(|i| 16 + i * 100).collect(), vec![0; n as usize])
            .unwrap();
        for o in (0..n).step_by(2).rev().chain([4, 4_000, 19_998]) {
            b.add_term(IndexField::Outcome, b"success", o).unwrap();
        }
        for o in [7, 3, 7, 3] {
            b.add_term(IndexField::Outcome, b"denied", o).unwrap();
        }
        let bytes = b.encode().unwrap();
        let r = IndexReader::parse(&bytes).unwrap();
        let dict = r.field(IndexField::Outcome).unwrap();
        let success = dict.bitmap(dict.find(b"success").unwrap()).unwrap();
        assert!(success.iter().eq((0..n).step_by(2)));
        let denied = dict.bitmap(dict.find(b"denied").unwrap()).unwrap();
        assert!(denied.iter().eq([3, 7]));
    }

    #[test]
    fn bitmaps_are_run_optimized_and_canonical() {
        // {5, 6, 7} is as small as an array as it is as one run: the
        // encoding must not depend on how the bitmap was built.
        let mut by_term = Model::new(vec![0; 10]);
        by_term.add(IndexField::Action, b"x", [5, 6, 7]);
        let mut b = IndexBuilder::new(by_term.identity);
        b.set_columns(by_term.offsets.clone(), by_term.times.clone())
            .unwrap();
        let mut ranged = RoaringBitmap::new();
        ranged.insert_range(5..=7);
        b.insert_bitmap(IndexField::Action, b"x", &ranged).unwrap();
        assert_eq!(b.encode().unwrap(), by_term.encode());

        // A long range is stored as a run container.
        let mut m = Model::new(vec![0; 1000]);
        m.add(IndexField::Outcome, b"ok", 0..1000);
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let raw = r
            .field(IndexField::Outcome)
            .unwrap()
            .bitmap_bytes(0)
            .unwrap();
        assert_eq!(u16::from_le_bytes([raw[0], raw[1]]), 12347, "run cookie");
        assert!(raw.len() < 20);
    }
}
