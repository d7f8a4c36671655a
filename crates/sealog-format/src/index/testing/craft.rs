//! An independent writer of sidecars, section by section, laid out as
//! `docs/format.md` documents it, for crafted and damaged files.

use proptest::prelude::*;
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::*;
use crate::index::*;

/// Lays out a sidecar from raw sections, following the documented
/// layout rather than the encoder's code.
pub(crate) fn assemble(id: SegmentIdentity, sections: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
    let table_len = 24 * sections.len();
    let mut out = vec![0u8; 72 + table_len];
    let mut table = Vec::new();
    for (kind, field, data) in sections {
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        table.extend_from_slice(&kind.to_le_bytes());
        table.extend_from_slice(&field.to_le_bytes());
        table.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        table.extend_from_slice(&(out.len() as u64).to_le_bytes());
        table.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
    }
    out[72..72 + table_len].copy_from_slice(&table);
    let mut h = Vec::new();
    h.extend_from_slice(b"SEALOGIX");
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&72u16.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&id.store_id);
    h.extend_from_slice(&id.segment_no.to_le_bytes());
    h.extend_from_slice(&id.first_seq.to_le_bytes());
    h.extend_from_slice(&id.record_count.to_le_bytes());
    h.extend_from_slice(&id.segment_footer_crc.to_le_bytes());
    h.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(&table).to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    out[..72].copy_from_slice(&h);
    out
}

/// How a crafted dictionary entry stores its records.
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// `bitmap_offset` = the ordinal, `bitmap_len` = 0.
    Inline(u32),
    /// Serialized roaring bytes in the bitmap heap.
    Roaring(Vec<u8>),
}

/// A dictionary section from (term, cardinality, postings) triples,
/// laid out as documented.
pub(crate) fn raw_dict(terms: &[(&[u8], u32, Stored)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut heap = Vec::new();
    let mut bitmaps = Vec::new();
    for (term, cardinality, stored) in terms {
        entries.extend_from_slice(&(heap.len() as u32).to_le_bytes());
        entries.extend_from_slice(&(term.len() as u32).to_le_bytes());
        entries.extend_from_slice(&cardinality.to_le_bytes());
        match stored {
            Stored::Inline(ordinal) => {
                entries.extend_from_slice(&ordinal.to_le_bytes());
                entries.extend_from_slice(&0u32.to_le_bytes());
            }
            Stored::Roaring(bitmap) => {
                entries.extend_from_slice(&(bitmaps.len() as u32).to_le_bytes());
                entries.extend_from_slice(&(bitmap.len() as u32).to_le_bytes());
                bitmaps.extend_from_slice(bitmap);
            }
        }
        heap.extend_from_slice(term);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(terms.len() as u32).to_le_bytes());
    out.extend_from_slice(&(heap.len() as u32).to_le_bytes());
    out.extend_from_slice(&(bitmaps.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend(entries);
    out.extend(heap);
    out.extend(bitmaps);
    out
}

/// A hashed index section from (key, ordinal) pairs, in the given order.
pub(crate) fn raw_hashed(pairs: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (key, _) in pairs {
        out.extend_from_slice(&key.to_le_bytes());
    }
    for (_, ordinal) in pairs {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    out
}

/// An IP index section from (address, ordinal) pairs, in the given order.
pub(crate) fn raw_ip(v4s: &[(Ipv4Addr, u32)], v6s: &[(Ipv6Addr, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(v4s.len() as u32).to_le_bytes());
    out.extend_from_slice(&(v6s.len() as u32).to_le_bytes());
    for (a, _) in v4s {
        // The address as a number, stored little-endian: the octets
        // reversed.
        let mut octets = a.octets();
        octets.reverse();
        out.extend_from_slice(&octets);
    }
    for (_, ordinal) in v4s {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    for (a, _) in v6s {
        out.extend_from_slice(&a.octets());
    }
    for (_, ordinal) in v6s {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    out
}

pub(crate) fn serialized(values: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let bitmap: RoaringBitmap = values.into_iter().collect();
    let mut out = Vec::new();
    bitmap.serialize_into(&mut out).unwrap();
    out
}

pub(crate) fn columns(n: u32) -> [(u16, u16, Vec<u8>); 2] {
    let offsets = (0..n).flat_map(|i| (i * 10).to_le_bytes()).collect();
    let times = (0..n).flat_map(|i| i64::from(i).to_le_bytes()).collect();
    [(KIND_OFFSETS, 0, offsets), (KIND_EVENT_TIMES, 0, times)]
}

/// A file with `n` records and one Actor dictionary.
pub(crate) fn file_with_dict(n: u32, dict: Vec<u8>) -> Vec<u8> {
    let mut sections = columns(n).to_vec();
    sections.push((KIND_TERM_DICT, IndexField::Actor.id(), dict));
    assemble(identity(u64::from(n)), &sections)
}

/// Recomputes every CRC of a (possibly mutated) file so that mutations
/// reach the structural checks behind the checksums.
pub(crate) fn reseal(bytes: &mut [u8]) {
    if bytes.len() < 72 {
        return;
    }
    let mut header_len = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
    if header_len < 72 || header_len % 8 != 0 || header_len > bytes.len() {
        header_len = 72;
    }
    let count = u32::from_le_bytes(bytes[60..64].try_into().unwrap()) as usize;
    let table_end = (header_len + count.saturating_mul(24)).min(bytes.len());
    let table_end = table_end - (table_end - header_len) % 24;
    for at in (header_len..table_end).step_by(24) {
        let offset = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        let len = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
        if let Some(end) = offset.checked_add(len)
            && end <= bytes.len() as u64
        {
            let crc = crc32fast::hash(&bytes[offset as usize..end as usize]);
            bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let table_crc = crc32fast::hash(&bytes[header_len..table_end]);
    bytes[64..68].copy_from_slice(&table_crc.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..header_len - 4]);
    bytes[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
}

/// A file with `n` records and one section of `kind` for `field`.
pub(crate) fn file_with(n: u32, kind: u16, field: IndexField, data: Vec<u8>) -> Vec<u8> {
    let mut sections = columns(n).to_vec();
    sections.push((kind, field.id(), data));
    assemble(identity(u64::from(n)), &sections)
}

/// A small but complete sidecar: padding, four dictionaries (one
/// empty), run, array and inline postings, two hashed indexes (one
/// empty, one with a shared term), an IP index with IPv4, IPv4-mapped
/// and IPv6 addresses.
pub(crate) fn small_model() -> Model {
    let mut m = Model::new(vec![30, -5, 12, 30, i64::MAX]);
    m.add(IndexField::Actor, b"alice", [0, 3]);
    m.add(IndexField::Actor, b"bob", [1, 4]);
    m.add(IndexField::Actor, b"carol", [2]);
    m.add(IndexField::Action, b"read", [3]);
    m.add(IndexField::Outcome, b"ok", [0, 1, 2, 3, 4]);
    m.fields.entry(IndexField::Tenant).or_default();
    for o in 0..5u32 {
        m.add_hashed(IndexField::RequestId, format!("r{o}").as_bytes(), [o]);
    }
    m.add_hashed(IndexField::RequestId, b"shared", [1, 3]);
    m.hashed.entry(IndexField::ResourceId).or_default();
    for (addr, o) in [
        (v4(10, 0, 0, 1), 0),
        (IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped()), 1),
        (v6(0x2001_0db8 << 96 | 1), 2),
        (v4(10, 0, 0, 1), 3),
        (v4(192, 168, 1, 1), 4),
    ] {
        m.add_ip(IndexField::SourceIp, addr, o);
    }
    m
}

/// Shuffles `items` deterministically from `seed` (xorshift).
pub(crate) fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

/// Sections of every kind with arbitrary contents, laid out correctly
/// (sorted table, right offsets, CRCs that match), so that the bytes
/// reach the structural checks.
pub(crate) fn crafted_sections(n: u32) -> impl Strategy<Value = Vec<(u16, u16, Vec<u8>)>> {
    let ordinal = 0..n + 2;
    let stored = prop_oneof![
        ordinal.clone().prop_map(Stored::Inline),
        proptest::collection::btree_set(ordinal.clone(), 1..4)
            .prop_map(|set| Stored::Roaring(serialized(set))),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Stored::Roaring),
    ];
    let dict =
        proptest::collection::vec((term_strategy(), 0u32..4, stored), 0..5).prop_map(|terms| {
            let refs: Vec<(&[u8], u32, Stored)> = terms
                .iter()
                .map(|(t, c, s)| (t.as_slice(), *c, s.clone()))
                .collect();
            raw_dict(&refs)
        });
    let hashed = proptest::collection::vec((0u64..4, ordinal.clone()), 0..8)
        .prop_map(|pairs| raw_hashed(&pairs));
    let ip = (
        proptest::collection::vec((any::<u32>(), ordinal.clone()), 0..6),
        proptest::collection::vec((ip_strategy(), ordinal), 0..6),
    )
        .prop_map(|(v4s, v6s)| {
            let v4s: Vec<(Ipv4Addr, u32)> = v4s
                .into_iter()
                .map(|(a, o)| (Ipv4Addr::from(a), o))
                .collect();
            let v6s: Vec<(Ipv6Addr, u32)> = v6s
                .into_iter()
                .map(|(a, o)| match a {
                    IpAddr::V4(a) => (a.to_ipv6_mapped(), o),
                    IpAddr::V6(a) => (a, o),
                })
                .collect();
            raw_ip(&v4s, &v6s)
        });
    let garbage = proptest::collection::vec(any::<u8>(), 0..40);
    let section = prop_oneof![
        (1u16..=10, dict).prop_map(|(f, d)| (KIND_TERM_DICT, f, d)),
        (1u16..=10, hashed).prop_map(|(f, d)| (KIND_HASHED, f, d)),
        (1u16..=10, ip).prop_map(|(f, d)| (KIND_IP, f, d)),
        (3u16..=6, 0u16..=10, garbage).prop_map(|(k, f, d)| (k, f, d)),
    ];
    proptest::collection::vec(section, 0..6).prop_map(move |sections| {
        let mut sorted: BTreeMap<(u16, u16), Vec<u8>> = BTreeMap::new();
        for (kind, field, data) in sections {
            sorted.insert((kind, field), data);
        }
        let mut all = columns(n).to_vec();
        all.extend(sorted.into_iter().map(|((k, f), d)| (k, f, d)));
        all
    })
}
