//! Running queries: the planner and the executor.
//!
//! Segments are visited in result order (newest first by default). For each
//! segment the planner
//!
//! 1. skips it if its event-time range misses the query's, or the cursor
//!    has already passed it;
//! 2. turns every indexed predicate into a bitmap of candidate ordinals
//!    (dictionary lookups, glob and prefix scans over terms, exact-value
//!    lookups, address ranges), skips the segment as soon as one is empty,
//!    and intersects them smallest first;
//! 3. applies the time range through the segment's event-time column
//!    (unless the whole segment lies inside it) and the cursor bound.
//!
//! For a newest-first page, the open segment is planned for only as many
//! candidates as results are still wanted: its in-memory index lends each
//! term's postings, and the planner walks the smallest newest first,
//! testing the others ([`Plan::newest`]); should some of those fail their
//! record check, the rest of the segment is planned again below them.
//!
//! The executor then reads the candidates in order and checks each decoded
//! record against the full query, so an index can narrow the search but
//! never put a wrong record in the results. Counting does not read records
//! unless an index may return false positives.
//!
//! The event-time orders do not visit segments in seq order: see
//! [`crate::time_order`], which merges the segments by their event-time
//! ranges and uses the same per-segment planning.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use roaring::RoaringBitmap;
use sealog_format::record;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::index::{DictField, ExactField, IndexView, TermSelect, actor_term};
use crate::key_filter::KeyGroup;
use crate::query::{Cursor, IpRange, Order, Query};
use crate::segment::{OpenSegment, SealedSegment};
use crate::store::{Inner, View};

mod count;
mod matches;

pub(crate) use count::{AskAhead, count, count_in_memory};
pub use matches::Matches;
pub(crate) use matches::{IN_MEMORY_SEGMENTS, Reach, page, page_within};

/// A segment as the executor sees it.
#[derive(Clone)]
pub(crate) enum SegmentRef {
    Sealed(Arc<SealedSegment>),
    Open(Arc<OpenSegment>),
}

impl SegmentRef {
    pub(crate) fn first_seq(&self) -> u64 {
        match self {
            SegmentRef::Sealed(s) => s.header.first_seq,
            SegmentRef::Open(s) => s.header.first_seq,
        }
    }

    /// Records in the segment (committed ones, for an open segment).
    pub(crate) fn len(&self) -> u64 {
        match self {
            SegmentRef::Sealed(s) => s.footer.record_count,
            SegmentRef::Open(s) => s.data.read().len(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            SegmentRef::Sealed(s) => &s.name,
            SegmentRef::Open(s) => &s.name,
        }
    }

    /// The record bytes of `ordinal`.
    pub(crate) fn record(&self, ordinal: u32) -> Result<Option<Vec<u8>>> {
        match self {
            SegmentRef::Sealed(s) => Ok(s
                .read_record(u64::from(ordinal))?
                .map(std::borrow::Cow::into_owned)),
            SegmentRef::Open(s) => s.read_record(u64::from(ordinal)),
        }
    }
}

/// Per-query state derived once from the query.
pub(crate) struct Plan<'q> {
    query: &'q Query,
    actor: Option<(Vec<u8>, bool)>,
    /// The event-time range, narrowed by an event-time cursor.
    from: i64,
    to: i64,
    /// Results continue strictly after this seq (append orders).
    after: Option<u64>,
    /// Results continue strictly after this (event time, seq) (event-time
    /// orders).
    pub(crate) after_time: Option<(i64, u64)>,
    /// Whether that cursor narrowed `from` or `to`.
    narrowed: bool,
    /// The exact values the query names, a group per predicate, for the
    /// key filters of sealed segments (`crate::key_filter`).
    keys: Vec<KeyGroup>,
    /// What the key filters said of the sealed segments planned so far.
    filtered: parking_lot::Mutex<Filtered>,
    /// Planning for a search that must not wait for a disk
    /// ([`Matches`]'s in-memory reach): a key filter page not in memory is
    /// not read, and the segment is planned from its index instead.
    pub(crate) now: bool,
}

/// What a plan learnt from the key filters ([`Plan::may_hold`]).
#[derive(Default)]
struct Filtered {
    /// The answer for each sealed segment planned (by first seq): a search
    /// plans a segment ahead of reading it, and again when it reads it.
    known: std::collections::HashMap<u64, bool>,
    /// Local segments of a time range planned without asking.
    passed: usize,
    /// Segments the filters were asked about, and how many may hold the
    /// values.
    asked: usize,
    held: usize,
    /// Whether the pages the first question reads were asked for.
    advised: bool,
}

/// Local segments a query with a time range plans from their indexes
/// before it asks the key filters ([`Plan::may_hold`]).
const FILTER_GRACE: usize = 16;

/// Segments a plan asks the key filters about before it may stop asking
/// ([`Plan::may_hold`]).
const FILTER_TRIAL: usize = 16;

impl<'q> Plan<'q> {
    pub(crate) fn new(query: &'q Query) -> Result<Plan<'q>> {
        query.validate()?;
        let cursor = query
            .cursor
            .as_deref()
            .map(|c| Cursor::decode(c, query))
            .transpose()?;
        let mut from = query.from.map_or(i64::MIN, |t| t.as_nanos());
        let mut to = query.to.map_or(i64::MAX, |t| t.as_nanos());
        let (after, after_time) = match cursor {
            None => (None, None),
            Some(Cursor::Seq(seq)) => (Some(seq), None),
            Some(Cursor::Time { time, seq }) => {
                // Everything after the cursor lies on one side of its time:
                // the time column prunes, the exact (time, seq) check of
                // `crate::time_order` decides.
                if query.order.descending() {
                    if let Some(end) = time.checked_add(1) {
                        to = to.min(end);
                    }
                } else {
                    from = from.max(time);
                }
                (None, Some((time, seq)))
            }
        };
        let narrowed = from != query.from.map_or(i64::MIN, |t| t.as_nanos())
            || to != query.to.map_or(i64::MAX, |t| t.as_nanos());
        let actor = query.actor.as_ref().map(|a| {
            let mut term = Vec::new();
            match &a.kind {
                Some(kind) => {
                    actor_term(a.id.as_bytes(), kind.as_bytes(), &mut term);
                    (term, true)
                }
                None => {
                    actor_term(a.id.as_bytes(), b"", &mut term);
                    (term, false)
                }
            }
        });
        let keys = filter_keys(query, actor.as_ref());
        Ok(Plan {
            query,
            actor,
            from,
            to,
            after,
            after_time,
            narrowed,
            keys,
            filtered: parking_lot::Mutex::default(),
            now: false,
        })
    }

    fn has_time(&self) -> bool {
        self.query.from.is_some() || self.query.to.is_some() || self.narrowed
    }

    /// The ordinals `[lo, hi)` of a segment of `len` records that the
    /// cursor leaves, or `None` if it leaves none.
    fn cursor_bounds(&self, first_seq: u64, len: u64) -> Option<(u64, u64)> {
        let (mut lo, mut hi) = (0u64, len);
        if let Some(after) = self.after {
            let descending = self.query.order.descending();
            if descending {
                hi = hi.min(after.saturating_sub(first_seq));
            } else {
                lo = lo.max((after + 1).saturating_sub(first_seq));
            }
            if after < first_seq && descending {
                return None;
            }
        }
        (lo < hi).then_some((lo, hi))
    }

    /// Every ordinal the cursor leaves, unfiltered: the candidates of a
    /// segment whose index cannot be had (its records are damaged) on a
    /// store reading around damage; the executor checks each record.
    pub(crate) fn unindexed(&self, first_seq: u64, len: u64) -> Option<RoaringBitmap> {
        let (lo, hi) = self.cursor_bounds(first_seq, len)?;
        let mut all = RoaringBitmap::new();
        all.insert_range(
            u32::try_from(lo).unwrap_or(u32::MAX)..u32::try_from(hi).unwrap_or(u32::MAX),
        );
        Some(all)
    }

    /// Whether a sealed segment can hold no match whatever its index
    /// says: it is outside the cursor's range, its footer's event times
    /// are outside the query's, or its key filter lacks a value the query
    /// names. Asked before the index is opened, which for a segment
    /// removed after archiving means fetching it.
    pub(crate) fn skips(&self, s: &SealedSegment) -> bool {
        self.skips_by_footer(s) || !self.may_hold(s)
    }

    /// Whether a sealed segment can hold no match by its footer alone (its
    /// seqs against the cursor's, its event times against the query's):
    /// [`Plan::skips`] without the key filters, reading nothing.
    pub(crate) fn skips_by_footer(&self, s: &SealedSegment) -> bool {
        let len = s.footer.record_count;
        len == 0
            || self.cursor_bounds(s.header.first_seq, len).is_none()
            || self.outside_time(s.footer_time_range())
    }

    /// Whether `s`'s key filter may hold a match (asked once per segment).
    /// The filters cost a read per segment asked (and, at the first
    /// question, one per segment of the store), which pays only when a
    /// query plans many segments and the values are rare. So:
    ///
    /// - a query with a time range plans its first [`FILTER_GRACE`] local
    ///   segments without asking (a day's few segments are read faster
    ///   from their indexes, above all from a cold disk);
    /// - once the first [`FILTER_TRIAL`] segments asked may all hold the
    ///   values, they are common: the plan stops asking;
    /// - a segment archived and removed from the store is always asked
    ///   about (planning it otherwise means fetching it).
    fn may_hold(&self, s: &SealedSegment) -> bool {
        if self.keys.is_empty() {
            return true;
        }
        let first_seq = s.header.first_seq;
        let remote = s.pruned_record().is_some();
        {
            let mut filtered = self.filtered.lock();
            if let Some(&known) = filtered.known.get(&first_seq) {
                return known;
            }
            if !remote {
                let grace = self.has_time() && filtered.passed < FILTER_GRACE;
                let common = filtered.asked >= FILTER_TRIAL && filtered.held == filtered.asked;
                if grace || common {
                    filtered.passed += usize::from(grace);
                    filtered.known.insert(first_seq, true);
                    return true;
                }
            }
        }
        let identity = crate::sidecar::identity(&s.header, &s.footer);
        let filters = s.key_filters();
        // The first question: the page each entry's probe reads, asked for
        // together (each otherwise a wait for the disk, one after the
        // other, when the file is not in memory).
        let may = if self.now {
            match filters.may_hold_now(&identity, &self.keys) {
                Some(may) => may,
                // Not known without a read that would wait: the index says
                // (and nothing is learnt about the filters).
                None => return true,
            }
        } else {
            let first = !std::mem::replace(&mut self.filtered.lock().advised, true);
            if first {
                filters.advise_probes(&self.keys);
            }
            filters.may_hold(&identity, &self.keys)
        };
        let mut filtered = self.filtered.lock();
        filtered.asked += 1;
        filtered.held += usize::from(may);
        filtered.known.insert(first_seq, may);
        may
    }

    /// Whether no event time of `(min, max)` falls in the query's range.
    fn outside_time(&self, (min, max): (i64, i64)) -> bool {
        max < self.from || min >= self.to
    }

    /// The ordinals of a segment that may match, in no particular order, or
    /// `None` if none can. `len` is the number of records to consider;
    /// `time_range` the segment's event-time range.
    pub(crate) fn candidates(
        &self,
        view: &dyn IndexView,
        first_seq: u64,
        len: u64,
        time_range: Option<(i64, i64)>,
    ) -> Result<Option<RoaringBitmap>> {
        let Some(scope) = self.scope(first_seq, len, time_range) else {
            return Ok(None);
        };
        let Some(sets) = self.predicate_sets(view)? else {
            return Ok(None);
        };
        self.intersect(view, &scope, sets)
    }

    /// The `k` highest ordinals of what [`Plan::candidates`] gives, for a
    /// newest-first page: found by walking the smallest predicate's
    /// ordinals newest first and testing each against the other predicates
    /// and the time range, so that a page of an open segment costs about
    /// its matches rather than every match in the segment. Predicates the
    /// index cannot lend are built in full as for `candidates`. If the
    /// walk tests many ordinals without finding `k` (a rare combination),
    /// it gives up and the full intersection is returned instead.
    pub(crate) fn newest(
        &self,
        view: &dyn IndexView,
        first_seq: u64,
        len: u64,
        time_range: Option<(i64, i64)>,
        k: usize,
    ) -> Result<Option<NewestCandidates>> {
        let Some(scope) = self.scope(first_seq, len, time_range) else {
            return Ok(None);
        };
        let Some(mut sets) = self.predicate_sets(view)? else {
            return Ok(None);
        };
        sets.sort_unstable_by_key(|s| s.len());
        let k = k.max(1);
        let walked = {
            let (lo, hi) = scope.range32();
            let mut walk: Box<dyn Iterator<Item = u32> + '_> = match sets.first() {
                Some(smallest) => Box::new(smallest.range(lo..hi).rev()),
                None => Box::new((lo..hi).rev()),
            };
            let others = sets.get(1..).unwrap_or_default();
            let budget = k.saturating_mul(WALK_PER_RESULT).saturating_add(WALK_MIN);
            let mut found = Vec::with_capacity(k);
            let mut outcome = None;
            for _ in 0..budget {
                let Some(ordinal) = walk.next() else {
                    outcome = Some(false);
                    break;
                };
                if !others.iter().all(|set| set.contains(ordinal)) {
                    continue;
                }
                if scope.time_needed
                    && !view
                        .event_time(ordinal)?
                        .is_some_and(|t| (self.from..self.to).contains(&t))
                {
                    continue;
                }
                found.push(ordinal);
                if found.len() == k {
                    outcome = Some(true);
                    break;
                }
            }
            outcome.map(|truncated| (found, truncated))
        };
        match walked {
            Some((found, truncated)) => {
                if found.is_empty() {
                    return Ok(None);
                }
                let set = RoaringBitmap::from_sorted_iter(found.into_iter().rev())
                    .expect("walked newest first, so reversed it is in increasing order");
                Ok(Some(NewestCandidates { set, truncated }))
            }
            None => Ok(self
                .intersect(view, &scope, sets)?
                .map(|set| NewestCandidates {
                    set,
                    truncated: false,
                })),
        }
    }

    /// The part of a segment the cursor and the time range leave, or
    /// `None` if they leave nothing.
    fn scope(&self, first_seq: u64, len: u64, time_range: Option<(i64, i64)>) -> Option<Scope> {
        if len == 0 {
            return None;
        }
        let (lo, hi) = self.cursor_bounds(first_seq, len)?;
        let mut time_needed = self.has_time();
        if let Some((min, max)) = time_range {
            if self.outside_time((min, max)) {
                return None;
            }
            if min >= self.from && max < self.to {
                time_needed = false;
            }
        }
        Some(Scope {
            lo,
            hi,
            time_needed,
        })
    }

    /// The index sections planning a segment reads for this query, found
    /// by planning a one-record segment whose index answers everything
    /// and notes what it was asked.
    pub(crate) fn sections_used(&self) -> Vec<SectionUse> {
        let recorder = SectionRecorder::default();
        let _ = self.predicate_sets(&recorder);
        recorder.used.into_inner()
    }

    /// The ordinals of each indexed predicate of the query, or `None` as
    /// soon as one has none. Exact dictionary terms are borrowed when the
    /// index lends them.
    fn predicate_sets<'v>(
        &self,
        view: &'v dyn IndexView,
    ) -> Result<Option<Vec<Cow<'v, RoaringBitmap>>>> {
        let q = self.query;
        let mut sets: Vec<Cow<'v, RoaringBitmap>> = Vec::new();
        let mut add = |set: Cow<'v, RoaringBitmap>| -> bool {
            let empty = set.is_empty();
            sets.push(set);
            !empty
        };
        let term = |field: DictField, term: &[u8]| -> Result<Cow<'v, RoaringBitmap>> {
            match view.lend_dict_term(field, term) {
                Some(set) => Ok(set),
                None => Ok(Cow::Owned(view.dict(field, &TermSelect::Exact(term))?)),
            }
        };
        if let Some((actor, exact)) = &self.actor {
            let set = if *exact {
                term(DictField::Actor, actor)?
            } else {
                Cow::Owned(view.dict(DictField::Actor, &TermSelect::Prefix(actor))?)
            };
            if !add(set) {
                return Ok(None);
            }
        }
        match q.actions.as_slice() {
            [] => {}
            [one] if one.is_exact() => {
                if !add(term(DictField::Action, one.as_str().as_bytes())?) {
                    return Ok(None);
                }
            }
            patterns => {
                let mut union = RoaringBitmap::new();
                for pattern in patterns {
                    let set = if pattern.is_exact() {
                        view.dict(
                            DictField::Action,
                            &TermSelect::Exact(pattern.as_str().as_bytes()),
                        )?
                    } else {
                        let matches = |term: &[u8]| {
                            std::str::from_utf8(term).is_ok_and(|t| pattern.matches(t))
                        };
                        view.dict(
                            DictField::Action,
                            &TermSelect::Matching {
                                prefix: pattern.literal_prefix().as_bytes(),
                                matches: &matches,
                            },
                        )?
                    };
                    union |= set;
                }
                if !add(Cow::Owned(union)) {
                    return Ok(None);
                }
            }
        }
        if let Some(r) = &q.resource {
            if let Some(kind) = &r.kind
                && !add(term(DictField::ResourceType, kind.as_bytes())?)
            {
                return Ok(None);
            }
            if let Some(id) = &r.id
                && !add(Cow::Owned(
                    view.exact(ExactField::ResourceId, id.as_bytes())?,
                ))
            {
                return Ok(None);
            }
        }
        if let Some(kind) = &q.resource_type
            && !add(term(DictField::ResourceType, kind.as_bytes())?)
        {
            return Ok(None);
        }
        if let Some(outcome) = q.outcome
            && !add(term(DictField::Outcome, outcome.as_str().as_bytes())?)
        {
            return Ok(None);
        }
        if let Some(tenant) = &q.tenant
            && !add(term(DictField::Tenant, tenant.as_bytes())?)
        {
            return Ok(None);
        }
        if let Some(ip) = &q.source_ip
            && !add(Cow::Owned(view.ip(ip.range())?))
        {
            return Ok(None);
        }
        if let Some(id) = &q.request_id
            && !add(Cow::Owned(
                view.exact(ExactField::RequestId, id.as_bytes())?,
            ))
        {
            return Ok(None);
        }
        Ok(Some(sets))
    }

    /// The predicates' sets intersected (smallest first), cut to the scope
    /// and filtered by the time range.
    fn intersect(
        &self,
        view: &dyn IndexView,
        scope: &Scope,
        mut sets: Vec<Cow<'_, RoaringBitmap>>,
    ) -> Result<Option<RoaringBitmap>> {
        let (lo, hi) = scope.range32();
        sets.sort_unstable_by_key(|s| s.len());
        let mut sets = sets.into_iter();
        let mut candidates = match sets.next() {
            Some(first) => {
                let mut acc = first.into_owned();
                for set in sets {
                    acc &= &*set;
                    if acc.is_empty() {
                        return Ok(None);
                    }
                }
                acc
            }
            None => {
                let mut all = RoaringBitmap::new();
                all.insert_range(lo..hi);
                all
            }
        };
        if lo > 0 {
            candidates.remove_range(0..lo);
        }
        candidates.remove_range(hi..);
        if scope.time_needed && !candidates.is_empty() {
            candidates = view.time_filter(self.from, self.to, Some(&candidates))?;
        }
        Ok((!candidates.is_empty()).then_some(candidates))
    }
}

/// The exact values `query` names, as key-filter groups: one per
/// predicate that [`Plan::predicate_sets`] answers with exact lookups only,
/// holding every value that predicate accepts (a segment whose filter lacks
/// all of a group's values has no match). Prefixes, patterns, address
/// ranges and the outcome give no group.
fn filter_keys(query: &Query, actor: Option<&(Vec<u8>, bool)>) -> Vec<KeyGroup> {
    use sealog_format::index::{IndexField, term_key};
    let one = |field: IndexField, term: &[u8]| vec![(field, term_key(term))];
    let mut groups = Vec::new();
    if let Some((term, true)) = actor {
        groups.push(one(IndexField::Actor, term));
    }
    if !query.actions.is_empty() && query.actions.iter().all(|a| a.is_exact()) {
        groups.push(
            query
                .actions
                .iter()
                .map(|a| (IndexField::Action, term_key(a.as_str().as_bytes())))
                .collect(),
        );
    }
    if let Some(r) = &query.resource {
        if let Some(kind) = &r.kind {
            groups.push(one(IndexField::ResourceType, kind.as_bytes()));
        }
        if let Some(id) = &r.id {
            groups.push(one(IndexField::ResourceId, id.as_bytes()));
        }
    }
    if let Some(kind) = &query.resource_type {
        groups.push(one(IndexField::ResourceType, kind.as_bytes()));
    }
    // The outcome is not asked about: its three values are in nearly every
    // segment, and asking would cost more than it ever saves.
    if let Some(tenant) = &query.tenant {
        groups.push(one(IndexField::Tenant, tenant.as_bytes()));
    }
    if let Some(id) = &query.request_id {
        groups.push(one(IndexField::RequestId, id.as_bytes()));
    }
    groups
}

/// Ordinals a newest-first walk tests per result wanted, and at least,
/// before it gives up and intersects the predicates in full: about what
/// the intersection costs when the walk finds little.
const WALK_PER_RESULT: usize = 64;
const WALK_MIN: usize = 1024;

/// The part of a segment a query looks at: the ordinals `[lo, hi)` the
/// cursor leaves, and whether event times must still be checked.
struct Scope {
    lo: u64,
    hi: u64,
    time_needed: bool,
}

impl Scope {
    fn range32(&self) -> (u32, u32) {
        (
            u32::try_from(self.lo).unwrap_or(u32::MAX),
            u32::try_from(self.hi).unwrap_or(u32::MAX),
        )
    }
}

/// The newest candidates of a segment, and whether older ones may remain
/// (the walk stopped once it had enough).
pub(crate) struct NewestCandidates {
    pub set: RoaringBitmap,
    pub truncated: bool,
}

/// The segments of a view in the query's order.
pub(crate) fn segments_in_order(view: &View, order: Order) -> Vec<SegmentRef> {
    let mut all: Vec<SegmentRef> = view
        .sealed
        .iter()
        .cloned()
        .map(SegmentRef::Sealed)
        .chain(view.open.iter().cloned().map(SegmentRef::Open))
        .collect();
    if order.descending() {
        all.reverse();
    }
    all
}

/// An index section planning uses: a dictionary, a hashed index or the IP
/// index of a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SectionUse {
    /// A dictionary, looked up for exactly these terms (which its term
    /// filter may rule out), or (`None`) by prefix.
    Dict(DictField, Option<Vec<Vec<u8>>>),
    /// A hashed index, looked up for this term.
    Exact(ExactField, Vec<u8>),
    Ip,
}

/// An index of one record that matches every predicate and records which
/// sections it was asked about (see [`Plan::sections_used`]).
#[derive(Default)]
struct SectionRecorder {
    used: std::cell::RefCell<Vec<SectionUse>>,
}

impl SectionRecorder {
    fn note(&self, used: SectionUse) -> Result<RoaringBitmap> {
        let mut all = self.used.borrow_mut();
        if !all.contains(&used) {
            all.push(used);
        }
        Ok(std::iter::once(0).collect())
    }

    /// Notes a dictionary lookup, with the terms of its field so far.
    fn note_dict(&self, field: DictField, select: &TermSelect<'_>) -> Result<RoaringBitmap> {
        let term = match select {
            TermSelect::Exact(term) => Some(term.to_vec()),
            _ => None,
        };
        let mut all = self.used.borrow_mut();
        match all.iter_mut().find_map(|u| match u {
            SectionUse::Dict(f, terms) if *f == field => Some(terms),
            _ => None,
        }) {
            Some(terms) => match (terms.as_mut(), term) {
                (Some(terms), Some(term)) => {
                    if !terms.contains(&term) {
                        terms.push(term);
                    }
                }
                _ => *terms = None,
            },
            None => all.push(SectionUse::Dict(field, term.map(|t| vec![t]))),
        }
        Ok(std::iter::once(0).collect())
    }
}

impl IndexView for SectionRecorder {
    fn len(&self) -> u64 {
        1
    }
    fn dict(&self, field: DictField, select: &TermSelect<'_>) -> Result<RoaringBitmap> {
        self.note_dict(field, select)
    }
    fn exact(&self, field: ExactField, term: &[u8]) -> Result<RoaringBitmap> {
        self.note(SectionUse::Exact(field, term.to_vec()))
    }
    fn ip(&self, _: IpRange) -> Result<RoaringBitmap> {
        self.note(SectionUse::Ip)
    }
    fn dict_counts(&self, _: DictField, _: &RoaringBitmap) -> Result<Vec<(Vec<u8>, u64)>> {
        Ok(Vec::new())
    }
    fn ip_counts(&self, _: &RoaringBitmap) -> Result<Vec<(IpAddr, u64)>> {
        Ok(Vec::new())
    }
    fn event_time(&self, _: u32) -> Result<Option<i64>> {
        Ok(Some(0))
    }
}

/// Candidates of one segment, with whether they need checking against the
/// record to be exact.
struct SegmentCandidates {
    set: RoaringBitmap,
    precise: bool,
    /// For only the newest candidates of a segment: the seq below which the
    /// rest may be, to plan again from there if these run out.
    resume: Option<u64>,
}

/// The candidates of a segment; for an open segment and `newest: Some(k)`,
/// only its `k` newest (a newest-first page needs no more unless some fail
/// the check against their records, and then the rest is planned again
/// from [`SegmentCandidates::resume`]).
fn segment_candidates(
    plan: &Plan<'_>,
    segment: &SegmentRef,
    newest: Option<usize>,
) -> Result<Option<SegmentCandidates>> {
    let first_seq = segment.first_seq();
    match segment {
        SegmentRef::Sealed(s) => {
            let range = s.footer_time_range();
            if plan.skips(s) {
                return Ok(None);
            }
            let time_range = Some(range);
            let index = s.index()?;
            let set = match plan.candidates(&*index, first_seq, s.footer.record_count, time_range) {
                // A section failed its check: rebuild the index and retry.
                Err(Error::IndexDamaged { reason, .. }) => {
                    let index = s.rebuild_index(&reason)?;
                    plan.candidates(&*index, first_seq, s.footer.record_count, time_range)?
                }
                other => other?,
            };
            // Exact-match keys are hashed: candidates may include collisions.
            Ok(set.map(|set| SegmentCandidates {
                set,
                precise: false,
                resume: None,
            }))
        }
        SegmentRef::Open(s) => s.with_index(|view, len, time_range| {
            if let Some(k) = newest {
                let newest = plan.newest(view, first_seq, len, time_range, k)?;
                // Exact-match keys are hashed here too.
                return Ok(newest.map(|n| SegmentCandidates {
                    resume: n
                        .truncated
                        .then(|| n.set.min().map(|o| first_seq + u64::from(o)))
                        .flatten(),
                    set: n.set,
                    precise: false,
                }));
            }
            let set = plan.candidates(view, first_seq, len, time_range)?;
            Ok(set.map(|set| SegmentCandidates {
                set,
                precise: false,
                resume: None,
            }))
        }),
    }
}

/// What a search makes of each matching record, from its checked view
/// (the owned [`sealog_format::Record`], or the caller's own form of it).
pub(crate) type MakeFn<'m, T> =
    dyn FnMut(&record::RecordView<'_>) -> std::result::Result<T, record::RecordError> + 'm;

/// Reads record `ordinal` of `segment` (or takes `fetched`, its record
/// bytes read already with others) and returns `make` of it if it matches
/// `query` (`None` if it does not). A record the segment's index lists but
/// that is not there is an error, never a quiet miss.
pub(crate) fn read_match<T>(
    segment: &SegmentRef,
    ordinal: u32,
    fetched: Option<Vec<u8>>,
    query: &Query,
    make: &mut MakeFn<'_, T>,
) -> Result<Option<T>> {
    let seq = segment.first_seq() + u64::from(ordinal);
    let bytes = match fetched {
        Some(bytes) => Some(bytes),
        None => segment.record(ordinal)?,
    };
    let Some(bytes) = bytes else {
        return Err(Corruption::new(
            Location::file(segment.name()).seq(seq),
            CorruptionKind::Layout(format!(
                "record {seq} is missing although the segment's index lists it"
            )),
        )
        .into());
    };
    let view = record::decode(&bytes).map_err(|e| {
        Error::from(Corruption::new(
            Location::file(segment.name()).seq(seq),
            CorruptionKind::Record(e),
        ))
    })?;
    if view.seq != seq {
        return Err(Corruption::new(
            Location::file(segment.name()).seq(seq),
            CorruptionKind::SeqMismatch {
                expected: seq,
                found: view.seq,
            },
        )
        .into());
    }
    if !query.matches(&view) {
        return Ok(None);
    }
    make(&view).map(Some).map_err(|e| {
        Corruption::new(
            Location::file(segment.name()).seq(seq),
            CorruptionKind::Record(e),
        )
        .into()
    })
}

/// The candidates of a segment; on a store reading around damage, a
/// segment whose index cannot be had (its sidecar is missing and its
/// records are damaged) gives every ordinal instead, and the executor reads
/// what it can.
fn candidates_or_all(
    plan: &Plan<'_>,
    segment: &SegmentRef,
    inner: &Inner,
    newest: Option<usize>,
) -> Result<Option<SegmentCandidates>> {
    match segment_candidates(plan, segment, newest) {
        Err(e @ Error::Corruption(_)) if inner.damage.is_some() => {
            tracing::info!(segment = segment.name(), error = %e, "searching a damaged segment record by record");
            Ok(plan
                .unindexed(segment.first_seq(), segment.len())
                .map(|set| SegmentCandidates {
                    set,
                    precise: false,
                    resume: None,
                }))
        }
        other => other,
    }
}

/// Threads a read spreads independent segments over: the cores, at most
/// 4, while no other read is in progress ([`crate::spread::read_threads`]).
fn read_threads() -> usize {
    crate::spread::read_threads(crate::spread::cores().min(4))
}

/// `segment`, if it is sealed and `plan` does not skip it by its footer
/// (its seqs and event times).
fn planned_sealed<'s>(
    plan: &Plan<'_>,
    segment: Option<&'s SegmentRef>,
) -> Option<&'s Arc<SealedSegment>> {
    match segment {
        Some(SegmentRef::Sealed(s)) if !plan.skips(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{MemIndex, MemView};
    use crate::query::ActorFilter;
    use crate::workload::{Workload, WorkloadShape};
    use proptest::prelude::*;
    use sealog_format::{Outcome, Timestamp};

    const FIRST_SEQ: u64 = 1_000;
    const RECORDS: u64 = 3_000;

    #[test]
    fn the_sections_a_plan_reads_are_those_of_its_predicates() {
        let query = Query {
            actor: Some(ActorFilter::parse("user:alice")),
            actions: vec![crate::query::ActionPattern::new("doc.*".to_owned()).unwrap()],
            resource: Some(crate::query::ResourceFilter::parse("doc:42")),
            outcome: Some(Outcome::Denied),
            tenant: Some("acme".into()),
            source_ip: Some(crate::query::IpFilter::parse("10.0.0.0/8").unwrap()),
            request_id: Some("r-1".into()),
            ..Query::default()
        };
        assert_eq!(
            Plan::new(&query).unwrap().sections_used(),
            [
                SectionUse::Dict(DictField::Actor, Some(vec![b"alice\0user".to_vec()])),
                SectionUse::Dict(DictField::Action, None),
                SectionUse::Dict(DictField::ResourceType, Some(vec![b"doc".to_vec()])),
                SectionUse::Exact(ExactField::ResourceId, b"42".to_vec()),
                SectionUse::Dict(DictField::Outcome, Some(vec![b"denied".to_vec()])),
                SectionUse::Dict(DictField::Tenant, Some(vec![b"acme".to_vec()])),
                SectionUse::Ip,
                SectionUse::Exact(ExactField::RequestId, b"r-1".to_vec()),
            ]
        );
        assert!(
            Plan::new(&Query::default())
                .unwrap()
                .sections_used()
                .is_empty()
        );
    }

    /// An open segment's index over generated events, and their event
    /// times (built once).
    fn segment() -> &'static (MemIndex, Vec<i64>) {
        static SEGMENT: std::sync::OnceLock<(MemIndex, Vec<i64>)> = std::sync::OnceLock::new();
        SEGMENT.get_or_init(build_segment)
    }

    fn build_segment() -> (MemIndex, Vec<i64>) {
        let workload = Workload::with_shape(
            11,
            WorkloadShape {
                actors: 30,
                total: RECORDS,
                ..WorkloadShape::default()
            },
        );
        let mut index = MemIndex::default();
        let mut times = Vec::new();
        for (i, event) in (0u64..).zip(workload.generate(RECORDS)) {
            let bytes = sealog_format::record::encode(
                &event,
                FIRST_SEQ + i,
                Timestamp::from_nanos(i as i64),
            )
            .unwrap();
            let view = sealog_format::record::decode(&bytes).unwrap();
            times.push(view.event_time().as_nanos());
            index.push(&view);
        }
        (index, times)
    }

    fn query(actor: Option<u64>, outcome: Option<usize>, window: Option<(u64, u64)>) -> Query {
        let span = WorkloadShape::default().time_span;
        let start = WorkloadShape::default().time_start.as_nanos();
        let at = |share: u64| Timestamp::from_nanos(start + span / 100 * share as i64);
        Query {
            actor: actor.map(|rank| ActorFilter {
                kind: Some(if rank % 50 == 49 { "service" } else { "user" }.into()),
                id: Workload::actor_id(rank),
            }),
            outcome: outcome.map(|o| [Outcome::Success, Outcome::Failure, Outcome::Denied][o]),
            from: window.map(|(from, _)| at(from)),
            to: window.map(|(from, len)| at(from + len)),
            order: Order::NewestFirst,
            limit: 10,
            ..Query::default()
        }
    }

    proptest! {
        /// Walking an open segment's candidates newest first, `k` at a
        /// time, each walk resumed below the lowest ordinal the previous
        /// one took, gives every candidate the full plan gives, newest
        /// first, in chunks of at most `k`, and never says it stopped
        /// early when it did not; also when the walk gives up (a narrow
        /// time range far from the newest records) and intersects in full.
        #[test]
        fn newest_walks_resumed_below_their_lowest_give_every_candidate(
            actor in proptest::option::of(0u64..30),
            outcome in proptest::option::of(0usize..3),
            window in proptest::option::of((0u64..100, 1u64..30)),
            k in 1usize..40,
        ) {
            let (index, times) = segment();
            let view = MemView { index, event_times: times };
            let range = (
                times.iter().copied().min().unwrap(),
                times.iter().copied().max().unwrap(),
            );
            let q = query(actor, outcome, window);
            let full = Plan::new(&q)
                .unwrap()
                .candidates(&view, FIRST_SEQ, RECORDS, Some(range))
                .unwrap()
                .unwrap_or_default();
            let expected: Vec<u32> = full.iter().rev().collect();
            let mut walked = Vec::new();
            let mut after = None;
            // Each walk takes at least one candidate: more walks than
            // records means the resumption does not move on.
            for walks in 0.. {
                prop_assert!(walks <= RECORDS, "the walks do not move on");
                let mut plan = Plan::new(&q).unwrap();
                plan.after = after;
                let Some(newest) = plan.newest(&view, FIRST_SEQ, RECORDS, Some(range), k).unwrap()
                else {
                    break;
                };
                if newest.truncated {
                    prop_assert_eq!(newest.set.len(), k as u64);
                }
                walked.extend(newest.set.iter().rev());
                if !newest.truncated {
                    break;
                }
                after = newest.set.min().map(|o| FIRST_SEQ + u64::from(o));
            }
            prop_assert_eq!(walked, expected);
        }
    }
}
