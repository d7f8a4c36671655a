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
//! An open segment keeps a [`MemIndex`] in memory, kept up to date with the
//! committed records by the background indexer (`crate::indexer`); a
//! read-only open's answers for the records its snapshot covers from the
//! snapshot's columns in place (`snapshot`). Sealed
//! segments keep theirs in a sidecar file. Indexes are derived data: they
//! can always be rebuilt from the records, and verification never consults
//! them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use roaring::{MultiOps, RoaringBitmap};
use sealog_format::record::{Checked, RecordView};

use crate::error::{Error, Result};
use crate::mmap::Mapped;
use crate::query::{IpRange, canonical};

mod snapshot;

use snapshot::SnapshotColumns;

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
pub(crate) fn actor_term(id: &[u8], kind: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(id);
    out.push(0);
    out.extend_from_slice(kind);
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
    record: &Checked<'_>,
    scratch: &mut Vec<u8>,
    mut key: impl FnMut(IndexKey<'_>),
) {
    actor_term(record.actor_id, record.actor_type, scratch);
    key(IndexKey::Dict(DictField::Actor, scratch));
    key(IndexKey::Dict(DictField::Action, record.action));
    key(IndexKey::Dict(
        DictField::ResourceType,
        record.resource_type,
    ));
    key(IndexKey::Dict(
        DictField::Outcome,
        record.outcome.as_str().as_bytes(),
    ));
    if let Some(t) = record.tenant {
        key(IndexKey::Dict(DictField::Tenant, t));
    }
    if let Some(r) = record.request_id {
        key(IndexKey::Exact(ExactField::RequestId, r));
    }
    if let Some(r) = record.resource_id {
        key(IndexKey::Exact(ExactField::ResourceId, r));
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
    /// The ordinals of one dictionary term, lent rather than copied when
    /// the index holds them as a bitmap in memory (the open segment's), so
    /// that the planner can walk them newest first or test single ordinals
    /// against them; `None` when it does not (then use [`IndexView::dict`]).
    fn lend_dict_term(&self, field: DictField, term: &[u8]) -> Option<Cow<'_, RoaringBitmap>> {
        let _ = (field, term);
        None
    }
    /// Ordinals that may have this exact value (a superset; the planner
    /// checks each record).
    fn exact(&self, field: ExactField, value: &[u8]) -> Result<RoaringBitmap>;
    /// Ordinals whose source address is in the range.
    fn ip(&self, range: IpRange) -> Result<RoaringBitmap>;
    /// For each term of a dictionary field, how many ordinals of `within`
    /// carry it, as `(term, count)` (terms none of them carries may be left
    /// out). What grouping by a field counts, from the index alone.
    fn dict_counts(&self, field: DictField, within: &RoaringBitmap) -> Result<Vec<(Vec<u8>, u64)>>;
    /// For each source address, how many ordinals of `within` carry it
    /// (addresses canonical: IPv4-mapped IPv6 as IPv4).
    fn ip_counts(&self, within: &RoaringBitmap) -> Result<Vec<(IpAddr, u64)>>;
    /// The event time of a record.
    /// A damaged index is an error (the caller rebuilds it), never a
    /// missing time.
    fn event_time(&self, ordinal: u32) -> Result<Option<i64>>;
    /// The event time of each ordinal of `set`, as `(event time, ordinal)`
    /// in ordinal order: what the event-time orders sort on. A record
    /// without an event time in the index is an error (the index is
    /// damaged), never a silently dropped result.
    fn event_times(&self, set: &RoaringBitmap) -> Result<Vec<(i64, u32)>> {
        let mut out = Vec::with_capacity(usize::try_from(set.len()).unwrap_or(0));
        for ordinal in set {
            let time = self
                .event_time(ordinal)?
                .ok_or_else(|| Error::IndexDamaged {
                    file: "the in-memory index of the open segment".into(),
                    reason: format!("no event time for ordinal {ordinal}"),
                })?;
            out.push((time, ordinal));
        }
        Ok(out)
    }
    /// Ordinals with `from <= event time < to` (among `within`, if given).
    /// A damaged index is an error, never an empty set.
    fn time_filter(
        &self,
        from: i64,
        to: i64,
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        let mut check = |o: u32| -> Result<()> {
            if self.event_time(o)?.is_some_and(|t| (from..to).contains(&t)) {
                out.insert(o);
            }
            Ok(())
        };
        match within {
            Some(set) => set.iter().try_for_each(&mut check)?,
            None => (0..u32::try_from(self.len()).unwrap_or(u32::MAX)).try_for_each(check)?,
        }
        Ok(out)
    }
}

/// One dictionary field of an open segment, kept twice: as a column (each
/// distinct term gets a small id when first seen, and the column holds each
/// record's term id by ordinal, [`NO_TERM`] for a record without the field)
/// and as postings (each term's ordinals, a roaring bitmap per term id).
///
/// The column is what snapshots and sealing write and what grouping counts
/// from; the postings are what a lookup reads, so that finding a term costs
/// its matches rather than the segment (a scan of the column cost ~80 µs
/// per query at 80,000 records). Appending is a hash lookup, a push on the
/// column and a push at the end of the term's bitmap (ordinals only grow,
/// so that is the bitmap's last container, never a search). A selection of
/// many terms (a prefix or a pattern that picks most of the dictionary)
/// still scans the column, which is then cheaper than the union.
#[derive(Debug, Default)]
struct DictColumn {
    ids: HashMap<Box<[u8]>, u32, foldhash::fast::FixedState>,
    /// The ordinal of `column`'s first entry: the records before it are
    /// the snapshot's (see [`MemIndex::extend_snapshot`]), or none.
    first: u32,
    column: Vec<u32>,
    /// The ordinals of each term, by term id.
    postings: Vec<RoaringBitmap>,
    /// No postings are kept (an index built only to be encoded, by the
    /// archiver or the verifier, or loaded by a read-only open): lookups
    /// scan the column.
    encode_only: bool,
}

/// The column entry of a record without the field.
const NO_TERM: u32 = u32::MAX;

/// How a selection of terms is turned into ordinals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    /// The union of the chosen terms' postings.
    Postings,
    /// A pass over the column.
    Column,
}

impl DictColumn {
    fn push(&mut self, term: &[u8]) {
        let id = match self.ids.get(term) {
            Some(&id) => id,
            None => {
                // Ids stay below NO_TERM: a segment holds fewer records.
                let id = u32::try_from(self.ids.len()).unwrap_or(NO_TERM - 1);
                self.ids.insert(term.into(), id);
                id
            }
        };
        self.push_id(id);
    }

    /// Appends the next record's term id (known to the dictionary, or
    /// [`NO_TERM`]) to the column and to that term's postings.
    fn push_id(&mut self, id: u32) {
        let ordinal = u32::try_from(self.column.len())
            .ok()
            .and_then(|n| n.checked_add(self.first))
            .expect("a segment holds fewer than 2^32 records: it is at most 1 GiB");
        self.column.push(id);
        if id == NO_TERM || self.encode_only {
            return;
        }
        let slot = id as usize;
        if self.postings.len() <= slot {
            self.postings.resize_with(slot + 1, RoaringBitmap::new);
        }
        if let Some(postings) = self.postings.get_mut(slot) {
            // Ordinals only grow, so this appends to the bitmap's last
            // container. `insert`, not `try_push`: `try_push` looks for the
            // bitmap's maximum first, which in a bitset container (a term
            // most records have, an outcome say) scans up to 1,024 words.
            let added = postings.insert(ordinal);
            debug_assert!(added, "each record is added to a term once");
        }
    }

    /// The ordinals of one term, borrowed (`None` if the term is not in the
    /// dictionary).
    fn postings_of(&self, term: &[u8]) -> Option<&RoaringBitmap> {
        self.ids
            .get(term)
            .and_then(|&id| self.postings.get(id as usize))
    }

    /// The terms by id.
    fn terms(&self) -> Vec<&[u8]> {
        let mut terms = vec![&[][..]; self.ids.len()];
        for (term, &id) in &self.ids {
            if let Some(slot) = terms.get_mut(id as usize) {
                *slot = &**term;
            }
        }
        terms
    }

    /// The `(term id, ordinal)` pairs, in ordinal order.
    fn pairs(&self) -> Vec<(u32, u32)> {
        (self.first..)
            .zip(&self.column)
            .filter(|&(_, &id)| id != NO_TERM)
            .map(|(ordinal, &id)| (id, ordinal))
            .collect()
    }

    /// The ordinals whose term id satisfies `wanted`.
    fn ordinals(&self, wanted: impl Fn(u32) -> bool) -> RoaringBitmap {
        let mut bits = Vec::with_capacity(self.column.len().div_ceil(64) * 8);
        let mut any = 0u64;
        for chunk in self.column.chunks(64) {
            let mut word = 0u64;
            for (i, &id) in chunk.iter().enumerate() {
                word |= u64::from(wanted(id)) << i;
            }
            any |= word;
            bits.extend_from_slice(&word.to_le_bytes());
        }
        if any == 0 {
            return RoaringBitmap::new();
        }
        RoaringBitmap::from_lsb0_bytes(self.first, &bits)
    }

    fn select(&self, select: &TermSelect<'_>) -> RoaringBitmap {
        self.select_by(select, None)
    }

    /// The ordinals carrying a selected term, looked up as `how` says, or
    /// (`None`) by whichever is cheaper: the postings unless the chosen
    /// terms are so many that a pass over the column costs less than their
    /// union (a union costs a little per term and per match, the column a
    /// little per record).
    fn select_by(&self, select: &TermSelect<'_>, how: Option<Lookup>) -> RoaringBitmap {
        // Without postings, the column is the only way.
        let how = if self.encode_only {
            Some(Lookup::Column)
        } else {
            how
        };
        let chosen = |keep: &dyn Fn(&[u8]) -> bool| {
            let mut wanted = vec![false; self.ids.len()];
            let mut chosen = Vec::new();
            for (term, &id) in &self.ids {
                if keep(term)
                    && let Some(slot) = wanted.get_mut(id as usize)
                {
                    *slot = true;
                    chosen.push(id);
                }
            }
            if chosen.is_empty() {
                return RoaringBitmap::new();
            }
            let postings = || {
                chosen
                    .iter()
                    .filter_map(|&id| self.postings.get(id as usize))
            };
            let how = how.unwrap_or_else(|| {
                let matches: u64 = postings().map(RoaringBitmap::len).sum();
                let cost = (chosen.len() as u64)
                    .saturating_mul(64)
                    .saturating_add(matches);
                if cost <= self.column.len() as u64 {
                    Lookup::Postings
                } else {
                    Lookup::Column
                }
            });
            match how {
                Lookup::Postings => postings().union(),
                Lookup::Column => {
                    self.ordinals(|id| wanted.get(id as usize).copied().unwrap_or(false))
                }
            }
        };
        match select {
            TermSelect::Exact(term) => match (how, self.ids.get(*term)) {
                (_, None) => RoaringBitmap::new(),
                (Some(Lookup::Column), Some(&want)) => self.ordinals(|id| id == want),
                (_, Some(_)) => self.postings_of(term).cloned().unwrap_or_default(),
            },
            TermSelect::Prefix(prefix) => chosen(&|t| t.starts_with(prefix)),
            TermSelect::Matching { prefix, matches } => {
                chosen(&|t| t.starts_with(prefix) && matches(t))
            }
        }
    }
}

/// The columns are arrays with one entry per variant of [`DictField`] and
/// [`ExactField`]: a field's number is always a valid index.
const ONE_COLUMN_PER_FIELD: &str = "the index has one column per field";

/// A segment's index held in memory, as columns in ordinal order.
#[derive(Debug, Default)]
pub(crate) struct MemIndex {
    /// Records `[0, indexed)` are indexed.
    pub indexed: u64,
    dicts: [DictColumn; 5],
    /// Exact-match values as (64-bit key (FNV-1a, as in the sidecar),
    /// ordinal); a lookup scans the column.
    exact: [Vec<(u64, u32)>; 2],
    /// Source addresses as (address, ordinal): appending is a push (a
    /// search tree of ~200k distinct addresses cost a cache miss per level
    /// on every record), and a lookup scans the column, ~0.1 ms for a full
    /// segment.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u32)>,
    /// Recorded time of the first and of the last indexed record (what a
    /// snapshot of the index states, see `crate::open_index`).
    pub first_recorded_at: Option<i64>,
    pub last_recorded_at: Option<i64>,
    scratch: Vec<u8>,
    /// The index of the first records, read in place from the open
    /// segment's snapshot (read-only opens); the columns above hold the
    /// records after them.
    snapshot: Option<SnapshotColumns>,
}

/// How much of a [`MemIndex`] a snapshot already holds: its records, and
/// the length of each column and dictionary at that point. Every part of
/// the index only grows, so what was added since a mark is a suffix of
/// each part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexMark {
    pub records: u64,
    terms: [usize; 5],
    exact: [usize; 2],
    v4: usize,
    v6: usize,
}

/// Reads little-endian values from a byte slice; `None` past its end.
pub(crate) struct ByteReader<'a> {
    pub bytes: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Some(out)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    /// A count of items of `size` bytes each that must fit in what is left.
    pub(crate) fn count(&mut self, size: usize) -> Option<usize> {
        let n = usize::try_from(self.u32()?).ok()?;
        (n.checked_mul(size)? <= self.bytes.len()).then_some(n)
    }
}

/// The term ids of a snapshot column, 4 little-endian bytes each.
fn raw_ids(raw: &[u8]) -> impl Iterator<Item = u32> + '_ {
    raw.as_chunks::<4>()
        .0
        .iter()
        .map(|b| u32::from_le_bytes(*b))
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().unwrap_or_default())
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}

impl MemIndex {
    /// An index built only to be encoded (a sidecar re-encoded by the
    /// archiver or the verifier): it keeps no per-term postings, which only
    /// lookups need, and answers lookups from its columns.
    pub(crate) fn encode_only() -> MemIndex {
        MemIndex::columns_only()
    }

    /// Room for `records` more records in every column, for an index whose
    /// record count is known before it is built (a sealed segment's,
    /// re-encoded): its columns then do not grow by copying themselves.
    pub(crate) fn reserve(&mut self, records: usize) {
        for column in &mut self.dicts {
            column.column.reserve(records);
        }
        for column in &mut self.exact {
            column.reserve(records);
        }
        self.v4.reserve(records);
    }

    /// An index that keeps no per-term postings and answers lookups by a
    /// pass over its columns: what a read-only open loads from the open
    /// segment's snapshot. Rebuilding the postings of every term there
    /// cost more than the few queries a command-line reader makes (9% of
    /// a `sealog query` on a 107,000-record open segment, docs/benchmarks.md);
    /// a pass over a column costs ~1 ns per record per lookup.
    pub(crate) fn columns_only() -> MemIndex {
        let mut index = MemIndex::default();
        for column in &mut index.dicts {
            column.encode_only = true;
        }
        index
    }

    /// Adds the next record (ordinal `self.indexed`).
    pub(crate) fn push(&mut self, record: &RecordView<'_>) {
        self.push_checked(&Checked::from(record));
    }

    /// [`MemIndex::push`] of a record checked without a view
    /// ([`sealog_format::record::check`]: its text is not made into `&str`).
    pub(crate) fn push_checked(&mut self, record: &Checked<'_>) {
        let ordinal = u32::try_from(self.indexed)
            .expect("a segment holds fewer than 2^32 records: it is at most 1 GiB");
        let mut scratch = std::mem::take(&mut self.scratch);
        let MemIndex {
            dicts,
            exact,
            v4,
            v6,
            ..
        } = self;
        for_each_key(record, &mut scratch, |key| match key {
            IndexKey::Dict(field, term) => dicts
                .get_mut(field as usize)
                .expect(ONE_COLUMN_PER_FIELD)
                .push(term),
            IndexKey::Exact(field, value) => exact
                .get_mut(field as usize)
                .expect(ONE_COLUMN_PER_FIELD)
                .push((sealog_format::index::term_key(value), ordinal)),
            IndexKey::Ip(IpAddr::V4(a)) => v4.push((u32::from(a), ordinal)),
            IndexKey::Ip(IpAddr::V6(a)) => v6.push((u128::from(a), ordinal)),
        });
        // A record without an (optional) dictionary field still takes its
        // place in that column.
        for column in &mut self.dicts {
            if column.first as usize + column.column.len() <= ordinal as usize {
                column.push_id(NO_TERM);
            }
        }
        self.scratch = scratch;
        let recorded = record.recorded_at.as_nanos();
        self.first_recorded_at.get_or_insert(recorded);
        self.last_recorded_at = Some(recorded);
        self.indexed += 1;
    }

    /// The mark of everything indexed so far.
    pub(crate) fn mark(&self) -> IndexMark {
        IndexMark {
            records: self.indexed,
            terms: self.dicts.each_ref().map(|d| d.ids.len()),
            exact: self.exact.each_ref().map(Vec::len),
            v4: self.v4.len(),
            v6: self.v6.len(),
        }
    }

    /// Appends the index columns of the records indexed since `from` to
    /// `out`, in the layout of an `.oidx` chunk (docs/format.md): per
    /// dictionary field its new terms and its term ids, then the
    /// exact-match pairs and the addresses.
    pub(crate) fn encode_columns_since(&self, from: &IndexMark, out: &mut Vec<u8>) {
        let put_u32 = |out: &mut Vec<u8>, v: usize| {
            out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
        };
        let start = usize::try_from(from.records).unwrap_or(usize::MAX);
        for (column, &known) in self.dicts.iter().zip(&from.terms) {
            let terms = column.terms();
            let new = terms.get(known..).unwrap_or_default();
            put_u32(out, new.len());
            for term in new {
                put_u32(out, term.len());
                out.extend_from_slice(term);
            }
            let own = start.saturating_sub(column.first as usize);
            for id in column.column.get(own..).unwrap_or_default() {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        for (pairs, &known) in self.exact.iter().zip(&from.exact) {
            let new = pairs.get(known..).unwrap_or_default();
            put_u32(out, new.len());
            for (key, ordinal) in new {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&ordinal.to_le_bytes());
            }
        }
        let new = self.v4.get(from.v4..).unwrap_or_default();
        put_u32(out, new.len());
        for (address, ordinal) in new {
            out.extend_from_slice(&address.to_le_bytes());
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        let new = self.v6.get(from.v6..).unwrap_or_default();
        put_u32(out, new.len());
        for (address, ordinal) in new {
            out.extend_from_slice(&address.to_be_bytes());
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
    }

    /// Takes the index columns of `count` more records written by
    /// [`MemIndex::encode_columns_since`] into a chunk of the snapshot
    /// `map`, read by `r`, with the recorded times of the segment's first
    /// record and of the last of these: they are answered from the map in
    /// place ([`SnapshotColumns`]). Only for an index that holds nothing
    /// but snapshot chunks of that map, and keeps no postings (a read-only
    /// open's; records pushed later are held as usual). Returns `None`,
    /// leaving the index as it was, if the columns do not extend it
    /// consistently (a term id not in the dictionary, an ordinal outside
    /// the new records or out of order, a length past the chunk).
    pub(crate) fn extend_snapshot(
        &mut self,
        map: &Arc<Mapped>,
        count: u32,
        r: &mut ByteReader<'_>,
        recorded: (i64, i64),
    ) -> Option<()> {
        let snapshot = self
            .snapshot
            .get_or_insert_with(|| SnapshotColumns::new(map.clone()));
        let only_snapshot = self
            .dicts
            .iter()
            .all(|d| d.column.is_empty() && d.encode_only)
            && u64::from(snapshot.records()) == self.indexed;
        if !only_snapshot || !snapshot.maps(map) {
            return None;
        }
        snapshot.take_chunk(count, r)?;
        let records = snapshot.records();
        for column in &mut self.dicts {
            column.first = records;
        }
        self.first_recorded_at.get_or_insert(recorded.0);
        self.last_recorded_at = Some(recorded.1);
        self.indexed = u64::from(records);
        Some(())
    }

    /// A dictionary field's terms by id, and its `(term id, ordinal)` pairs
    /// in ordinal order.
    pub(crate) fn dict_postings(&self, field: DictField) -> (Vec<&[u8]>, Vec<(u32, u32)>) {
        debug_assert!(self.snapshot.is_none(), "only a writer's index is encoded");
        let column = self.dicts.get(field as usize).expect(ONE_COLUMN_PER_FIELD);
        (column.terms(), column.pairs())
    }

    /// The `(key, ordinal)` pairs of an exact-match field, in ordinal order.
    pub(crate) fn exact_postings(&self, field: ExactField) -> &[(u64, u32)] {
        debug_assert!(self.snapshot.is_none(), "only a writer's index is encoded");
        self.exact
            .get(field as usize)
            .expect(ONE_COLUMN_PER_FIELD)
            .as_slice()
    }

    /// The source addresses and their records, one pair per record.
    pub(crate) fn ip_entries(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        debug_assert!(self.snapshot.is_none(), "only a writer's index is encoded");
        let v4 = self.v4.iter().map(|&(a, o)| (IpAddr::V4(a.into()), o));
        let v6 = self.v6.iter().map(|&(a, o)| (IpAddr::V6(a.into()), o));
        v4.chain(v6)
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
        let column = self
            .index
            .dicts
            .get(field as usize)
            .expect(ONE_COLUMN_PER_FIELD);
        let own = column.select(select);
        Ok(match &self.index.snapshot {
            Some(snapshot) => snapshot.select(field, select) | own,
            None => own,
        })
    }

    fn lend_dict_term(&self, field: DictField, term: &[u8]) -> Option<Cow<'_, RoaringBitmap>> {
        let column = self
            .index
            .dicts
            .get(field as usize)
            .expect(ONE_COLUMN_PER_FIELD);
        if column.encode_only {
            return None;
        }
        Some(match column.postings_of(term) {
            Some(postings) => Cow::Borrowed(postings),
            None => Cow::Owned(RoaringBitmap::new()),
        })
    }

    fn exact(&self, field: ExactField, value: &[u8]) -> Result<RoaringBitmap> {
        let key = sealog_format::index::term_key(value);
        // Ordinals come in increasing order, the snapshot's first:
        // appending is cheap (and any order would still give every match).
        let mut out = RoaringBitmap::new();
        if let Some(snapshot) = &self.index.snapshot {
            snapshot.exact(field, key, &mut out);
        }
        out.extend(
            self.index
                .exact
                .get(field as usize)
                .expect(ONE_COLUMN_PER_FIELD)
                .iter()
                .filter(|&&(k, _)| k == key)
                .map(|&(_, o)| o),
        );
        Ok(out)
    }

    fn ip(&self, range: IpRange) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        if let Some(snapshot) = &self.index.snapshot {
            snapshot.ip(range, &mut out);
        }
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

    fn event_time(&self, ordinal: u32) -> Result<Option<i64>> {
        Ok(self.event_times.get(ordinal as usize).copied())
    }

    fn dict_counts(&self, field: DictField, within: &RoaringBitmap) -> Result<Vec<(Vec<u8>, u64)>> {
        let column = self
            .index
            .dicts
            .get(field as usize)
            .expect(ONE_COLUMN_PER_FIELD);
        let mut counts = vec![0u64; column.ids.len()];
        for ordinal in within.iter().skip_while(|&o| o < column.first) {
            let id = column
                .column
                .get((ordinal - column.first) as usize)
                .copied()
                .ok_or_else(|| Error::IndexDamaged {
                    file: "the in-memory index of the open segment".into(),
                    reason: format!("no `{field:?}` entry for ordinal {ordinal}"),
                })?;
            if let Some(n) = counts.get_mut(id as usize) {
                *n += 1;
            }
        }
        let own = column
            .terms()
            .into_iter()
            .zip(counts)
            .filter(|&(_, n)| n > 0);
        let Some(snapshot) = &self.index.snapshot else {
            return Ok(own.map(|(term, n)| (term.to_vec(), n)).collect());
        };
        // The records after the snapshot have a dictionary of their own:
        // a term in both is counted once, with both counts.
        let mut merged = HashMap::default();
        snapshot.dict_counts(field, within, &mut merged);
        for (term, n) in own {
            *merged.entry(term).or_insert(0) += n;
        }
        Ok(merged
            .into_iter()
            .map(|(term, n)| (term.to_vec(), n))
            .collect())
    }

    fn ip_counts(&self, within: &RoaringBitmap) -> Result<Vec<(IpAddr, u64)>> {
        let mut counts: HashMap<IpAddr, u64, foldhash::fast::FixedState> = HashMap::default();
        if let Some(snapshot) = &self.index.snapshot {
            snapshot.ip_counts(within, &mut counts);
        }
        let v4 = self
            .index
            .v4
            .iter()
            .map(|&(a, o)| (IpAddr::V4(a.into()), o));
        let v6 = self
            .index
            .v6
            .iter()
            .map(|&(a, o)| (IpAddr::V6(a.into()), o));
        for (addr, ordinal) in v4.chain(v6) {
            if within.contains(ordinal) {
                *counts.entry(addr).or_insert(0) += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sealog_format::{Actor, Event, Outcome, Resource, Timestamp};
    use std::ops::Range;

    /// A record's dictionary terms, drawn from small vocabularies so that
    /// terms repeat and share prefixes.
    #[derive(Clone, Debug)]
    struct Draw {
        actor: (usize, usize),
        action: usize,
        resource_type: usize,
        outcome: usize,
        tenant: Option<usize>,
        request: Option<usize>,
        resource: usize,
        source: Option<usize>,
    }

    const ACTOR_IDS: [&str; 6] = ["alice", "al", "bob", "bobby", "carol", "svc-1"];
    const ACTOR_TYPES: [&str; 2] = ["user", "service"];
    const ACTIONS: [&str; 5] = ["login", "login.failed", "user.read", "user.delete", "x"];
    const RESOURCE_TYPES: [&str; 3] = ["user", "doc", "document"];
    const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];
    const TENANTS: [&str; 3] = ["t1", "t10", "t2"];
    const REQUESTS: [&str; 3] = ["req-1", "req-2", "req-10"];
    const RESOURCES: [&str; 2] = ["r-1", "r-2"];
    const SOURCES: [&str; 5] = [
        "10.0.0.1",
        "10.0.0.2",
        "192.168.1.9",
        "2001:db8::1",
        "::ffff:10.0.0.2",
    ];

    fn draw() -> impl Strategy<Value = Draw> {
        (
            (0..ACTOR_IDS.len(), 0..ACTOR_TYPES.len()),
            0..ACTIONS.len(),
            0..RESOURCE_TYPES.len(),
            0..OUTCOMES.len(),
            proptest::option::of(0..TENANTS.len()),
            (
                proptest::option::of(0..REQUESTS.len()),
                0..RESOURCES.len(),
                proptest::option::of(0..SOURCES.len()),
            ),
        )
            .prop_map(
                |(actor, action, resource_type, outcome, tenant, (request, resource, source))| {
                    Draw {
                        actor,
                        action,
                        resource_type,
                        outcome,
                        tenant,
                        request,
                        resource,
                        source,
                    }
                },
            )
    }

    /// A prefix or a whole term of the vocabulary, or a term not in it.
    fn probe() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            Just(b"al".to_vec()),
            Just(b"alice\0".to_vec()),
            Just(b"alice\0user".to_vec()),
            Just(b"bob".to_vec()),
            Just(b"login".to_vec()),
            Just(b"user".to_vec()),
            Just(b"doc".to_vec()),
            Just(b"success".to_vec()),
            Just(b"t1".to_vec()),
            Just(b"nobody".to_vec()),
        ]
    }

    fn event(d: &Draw) -> Event {
        let mut event = Event::new(
            Actor::new(ACTOR_TYPES[d.actor.1], ACTOR_IDS[d.actor.0].to_string()),
            ACTIONS[d.action].to_string(),
            Resource::new(RESOURCE_TYPES[d.resource_type], RESOURCES[d.resource]),
            OUTCOMES[d.outcome],
        );
        if let Some(t) = d.tenant {
            event = event.with_tenant(TENANTS[t].to_string());
        }
        if let Some(r) = d.request {
            event = event.with_request_id(REQUESTS[r]);
        }
        if let Some(a) = d.source {
            event = event.with_source_ip(SOURCES[a].parse().unwrap());
        }
        event
    }

    /// The field's term of each record (`None` where it has none), as the
    /// model the index is checked against.
    fn model_terms(draws: &[Draw], field: DictField) -> Vec<Option<Vec<u8>>> {
        draws
            .iter()
            .map(|d| match field {
                DictField::Actor => {
                    let mut term = Vec::new();
                    actor_term(
                        ACTOR_IDS[d.actor.0].as_bytes(),
                        ACTOR_TYPES[d.actor.1].as_bytes(),
                        &mut term,
                    );
                    Some(term)
                }
                DictField::Action => Some(ACTIONS[d.action].as_bytes().to_vec()),
                DictField::ResourceType => {
                    Some(RESOURCE_TYPES[d.resource_type].as_bytes().to_vec())
                }
                DictField::Outcome => Some(OUTCOMES[d.outcome].as_str().as_bytes().to_vec()),
                DictField::Tenant => d.tenant.map(|t| TENANTS[t].as_bytes().to_vec()),
            })
            .collect()
    }

    /// The ordinals whose term passes `keep`, by a scan of the model.
    fn brute_force(terms: &[Option<Vec<u8>>], keep: impl Fn(&[u8]) -> bool) -> RoaringBitmap {
        (0u32..)
            .zip(terms)
            .filter(|(_, t)| t.as_deref().is_some_and(&keep))
            .map(|(o, _)| o)
            .collect()
    }

    fn index_of(draws: &[Draw]) -> MemIndex {
        fill(MemIndex::default(), draws)
    }

    fn fill(mut index: MemIndex, draws: &[Draw]) -> MemIndex {
        for (seq, d) in (0u64..).zip(draws) {
            let bytes =
                sealog_format::record::encode(&event(d), seq, Timestamp::from_nanos(seq as i64))
                    .unwrap();
            index.push(&sealog_format::record::decode(&bytes).unwrap());
        }
        index
    }

    /// Every way of looking up `probe` in every field gives the model's
    /// answer: the postings, a pass over the column, whichever `dict`
    /// picks, and the lent postings of one term.
    fn check_lookups(index: &MemIndex, draws: &[Draw], probe: &[u8]) {
        let times = vec![0i64; draws.len()];
        let view = MemView {
            index,
            event_times: &times,
        };
        let odd = |t: &[u8]| t.len() % 2 == 1;
        for field in DictField::ALL {
            let terms = model_terms(draws, field);
            let column = &index.dicts[field as usize];
            // The own columns alone answer for every record only without a
            // snapshot.
            let whole = index.snapshot.is_none();
            let cases: [(TermSelect<'_>, RoaringBitmap); 3] = [
                (
                    TermSelect::Exact(probe),
                    brute_force(&terms, |t| t == probe),
                ),
                (
                    TermSelect::Prefix(probe),
                    brute_force(&terms, |t| t.starts_with(probe)),
                ),
                (
                    TermSelect::Matching {
                        prefix: probe,
                        matches: &odd,
                    },
                    brute_force(&terms, |t| t.starts_with(probe) && odd(t)),
                ),
            ];
            for (select, expected) in &cases {
                for how in [Some(Lookup::Postings), Some(Lookup::Column), None]
                    .into_iter()
                    .filter(|_| whole)
                {
                    assert_eq!(
                        &column.select_by(select, how),
                        expected,
                        "{field:?} {how:?} {:?}",
                        String::from_utf8_lossy(probe)
                    );
                }
                assert_eq!(&view.dict(field, select).unwrap(), expected);
            }
            match view.lend_dict_term(field, probe) {
                Some(lent) => assert_eq!(lent.into_owned(), cases[0].1, "{field:?}"),
                // An index without postings has none to lend: the caller
                // asks `dict`, checked above.
                None => assert!(column.encode_only, "{field:?}: postings kept but not lent"),
            }
        }
    }

    proptest! {
        /// Postings kept at append time answer every selection as a scan
        /// of the records' terms does.
        #[test]
        fn postings_answer_as_a_scan_of_the_terms(
            draws in proptest::collection::vec(draw(), 0..300),
            probes in proptest::collection::vec(probe(), 1..6),
        ) {
            let index = index_of(&draws);
            for probe in &probes {
                check_lookups(&index, &draws, probe);
            }
            // An index built to be encoded keeps no postings, answers the
            // same from its columns, and has the same columns.
            let bare = fill(MemIndex::encode_only(), &draws);
            let times = vec![0i64; draws.len()];
            let view = MemView { index: &bare, event_times: &times };
            for probe in &probes {
                for field in DictField::ALL {
                    let terms = model_terms(&draws, field);
                    prop_assert_eq!(
                        view.dict(field, &TermSelect::Prefix(probe)).unwrap(),
                        brute_force(&terms, |t| t.starts_with(probe))
                    );
                    prop_assert!(view.lend_dict_term(field, probe).is_none());
                    prop_assert!(bare.dicts[field as usize].postings.is_empty());
                    prop_assert_eq!(bare.dict_postings(field), index.dict_postings(field));
                }
            }
        }

        /// An index loaded from snapshot chunks answers every lookup
        /// from the chunks in place as the writer's index answers it, and
        /// keeps doing so as records are appended after the load.
        #[test]
        fn snapshot_chunks_answer_in_place_as_the_writers_index(
            draws in proptest::collection::vec(draw(), 1..300),
            cuts in proptest::collection::vec(0.0f64..1.0, 0..4),
            more in proptest::collection::vec(draw(), 0..50),
            probes in proptest::collection::vec(probe(), 1..6),
        ) {
            let mut cuts: Vec<u64> = cuts
                .iter()
                .map(|c| (c * draws.len() as f64) as u64)
                .chain([draws.len() as u64])
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            let (map, chunks) = snapshot_of(&draws, &cuts);
            let mut loaded = MemIndex::columns_only();
            for (count, at) in chunks {
                let mut reader = ByteReader { bytes: &map[at] };
                loaded
                    .extend_snapshot(&map, count, &mut reader, (0, 1))
                    .expect("the writer's chunk extends the loaded index");
            }
            prop_assert_eq!(loaded.indexed, draws.len() as u64);
            prop_assert!(loaded.dicts.iter().all(|d| d.column.is_empty()));
            for probe in &probes {
                check_lookups(&loaded, &draws, probe);
            }
            check_like_the_writers(&loaded, &draws);
            // Appending after the load keeps the lookups in step.
            let mut all = draws.clone();
            for (seq, d) in (draws.len() as u64..).zip(&more) {
                let bytes = sealog_format::record::encode(
                    &event(d),
                    seq,
                    Timestamp::from_nanos(seq as i64),
                )
                .unwrap();
                loaded.push(&sealog_format::record::decode(&bytes).unwrap());
                all.push(d.clone());
            }
            for probe in &probes {
                check_lookups(&loaded, &all, probe);
            }
            check_like_the_writers(&loaded, &all);
        }

        #[test]
        fn a_refused_snapshot_chunk_leaves_the_index_as_it_was(
            draws in proptest::collection::vec(draw(), 2..200),
            cut in 0.0f64..1.0,
            probes in proptest::collection::vec(probe(), 1..4),
        ) {
            let cut = ((cut * draws.len() as f64) as usize).clamp(1, draws.len() - 1);
            let (map, chunks) = snapshot_of(&draws, &[cut as u64, draws.len() as u64]);
            let [(head_count, head), (tail_count, tail)] = chunks.as_slice() else {
                panic!("two chunks");
            };
            let mut loaded = MemIndex::columns_only();
            loaded
                .extend_snapshot(&map, *head_count, &mut ByteReader { bytes: &map[head.clone()] }, (0, 0))
                .expect("the first chunk extends an empty index");
            let before = loaded.mark();
            // One byte too many is found only after every column was read;
            // one too few, in the last column; a term id past the
            // dictionary, in the first. None of them is taken.
            let tail_bytes = &map[tail.clone()];
            let mut longer = tail_bytes.to_vec();
            longer.push(0);
            let mut unknown_id = tail_bytes.to_vec();
            let new_terms = le_u32(&unknown_id[..4]) as usize;
            let mut at = 4;
            for _ in 0..new_terms {
                at += 4 + le_u32(&unknown_id[at..at + 4]) as usize;
            }
            unknown_id[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
            let copies = Arc::new(Mapped::from_vec([longer, tail_bytes[..tail_bytes.len() - 1].to_vec(), unknown_id].concat()));
            let other_map = Arc::new(Mapped::from_vec(tail_bytes.to_vec()));
            let bad = [
                (&copies, 0..tail_bytes.len() + 1),
                (&copies, tail_bytes.len() + 1..2 * tail_bytes.len()),
                (&copies, 2 * tail_bytes.len()..3 * tail_bytes.len()),
                // Intact, but in another map than the chunks before.
                (&other_map, 0..tail_bytes.len()),
            ];
            for (bytes_map, range) in bad {
                let refused = loaded
                    .extend_snapshot(bytes_map, *tail_count, &mut ByteReader { bytes: &bytes_map[range] }, (0, 0))
                    .is_none();
                prop_assert!(refused);
                prop_assert_eq!(loaded.mark(), before);
                prop_assert_eq!(loaded.snapshot.as_ref().map(SnapshotColumns::records), Some(*head_count));
            }
            // The intact chunk is taken, and the index answers as one built
            // from every record.
            loaded
                .extend_snapshot(&map, *tail_count, &mut ByteReader { bytes: tail_bytes }, (0, 0))
                .expect("the intact chunk extends the index");
            prop_assert_eq!(loaded.indexed, draws.len() as u64);
            for probe in &probes {
                check_lookups(&loaded, &draws, probe);
            }
            check_like_the_writers(&loaded, &draws);
        }
    }

    /// The writer's snapshot chunks of the records `draws` cut at `cuts`
    /// (increasing, the last the number of records), one after the other
    /// in one map: each chunk's record count and where its columns lie.
    fn snapshot_of(draws: &[Draw], cuts: &[u64]) -> (Arc<Mapped>, Vec<(u32, Range<usize>)>) {
        let mut bytes = Vec::new();
        let mut chunks = Vec::new();
        let mut from = MemIndex::default().mark();
        for &cut in cuts {
            let upto = index_of(&draws[..cut as usize]);
            let count = u32::try_from(cut - from.records).unwrap();
            if count == 0 {
                continue;
            }
            // Something before each chunk, as in the file.
            bytes.extend_from_slice(b"HEAD");
            let at = bytes.len();
            upto.encode_columns_since(&from, &mut bytes);
            chunks.push((count, at..bytes.len()));
            from = upto.mark();
        }
        (Arc::new(Mapped::from_vec(bytes)), chunks)
    }

    /// `index` answers exact-match, address and counting lookups over
    /// `draws` as the writer's index of the same records does.
    fn check_like_the_writers(index: &MemIndex, draws: &[Draw]) {
        let writers = index_of(draws);
        let times = vec![0i64; draws.len()];
        let view = |index| MemView {
            index,
            event_times: &times,
        };
        let (got, want) = (view(index), view(&writers));
        for field in ExactField::ALL {
            for value in REQUESTS.iter().chain(&RESOURCES).chain(&["absent"]) {
                assert_eq!(
                    got.exact(field, value.as_bytes()).unwrap(),
                    want.exact(field, value.as_bytes()).unwrap(),
                    "{field:?} {value}"
                );
            }
        }
        let ranges = [
            IpRange::V4(0x0a00_0000, 0x0aff_ffff),
            IpRange::V4(0xc0a8_0109, 0xc0a8_0109),
            IpRange::V4(0, u32::MAX),
            IpRange::V6(0, u128::MAX),
        ];
        for range in ranges {
            assert_eq!(got.ip(range).unwrap(), want.ip(range).unwrap(), "{range:?}");
        }
        let n = u32::try_from(draws.len()).unwrap();
        let sets: [RoaringBitmap; 3] = [
            (0..n).collect(),
            (0..n).step_by(3).collect(),
            (n / 2..n).collect(),
        ];
        fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
            v.sort();
            v
        }
        for within in &sets {
            for field in DictField::ALL {
                assert_eq!(
                    sorted(got.dict_counts(field, within).unwrap()),
                    sorted(want.dict_counts(field, within).unwrap()),
                    "{field:?}"
                );
            }
            assert_eq!(
                sorted(got.ip_counts(within).unwrap()),
                sorted(want.ip_counts(within).unwrap())
            );
        }
    }
}
