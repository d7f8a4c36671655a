//! Tests of opening and checking a sidecar.

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

#[test]
fn reader_is_a_small_view() {
    // Re-created per query: it must stay cheap to make and to copy.
    assert!(std::mem::size_of::<IndexReader<'_>>() <= 640);
}
