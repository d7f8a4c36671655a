//! Roaring bitmaps of ordinals: the structure check of a term's bitmap in
//! the portable serialization format, and the building of result sets.
//!
//! [`check_roaring`] walks a serialized bitmap's headers without
//! allocating, so that a damaged bitmap is refused before the `roaring`
//! crate allocates anything for it; the values inside containers are left
//! to the decoder. [`walk_canonical`] goes on through the values, still
//! without allocating, and checks that the bytes are the canonical form
//! writers produce. The format is the one `docs/format.md` describes in
//! "Term bitmaps".

use roaring::RoaringBitmap;

use super::bytes::{Cursor, to_u64};
use super::error::IndexError;
use super::field::IndexField;
use super::layout::ORDINAL_LEN;

// Roaring portable-format constants.
const ROARING_COOKIE_NO_RUNS: u32 = 12346;
const ROARING_COOKIE_RUNS: u32 = 12347;
const ROARING_MAX_CONTAINERS: usize = 1 << 16;
const ROARING_ARRAY_LIMIT: u64 = 4096;
const ROARING_BITSET_BYTES: usize = 8192;
const ROARING_OFFSETS_THRESHOLD: usize = 4;

/// Checks the structure of a term's serialized bitmap against its entry,
/// without decoding its values: one well-formed roaring bitmap, as many
/// values as the entry says (`cardinality`), no container past the segment.
pub(super) fn check_bitmap_shape(
    bytes: &[u8],
    cardinality: u64,
    field: IndexField,
    index: usize,
    record_count: u64,
) -> Result<(), IndexError> {
    let bad = |reason: String| IndexError::BadBitmap {
        field,
        term_index: index,
        reason,
    };
    let shape = check_roaring(bytes).map_err(|reason| bad(reason.to_owned()))?;
    if shape.cardinality != cardinality {
        return Err(bad(format!(
            "its containers hold {} ordinals, the term entry says {cardinality}",
            shape.cardinality
        )));
    }
    if shape.max >= record_count {
        return Err(IndexError::OrdinalOutOfRange {
            field,
            term_index: Some(index),
            ordinal: shape.max,
            record_count,
        });
    }
    Ok(())
}

/// The set of the `parts`' ordinals (in any order) that are below
/// `record_count`; others can only come from a damaged section that was
/// not checked, and are dropped.
pub(super) fn ordinal_set(parts: &[&[[u8; ORDINAL_LEN]]], record_count: u64) -> RoaringBitmap {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let ordinals = parts
        .iter()
        .flat_map(|part| part.iter())
        .map(|bytes| u32::from_le_bytes(*bytes))
        .filter(|&ordinal| u64::from(ordinal) < record_count);
    if total <= 1 {
        // The common case of an exact match: no sorting, no extra vector.
        return ordinals.collect();
    }
    // Many ordinals: set bits in a bitset of the whole segment, which costs
    // `record_count / 8` bytes, at most 4 bytes per ordinal found.
    if to_u64(total).saturating_mul(32) >= record_count && record_count <= 1 << 31 {
        let mut bits = vec![0u8; usize::try_from(record_count.div_ceil(8)).unwrap_or(0)];
        for ordinal in ordinals {
            if let Some(byte) = bits.get_mut((ordinal / 8) as usize) {
                *byte |= 1 << (ordinal % 8);
            }
        }
        return RoaringBitmap::from_lsb0_bytes(0, &bits);
    }
    let mut sorted: Vec<u32> = ordinals.collect();
    if !sorted.is_sorted() {
        sorted.sort_unstable();
    }
    sorted.dedup();
    // Sorted and unique, so this cannot fail.
    RoaringBitmap::from_sorted_iter(sorted).unwrap_or_default()
}

/// What [`check_roaring`] learns from a serialized bitmap.
struct RoaringShape {
    /// Sum of the containers' declared cardinalities.
    cardinality: u64,
    /// The largest value in the last container (the bitmap's largest value
    /// if the bitmap is valid).
    max: u64,
}

/// The payload of a container, by kind.
#[derive(Clone, Copy)]
enum Payload<'b> {
    Array(&'b [u8]),
    Bitset(&'b [u8]),
    Runs(&'b [u8]),
}

impl Payload<'_> {
    /// The largest value in the container if its values are in order, as
    /// a valid container's are: the last one. The order itself is left to
    /// the decoder (roaring refuses a container whose values do not
    /// increase), so a check that reads only the last value costs the same
    /// for a term of two records as for one of 4,096, where taking the
    /// maximum of every value made checking a segment's dictionary cost a
    /// pass over every ordinal in it.
    fn max(self) -> u32 {
        match self {
            Payload::Array(bytes) => bytes
                .as_chunks::<2>()
                .0
                .last()
                .map_or(0, |v| u32::from(u16::from_le_bytes(*v))),
            Payload::Runs(bytes) => bytes.as_chunks::<4>().0.last().map_or(0, |r| {
                u32::from(u16::from_le_bytes([r[0], r[1]]))
                    + u32::from(u16::from_le_bytes([r[2], r[3]]))
            }),
            Payload::Bitset(bytes) => {
                let words = bytes.as_chunks::<8>().0;
                words
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, w)| u64::from_le_bytes(**w) != 0)
                    .map_or(0, |(i, w)| {
                        let top = 63 - u64::from_le_bytes(*w).leading_zeros();
                        u32::try_from(i * 64).unwrap_or(0) + top
                    })
            }
        }
    }
}

/// Why a read of a serialized bitmap fails when its bytes end early.
const SHORT: &str = "it ends inside its own structure";

/// The header of a serialized bitmap, as [`roaring_header`] reads it.
struct RoaringHeader<'b> {
    /// Whether the cookie is the one of a bitmap with run containers.
    has_runs: bool,
    /// One bit per container, set for a run container (empty without
    /// runs).
    run_flags: &'b [u8],
    /// Per container: `u16` key, `u16` cardinality - 1.
    descriptions: &'b [[u8; 4]],
    /// Per container, its offset from the bitmap's start, when the format
    /// stores offsets.
    offsets: Option<&'b [[u8; 4]]>,
}

impl RoaringHeader<'_> {
    /// Whether container `i` is a run container.
    #[inline]
    fn is_run(&self, i: usize) -> bool {
        self.run_flags
            .get(i / 8)
            .is_some_and(|flags| flags >> (i % 8) & 1 == 1)
    }
}

/// Reads the header of a serialized bitmap from `r`, leaving `r` at the
/// first container: a known cookie, 1 to 65,536 containers, unused run
/// flag bits zero, and all the descriptions and offsets present.
fn roaring_header<'b>(r: &mut Cursor<'b>) -> Result<RoaringHeader<'b>, &'static str> {
    let cookie = r.u32().ok_or(SHORT)?;
    let (size, has_runs) = if cookie == ROARING_COOKIE_NO_RUNS {
        let size = r.u32().ok_or(SHORT)?;
        (
            usize::try_from(size).map_err(|_| "too many containers")?,
            false,
        )
    } else if cookie & 0xffff == ROARING_COOKIE_RUNS {
        ((cookie >> 16) as usize + 1, true)
    } else {
        return Err("unknown roaring cookie");
    };
    if size == 0 {
        return Err("it has no containers");
    }
    if size > ROARING_MAX_CONTAINERS {
        return Err("it declares more than 65536 containers");
    }
    let has_offsets = !has_runs || size >= ROARING_OFFSETS_THRESHOLD;
    let run_flags = if has_runs {
        let flags = r.take(size.div_ceil(8)).ok_or(SHORT)?;
        let spare_bits = flags.len() * 8 - size;
        if spare_bits > 0 && flags.last().is_some_and(|&b| b >> (8 - spare_bits) != 0) {
            return Err("run flags mark containers that do not exist");
        }
        flags
    } else {
        &[]
    };
    let descriptions = r.take(size * 4).ok_or(SHORT)?.as_chunks::<4>().0;
    let offsets = if has_offsets {
        Some(r.take(size * 4).ok_or(SHORT)?.as_chunks::<4>().0)
    } else {
        None
    };
    Ok(RoaringHeader {
        has_runs,
        run_flags,
        descriptions,
        offsets,
    })
}

/// Reads the payload of a container from `r`: a run container's runs
/// (after their count), or as many array values as the container's
/// declared cardinality `count` (1 to 65,536), or a bitset when `count` is
/// above 4,096.
fn container_payload<'b>(
    r: &mut Cursor<'b>,
    is_run: bool,
    count: u32,
) -> Result<Payload<'b>, &'static str> {
    if is_run {
        let runs = r.u16().ok_or(SHORT)?;
        if runs == 0 {
            return Err("a run container has no runs");
        }
        Ok(Payload::Runs(r.take(usize::from(runs) * 4).ok_or(SHORT)?))
    } else if u64::from(count) <= ROARING_ARRAY_LIMIT {
        let len = usize::try_from(count).map_err(|_| SHORT)? * 2;
        Ok(Payload::Array(r.take(len).ok_or(SHORT)?))
    } else {
        Ok(Payload::Bitset(r.take(ROARING_BITSET_BYTES).ok_or(SHORT)?))
    }
}

/// The key and the declared cardinality (1 to 65,536) of a container.
#[inline]
fn description(d: &[u8; 4]) -> (u16, u32) {
    (
        u16::from_le_bytes([d[0], d[1]]),
        u32::from(u16::from_le_bytes([d[2], d[3]])) + 1,
    )
}

/// Checks that `bytes` is exactly one well-formed, non-empty roaring bitmap
/// in the portable format: known cookie, sorted container keys, offsets
/// that match, every container's payload present, nothing after the last;
/// and finds the largest value of the last container. Does not allocate;
/// the order of values inside containers, and bitset cardinalities, are
/// checked when roaring decodes the bitmap (or by [`walk_canonical`]).
fn check_roaring(bytes: &[u8]) -> Result<RoaringShape, &'static str> {
    let mut r = Cursor::new(bytes);
    let header = roaring_header(&mut r)?;

    let mut cardinality = 0u64;
    let mut previous_key: Option<u16> = None;
    let mut last_key = 0u16;
    let mut last = Payload::Array(&[]);
    for (i, d) in header.descriptions.iter().enumerate() {
        let (key, count) = description(d);
        if previous_key.is_some_and(|prev| key <= prev) {
            return Err("container keys are not strictly increasing");
        }
        previous_key = Some(key);
        last_key = key;
        if let Some(offsets) = header.offsets {
            let declared = offsets.get(i).map(|o| u32::from_le_bytes(*o));
            if declared.map(u64::from) != Some(to_u64(r.pos)) {
                return Err("a container offset does not match the layout");
            }
        }
        last = container_payload(&mut r, header.is_run(i), count)?;
        cardinality += u64::from(count);
    }
    if !r.rest.is_empty() {
        return Err("bytes follow its last container");
    }
    Ok(RoaringShape {
        cardinality,
        max: (u64::from(last_key) << 16) + u64::from(last.max()),
    })
}

/// Why [`walk_canonical`] refuses a container whose kind `optimize` would
/// have changed.
const NOT_CANONICAL_ARRAY: &str =
    "a container is not in the canonical form (an array that run containers would make smaller)";
const NOT_CANONICAL_BITSET: &str =
    "a container is not in the canonical form (a bitset that run containers would make smaller)";
const NOT_CANONICAL_RUNS: &str = "a container is not in the canonical form (run containers \
     no smaller than the array or bitset of the same values)";

/// The serialized size of a container of `count` values (1 to 65,536)
/// that is not a run container: an array up to 4,096 values, a bitset
/// above.
#[inline]
fn non_run_size(count: u32) -> u32 {
    if u64::from(count) <= ROARING_ARRAY_LIMIT {
        2 * count
    } else {
        8192
    }
}

/// The serialized size of a run container of `runs` runs: a `u16` count,
/// then a `u16` start and a `u16` length - 1 per run.
#[inline]
fn run_size(runs: u32) -> u32 {
    2 + 4 * runs
}

/// Walks a serialized bitmap that [`check_roaring`] accepts, calling
/// `value` with each of its values in increasing order, and returns their
/// number; checks on the way that the bytes are in the canonical form
/// writers give a bitmap (`docs/format.md`, "Term bitmaps"). Does not
/// allocate.
///
/// Besides the structure [`check_roaring`] checks, it refuses: array
/// values that do not strictly increase, a bitset whose popcount is not
/// its declared cardinality, runs that overlap or touch or pass 65,535 or
/// whose lengths do not add up to the declared cardinality; and, for the
/// canonical form, the run-container cookie without a run container, and
/// any container that is not what `RoaringBitmap::optimize` makes of the
/// array or bitset `from_sorted_iter` builds (a run container exactly when
/// that is strictly smaller). Since every other byte follows from the
/// values, a bitmap it accepts is the only encoding of its values.
///
/// On an error, `value` may already have been called with some of the
/// values (never with those of an invalid run).
pub(super) fn walk_canonical(
    bytes: &[u8],
    mut value: impl FnMut(u32),
) -> Result<u64, &'static str> {
    check_roaring(bytes)?;
    let mut r = Cursor::new(bytes);
    let header = roaring_header(&mut r)?;
    // The writer uses the run-container cookie only when there is a run
    // container, so the other one is the only encoding of a bitmap without.
    if header.has_runs && header.run_flags.iter().all(|&flags| flags == 0) {
        return Err("it has the cookie of a bitmap with run containers, but no run container");
    }
    // The header read leaves `r` past the offsets (which `check_roaring`
    // has compared with the layout), at the first container; each payload
    // read leaves it at the next.
    let mut total = 0u64;
    for (i, d) in header.descriptions.iter().enumerate() {
        let (key, count) = description(d);
        let base = u32::from(key) << 16;
        match container_payload(&mut r, header.is_run(i), count)? {
            Payload::Array(values) => walk_array(values, base, count, &mut value)?,
            Payload::Bitset(words) => walk_bitset(words, base, count, &mut value)?,
            Payload::Runs(runs) => walk_runs(runs, base, count, &mut value)?,
        }
        total += u64::from(count);
    }
    Ok(total)
}

/// [`walk_canonical`] over an array container of `count` values.
#[inline]
fn walk_array(
    values: &[u8],
    base: u32,
    count: u32,
    value: &mut impl FnMut(u32),
) -> Result<(), &'static str> {
    let values = values.as_chunks::<2>().0;
    let Some(first) = values.first() else {
        return Ok(());
    };
    // `next` is the value that would continue the current run; every value
    // must be at least that, and one above it starts a new run. Runs are
    // counted as the first one plus each break.
    let mut next = u32::from(u16::from_le_bytes(*first));
    let mut breaks = 0u32;
    for v in values {
        let v = u32::from(u16::from_le_bytes(*v));
        if v < next {
            return Err("array values are not strictly increasing");
        }
        breaks += u32::from(v != next);
        next = v + 1;
        value(base | v);
    }
    if run_size(breaks + 1) < non_run_size(count) {
        return Err(NOT_CANONICAL_ARRAY);
    }
    Ok(())
}

/// [`walk_canonical`] over a bitset container of `count` values.
#[inline]
fn walk_bitset(
    words: &[u8],
    base: u32,
    count: u32,
    value: &mut impl FnMut(u32),
) -> Result<(), &'static str> {
    let mut ones = 0u32;
    let mut runs = 0u32;
    // The top bit of the previous word: the bit below bit 0 of this one.
    let mut carry = 0u64;
    let mut word_base = base;
    for word in words.as_chunks::<8>().0 {
        let word = u64::from_le_bytes(*word);
        ones += word.count_ones();
        // A run starts at each set bit whose lower neighbour is clear.
        runs += (word & !((word << 1) | carry)).count_ones();
        carry = word >> 63;
        let mut bits = word;
        while bits != 0 {
            value(word_base | bits.trailing_zeros());
            bits &= bits - 1;
        }
        // Past the last word of the container of key 65535 this wraps to
        // 0, which is never used.
        word_base = word_base.wrapping_add(64);
    }
    if ones != count {
        return Err(
            "a bitset container holds a number of values other than its declared cardinality",
        );
    }
    if run_size(runs) < non_run_size(count) {
        return Err(NOT_CANONICAL_BITSET);
    }
    Ok(())
}

/// [`walk_canonical`] over the runs of a run container of `count` values.
#[inline]
fn walk_runs(
    runs: &[u8],
    base: u32,
    count: u32,
    value: &mut impl FnMut(u32),
) -> Result<(), &'static str> {
    // The smallest start the next run may have: two past the previous
    // run's end, so that runs neither overlap nor touch (touching runs are
    // one run written as two, which is not the canonical form).
    let mut floor = 0u32;
    let mut total = 0u32;
    let mut number = 0u32;
    for run in runs.as_chunks::<4>().0 {
        let start = u32::from(u16::from_le_bytes([run[0], run[1]]));
        let length = u32::from(u16::from_le_bytes([run[2], run[3]]));
        if start < floor {
            return Err("runs of a run container overlap or touch");
        }
        let end = start + length;
        if end > 0xffff {
            return Err("a run passes the end of its container");
        }
        for v in start..=end {
            value(base | v);
        }
        total += length + 1;
        number += 1;
        floor = end + 2;
    }
    if total != count {
        return Err(
            "the runs of a run container hold a number of values other than its declared cardinality",
        );
    }
    if run_size(number) >= non_run_size(count) {
        return Err(NOT_CANONICAL_RUNS);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn serialize(bitmap: &RoaringBitmap) -> Vec<u8> {
        let mut bytes = Vec::new();
        bitmap.serialize_into(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn check_roaring_finds_the_cardinality_and_largest_value_of_every_container_kind() {
        let mut array: RoaringBitmap = [1, 70_000, 70_005].into_iter().collect();
        let mut bitset: RoaringBitmap = (0..10_000).map(|v| v * 3).collect();
        let mut runs: RoaringBitmap = (65_536 * 3..65_536 * 3 + 9_000).collect();
        runs.insert(5);
        for (bitmap, max) in [
            (&mut array, 70_005),
            (&mut bitset, 29_997),
            (&mut runs, 65_536 * 3 + 8_999),
        ] {
            bitmap.optimize();
            let shape = check_roaring(&serialize(bitmap)).unwrap();
            assert_eq!(shape.cardinality, bitmap.len());
            assert_eq!(shape.max, max);
        }
        // Many containers, with and without runs: offsets are checked.
        let mut many: RoaringBitmap = (0..6u32).map(|k| k << 16).collect();
        many.insert_range(7 << 16..(7 << 16) + 100);
        for optimize in [false, true] {
            if optimize {
                many.optimize();
            }
            let shape = check_roaring(&serialize(&many)).unwrap();
            assert_eq!((shape.cardinality, shape.max), (106, (7 << 16) + 99));
        }
        assert_eq!(
            check_roaring(&serialize(&RoaringBitmap::new())).err(),
            Some("it has no containers")
        );
    }

    #[test]
    fn ordinal_sets_drop_ordinals_past_the_segment_whatever_their_number() {
        let bytes =
            |values: &[u32]| -> Vec<[u8; 4]> { values.iter().map(|v| v.to_le_bytes()).collect() };
        let as_set = |b: RoaringBitmap| b.iter().collect::<BTreeSet<_>>();
        // One ordinal, a few in a large segment (sorted), many in a small
        // one (bitset), in two parts and out of order.
        assert_eq!(
            as_set(ordinal_set(&[bytes(&[7]).as_slice()], 8)),
            BTreeSet::from([7])
        );
        assert!(ordinal_set(&[bytes(&[8]).as_slice()], 8).is_empty());
        let sparse = bytes(&[900_000, 3, 3, 5_000_000]);
        assert_eq!(
            as_set(ordinal_set(&[sparse.as_slice()], 1_000_000)),
            BTreeSet::from([3, 900_000])
        );
        let (a, b) = (bytes(&[9, 2, 40]), bytes(&[2, 0, 63, 64]));
        assert_eq!(
            as_set(ordinal_set(&[a.as_slice(), b.as_slice()], 64)),
            BTreeSet::from([0, 2, 9, 40, 63])
        );
        assert!(ordinal_set(&[], 64).is_empty());
    }

    #[test]
    fn large_segment_with_all_container_kinds() {
        let n: u32 = 140_000;
        let times: Vec<i64> = (0..n)
            .map(|i| i64::from(i.wrapping_mul(2_654_435_761) % 1_000))
            .collect();
        let mut m = Model::new(times);
        m.add(
            IndexField::Outcome,
            b"ok",
            (0..n).filter(|i| i % 1000 != 999),
        );
        m.add(
            IndexField::Outcome,
            b"error",
            (0..n).filter(|i| i % 1000 == 999),
        );
        m.add(IndexField::Actor, b"even", (0..n).step_by(2));
        m.add(IndexField::Actor, b"odd", (1..n).step_by(2));
        m.add(
            IndexField::Tenant,
            b"t",
            [0, 65_535, 65_536, 131_071, n - 1],
        );
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        for (&field, terms) in &m.fields {
            let d = r.field(field).unwrap();
            for (term, ordinals) in terms {
                let i = d.find(term).unwrap();
                assert_eq!(
                    d.bitmap(i).unwrap().iter().collect::<BTreeSet<_>>(),
                    *ordinals
                );
            }
        }
        for (from, to) in [(0, 1_000), (100, 101), (-5, 3), (999, 1_000), (500, 200)] {
            let want: RoaringBitmap = (0..n)
                .filter(|&i| from <= m.times[i as usize] && m.times[i as usize] < to)
                .collect();
            assert_eq!(r.time_filter(from, to), want);
        }
    }

    #[test]
    fn section_checks_find_ordinals_past_the_segment_in_every_container_kind() {
        let n = 80_000u32;
        let bitmaps: [(RoaringBitmap, bool, bool); 3] = [
            // Array, bitset and run containers whose key is in the segment
            // but whose last value is not (with: is a bitset, has runs).
            ([0, 65_536, n].into_iter().collect(), false, false),
            (
                (0..3).chain((65_536..=n).filter(|v| v % 3 != 0)).collect(),
                true,
                false,
            ),
            ((0..3).chain(65_536..=n).collect(), false, true),
        ];
        assert_eq!(n % 3, 2);
        for (mut bitmap, bitset, runs) in bitmaps {
            bitmap.optimize();
            let mut bytes = Vec::new();
            bitmap.serialize_into(&mut bytes).unwrap();
            assert_eq!(bytes.len() > 8192, bitset);
            assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]) == 12347, runs);
            let card = bitmap.len() as u32;
            let file = file_with_dict(n, raw_dict(&[(b"t", card, Stored::Roaring(bytes))]));
            let r = IndexReader::open(&file).unwrap();
            assert!(matches!(
                r.check_section(2),
                Err(IndexError::OrdinalOutOfRange { ordinal, .. }) if ordinal == u64::from(n)
            ));
            bitmap.remove(n);
            let mut bytes = Vec::new();
            bitmap.serialize_into(&mut bytes).unwrap();
            let card = bitmap.len() as u32;
            let file = file_with_dict(n, raw_dict(&[(b"t", card, Stored::Roaring(bytes))]));
            IndexReader::parse(&file).unwrap();
        }
    }

    /// Decodes a crafted bitmap from an unchecked section; a full check of
    /// the section never accepts a bitmap that the decoder refuses.
    fn decode_crafted(
        n: u32,
        cardinality: u32,
        bitmap: Vec<u8>,
    ) -> Result<RoaringBitmap, IndexError> {
        let bytes = file_with_dict(n, raw_dict(&[(b"t", cardinality, Stored::Roaring(bitmap))]));
        let r = IndexReader::open(&bytes).unwrap();
        let decoded = r.field(IndexField::Actor).unwrap().bitmap(0);
        if r.check_section(2).is_ok() && decoded.is_err() {
            // Only the values inside containers are left to the decoder.
            assert!(matches!(
                decoded,
                Err(IndexError::BadBitmap { .. } | IndexError::OrdinalOutOfRange { .. })
            ));
        }
        if decoded.is_ok() {
            r.check_section(2).unwrap();
        }
        decoded
    }

    /// A dictionary of two terms where the second's entry states one value
    /// more than its bitmap holds (checksums intact).
    fn dict_with_a_miscounted_bitmap() -> Vec<u8> {
        file_with_dict(
            10,
            raw_dict(&[
                (b"a", 2, Stored::Roaring(serialized([1, 2]))),
                (b"b", 3, Stored::Roaring(serialized([3, 9]))),
            ]),
        )
    }

    #[test]
    fn a_lookup_check_leaves_each_bitmap_to_its_decoding() {
        let bytes = dict_with_a_miscounted_bitmap();
        let r = IndexReader::open(&bytes).unwrap();
        let whole = r.check_section(2);
        assert!(
            matches!(whole, Err(IndexError::BadBitmap { term_index: 1, .. })),
            "{whole:?}"
        );
        // Entries, terms and the CRC hold: lookups may go on.
        r.check_section_for_lookup(2).unwrap();
        let d = r.field(IndexField::Actor).unwrap();
        assert_eq!(d.find(b"a"), Some(0));
        assert_eq!(d.bitmap(0).unwrap().iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(d.find(b"c"), None);
        // The damaged bitmap is refused when decoded, and by the part of
        // the check the lookup check leaves out, with the same error.
        assert!(matches!(
            d.bitmap(1),
            Err(IndexError::BadBitmap { term_index: 1, .. })
        ));
        assert_eq!(
            r.check_section_bitmaps(2).unwrap_err().to_string(),
            whole.unwrap_err().to_string()
        );
        // Other sections: the lookup check is the whole check, and there
        // are no bitmaps to check.
        for i in [0, 1] {
            r.check_section_for_lookup(i).unwrap();
            r.check_section_bitmaps(i).unwrap();
        }
        // A damaged CRC still fails the lookup check.
        let mut flipped = bytes.clone();
        let section = r.section(2).unwrap();
        flipped[section.offset as usize + 20] ^= 1;
        let r = IndexReader::open(&flipped).unwrap();
        assert!(matches!(
            r.check_section_for_lookup(2),
            Err(IndexError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn crafted_bitmaps_are_rejected() {
        let bad = |n, card, bytes| match decode_crafted(n, card, bytes) {
            Err(IndexError::BadBitmap { reason, .. }) => reason,
            other => panic!("expected BadBitmap, got {other:?}"),
        };
        assert_eq!(decode_crafted(10, 2, serialized([3, 9])).unwrap().len(), 2);
        // Past the segment.
        assert!(matches!(
            decode_crafted(10, 2, serialized([3, 10])),
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 10,
                term_index: Some(0),
                ..
            })
        ));
        assert!(matches!(
            decode_crafted(10, 2, serialized([1, 1 << 20])),
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 1_048_576,
                ..
            })
        ));
        // Cardinality disagrees with the entry.
        bad(10, 3, serialized([3, 9]));
        // One record, as a bitmap.
        bad(10, 1, serialized([3]));
        // Unknown cookie.
        bad(10, 2, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // 65536 run containers declared in a handful of bytes: refused
        // before roaring allocates anything.
        let mut many = 0xffff_0000u32.wrapping_add(12347).to_le_bytes().to_vec();
        many.extend_from_slice(&[0xff; 12]);
        bad(10, 2, many);
        // A no-run header claiming 4 billion containers.
        let mut huge = 12346u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        bad(10, 2, huge);
        // Trailing garbage after a valid bitmap.
        let mut trailing = serialized([3, 4]);
        trailing.push(0);
        bad(10, 2, trailing);
        // Array values out of order: structure fine, values not.
        let mut unsorted = serialized([3, 4]);
        let len = unsorted.len();
        unsorted[len - 4..].copy_from_slice(&[4, 0, 3, 0]);
        bad(10, 2, unsorted);
        // Out of order with a value past the segment before the last one:
        // the structure check reads only the last value, the decoder
        // refuses the order.
        let mut hidden = serialized([3, 4]);
        let len = hidden.len();
        hidden[len - 4..].copy_from_slice(&[40, 0, 4, 0]);
        bad(10, 2, hidden);
        // A container offset that lies.
        let mut lying = serialized([3, 4]);
        lying[12] ^= 1;
        bad(10, 2, lying);
        // Zero containers.
        let mut none = 12346u32.to_le_bytes().to_vec();
        none.extend_from_slice(&0u32.to_le_bytes());
        bad(10, 2, none);
    }

    /// The bytes a writer gives `values`: built by appending, then
    /// run-optimized, then serialized.
    fn canonical_bytes(values: &[u32]) -> Vec<u8> {
        let mut bitmap = RoaringBitmap::from_sorted_iter(values.iter().copied()).unwrap();
        bitmap.optimize();
        serialize(&bitmap)
    }

    /// The values [`walk_canonical`] yields, checked against the count it
    /// returns.
    fn walked(bytes: &[u8]) -> Result<Vec<u32>, &'static str> {
        let mut values = Vec::new();
        let count = walk_canonical(bytes, |v| values.push(v))?;
        assert_eq!(count, values.len() as u64);
        Ok(values)
    }

    /// `runs` runs of three values from `from`, one apart: as a bitset
    /// container (6,144 values at most), 2 + 4 × 2,047 bytes of runs are
    /// smaller than 8,192, 2 + 4 × 2,048 are not. From 2, one run in 16
    /// crosses from a bitset word to the next, and counts once.
    fn runs_of_three(runs: u32, from: u32) -> Vec<u32> {
        (0..runs)
            .flat_map(|k| from + k * 4..from + k * 4 + 3)
            .collect()
    }

    /// Value sets that cover each container kind, each way `optimize` can
    /// go, and the boundaries of containers and of the value range.
    fn value_sets() -> Vec<(&'static str, Vec<u32>)> {
        let key = |k: u32| k << 16;
        vec![
            ("two values", vec![3, 9]),
            ("scattered array", vec![1, 5, 9, 200, 65_000]),
            ("array of long runs", (100..200).chain(300..400).collect()),
            // 2 + 4r == 2c: as small as runs, so it stays an array.
            ("one run of 3 (2 + 4r == 2c)", vec![5, 6, 7]),
            (
                "two runs, 5 values (2 + 4r == 2c)",
                vec![10, 11, 12, 20, 21],
            ),
            ("one run of 4 (2 + 4r < 2c)", vec![5, 6, 7, 8]),
            (
                "4,096 scattered values (largest array)",
                (0..4096).map(|v| v * 2).collect(),
            ),
            (
                "4,097 scattered values (smallest bitset)",
                (0..4097).map(|v| v * 2).collect(),
            ),
            ("sparse bitset", (0..5_000).map(|v| v * 13).collect()),
            ("dense bitset", (0..60_000).filter(|v| v % 7 != 0).collect()),
            ("bitset of one run", (0..50_000).collect()),
            (
                "bitset of 2,047 runs (becomes runs)",
                runs_of_three(2047, 0),
            ),
            (
                "bitset of 2,048 runs (stays a bitset)",
                runs_of_three(2048, 0),
            ),
            (
                "bitset of 2,047 runs, some across words (becomes runs)",
                runs_of_three(2047, 2),
            ),
            (
                "bitset of 2,048 runs, some across words (stays a bitset)",
                runs_of_three(2048, 2),
            ),
            ("full container", (key(3)..key(4)).collect()),
            (
                "around 65,535",
                vec![65_533, 65_534, 65_535, 65_536, 65_537, 131_071],
            ),
            (
                "run across a container boundary",
                (65_000..66_000).collect(),
            ),
            (
                "the last container's last values",
                (u32::MAX - 100..=u32::MAX).collect(),
            ),
            (
                "scattered at the top of the range",
                vec![u32::MAX - 4, u32::MAX - 2, u32::MAX],
            ),
            (
                "three containers with runs (no offsets)",
                (0..3).flat_map(|k| key(k) + 10..key(k) + 500).collect(),
            ),
            (
                "four containers without runs",
                (0..4).flat_map(|k| [key(k), key(k) + 2]).collect(),
            ),
            (
                "five containers of every kind",
                [1, 3]
                    .into_iter()
                    .chain((0..5_000).map(|v| key(1) + v * 13))
                    .chain(key(2)..key(2) + 9_000)
                    .chain([key(7) + 5, key(7) + 6, key(7) + 7])
                    .chain((0..4_500).map(|v| key(9) + v * 2))
                    .collect(),
            ),
            (
                "300 containers, some with runs",
                (0..300)
                    .flat_map(|k| {
                        let len = if k % 37 == 0 { 40 } else { 2 };
                        key(k * 3)..key(k * 3) + len
                    })
                    .collect(),
            ),
            (
                "300 containers without runs",
                (0..300)
                    .flat_map(|k| [key(k * 3), key(k * 3) + 2])
                    .collect(),
            ),
        ]
    }

    #[test]
    fn walk_canonical_accepts_what_writers_write_and_yields_every_value() {
        for (what, values) in value_sets() {
            let bytes = canonical_bytes(&values);
            assert_eq!(walked(&bytes).as_deref(), Ok(&values[..]), "{what}");
        }
        // The edges of `optimize`, and that the sets reach each form.
        let cookie = |values: &[u32]| {
            let bytes = canonical_bytes(values);
            u16::from_le_bytes([bytes[0], bytes[1]])
        };
        assert_eq!(cookie(&[5, 6, 7]), 12346);
        assert_eq!(cookie(&[5, 6, 7, 8]), 12347);
        for from in [0, 2] {
            assert_eq!(cookie(&runs_of_three(2047, from)), 12347);
            assert_eq!(cookie(&runs_of_three(2048, from)), 12346);
            assert_eq!(canonical_bytes(&runs_of_three(2048, from)).len(), 16 + 8192);
        }
    }

    #[test]
    fn walk_canonical_refuses_bitmaps_that_optimize_would_change() {
        let mut changed = 0;
        for (what, values) in value_sets() {
            let plain = RoaringBitmap::from_sorted_iter(values.iter().copied()).unwrap();
            let bytes = serialize(&plain);
            if plain.clone().optimize() {
                changed += 1;
                let reason = walked(&bytes).unwrap_err();
                assert!(
                    reason.starts_with("a container is not in the canonical form"),
                    "{what}: {reason}"
                );
            } else {
                assert_eq!(bytes, canonical_bytes(&values), "{what}");
                assert_eq!(walked(&bytes).as_deref(), Ok(&values[..]), "{what}");
            }
        }
        assert!(changed >= 8, "{changed}");
    }

    /// A bitmap of run containers only, laid out by hand from `(key, runs)`
    /// with runs as `(start, length - 1)`.
    fn run_containers(containers: &[(u16, &[(u16, u16)])]) -> Vec<u8> {
        let n = containers.len();
        let mut out = (12347 | ((n as u32 - 1) << 16)).to_le_bytes().to_vec();
        let mut flags = vec![0u8; n.div_ceil(8)];
        for i in 0..n {
            flags[i / 8] |= 1 << (i % 8);
        }
        out.extend(flags);
        for (key, runs) in containers {
            let count: u32 = runs.iter().map(|&(_, len)| u32::from(len) + 1).sum();
            out.extend(key.to_le_bytes());
            out.extend(((count - 1) as u16).to_le_bytes());
        }
        let payload = |runs: &[(u16, u16)]| {
            let mut out = (runs.len() as u16).to_le_bytes().to_vec();
            for (start, len) in runs {
                out.extend(start.to_le_bytes());
                out.extend(len.to_le_bytes());
            }
            out
        };
        if n >= 4 {
            let mut at = out.len() + 4 * n;
            for (_, runs) in containers {
                out.extend((at as u32).to_le_bytes());
                at += payload(runs).len();
            }
        }
        for (_, runs) in containers {
            out.extend(payload(runs));
        }
        out
    }

    #[test]
    fn walk_canonical_refuses_crafted_bitmaps() {
        let refused = |bytes: &[u8]| {
            // Each is one well-formed structure: only the walk refuses it.
            check_roaring(bytes).unwrap();
            walked(bytes).unwrap_err()
        };
        // The hand layout gives the writer's bytes where runs are
        // canonical.
        let three_runs: Vec<u32> = (0..3).flat_map(|k| k * 10..k * 10 + 5).collect();
        assert_eq!(
            run_containers(&[(0, &[(0, 4), (10, 4), (20, 4)])]),
            canonical_bytes(&three_runs)
        );
        let many: Vec<(u16, &[(u16, u16)])> = (0..5).map(|k| (k * 2, &[(7, 99)][..])).collect();
        let many_values: Vec<u32> = (0..5)
            .flat_map(|k: u32| ((k * 2) << 16) + 7..((k * 2) << 16) + 107)
            .collect();
        assert_eq!(run_containers(&many), canonical_bytes(&many_values));
        let runs_2047: Vec<(u16, u16)> = (0..2047).map(|k| (k * 4, 2)).collect();
        assert_eq!(
            run_containers(&[(0, &runs_2047)]),
            canonical_bytes(&runs_of_three(2047, 0))
        );

        // The run-container cookie without a run container.
        let mut no_flag = (12347u32).to_le_bytes().to_vec();
        no_flag.push(0);
        no_flag.extend([0, 0, 1, 0]);
        no_flag.extend([1, 0, 5, 0]);
        assert_eq!(
            RoaringBitmap::deserialize_from(&no_flag[..])
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [1, 5]
        );
        assert_eq!(
            refused(&no_flag),
            "it has the cookie of a bitmap with run containers, but no run container"
        );

        // Run containers where the array or bitset is no larger: three
        // single values, one run of three, and 2,048 runs of a bitset.
        let runs_2048: Vec<(u16, u16)> = (0..2048).map(|k| (k * 4, 2)).collect();
        for bytes in [
            run_containers(&[(0, &[(1, 0), (5, 0), (9, 0)])]),
            run_containers(&[(0, &[(5, 2)])]),
            run_containers(&[(0, &runs_2048)]),
        ] {
            assert!(RoaringBitmap::deserialize_from(&bytes[..]).is_ok());
            assert!(refused(&bytes).starts_with("a container is not in the canonical form"));
        }

        // Runs that touch (1..=2 then 3) or overlap, or pass 65,535; runs
        // whose lengths do not add up to the declared cardinality.
        let touching = run_containers(&[(0, &[(1, 1), (3, 0), (10, 20)])]);
        assert_eq!(
            refused(&touching),
            "runs of a run container overlap or touch"
        );
        let overlapping = run_containers(&[(0, &[(1, 4), (3, 0), (10, 20)])]);
        assert_eq!(
            refused(&overlapping),
            "runs of a run container overlap or touch"
        );
        let unordered = run_containers(&[(0, &[(100, 20), (1, 20)])]);
        assert_eq!(
            refused(&unordered),
            "runs of a run container overlap or touch"
        );
        let past_the_end = run_containers(&[(0, &[(65_530, 10)])]);
        assert_eq!(
            refused(&past_the_end),
            "a run passes the end of its container"
        );
        let mut miscounted = run_containers(&[(0, &[(1, 30), (40, 30)])]);
        miscounted[7] = 1;
        assert!(refused(&miscounted).starts_with("the runs of a run container hold"));

        // A bitset with a value fewer than its cardinality says (the
        // container starts after 16 bytes of header; value 0 is bit 0).
        let sparse: Vec<u32> = (0..5_000).map(|v| v * 13).collect();
        let mut popcount = canonical_bytes(&sparse);
        assert_eq!(popcount[16] & 1, 1);
        popcount[16] &= !1;
        assert!(refused(&popcount).starts_with("a bitset container holds"));

        // Array values out of order, or repeated.
        let mut unsorted = canonical_bytes(&[3, 4, 9]);
        let len = unsorted.len();
        unsorted[len - 4..].copy_from_slice(&[9, 0, 4, 0]);
        assert_eq!(
            refused(&unsorted),
            "array values are not strictly increasing"
        );
        unsorted[len - 4..].copy_from_slice(&[3, 0, 9, 0]);
        assert_eq!(
            refused(&unsorted),
            "array values are not strictly increasing"
        );

        // What the structure check refuses, the walk refuses the same way.
        assert_eq!(
            walked(&serialize(&RoaringBitmap::new())),
            Err("it has no containers")
        );
        let mut trailing = canonical_bytes(&[3, 4]);
        trailing.push(0);
        assert_eq!(walked(&trailing), Err("bytes follow its last container"));
    }

    /// Sorted sets below 300,000 made of runs and of values spread out at
    /// different steps, so that containers of every kind appear.
    fn mixed_sets() -> impl Strategy<Value = Vec<u32>> {
        let piece = (
            0u32..300_000,
            prop_oneof![1u32..8, 8u32..200, 200u32..6_000],
            prop_oneof![Just(1u32), Just(2u32), Just(3u32), 5u32..40, Just(1_000u32)],
        );
        prop::collection::vec(piece, 1..12).prop_map(|pieces| {
            let mut set = BTreeSet::new();
            for (start, len, step) in pieces {
                set.extend((0..len).map(|i| start + i * step).filter(|&v| v < 300_000));
            }
            set.into_iter().collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn walk_canonical_accepts_exactly_the_optimized_encoding(values in mixed_sets()) {
            let bytes = canonical_bytes(&values);
            let walked_canonical = walked(&bytes);
            prop_assert_eq!(walked_canonical.as_deref(), Ok(&values[..]));
            let plain = RoaringBitmap::from_sorted_iter(values.iter().copied()).unwrap();
            let walked_plain = walked(&serialize(&plain));
            if plain.clone().optimize() {
                prop_assert!(walked_plain.is_err());
            } else {
                prop_assert_eq!(walked_plain.as_deref(), Ok(&values[..]));
            }
        }
    }

    #[test]
    fn ordinals_in_canonical_form_come_from_every_kind_of_term() {
        let n: u32 = 140_000;
        let mut m = Model::new(vec![0; n as usize]);
        m.add(IndexField::Actor, b"solo", [77]);
        m.add(IndexField::Actor, b"pair", [0, n - 1]);
        m.add(
            IndexField::Actor,
            b"runs",
            (1_000..9_000).chain(70_000..71_000),
        );
        m.add(IndexField::Actor, b"even", (0..n).step_by(2));
        m.add(IndexField::Actor, b"odd", (1..n).step_by(2));
        m.add(IndexField::Actor, b"all", 0..n);
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let d = r.field(IndexField::Actor).unwrap();
        for (term, ordinals) in &m.fields[&IndexField::Actor] {
            let index = d.find(term).unwrap();
            let mut got = Vec::new();
            d.for_each_ordinal_canonical(index, |o| got.push(o))
                .unwrap();
            assert!(got.iter().eq(ordinals.iter()), "{term:?}");
        }
        assert!(matches!(
            d.for_each_ordinal_canonical(d.len(), |_| panic!()),
            Err(IndexError::TermIndexOutOfRange {
                index: 6,
                len: 6,
                ..
            })
        ));
    }

    #[test]
    fn ordinals_in_canonical_form_refuse_other_encodings() {
        let walk = |n: u32, cardinality: u32, stored: Stored| {
            let bytes = file_with_dict(n, raw_dict(&[(b"t", cardinality, stored)]));
            let r = IndexReader::open(&bytes).unwrap();
            let d = r.field(IndexField::Actor).unwrap();
            let mut got = Vec::new();
            d.for_each_ordinal_canonical(0, |o| got.push(o))
                .map(|()| got)
        };
        let not_canonical = |result: Result<Vec<u32>, IndexError>| match result {
            Err(IndexError::BadBitmap {
                reason,
                term_index: 0,
                ..
            }) => reason,
            other => panic!("expected BadBitmap, got {other:?}"),
        };
        assert_eq!(walk(10, 1, Stored::Inline(9)).unwrap(), [9]);
        assert_eq!(
            walk(10, 2, Stored::Roaring(canonical_bytes(&[3, 9]))).unwrap(),
            [3, 9]
        );
        // A run of four as an array: decodes, but is not what the writer
        // writes.
        let array = serialized([2, 3, 4, 5]);
        assert!(
            not_canonical(walk(10, 4, Stored::Roaring(array)))
                .starts_with("a container is not in the canonical form")
        );
        // Counts that disagree with the entry; one record as a bitmap; an
        // inline entry of two records.
        assert!(
            not_canonical(walk(10, 3, Stored::Roaring(canonical_bytes(&[3, 9]))))
                .contains("the term entry says 3")
        );
        not_canonical(walk(10, 1, Stored::Roaring(canonical_bytes(&[3]))));
        not_canonical(walk(10, 2, Stored::Inline(3)));
        // Ordinals past the segment, inline or in a bitmap: never passed on.
        assert!(matches!(
            walk(10, 1, Stored::Inline(10)),
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 10,
                term_index: Some(0),
                ..
            })
        ));
        let bytes = file_with_dict(
            10,
            raw_dict(&[(b"t", 4, Stored::Roaring(canonical_bytes(&[3, 9, 10, 12])))]),
        );
        let r = IndexReader::open(&bytes).unwrap();
        let mut got = Vec::new();
        let result = r
            .field(IndexField::Actor)
            .unwrap()
            .for_each_ordinal_canonical(0, |o| got.push(o));
        assert!(matches!(
            result,
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 12,
                record_count: 10,
                ..
            })
        ));
        assert_eq!(got, [3, 9]);
    }
}
