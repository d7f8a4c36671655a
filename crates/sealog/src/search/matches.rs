//! The executor: [`Matches`] reads the candidates each segment's plan
//! gives, in the query's order, and checks every record against the query;
//! a page is the first of them ([`page`], [`page_from_open`]).

use std::sync::Arc;

use sealog_format::Record;
use sealog_format::record::RecordView;

use crate::error::Result;
use crate::query::{Cursor, Page, Query};
use crate::store::{Inner, View};

use super::{
    AskAhead, MakeFn, Plan, SectionUse, SegmentRef, candidates_or_all, planned_sealed, read_match,
    read_threads, segments_in_order,
};

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
    /// Which segments it reads.
    reach: Reach,
    /// Whether it stopped at a segment its reach leaves out.
    stopped: bool,
    /// Sealed segments planned, for [`Reach::Memory`].
    sealed_planned: usize,
    /// Candidate records it may still read, for [`Reach::Memory`].
    reads_left: usize,
    /// Index sections the plan reads in each segment, once known.
    sections: Option<Vec<SectionUse>>,
    /// Positions (in the whole list of segments) of the segments ahead
    /// whose sections were asked for, and the position the next one is
    /// looked for from (see [`Matches::advise_ahead`]).
    advised: std::collections::VecDeque<usize>,
    advised_until: usize,
    segment_count: usize,
    /// Counted as a read in progress while it lives.
    _read: crate::spread::ReadInProgress,
    /// Segments planned one after the other without a candidate: past two,
    /// the rest are planned on the cores ([`Matches::plan_spread`]).
    empty_run: usize,
}

/// Which segments a search reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every segment.
    All,
    /// The open segments only: it stops at the first sealed one.
    Open,
    /// What it can read without waiting for a disk or a fetch: the open
    /// segments, and up to [`IN_MEMORY_SEGMENTS`] sealed segments wholly in
    /// memory ([`crate::segment::SealedSegment::in_memory`]); it stops at
    /// the first other. It asks the kernel for nothing: what it reads is
    /// there.
    Memory,
}

/// The most sealed segments a search of [`Reach::Memory`] plans: one that
/// would plan more (a rare value looked for far back) is left to a search
/// that may take its time.
pub(crate) const IN_MEMORY_SEGMENTS: usize = 32;

/// The most candidate records a search of [`Reach::Memory`] reads (a page
/// of the server's is at most 100 matches): one whose candidates keep
/// failing their checks is left to a search that may take its time.
const IN_MEMORY_READS: usize = 1024;

/// Plans one segment for results strictly before (descending) or after
/// `after`; `None` if it has no candidates. For a newest-first page, only
/// the open segment's `newest` candidates are taken, as many as the
/// results still wanted.
///
/// For a page, `wanted` is the results it still wants: a sealed segment's
/// index blocks that locate its first that many candidates (and a
/// compressed file's block table) are asked for as soon as they are
/// known, so that they come off the disk while the segments after it are
/// planned, rather than once the page starts reading. With `now` (a search
/// of what is in memory) nothing is asked for, and the key filters are
/// asked only what they answer from memory ([`Plan::now`]).
fn plan_one(
    query: &Query,
    inner: &Arc<Inner>,
    (newest, wanted): (Option<usize>, Option<usize>),
    now: bool,
    segment: SegmentRef,
    after: Option<u64>,
) -> Option<Result<Planned>> {
    let planned = Plan::new(query).and_then(|mut plan| {
        plan.after = after;
        plan.now = now;
        candidates_or_all(&plan, &segment, inner, newest)
    });
    let wanted = wanted.filter(|_| !now);
    let descending = query.order.descending();
    match planned {
        Ok(None) => None,
        Ok(Some(c)) => {
            let mut asked = 0;
            if let (SegmentRef::Sealed(s), Some(wanted)) = (&segment, wanted) {
                let wanted = wanted.clamp(1, MAX_READ_AHEAD);
                let first: Vec<u32> = if descending {
                    c.set.iter().rev().take(wanted).collect()
                } else {
                    c.set.iter().take(wanted).collect()
                };
                s.advise_offsets(&first);
                asked = first.len();
            }
            Some(Ok(Planned {
                segment,
                rest: c.set.into_iter(),
                ahead: std::collections::VecDeque::new(),
                fetched: std::collections::HashMap::new(),
                descending,
                resume: c.resume,
                asked,
                advise: !now,
            }))
        }
        Err(e) => Some(Err(e)),
    }
}

/// A segment's candidates still to read, in the order they are read.
struct Planned {
    segment: SegmentRef,
    /// Candidates not looked at yet.
    rest: roaring::bitmap::IntoIter,
    /// Candidates handed to the kernel to read ahead and not read yet,
    /// taken from `rest` in order.
    ahead: std::collections::VecDeque<u32>,
    /// The records of candidates in `ahead` already read, for an open
    /// segment (read together: see [`Planned::will_need`]).
    fetched: std::collections::HashMap<u32, Vec<u8>>,
    descending: bool,
    /// Where to plan the segment again once these run out, when only its
    /// newest candidates were taken.
    resume: Option<u64>,
    /// How many of the next candidates taken had their index blocks asked
    /// for when the segment was planned ([`plan_one`]).
    asked: usize,
    /// Whether the kernel is asked for a sealed segment's pages before
    /// they are read (not by a search of what is in memory).
    advise: bool,
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
        // Those asked for at planning are not asked for again.
        let asked = self.asked.min(new.len());
        self.asked -= asked;
        if let SegmentRef::Sealed(s) = &self.segment
            && self.advise
            && let Some(rest) = new.get(asked..)
        {
            s.advise_offsets(rest);
        }
        new
    }

    /// Asks the kernel for the records of `ordinals`, taken ahead; an open
    /// segment (read with positioned reads, not mapped) reads them now,
    /// nearby frames with one read.
    fn will_need(&mut self, ordinals: &[u32]) {
        match &self.segment {
            SegmentRef::Sealed(s) if self.advise => s.will_need(ordinals),
            SegmentRef::Sealed(_) => {}
            SegmentRef::Open(s) if ordinals.len() > 1 => {
                self.fetched.extend(s.read_records(ordinals));
            }
            SegmentRef::Open(_) => {}
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
            reach: Reach::All,
            stopped: false,
            sealed_planned: 0,
            reads_left: IN_MEMORY_READS,
            sections: None,
            advised: std::collections::VecDeque::new(),
            advised_until: 0,
            segment_count,
            _read: crate::spread::ReadInProgress::start(),
            empty_run: 0,
        })
    }

    /// Plans the next segment that has candidates (a planning error is
    /// kept, to be returned when reading reaches it); false when no segment
    /// is left.
    fn plan_next(&mut self) -> bool {
        loop {
            if !self.within_reach() {
                self.stopped = true;
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

    /// Whether the next segment is within the search's [`Reach`] (counted
    /// as planned if it is a sealed one).
    fn within_reach(&mut self) -> bool {
        let Some(SegmentRef::Sealed(s)) = self.segments.as_slice().first() else {
            return true;
        };
        match self.reach {
            Reach::All => true,
            Reach::Open => false,
            Reach::Memory => {
                let within = self.sealed_planned < IN_MEMORY_SEGMENTS && s.in_memory();
                self.sealed_planned += usize::from(within);
                within
            }
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
        if self.empty_run < 2 || self.inner.damage.is_some() || self.reach != Reach::All {
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
        let (newest, wanted) = (self.newest_wanted(), self.wanted);
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
                plan_one(
                    query,
                    inner,
                    (newest, wanted),
                    false,
                    rest[i].clone(),
                    after,
                )
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
            (self.newest_wanted(), self.wanted),
            self.reach != Reach::All,
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
            if let Some(Ok(p)) = self.planned.get_mut(index) {
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
        // A search of the open segments alone reads no sealed segment, and
        // one of what is in memory reads pages already there: asking for
        // them would only cost system calls (a page answered from memory
        // is the common dashboard query, and falls back to a full search
        // when it is not).
        if self.reach != Reach::All {
            return;
        }
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
        for (at, s) in &next {
            s.advise_sections(sections);
            self.advised.push_back(*at);
        }
        // Then the bitmaps the lookups will read, found in the
        // dictionaries' directories asked for just now (one more wait for
        // them all).
        for (_, s) in &next {
            s.advise_lookups(sections);
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
            if let SegmentRef::Sealed(s) = &p.segment
                && p.advise
            {
                s.advise_columns();
            }
        }
    }

    /// The next match, made into `make` of it; `None` at the end, and
    /// after an error (which ends the search).
    fn advance<T>(&mut self, make: &mut MakeFn<'_, T>) -> Option<Result<T>> {
        if self.failed {
            return None;
        }
        match self.next_result_with(make) {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }

    /// The next match, made into `make` of it.
    fn next_result_with<T>(&mut self, make: &mut MakeFn<'_, T>) -> Result<Option<T>> {
        if let Some(merge) = &mut self.by_time {
            return merge.next_match(make);
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
            if self.reach == Reach::Memory {
                if self.reads_left == 0 {
                    self.stopped = true;
                    return Ok(None);
                }
                self.reads_left -= 1;
            }
            let segment = p.segment.clone();
            let fetched = p.fetched.remove(&ordinal);
            match read_match(&segment, ordinal, fetched, &self.plan_query, make) {
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

impl Matches {
    /// The next match, given to `make` as the checked view of its stored
    /// bytes, and what `make` returned: the records, order, checks and
    /// errors of the iterator, without an owned [`Record`] of each (an
    /// export writes each with [`RecordView::write_json`]). `None` at the
    /// end, and after an error.
    pub fn next_with<T>(
        &mut self,
        mut make: impl FnMut(&RecordView<'_>) -> T,
    ) -> Option<Result<T>> {
        self.advance(&mut |view| Ok(make(view)))
    }
}

impl Iterator for Matches {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance(&mut |view| view.to_record())
    }
}

/// One page of a query, each record made into `make` of it.
pub(crate) fn page<T>(
    view: &View,
    query: &Query,
    inner: Arc<Inner>,
    make: &mut MakeFn<'_, T>,
) -> Result<Page<T>> {
    let mut matches = Matches::new(view, query, inner)?;
    let records = collect_page(&mut matches, query, make)?;
    Ok(finish_page(records, query))
}

/// The page of `query` when the segments of `reach` answer it whole: a
/// page whose matches, and the match after them (which decides the
/// cursor), are all in those segments. With [`Reach::Open`], only a
/// newest-first page, and no sealed segment's file is touched. `None` when
/// the page needs more (or is in an event-time order).
pub(crate) fn page_within<T>(
    view: &View,
    query: &Query,
    inner: Arc<Inner>,
    reach: Reach,
    make: &mut MakeFn<'_, T>,
) -> Result<Option<Page<T>>> {
    if query.order.by_time() || (reach == Reach::Open && !query.order.descending()) {
        return Ok(None);
    }
    let mut matches = Matches::new(view, query, inner)?;
    matches.reach = reach;
    let records = collect_page(&mut matches, query, make)?;
    if records.records.len() <= query.limit && matches.stopped {
        return Ok(None);
    }
    Ok(Some(finish_page(records, query)))
}

/// Up to `limit + 1` matches (the one after the page decides its cursor),
/// and the cursor after the page's last one.
struct Collected<T> {
    records: Vec<T>,
    cursor_at_limit: Option<Cursor>,
}

fn collect_page<T>(
    matches: &mut Matches,
    query: &Query,
    make: &mut MakeFn<'_, T>,
) -> Result<Collected<T>> {
    matches.wanted = Some(query.limit.saturating_add(1));
    let mut records = Vec::with_capacity(query.limit.saturating_add(1).min(1024));
    let mut cursor_at_limit = None;
    let order = query.order;
    let mut make = |view: &RecordView<'_>| Ok((make(view)?, Cursor::after(view, order)));
    while let Some(record) = matches.advance(&mut make) {
        let (record, cursor) = record?;
        records.push(record);
        if records.len() == query.limit {
            cursor_at_limit = Some(cursor);
        }
        if records.len() > query.limit {
            break;
        }
    }
    Ok(Collected {
        records,
        cursor_at_limit,
    })
}

/// The page of the collected records (up to `limit + 1` of them) and its
/// cursor.
fn finish_page<T>(collected: Collected<T>, query: &Query) -> Page<T> {
    let Collected {
        mut records,
        cursor_at_limit,
    } = collected;
    let next_cursor = if records.len() > query.limit {
        records.truncate(query.limit);
        cursor_at_limit.map(|cursor| cursor.encode(query))
    } else {
        None
    };
    Page {
        records,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Order;
    use crate::search::Plan;
    use crate::segment::SealedSegment;

    #[test]
    fn a_page_asks_for_its_first_candidates_blocks_when_planning_and_not_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::image::workload_store(dir.path(), 1 << 20, 5, 4_000, 500);
        let view = store.view();
        for order in [Order::NewestFirst, Order::OldestFirst] {
            let query = Query {
                order,
                ..Query::default()
            };
            let sealed = segments_in_order(&view, order)
                .into_iter()
                .find(|s| matches!(s, SegmentRef::Sealed(_)))
                .unwrap();
            let all = sealed.len();
            // A page that wants 3 results: the first 3 in its order.
            let mut p = plan_one(
                &query,
                &store.inner,
                (None, Some(3)),
                false,
                sealed.clone(),
                None,
            )
            .unwrap()
            .unwrap();
            assert_eq!(p.asked, 3);
            // Read ahead past them: the first 3 taken are not asked for
            // again, the 2 after them are.
            let taken = p.take_ahead(5);
            assert_eq!(taken.len(), 5);
            assert_eq!(p.asked, 0);
            let first = if order == Order::NewestFirst {
                u32::try_from(all).unwrap() - 1
            } else {
                0
            };
            assert_eq!(taken[0], first);
            // A search that is not a page asks for nothing when planning.
            let p = plan_one(
                &query,
                &store.inner,
                (None, None),
                false,
                sealed.clone(),
                None,
            )
            .unwrap()
            .unwrap();
            assert_eq!(p.asked, 0);
            // Nor does a search of what is in memory.
            let p = plan_one(&query, &store.inner, (None, Some(3)), true, sealed, None)
                .unwrap()
                .unwrap();
            assert_eq!((p.asked, p.advise), (0, false));
        }
        store.close().unwrap();
    }

    /// The sealed segments of `store`, in `order`.
    fn sealed_in(store: &crate::Store, order: Order) -> Vec<Arc<SealedSegment>> {
        segments_in_order(&store.view(), order)
            .into_iter()
            .filter_map(|s| match s {
                SegmentRef::Sealed(s) => Some(s),
                SegmentRef::Open(_) => None,
            })
            .collect()
    }

    /// A query of the events of `record`'s actor.
    fn actor_query(record: &Record) -> Query {
        let actor = &record.event.actor;
        Query {
            actor: Some(crate::query::ActorFilter::parse(&format!(
                "{}:{}",
                actor.kind, actor.id
            ))),
            ..Query::default()
        }
    }

    /// A workload store of `events` in 1 MiB segments, closed and opened
    /// again: its sealed segments' indexes are not open yet.
    fn reopened_store(dir: &std::path::Path, seed: u64, events: u64) -> crate::Store {
        crate::image::workload_store(dir, 1 << 20, seed, events, 500)
            .close()
            .unwrap();
        crate::Store::open(dir, crate::StoreOptions::default()).unwrap()
    }

    /// The records of a page, or `None`, by `reach`.
    fn page_of(store: &crate::Store, query: &Query, reach: Option<Reach>) -> Option<Vec<Record>> {
        let mut make = |view: &RecordView<'_>| view.to_record();
        match reach {
            None => Some(page(&store.view(), query, store.inner.clone(), &mut make).unwrap()),
            Some(reach) => {
                page_within(&store.view(), query, store.inner.clone(), reach, &mut make).unwrap()
            }
        }
        .map(|p| p.records)
    }

    // mincore(2) and RWF_NOWAIT tell what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_page_from_memory_reads_the_sealed_segments_in_memory_and_stops_at_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::image::workload_store(dir.path(), 1 << 20, 7, 8_000, 500);
        let sealed = sealed_in(&store, Order::NewestFirst);
        assert!(sealed.len() >= 3, "{} sealed segments", sealed.len());
        // Just sealed: indexes open, every page written lately.
        assert!(sealed.iter().all(|s| s.in_memory()));
        // The oldest record's actor: its newest events may be anywhere.
        let oldest = store.get(0).unwrap().unwrap();
        for order in [Order::NewestFirst, Order::OldestFirst] {
            for limit in [1, 10, 100] {
                let query = Query {
                    order,
                    limit,
                    ..actor_query(&oldest)
                };
                let full = page_of(&store, &query, None).unwrap();
                assert!(!full.is_empty());
                assert_eq!(page_of(&store, &query, Some(Reach::Memory)), Some(full));
            }
        }
        // A page that needs the oldest segment stops there when it is not
        // in memory (here: its index not open, as after a reopen).
        let query = Query {
            order: Order::OldestFirst,
            limit: 5,
            ..Query::default()
        };
        let expected = page_of(&store, &query, None).unwrap();
        store.close().unwrap();
        let store = crate::Store::open(dir.path(), crate::StoreOptions::default()).unwrap();
        assert_eq!(page_of(&store, &query, Some(Reach::Memory)), None);
        assert_eq!(page_of(&store, &query, None), Some(expected));
        store.close().unwrap();
    }

    // RWF_NOWAIT tells what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_key_filters_answer_from_memory_as_they_do_from_the_disk_once_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = reopened_store(dir.path(), 11, 8_000);
        let sealed = sealed_in(&store, Order::OldestFirst);
        let first = store.get(0).unwrap().unwrap();
        let query = actor_query(&first);
        let plan = Plan::new(&query).unwrap();
        let filters = sealed[0].key_filters();
        let id = |s: &SealedSegment| crate::sidecar::identity(&s.header, &s.footer);
        // Its pages out of the page cache: not known from memory.
        let file = std::fs::File::open(dir.path().join(crate::key_filter::FILE)).unwrap();
        let dropped = crate::fs::drop_from_page_cache(&file, || {
            filters.may_hold_now(&id(&sealed[0]), &plan.keys).is_none()
        });
        assert!(dropped, "the key filters' pages stayed in the page cache");
        let mut held = 0;
        for s in &sealed {
            let may = filters.may_hold(&id(s), &plan.keys);
            held += usize::from(may);
            assert_eq!(filters.may_hold_now(&id(s), &plan.keys), Some(may));
        }
        assert!(
            held >= 1,
            "the segment of the first record may hold its actor"
        );
        store.close().unwrap();
    }

    // mincore(2) tells what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_page_from_memory_reads_a_bounded_number_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::image::workload_store(dir.path(), 1 << 20, 23, 4_000, 500);
        for order in [Order::NewestFirst, Order::OldestFirst] {
            let of = |limit| Query {
                order,
                limit,
                ..Query::default()
            };
            // Up to the bound (the match after the page is read too).
            let within = of(IN_MEMORY_READS - 1);
            assert_eq!(
                page_of(&store, &within, Some(Reach::Memory)),
                page_of(&store, &within, None)
            );
            // Past it: left to a full search.
            assert_eq!(
                page_of(&store, &of(IN_MEMORY_READS), Some(Reach::Memory)),
                None
            );
        }
        store.close().unwrap();
    }

    // mincore(2) tells what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_count_from_memory_waits_for_no_segment_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = reopened_store(dir.path(), 17, 8_000);
        let all = Query::default();
        // The sealed segments' indexes are not open: not counted here.
        assert_eq!(store.count_in_memory(&all).unwrap(), None);
        // A time range their footers leave out reads none of them.
        let earliest = sealed_in(&store, Order::OldestFirst)
            .iter()
            .map(|s| s.footer.min_event_time)
            .min();
        let before = Query {
            to: earliest,
            ..Query::default()
        };
        assert_eq!(store.count_in_memory(&before).unwrap(), Some(0));
        // Their indexes open (and every page in memory): counted here, as
        // a count counts.
        for s in sealed_in(&store, Order::OldestFirst) {
            s.index().unwrap();
        }
        assert_eq!(store.count_in_memory(&all).unwrap(), Some(8_000));
        let one = actor_query(&store.get(0).unwrap().unwrap());
        assert_eq!(
            store.count_in_memory(&one).unwrap(),
            Some(store.count(&one).unwrap())
        );
        store.close().unwrap();
    }

    // mincore(2) tells what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_count_from_memory_checks_a_bounded_number_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(
            dir.path(),
            crate::StoreOptions {
                segment_size: 1 << 20,
                preallocation: crate::Preallocation::None,
                ..crate::StoreOptions::default()
            },
        )
        .unwrap();
        // 2,000 events of one resource, whose id the index hashes: a count
        // of it reads each candidate to check it.
        let mut events = crate::workload::Workload::new(19).generate(2_000);
        for e in &mut events {
            e.resource = sealog_format::Resource::new("doc", "x");
        }
        store.append_batch(events).unwrap();
        store.roll().unwrap();
        store.wait_sealed().unwrap();
        let of = |resource: &str| Query {
            resource: Some(crate::query::ResourceFilter::parse(resource)),
            ..Query::default()
        };
        assert_eq!(store.count(&of("doc:x")).unwrap(), 2_000);
        assert_eq!(store.count_in_memory(&of("doc:x")).unwrap(), None);
        // A value with few candidates is counted here.
        assert_eq!(store.count_in_memory(&of("doc:y")).unwrap(), Some(0));
        let one = store.get(7).unwrap().unwrap();
        let by_request = Query {
            request_id: one.event.request_id.clone(),
            ..Query::default()
        };
        assert_eq!(store.count_in_memory(&by_request).unwrap(), Some(1));
        store.close().unwrap();
    }

    // mincore(2) tells what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_segment_is_in_memory_as_soon_as_its_index_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = reopened_store(dir.path(), 13, 4_000);
        let s = sealed_in(&store, Order::OldestFirst).remove(0);
        // Not open yet: not in memory, whatever its pages.
        assert!(!s.in_memory());
        s.index().unwrap();
        // Open now: in memory at once (its pages were never found out).
        assert!(s.in_memory());
        store.close().unwrap();
    }

    // mincore(2) tells what is in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_segment_with_a_page_out_of_memory_is_not_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::image::workload_store(dir.path(), 1 << 20, 9, 4_000, 500);
        let s = sealed_in(&store, Order::OldestFirst).remove(0);
        assert!(s.files_in_memory());
        let path = dir.path().join(&s.name);
        s.map.evict(&std::fs::File::open(&path).unwrap());
        assert!(!s.files_in_memory());
        store.close().unwrap();
    }
}
