//! Counting matches by group: how many events each actor, action, resource,
//! resource type, outcome, tenant, source address, hour or day has among
//! the events a [`Query`] matches.
//!
//! ```no_run
//! use sealog::aggregate::CountField;
//! use sealog::query::Query;
//! use sealog::{Outcome, Store};
//! # let store = Store::open_read_only("./audit")?;
//! let denied = Query {
//!     outcome: Some(Outcome::Denied),
//!     ..Query::default()
//! };
//! let by_actor = store.count_by(&denied, CountField::Actor, 20)?;
//! for group in &by_actor.groups {
//!     println!("{} {}", group.count, group.key);
//! }
//! # Ok::<(), sealog::Error>(())
//! ```
//!
//! The counts come from the indexes wherever they can: for each segment
//! the planner computes the bitmap of matching records as a query does
//! ([`crate::query`]), then
//!
//! - for actor, action, resource type, outcome and tenant, intersects it
//!   with each term's bitmap in the segment's dictionary and keeps the
//!   sizes (a sealed segment's sidecar; when every record of the segment
//!   matches, the term entries' cardinalities are the counts and no bitmap
//!   is decoded); an open segment counts its in-memory term column;
//! - for the source address, walks the address index and counts the
//!   matching ordinals;
//! - for hour and day, reads the event times of the matching records from
//!   the event-time column: the same event time (the client's `time`, or
//!   the recorded time for an event without one) that `from`/`to` filter
//!   on, bucketed in UTC.
//!
//! Records are read only where the index cannot answer exactly: grouping by
//! resource (resource ids are indexed by hash only), a query on request id
//! or resource id (hashed keys give candidates that each record confirms),
//! and, on a store reading around damage, a segment whose index cannot be
//! had. A record that cannot be read fails the count naming the file, byte
//! offset and seq, like any read ([`crate::OnDamage`]).

use std::collections::HashMap;
use std::fmt;

use roaring::RoaringBitmap;
use sealog_format::Timestamp;
use sealog_format::record::{self, RecordView};

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::index::{DictField, IndexView};
use crate::query::{Query, canonical};
use crate::search::{AskAhead, Plan, SectionUse, SegmentRef, segments_in_order};
use crate::store::{Inner, View};

/// The largest number of groups a count may list.
pub const MAX_TOP: usize = 10_000;
/// The number of groups listed when none is given.
pub const DEFAULT_TOP: usize = 20;

const HOUR_NANOS: i64 = 3_600 * 1_000_000_000;
const DAY_NANOS: i64 = 24 * HOUR_NANOS;

/// What to group matching events by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountField {
    /// The actor, keyed `TYPE:ID` (`user:alice`).
    Actor,
    /// The action.
    Action,
    /// The resource, keyed `TYPE:ID`; events whose resource has no id are
    /// counted as without the field.
    Resource,
    /// The resource type.
    ResourceType,
    /// The outcome.
    Outcome,
    /// The tenant.
    Tenant,
    /// The source address (IPv4-mapped IPv6 addresses as IPv4).
    SourceIp,
    /// The UTC hour of the event time, keyed `2026-11-27T10:00:00Z`.
    Hour,
    /// The UTC day of the event time, keyed `2026-11-27`.
    Day,
}

impl CountField {
    /// Every field, in the order `sealog query --count-by` documents them.
    pub const ALL: [CountField; 9] = [
        CountField::Actor,
        CountField::Action,
        CountField::Resource,
        CountField::ResourceType,
        CountField::Outcome,
        CountField::Tenant,
        CountField::SourceIp,
        CountField::Hour,
        CountField::Day,
    ];

    /// The field's name on the command line and in the HTTP API.
    pub const fn as_str(self) -> &'static str {
        match self {
            CountField::Actor => "actor",
            CountField::Action => "action",
            CountField::Resource => "resource",
            CountField::ResourceType => "resource-type",
            CountField::Outcome => "outcome",
            CountField::Tenant => "tenant",
            CountField::SourceIp => "source-ip",
            CountField::Hour => "hour",
            CountField::Day => "day",
        }
    }

    /// Parses a field name (`resource_type` and `source_ip` are accepted
    /// too, as the query parameters spell them).
    pub fn parse(text: &str) -> Result<CountField> {
        let wanted = text.replace('_', "-");
        CountField::ALL
            .into_iter()
            .find(|f| f.as_str() == wanted)
            .ok_or_else(|| Error::InvalidQuery {
                field: "count_by",
                reason: format!(
                    "`{}` is not a field to count by: give one of actor, action, resource, \
                     resource-type, outcome, tenant, source-ip, hour, day",
                    text.chars().take(40).collect::<String>()
                ),
            })
    }

    /// The dictionary that answers this field from the index, if one does.
    fn dict(self) -> Option<DictField> {
        match self {
            CountField::Actor => Some(DictField::Actor),
            CountField::Action => Some(DictField::Action),
            CountField::ResourceType => Some(DictField::ResourceType),
            CountField::Outcome => Some(DictField::Outcome),
            CountField::Tenant => Some(DictField::Tenant),
            _ => None,
        }
    }
}

impl fmt::Display for CountField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group and how many matching events it has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    /// The field's value (see [`CountField`] for each field's form).
    pub key: String,
    /// Matching events with that value.
    pub count: u64,
}

/// The answer of [`crate::Store::count_by`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountBy {
    /// What the events were grouped by.
    pub field: CountField,
    /// The largest groups, most events first, ties by key (bytewise, which
    /// for hours and days is oldest first); at most the `top` asked for.
    pub groups: Vec<Group>,
    /// Every matching event: the groups', the other groups' and those
    /// without the field.
    pub total: u64,
    /// How many groups were left out of `groups`.
    pub other_groups: u64,
    /// How many matching events those groups have.
    pub other_count: u64,
    /// Matching events without the field (no tenant, no source address, a
    /// resource without an id).
    pub missing: u64,
}

/// Counts per key, summed over segments.
#[derive(Default)]
struct Tally {
    counts: HashMap<String, u64, foldhash::fast::FixedState>,
    missing: u64,
    total: u64,
}

impl Tally {
    fn add(&mut self, key: String, n: u64) {
        *self.counts.entry(key).or_insert(0) += n;
        self.total += n;
    }

    fn add_missing(&mut self, n: u64) {
        self.missing += n;
        self.total += n;
    }

    fn merge(&mut self, other: Tally) {
        for (key, n) in other.counts {
            *self.counts.entry(key).or_insert(0) += n;
        }
        self.missing += other.missing;
        self.total += other.total;
    }

    fn finish(self, field: CountField, top: usize) -> CountBy {
        let mut groups: Vec<Group> = self
            .counts
            .into_iter()
            .map(|(key, count)| Group { key, count })
            .collect();
        groups.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let rest = groups.split_off(top.min(groups.len()));
        CountBy {
            field,
            groups,
            total: self.total,
            other_groups: rest.len() as u64,
            other_count: rest.iter().map(|g| g.count).sum(),
            missing: self.missing,
        }
    }
}

/// The key of a dictionary term: the actor's term is `id ‖ 0x00 ‖ type`.
fn term_key(field: CountField, term: &[u8]) -> String {
    let text = String::from_utf8_lossy(term);
    match (field, text.split_once('\0')) {
        (CountField::Actor, Some((id, kind))) => format!("{kind}:{id}"),
        _ => text.into_owned(),
    }
}

/// The key of an event time, for hour and day.
fn time_key(field: CountField, nanos: i64) -> String {
    let unit = if field == CountField::Day {
        DAY_NANOS
    } else {
        HOUR_NANOS
    };
    let start = Timestamp::from_nanos(nanos.div_euclid(unit) * unit).to_rfc3339();
    match (field, start.split_once('T')) {
        (CountField::Day, Some((day, _))) => day.to_owned(),
        _ => start,
    }
}

/// The key of a decoded record, `None` when it lacks the field.
fn record_key(field: CountField, r: &RecordView<'_>) -> Option<String> {
    match field {
        CountField::Actor => Some(format!("{}:{}", r.actor_type, r.actor_id)),
        CountField::Action => Some(r.action.to_owned()),
        CountField::Resource => r.resource_id.map(|id| format!("{}:{id}", r.resource_type)),
        CountField::ResourceType => Some(r.resource_type.to_owned()),
        CountField::Outcome => Some(r.outcome.as_str().to_owned()),
        CountField::Tenant => r.tenant.map(str::to_owned),
        CountField::SourceIp => r.source_ip.map(|ip| canonical(ip).to_string()),
        CountField::Hour | CountField::Day => Some(time_key(field, r.event_time().as_nanos())),
    }
}

/// What one segment's index gave: the counts, or the candidates whose
/// records must be read.
enum Indexed {
    Counted(Tally),
    ReadRecords(RoaringBitmap),
}

/// Counts the matches among `candidates` (exact: no record need confirm
/// them) from the index alone; `None` for a field the index cannot answer.
fn count_indexed(
    view: &dyn IndexView,
    field: CountField,
    candidates: &RoaringBitmap,
) -> Result<Option<Tally>> {
    let mut tally = Tally::default();
    if let Some(dict) = field.dict() {
        for (term, n) in view.dict_counts(dict, candidates)? {
            tally.add(term_key(field, &term), n);
        }
        // Only the tenant is optional among the dictionary fields.
        tally.add_missing(candidates.len().saturating_sub(tally.total));
        return Ok(Some(tally));
    }
    match field {
        CountField::SourceIp => {
            for (ip, n) in view.ip_counts(candidates)? {
                tally.add(ip.to_string(), n);
            }
            tally.add_missing(candidates.len().saturating_sub(tally.total));
        }
        CountField::Hour | CountField::Day => {
            let mut buckets: HashMap<i64, u64, foldhash::fast::FixedState> = HashMap::default();
            let unit = if field == CountField::Day {
                DAY_NANOS
            } else {
                HOUR_NANOS
            };
            for (time, _) in view.event_times(candidates)? {
                *buckets.entry(time.div_euclid(unit)).or_insert(0) += 1;
            }
            for (bucket, n) in buckets {
                tally.add(time_key(field, bucket * unit), n);
            }
        }
        // Resource ids are indexed by hash only.
        _ => return Ok(None),
    }
    Ok(Some(tally))
}

/// One segment through its index: its candidates, then the counts when the
/// candidates are exact and the field is indexed.
fn segment_indexed(
    plan: &Plan<'_>,
    query: &Query,
    field: CountField,
    view: &dyn IndexView,
    first_seq: u64,
    len: u64,
    time_range: Option<(i64, i64)>,
) -> Result<Indexed> {
    let Some(candidates) = plan.candidates(view, first_seq, len, time_range)? else {
        return Ok(Indexed::Counted(Tally::default()));
    };
    // Exact-match keys are hashed: their candidates may include collisions.
    let hashed =
        query.request_id.is_some() || query.resource.as_ref().is_some_and(|r| r.id.is_some());
    if hashed {
        return Ok(Indexed::ReadRecords(candidates));
    }
    Ok(match count_indexed(view, field, &candidates)? {
        Some(tally) => Indexed::Counted(tally),
        None => Indexed::ReadRecords(candidates),
    })
}

/// Counts `query`'s matches in `view` grouped by `field`, listing the
/// `top` largest groups.
pub(crate) fn count_by(
    view: &View,
    query: &Query,
    field: CountField,
    top: usize,
    inner: &Inner,
) -> Result<CountBy> {
    if !(1..=MAX_TOP).contains(&top) {
        return Err(Error::InvalidQuery {
            field: "top",
            reason: format!("{top} is outside 1..={MAX_TOP}"),
        });
    }
    if query.cursor.is_some() {
        return Err(Error::InvalidQuery {
            field: "cursor",
            reason: "a count has no pages: leave the cursor out".into(),
        });
    }
    let plan = Plan::new(query)?;
    let mut tally = Tally::default();
    let segments = segments_in_order(view, crate::query::Order::OldestFirst);
    // The dictionary counted by is read whole in every segment.
    let grouped = match field {
        CountField::SourceIp => vec![SectionUse::Ip],
        other => other
            .dict()
            .map(|f| SectionUse::Dict(f, None))
            .into_iter()
            .collect(),
    };
    let ahead = AskAhead::start(&plan, &segments, grouped);
    for (i, segment) in segments.iter().enumerate() {
        ahead.at(i);
        let first_seq = segment.first_seq();
        let indexed = match segment {
            SegmentRef::Sealed(s) => {
                let range = s.footer_time_range();
                let len = s.footer.record_count;
                if plan.skips(s) {
                    continue;
                }
                let time_range = Some(range);
                let run = |index: &dyn IndexView| {
                    segment_indexed(&plan, query, field, index, first_seq, len, time_range)
                };
                match s.index().and_then(|index| run(&*index)) {
                    // A section failed its check: rebuild the index and retry.
                    Err(Error::IndexDamaged { reason, .. }) => {
                        s.rebuild_index(&reason).and_then(|index| run(&*index))
                    }
                    other => other,
                }
            }
            SegmentRef::Open(s) => s.with_index(|index, len, time_range| {
                segment_indexed(&plan, query, field, index, first_seq, len, time_range)
            }),
        };
        let candidates = match indexed {
            Ok(Indexed::Counted(counted)) => {
                tally.merge(counted);
                continue;
            }
            Ok(Indexed::ReadRecords(candidates)) => candidates,
            Err(e @ Error::Corruption(_)) if inner.damage.is_some() => {
                tracing::info!(segment = segment.name(), error = %e, "counting a damaged segment record by record");
                match plan.unindexed(first_seq, segment.len()) {
                    Some(all) => all,
                    None => continue,
                }
            }
            Err(e) => return Err(e),
        };
        for ordinal in &candidates {
            let seq = first_seq + u64::from(ordinal);
            let key = read_checked(segment, ordinal, |r| {
                query.matches(r).then(|| record_key(field, r))
            });
            match key {
                Ok(Some(Some(key))) => tally.add(key, 1),
                Ok(Some(None)) => tally.add_missing(1),
                Ok(None) => {}
                Err(e) => inner.read_around(seq, e)?,
            }
        }
    }
    Ok(tally.finish(field, top))
}

/// Reads and decodes record `ordinal` of `segment`, checks its seq, and
/// hands it to `f`. A record the index lists but that is not there is an
/// error, never a quiet miss.
pub(crate) fn read_checked<T>(
    segment: &SegmentRef,
    ordinal: u32,
    f: impl FnOnce(&RecordView<'_>) -> T,
) -> Result<T> {
    let seq = segment.first_seq() + u64::from(ordinal);
    let location = || Location::file(segment.name()).seq(seq);
    let bytes = segment.record(ordinal)?.ok_or_else(|| {
        Error::from(Corruption::new(
            location(),
            CorruptionKind::Layout(format!(
                "record {seq} is missing although the segment's index lists it"
            )),
        ))
    })?;
    let view = record::decode(&bytes)
        .map_err(|e| Error::from(Corruption::new(location(), CorruptionKind::Record(e))))?;
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
    Ok(f(&view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_are_the_utc_hour_and_day_the_time_falls_in() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap().as_nanos();
        let at = t("2026-11-27T10:59:59.999Z");
        assert_eq!(time_key(CountField::Hour, at), "2026-11-27T10:00:00Z");
        assert_eq!(time_key(CountField::Day, at), "2026-11-27");
        let before_epoch = t("1969-12-31T23:30:00Z");
        assert_eq!(
            time_key(CountField::Hour, before_epoch),
            "1969-12-31T23:00:00Z"
        );
        assert_eq!(time_key(CountField::Day, before_epoch), "1969-12-31");
    }

    #[test]
    fn field_names_parse_with_dashes_or_underscores_and_others_are_refused() {
        for f in CountField::ALL {
            assert_eq!(CountField::parse(f.as_str()).unwrap(), f);
        }
        assert_eq!(
            CountField::parse("source_ip").unwrap(),
            CountField::SourceIp
        );
        let err = CountField::parse("seq").unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidQuery {
                    field: "count_by",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_top_groups_come_largest_first_ties_by_key_and_the_rest_is_summed() {
        let mut tally = Tally::default();
        for (key, n) in [("b", 3), ("a", 3), ("c", 5), ("d", 1), ("e", 1)] {
            tally.add(key.into(), n);
        }
        tally.add_missing(2);
        let counted = tally.finish(CountField::Action, 3);
        let keys: Vec<_> = counted
            .groups
            .iter()
            .map(|g| (g.key.as_str(), g.count))
            .collect();
        assert_eq!(keys, [("c", 5), ("a", 3), ("b", 3)]);
        assert_eq!(
            (
                counted.total,
                counted.other_groups,
                counted.other_count,
                counted.missing
            ),
            (15, 2, 2, 2)
        );
    }
}
