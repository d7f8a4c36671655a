//! A naive model of a sidecar's content (maps and sets, no layout), and
//! proptest strategies that generate models.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::index::*;

type Terms = BTreeMap<Vec<u8>, BTreeSet<u32>>;

/// A naive model of a sidecar's content.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) identity: SegmentIdentity,
    pub(crate) offsets: Vec<u32>,
    pub(crate) times: Vec<i64>,
    /// Term dictionaries.
    pub(crate) fields: BTreeMap<IndexField, Terms>,
    /// Hashed indexes, by term.
    pub(crate) hashed: BTreeMap<IndexField, Terms>,
    /// Keys of hashed terms are `fnv(term) & hash_mask`: a narrow mask
    /// forces collisions.
    pub(crate) hash_mask: u64,
    /// IP indexes: (address as given, ordinal), repeats allowed.
    pub(crate) ips: BTreeMap<IndexField, Vec<(IpAddr, u32)>>,
}

pub(crate) fn identity(record_count: u64) -> SegmentIdentity {
    SegmentIdentity {
        store_id: *b"sealog-store-id!",
        segment_no: 42,
        first_seq: 1_000,
        record_count,
        segment_footer_crc: 0xdead_beef,
    }
}

/// FNV-1a 64, written independently of `term_key`.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// An address in one space where IPv4 `a.b.c.d` is `::ffff:a.b.c.d`.
pub(crate) fn unify(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => 0xffff_0000_0000 | u128::from(u32::from_be_bytes(v4.octets())),
        IpAddr::V6(v6) => u128::from_be_bytes(v6.octets()),
    }
}

pub(crate) fn is_mapped(a: u128) -> bool {
    a >> 32 == 0xffff
}

impl Model {
    pub(crate) fn new(times: Vec<i64>) -> Model {
        let offsets = (0..times.len() as u32).map(|i| 16 + i * 100).collect();
        Model {
            identity: identity(times.len() as u64),
            offsets,
            times,
            fields: BTreeMap::new(),
            hashed: BTreeMap::new(),
            hash_mask: u64::MAX,
            ips: BTreeMap::new(),
        }
    }

    pub(crate) fn add(
        &mut self,
        field: IndexField,
        term: &[u8],
        ordinals: impl IntoIterator<Item = u32>,
    ) {
        let terms = self.fields.entry(field).or_default();
        let set: BTreeSet<u32> = ordinals.into_iter().collect();
        if !set.is_empty() {
            terms.entry(term.to_vec()).or_default().extend(set);
        }
    }

    pub(crate) fn add_hashed(
        &mut self,
        field: IndexField,
        term: &[u8],
        ordinals: impl IntoIterator<Item = u32>,
    ) {
        let terms = self.hashed.entry(field).or_default();
        let set: BTreeSet<u32> = ordinals.into_iter().collect();
        if !set.is_empty() {
            terms.entry(term.to_vec()).or_default().extend(set);
        }
    }

    pub(crate) fn add_ip(&mut self, field: IndexField, addr: IpAddr, ordinal: u32) {
        self.ips.entry(field).or_default().push((addr, ordinal));
    }

    pub(crate) fn key(&self, term: &[u8]) -> u64 {
        fnv(term) & self.hash_mask
    }

    /// Distinct (key, ordinal) pairs of a hashed field.
    pub(crate) fn hashed_pairs(&self, field: IndexField) -> BTreeSet<(u64, u32)> {
        self.hashed[&field]
            .iter()
            .flat_map(|(t, o)| o.iter().map(move |&o| (self.key(t), o)))
            .collect()
    }

    /// Distinct (unified address, ordinal) pairs of an IP field.
    pub(crate) fn ip_pairs(&self, field: IndexField) -> BTreeSet<(u128, u32)> {
        self.ips[&field]
            .iter()
            .map(|&(a, o)| (unify(a), o))
            .collect()
    }

    pub(crate) fn add_hashed_to(
        &self,
        b: &mut IndexBuilder,
        field: IndexField,
        term: &[u8],
        o: u32,
    ) {
        if self.hash_mask == u64::MAX {
            b.add_hashed(field, term, o).unwrap();
        } else {
            b.add_hashed_key(field, self.key(term), o).unwrap();
        }
    }

    pub(crate) fn builder(&self) -> IndexBuilder {
        let mut b = IndexBuilder::new(self.identity);
        for (&o, &t) in self.offsets.iter().zip(&self.times) {
            b.push_record(o, t);
        }
        for (&field, terms) in &self.fields {
            b.add_field(field);
            for (term, ordinals) in terms {
                for &o in ordinals {
                    b.add_term(field, term, o).unwrap();
                }
            }
        }
        for (&field, terms) in &self.hashed {
            b.add_hashed_field(field);
            for (term, ordinals) in terms {
                for &o in ordinals {
                    self.add_hashed_to(&mut b, field, term, o);
                }
            }
        }
        for (&field, entries) in &self.ips {
            b.add_ip_field(field);
            for &(addr, o) in entries {
                b.add_ip(field, addr, o).unwrap();
            }
        }
        b
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.builder().encode().unwrap()
    }
}

pub(crate) fn term_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(b'a'..=b'd', 0..5),
        3 => proptest::collection::vec(any::<u8>(), 0..6),
        1 => Just(Vec::new()),
        1 => proptest::collection::vec(prop_oneof![Just(0u8), Just(0xff)], 1..4),
        1 => proptest::collection::vec(b'a'..=b'b', MAX_TERM_LEN - 2..=MAX_TERM_LEN),
    ]
}

pub(crate) fn ordinals_strategy(n: usize) -> BoxedStrategy<BTreeSet<u32>> {
    if n == 0 {
        return Just(BTreeSet::new()).boxed();
    }
    let n = n as u32;
    prop_oneof![
        2 => (0..n).prop_map(|o| BTreeSet::from([o])),
        3 => proptest::collection::btree_set(0..n, 1..20),
        2 => (0..n, 0..n).prop_map(|(a, b)| (a.min(b)..=a.max(b)).collect()),
    ]
    .boxed()
}

pub(crate) fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

pub(crate) fn v6(bits: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(bits))
}

/// Addresses that share prefixes, sit at the edges of the IPv4-mapped
/// block, or are anywhere.
pub(crate) fn ip_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, 0u8..4).prop_map(|(b, c, d)| v4(10, b, c, d)),
        2 => any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        1 => prop_oneof![Just(v4(0, 0, 0, 0)), Just(v4(255, 255, 255, 255))],
        3 => (0u8..3, 0u8..4, 0u8..4)
            .prop_map(|(b, c, d)| IpAddr::V6(Ipv4Addr::new(10, b, c, d).to_ipv6_mapped())),
        2 => any::<u128>().prop_map(v6),
        3 => (0u128..4, 0u128..4).prop_map(|(s, h)| v6(0x2001_0db8 << 96 | s << 64 | h)),
        2 => prop_oneof![
            Just(v6(0)),
            Just(v6(1)),
            Just(v6(u128::MAX)),
            Just(v6(0xffff_0000_0000)),
            Just(v6(0xffff_ffff_ffff)),
            Just(v6(0xfffe_ffff_ffff)),
            Just(v6(0x1_0000_0000_0000)),
            Just(v6(0xffff_0a00_0001)),
        ],
    ]
}

pub(crate) fn time_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -100i64..100,
        2 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

prop_compose! {
    pub(crate) fn model_strategy()(n in 0usize..300)(
        start in 0u32..1000,
        gaps in proptest::collection::vec(1u32..2000, n),
        times in proptest::collection::vec(time_strategy(), n),
        fields in proptest::sample::subsequence(IndexField::ALL.to_vec(), 0..=9),
        terms in proptest::collection::vec(
            proptest::collection::vec((term_strategy(), ordinals_strategy(n)), 0..16),
            9,
        ),
        hashed_fields in proptest::sample::subsequence(
            vec![IndexField::Actor, IndexField::RequestId, IndexField::ResourceId],
            0..=3,
        ),
        hashed_terms in proptest::collection::vec(
            proptest::collection::vec((term_strategy(), ordinals_strategy(n)), 0..24),
            3,
        ),
        hash_mask in prop_oneof![4 => Just(u64::MAX), 1 => Just(0u64), 1 => Just(0x7u64)],
        ip_fields in proptest::sample::subsequence(
            vec![IndexField::SourceIp, IndexField::ResourceId],
            0..=2,
        ),
        ips in proptest::collection::vec(
            proptest::collection::vec((ip_strategy(), ordinals_strategy(n)), 0..24),
            2,
        ),
    ) -> Model {
        let mut model = Model::new(times);
        model.hash_mask = hash_mask;
        let mut offset = start;
        for (slot, gap) in model.offsets.iter_mut().zip(gaps) {
            *slot = offset;
            offset += gap;
        }
        for (field, terms) in fields.into_iter().zip(terms) {
            model.fields.entry(field).or_default();
            for (term, ordinals) in terms {
                model.add(field, &term, ordinals);
            }
        }
        for (field, terms) in hashed_fields.into_iter().zip(hashed_terms) {
            model.hashed.entry(field).or_default();
            for (term, ordinals) in terms {
                model.add_hashed(field, &term, ordinals);
            }
        }
        for (field, entries) in ip_fields.into_iter().zip(ips) {
            model.ips.entry(field).or_default();
            for (addr, ordinals) in entries {
                for o in ordinals {
                    model.add_ip(field, addr, o);
                }
            }
        }
        model
    }
}
