//! Hashed indexes (kind 4): exact-match indexes for fields with (nearly)
//! one distinct term per record, such as request ids.
//!
//! A section stores, for each (term, record) pair, the term's 64-bit
//! FNV-1a hash ([`term_key`]) and the record's ordinal, sorted by (key,
//! ordinal): 12 bytes per pair whatever the term's length. Keys are spread
//! evenly over 64 bits, so a lookup interpolates before it bisects.

use std::ops::Range;

use roaring::RoaringBitmap;

use super::bitmap::ordinal_set;
use super::bytes::{fit_u32, to_u64, to_u128, u32_at};
use super::error::IndexError;
use super::field::IndexField;
use super::layout::{
    HASHED_ENTRY_LEN, HASHED_HEADER_LEN, HASHED_KEY_LEN, HASHED_RESERVED_AT, ORDINAL_LEN,
};

/// FNV-1a 64-bit offset basis (the hash of the empty string).
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The key of `term` in a hashed index: its 64-bit FNV-1a hash.
///
/// FNV-1a starts from [`FNV_OFFSET_BASIS`] and, for each byte, XORs the
/// byte into the low 8 bits and multiplies by [`FNV_PRIME`] modulo 2^64.
/// `term_key(b"")` is `0xcbf29ce484222325`, `term_key(b"a")` is
/// `0xaf63dc4c8601ec8c`.
pub const fn term_key(term: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut rest = term;
    while let [byte, tail @ ..] = rest {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        rest = tail;
    }
    hash
}

/// `pairs` sorted by (key, ordinal), without duplicates: what a section
/// stores.
pub(super) fn sorted_pairs(pairs: &[(u64, u32)]) -> Vec<(u64, u32)> {
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// Length in bytes of the section of `entries` (key, ordinal) pairs.
pub(super) fn hashed_section_len(entries: usize) -> usize {
    HASHED_HEADER_LEN + entries * HASHED_ENTRY_LEN
}

/// Appends a hashed index section holding `sorted` (from [`sorted_pairs`]).
pub(super) fn encode_sorted_hashed(
    out: &mut Vec<u8>,
    sorted: &[(u64, u32)],
) -> Result<(), IndexError> {
    let count = fit_u32("hashed index entry count", sorted.len())?;
    out.reserve(HASHED_HEADER_LEN + sorted.len() * HASHED_ENTRY_LEN);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (key, _) in sorted {
        out.extend_from_slice(&key.to_le_bytes());
    }
    for (_, ordinal) in sorted {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    Ok(())
}

/// The hashed index of one field, read in place: an exact-match index for
/// fields with (nearly) one distinct term per record, such as request ids.
///
/// It stores, for each (term, record) pair, the term's 64-bit FNV-1a hash
/// ([`term_key`]) and the record's ordinal, sorted by (key, ordinal): 12
/// bytes per record, whatever the term's length. A lookup gives the
/// *candidate* records whose term has the same hash as the one looked up;
/// two different terms can share a hash, so the engine confirms each
/// candidate against its record.
#[derive(Debug, Clone, Copy)]
pub struct HashedIndex<'a> {
    field: IndexField,
    record_count: u64,
    keys: &'a [[u8; HASHED_KEY_LEN]],
    ordinals: &'a [[u8; ORDINAL_LEN]],
}

/// The header words and arrays of a hashed index section.
struct HashedParts<'a> {
    reserved: u32,
    keys: &'a [[u8; HASHED_KEY_LEN]],
    ordinals: &'a [[u8; ORDINAL_LEN]],
}

impl<'a> HashedIndex<'a> {
    /// Splits a hashed index section, checking only that its header adds up
    /// to its length.
    fn split(data: &'a [u8]) -> Result<HashedParts<'a>, String> {
        let Some((header, rest)) = data.split_first_chunk::<HASHED_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than its {HASHED_HEADER_LEN}-byte header",
                data.len()
            ));
        };
        let count = u32_at(header, 0);
        let reserved = u32_at(header, HASHED_RESERVED_AT);
        let expected = to_u64(HASHED_HEADER_LEN) + u64::from(count) * to_u64(HASHED_ENTRY_LEN);
        if expected != to_u64(data.len()) {
            return Err(format!(
                "the section is {} bytes, but {count} entries need {expected}",
                data.len()
            ));
        }
        let Some((keys, ordinals)) = rest.split_at_checked(count as usize * HASHED_KEY_LEN) else {
            return Err("the section is shorter than its header says".to_owned());
        };
        let (keys, _) = keys.as_chunks::<HASHED_KEY_LEN>();
        let (ordinals, _) = ordinals.as_chunks::<ORDINAL_LEN>();
        Ok(HashedParts {
            reserved,
            keys,
            ordinals,
        })
    }

    /// A view of a hashed index section, without checking it. If the header
    /// does not add up to the section's length, the view is empty.
    pub(super) fn view(data: &'a [u8], field: IndexField, record_count: u64) -> Self {
        let (keys, ordinals) = match Self::split(data) {
            Ok(parts) => (parts.keys, parts.ordinals),
            Err(_) => (&[][..], &[][..]),
        };
        HashedIndex {
            field,
            record_count,
            keys,
            ordinals,
        }
    }

    /// Checks a hashed index section (whose CRC has been checked).
    pub(super) fn check(
        data: &'a [u8],
        field: IndexField,
        record_count: u64,
    ) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadHashedIndex { field, reason };
        let parts = Self::split(data).map_err(bad)?;
        if parts.reserved != 0 {
            return Err(bad(format!(
                "reserved header word is {:#x}, not 0",
                parts.reserved
            )));
        }
        let mut previous: Option<(u64, u32)> = None;
        for (i, (key, ordinal)) in parts.keys.iter().zip(parts.ordinals).enumerate() {
            let entry = (u64::from_le_bytes(*key), u32::from_le_bytes(*ordinal));
            if previous.is_some_and(|prev| entry <= prev) {
                return Err(bad(format!(
                    "entry #{i} does not sort strictly after entry #{} (entries must be \
                     unique and sorted by key, then ordinal)",
                    i.saturating_sub(1)
                )));
            }
            previous = Some(entry);
            if u64::from(entry.1) >= record_count {
                return Err(bad(format!(
                    "entry #{i} has ordinal {}, but the segment has {record_count} records",
                    entry.1
                )));
            }
        }
        Ok(())
    }

    /// Checks what a lookup relies on in bytes `start..start + len` of a
    /// hashed index section (one block, whose CRC the caller checked): the
    /// header adds up to the section's length (its reserved word is zero,
    /// in the block that holds it), the keys that lie in the block do not
    /// decrease, and its ordinals are below `record_count`.
    pub(super) fn check_block(
        data: &'a [u8],
        field: IndexField,
        record_count: u64,
        start: u64,
        len: u64,
    ) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadHashedIndex { field, reason };
        let parts = Self::split(data).map_err(bad)?;
        if start == 0 && parts.reserved != 0 {
            return Err(bad(format!(
                "reserved header word is {:#x}, not 0",
                parts.reserved
            )));
        }
        let n = to_u64(parts.keys.len());
        let (keys_at, ordinals_at) = (
            to_u64(HASHED_HEADER_LEN),
            to_u64(HASHED_HEADER_LEN) + n * to_u64(HASHED_KEY_LEN),
        );
        let end = start.saturating_add(len);
        // Positions of the values lying in the block, for values of
        // `width` bytes stored from `from` on (values never straddle a
        // block: blocks and both arrays are aligned to their widths).
        let within = |from: u64, width: u64| -> std::ops::Range<usize> {
            let lo = start.max(from).min(from + n * width);
            let hi = end.max(from).min(from + n * width);
            let lo = usize::try_from((lo - from) / width).unwrap_or(usize::MAX);
            let hi = usize::try_from((hi - from) / width).unwrap_or(usize::MAX);
            lo..hi.max(lo)
        };
        let keys = within(keys_at, to_u64(HASHED_KEY_LEN));
        let mut previous: Option<u64> = None;
        for (i, key) in parts
            .keys
            .get(keys.clone())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let key = u64::from_le_bytes(*key);
            if previous.is_some_and(|p| key < p) {
                let at = keys.start + i;
                return Err(bad(format!(
                    "entry #{at} does not sort after entry #{} (entries must be sorted by key)",
                    at - 1
                )));
            }
            previous = Some(key);
        }
        let ordinals = within(ordinals_at, to_u64(ORDINAL_LEN));
        for (i, ordinal) in parts
            .ordinals
            .get(ordinals.clone())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ordinal = u32::from_le_bytes(*ordinal);
            if u64::from(ordinal) >= record_count {
                return Err(bad(format!(
                    "entry #{} has ordinal {ordinal}, but the segment has {record_count} records",
                    ordinals.start + i
                )));
            }
        }
        Ok(())
    }

    /// The field this index covers.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of (key, ordinal) entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no record has the field.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every entry's key, in the section's order (ascending in a checked
    /// section; a key repeats once per record that has it).
    pub fn keys(&self) -> impl Iterator<Item = u64> + 'a {
        self.keys.iter().map(|k| u64::from_le_bytes(*k))
    }

    /// Every entry as `(key, ordinal)`, in the section's order (ascending
    /// in a checked section).
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32)> + 'a {
        self.keys
            .iter()
            .zip(self.ordinals)
            .map(|(k, o)| (u64::from_le_bytes(*k), u32::from_le_bytes(*o)))
    }

    /// Positions of the entries with key `key`.
    fn key_range(&self, key: u64) -> Range<usize> {
        self.key_range_reading(key, &mut |_| {})
    }

    /// [`key_range`](Self::key_range), calling `read(i)` for every
    /// position `i` whose key the search reads: what a reader that checks
    /// blocks must check before it trusts the result.
    pub(super) fn key_range_reading(&self, key: u64, read: &mut impl FnMut(usize)) -> Range<usize> {
        let keys = self.keys;
        let mut at = |i: usize| {
            read(i);
            keys.get(i).map_or(u64::MAX, |k| u64::from_le_bytes(*k))
        };
        let start = lower_bound_key(keys.len(), key, &mut at);
        start..start + leading_at_most(start, keys.len(), key, &mut at)
    }

    /// The ordinals stored at positions `range`, as a set (ordinals past the
    /// segment, possible only in an unchecked section, dropped).
    pub(super) fn ordinals_in(&self, range: Range<usize>) -> RoaringBitmap {
        let ordinals = self.ordinals.get(range).unwrap_or_default();
        ordinal_set(&[ordinals], self.record_count)
    }

    /// The records that may have `term`: every record that has it, and
    /// perhaps some whose term has the same hash. Confirm each against the
    /// record.
    pub fn candidates(&self, term: &[u8]) -> RoaringBitmap {
        self.candidates_for_key(term_key(term))
    }

    /// The records whose term has the key `key` (see [`term_key`]).
    pub fn candidates_for_key(&self, key: u64) -> RoaringBitmap {
        self.ordinals_in(self.key_range(key))
    }

    /// Number of records [`candidates`](Self::candidates) would return
    /// (two binary searches, no allocation), for a query planner.
    pub fn candidate_count(&self, term: &[u8]) -> u64 {
        self.candidate_count_for_key(term_key(term))
    }

    /// Number of records [`candidates_for_key`](Self::candidates_for_key)
    /// would return.
    pub fn candidate_count_for_key(&self, key: u64) -> u64 {
        to_u64(self.key_range(key).len())
    }
}

/// Interpolation steps [`lower_bound_key`] takes before it bisects.
const INTERPOLATION_STEPS: usize = 4;

/// Position of the first key `>= key` among the `n` keys `at(0..n)`,
/// which a checked section keeps sorted.
///
/// Keys are 64-bit hashes, spread evenly, so the search first interpolates
/// (guesses the position from the key's value), which on a large index
/// touches two or three pages instead of the dozen a binary search does;
/// this matters when the index is mapped and not yet in memory. It then
/// bisects what is left. On unsorted (unchecked) keys it still ends, with
/// some position.
fn lower_bound_key(n: usize, key: u64, at: &mut impl FnMut(usize) -> u64) -> usize {
    // Invariant (when sorted): keys[..lo] < key <= keys[hi..].
    let (mut lo, mut hi) = (0usize, n);
    for _ in 0..INTERPOLATION_STEPS {
        if hi - lo <= 64 {
            break;
        }
        let (first, last) = (at(lo), at(hi - 1));
        if key <= first {
            return lo;
        }
        if key > last {
            return hi;
        }
        // first < key <= last, so last - first > 0.
        let span = u128::from(last - first);
        let offset = u128::from(key - first) * to_u128(hi - 1 - lo) / span;
        let probe = lo + usize::try_from(offset).unwrap_or(0).min(hi - 1 - lo);
        if at(probe) < key {
            lo = probe + 1;
        } else {
            hi = probe;
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at(mid) < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Number of keys `<= key` from position `from` on among the `n` keys
/// `at(0..n)` (sorted when checked), by galloping: cheap when few keys are
/// equal, logarithmic when many are.
fn leading_at_most(from: usize, n: usize, key: u64, at: &mut impl FnMut(usize) -> u64) -> usize {
    let mut known = 0usize;
    let mut step = 1usize;
    // at(from..from + known) are <= key.
    while from.saturating_add(known).saturating_add(step) <= n && at(from + known + step - 1) <= key
    {
        known += step;
        step = step.saturating_mul(2);
    }
    let (mut lo, mut hi) = (
        from + known,
        n.min(from.saturating_add(known).saturating_add(step)),
    );
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at(mid) <= key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo - from
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn key_searches_agree_with_a_binary_search() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [0usize, 1, 2, 63, 64, 65, 200, 3_000] {
            let mut keys: Vec<u64> = (0..n).map(|_| random()).collect();
            // Runs of equal keys, and both ends of the range.
            keys.extend([0, 0, u64::MAX, u64::MAX].iter().take(n.min(4)));
            keys.extend(keys.clone().iter().take(n / 3));
            keys.sort_unstable();
            let stored: Vec<[u8; 8]> = keys.iter().map(|k| k.to_le_bytes()).collect();
            let mut probes: Vec<u64> = keys.iter().step_by(7).copied().collect();
            probes.extend([0, 1, u64::MAX - 1, u64::MAX, random(), random()]);
            probes.extend(keys.iter().step_by(11).map(|k| k.wrapping_add(1)));
            for key in probes {
                let start = keys.partition_point(|&k| k < key);
                let equal = keys[start..].partition_point(|&k| k <= key);
                let mut at = |i: usize| u64::from_le_bytes(stored[i]);
                let n = stored.len();
                assert_eq!(
                    lower_bound_key(n, key, &mut at),
                    start,
                    "n {n}, key {key:#x}"
                );
                assert_eq!(leading_at_most(start, n, key, &mut at), equal);
            }
        }
    }

    #[test]
    fn term_keys_are_fnv1a_64() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(term_key(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(term_key(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(term_key(b"foobar"), 0x8594_4171_f739_67e8);
        const AT_COMPILE_TIME: u64 = term_key(b"a");
        assert_eq!(AT_COMPILE_TIME, fnv(b"a"));
        for term in [&b"req-0001"[..], &[0xff; 40], b"customer-123456"] {
            assert_eq!(term_key(term), fnv(term));
        }
    }

    #[test]
    fn keys_added_together_give_the_file_of_keys_added_one_by_one() {
        let pairs = [(7, 4), (7, 1), (7, 1), (term_key(b"b"), 5), (8, 0)];
        let build = |together: bool| {
            let mut b = IndexBuilder::new(identity(6));
            b.set_columns((0..6).collect(), vec![0; 6]).unwrap();
            b.add_hashed_field(IndexField::RequestId);
            if together {
                b.add_hashed_keys(IndexField::RequestId, &pairs).unwrap();
            } else {
                for (key, ordinal) in pairs {
                    b.add_hashed_key(IndexField::RequestId, key, ordinal)
                        .unwrap();
                }
            }
            b
        };
        assert_eq!(
            build(true).encode().unwrap(),
            build(false).encode().unwrap()
        );
        // An ordinal past the records: refused, and none of the pairs added.
        let mut b = build(true);
        let err = b
            .add_hashed_keys(IndexField::RequestId, &[(9, 2), (9, 6)])
            .unwrap_err();
        assert!(
            matches!(err, IndexError::OrdinalOutOfRange { ordinal: 6, .. }),
            "{err}"
        );
        assert_eq!(b.encode().unwrap(), build(false).encode().unwrap());
    }

    #[test]
    fn colliding_terms_share_candidates() {
        let mut b = IndexBuilder::new(identity(6));
        b.set_columns((0..6).collect(), vec![0; 6]).unwrap();
        // Two terms with one key (as if their hashes collided), and a term
        // that has the key of another.
        b.add_hashed_key(IndexField::RequestId, 7, 4).unwrap();
        b.add_hashed_key(IndexField::RequestId, 7, 1).unwrap();
        b.add_hashed_key(IndexField::RequestId, 7, 1).unwrap();
        b.add_hashed(IndexField::RequestId, b"b", 2).unwrap();
        b.add_hashed_key(IndexField::RequestId, term_key(b"b"), 5)
            .unwrap();
        b.add_hashed_key(IndexField::RequestId, 8, 0).unwrap();
        let bytes = b.encode().unwrap();
        let r = IndexReader::parse(&bytes).unwrap();
        let h = r.hashed(IndexField::RequestId).unwrap();
        assert_eq!(h.len(), 5);
        let at = |key| h.candidates_for_key(key).iter().collect::<Vec<_>>();
        assert_eq!(at(7), [1, 4]);
        assert_eq!(at(8), [0]);
        assert_eq!(at(6), Vec::<u32>::new());
        assert_eq!(h.candidate_count_for_key(7), 2);
        assert_eq!(h.candidates(b"b").iter().collect::<Vec<_>>(), [2, 5]);
        assert_eq!(h.candidate_count(b"c"), 0);
    }

    #[test]
    fn large_hashed_indexes_find_every_key() {
        // Big enough for the interpolation steps, with keys spread evenly
        // (hashes), clustered, repeated, and at both ends of the range.
        let n = 20_000u32;
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let key_sets: [Vec<(u64, u32)>; 3] = [
            (0..n).map(|o| (fnv(&o.to_le_bytes()), o)).collect(),
            (0..n)
                .map(|o| match o % 5 {
                    0 => (0, o),
                    1 => (u64::MAX, o),
                    2 => (u64::from(o) * 3, o),
                    3 => (u64::MAX - u64::from(o % 50), o),
                    _ => (1 << 63 | u64::from(o % 7), o),
                })
                .collect(),
            (0..n)
                .map(|o| ((random() % 1000) * (u64::MAX / 1000), o))
                .collect(),
        ];
        for pairs in key_sets {
            let mut b = IndexBuilder::new(identity(u64::from(n)));
            b.set_columns((0..n).collect(), vec![0; n as usize])
                .unwrap();
            let mut naive: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
            for &(key, o) in &pairs {
                b.add_hashed_key(IndexField::RequestId, key, o).unwrap();
                naive.entry(key).or_default().insert(o);
            }
            let bytes = b.encode().unwrap();
            let r = IndexReader::parse(&bytes).unwrap();
            let h = r.hashed(IndexField::RequestId).unwrap();
            for (&key, want) in &naive {
                assert_eq!(h.candidates_for_key(key), *want, "key {key:#x}");
                assert_eq!(h.candidate_count_for_key(key), want.len());
                for miss in [key.wrapping_add(1), key.wrapping_sub(1)] {
                    let want = naive.get(&miss).map_or(0, |b| b.len());
                    assert_eq!(h.candidate_count_for_key(miss), want);
                }
            }
            for _ in 0..2_000 {
                let key = random();
                let want = naive.get(&key).map_or(0, |b| b.len());
                assert_eq!(h.candidate_count_for_key(key), want);
            }
        }
    }

    #[test]
    fn hashed_index_rules() {
        let check = |pairs: &[(u64, u32)], n: u32| -> Result<(), IndexError> {
            let bytes = file_with(n, KIND_HASHED, IndexField::RequestId, raw_hashed(pairs));
            let r = IndexReader::open(&bytes)?;
            exercise_unchecked(&r);
            let checked = r.check_section(2);
            assert_eq!(checked.is_ok(), IndexReader::parse(&bytes).is_ok());
            checked
        };
        check(&[(1, 2), (1, 3), (2, 0)], 4).unwrap();
        check(&[], 0).unwrap();
        let refused = |pairs: &[(u64, u32)], n: u32| {
            assert!(matches!(
                check(pairs, n),
                Err(IndexError::BadHashedIndex { .. })
            ));
        };
        refused(&[(2, 0), (1, 0)], 4);
        refused(&[(1, 3), (1, 2)], 4);
        refused(&[(1, 2), (1, 2)], 4);
        refused(&[(1, 4)], 4);
        let mut reserved = raw_hashed(&[(1, 2)]);
        reserved[4] = 1;
        let mut longer = raw_hashed(&[(1, 2)]);
        longer.push(0);
        let shorter = raw_hashed(&[(1, 2)])[..19].to_vec();
        for data in [reserved, longer, shorter, vec![1, 0, 0]] {
            let bytes = file_with(4, KIND_HASHED, IndexField::RequestId, data);
            let r = IndexReader::open(&bytes).unwrap();
            assert!(matches!(
                r.check_section(2),
                Err(IndexError::BadHashedIndex { .. })
            ));
            exercise_unchecked(&r);
        }
        // Unchecked and unsorted: wrong answers, but only ordinals in the
        // segment.
        let bytes = file_with(
            4,
            KIND_HASHED,
            IndexField::RequestId,
            raw_hashed(&[(5, 9), (5, 1), (1, 2)]),
        );
        let r = IndexReader::open(&bytes).unwrap();
        let h = r.hashed(IndexField::RequestId).unwrap();
        assert!(h.candidates_for_key(5).iter().all(|o| o < 4));
        // Large and unsorted: the interpolating search still ends.
        let pairs: Vec<(u64, u32)> = (0..5_000u32)
            .map(|i| (fnv(&i.to_le_bytes()) >> (i % 64), i % 7))
            .collect();
        let bytes = file_with(4, KIND_HASHED, IndexField::RequestId, raw_hashed(&pairs));
        let r = IndexReader::open(&bytes).unwrap();
        assert!(r.check_section(2).is_err());
        let h = r.hashed(IndexField::RequestId).unwrap();
        for i in 0..5_000u32 {
            let key = fnv(&i.to_be_bytes()) >> (i % 61);
            assert!(h.candidates_for_key(key).iter().all(|o| o < 4));
            assert!(h.candidate_count_for_key(key) <= 5_000);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn hashed_candidates_cover_every_exact_match(
            terms in proptest::collection::vec((term_strategy(), 0u32..50), 0..120),
            hash_mask in prop_oneof![Just(0u64), Just(1), Just(0xf), Just(0xff), Just(u64::MAX)],
        ) {
            let mut m = Model::new(vec![0; 50]);
            m.hash_mask = hash_mask;
            m.hashed.entry(IndexField::RequestId).or_default();
            for (term, o) in &terms {
                m.add_hashed(IndexField::RequestId, term, [*o]);
            }
            let bytes = m.encode();
            let r = IndexReader::parse(&bytes).unwrap();
            let h = r.hashed(IndexField::RequestId).unwrap();
            let keyed: Vec<(u64, &BTreeSet<u32>)> = m.hashed[&IndexField::RequestId]
                .iter()
                .map(|(t, o)| (m.key(t), o))
                .collect();
            for &(key, ordinals) in &keyed {
                let candidates = h.candidates_for_key(key);
                prop_assert!(ordinals.iter().all(|&o| candidates.contains(o)));
                let want: RoaringBitmap = keyed
                    .iter()
                    .filter(|(k, _)| *k == key)
                    .flat_map(|(_, o)| o.iter().copied())
                    .collect();
                prop_assert_eq!(candidates, want);
            }
        }
    }
}
