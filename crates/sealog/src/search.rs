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
use sealog_format::Record;
use sealog_format::record;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::index::{DictField, ExactField, IndexView, TermSelect, actor_term};
use crate::query::{Cursor, IpRange, Order, Page, Query};
use crate::segment::{OpenSegment, SealedSegment};
use crate::store::{Inner, View};

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
            SegmentRef::Sealed(s) => Ok(s.read_record(u64::from(ordinal))?.map(<[u8]>::to_vec)),
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
}

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
                    actor_term(&a.id, kind, &mut term);
                    (term, true)
                }
                None => {
                    actor_term(&a.id, "", &mut term);
                    (term, false)
                }
            }
        });
        Ok(Plan {
            query,
            actor,
            from,
            to,
            after,
            after_time,
            narrowed,
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
    /// says: it is outside the cursor's range, or its footer's event times
    /// are outside the query's. Asked before the index is opened, which
    /// for a segment removed after archiving means fetching it.
    pub(crate) fn skips(&self, first_seq: u64, len: u64, time_range: (i64, i64)) -> bool {
        len == 0 || self.cursor_bounds(first_seq, len).is_none() || self.outside_time(time_range)
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
            let range = (
                s.footer.min_event_time.as_nanos(),
                s.footer.max_event_time.as_nanos(),
            );
            if plan.skips(first_seq, s.footer.record_count, range) {
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

/// Reads record `ordinal` of `segment` and returns it if it matches
/// `query` (`None` if it does not). A record the segment's index lists but
/// that is not there is an error, never a quiet miss.
pub(crate) fn read_match(
    segment: &SegmentRef,
    ordinal: u32,
    query: &Query,
) -> Result<Option<Record>> {
    let seq = segment.first_seq() + u64::from(ordinal);
    let Some(bytes) = segment.record(ordinal)? else {
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
    view.to_record().map(Some).map_err(|e| {
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

/// A lazy iterator over every record matching a query, in its order.
///
/// A record that cannot be read is an `Err` item naming the file, byte
/// offset and seq, and the last item: the iteration never just stops
/// early. On a store reading around damage such records are skipped and
/// listed by [`crate::Store::damage`].
///
/// Records are read one at a time, in order, but the frames about to be
/// read are first handed to the kernel together, so that records not in
/// the page cache come off the disk in one round of parallel reads rather
/// than one read after another. How far ahead: the rest of the page for
/// [`crate::Store::query`] (its limit, and one more for the cursor), across
/// as many segments as that takes; a window of 256 candidates otherwise.
pub struct Matches {
    plan_query: Query,
    after: Option<u64>,
    segments: std::vec::IntoIter<SegmentRef>,
    /// Segments planned, in order: the front one is being read. A segment
    /// whose planning failed holds the error, returned when it is reached.
    planned: std::collections::VecDeque<Result<Planned>>,
    /// Results the caller still wants, when it said (a page).
    wanted: Option<usize>,
    /// The merge of the event-time orders (the fields above stay unused).
    by_time: Option<crate::time_order::TimeMerge>,
    inner: Arc<Inner>,
    failed: bool,
    /// Read only open segments: stop at the first sealed one.
    open_only: bool,
    /// With `open_only`, whether a sealed segment was next.
    reached_sealed: bool,
    /// Index sections the plan reads in each segment, once known.
    sections: Option<Vec<SectionUse>>,
    /// Positions (in the whole list of segments) of the segments ahead
    /// whose sections were asked for, and the position the next one is
    /// looked for from (see [`Matches::advise_ahead`]).
    advised: std::collections::VecDeque<usize>,
    advised_until: usize,
    segment_count: usize,
    /// Segments planned one after the other without a candidate: past two,
    /// the rest are planned on the cores ([`Matches::plan_spread`]).
    empty_run: usize,
}

/// Plans one segment for results strictly before (descending) or after
/// `after`; `None` if it has no candidates. For a newest-first page, only
/// the open segment's `newest` candidates are taken, as many as the
/// results still wanted.
fn plan_one(
    query: &Query,
    inner: &Arc<Inner>,
    newest: Option<usize>,
    segment: SegmentRef,
    after: Option<u64>,
) -> Option<Result<Planned>> {
    let planned = Plan::new(query).and_then(|mut plan| {
        plan.after = after;
        candidates_or_all(&plan, &segment, inner, newest)
    });
    match planned {
        Ok(None) => None,
        Ok(Some(c)) => Some(Ok(Planned {
            segment,
            rest: c.set.into_iter(),
            ahead: std::collections::VecDeque::new(),
            descending: query.order.descending(),
            resume: c.resume,
        })),
        Err(e) => Some(Err(e)),
    }
}

/// Threads a read spreads independent segments over: the cores, at most 4.
fn read_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |p| p.get().min(4))
}

/// A segment's candidates still to read, in the order they are read.
struct Planned {
    segment: SegmentRef,
    /// Candidates not looked at yet.
    rest: roaring::bitmap::IntoIter,
    /// Candidates handed to the kernel to read ahead and not read yet,
    /// taken from `rest` in order.
    ahead: std::collections::VecDeque<u32>,
    descending: bool,
    /// Where to plan the segment again once these run out, when only its
    /// newest candidates were taken.
    resume: Option<u64>,
}

impl Planned {
    /// The next candidate, taken from those read ahead first.
    fn next(&mut self) -> Option<u32> {
        self.ahead.pop_front().or_else(|| self.take())
    }

    fn take(&mut self) -> Option<u32> {
        if self.descending {
            self.rest.next_back()
        } else {
            self.rest.next()
        }
    }

    /// Takes up to `n` more candidates to read ahead and asks the kernel
    /// for the index blocks that locate them (without waiting); returns
    /// them. [`Planned::will_need`] then asks for their records.
    fn take_ahead(&mut self, n: usize) -> Vec<u32> {
        let mut new = Vec::with_capacity(n.min(MAX_READ_AHEAD));
        for _ in 0..n {
            let Some(ordinal) = self.take() else { break };
            self.ahead.push_back(ordinal);
            new.push(ordinal);
        }
        if let SegmentRef::Sealed(s) = &self.segment {
            s.advise_offsets(&new);
        }
        new
    }

    /// Asks the kernel for the records of `ordinals`, taken ahead.
    fn will_need(&self, ordinals: &[u32]) {
        if let SegmentRef::Sealed(s) = &self.segment {
            s.will_need(ordinals);
        }
    }
}

/// Candidates read ahead at a time when the caller did not say how many
/// results it wants.
const READ_AHEAD: usize = 256;

/// At most this many candidates are read ahead at once, and at most
/// [`PLAN_AHEAD`] segments are planned beyond the one being read.
const MAX_READ_AHEAD: usize = 4096;
const PLAN_AHEAD: usize = 16;
/// Sealed segments ahead whose index sections a search asks for before
/// planning them.
const ADVISE_AHEAD: usize = 4;

impl Matches {
    pub(crate) fn new(view: &View, query: &Query, inner: Arc<Inner>) -> Result<Matches> {
        let plan = Plan::new(query)?;
        let after = plan.after;
        let by_time = query
            .order
            .by_time()
            .then(|| crate::time_order::TimeMerge::new(view, query, inner.clone()));
        let segments = if by_time.is_some() {
            Vec::new()
        } else {
            segments_in_order(view, query.order)
        };
        let segment_count = segments.len();
        Ok(Matches {
            plan_query: query.clone(),
            after,
            segments: segments.into_iter(),
            planned: std::collections::VecDeque::new(),
            wanted: None,
            by_time,
            inner,
            failed: false,
            open_only: false,
            reached_sealed: false,
            sections: None,
            advised: std::collections::VecDeque::new(),
            advised_until: 0,
            segment_count,
            empty_run: 0,
        })
    }

    /// Plans the next segment that has candidates (a planning error is
    /// kept, to be returned when reading reaches it); false when no segment
    /// is left.
    fn plan_next(&mut self) -> bool {
        loop {
            if self.open_only
                && matches!(
                    self.segments.as_slice().first(),
                    Some(SegmentRef::Sealed(_))
                )
            {
                self.reached_sealed = true;
                return false;
            }
            if let Some(found) = self.plan_spread() {
                return found;
            }
            self.advise_ahead();
            let Some(segment) = self.segments.next() else {
                return false;
            };
            if let Some(planned) = self.plan_segment(segment, self.after) {
                self.empty_run = 0;
                self.planned.push_back(planned);
                return true;
            }
            self.empty_run += 1;
        }
    }

    /// After two segments in a row without a candidate (a lookup of a rare
    /// value, or of one the log lacks, which looks into every segment's
    /// index), plans the sealed segments that follow on the cores, taken in
    /// order until one has candidates, and asks ahead for their index
    /// headers and sections as a count does ([`AskAhead`]). Those before it
    /// are planned as one after the other would have planned them; any
    /// planned after it are planned again when reached. Returns whether a
    /// segment with candidates was planned, or `None` to plan one at a time
    /// (before the run, on one core, on a store reading around damage,
    /// which records damage in log order, or with fewer than two sealed
    /// segments next).
    fn plan_spread(&mut self) -> Option<bool> {
        if self.empty_run < 2 || self.inner.damage.is_some() || self.open_only {
            return None;
        }
        let threads = read_threads();
        let rest: Vec<SegmentRef> = self
            .segments
            .as_slice()
            .iter()
            .take_while(|s| matches!(s, SegmentRef::Sealed(_)))
            .cloned()
            .collect();
        if threads < 2 || rest.len() < 2 {
            return None;
        }
        let newest = self.newest_wanted();
        let Ok(mut plan) = Plan::new(&self.plan_query) else {
            return None;
        };
        plan.after = self.after;
        let ahead = AskAhead::start(&plan, &rest, Vec::new());
        let (query, inner, after) = (&self.plan_query, &self.inner, self.after);
        let (_, planned) = crate::spread::in_order(
            rest.len(),
            threads,
            |i| {
                ahead.at(i);
                plan_one(query, inner, newest, rest[i].clone(), after)
            },
            Option::is_some,
            || (),
        );
        let mut taken = 0;
        for (i, result) in planned {
            if i != taken {
                break;
            }
            taken += 1;
            if let Some(planned) = result {
                self.planned.push_back(planned);
                self.empty_run = 0;
                break;
            }
            self.empty_run += 1;
        }
        if taken > 0 {
            self.segments.nth(taken - 1);
        }
        if self.empty_run == 0 {
            return Some(true);
        }
        // Every sealed segment planned without candidates: the open ones
        // after them (oldest first) are planned one at a time.
        None
    }

    /// [`plan_one`] with this search's query and the results it still wants.
    fn plan_segment(&self, segment: SegmentRef, after: Option<u64>) -> Option<Result<Planned>> {
        plan_one(
            &self.plan_query,
            &self.inner,
            self.newest_wanted(),
            segment,
            after,
        )
    }

    /// For a newest-first page, the results still wanted: the open
    /// segment's newest candidates are taken that many at a time.
    fn newest_wanted(&self) -> Option<usize> {
        self.wanted
            .filter(|_| self.plan_query.order.descending() && self.by_time.is_none())
            .map(|k| k.max(1))
    }

    /// Hands the kernel the next candidates to read: as many as the results
    /// still wanted (or a window), from the segment being read and, for a
    /// page, from the segments after it, planned now for that.
    fn read_ahead(&mut self) {
        let budget = self.wanted.unwrap_or(READ_AHEAD).clamp(1, MAX_READ_AHEAD);
        if self.wanted.is_some() {
            self.advise_planned_columns(budget);
        }
        let mut covered = 0usize;
        let mut index = 0usize;
        // First the candidates of every segment the budget reaches, their
        // index blocks asked for together; then their records, once the
        // blocks that locate them are all on their way.
        let mut taken: Vec<(usize, Vec<u32>)> = Vec::new();
        while covered < budget {
            if index == self.planned.len() {
                // Only a page looks beyond the segment being read.
                if self.wanted.is_none() || index > PLAN_AHEAD || !self.plan_next() {
                    break;
                }
                continue;
            }
            let Some(Ok(p)) = self.planned.get_mut(index) else {
                break; // a segment that failed: reading stops there
            };
            covered += p.ahead.len();
            let new = p.take_ahead(budget.saturating_sub(covered));
            covered += new.len();
            taken.push((index, new));
            index += 1;
        }
        for (index, new) in taken {
            if let Some(Ok(p)) = self.planned.get(index) {
                p.will_need(&new);
            }
        }
    }

    /// Asks the kernel for the index sections the plan reads (dictionaries,
    /// hashed and IP indexes) in the next [`ADVISE_AHEAD`] sealed segments
    /// it does not skip, those not checked yet, so that the disk reads
    /// them together rather than one segment after the other as each is
    /// planned. Only advice: nothing is read or checked here.
    fn advise_ahead(&mut self) {
        let position = self.segment_count - self.segments.as_slice().len();
        while self.advised.front().is_some_and(|&p| p < position) {
            self.advised.pop_front();
        }
        if self.advised.len() >= ADVISE_AHEAD {
            return;
        }
        let Ok(mut plan) = Plan::new(&self.plan_query) else {
            return;
        };
        plan.after = self.after;
        let sections = self.sections.get_or_insert_with(|| plan.sections_used());
        if sections.is_empty() {
            return;
        }
        self.advised_until = self.advised_until.max(position);
        let mut next = Vec::new();
        while self.advised.len() + next.len() < ADVISE_AHEAD
            && self.advised_until < self.segment_count
        {
            let at = self.advised_until;
            self.advised_until += 1;
            let ahead = self.segments.as_slice().get(at - position);
            if let Some(s) = planned_sealed(&plan, ahead) {
                next.push((at, s));
            }
        }
        // Every sidecar's header first, then the sections each one's table
        // locates: two waits for the disk in all rather than two each.
        for (_, s) in &next {
            s.ask_sidecar_head();
        }
        for (at, s) in next {
            s.advise_sections(sections);
            self.advised.push_back(at);
        }
    }

    /// For a page: plans the segments whose candidates the page may read
    /// (until they number `budget`, at most [`PLAN_AHEAD`] segments
    /// beyond the one being read) and asks the kernel for the index
    /// columns of all of them at once, before the first is checked, so
    /// that the disk reads them together.
    fn advise_planned_columns(&mut self, budget: usize) {
        // Columns already advised (and most likely checked, as in a server
        // that has read these segments before): plan lazily, as below.
        if let Some(Ok(Planned {
            segment: SegmentRef::Sealed(front),
            ..
        })) = self.planned.front()
            && front.columns_advised()
        {
            return;
        }
        let pending = |p: &Result<Planned>| match p {
            Ok(p) => p.ahead.len() + p.rest.size_hint().0,
            Err(_) => usize::MAX,
        };
        let mut covered = self
            .planned
            .iter()
            .map(pending)
            .fold(0usize, usize::saturating_add);
        while covered < budget && self.planned.len() <= PLAN_AHEAD && self.plan_next() {
            covered = covered.saturating_add(self.planned.back().map_or(0, pending));
        }
        for p in self.planned.iter().flatten() {
            if let SegmentRef::Sealed(s) = &p.segment {
                s.advise_columns();
            }
        }
    }

    fn next_result(&mut self) -> Result<Option<Record>> {
        if let Some(merge) = &mut self.by_time {
            return merge.next_match();
        }
        loop {
            match self.planned.front() {
                None => {
                    if !self.plan_next() {
                        return Ok(None);
                    }
                    continue;
                }
                Some(Err(_)) => match self.planned.pop_front() {
                    Some(Err(e)) => return Err(e),
                    _ => continue,
                },
                Some(Ok(p)) => {
                    if p.ahead.is_empty() {
                        self.read_ahead();
                    }
                }
            }
            let Some(Ok(p)) = self.planned.front_mut() else {
                continue;
            };
            let Some(ordinal) = p.next() else {
                // Only the newest candidates were taken and some failed
                // their check: plan the rest of the segment.
                if let Some(Ok(done)) = self.planned.pop_front()
                    && let Some(below) = done.resume
                    && let Some(rest) = self.plan_segment(done.segment, Some(below))
                {
                    self.planned.push_front(rest);
                }
                continue;
            };
            let segment = p.segment.clone();
            match read_match(&segment, ordinal, &self.plan_query) {
                Ok(Some(record)) => {
                    if let Some(wanted) = &mut self.wanted {
                        *wanted = wanted.saturating_sub(1);
                    }
                    return Ok(Some(record));
                }
                Ok(None) => continue,
                Err(e) => {
                    let seq = segment.first_seq() + u64::from(ordinal);
                    self.inner.read_around(seq, e)?;
                    continue;
                }
            }
        }
    }
}

impl Iterator for Matches {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_result() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One page of a query.
pub(crate) fn page(view: &View, query: &Query, inner: Arc<Inner>) -> Result<Page> {
    let mut matches = Matches::new(view, query, inner)?;
    let records = collect_page(&mut matches, query)?;
    Ok(finish_page(records, query))
}

/// The page of `query` when the open segments alone answer it whole: a
/// newest-first page whose matches, and the match after them (which
/// decides the cursor), are all in open segments. No sealed segment's file
/// is touched. `None` when the page needs more.
pub(crate) fn page_from_open(
    view: &View,
    query: &Query,
    inner: Arc<Inner>,
) -> Result<Option<Page>> {
    if query.order.by_time() || !query.order.descending() {
        return Ok(None);
    }
    let mut matches = Matches::new(view, query, inner)?;
    matches.open_only = true;
    let records = collect_page(&mut matches, query)?;
    if records.len() <= query.limit && matches.reached_sealed {
        return Ok(None);
    }
    Ok(Some(finish_page(records, query)))
}

/// Up to `limit + 1` matches (the one after the page decides its cursor).
fn collect_page(matches: &mut Matches, query: &Query) -> Result<Vec<Record>> {
    matches.wanted = Some(query.limit.saturating_add(1));
    let mut records = Vec::with_capacity(query.limit.min(1024));
    for record in matches.by_ref() {
        records.push(record?);
        if records.len() > query.limit {
            break;
        }
    }
    Ok(records)
}

/// The page of `records` (up to `limit + 1` of them) and its cursor.
fn finish_page(mut records: Vec<Record>, query: &Query) -> Page {
    let next_cursor = if records.len() > query.limit {
        records.truncate(query.limit);
        records
            .last()
            .map(|r| Cursor::after(r, query.order).encode(query))
    } else {
        None
    };
    Page {
        records,
        next_cursor,
    }
}

/// How many records match (ignoring order, limit and cursor).
/// Sealed and open segments from which a count is spread over the cores.
const PARALLEL_COUNT_SEGMENTS: usize = 32;

pub(crate) fn count(view: &View, query: &Query, inner: &Inner) -> Result<u64> {
    let unbounded = Query {
        cursor: None,
        ..query.clone()
    };
    let plan = Plan::new(&unbounded)?;
    let segments = segments_in_order(view, Order::OldestFirst);
    // Reading around damage records it as it is met, in log order: one
    // segment at a time. The first error in log order is the one returned,
    // as when counting in order.
    let threads = if inner.damage.is_some() || segments.len() < PARALLEL_COUNT_SEGMENTS {
        1
    } else {
        read_threads()
    };
    let ahead = AskAhead::start(&plan, &segments, Vec::new());
    let (_, counted) = crate::spread::in_order(
        segments.len(),
        threads,
        |i| {
            ahead.at(i);
            count_segment(&plan, &segments[i], query, inner)
        },
        Result::is_err,
        || (),
    );
    counted.into_iter().map(|(_, c)| c).sum()
}

/// How many segments ahead of the one it counts a count asks for sidecar
/// headers.
const COUNT_ASK_AHEAD: usize = 32;

/// What a count over many segments asks the disk for ahead of the segment
/// it counts: each sidecar's header [`COUNT_ASK_AHEAD`] segments before
/// its count opens it, and the sections the count reads half as many
/// segments before (once the header is likely in, and only if it was not
/// in memory). When they are on disk, the disk reads them together rather
/// than one open and one lookup after the other.
pub(crate) struct AskAhead<'a> {
    plan: &'a Plan<'a>,
    segments: &'a [SegmentRef],
    sections: Vec<SectionUse>,
}

impl<'a> AskAhead<'a> {
    /// Asks for the first segments' headers and sections: those `plan`
    /// reads, and `more` (what the count reads besides, such as the
    /// dictionary it groups by).
    pub(crate) fn start(
        plan: &'a Plan<'a>,
        segments: &'a [SegmentRef],
        more: Vec<SectionUse>,
    ) -> AskAhead<'a> {
        let mut sections = plan.sections_used();
        for m in more {
            if !sections.contains(&m) {
                sections.push(m);
            }
        }
        let ahead = AskAhead {
            plan,
            segments,
            sections,
        };
        (0..COUNT_ASK_AHEAD)
            .filter_map(|i| ahead.sealed(i))
            .for_each(|s| s.ask_sidecar_head());
        (0..COUNT_ASK_AHEAD / 2)
            .filter_map(|i| ahead.sealed(i))
            .for_each(|s| s.advise_sections_if_cold(&ahead.sections));
        ahead
    }

    /// Before segment `i` is counted.
    pub(crate) fn at(&self, i: usize) {
        if let Some(s) = self.sealed(i + COUNT_ASK_AHEAD) {
            s.ask_sidecar_head();
        }
        if let Some(s) = self.sealed(i + COUNT_ASK_AHEAD / 2) {
            s.advise_sections_if_cold(&self.sections);
        }
    }

    fn sealed(&self, i: usize) -> Option<&'a Arc<SealedSegment>> {
        planned_sealed(self.plan, self.segments.get(i))
    }
}

/// `segment`, if it is sealed and `plan` does not skip it by its footer
/// (its seqs and event times).
fn planned_sealed<'s>(
    plan: &Plan<'_>,
    segment: Option<&'s SegmentRef>,
) -> Option<&'s Arc<SealedSegment>> {
    match segment {
        Some(SegmentRef::Sealed(s))
            if !plan.skips(
                s.header.first_seq,
                s.footer.record_count,
                (
                    s.footer.min_event_time.as_nanos(),
                    s.footer.max_event_time.as_nanos(),
                ),
            ) =>
        {
            Some(s)
        }
        _ => None,
    }
}

/// The records of `segment` that match `query`.
fn count_segment(
    plan: &Plan<'_>,
    segment: &SegmentRef,
    query: &Query,
    inner: &Inner,
) -> Result<u64> {
    let mut total = 0u64;
    let (c, indexed) = match segment_candidates(plan, segment, None) {
        Err(e @ Error::Corruption(_)) if inner.damage.is_some() => {
            tracing::info!(segment = segment.name(), error = %e, "counting a damaged segment record by record");
            let all = plan.unindexed(segment.first_seq(), segment.len());
            let all = all.map(|set| SegmentCandidates {
                set,
                precise: false,
                resume: None,
            });
            (all, false)
        }
        other => (other?, true),
    };
    let Some(c) = c else {
        return Ok(0);
    };
    let needs_check = !indexed
        || (!c.precise
            && (query.request_id.is_some()
                || query.resource.as_ref().is_some_and(|r| r.id.is_some())));
    if !needs_check {
        return Ok(c.set.len());
    }
    for ordinal in &c.set {
        let seq = segment.first_seq() + u64::from(ordinal);
        let decoded = crate::aggregate::read_checked(segment, ordinal, |view| query.matches(view));
        match decoded {
            Ok(true) => total += 1,
            Ok(false) => {}
            Err(e) => inner.read_around(seq, e)?,
        }
    }
    Ok(total)
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
