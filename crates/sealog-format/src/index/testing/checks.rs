//! Checks of readers against the model, and probes that call every lookup
//! on untrusted bytes.

use roaring::RoaringBitmap;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::{Bound, Range};

use super::model::*;
use crate::index::*;

pub(crate) fn in_bounds(key: &[u8], lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u,
        Bound::Excluded(u) => key < u,
        Bound::Unbounded => true,
    };
    above && below
}

/// Asserts that `got` selects exactly the indexes `want` (contiguous).
pub(crate) fn assert_selects(got: Range<usize>, want: &[usize], what: &str) {
    match (want.first(), want.last()) {
        (Some(&first), Some(&last)) => assert_eq!(got, first..last + 1, "{what}"),
        _ => assert!(got.is_empty(), "{what}: expected nothing, got {got:?}"),
    }
}

pub(crate) fn check(bytes: &[u8], m: &Model) {
    let r = IndexReader::parse(bytes).unwrap();
    assert_eq!(r.identity(), &m.identity);
    r.check_identity(&m.identity).unwrap();
    let n = m.offsets.len();
    assert_eq!(r.record_count(), n as u64);

    // Columns.
    for i in 0..n {
        assert_eq!(r.offset(i as u32), Some(m.offsets[i]));
        assert_eq!(r.event_time(i as u32), Some(m.times[i]));
        assert_eq!(r.ordinal_at(m.offsets[i]), Some(i as u32));
        let between = m.offsets[i] + 1;
        if !m.offsets.contains(&between) {
            assert_eq!(r.ordinal_at(between), None);
        }
    }
    assert_eq!(r.offset(n as u32), None);
    assert_eq!(r.event_time(n as u32), None);
    assert_eq!(r.offset(u32::MAX), None);

    // Time filters.
    let mut bounds: Vec<i64> = m.times.iter().copied().take(5).collect();
    bounds.extend([i64::MIN, i64::MAX, -1, 0, 1, 50]);
    let candidates: RoaringBitmap = (0..n as u32).step_by(3).chain([n as u32 + 7]).collect();
    for &from in &bounds {
        for &to in &bounds {
            let want: RoaringBitmap = (0..n)
                .filter(|&i| from <= m.times[i] && m.times[i] < to)
                .map(|i| i as u32)
                .collect();
            assert_eq!(r.time_filter(from, to), want, "time_filter({from}, {to})");
            let want_in: RoaringBitmap = want.iter().filter(|o| o % 3 == 0).collect();
            assert_eq!(r.time_filter_in(from, to, &candidates), want_in);
        }
    }

    // Dictionaries.
    let present: Vec<IndexField> = r.fields().map(|d| d.field()).collect();
    assert_eq!(present, m.fields.keys().copied().collect::<Vec<_>>());
    for &field in IndexField::ALL {
        assert_eq!(r.field(field).is_some(), m.fields.contains_key(&field));
    }
    for (&field, terms) in &m.fields {
        let d = r.field(field).unwrap();
        assert_eq!(d.field(), field);
        assert_eq!(d.len(), terms.len());
        assert_eq!(d.is_empty(), terms.is_empty());
        let keys: Vec<&[u8]> = terms.keys().map(Vec::as_slice).collect();
        assert_eq!(d.iter().map(|e| e.term).collect::<Vec<_>>(), keys);
        assert_eq!(d.iter().len(), keys.len());
        let mut reversed: Vec<&[u8]> = d.iter().rev().map(|e| e.term).collect();
        reversed.reverse();
        assert_eq!(reversed, keys);
        for (i, (term, ordinals)) in terms.iter().enumerate() {
            assert_eq!(d.term(i), Some(term.as_slice()));
            assert_eq!(d.find(term), Some(i));
            assert_eq!(d.cardinality(i), Some(ordinals.len() as u64));
            let bitmap = d.bitmap(i).unwrap();
            assert_eq!(bitmap.iter().collect::<BTreeSet<_>>(), *ordinals);
        }
        assert_eq!(d.term(terms.len()), None);
        assert_eq!(d.cardinality(terms.len()), None);
        assert!(matches!(
            d.bitmap(terms.len()),
            Err(IndexError::TermIndexOutOfRange { .. })
        ));

        let mut probes: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0xff],
            b"b".to_vec(),
            b"bb".to_vec(),
            b"c".to_vec(),
        ];
        for t in terms.keys().take(6) {
            probes.push(t.clone());
            probes.push([t.as_slice(), &[0]].concat());
            if let Some((&last, init)) = t.split_last() {
                probes.push(init.to_vec());
                probes.push([init, &[last.wrapping_add(1)]].concat());
            }
        }
        for p in &probes {
            assert_eq!(d.find(p), keys.iter().position(|k| *k == p.as_slice()));
            let want: Vec<usize> = (0..keys.len())
                .filter(|&i| keys[i].starts_with(p))
                .collect();
            assert_selects(d.prefix(p), &want, "prefix");
        }
        let all: Vec<usize> = (0..keys.len()).collect();
        let prefix_union = d.union(d.prefix(b"a")).unwrap();
        let want_union: BTreeSet<u32> = terms
            .iter()
            .filter(|(k, _)| k.starts_with(b"a"))
            .flat_map(|(_, o)| o.iter().copied())
            .collect();
        assert_eq!(prefix_union.iter().collect::<BTreeSet<_>>(), want_union);
        let mut bounds: Vec<Bound<&[u8]>> = vec![Bound::Unbounded];
        for p in probes.iter().take(10) {
            bounds.push(Bound::Included(p));
            bounds.push(Bound::Excluded(p));
        }
        for &lower in &bounds {
            for &upper in &bounds {
                let want: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|&i| in_bounds(keys[i], lower, upper))
                    .collect();
                assert_selects(d.range(lower, upper), &want, "range");
            }
        }
        assert_eq!(
            d.iter_range(d.range(Bound::Unbounded, Bound::Unbounded))
                .len(),
            keys.len()
        );
    }

    // Inline singletons.
    for (&field, terms) in &m.fields {
        let d = r.field(field).unwrap();
        for (i, ordinals) in terms.values().enumerate() {
            let inline = d.inline_ordinal(i);
            if ordinals.len() == 1 {
                assert_eq!(inline, ordinals.first().copied());
                assert_eq!(d.bitmap_bytes(i), Some(&[][..]));
            } else {
                assert_eq!(inline, None);
                assert!(d.bitmap_bytes(i).unwrap().len() > 8);
            }
        }
    }

    check_hashed(&r, m);
    check_ips(&r, m);
    check_sections(bytes, &r);
}

pub(crate) fn check_hashed(r: &IndexReader<'_>, m: &Model) {
    assert_eq!(
        r.hashed_fields().map(|h| h.field()).collect::<Vec<_>>(),
        m.hashed.keys().copied().collect::<Vec<_>>()
    );
    for &field in IndexField::ALL {
        assert_eq!(r.hashed(field).is_some(), m.hashed.contains_key(&field));
    }
    for (&field, terms) in &m.hashed {
        let h = r.hashed(field).unwrap();
        assert_eq!(h.field(), field);
        let pairs = m.hashed_pairs(field);
        assert_eq!(h.len(), pairs.len());
        assert_eq!(h.is_empty(), pairs.is_empty());
        let mut probes: Vec<Vec<u8>> = terms.keys().cloned().collect();
        probes.extend([b"".to_vec(), b"zz".to_vec(), vec![0xff; 3]]);
        for term in &probes {
            let key = m.key(term);
            let want: RoaringBitmap = pairs
                .iter()
                .filter(|&&(k, _)| k == key)
                .map(|&(_, o)| o)
                .collect();
            let got = h.candidates_for_key(key);
            assert_eq!(got, want, "candidates of {term:?}");
            assert_eq!(h.candidate_count_for_key(key), want.len());
            if let Some(exact) = terms.get(term) {
                assert!(exact.iter().all(|&o| got.contains(o)));
            }
            if m.hash_mask == u64::MAX {
                assert_eq!(h.candidates(term), want);
                assert_eq!(h.candidate_count(term), want.len());
            }
        }
    }
}

/// What an IP index must return for `lo..=hi` in the unified space.
pub(crate) fn naive_ip_range(
    pairs: &BTreeSet<(u128, u32)>,
    lo: u128,
    hi: u128,
) -> (RoaringBitmap, u64) {
    let hits: Vec<u32> = pairs
        .iter()
        .filter(|&&(a, _)| lo <= a && a <= hi)
        .map(|&(_, o)| o)
        .collect();
    (hits.iter().copied().collect(), hits.len() as u64)
}

/// What a CIDR query must return, by comparing leading bits.
pub(crate) fn naive_cidr(
    pairs: &BTreeSet<(u128, u32)>,
    addr: IpAddr,
    prefix: u8,
) -> (RoaringBitmap, u64) {
    let (q, p) = match addr {
        IpAddr::V4(_) => (unify(addr), u32::from(prefix) + 96),
        IpAddr::V6(_) => (unify(addr), u32::from(prefix)),
    };
    let hits: Vec<u32> = pairs
        .iter()
        .filter(|&&(a, _)| p == 0 || (a ^ q) >> (128 - p) == 0)
        .map(|&(_, o)| o)
        .collect();
    (hits.iter().copied().collect(), hits.len() as u64)
}

pub(crate) fn check_ip_queries(ip: &IpIndex<'_>, pairs: &BTreeSet<(u128, u32)>, probes: &[IpAddr]) {
    assert_eq!(ip.len(), pairs.len());
    assert_eq!(ip.is_empty(), pairs.is_empty());
    let mapped = pairs.iter().filter(|(a, _)| is_mapped(*a)).count();
    assert_eq!(ip.len_v4(), mapped);
    assert_eq!(ip.len_v6(), pairs.len() - mapped);
    for &addr in probes.iter().take(16) {
        let (want, count) = naive_ip_range(pairs, unify(addr), unify(addr));
        assert_eq!(ip.exact(addr), want, "exact {addr}");
        assert_eq!(ip.exact_count(addr), count);
        let prefixes: &[u8] = match addr {
            IpAddr::V4(_) => &[0, 1, 7, 8, 16, 24, 30, 31, 32],
            IpAddr::V6(_) => &[0, 1, 16, 64, 95, 96, 97, 104, 112, 120, 127, 128],
        };
        for &prefix in prefixes {
            let (want, count) = naive_cidr(pairs, addr, prefix);
            assert_eq!(ip.cidr(addr, prefix).unwrap(), want, "{addr}/{prefix}");
            assert_eq!(ip.cidr_count(addr, prefix).unwrap(), count);
        }
        let too_long = match addr {
            IpAddr::V4(_) => 33,
            IpAddr::V6(_) => 129,
        };
        assert!(matches!(
            ip.cidr(addr, too_long),
            Err(IndexError::BadPrefixLength { .. })
        ));
        assert!(ip.cidr_count(addr, u8::MAX).is_err());
    }
    // Ranges between probes, both ways round.
    for &a in probes.iter().take(8) {
        for &b in probes.iter().take(8) {
            let (lo, hi) = (unify(a), unify(b));
            let (want, count) = naive_ip_range(pairs, lo, hi);
            assert_eq!(ip.range_v6(lo, hi), want, "range_v6 {a}..={b}");
            assert_eq!(ip.count_v6(lo, hi), count);
            if let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) {
                assert_eq!(ip.range_v4(a.to_bits(), b.to_bits()), want);
                assert_eq!(ip.count_v4(a.to_bits(), b.to_bits()), count);
            }
        }
    }
}

pub(crate) fn check_ips(r: &IndexReader<'_>, m: &Model) {
    assert_eq!(
        r.ip_fields().map(|i| i.field()).collect::<Vec<_>>(),
        m.ips.keys().copied().collect::<Vec<_>>()
    );
    for &field in IndexField::ALL {
        assert_eq!(r.ip(field).is_some(), m.ips.contains_key(&field));
    }
    for (&field, entries) in &m.ips {
        let ip = r.ip(field).unwrap();
        assert_eq!(ip.field(), field);
        let mut probes: Vec<IpAddr> = entries.iter().map(|&(a, _)| a).take(12).collect();
        probes.extend([
            v4(10, 0, 0, 0),
            v4(0, 0, 0, 0),
            v4(255, 255, 255, 255),
            v6(0),
            v6(u128::MAX),
            v6(0xffff_0a00_0000),
            v6(0x2001_0db8 << 96),
        ]);
        check_ip_queries(&ip, &m.ip_pairs(field), &probes);
    }
}

/// `open` accepts what `parse` accepts, every section checks, and the
/// section lookups agree with the table.
pub(crate) fn check_sections(bytes: &[u8], parsed: &IndexReader<'_>) {
    let r = IndexReader::open(bytes).unwrap();
    assert_eq!(r.section_count(), parsed.section_count());
    for i in 0..r.section_count() {
        r.check_section(i).unwrap();
        let s = r.section(i).unwrap();
        assert_eq!(r.section_for(s.kind, s.field), Some(i));
        assert_eq!(r.sections().nth(i), Some(s));
    }
    assert!(r.section(r.section_count()).is_none());
    assert!(matches!(
        r.check_section(r.section_count()),
        Err(IndexError::SectionIndexOutOfRange { .. })
    ));
    let [offsets, times] = r.column_sections();
    assert_eq!(r.section(offsets).unwrap().kind, SectionKind::Offsets);
    assert_eq!(r.section(times).unwrap().kind, SectionKind::EventTimes);
    assert_eq!(r.section_for(SectionKind::Offsets, 0), Some(offsets));
    assert_eq!(r.section_for(SectionKind::Unknown(77), 0), None);
    for &field in IndexField::ALL {
        let id = field.id();
        assert_eq!(
            r.section_for(SectionKind::TermDict, id).is_some(),
            r.field(field).is_some()
        );
        assert_eq!(
            r.section_for(SectionKind::Hashed, id).is_some(),
            r.hashed(field).is_some()
        );
        assert_eq!(
            r.section_for(SectionKind::Ip, id).is_some(),
            r.ip(field).is_some()
        );
    }
}

/// Calls every lookup on a reader over untrusted bytes whose sections
/// may not have been checked; none may panic, and no result may name
/// an ordinal past the segment.
pub(crate) fn exercise_unchecked(r: &IndexReader<'_>) {
    let n = r.record_count();
    let n32 = u32::try_from(n).unwrap();
    let in_segment = |b: &RoaringBitmap| assert!(b.max().is_none_or(|m| u64::from(m) < n));
    for o in 0..n32.min(300) {
        assert!(r.offset(o).is_some());
        assert!(r.event_time(o).is_some());
        let _ = r.ordinal_at(o);
    }
    assert!(r.offset(n32).is_none());
    in_segment(&r.time_filter(i64::MIN, i64::MAX));
    in_segment(&r.time_filter_in(-5, 5, &(0..n32.min(50)).collect()));
    let _ = r.check_identity(&SegmentIdentity::default());
    let _ = r.column_sections();
    for column in [SectionKind::Offsets, SectionKind::EventTimes] {
        let blocks = r.column_block_count(column);
        for o in [0, n32 / 2, n32.saturating_sub(1), n32, u32::MAX] {
            if let Some((block, _, _)) = r.column_block_of(column, o) {
                let _ = r.check_column_block(column, block);
            }
        }
        let _ = r.check_column_block(column, blocks);
    }
    for s in r.sections() {
        assert!(r.section_for(s.kind, s.field).is_some());
    }
    for d in r.fields() {
        let _ = (d.field(), d.len(), d.is_empty());
        for e in d.iter().take(64) {
            let _ = d.find(e.term);
            let _ = d.prefix(e.term);
            let _ = d.inline_ordinal(e.index);
            let _ = d.bitmap_bytes(e.index);
            if let Ok(bitmap) = d.bitmap(e.index) {
                in_segment(&bitmap);
            }
        }
        for e in d.iter().rev().take(4) {
            let _ = d.cardinality(e.index);
        }
        let _ = d.find(b"a");
        let _ = d.range(Bound::Included(b"a"), Bound::Excluded(b"c"));
        let _ = d.range(Bound::Excluded(b"c"), Bound::Unbounded);
        if let Ok(u) = d.union(0..d.len().min(64)) {
            in_segment(&u);
        }
        assert!(d.bitmap(d.len()).is_err());
    }
    for h in r.hashed_fields() {
        let _ = (h.field(), h.len(), h.is_empty());
        for key in [0, 1, u64::MAX, fnv(b"r1")] {
            in_segment(&h.candidates_for_key(key));
            let _ = h.candidate_count_for_key(key);
        }
        in_segment(&h.candidates(b""));
        let _ = h.candidate_count(b"x");
    }
    for ip in r.ip_fields() {
        let _ = (
            ip.field(),
            ip.len(),
            ip.len_v4(),
            ip.len_v6(),
            ip.is_empty(),
        );
        for (addr, prefix) in [
            (v4(0, 0, 0, 0), 0),
            (v4(10, 0, 0, 0), 8),
            (v4(10, 0, 0, 1), 32),
            (v6(0), 0),
            (v6(0xffff_0a00_0000), 104),
            (v6(0x2001_0db8 << 96), 32),
            (v6(1), 128),
        ] {
            in_segment(&ip.cidr(addr, prefix).unwrap());
            let _ = ip.cidr_count(addr, prefix).unwrap();
            in_segment(&ip.exact(addr));
            let _ = ip.exact_count(addr);
        }
        in_segment(&ip.range_v4(0, u32::MAX));
        in_segment(&ip.range_v6(0, u128::MAX));
        let _ = (ip.count_v4(5, 1), ip.count_v6(u128::MAX, 0));
    }
}

/// Calls every lookup on a fully checked reader; none may panic, and
/// whatever succeeds must be consistent.
pub(crate) fn exercise(r: &IndexReader<'_>) {
    exercise_unchecked(r);
    let n = r.record_count();
    let n32 = u32::try_from(n).unwrap();
    let all = r.time_filter(i64::MIN, i64::MAX);
    for o in 0..n32.min(2_000) {
        assert_eq!(all.contains(o), r.event_time(o) != Some(i64::MAX));
    }
    for o in 1..n32.min(2_000) {
        assert!(r.offset(o) > r.offset(o - 1));
    }
    // In a checked file every block of a column that has checksums checks.
    for column in [SectionKind::Offsets, SectionKind::EventTimes] {
        let blocks = r.column_block_count(column);
        for o in [0, n32 / 2, n32.saturating_sub(1)] {
            if let Some((block, _, _)) = r.column_block_of(column, o) {
                assert!(block < blocks, "block {block} of {blocks}");
                r.check_column_block(column, block).unwrap();
            }
        }
        assert!(r.check_column_block(column, blocks).is_err());
    }
    for d in r.fields() {
        for e in d.iter() {
            assert_eq!(d.find(e.term), Some(e.index));
            assert!(d.prefix(e.term).contains(&e.index));
            assert_eq!(d.inline_ordinal(e.index).is_some(), e.cardinality == 1);
            if let Some(o) = d.inline_ordinal(e.index) {
                assert!(u64::from(o) < n);
            }
            if let Ok(bitmap) = d.bitmap(e.index) {
                assert_eq!(bitmap.len(), e.cardinality);
            }
        }
    }
    for h in r.hashed_fields() {
        for key in [0, 1, u64::MAX, fnv(b"r1")] {
            assert_eq!(
                h.candidates_for_key(key).len(),
                h.candidate_count_for_key(key)
            );
        }
    }
    for ip in r.ip_fields() {
        let v4 = ip.cidr(v4(0, 0, 0, 0), 0).unwrap();
        let all = ip.cidr(v6(0), 0).unwrap();
        assert!(v4.is_subset(&all));
        assert_eq!(ip.count_v4(0, u32::MAX), ip.len_v4() as u64);
        assert_eq!(ip.count_v6(0, u128::MAX), ip.len() as u64);
    }
}

/// Every way in must either refuse `bytes` or handle it: `parse`,
/// `open` with lookups on unchecked sections, and `check_section` of
/// every section. Returns whether `parse` accepted it.
pub(crate) fn probe(bytes: &[u8]) -> bool {
    let parsed = IndexReader::parse(bytes);
    if let Ok(r) = &parsed {
        exercise(r);
    }
    match IndexReader::open(bytes) {
        Ok(r) => {
            exercise_unchecked(&r);
            let all_pass = (0..r.section_count()).all(|i| r.check_section(i).is_ok());
            assert_eq!(all_pass, parsed.is_ok(), "parse and open + check disagree");
            for i in 0..r.section_count() {
                let split =
                    r.check_section_for_lookup(i).is_ok() && r.check_section_bitmaps(i).is_ok();
                assert_eq!(
                    split,
                    r.check_section(i).is_ok(),
                    "section {i}: the lookup and bitmap checks disagree with the whole check"
                );
            }
        }
        Err(_) => assert!(parsed.is_err(), "parse accepted what open refused"),
    }
    parsed.is_ok()
}
