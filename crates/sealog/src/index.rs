//! Secondary indexes: what is indexed, and the in-memory index of a segment.
//!
//! Every record contributes keys to three kinds of index, all mapping to the
//! record's *ordinal* (its position in its segment):
//!
//! - **term dictionaries** (term → roaring bitmap of ordinals) for fields
//!   with few distinct values: actor (`id ‖ 0x00 ‖ type`, so an id alone is
//!   a prefix), action, resource type, outcome and tenant;
//! - **exact-match** keys for nearly-unique values: request id and resource
//!   id, by their 64-bit FNV-1a key (a lookup gives candidates, which the
//!   executor confirms against the records);
//! - **addresses** for the source IP, queried exactly or by CIDR range
//!   (IPv4-mapped IPv6 addresses count as IPv4).
//!
//! An open segment keeps a [`MemIndex`] in memory, brought up to date with
//! the committed records when a query or the sealer needs it (so indexing
//! never slows the commit path). Sealed segments keep theirs in a sidecar
//! file. Indexes are derived data: they can always be rebuilt from the
//! records, and verification never consults them.

use std::collections::HashMap;
use std::net::IpAddr;

use roaring::RoaringBitmap;
use sealog_format::record::RecordView;

use crate::error::Result;
use crate::query::{IpRange, canonical};

/// Fields indexed with a term dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DictField {
    Actor = 0,
    Action = 1,
    ResourceType = 2,
    Outcome = 3,
    Tenant = 4,
}

impl DictField {
    pub(crate) const ALL: [DictField; 5] = [
        DictField::Actor,
        DictField::Action,
        DictField::ResourceType,
        DictField::Outcome,
        DictField::Tenant,
    ];
}

/// Fields indexed for exact matches only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ExactField {
    RequestId = 0,
    ResourceId = 1,
}

impl ExactField {
    pub(crate) const ALL: [ExactField; 2] = [ExactField::RequestId, ExactField::ResourceId];
}

/// The actor's dictionary term: `id ‖ 0x00 ‖ type` (ids cannot contain NUL).
pub(crate) fn actor_term(id: &str, kind: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(id.as_bytes());
    out.push(0);
    out.extend_from_slice(kind.as_bytes());
}

/// One key a record contributes to its segment's index.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IndexKey<'a> {
    /// A dictionary term.
    Dict(DictField, &'a [u8]),
    /// An exact-match value (stored by its hash).
    Exact(ExactField, &'a [u8]),
    /// The source address, canonical (IPv4-mapped IPv6 as IPv4).
    Ip(IpAddr),
}

/// Calls `key` with every key `record` contributes, in a fixed order.
pub(crate) fn for_each_key(
    record: &RecordView<'_>,
    scratch: &mut Vec<u8>,
    mut key: impl FnMut(IndexKey<'_>),
) {
    actor_term(record.actor_id, record.actor_type, scratch);
    key(IndexKey::Dict(DictField::Actor, scratch));
    key(IndexKey::Dict(DictField::Action, record.action.as_bytes()));
    key(IndexKey::Dict(
        DictField::ResourceType,
        record.resource_type.as_bytes(),
    ));
    key(IndexKey::Dict(
        DictField::Outcome,
        record.outcome.as_str().as_bytes(),
    ));
    if let Some(t) = record.tenant {
        key(IndexKey::Dict(DictField::Tenant, t.as_bytes()));
    }
    if let Some(r) = record.request_id {
        key(IndexKey::Exact(ExactField::RequestId, r.as_bytes()));
    }
    if let Some(r) = record.resource_id {
        key(IndexKey::Exact(ExactField::ResourceId, r.as_bytes()));
    }
    if let Some(a) = record.source_ip {
        key(IndexKey::Ip(canonical(a)));
    }
}

/// How to pick terms from a dictionary.
pub(crate) enum TermSelect<'a> {
    /// One term.
    Exact(&'a [u8]),
    /// Every term starting with these bytes.
    Prefix(&'a [u8]),
    /// Every term starting with `prefix` for which `matches` holds.
    Matching {
        prefix: &'a [u8],
        matches: &'a dyn Fn(&[u8]) -> bool,
    },
}

/// What the query planner needs from a segment's index.
pub(crate) trait IndexView {
    /// Records covered by the index.
    fn len(&self) -> u64;
    /// Union of the bitmaps of the selected terms.
    fn dict(&self, field: DictField, select: &TermSelect<'_>) -> Result<RoaringBitmap>;
    /// Ordinals that may have this exact value (a superset; the planner
    /// checks each record).
    fn exact(&self, field: ExactField, value: &[u8]) -> Result<RoaringBitmap>;
    /// Ordinals whose source address is in the range.
    fn ip(&self, range: IpRange) -> Result<RoaringBitmap>;
    /// The event time of a record.
    fn event_time(&self, ordinal: u32) -> Option<i64>;
    /// Ordinals with `from <= event time < to` (among `within`, if given).
    fn time_filter(&self, from: i64, to: i64, within: Option<&RoaringBitmap>) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let mut check = |o: u32| {
            if self.event_time(o).is_some_and(|t| (from..to).contains(&t)) {
                out.insert(o);
            }
        };
        match within {
            Some(set) => set.iter().for_each(&mut check),
            None => (0..u32::try_from(self.len()).unwrap_or(u32::MAX)).for_each(check),
        }
        out
    }
}

/// The records having one value, in ordinal order. Most values of the
/// nearly-unique fields belong to one record: no allocation for those.
#[derive(Clone, Debug)]
pub(crate) enum Ordinals {
    One(u32),
    Many(Vec<u32>),
}

impl Ordinals {
    fn push(&mut self, ordinal: u32) {
        match self {
            Ordinals::One(first) => *self = Ordinals::Many(vec![*first, ordinal]),
            Ordinals::Many(v) => v.push(ordinal),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (one, many) = match self {
            Ordinals::One(o) => (Some(*o), &[][..]),
            Ordinals::Many(v) => (None, v.as_slice()),
        };
        one.into_iter().chain(many.iter().copied())
    }

    fn bitmap(&self) -> RoaringBitmap {
        self.iter().collect()
    }
}

type Dict = HashMap<Box<[u8]>, RoaringBitmap, foldhash::fast::FixedState>;

/// Exact-match values by their 64-bit key (FNV-1a, as in the sidecar).
type Exact = HashMap<u64, Ordinals, foldhash::fast::FixedState>;

/// A segment's index held in memory.
#[derive(Debug, Default)]
pub(crate) struct MemIndex {
    /// Records `[0, indexed)` are indexed.
    pub indexed: u64,
    dicts: [Dict; 5],
    exact: [Exact; 2],
    /// Source addresses as (address, ordinal) in ordinal order: appending
    /// is a push (a search tree of ~200k distinct addresses cost a cache
    /// miss per level on every record), and a lookup scans the column,
    /// ~0.1 ms for a full segment.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u32)>,
    scratch: Vec<u8>,
}

fn add(map: &mut Dict, key: &[u8], ordinal: u32) {
    match map.get_mut(key) {
        Some(bitmap) => {
            // Ordinals arrive in increasing order: appending skips the
            // search `insert` does (it refuses one that is not larger).
            if bitmap.try_push(ordinal).is_err() {
                bitmap.insert(ordinal);
            }
        }
        None => {
            let mut bitmap = RoaringBitmap::new();
            bitmap.insert(ordinal);
            map.insert(key.into(), bitmap);
        }
    }
}

impl MemIndex {
    /// Adds the next record (ordinal `self.indexed`).
    pub(crate) fn push(&mut self, record: &RecordView<'_>) {
        let ordinal = u32::try_from(self.indexed).unwrap_or(u32::MAX);
        let mut scratch = std::mem::take(&mut self.scratch);
        let MemIndex {
            dicts,
            exact,
            v4,
            v6,
            ..
        } = self;
        for_each_key(record, &mut scratch, |key| match key {
            IndexKey::Dict(field, term) => {
                if let Some(map) = dicts.get_mut(field as usize) {
                    add(map, term, ordinal);
                }
            }
            IndexKey::Exact(field, value) => {
                if let Some(map) = exact.get_mut(field as usize) {
                    map.entry(sealog_format::index::term_key(value))
                        .and_modify(|o| o.push(ordinal))
                        .or_insert(Ordinals::One(ordinal));
                }
            }
            IndexKey::Ip(IpAddr::V4(a)) => v4.push((u32::from(a), ordinal)),
            IndexKey::Ip(IpAddr::V6(a)) => v6.push((u128::from(a), ordinal)),
        });
        self.scratch = scratch;
        self.indexed += 1;
    }

    /// The terms and bitmaps of a dictionary, in no particular order.
    pub(crate) fn dict_entries(
        &self,
        field: DictField,
    ) -> impl Iterator<Item = (&[u8], &RoaringBitmap)> {
        self.dicts
            .get(field as usize)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (&**k, v)))
    }

    /// The keys and records of an exact-match field, in no particular order.
    pub(crate) fn exact_entries(
        &self,
        field: ExactField,
    ) -> impl Iterator<Item = (u64, impl Iterator<Item = u32> + '_)> {
        self.exact
            .get(field as usize)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (*k, v.iter())))
    }

    /// The source addresses and their records, one pair per record.
    pub(crate) fn ip_entries(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        let v4 = self.v4.iter().map(|&(a, o)| (IpAddr::V4(a.into()), o));
        let v6 = self.v6.iter().map(|&(a, o)| (IpAddr::V6(a.into()), o));
        v4.chain(v6)
    }

    fn dict_select(&self, field: DictField, select: &TermSelect<'_>) -> RoaringBitmap {
        let Some(map) = self.dicts.get(field as usize) else {
            return RoaringBitmap::new();
        };
        match select {
            TermSelect::Exact(term) => map.get(*term).cloned().unwrap_or_default(),
            TermSelect::Prefix(prefix) => map
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .fold(RoaringBitmap::new(), |acc, (_, b)| acc | b),
            TermSelect::Matching { prefix, matches } => map
                .iter()
                .filter(|(k, _)| k.starts_with(prefix) && matches(k))
                .fold(RoaringBitmap::new(), |acc, (_, b)| acc | b),
        }
    }
}

/// A [`MemIndex`] together with the event times of its records.
pub(crate) struct MemView<'a> {
    pub index: &'a MemIndex,
    pub event_times: &'a [i64],
}

impl IndexView for MemView<'_> {
    fn len(&self) -> u64 {
        self.index.indexed.min(self.event_times.len() as u64)
    }

    fn dict(&self, field: DictField, select: &TermSelect<'_>) -> Result<RoaringBitmap> {
        Ok(self.index.dict_select(field, select))
    }

    fn exact(&self, field: ExactField, value: &[u8]) -> Result<RoaringBitmap> {
        let key = sealog_format::index::term_key(value);
        Ok(self
            .index
            .exact
            .get(field as usize)
            .and_then(|m| m.get(&key))
            .map(Ordinals::bitmap)
            .unwrap_or_default())
    }

    fn ip(&self, range: IpRange) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        match range {
            // Ordinals come in increasing order: appending is cheap.
            IpRange::V4(lo, hi) => out.extend(
                self.index
                    .v4
                    .iter()
                    .filter(|(a, _)| (lo..=hi).contains(a))
                    .map(|&(_, o)| o),
            ),
            IpRange::V6(lo, hi) => out.extend(
                self.index
                    .v6
                    .iter()
                    .filter(|(a, _)| (lo..=hi).contains(a))
                    .map(|&(_, o)| o),
            ),
        }
        Ok(out)
    }

    fn event_time(&self, ordinal: u32) -> Option<i64> {
        self.event_times.get(ordinal as usize).copied()
    }
}
