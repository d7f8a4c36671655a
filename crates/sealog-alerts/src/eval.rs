//! The evaluator: records in, alerts out.
//!
//! [`Evaluator::evaluate`] takes records in seq order and returns the
//! alerts they raise. It is deterministic: the same rules over the same
//! records raise the same alerts with the same ids, which is what lets a
//! restarted runner rebuild its state by evaluating recent history again
//! and drop the alerts it had already raised.
//!
//! Every rule keeps its state per group, and the state is bounded: a group
//! whose window, bucket history or cool-down has passed in event time is
//! dropped by a sweep that runs as event time advances (after a minute of
//! event time, and not before a number of records equal to an eighth of
//! the groups held: a sweep visits every group, so its cost per record
//! stays constant however dense the log is in event time), and past
//! [`Limits::max_groups`] groups the least recently active ones are
//! forgotten (and counted in [`Evaluator::forgotten`]). A `first_seen`
//! group keeps at most [`Limits::max_values`] values.
//!
//! Time is event time, capped at the recorded time plus
//! [`Limits::max_clock_skew`]: a client clock far in the future cannot
//! move a group's windows ahead of everyone else's.

use std::collections::{HashMap, VecDeque};

use sealog::Record;
use sealog::Timestamp;
use sealog::format::Metadata;
use sealog::format::record::RecordView;

use crate::alert::{Alert, is_alert_event};
use crate::rules::{Kind, Limits, Rule, RuleSet, TimeZones};

/// Turns records into alerts (see the module docs).
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    zones: TimeZones,
    limits: Limits,
    states: Vec<RuleState>,
    forgotten: u64,
    last_sweep: i64,
    since_sweep: usize,
}

/// The state of one rule: per group, and the rule-wide start of its
/// learning period.
#[derive(Debug, Default)]
struct RuleState {
    groups: HashMap<String, Group>,
    /// The event time of the first event the rule selected.
    first: Option<i64>,
}

/// The state of one group of one rule.
#[derive(Debug)]
struct Group {
    /// Event time of its latest event.
    last: i64,
    /// Event time of its first event.
    first: i64,
    /// Event time of its latest alert.
    fired: Option<i64>,
    data: GroupData,
}

#[derive(Debug)]
enum GroupData {
    /// Threshold: the window's events, oldest first (at most `count`).
    Window(VecDeque<Hit>),
    /// Baseline: the current bucket and the trailing ones.
    Buckets(Buckets),
    /// First seen: values and when each was last seen.
    Values(HashMap<String, i64>),
    /// Schedule and match keep nothing but the cool-down.
    Nothing,
}

#[derive(Debug, Clone)]
struct Hit {
    time: i64,
    seq: u64,
    tenant: Option<String>,
}

#[derive(Debug, Default)]
struct Buckets {
    /// Index of the current bucket (event time / bucket length).
    current: i64,
    /// Events in the current bucket.
    count: u64,
    /// The first seqs of the current bucket's events (up to the limit).
    seqs: Vec<u64>,
    /// The tenant the current bucket's events share.
    tenant: SharedTenant,
    /// Whether the current bucket already raised its alert.
    fired: bool,
    /// Earlier buckets with events: (index, count), oldest first.
    history: VecDeque<(i64, u64)>,
}

#[derive(Debug, Default, Clone)]
enum SharedTenant {
    #[default]
    Unset,
    Same(Option<String>),
    Mixed,
}

impl SharedTenant {
    fn add(&mut self, tenant: Option<&str>) {
        *self = match std::mem::take(self) {
            SharedTenant::Unset => SharedTenant::Same(tenant.map(str::to_owned)),
            SharedTenant::Same(t) if t.as_deref() == tenant => SharedTenant::Same(t),
            _ => SharedTenant::Mixed,
        }
    }

    fn get(&self) -> Option<String> {
        match self {
            SharedTenant::Same(t) => t.clone(),
            _ => None,
        }
    }
}

/// The sweep of expired groups runs when event time has moved this far
/// since the last one.
const SWEEP_EVERY: i64 = 60 * crate::rules::SECOND;

/// A sweep also waits for one record per this many groups held, so that
/// its cost (a visit of every group) is spread over enough records.
const SWEEP_RECORDS_PER_GROUP: usize = 8;

impl Evaluator {
    /// An evaluator of a rule set, with empty state.
    pub fn new(set: &RuleSet) -> Evaluator {
        Evaluator {
            rules: set.rules.clone(),
            zones: set.zones.clone(),
            limits: set.limits.clone(),
            states: set.rules.iter().map(|_| RuleState::default()).collect(),
            forgotten: 0,
            last_sweep: i64::MIN,
            since_sweep: 0,
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Groups (and `first_seen` values) forgotten to stay within the
    /// limits, not because they expired.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Groups held now, over all rules.
    pub fn groups(&self) -> usize {
        self.states.iter().map(|s| s.groups.len()).sum()
    }

    /// The event time an event is evaluated at (see the module docs).
    pub fn effective_time(&self, v: &RecordView<'_>) -> i64 {
        let cap = v
            .recorded_at
            .as_nanos()
            .saturating_add(self.limits.max_clock_skew);
        v.event_time().as_nanos().min(cap)
    }

    /// Evaluates one record (the next in seq order) and returns the alerts
    /// it raises, in rule order. Alert events themselves are never
    /// evaluated.
    pub fn evaluate(&mut self, record: &Record) -> Vec<Alert> {
        let e = &record.event;
        let view = RecordView {
            flags: 0,
            outcome: e.outcome,
            time: e.time,
            actor_type: &e.actor.kind,
            actor_id: &e.actor.id,
            on_behalf_of: e
                .actor
                .on_behalf_of
                .as_ref()
                .map(|p| (p.kind.as_str(), p.id.as_str())),
            session_id: e.actor.session_id.as_deref(),
            action: &e.action,
            resource_type: &e.resource.kind,
            resource_id: e.resource.id.as_deref(),
            tenant: e.tenant.as_deref(),
            source_ip: e.source.as_ref().and_then(|s| s.ip),
            user_agent: e.source.as_ref().and_then(|s| s.user_agent.as_deref()),
            request_id: e.request_id.as_deref(),
            reason: e.reason.as_deref(),
            metadata: None,
            seq: record.seq,
            recorded_at: record.recorded_at,
        };
        self.evaluate_view(&view)
    }

    /// [`Evaluator::evaluate`] on a decoded record.
    pub fn evaluate_view(&mut self, v: &RecordView<'_>) -> Vec<Alert> {
        if is_alert_event(v.actor_type, v.actor_id, v.action) {
            return Vec::new();
        }
        let t = self.effective_time(v);
        self.since_sweep = self.since_sweep.saturating_add(1);
        if self.last_sweep == i64::MIN {
            self.last_sweep = t;
        } else if t.saturating_sub(self.last_sweep) >= SWEEP_EVERY
            && self.since_sweep >= self.groups() / SWEEP_RECORDS_PER_GROUP
        {
            self.sweep(t);
        }
        let mut alerts = Vec::new();
        for i in 0..self.rules.len() {
            let (Some(rule), Some(state)) = (self.rules.get(i), self.states.get_mut(i)) else {
                continue;
            };
            if !rule.select.matches(v) {
                continue;
            }
            let Some(group) = rule.group_by.key(v) else {
                continue;
            };
            let first = *state.first.get_or_insert(t);
            let limits = &self.limits;
            if !state.groups.contains_key(&group) && state.groups.len() >= limits.max_groups {
                // Expired groups go first: only live state counts as
                // forgotten.
                sweep_rule(rule, state, t);
                if state.groups.len() >= limits.max_groups {
                    self.forgotten += forget_least_recent(&mut state.groups, limits.max_groups);
                }
            }
            let g = state.groups.entry(group.clone()).or_insert_with(|| Group {
                last: t,
                first: t,
                fired: None,
                data: match rule.kind {
                    Kind::Threshold { .. } => GroupData::Window(VecDeque::new()),
                    Kind::Baseline { .. } => GroupData::Buckets(Buckets::default()),
                    Kind::FirstSeen { .. } => GroupData::Values(HashMap::new()),
                    Kind::Schedule { .. } | Kind::Match => GroupData::Nothing,
                },
            });
            g.last = g.last.max(t);
            let cooling = g.fired.is_some_and(|f| t < f.saturating_add(rule.cooldown));
            let fired = match (&rule.kind, &mut g.data) {
                (Kind::Threshold { count, window }, GroupData::Window(hits)) => {
                    threshold(rule, limits, *count, *window, hits, cooling, &group, v, t)
                }
                (Kind::Baseline { .. }, GroupData::Buckets(b)) => {
                    baseline(rule, limits, b, g.first, cooling, &group, v, t)
                }
                (Kind::Schedule { days, hours }, _) => {
                    schedule(rule, &self.zones, days, hours, cooling, &group, v, t)
                }
                (
                    Kind::FirstSeen {
                        value,
                        learning,
                        group_learning,
                    },
                    GroupData::Values(values),
                ) => {
                    let field = value.name();
                    match value.value(v) {
                        None => None,
                        Some(value) => {
                            let learned = t.saturating_sub(first) >= *learning
                                && t.saturating_sub(g.first) >= *group_learning;
                            let (alert, dropped) = first_seen(
                                rule, limits, values, value, &field, learned, cooling, &group, v, t,
                            );
                            self.forgotten += dropped;
                            alert
                        }
                    }
                }
                (Kind::Match, _) => (!cooling).then(|| single(rule, &group, v, t, Metadata::new())),
                // A group's data always matches its rule's kind.
                _ => None,
            };
            if let Some(alert) = fired {
                g.fired = Some(t);
                alerts.push(alert);
            }
        }
        alerts
    }

    /// Drops the groups whose state can no longer matter at event time
    /// `now`: nothing in their window or baseline, cool-down over.
    fn sweep(&mut self, now: i64) {
        for (rule, state) in self.rules.iter().zip(&mut self.states) {
            sweep_rule(rule, state, now);
        }
        self.last_sweep = now;
        self.since_sweep = 0;
    }
}

/// Drops one rule's groups whose state can no longer matter at `now`.
fn sweep_rule(rule: &Rule, state: &mut RuleState, now: i64) {
    let keep_for = match &rule.kind {
        Kind::Threshold { window, .. } => *window,
        Kind::Baseline {
            bucket,
            span_buckets,
            ..
        } => bucket.saturating_mul(
            i64::try_from(*span_buckets)
                .unwrap_or(i64::MAX)
                .saturating_add(1),
        ),
        // The values are the state: they expire only by the limit.
        Kind::FirstSeen { .. } => return,
        Kind::Schedule { .. } | Kind::Match => 0,
    }
    .max(rule.cooldown);
    state
        .groups
        .retain(|_, g| now.saturating_sub(g.last) < keep_for);
}

/// Forgets the least recently active tenth of the groups (at least one) so
/// one more fits under `max`; returns how many.
fn forget_least_recent(groups: &mut HashMap<String, Group>, max: usize) -> u64 {
    let drop = (max / 10).max(1).min(groups.len());
    let mut lasts: Vec<i64> = groups.values().map(|g| g.last).collect();
    lasts.sort_unstable();
    let Some(&cut) = lasts.get(drop.saturating_sub(1)) else {
        return 0;
    };
    let before = groups.len();
    let mut left = drop;
    groups.retain(|_, g| {
        if left > 0 && g.last <= cut {
            left -= 1;
            false
        } else {
            true
        }
    });
    (before - groups.len()) as u64
}

fn ts(nanos: i64) -> Timestamp {
    Timestamp::from_nanos(nanos)
}

fn detail(pairs: &[(&str, serde_json::Value)]) -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in pairs {
        m.insert((*k).to_owned(), v.clone());
    }
    m
}

/// The alert of a per-event kind (schedule, first seen, match).
fn single(rule: &Rule, group: &str, v: &RecordView<'_>, t: i64, detail: Metadata) -> Alert {
    Alert {
        id: Alert::make_id(&rule.name, group, ts(t), v.seq),
        rule: rule.name.clone(),
        kind: rule.kind.name().into(),
        severity: rule.severity,
        description: rule.description.clone(),
        group_by: rule.group_by.as_str().into(),
        group: group.to_owned(),
        window_start: ts(t),
        window_end: ts(t),
        count: 1,
        seqs: vec![v.seq],
        seqs_total: 1,
        tenant: v.tenant.map(str::to_owned),
        detail,
    }
}

#[allow(clippy::too_many_arguments)]
fn threshold(
    rule: &Rule,
    limits: &Limits,
    count: u32,
    window: i64,
    hits: &mut VecDeque<Hit>,
    cooling: bool,
    group: &str,
    v: &RecordView<'_>,
    t: i64,
) -> Option<Alert> {
    hits.push_back(Hit {
        time: t,
        seq: v.seq,
        tenant: v.tenant.map(str::to_owned),
    });
    // The window is (t - window, t]: an event exactly one window older
    // than this one is outside it.
    let start = t.saturating_sub(window);
    while hits.front().is_some_and(|h| h.time <= start) {
        hits.pop_front();
    }
    let need = usize::try_from(count).unwrap_or(usize::MAX);
    while hits.len() > need {
        hits.pop_front();
    }
    if hits.len() < need || cooling {
        return None;
    }
    let mut tenant = SharedTenant::Unset;
    for h in hits.iter() {
        tenant.add(h.tenant.as_deref());
    }
    let first = hits.front().map_or(t, |h| h.time);
    let mut seqs: Vec<u64> = hits.iter().map(|h| h.seq).collect();
    let total = seqs.len() as u64;
    seqs.truncate(limits.max_alert_seqs);
    hits.clear();
    Some(Alert {
        id: Alert::make_id(&rule.name, group, ts(first), v.seq),
        rule: rule.name.clone(),
        kind: rule.kind.name().into(),
        severity: rule.severity,
        description: rule.description.clone(),
        group_by: rule.group_by.as_str().into(),
        group: group.to_owned(),
        window_start: ts(first),
        window_end: ts(t),
        count: total,
        seqs,
        seqs_total: total,
        tenant: tenant.get(),
        detail: detail(&[
            ("threshold", count.into()),
            ("window_seconds", (window / crate::rules::SECOND).into()),
        ]),
    })
}

#[allow(clippy::too_many_arguments)]
fn baseline(
    rule: &Rule,
    limits: &Limits,
    b: &mut Buckets,
    group_first: i64,
    cooling: bool,
    group: &str,
    v: &RecordView<'_>,
    t: i64,
) -> Option<Alert> {
    let Kind::Baseline {
        bucket,
        factor,
        min_count,
        span_buckets,
        warmup,
    } = rule.kind
    else {
        return None;
    };
    let span = i64::try_from(span_buckets).unwrap_or(i64::MAX);
    let index = t.div_euclid(bucket);
    if b.count == 0 && b.history.is_empty() {
        b.current = index;
    }
    if index > b.current {
        if b.count > 0 {
            b.history.push_back((b.current, b.count));
        }
        b.current = index;
        b.count = 0;
        b.seqs.clear();
        b.tenant = SharedTenant::Unset;
        b.fired = false;
    }
    // A late event (an earlier bucket than the current one) counts in the
    // current bucket: buckets are never reopened.
    while b
        .history
        .front()
        .is_some_and(|(i, _)| *i < b.current.saturating_sub(span))
    {
        b.history.pop_front();
    }
    b.count += 1;
    if b.seqs.len() < limits.max_alert_seqs {
        b.seqs.push(v.seq);
    }
    b.tenant.add(v.tenant);
    let total: u64 = b.history.iter().map(|(_, c)| c).sum();
    // The average count per bucket over the trailing span, quiet buckets
    // counting as zero.
    let average = total as f64 / span_buckets as f64;
    let warm = t.saturating_sub(group_first) >= warmup;
    if b.fired || cooling || !warm || b.count < min_count || (b.count as f64) <= factor * average {
        return None;
    }
    b.fired = true;
    let start = b.current.saturating_mul(bucket);
    Some(Alert {
        id: Alert::make_id(&rule.name, group, ts(start), v.seq),
        rule: rule.name.clone(),
        kind: rule.kind.name().into(),
        severity: rule.severity,
        description: rule.description.clone(),
        group_by: rule.group_by.as_str().into(),
        group: group.to_owned(),
        window_start: ts(start),
        window_end: ts(t),
        count: b.count,
        seqs: b.seqs.clone(),
        seqs_total: b.count,
        tenant: b.tenant.get(),
        detail: detail(&[
            ("baseline", serde_json::json!(average)),
            ("factor", serde_json::json!(factor)),
            ("min_count", min_count.into()),
            ("bucket_seconds", (bucket / crate::rules::SECOND).into()),
            ("baseline_buckets", span_buckets.into()),
        ]),
    })
}

#[allow(clippy::too_many_arguments)]
fn schedule(
    rule: &Rule,
    zones: &TimeZones,
    days: &[bool; 7],
    hours: &[(u16, u16)],
    cooling: bool,
    group: &str,
    v: &RecordView<'_>,
    t: i64,
) -> Option<Alert> {
    let (zone, zone_name) = zones.for_tenant(v.tenant);
    let instant = jiff::Timestamp::from_nanosecond(i128::from(t)).ok()?;
    let local = jiff::ZonedDateTime::new(instant, zone.clone());
    let weekday = usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0);
    let minute =
        u16::try_from(local.hour()).unwrap_or(0) * 60 + u16::try_from(local.minute()).unwrap_or(0);
    if allowed(days, hours, weekday, minute) || cooling {
        return None;
    }
    Some(single(
        rule,
        group,
        v,
        t,
        detail(&[
            (
                "local_time",
                local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().into(),
            ),
            ("weekday", crate::rules::day_name(weekday).into()),
            ("time_zone", zone_name.into()),
        ]),
    ))
}

/// Whether local `weekday` (Monday 0) and `minute` of the day fall in the
/// allowed days and hours. A range that wraps past midnight belongs to the
/// day it starts on: with `mon-fri` and `22:00-06:00`, Saturday 03:00 is
/// allowed (Friday's night) and Monday 03:00 is not.
pub(crate) fn allowed(days: &[bool; 7], hours: &[(u16, u16)], weekday: usize, minute: u16) -> bool {
    let day = |d: usize| days.get(d).copied().unwrap_or(false);
    let yesterday = (weekday + 6) % 7;
    hours.iter().any(|&(a, b)| {
        if a < b {
            day(weekday) && a <= minute && minute < b
        } else {
            (day(weekday) && minute >= a) || (day(yesterday) && minute < b)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn first_seen(
    rule: &Rule,
    limits: &Limits,
    values: &mut HashMap<String, i64>,
    value: String,
    field: &str,
    learned: bool,
    cooling: bool,
    group: &str,
    v: &RecordView<'_>,
    t: i64,
) -> (Option<Alert>, u64) {
    if let Some(last) = values.get_mut(&value) {
        *last = (*last).max(t);
        return (None, 0);
    }
    let mut dropped = 0;
    if values.len() >= limits.max_values {
        // Forget the least recently seen value.
        if let Some(oldest) = values
            .iter()
            .min_by_key(|(_, last)| **last)
            .map(|(k, _)| k.clone())
        {
            values.remove(&oldest);
            dropped = 1;
        }
    }
    let known = values.len();
    values.insert(value.clone(), t);
    if !learned || cooling {
        return (None, dropped);
    }
    let alert = single(
        rule,
        group,
        v,
        t,
        detail(&[
            ("field", field.into()),
            ("value", value.into()),
            ("known_values", known.into()),
        ]),
    );
    (Some(alert), dropped)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sealog::format::{Actor, Event, Outcome, Resource};

    use super::*;
    use crate::rules::SECOND;

    const MIN: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MIN;
    /// 2026-11-02T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_793_577_600 * SECOND;

    fn set(rules: &str) -> RuleSet {
        RuleSet::parse(&format!("version = 1\n{rules}"), Path::new("rules.toml")).unwrap()
    }

    struct Log {
        next: u64,
    }

    impl Log {
        fn record(
            &mut self,
            actor: &str,
            action: &str,
            outcome: Outcome,
            ip: &str,
            t: i64,
        ) -> Record {
            let (kind, id) = actor.split_once(':').unwrap();
            let event = Event::new(
                Actor::new(kind, id),
                action,
                Resource::new("session", "s1"),
                outcome,
            )
            .with_time(Timestamp::from_nanos(t))
            .with_source_ip(ip.parse().unwrap());
            let seq = self.next;
            self.next += 1;
            Record {
                seq,
                recorded_at: Timestamp::from_nanos(t),
                event,
            }
        }
    }

    fn log() -> Log {
        Log { next: 0 }
    }

    const THRESHOLD: &str = r#"
[[rule]]
name = "brute-force"
severity = "high"
kind = "threshold"
select = { action = "auth.login", outcome = "failure" }
group_by = "source_ip"
count = 5
window = "1m"
"#;

    #[test]
    fn threshold_fires_on_the_fifth_failure_within_a_minute_naming_the_seqs() {
        let mut e = Evaluator::new(&set(THRESHOLD));
        let mut l = log();
        let mut alerts = Vec::new();
        // Four failures, a success (not selected), another address, then the
        // fifth failure 50 s after the first.
        for i in 0..4 {
            alerts.extend(e.evaluate(&l.record(
                "user:alice",
                "auth.login",
                Outcome::Failure,
                "203.0.113.9",
                MONDAY + i * 10 * SECOND,
            )));
        }
        alerts.extend(e.evaluate(&l.record(
            "user:alice",
            "auth.login",
            Outcome::Success,
            "203.0.113.9",
            MONDAY + 41 * SECOND,
        )));
        alerts.extend(e.evaluate(&l.record(
            "user:bob",
            "auth.login",
            Outcome::Failure,
            "198.51.100.1",
            MONDAY + 42 * SECOND,
        )));
        assert!(alerts.is_empty());
        alerts.extend(e.evaluate(&l.record(
            "user:carol",
            "auth.login",
            Outcome::Failure,
            "203.0.113.9",
            MONDAY + 50 * SECOND,
        )));
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.rule.as_str(), a.group.as_str(), a.count),
            ("brute-force", "203.0.113.9", 5)
        );
        assert_eq!(a.seqs, [0, 1, 2, 3, 6]);
        assert_eq!(a.window_start, Timestamp::from_nanos(MONDAY));
    }

    #[test]
    fn threshold_does_not_fire_when_the_failures_are_spread_over_more_than_the_window() {
        let mut e = Evaluator::new(&set(THRESHOLD));
        let mut l = log();
        let mut alerts = Vec::new();
        for i in 0..20 {
            alerts.extend(e.evaluate(&l.record(
                "user:alice",
                "auth.login",
                Outcome::Failure,
                "203.0.113.9",
                MONDAY + i * 15 * SECOND,
            )));
        }
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn threshold_windows_expire_their_groups() {
        let mut e = Evaluator::new(&set(THRESHOLD));
        let mut l = log();
        for i in 0..1000 {
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            e.evaluate(&l.record(
                "user:alice",
                "auth.login",
                Outcome::Failure,
                &ip,
                MONDAY + i * SECOND,
            ));
        }
        assert!(
            e.groups() <= 120,
            "groups outside the window are swept: {}",
            e.groups()
        );
        assert_eq!(e.forgotten(), 0);
    }

    #[test]
    fn groups_past_the_limit_are_forgotten_and_counted() {
        let text = format!("[limits]\nmax_groups = 10\n{THRESHOLD}");
        let mut e = Evaluator::new(&set(&text));
        let mut l = log();
        for i in 0..50 {
            e.evaluate(&l.record(
                "user:alice",
                "auth.login",
                Outcome::Failure,
                &format!("10.0.0.{i}"),
                MONDAY,
            ));
        }
        assert!(e.groups() <= 10);
        assert_eq!(e.forgotten(), 40);
    }

    const BASELINE: &str = r#"
[[rule]]
name = "bulk-read"
severity = "medium"
kind = "baseline"
select = { action = "*.read" }
bucket = "1h"
factor = 10.0
min_count = 50
baseline = "1d"
warmup = "1d"
"#;

    #[test]
    fn baseline_fires_when_a_bucket_exceeds_ten_times_the_actors_own_average() {
        let mut e = Evaluator::new(&set(BASELINE));
        let mut l = log();
        let mut alerts = Vec::new();
        // A day of 20 reads an hour: the average is 20.
        for h in 0..24 {
            for i in 0..20 {
                alerts.extend(e.evaluate(&l.record(
                    "user:alice",
                    "doc.read",
                    Outcome::Success,
                    "10.0.0.1",
                    MONDAY + h * HOUR + i * MIN,
                )));
            }
        }
        // 150 reads in the next hour: not above 10 × 20.
        for i in 0..150 {
            alerts.extend(e.evaluate(&l.record(
                "user:alice",
                "doc.read",
                Outcome::Success,
                "10.0.0.1",
                MONDAY + 24 * HOUR + i * 10 * SECOND,
            )));
        }
        assert!(alerts.is_empty(), "{alerts:?}");
        // The hour after, the average is (23 × 20 + 150) / 24 = 25.4: the
        // 255th read is above ten times that.
        let first = l.next;
        for i in 0..300 {
            alerts.extend(e.evaluate(&l.record(
                "user:alice",
                "doc.read",
                Outcome::Success,
                "10.0.0.1",
                MONDAY + 25 * HOUR + i * 10 * SECOND,
            )));
        }
        assert_eq!(alerts.len(), 1, "one alert per bucket");
        let a = &alerts[0];
        assert_eq!(a.count, 255);
        assert_eq!(a.seqs.len(), 100, "the seqs are capped");
        assert_eq!(a.seqs_total, 255);
        assert_eq!(a.seqs[0], first);
        assert_eq!(a.window_start, Timestamp::from_nanos(MONDAY + 25 * HOUR));
    }

    #[test]
    fn baseline_stays_quiet_during_a_groups_warmup() {
        let mut e = Evaluator::new(&set(BASELINE));
        let mut l = log();
        let mut alerts = Vec::new();
        for i in 0..500 {
            alerts.extend(e.evaluate(&l.record(
                "user:new",
                "doc.read",
                Outcome::Success,
                "10.0.0.1",
                MONDAY + i * SECOND,
            )));
        }
        assert!(alerts.is_empty());
    }

    const SCHEDULE: &str = r#"
default_time_zone = "Europe/Berlin"
[time_zones]
acme = "America/New_York"

[[rule]]
name = "after-hours-admin"
severity = "medium"
kind = "schedule"
select = { action = "admin.*" }
days = "mon-fri"
hours = "08:00-18:00"
"#;

    fn tenant(mut r: Record, t: &str) -> Record {
        r.event.tenant = Some(t.into());
        r
    }

    #[test]
    fn schedule_fires_outside_hours_in_the_tenants_time_zone() {
        let mut e = Evaluator::new(&set(SCHEDULE));
        let mut l = log();
        // Monday 10:00 UTC: 11:00 in Berlin (inside), 05:00 in New York (outside).
        let berlin = l.record(
            "user:root",
            "admin.user_create",
            Outcome::Success,
            "10.0.0.1",
            MONDAY + 10 * HOUR,
        );
        let ny = tenant(
            l.record(
                "user:root",
                "admin.user_create",
                Outcome::Success,
                "10.0.0.1",
                MONDAY + 10 * HOUR,
            ),
            "acme",
        );
        assert!(e.evaluate(&berlin).is_empty());
        let alerts = e.evaluate(&ny);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].detail["time_zone"], "America/New_York");
        assert_eq!(alerts[0].detail["local_time"], "2026-11-02T05:00:00-05:00");
        assert_eq!(alerts[0].tenant.as_deref(), Some("acme"));
        // Saturday noon in Berlin: outside the days.
        let saturday = l.record(
            "user:root",
            "admin.user_create",
            Outcome::Success,
            "10.0.0.1",
            MONDAY + 5 * 24 * HOUR + 11 * HOUR,
        );
        assert_eq!(e.evaluate(&saturday).len(), 1);
        // Not an admin action: not selected.
        let read = l.record(
            "user:root",
            "doc.read",
            Outcome::Success,
            "10.0.0.1",
            MONDAY + 5 * 24 * HOUR,
        );
        assert!(e.evaluate(&read).is_empty());
    }

    #[test]
    fn overnight_hours_belong_to_the_day_they_start() {
        let days = [true, true, true, true, true, false, false];
        let night = [(22 * 60, 6 * 60)];
        assert!(
            allowed(&days, &night, 5, 3 * 60),
            "Saturday 03:00 is Friday's night"
        );
        assert!(
            !allowed(&days, &night, 0, 3 * 60),
            "Monday 03:00 is Sunday's night"
        );
        assert!(allowed(&days, &night, 0, 23 * 60));
        assert!(!allowed(&days, &night, 0, 12 * 60));
    }

    #[test]
    fn first_seen_fires_on_a_new_source_address_after_learning() {
        let text = r#"
[[rule]]
name = "new-admin-source"
severity = "high"
kind = "first_seen"
select = { actor = "user:root" }
value = "source_ip"
learning = "1d"
"#;
        let mut e = Evaluator::new(&set(text));
        let mut l = log();
        let mut alerts = Vec::new();
        // Learning: two addresses, nothing fires.
        alerts.extend(e.evaluate(&l.record(
            "user:root",
            "auth.login",
            Outcome::Success,
            "10.0.0.1",
            MONDAY,
        )));
        alerts.extend(e.evaluate(&l.record(
            "user:root",
            "auth.login",
            Outcome::Success,
            "10.0.0.2",
            MONDAY + HOUR,
        )));
        // After it: known addresses are quiet, a new one fires once, others' don't count.
        alerts.extend(e.evaluate(&l.record(
            "user:root",
            "auth.login",
            Outcome::Success,
            "10.0.0.1",
            MONDAY + 25 * HOUR,
        )));
        alerts.extend(e.evaluate(&l.record(
            "user:alice",
            "auth.login",
            Outcome::Success,
            "192.0.2.7",
            MONDAY + 25 * HOUR,
        )));
        assert!(alerts.is_empty(), "{alerts:?}");
        let new = l.record(
            "user:root",
            "auth.login",
            Outcome::Success,
            "192.0.2.7",
            MONDAY + 26 * HOUR,
        );
        let seq = new.seq;
        alerts.extend(e.evaluate(&new));
        alerts.extend(e.evaluate(&l.record(
            "user:root",
            "auth.login",
            Outcome::Success,
            "192.0.2.7",
            MONDAY + 27 * HOUR,
        )));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].seqs, [seq]);
        assert_eq!(alerts[0].detail["value"], "192.0.2.7");
        assert_eq!(alerts[0].detail["known_values"], 2);
    }

    #[test]
    fn first_seen_fires_on_a_new_country_from_the_label_map() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("country.csv"),
            "network,label\n10.0.0.0/8,DE\n192.0.2.0/24,FR\n",
        )
        .unwrap();
        let rules = dir.path().join("rules.toml");
        std::fs::write(
            &rules,
            r#"version = 1
[labels]
country = "country.csv"
[[rule]]
name = "new-country"
severity = "high"
kind = "first_seen"
value = "label:country"
"#,
        )
        .unwrap();
        let mut e = Evaluator::new(&RuleSet::load(&rules).unwrap());
        let mut l = log();
        let first = e.evaluate(&l.record(
            "user:alice",
            "auth.login",
            Outcome::Success,
            "10.1.1.1",
            MONDAY,
        ));
        assert_eq!(
            first.len(),
            1,
            "no learning period: the first country is new"
        );
        assert!(
            e.evaluate(&l.record(
                "user:alice",
                "auth.login",
                Outcome::Success,
                "10.2.2.2",
                MONDAY + 1
            ))
            .is_empty(),
            "same country"
        );
        let fr = e.evaluate(&l.record(
            "user:alice",
            "auth.login",
            Outcome::Success,
            "192.0.2.9",
            MONDAY + 2,
        ));
        assert_eq!(fr.len(), 1);
        assert_eq!(fr[0].detail["value"], "FR");
        let unmapped = e.evaluate(&l.record(
            "user:alice",
            "auth.login",
            Outcome::Success,
            "198.51.100.1",
            MONDAY + 3,
        ));
        assert_eq!(unmapped[0].detail["value"], "unmapped");
    }

    #[test]
    fn match_fires_on_every_selected_event_and_never_on_alert_events() {
        let text = r#"
[[rule]]
name = "audit-config"
severity = "critical"
kind = "match"
select = { action = ["audit.config_changed", "role.grant*"] }
except = { source_ip = "10.0.0.0/8" }
"#;
        let mut e = Evaluator::new(&set(text));
        let mut l = log();
        assert_eq!(
            e.evaluate(&l.record(
                "user:root",
                "role.grant_admin",
                Outcome::Success,
                "192.0.2.1",
                MONDAY
            ))
            .len(),
            1
        );
        assert_eq!(
            e.evaluate(&l.record(
                "user:root",
                "audit.config_changed",
                Outcome::Success,
                "192.0.2.1",
                MONDAY
            ))
            .len(),
            1
        );
        assert!(
            e.evaluate(&l.record(
                "user:root",
                "audit.config_changed",
                Outcome::Success,
                "10.0.0.1",
                MONDAY
            ))
            .is_empty(),
            "excepted"
        );
        assert!(
            e.evaluate(&l.record(
                "user:root",
                "doc.read",
                Outcome::Success,
                "192.0.2.1",
                MONDAY
            ))
            .is_empty()
        );
        // An alert event about a match is itself never matched.
        let alert = e
            .evaluate(&l.record(
                "user:root",
                "role.grant",
                Outcome::Success,
                "192.0.2.1",
                MONDAY,
            ))
            .remove(0);
        let record = Record {
            seq: 99,
            recorded_at: Timestamp::from_nanos(MONDAY),
            event: alert.to_event(),
        };
        assert!(e.evaluate(&record).is_empty());
    }

    #[test]
    fn the_same_records_raise_the_same_alert_ids() {
        let run = || {
            let mut e = Evaluator::new(&set(THRESHOLD));
            let mut l = log();
            (0..12)
                .flat_map(|i| {
                    e.evaluate(&l.record(
                        "user:a",
                        "auth.login",
                        Outcome::Failure,
                        "192.0.2.1",
                        MONDAY + i * SECOND,
                    ))
                })
                .map(|a| a.id)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first.len(), 1, "the cool-down holds the second burst back");
        assert_eq!(first, run());
    }
}
