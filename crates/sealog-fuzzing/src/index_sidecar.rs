//! `index_sidecar`: the index sidecar reader (`sealog_format::index`), as
//! the engine's `sidecar` module uses it, and lookups on whatever opens.
//!
//! The input is a sidecar file. It is opened the two ways the engine opens
//! one — cheaply ([`IndexReader::open`], sections checked one by one on
//! first use) and fully ([`IndexReader::parse`]) — and every lookup the
//! query engine makes is run on it: term dictionaries (exact, prefix,
//! range, union, iteration, bitmaps), hashed keys, address ranges and CIDR
//! blocks, the offset and event-time columns and time filters. Probe terms
//! come from the input's own terms and a few fixed ones.
//!
//! Properties: nothing panics, whatever was checked; and for a sidecar
//! that passes `parse`, every term is found where iteration put it, every
//! bitmap's cardinality is the one stored, and no lookup names an ordinal
//! outside the segment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Bound;

use roaring::RoaringBitmap;
use sealog_format::index::{IndexField, IndexReader, SectionKind};

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    if let Ok(reader) = IndexReader::open(data) {
        let _ = reader.check_identity(reader.identity());
        for i in 0..reader.section_count() {
            let _ = reader.section(i);
            let whole = reader.check_section(i).is_ok();
            // The engine's check for lookups, then the bitmaps it leaves
            // out: together they are the whole check.
            let lookup = reader.check_section_for_lookup(i).is_ok();
            let split = lookup && reader.check_section_bitmaps(i).is_ok();
            assert_eq!(
                whole, split,
                "section {i}: whole check and split check differ"
            );
        }
        blocks(&reader);
        // The engine only looks up sections that passed their check, but a
        // lookup on an unchecked one must still be safe.
        lookups(&reader, false);
    }
    if let Ok(reader) = IndexReader::parse(data) {
        lookups(&reader, true);
    }
}

/// The column block checksums, as the engine reads them: the blocks of a
/// few ordinals, and blocks by number, each checked, whatever the section
/// checks said (the engine checks the checksum section first; a check of
/// a block must be safe either way).
fn blocks(reader: &IndexReader<'_>) {
    let count = u32::try_from(reader.record_count()).unwrap_or(u32::MAX);
    for column in [
        SectionKind::Offsets,
        SectionKind::EventTimes,
        SectionKind::Ip,
    ] {
        let _ = reader.column_blocks_section(column);
        let blocks = reader.column_block_count(column);
        for ordinal in [0, 1, count / 2, count.saturating_sub(1), count, u32::MAX] {
            if let Some((block, _, _)) = reader.column_block_of(column, ordinal) {
                let _ = reader.check_column_block(column, block);
            }
        }
        for block in [0, 1, blocks.saturating_sub(1), blocks, u64::MAX] {
            let _ = reader.check_column_block(column, block);
        }
    }
    // Term filters, checked or not: a lookup never fails.
    for field in [IndexField::Actor, IndexField::Action, IndexField::Outcome] {
        if let Some(i) = reader.term_filter_section(field) {
            let _ = reader.check_section(i);
        }
        if let Some(filter) = reader.term_filter(field) {
            for term in [&b""[..], b"a", b"user:alice", &[0xff; 5]] {
                let _ = filter.may_contain(term);
            }
            let _ = filter.len();
        }
    }
    // Hashed index blocks, and lookups that check the blocks they read:
    // where every block and the block-checksum section pass, a lookup
    // gives what the whole section gives (when that passes too).
    for field in [
        IndexField::RequestId,
        IndexField::ResourceId,
        IndexField::Actor,
    ] {
        let crcs = reader.hashed_blocks_section(field);
        let blocks = reader.hashed_block_count(field);
        let mut all_pass = crcs.is_some_and(|i| reader.check_section(i).is_ok());
        for block in 0..blocks.min(64) {
            all_pass &= reader.check_hashed_block(field, block).is_ok();
        }
        for block in [blocks, u64::MAX] {
            let _ = reader.check_hashed_block(field, block);
        }
        let whole = reader
            .section_for(SectionKind::Hashed, field.id())
            .is_some_and(|i| reader.check_section(i).is_ok());
        for term in [&b""[..], b"a", b"req-1", &[0xff; 9]] {
            let checked = reader.hashed_candidates_checked(field, term, &mut |block| {
                reader.check_hashed_block(field, block)
            });
            if let (Ok(Some(got)), true, true, Some(index)) =
                (&checked, all_pass, whole, reader.hashed(field))
            {
                assert_eq!(*got, index.candidates(term), "checked lookup differs");
            }
        }
    }
}

fn lookups(reader: &IndexReader<'_>, checked: bool) {
    let count = reader.record_count();
    let within = |bitmap: &RoaringBitmap| {
        if checked {
            assert!(
                bitmap.max().is_none_or(|m| u64::from(m) < count),
                "a lookup names an ordinal outside the segment"
            );
        }
    };
    for ordinal in [
        0u32,
        1,
        2,
        u32::try_from(count).unwrap_or(u32::MAX).saturating_sub(1),
        u32::MAX,
    ] {
        if let Some(offset) = reader.offset(ordinal) {
            let _ = reader.ordinal_at(offset);
        }
        let _ = reader.event_time(ordinal);
    }
    let all = reader.time_filter(i64::MIN, i64::MAX);
    within(&all);
    within(&reader.time_filter(0, 1_700_000_000_000_000_000));
    within(&reader.time_filter_in(i64::MIN, i64::MAX, &all));
    let probes: [&[u8]; 5] = [b"", b"a", b"user:alice", b"customer.delete", &[0xff; 3]];
    for dict in reader.fields() {
        let mut terms = Vec::new();
        for entry in dict.iter().take(256) {
            terms.push(entry.term);
            if checked {
                assert_eq!(
                    dict.find(entry.term),
                    Some(entry.index),
                    "a term is not found"
                );
                let bitmap = dict.bitmap(entry.index);
                match &bitmap {
                    Ok(b) => {
                        assert_eq!(b.len(), entry.cardinality, "a bitmap's cardinality differs");
                        within(b);
                    }
                    Err(e) => panic!("a checked dictionary has a bad bitmap: {e}"),
                }
            } else {
                let _ = dict.bitmap(entry.index);
            }
            let _ = dict.inline_ordinal(entry.index);
            let _ = dict.bitmap_bytes(entry.index);
        }
        for probe in probes.iter().copied().chain(terms.iter().copied().take(8)) {
            let _ = dict.find(probe);
            let range = dict.prefix(probe);
            if let Ok(b) = dict.union(range.clone()) {
                within(&b);
            }
            let _ = dict.iter_range(range).take(8).count();
            let r = dict.range(Bound::Included(probe), Bound::Excluded(b"\xff\xff"));
            let _ = dict.union(r);
            let _ = dict.range(Bound::Excluded(probe), Bound::Unbounded);
            let _ = dict.term(0);
            let _ = dict.cardinality(usize::MAX);
        }
        let _ = dict.len();
        let _ = dict.field();
    }
    for hashed in reader.hashed_fields() {
        for probe in probes {
            within(&hashed.candidates(probe));
            let _ = hashed.candidate_count(probe);
        }
        within(&hashed.candidates_for_key(0));
        let _ = hashed.candidate_count_for_key(u64::MAX);
        let _ = hashed.len();
    }
    for field in IndexField::ALL {
        let _ = reader.field(*field);
        let _ = reader.hashed(*field);
        let _ = reader.ip(*field);
    }
    for ip in reader.ip_fields() {
        within(&ip.range_v4(0, u32::MAX));
        within(&ip.range_v6(0, u128::MAX));
        within(&ip.range_v4(u32::MAX, 0));
        let _ = ip.count_v4(10, 20);
        let _ = ip.count_v6(0, 1);
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        for addr in [v4, v6, mapped] {
            within(&ip.exact(addr));
            let _ = ip.exact_count(addr);
            for prefix in [0u8, 8, 32, 33, 96, 104, 128, 129, 255] {
                if let Ok(b) = ip.cidr(addr, prefix) {
                    within(&b);
                }
                let _ = ip.cidr_count(addr, prefix);
            }
        }
        let _ = (ip.len(), ip.len_v4(), ip.len_v6());
    }
    for s in reader.sections() {
        let _ = reader.section_for(s.kind, s.field);
    }
    let _ = reader.column_sections();
}
