//! Term filters (kind 8): the sorted 32-bit hashes of the terms of one
//! term dictionary, so that a lookup of a term the dictionary lacks (the
//! common case of a search over many segments for a rare value) reads a
//! few cache lines of a small section instead of checking the whole
//! dictionary, bitmaps included.
//!
//! A filter answers "absent" or "perhaps": two terms can share a hash, so
//! a term whose hash is present is looked up in the dictionary. A filter
//! that is malformed answers "perhaps" for every term.

use super::bytes::{to_u64, u32_at};
use super::error::IndexError;
use super::field::IndexField;
use super::hashed::term_key;
use super::layout::{FILTER_HASH_LEN, FILTER_HEADER_LEN, FILTER_RESERVED_AT};

/// The hash of `term` in a term filter: the high 32 bits of its FNV-1a 64
/// hash ([`term_key`]).
pub const fn filter_hash(term: &[u8]) -> u32 {
    (term_key(term) >> 32) as u32
}

/// Appends the filter section of `terms` to `out`: their hashes, sorted
/// and without duplicates.
pub(super) fn encode_filter<'t>(out: &mut Vec<u8>, terms: impl Iterator<Item = &'t [u8]>) {
    let mut hashes: Vec<u32> = terms.map(filter_hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let count = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
    out.reserve(FILTER_HEADER_LEN + hashes.len() * FILTER_HASH_LEN);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for hash in hashes {
        out.extend_from_slice(&hash.to_le_bytes());
    }
}

/// The term filter of one dictionary, read in place.
#[derive(Debug, Clone, Copy)]
pub struct TermFilter<'a> {
    field: IndexField,
    /// `None` if the section's header does not add up to its length.
    hashes: Option<&'a [[u8; FILTER_HASH_LEN]]>,
}

impl<'a> TermFilter<'a> {
    /// Splits a filter section, checking only that its header adds up.
    fn split(data: &'a [u8]) -> Result<(u32, &'a [[u8; FILTER_HASH_LEN]]), String> {
        let Some((header, rest)) = data.split_first_chunk::<FILTER_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than its {FILTER_HEADER_LEN}-byte header",
                data.len()
            ));
        };
        let count = u32_at(header, 0);
        let reserved = u32_at(header, FILTER_RESERVED_AT);
        let expected = u64::from(count) * to_u64(FILTER_HASH_LEN);
        if expected != to_u64(rest.len()) {
            return Err(format!(
                "the header says {count} hashes ({expected} bytes), the section holds {}",
                rest.len()
            ));
        }
        Ok((reserved, rest.as_chunks().0))
    }

    /// A view of a filter section, without checking it.
    pub(super) fn view(data: &'a [u8], field: IndexField) -> Self {
        TermFilter {
            field,
            hashes: Self::split(data).ok().map(|(_, hashes)| hashes),
        }
    }

    /// Checks a filter section (whose CRC has been checked): its header
    /// adds up, its reserved word is zero, its hashes strictly increase.
    pub(super) fn check(data: &'a [u8], field: IndexField) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadTermFilter { field, reason };
        let (reserved, hashes) = Self::split(data).map_err(bad)?;
        if reserved != 0 {
            return Err(bad(format!("reserved header word is {reserved:#x}, not 0")));
        }
        let mut previous: Option<u32> = None;
        for (i, hash) in hashes.iter().enumerate() {
            let hash = u32::from_le_bytes(*hash);
            if previous.is_some_and(|p| p >= hash) {
                return Err(bad(format!(
                    "hash #{i} does not sort strictly after hash #{}",
                    i - 1
                )));
            }
            previous = Some(hash);
        }
        Ok(())
    }

    /// The dictionary's field.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of hashes held (0 for a malformed section).
    pub fn len(&self) -> usize {
        self.hashes.map_or(0, <[_]>::len)
    }

    /// Whether the filter holds no hash.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `false` if the dictionary certainly lacks `term`; `true` if it may
    /// have it (always, for a malformed section). Sound only for a section
    /// that passed its check.
    pub fn may_contain(&self, term: &[u8]) -> bool {
        let Some(hashes) = self.hashes else {
            return true;
        };
        let hash = filter_hash(term);
        hashes
            .binary_search_by_key(&hash, |h| u32::from_le_bytes(*h))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use crate::index::testing::*;
    use crate::index::*;

    /// A sidecar of `n` records whose actor dictionary has `actors` terms.
    fn built(n: u32, actors: u32, filters: bool) -> Vec<u8> {
        let mut b = IndexBuilder::new(identity(u64::from(n)));
        b.set_columns((0..n).map(|i| i * 7).collect(), vec![0; n as usize])
            .unwrap();
        b.set_term_filters(filters);
        b.add_field(IndexField::Actor);
        b.add_field(IndexField::Outcome);
        for i in 0..n {
            b.add_term(IndexField::Actor, format!("u{}", i % actors).as_bytes(), i)
                .unwrap();
            b.add_term(IndexField::Outcome, b"success", i).unwrap();
        }
        b.encode().unwrap()
    }

    #[test]
    fn the_filter_hash_is_the_high_half_of_the_term_key() {
        assert_eq!(filter_hash(b"a"), 0xaf63_dc4c, "docs/format.md");
        assert_eq!(filter_hash(b""), 0xcbf2_9ce4);
    }

    #[test]
    fn a_filter_lists_every_term_of_a_large_dictionary_and_few_others() {
        let bytes = built(2_000, 700, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let at = r.term_filter_section(IndexField::Actor).expect("a filter");
        assert_eq!(r.section(at).unwrap().kind, SectionKind::TermFilter);
        let filter = r.term_filter(IndexField::Actor).unwrap();
        assert_eq!(filter.len(), 700);
        let dict = r.field(IndexField::Actor).unwrap();
        for entry in dict.iter() {
            assert!(filter.may_contain(entry.term));
        }
        let strays = (0..10_000)
            .filter(|i| filter.may_contain(format!("x{i}").as_bytes()))
            .count();
        assert!(strays <= 2, "{strays} absent terms pass");
        // One term, one small dictionary: no filter.
        assert!(r.term_filter_section(IndexField::Outcome).is_none());
        // Off: the same file without the section.
        let plain = built(2_000, 700, false);
        let p = IndexReader::parse(&plain).unwrap();
        assert!(p.term_filter_section(IndexField::Actor).is_none());
        assert_eq!(
            bytes.len() - plain.len(),
            SECTION_ENTRY_LEN + FILTER_HEADER_LEN + 700 * 4
        );
    }

    #[test]
    fn a_filter_out_of_order_fails_its_check_and_a_malformed_one_says_perhaps() {
        let bytes = built(2_000, 700, true);
        let r = IndexReader::parse(&bytes).unwrap();
        let at = r.term_filter_section(IndexField::Actor).unwrap();
        let s = r.section(at).unwrap();
        let first = s.offset as usize + FILTER_HEADER_LEN;
        let mut swapped = bytes.clone();
        let (a, b) = (first, first + 4);
        let tmp: [u8; 4] = swapped[a..a + 4].try_into().unwrap();
        swapped.copy_within(b..b + 4, a);
        swapped[b..b + 4].copy_from_slice(&tmp);
        reseal(&mut swapped);
        let o = IndexReader::open(&swapped).unwrap();
        assert!(matches!(
            o.check_section(at),
            Err(IndexError::BadTermFilter { .. })
        ));
        // A count that does not add up: every term "perhaps".
        let mut miscounted = bytes.clone();
        miscounted[s.offset as usize] ^= 1;
        reseal(&mut miscounted);
        let m = IndexReader::open(&miscounted).unwrap();
        assert!(m.check_section(at).is_err());
        assert!(m.term_filter(IndexField::Actor).unwrap().may_contain(b"x1"));
    }
}
