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
//! The executor then reads the candidates in order and checks each decoded
//! record against the full query, so an index can narrow the search but
//! never put a wrong record in the results. Counting does not read records
//! unless an index may return false positives.
//!
//! The event-time orders do not visit segments in seq order: see
//! [`crate::time_order`], which merges the segments by their event-time
//! ranges and uses the same per-segment planning.

use std::sync::Arc;

use roaring::RoaringBitmap;
use sealog_format::Record;
use sealog_format::record;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::index::{DictField, ExactField, IndexView, TermSelect, actor_term};
use crate::query::{Cursor, Order, Page, Query};
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

    /// The ordinals of a segment that may match, in no particular order, or
    /// `None` if none can. `len` is the number of records to consider;
    /// `time_range` the segment's event-time range.
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

    pub(crate) fn candidates(
        &self,
        view: &dyn IndexView,
        first_seq: u64,
        len: u64,
        time_range: Option<(i64, i64)>,
    ) -> Result<Option<RoaringBitmap>> {
        if len == 0 {
            return Ok(None);
        }
        // Cursor and time pruning.
        let Some((lo, hi)) = self.cursor_bounds(first_seq, len) else {
            return Ok(None);
        };
        let mut time_needed = self.has_time();
        if let Some((min, max)) = time_range {
            if self.outside_time((min, max)) {
                return Ok(None);
            }
            if min >= self.from && max < self.to {
                time_needed = false;
            }
        }

        // Indexed predicates, smallest first.
        let q = self.query;
        let mut sets: Vec<RoaringBitmap> = Vec::new();
        let mut add = |set: RoaringBitmap| -> bool {
            let empty = set.is_empty();
            sets.push(set);
            !empty
        };
        if let Some((term, exact)) = &self.actor {
            let select = if *exact {
                TermSelect::Exact(term)
            } else {
                TermSelect::Prefix(term)
            };
            if !add(view.dict(DictField::Actor, &select)?) {
                return Ok(None);
            }
        }
        if !q.actions.is_empty() {
            let mut union = RoaringBitmap::new();
            for pattern in &q.actions {
                let set = if pattern.is_exact() {
                    view.dict(
                        DictField::Action,
                        &TermSelect::Exact(pattern.as_str().as_bytes()),
                    )?
                } else {
                    let matches =
                        |term: &[u8]| std::str::from_utf8(term).is_ok_and(|t| pattern.matches(t));
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
            if !add(union) {
                return Ok(None);
            }
        }
        let exact_dict =
            |field: DictField, value: &str| view.dict(field, &TermSelect::Exact(value.as_bytes()));
        if let Some(r) = &q.resource {
            if let Some(kind) = &r.kind
                && !add(exact_dict(DictField::ResourceType, kind)?)
            {
                return Ok(None);
            }
            if let Some(id) = &r.id
                && !add(view.exact(ExactField::ResourceId, id.as_bytes())?)
            {
                return Ok(None);
            }
        }
        if let Some(kind) = &q.resource_type
            && !add(exact_dict(DictField::ResourceType, kind)?)
        {
            return Ok(None);
        }
        if let Some(outcome) = q.outcome
            && !add(exact_dict(DictField::Outcome, outcome.as_str())?)
        {
            return Ok(None);
        }
        if let Some(tenant) = &q.tenant
            && !add(exact_dict(DictField::Tenant, tenant)?)
        {
            return Ok(None);
        }
        if let Some(ip) = &q.source_ip
            && !add(view.ip(ip.range())?)
        {
            return Ok(None);
        }
        if let Some(id) = &q.request_id
            && !add(view.exact(ExactField::RequestId, id.as_bytes())?)
        {
            return Ok(None);
        }
        sets.sort_unstable_by_key(RoaringBitmap::len);
        let mut candidates = match sets.split_first() {
            Some((first, rest)) => {
                let mut acc = first.clone();
                for set in rest {
                    acc &= set;
                    if acc.is_empty() {
                        return Ok(None);
                    }
                }
                acc
            }
            None => {
                let mut all = RoaringBitmap::new();
                all.insert_range(
                    u32::try_from(lo).unwrap_or(u32::MAX)..u32::try_from(hi).unwrap_or(u32::MAX),
                );
                all
            }
        };
        if lo > 0 {
            candidates.remove_range(0..u32::try_from(lo).unwrap_or(u32::MAX));
        }
        candidates.remove_range(u32::try_from(hi).unwrap_or(u32::MAX)..);
        if time_needed && !candidates.is_empty() {
            candidates = view.time_filter(self.from, self.to, Some(&candidates))?;
        }
        Ok((!candidates.is_empty()).then_some(candidates))
    }
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

/// Candidates of one segment, with whether they need checking against the
/// record to be exact.
struct SegmentCandidates {
    set: RoaringBitmap,
    precise: bool,
}

fn segment_candidates(plan: &Plan<'_>, segment: &SegmentRef) -> Result<Option<SegmentCandidates>> {
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
            }))
        }
        SegmentRef::Open(s) => s.with_index(|view, len, time_range| {
            let set = plan.candidates(view, first_seq, len, time_range)?;
            // Exact-match keys are hashed here too.
            Ok(set.map(|set| SegmentCandidates {
                set,
                precise: false,
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
) -> Result<Option<SegmentCandidates>> {
    match segment_candidates(plan, segment) {
        Err(e @ Error::Corruption(_)) if inner.damage.is_some() => {
            tracing::info!(segment = segment.name(), error = %e, "searching a damaged segment record by record");
            Ok(plan
                .unindexed(segment.first_seq(), segment.len())
                .map(|set| SegmentCandidates {
                    set,
                    precise: false,
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

    /// Reads up to `n` more candidates ahead; returns how many.
    fn read_ahead(&mut self, n: usize) -> usize {
        let from = self.ahead.len();
        for _ in 0..n {
            let Some(ordinal) = self.take() else { break };
            self.ahead.push_back(ordinal);
        }
        if let SegmentRef::Sealed(s) = &self.segment {
            let (first, second) = self.ahead.as_slices();
            let new: Vec<u32> = first.iter().chain(second).skip(from).copied().collect();
            s.will_need(&new);
        }
        self.ahead.len() - from
    }
}

/// Candidates read ahead at a time when the caller did not say how many
/// results it wants.
const READ_AHEAD: usize = 256;

/// At most this many candidates are read ahead at once, and at most
/// [`PLAN_AHEAD`] segments are planned beyond the one being read.
const MAX_READ_AHEAD: usize = 4096;
const PLAN_AHEAD: usize = 16;

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
        Ok(Matches {
            plan_query: query.clone(),
            after,
            segments: segments.into_iter(),
            planned: std::collections::VecDeque::new(),
            wanted: None,
            by_time,
            inner,
            failed: false,
        })
    }

    /// Plans the next segment that has candidates (a planning error is
    /// kept, to be returned when reading reaches it); false when no segment
    /// is left.
    fn plan_next(&mut self) -> bool {
        loop {
            let Some(segment) = self.segments.next() else {
                return false;
            };
            let planned = Plan::new(&self.plan_query).and_then(|mut plan| {
                plan.after = self.after;
                candidates_or_all(&plan, &segment, &self.inner)
            });
            match planned {
                Ok(None) => continue,
                Ok(Some(c)) => self.planned.push_back(Ok(Planned {
                    segment,
                    rest: c.set.into_iter(),
                    ahead: std::collections::VecDeque::new(),
                    descending: self.plan_query.order.descending(),
                })),
                Err(e) => self.planned.push_back(Err(e)),
            }
            return true;
        }
    }

    /// Hands the kernel the next candidates to read: as many as the results
    /// still wanted (or a window), from the segment being read and, for a
    /// page, from the segments after it, planned now for that.
    fn read_ahead(&mut self) {
        let budget = self.wanted.unwrap_or(READ_AHEAD).clamp(1, MAX_READ_AHEAD);
        let mut covered = 0usize;
        let mut index = 0usize;
        while covered < budget {
            if index == self.planned.len() {
                // Only a page looks beyond the segment being read.
                if self.wanted.is_none() || index > PLAN_AHEAD || !self.plan_next() {
                    return;
                }
                continue;
            }
            let Some(Ok(p)) = self.planned.get_mut(index) else {
                return; // a segment that failed: reading stops there
            };
            covered += p.ahead.len();
            covered += p.read_ahead(budget.saturating_sub(covered));
            index += 1;
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
                self.planned.pop_front();
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
    matches.wanted = Some(query.limit.saturating_add(1));
    let mut records = Vec::with_capacity(query.limit.min(1024));
    for record in matches.by_ref() {
        records.push(record?);
        if records.len() > query.limit {
            break;
        }
    }
    let next_cursor = if records.len() > query.limit {
        records.truncate(query.limit);
        records
            .last()
            .map(|r| Cursor::after(r, query.order).encode(query))
    } else {
        None
    };
    Ok(Page {
        records,
        next_cursor,
    })
}

/// How many records match (ignoring order, limit and cursor).
pub(crate) fn count(view: &View, query: &Query, inner: &Inner) -> Result<u64> {
    let unbounded = Query {
        cursor: None,
        ..query.clone()
    };
    let plan = Plan::new(&unbounded)?;
    let mut total = 0u64;
    for segment in segments_in_order(view, Order::OldestFirst) {
        let (c, indexed) = match segment_candidates(&plan, &segment) {
            Err(e @ Error::Corruption(_)) if inner.damage.is_some() => {
                tracing::info!(segment = segment.name(), error = %e, "counting a damaged segment record by record");
                let all = plan.unindexed(segment.first_seq(), segment.len());
                let all = all.map(|set| SegmentCandidates {
                    set,
                    precise: false,
                });
                (all, false)
            }
            other => (other?, true),
        };
        let Some(c) = c else {
            continue;
        };
        let needs_check = !indexed
            || (!c.precise
                && (query.request_id.is_some()
                    || query.resource.as_ref().is_some_and(|r| r.id.is_some())));
        if !needs_check {
            total += c.set.len();
            continue;
        }
        for ordinal in &c.set {
            let seq = segment.first_seq() + u64::from(ordinal);
            let decoded = segment.record(ordinal).and_then(|bytes| {
                let bytes = bytes.ok_or_else(|| {
                    Error::from(Corruption::new(
                        Location::file(segment.name()).seq(seq),
                        CorruptionKind::Layout(format!(
                            "record {seq} is missing although the segment's index lists it"
                        )),
                    ))
                })?;
                let location = || Location::file(segment.name()).seq(seq);
                let view = record::decode(&bytes).map_err(|e| {
                    Error::from(Corruption::new(location(), CorruptionKind::Record(e)))
                })?;
                if view.seq != seq {
                    return Err(Corruption::new(
                        location(),
                        CorruptionKind::SeqMismatch {
                            expected: seq,
                            found: view.seq,
                        },
                    )
                    .into());
                }
                Ok(query.matches(&view))
            });
            match decoded {
                Ok(true) => total += 1,
                Ok(false) => {}
                Err(e) => inner.read_around(seq, e)?,
            }
        }
    }
    Ok(total)
}
