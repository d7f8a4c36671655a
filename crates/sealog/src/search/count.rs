//! Counting: how many records match, from the indexes, segments spread
//! over the cores, each segment's index asked for ahead ([`AskAhead`]).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::query::{Order, Query};
use crate::segment::SealedSegment;
use crate::store::{Inner, View};

use super::{
    Plan, SectionUse, SegmentCandidates, SegmentRef, planned_sealed, read_threads,
    segment_candidates, segments_in_order,
};

/// Sealed and open segments from which a count is spread over the cores.
const PARALLEL_COUNT_SEGMENTS: usize = 32;

/// How many records match (ignoring order, limit and cursor).
pub(crate) fn count(view: &View, query: &Query, inner: &Inner) -> Result<u64> {
    let unbounded = Query {
        cursor: None,
        ..query.clone()
    };
    let plan = Plan::new(&unbounded)?;
    let _read = crate::spread::ReadInProgress::start();
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
            // No bound on the records checked: always a count.
            let mut unbounded = u64::MAX;
            count_segment(&plan, &segments[i], query, inner, &mut unbounded)
                .map(|n| n.unwrap_or_default())
        },
        Result::is_err,
        || (),
    );
    counted.into_iter().map(|(_, c)| c).sum()
}

/// How many records match, when every segment the count reads can be read
/// without waiting for a disk or a fetch (as a search of
/// [`super::Reach::Memory`] reads them): the open segments, and at most
/// [`super::IN_MEMORY_SEGMENTS`] sealed segments it does not skip by their
/// footers, each wholly in memory (looked at before any key filter is
/// asked, so that the look is bounded however many segments the store
/// has). `None` otherwise, before anything is counted. On one thread,
/// asking the kernel for nothing.
pub(crate) fn count_in_memory(view: &View, query: &Query, inner: &Inner) -> Result<Option<u64>> {
    let unbounded = Query {
        cursor: None,
        ..query.clone()
    };
    let mut plan = Plan::new(&unbounded)?;
    plan.now = true;
    let segments = segments_in_order(view, Order::OldestFirst);
    let mut sealed = 0usize;
    for segment in &segments {
        if let SegmentRef::Sealed(s) = segment
            && !plan.skips_by_footer(s)
        {
            sealed += 1;
            if sealed > super::IN_MEMORY_SEGMENTS || !s.in_memory() {
                return Ok(None);
            }
        }
    }
    let _read = crate::spread::ReadInProgress::start();
    let mut total = 0u64;
    let mut checks = IN_MEMORY_CHECKS;
    for segment in &segments {
        match count_segment(&plan, segment, query, inner, &mut checks)? {
            Some(n) => total += n,
            None => return Ok(None),
        }
    }
    Ok(Some(total))
}

/// The most records a count of what is in memory reads to check them (a
/// count of an exact value whose index is hashed): one that would read
/// more is left to a count that may take its time.
const IN_MEMORY_CHECKS: u64 = 1024;

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
        // Then the bitmaps their lookups read, found in the directories
        // asked for just now.
        (0..COUNT_ASK_AHEAD / 2)
            .filter_map(|i| ahead.sealed(i))
            .for_each(|s| s.advise_lookups(&ahead.sections));
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
        // The bitmaps of the segment whose sections were asked for at the
        // step before (its directory had that step to arrive).
        if let Some(s) = self.sealed(i + COUNT_ASK_AHEAD / 2 - 1) {
            s.advise_lookups(&self.sections);
        }
    }

    fn sealed(&self, i: usize) -> Option<&'a Arc<SealedSegment>> {
        planned_sealed(self.plan, self.segments.get(i))
    }
}

/// The records of `segment` that match `query`; `None` if that needs more
/// records read and checked than `checks` has left (it is then spent).
fn count_segment(
    plan: &Plan<'_>,
    segment: &SegmentRef,
    query: &Query,
    inner: &Inner,
    checks: &mut u64,
) -> Result<Option<u64>> {
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
        return Ok(Some(0));
    };
    let needs_check = !indexed
        || (!c.precise
            && (query.request_id.is_some()
                || query.resource.as_ref().is_some_and(|r| r.id.is_some())));
    if !needs_check {
        return Ok(Some(c.set.len()));
    }
    let Some(left) = checks.checked_sub(c.set.len()) else {
        return Ok(None);
    };
    *checks = left;
    for ordinal in &c.set {
        let seq = segment.first_seq() + u64::from(ordinal);
        let decoded = crate::aggregate::read_checked(segment, ordinal, |view| query.matches(view));
        match decoded {
            Ok(true) => total += 1,
            Ok(false) => {}
            Err(e) => inner.read_around(seq, e)?,
        }
    }
    Ok(Some(total))
}
