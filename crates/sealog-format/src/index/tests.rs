//! Properties of whole sidecars: what the builder writes the reader reads
//! back, the encoding depends only on the content, and no damage, however
//! made, panics or goes unnoticed.

use crate::index::testing::*;
use crate::index::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(m in model_strategy()) {
        let bytes = m.encode();
        check(&bytes, &m);
    }

    #[test]
    fn encoding_is_deterministic(m in model_strategy(), seed in any::<u64>()) {
        let bytes = m.encode();
        prop_assert_eq!(&m.builder().encode().unwrap(), &bytes);

        // Same content, terms and addresses added in a shuffled order,
        // some twice: adding a record to a term is idempotent.
        #[derive(Clone, Copy)]
        enum Add<'t> {
            Term(IndexField, &'t [u8], u32),
            Hashed(IndexField, &'t [u8], u32),
            Ip(IndexField, IpAddr, u32),
        }
        let mut adds: Vec<Add<'_>> = Vec::new();
        for (&f, terms) in &m.fields {
            for (t, o) in terms {
                adds.extend(o.iter().map(|&o| Add::Term(f, t, o)));
            }
        }
        for (&f, terms) in &m.hashed {
            for (t, o) in terms {
                adds.extend(o.iter().map(|&o| Add::Hashed(f, t, o)));
            }
        }
        for (&f, entries) in &m.ips {
            adds.extend(entries.iter().map(|&(a, o)| Add::Ip(f, a, o)));
        }
        let again: Vec<_> = adds.iter().step_by(2).copied().collect();
        adds.extend(again);
        shuffle(&mut adds, seed);
        let mut b = IndexBuilder::new(m.identity);
        b.set_columns(m.offsets.clone(), m.times.clone()).unwrap();
        for &field in m.fields.keys().rev() {
            b.add_field(field);
        }
        for &field in m.hashed.keys().rev() {
            b.add_hashed_field(field);
        }
        for &field in m.ips.keys().rev() {
            b.add_ip_field(field);
        }
        for add in adds {
            match add {
                Add::Term(f, t, o) => b.add_term(f, t, o).unwrap(),
                Add::Hashed(f, t, o) => m.add_hashed_to(&mut b, f, t, o),
                Add::Ip(f, a, o) => {
                    // A mapped address and its IPv4 address are one.
                    let a = match a {
                        IpAddr::V4(v4) if seed % 2 == 0 => IpAddr::V6(v4.to_ipv6_mapped()),
                        other => other,
                    };
                    b.add_ip(f, a, o).unwrap();
                }
            }
        }
        prop_assert_eq!(&b.encode().unwrap(), &bytes);

        // Same content, whole bitmaps built from ranges.
        let mut without_dicts = m.clone();
        without_dicts.fields.clear();
        let mut b = without_dicts.builder();
        for (&field, terms) in m.fields.iter().rev() {
            b.insert_bitmap(field, b"", &RoaringBitmap::new()).unwrap();
            for (term, ordinals) in terms.iter().rev() {
                let mut bitmap = RoaringBitmap::new();
                for &o in ordinals {
                    bitmap.insert_range(o..=o);
                }
                b.insert_bitmap(field, term, &bitmap).unwrap();
            }
        }
        prop_assert_eq!(&b.encode().unwrap(), &bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        probe(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        count in 0u32..6,
    ) {
        let mut bytes = assemble(identity(3), &[]);
        bytes[60..64].copy_from_slice(&count.to_le_bytes());
        bytes.extend(tail);
        reseal(&mut bytes);
        probe(&bytes);
    }

    #[test]
    fn crafted_sections_never_panic(sections in (0u32..6).prop_flat_map(crafted_sections)) {
        // The offsets column decides the record count.
        let records = (sections[0].2.len() / 4) as u64;
        let bytes = assemble(identity(records), &sections);
        probe(&bytes);
    }

    #[test]
    fn mutated_files_never_panic(
        m in model_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        fix_checksums in any::<bool>(),
    ) {
        let mut bytes = m.encode();
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            let len = cut.index(bytes.len());
            bytes.truncate(len);
        }
        if fix_checksums {
            reseal(&mut bytes);
        }
        probe(&bytes);
    }
}

#[test]
fn small_file_round_trips() {
    let m = small_model();
    check(&m.encode(), &m);
    let empty = Model::new(Vec::new());
    check(&empty.encode(), &empty);
}

#[test]
fn every_single_byte_flip_is_detected() {
    // `parse` fails; `open` fails, or one section fails its check.
    let bytes = small_model().encode();
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            assert!(
                !probe(&damaged),
                "flipping {mask:#04x} at byte {at} went unnoticed"
            );
        }
    }
}

#[test]
fn every_byte_flip_behind_valid_checksums_is_handled() {
    // With the CRCs recomputed, flips reach the structural checks and
    // the bitmap decoder; none may panic, and the damage must show.
    let mut m = small_model();
    m.add(IndexField::Tenant, b"t", 0..5);
    // Adjacent values: a flip can make them equal, which only the
    // decoder sees (the section check reads no array order).
    m.add(IndexField::Tenant, b"u", [2, 3]);
    let bytes = m.encode();
    let (mut parsed, mut refused, mut bad_bitmaps) = (0, 0, 0);
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x02, 0x40, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            reseal(&mut damaged);
            if !probe(&damaged) {
                refused += 1;
                continue;
            }
            parsed += 1;
            let r = IndexReader::parse(&damaged).unwrap();
            for d in r.fields() {
                bad_bitmaps += (0..d.len()).filter(|&i| d.bitmap(i).is_err()).count();
            }
        }
    }
    assert!(
        parsed > 0 && refused > 0 && bad_bitmaps > 0,
        "parsed {parsed}, refused {refused}, bad bitmaps {bad_bitmaps}"
    );
}

#[test]
fn every_byte_flip_in_a_section_fails_only_that_section() {
    let bytes = small_model().encode();
    let r = IndexReader::parse(&bytes).unwrap();
    let sections: Vec<SectionInfo> = r.sections().collect();
    for (i, s) in sections.iter().enumerate() {
        for at in s.offset..s.offset + s.len {
            let mut damaged = bytes.clone();
            damaged[at as usize] ^= 0x04;
            assert!(matches!(
                IndexReader::parse(&damaged),
                Err(IndexError::ChecksumMismatch {
                    region: Region::Section { .. },
                    ..
                })
            ));
            // `open` does not read sections; only section `i` fails.
            let opened = IndexReader::open(&damaged).unwrap();
            exercise_unchecked(&opened);
            for j in 0..sections.len() {
                let result = opened.check_section(j);
                if j == i {
                    assert!(matches!(
                        result,
                        Err(IndexError::ChecksumMismatch { region: Region::Section { index, .. }, .. })
                            if index as usize == i
                    ));
                } else {
                    result.unwrap();
                }
            }
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let bytes = small_model().encode();
    for len in 0..bytes.len() {
        assert!(
            IndexReader::parse(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
        // Truncation moves the end of the file: `open` itself refuses.
        assert!(
            IndexReader::open(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        IndexReader::parse(&longer),
        Err(IndexError::TrailingBytes { len: 1, .. })
    ));
    assert!(matches!(
        IndexReader::open(&longer),
        Err(IndexError::TrailingBytes { len: 1, .. })
    ));
}

#[test]
fn usage_example() {
    let identity = SegmentIdentity {
        record_count: 2,
        ..SegmentIdentity::default()
    };
    let mut builder = IndexBuilder::new(identity);
    builder.push_record(0, 1_700_000_000_000_000_000);
    builder.push_record(120, 1_700_000_000_000_000_500);
    builder.add_term(IndexField::Actor, b"alice", 0).unwrap();
    builder.add_term(IndexField::Actor, b"bob", 1).unwrap();
    builder
        .add_hashed(IndexField::RequestId, b"req-7f3a", 1)
        .unwrap();
    builder
        .add_ip(IndexField::SourceIp, "10.1.2.3".parse().unwrap(), 0)
        .unwrap();
    let bytes = builder.encode().unwrap();

    // A query opens the sidecar cheaply and checks, once, the sections
    // it uses.
    let reader = IndexReader::open(&bytes).unwrap();
    reader.check_identity(&identity).unwrap();
    let ids = reader
        .section_for(SectionKind::Hashed, IndexField::RequestId.id())
        .unwrap();
    reader.check_section(ids).unwrap();
    let requests = reader.hashed(IndexField::RequestId).unwrap();
    assert_eq!(requests.candidate_count(b"req-7f3a"), 1);
    assert_eq!(
        requests.candidates(b"req-7f3a").iter().collect::<Vec<_>>(),
        [1]
    );
    let ips = reader.section_for(SectionKind::Ip, IndexField::SourceIp.id());
    reader.check_section(ips.unwrap()).unwrap();
    let source = reader.ip(IndexField::SourceIp).unwrap();
    let private = source.cidr("10.0.0.0".parse().unwrap(), 8).unwrap();
    assert_eq!(private.iter().collect::<Vec<_>>(), [0]);
    for column in reader.column_sections() {
        reader.check_section(column).unwrap();
    }

    // Verification checks everything.
    let reader = IndexReader::parse(&bytes).unwrap();
    let actors = reader.field(IndexField::Actor).unwrap();
    let bob = actors.find(b"bob").unwrap();
    assert_eq!(actors.cardinality(bob), Some(1));
    assert_eq!(actors.bitmap(bob).unwrap().iter().collect::<Vec<_>>(), [1]);
    assert_eq!(reader.offset(1), Some(120));
    assert_eq!(
        reader
            .time_filter(1_700_000_000_000_000_100, i64::MAX)
            .len(),
        1
    );
}
