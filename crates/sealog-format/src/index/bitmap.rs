//! Roaring bitmaps of ordinals: the structure check of a term's bitmap in
//! the portable serialization format, and the building of result sets.
//!
//! [`check_roaring`] walks a serialized bitmap's headers without
//! allocating, so that a damaged bitmap is refused before the `roaring`
//! crate allocates anything for it; the values inside containers are left
//! to the decoder. The format is the one `docs/format.md` describes in
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

/// Checks that `bytes` is exactly one well-formed, non-empty roaring bitmap
/// in the portable format: known cookie, sorted container keys, offsets
/// that match, every container's payload present, nothing after the last;
/// and finds the largest value of the last container. Does not allocate;
/// the order of values inside containers, and bitset cardinalities, are
/// checked when roaring decodes the bitmap.
fn check_roaring(bytes: &[u8]) -> Result<RoaringShape, &'static str> {
    const SHORT: &str = "it ends inside its own structure";
    let mut r = Cursor::new(bytes);
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
    let descriptions = r.take(size * 4).ok_or(SHORT)?;
    let offsets = if has_offsets {
        r.take(size * 4).ok_or(SHORT)?
    } else {
        &[]
    };
    let (descriptions, _) = descriptions.as_chunks::<4>();
    let (offsets, _) = offsets.as_chunks::<4>();

    let mut cardinality = 0u64;
    let mut previous_key: Option<u16> = None;
    let mut last_key = 0u16;
    let mut last = Payload::Array(&[]);
    for (i, d) in descriptions.iter().enumerate() {
        let key = u16::from_le_bytes([d[0], d[1]]);
        let count = u64::from(u16::from_le_bytes([d[2], d[3]])) + 1;
        if previous_key.is_some_and(|prev| key <= prev) {
            return Err("container keys are not strictly increasing");
        }
        previous_key = Some(key);
        last_key = key;
        if has_offsets {
            let declared = offsets.get(i).map(|o| u32::from_le_bytes(*o));
            if declared.map(u64::from) != Some(to_u64(r.pos)) {
                return Err("a container offset does not match the layout");
            }
        }
        let is_run = run_flags
            .get(i / 8)
            .is_some_and(|flags| flags >> (i % 8) & 1 == 1);
        if is_run {
            let runs = r.u16().ok_or(SHORT)?;
            if runs == 0 {
                return Err("a run container has no runs");
            }
            last = Payload::Runs(r.take(usize::from(runs) * 4).ok_or(SHORT)?);
        } else if count <= ROARING_ARRAY_LIMIT {
            let len = usize::from(u16::try_from(count).unwrap_or(u16::MAX)) * 2;
            last = Payload::Array(r.take(len).ok_or(SHORT)?);
        } else {
            last = Payload::Bitset(r.take(ROARING_BITSET_BYTES).ok_or(SHORT)?);
        }
        cardinality += count;
    }
    if !r.rest.is_empty() {
        return Err("bytes follow its last container");
    }
    Ok(RoaringShape {
        cardinality,
        max: (u64::from(last_key) << 16) + u64::from(last.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;
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
}
