//! The event-time orders: matches by event time (ties by seq), newest or
//! oldest first, without sorting the log.
//!
//! Event times are the clients' and are not sorted in the log, but each
//! segment knows their range: a sealed segment's footer has its minimum
//! and maximum event time, an open segment keeps them as records commit.
//! The merge keeps a priority queue of *sources*:
//!
//! - a segment not yet opened, keyed by the best key any of its records can
//!   have (for latest-first, its maximum event time);
//! - an opened segment, keyed by its best remaining candidate.
//!
//! Popping an unopened segment opens it: the planner of [`crate::search`]
//! gives its candidate ordinals (indexes, time range, the cursor's time)
//! and the segment's event-time column (the sidecar's, or the open
//! segment's in memory) gives their times. Its candidates are not sorted
//! as a whole: each time the segment runs out of sorted ones, the next
//! chunk of best keys is selected in linear time and only that chunk is
//! sorted (chunks start at the page size and double). Popping an opened
//! segment yields its best candidate, read and checked against the full
//! query. A segment is opened only once the merge reaches its range, so a
//! page of the newest events touches the few segments whose ranges reach
//! that far, however many there are; the merge is exact, because no
//! unopened segment can hold a record better than its key.
//!
//! A cursor is the last record's (event time, seq): the time narrows the
//! planner's time range and the candidates are cut strictly after the
//! position, so pages never repeat or skip a record.
//!
//! Records committed to an open segment after the merge began are not
//! part of it (the segment's length and range are taken together when it
//! starts), so the order cannot be broken by a record arriving behind the
//! merge's position.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::IndexView;
use crate::query::Query;
use crate::search::{MakeFn, Plan, SegmentRef, read_match, segments_in_order};
use crate::store::{Inner, View};

/// A position in merge order: the largest key comes out first. For the
/// latest-first order it is `(event time, seq)`; for earliest-first both
/// are bit-inverted, which reverses their order without overflow.
type Key = (i64, u64);

fn key(descending: bool, time: i64, seq: u64) -> Key {
    if descending {
        (time, seq)
    } else {
        (!time, !seq)
    }
}

/// A segment taking part in the merge.
struct Segment {
    segment: SegmentRef,
    /// The best key a record of the segment can have.
    bound: Key,
    /// For an open segment: the records committed when the merge began.
    len: Option<u64>,
    /// Set once opened.
    opened: Option<Opened>,
}

/// The candidates of an opened segment.
struct Opened {
    /// Not yet sorted: `(event time, ordinal)`.
    pending: Vec<(i64, u32)>,
    /// Sorted so that the best is last.
    ready: Vec<(i64, u32)>,
    /// How many to select at the next refill.
    chunk: usize,
}

/// An entry of the priority queue.
#[derive(PartialEq, Eq)]
struct Entry {
    key: Key,
    /// Index into [`TimeMerge::segments`].
    segment: usize,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key, self.segment).cmp(&(other.key, other.segment))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The matches of an event-time-ordered query, one at a time.
pub(crate) struct TimeMerge {
    query: Query,
    descending: bool,
    segments: Vec<Segment>,
    queue: BinaryHeap<Entry>,
    /// Decides whether a damaged record fails the query or is read around.
    inner: Arc<Inner>,
}

impl TimeMerge {
    /// The merge over the segments of `view`; `query` has been validated.
    pub(crate) fn new(view: &View, query: &Query, inner: Arc<Inner>) -> TimeMerge {
        let descending = query.order.descending();
        let mut segments = Vec::new();
        let mut queue = BinaryHeap::new();
        for segment in segments_in_order(view, query.order) {
            let (range, len) = match &segment {
                SegmentRef::Sealed(s) => {
                    if s.footer.record_count == 0 {
                        continue;
                    }
                    (
                        (
                            s.footer.min_event_time.as_nanos(),
                            s.footer.max_event_time.as_nanos(),
                        ),
                        None,
                    )
                }
                SegmentRef::Open(s) => {
                    // Length and range from one look, so that they agree.
                    let data = s.data.read();
                    match data.event_time_range {
                        Some(range) => (range, Some(data.len())),
                        None => continue,
                    }
                }
            };
            let bound = if descending {
                key(true, range.1, u64::MAX)
            } else {
                key(false, range.0, 0)
            };
            queue.push(Entry {
                key: bound,
                segment: segments.len(),
            });
            segments.push(Segment {
                segment,
                bound,
                len,
                opened: None,
            });
        }
        TimeMerge {
            query: query.clone(),
            descending,
            segments,
            queue,
            inner,
        }
    }

    /// `make` of the next matching record in order, or `None` at the end.
    pub(crate) fn next_match<T>(&mut self, make: &mut MakeFn<'_, T>) -> Result<Option<T>> {
        while let Some(entry) = self.queue.pop() {
            let Some(segment) = self.segments.get_mut(entry.segment) else {
                continue;
            };
            let Some(opened) = &mut segment.opened else {
                debug_assert_eq!(entry.key, segment.bound);
                let plan = Plan::new(&self.query)?;
                let first_chunk = self.query.limit.saturating_add(1);
                let mut opened = open(&plan, segment, self.descending, first_chunk)?;
                if let Some(head) = opened.head(self.descending, segment.segment.first_seq()) {
                    self.queue.push(Entry {
                        key: head,
                        segment: entry.segment,
                    });
                }
                segment.opened = Some(opened);
                continue;
            };
            let first_seq = segment.segment.first_seq();
            let Some((_, ordinal)) = opened.ready.pop() else {
                continue;
            };
            if let Some(head) = opened.head(self.descending, first_seq) {
                self.queue.push(Entry {
                    key: head,
                    segment: entry.segment,
                });
            }
            match read_match(&segment.segment, ordinal, None, &self.query, make) {
                Ok(Some(record)) => return Ok(Some(record)),
                Ok(None) => {}
                Err(e) => {
                    let seq = segment.segment.first_seq() + u64::from(ordinal);
                    self.inner.read_around(seq, e)?;
                }
            }
        }
        Ok(None)
    }
}

impl Opened {
    /// The key of the best remaining candidate, sorting the next chunk if
    /// the sorted ones ran out.
    fn head(&mut self, descending: bool, first_seq: u64) -> Option<Key> {
        let key_of =
            |&(time, ordinal): &(i64, u32)| key(descending, time, first_seq + u64::from(ordinal));
        if self.ready.is_empty() && !self.pending.is_empty() {
            let n = self.chunk.clamp(1, self.pending.len());
            let split = self.pending.len() - n;
            if split > 0 {
                // The n best keys go to the end, in linear time.
                self.pending
                    .select_nth_unstable_by(split, |a, b| key_of(a).cmp(&key_of(b)));
            }
            self.ready = self.pending.split_off(split);
            self.ready.sort_unstable_by_key(key_of);
            self.chunk = self.chunk.saturating_mul(2);
        }
        self.ready.last().map(key_of)
    }
}

/// Opens a segment: its candidates with their event times, cut strictly
/// after the cursor.
fn open(
    plan: &Plan<'_>,
    segment: &Segment,
    descending: bool,
    first_chunk: usize,
) -> Result<Opened> {
    let first_seq = segment.segment.first_seq();
    let timed = |view: &dyn IndexView, len: u64, range: Option<(i64, i64)>| match plan
        .candidates(view, first_seq, len, range)?
    {
        Some(set) => view.event_times(&set),
        None => Ok(Vec::new()),
    };
    let mut pending = match &segment.segment {
        SegmentRef::Sealed(s) => {
            let range = Some(s.footer_time_range());
            if plan.skips(s) {
                Vec::new()
            } else {
                let index = s.index()?;
                match timed(&*index, s.footer.record_count, range) {
                    // A section failed its check: rebuild the index and retry.
                    Err(Error::IndexDamaged { reason, .. }) => {
                        let index = s.rebuild_index(&reason)?;
                        timed(&*index, s.footer.record_count, range)?
                    }
                    other => other?,
                }
            }
        }
        SegmentRef::Open(s) => s.with_index(|view, len, range| {
            let len = segment.len.map_or(len, |at_start| len.min(at_start));
            timed(view, len, range)
        })?,
    };
    if let Some((time, seq)) = plan.after_time {
        let cursor = key(descending, time, seq);
        pending.retain(|&(t, o)| key(descending, t, first_seq + u64::from(o)) < cursor);
    }
    Ok(Opened {
        pending,
        ready: Vec::new(),
        chunk: first_chunk,
    })
}
