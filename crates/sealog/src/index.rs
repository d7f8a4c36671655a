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
//! committed records by the background indexer (`crate::indexer`). Sealed
//! segments keep theirs in a sidecar file. Indexes are derived data: they
//! can always be rebuilt from the records, and verification never consults
//! them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use roaring::{MultiOps, RoaringBitmap};
use sealog_format::record::RecordView;

use crate::error::{Error, Result};
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
            // Ordinals only grow: this appends to the bitmap's last container.
            let appended = postings.try_push(ordinal);
            debug_assert!(
                appended.is_ok(),
                "ordinals are appended in increasing order"
            );
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
        (0u32..)
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
        RoaringBitmap::from_lsb0_bytes(0, &bits)
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

    /// Makes room for `records` more records in every column (not in the
    /// postings, which a read-only open does not keep).
    pub(crate) fn reserve(&mut self, records: usize) {
        for column in &mut self.dicts {
            column.column.reserve(records);
        }
        // Most records have a source address and a request id; few an
        // IPv6 address (left to grow).
        for pairs in &mut self.exact {
            pairs.reserve(records);
        }
        self.v4.reserve(records);
    }

    /// Adds the next record (ordinal `self.indexed`).
    pub(crate) fn push(&mut self, record: &RecordView<'_>) {
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
            if column.column.len() <= ordinal as usize {
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
            for id in column.column.get(start..).unwrap_or_default() {
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

    /// Reads the index columns of `count` more records written by
    /// [`MemIndex::encode_columns_since`], with the recorded times of the
    /// segment's first record and of the last of these. Returns `None`,
    /// leaving the index as it was, if they do not extend it consistently:
    /// a term already known, a term id not in the dictionary, an ordinal
    /// outside the new records or out of order.
    pub(crate) fn decode_columns<'a>(
        &mut self,
        count: u32,
        r: &mut ByteReader<'a>,
        recorded: (i64, i64),
    ) -> Option<()> {
        let from = u32::try_from(self.indexed).ok()?;
        let end = from.checked_add(count)?;
        // Taken straight into the columns, and cut back if the chunk turns
        // out not to extend them: a chunk decoded into vectors of its own
        // first and copied over paid for every page of them twice (fresh
        // memory is zeroed by the kernel on first touch), ~a fifth of a
        // read-only open's main thread on a full open segment.
        let before = self.mark();
        let Some(taken) = self.take_columns(from..end, r) else {
            self.cut_back(&before);
            return None;
        };
        for (column, ids) in self.dicts.iter_mut().zip(taken) {
            // The postings are not in the snapshot: they are rebuilt from
            // the column as it is extended (unless none are kept).
            if column.encode_only {
                column.column.extend(raw_ids(ids));
            } else {
                for id in raw_ids(ids) {
                    column.push_id(id);
                }
            }
        }
        self.first_recorded_at.get_or_insert(recorded.0);
        self.last_recorded_at = Some(recorded.1);
        self.indexed = u64::from(end);
        Some(())
    }

    /// Removes what [`MemIndex::take_columns`] added since `mark` (terms by
    /// their ids, which are given in order).
    fn cut_back(&mut self, mark: &IndexMark) {
        for (column, &known) in self.dicts.iter_mut().zip(&mark.terms) {
            if column.ids.len() > known {
                column.ids.retain(|_, id| (*id as usize) < known);
            }
        }
        for (pairs, &len) in self.exact.iter_mut().zip(&mark.exact) {
            pairs.truncate(len);
        }
        self.v4.truncate(mark.v4);
        self.v6.truncate(mark.v6);
    }

    /// Reads one chunk's columns for the records `ordinals` from `r`: adds
    /// its new terms to the dictionaries and its pairs to the exact and IP
    /// columns, and returns each dictionary column's term ids (checked,
    /// not applied). `None` as soon as something does not extend the index
    /// consistently, leaving what was added for the caller to cut back.
    fn take_columns<'a>(
        &mut self,
        ordinals: std::ops::Range<u32>,
        r: &mut ByteReader<'a>,
    ) -> Option<[&'a [u8]; 5]> {
        let n = ordinals.len();
        let mut ids: [&[u8]; 5] = Default::default();
        for (column, ids) in self.dicts.iter_mut().zip(&mut ids) {
            // Each term takes at least its 4-byte length.
            let new_count = r.count(4)?;
            column.ids.reserve(new_count);
            for _ in 0..new_count {
                let len = r.count(1)?;
                let term = r.take(len)?;
                // A term already known (from an earlier chunk, or earlier
                // in this one) is refused.
                if column.ids.contains_key(term) {
                    return None;
                }
                let id = u32::try_from(column.ids.len())
                    .ok()
                    .filter(|&id| id < NO_TERM)?;
                column.ids.insert(term.into(), id);
            }
            let known = u32::try_from(column.ids.len()).ok()?;
            let raw = r.take(n.checked_mul(4)?)?;
            // Every id checked, with no early exit: the loop vectorises.
            let unknown = raw_ids(raw).fold(false, |bad, id| bad | (id != NO_TERM && id >= known));
            if unknown {
                return None;
            }
            *ids = raw;
        }
        let in_order = |ordinals_seen: &mut dyn Iterator<Item = u32>| {
            let mut previous = None;
            for o in ordinals_seen {
                if !ordinals.contains(&o) || previous.is_some_and(|p| p > o) {
                    return false;
                }
                previous = Some(o);
            }
            true
        };
        for pairs in &mut self.exact {
            let m = r.count(12)?;
            let at = pairs.len();
            pairs.extend(r.take(m * 12)?.as_chunks::<12>().0.iter().map(|b| {
                let (key, ordinal) = b.split_at(8);
                (le_u64(key), le_u32(ordinal))
            }));
            if !in_order(&mut pairs.get(at..)?.iter().map(|&(_, o)| o)) {
                return None;
            }
        }
        let m = r.count(8)?;
        let at = self.v4.len();
        self.v4.extend(
            r.take(m * 8)?
                .as_chunks::<8>()
                .0
                .iter()
                .map(|b| (le_u32(&b[..4]), le_u32(&b[4..]))),
        );
        if !in_order(&mut self.v4.get(at..)?.iter().map(|&(_, o)| o)) {
            return None;
        }
        let m = r.count(20)?;
        let at = self.v6.len();
        for _ in 0..m {
            self.v6.push((u128::from_be_bytes(r.array()?), r.u32()?));
        }
        if !in_order(&mut self.v6.get(at..)?.iter().map(|&(_, o)| o)) {
            return None;
        }
        // The columns end the chunk's body.
        r.bytes.is_empty().then_some(ids)
    }

    /// A dictionary field's terms by id, and its `(term id, ordinal)` pairs
    /// in ordinal order.
    pub(crate) fn dict_postings(&self, field: DictField) -> (Vec<&[u8]>, Vec<(u32, u32)>) {
        let column = self.dicts.get(field as usize).expect(ONE_COLUMN_PER_FIELD);
        (column.terms(), column.pairs())
    }

    /// The `(key, ordinal)` pairs of an exact-match field, in ordinal order.
    pub(crate) fn exact_postings(&self, field: ExactField) -> &[(u64, u32)] {
        self.exact
            .get(field as usize)
            .expect(ONE_COLUMN_PER_FIELD)
            .as_slice()
    }

    /// The source addresses and their records, one pair per record.
    pub(crate) fn ip_entries(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
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
        Ok(column.select(select))
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
        // Ordinals come in increasing order: appending is cheap (and any
        // order would still give every match).
        let mut out = RoaringBitmap::new();
        out.extend(
            self.index
                .exact_postings(field)
                .iter()
                .filter(|&&(k, _)| k == key)
                .map(|&(_, o)| o),
        );
        Ok(out)
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
        for ordinal in within {
            let id = column
                .column
                .get(ordinal as usize)
                .copied()
                .ok_or_else(|| Error::IndexDamaged {
                    file: "the in-memory index of the open segment".into(),
                    reason: format!("no `{field:?}` entry for ordinal {ordinal}"),
                })?;
            if let Some(n) = counts.get_mut(id as usize) {
                *n += 1;
            }
        }
        Ok(column
            .terms()
            .into_iter()
            .zip(counts)
            .filter(|&(_, n)| n > 0)
            .map(|(term, n)| (term.to_vec(), n))
            .collect())
    }

    fn ip_counts(&self, within: &RoaringBitmap) -> Result<Vec<(IpAddr, u64)>> {
        let mut counts: HashMap<IpAddr, u64, foldhash::fast::FixedState> = HashMap::default();
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

    /// A record's dictionary terms, drawn from small vocabularies so that
    /// terms repeat and share prefixes.
    #[derive(Clone, Debug)]
    struct Draw {
        actor: (usize, usize),
        action: usize,
        resource_type: usize,
        outcome: usize,
        tenant: Option<usize>,
    }

    const ACTOR_IDS: [&str; 6] = ["alice", "al", "bob", "bobby", "carol", "svc-1"];
    const ACTOR_TYPES: [&str; 2] = ["user", "service"];
    const ACTIONS: [&str; 5] = ["login", "login.failed", "user.read", "user.delete", "x"];
    const RESOURCE_TYPES: [&str; 3] = ["user", "doc", "document"];
    const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];
    const TENANTS: [&str; 3] = ["t1", "t10", "t2"];

    fn draw() -> impl Strategy<Value = Draw> {
        (
            (0..ACTOR_IDS.len(), 0..ACTOR_TYPES.len()),
            0..ACTIONS.len(),
            0..RESOURCE_TYPES.len(),
            0..OUTCOMES.len(),
            proptest::option::of(0..TENANTS.len()),
        )
            .prop_map(|(actor, action, resource_type, outcome, tenant)| Draw {
                actor,
                action,
                resource_type,
                outcome,
                tenant,
            })
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
            Resource::new(RESOURCE_TYPES[d.resource_type], "r-1".to_string()),
            OUTCOMES[d.outcome],
        );
        if let Some(t) = d.tenant {
            event = event.with_tenant(TENANTS[t].to_string());
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
                    actor_term(ACTOR_IDS[d.actor.0], ACTOR_TYPES[d.actor.1], &mut term);
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
                for how in [Some(Lookup::Postings), Some(Lookup::Column), None] {
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

        /// An index loaded from snapshot chunks (which hold the columns,
        /// not the postings) rebuilds postings that answer as the writer's
        /// index does, and keeps answering so as records are appended
        /// after the load.
        #[test]
        fn postings_rebuilt_from_snapshot_chunks_answer_as_a_scan(
            draws in proptest::collection::vec(draw(), 1..300),
            cuts in proptest::collection::vec(0.0f64..1.0, 0..4),
            more in proptest::collection::vec(draw(), 0..50),
            probes in proptest::collection::vec(probe(), 1..6),
        ) {
            let index = index_of(&draws);
            let mut cuts: Vec<u64> = cuts
                .iter()
                .map(|c| (c * draws.len() as f64) as u64)
                .chain([draws.len() as u64])
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            // Chunks as the writer's snapshot has them: one per cut, each
            // the columns added since the previous cut.
            let mut writer_marks = Vec::new();
            for &cut in &cuts {
                let upto = index_of(&draws[..cut as usize]);
                writer_marks.push((upto.mark(), upto));
            }
            // As the writer's index (postings rebuilt) and as a read-only
            // open loads it (columns only).
            for mut loaded in [MemIndex::default(), MemIndex::columns_only()] {
                let mut from = MemIndex::default().mark();
                for (mark, upto) in &writer_marks {
                    let count = u32::try_from(mark.records - from.records).unwrap();
                    if count == 0 {
                        continue;
                    }
                    let mut bytes = Vec::new();
                    upto.encode_columns_since(&from, &mut bytes);
                    let mut reader = ByteReader { bytes: &bytes };
                    loaded
                        .decode_columns(count, &mut reader, (0, mark.records as i64))
                        .expect("the writer's chunk extends the loaded index");
                    from = *mark;
                }
                prop_assert_eq!(loaded.indexed, index.indexed);
                for probe in &probes {
                    check_lookups(&loaded, &draws, probe);
                }
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
            }
        }

        #[test]
        fn a_refused_snapshot_chunk_leaves_the_index_as_it_was(
            draws in proptest::collection::vec(draw(), 2..200),
            cut in 0.0f64..1.0,
            probes in proptest::collection::vec(probe(), 1..4),
        ) {
            let cut = ((cut * draws.len() as f64) as usize).clamp(1, draws.len() - 1);
            let first = index_of(&draws[..cut]);
            let whole = index_of(&draws);
            let chunk = |upto: &MemIndex, from: &IndexMark| {
                let mut bytes = Vec::new();
                upto.encode_columns_since(from, &mut bytes);
                bytes
            };
            let head = chunk(&first, &MemIndex::default().mark());
            let tail = chunk(&whole, &first.mark());
            let tail_count = u32::try_from(draws.len() - cut).unwrap();
            let mut loaded = MemIndex::columns_only();
            loaded
                .decode_columns(u32::try_from(cut).unwrap(), &mut ByteReader { bytes: &head }, (0, 0))
                .expect("the first chunk extends an empty index");
            let before = loaded.mark();
            // One byte too many is found only after every column was read
            // (terms, pairs and addresses taken in); one too few, in the
            // last column.
            let mut longer = tail.clone();
            longer.push(0);
            for bytes in [&longer[..], &tail[..tail.len() - 1]] {
                let refused = loaded
                    .decode_columns(tail_count, &mut ByteReader { bytes }, (0, 0))
                    .is_none();
                prop_assert!(refused);
                prop_assert_eq!(loaded.mark(), before);
            }
            // What was cut back leaves no trace: the intact chunk is taken,
            // and the index answers as one built from every record.
            loaded
                .decode_columns(tail_count, &mut ByteReader { bytes: &tail }, (0, 0))
                .expect("the intact chunk extends the index");
            prop_assert_eq!(loaded.mark(), whole.mark());
            for probe in &probes {
                check_lookups(&loaded, &draws, probe);
            }
        }
    }
}
