//! The rules file: a versioned TOML document of alert rules, parsed and
//! checked into a [`RuleSet`].
//!
//! The format is specified, with an example of every kind of rule, in
//! `docs/alerts.md`. Every mistake is refused with a [`RulesError`] naming
//! the rule and the key; nothing is guessed. A rule's selector speaks the
//! vocabulary of `sealog query` and compiles to the engine's own
//! [`sealog::query::Query`] values, so a rule selects exactly what the same
//! filters select on the command line, and `alerts test` can ask the
//! store's indexes for each rule's events.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::tz::TimeZone;
use sealog::Outcome;
use sealog::format::record::RecordView;
use sealog::query::{ActionPattern, ActorFilter, IpFilter, Order, Query, ResourceFilter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, RulesError};
use crate::labels::LabelMap;

/// The version of the rules file format this code reads.
pub const RULES_VERSION: u64 = 1;

/// Nanoseconds in a second.
pub(crate) const SECOND: i64 = 1_000_000_000;

/// How grave an alert is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Worth a look.
    Low,
    /// Worth a look today.
    Medium,
    /// Worth a look now.
    High,
    /// Wake someone up.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which field of an event groups it: counts, baselines, first-seen values
/// and cool-downs are kept per group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// The actor, `type:id`.
    Actor,
    /// The source address.
    SourceIp,
    /// The resource, `type:id` (or `type:` without an id).
    Resource,
    /// The tenant.
    Tenant,
    /// One group for every event.
    None,
}

impl GroupBy {
    /// The name used in the rules file.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Actor => "actor",
            GroupBy::SourceIp => "source_ip",
            GroupBy::Resource => "resource",
            GroupBy::Tenant => "tenant",
            GroupBy::None => "none",
        }
    }

    fn parse(text: &str) -> Option<GroupBy> {
        Some(match text {
            "actor" => GroupBy::Actor,
            "source_ip" => GroupBy::SourceIp,
            "resource" => GroupBy::Resource,
            "tenant" => GroupBy::Tenant,
            "none" => GroupBy::None,
            _ => return None,
        })
    }

    /// The group of an event; `None` when the event lacks the field (an
    /// event without a source address has no `source_ip` group).
    pub fn key(self, v: &RecordView<'_>) -> Option<String> {
        match self {
            GroupBy::Actor => Some(format!("{}:{}", v.actor_type, v.actor_id)),
            GroupBy::SourceIp => v
                .source_ip
                .map(|ip| sealog::query::canonical(ip).to_string()),
            GroupBy::Resource => Some(format!(
                "{}:{}",
                v.resource_type,
                v.resource_id.unwrap_or_default()
            )),
            GroupBy::Tenant => v.tenant.map(str::to_owned),
            GroupBy::None => Some(String::new()),
        }
    }
}

/// The value a `first_seen` rule watches.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueField {
    /// The source address itself.
    SourceIp,
    /// The label of the source address in a label map (`label:country`):
    /// its name and the map. An address no network holds has the value
    /// `unmapped`.
    Label(String, Arc<LabelMap>),
}

impl ValueField {
    /// The value of an event; `None` without a source address.
    pub fn value(&self, v: &RecordView<'_>) -> Option<String> {
        let ip = v.source_ip?;
        Some(match self {
            ValueField::SourceIp => sealog::query::canonical(ip).to_string(),
            ValueField::Label(_, map) => map.lookup(ip).unwrap_or(UNMAPPED).to_owned(),
        })
    }

    /// The name used in the rules file.
    pub fn name(&self) -> String {
        match self {
            ValueField::SourceIp => "source_ip".into(),
            ValueField::Label(name, _) => format!("label:{name}"),
        }
    }
}

/// The value of an address that no network of a label map holds.
pub const UNMAPPED: &str = "unmapped";

/// What makes a rule fire, with its parameters (durations in nanoseconds).
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// At least `count` matching events of one group within `window`.
    Threshold {
        /// Events needed.
        count: u32,
        /// The sliding window.
        window: i64,
    },
    /// A group's count in the current bucket above `factor` times its own
    /// trailing baseline.
    Baseline {
        /// The bucket length.
        bucket: i64,
        /// How many times the baseline the count must exceed.
        factor: f64,
        /// The count must also reach this.
        min_count: u64,
        /// The span of the trailing baseline, in buckets.
        span_buckets: u64,
        /// A group fires only once this long has passed since its first
        /// event.
        warmup: i64,
    },
    /// An event outside the allowed days and hours, in the local time of
    /// the event's tenant.
    Schedule {
        /// Allowed weekdays, Monday first.
        days: [bool; 7],
        /// Allowed minutes of the day, `[start, end)` each; `start > end`
        /// wraps past midnight.
        hours: Vec<(u16, u16)>,
    },
    /// A value never seen before for the group.
    FirstSeen {
        /// The watched value.
        value: ValueField,
        /// Nothing fires until this long after the first event the rule
        /// saw.
        learning: i64,
        /// Nothing fires for a group until this long after its first event.
        group_learning: i64,
    },
    /// Every matching event.
    Match,
}

impl Kind {
    /// The name used in the rules file.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Threshold { .. } => "threshold",
            Kind::Baseline { .. } => "baseline",
            Kind::Schedule { .. } => "schedule",
            Kind::FirstSeen { .. } => "first_seen",
            Kind::Match => "match",
        }
    }
}

/// Which events a rule looks at: any of `queries` (the filters of `sealog
/// query`, one query per combination of list values), and none of
/// `except`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Selector {
    /// Alternatives: an event matching any of them is selected. Empty: every
    /// event.
    pub queries: Vec<Query>,
    /// Exclusions: an event matching any of them is not selected.
    pub except: Vec<Query>,
}

impl Selector {
    /// Whether the selector selects the event.
    pub fn matches(&self, v: &RecordView<'_>) -> bool {
        (self.queries.is_empty() || self.queries.iter().any(|q| q.matches(v)))
            && !self.except.iter().any(|q| q.matches(v))
    }
}

/// One alert rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its name: unique in the file, `[a-z0-9][a-z0-9_.-]*`, at most 64
    /// bytes; the alert event's resource is `rule:<name>`.
    pub name: String,
    /// How grave its alerts are.
    pub severity: Severity,
    /// What it detects, for people.
    pub description: String,
    /// Which events it looks at.
    pub select: Selector,
    /// How events are grouped.
    pub group_by: GroupBy,
    /// After an alert for a group, no other alert for that group until
    /// this much event time has passed (nanoseconds).
    pub cooldown: i64,
    /// What makes it fire.
    pub kind: Kind,
    /// A digest of the rule's definition: saved state is only reused by a
    /// rule with the same digest.
    pub fingerprint: String,
}

/// Bounds on the evaluator's memory and on what an alert carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Groups each rule keeps (default 100,000); past it the least
    /// recently active group is forgotten, and counted.
    pub max_groups: usize,
    /// Values each group of a `first_seen` rule keeps (default 1,000);
    /// past it the least recently seen value is forgotten, and counted.
    pub max_values: usize,
    /// An event dated further than this after its recorded time is
    /// evaluated at its recorded time plus this (default 5 min), so a
    /// wrong clock cannot push a group's windows into the future.
    pub max_clock_skew: i64,
    /// Seqs an alert names (default 100); it always gives their total.
    pub max_alert_seqs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: 100_000,
            max_values: 1_000,
            max_clock_skew: 5 * 60 * SECOND,
            max_alert_seqs: 100,
        }
    }
}

/// Time zones of tenants, for `schedule` rules.
#[derive(Clone, Debug)]
pub struct TimeZones {
    /// The zone of events with no tenant or a tenant not in `tenants`.
    pub default: TimeZone,
    /// The zone's name, as given.
    pub default_name: String,
    /// Per tenant: the zone and its name.
    pub tenants: BTreeMap<String, (TimeZone, String)>,
}

impl TimeZones {
    /// The zone and its name for an event's tenant.
    pub fn for_tenant(&self, tenant: Option<&str>) -> (&TimeZone, &str) {
        match tenant.and_then(|t| self.tenants.get(t)) {
            Some((zone, name)) => (zone, name),
            None => (&self.default, &self.default_name),
        }
    }
}

impl Default for TimeZones {
    fn default() -> Self {
        TimeZones {
            default: TimeZone::UTC,
            default_name: "UTC".into(),
            tenants: BTreeMap::new(),
        }
    }
}

/// A checked rules file.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Tenants' time zones.
    pub zones: TimeZones,
    /// Memory and size bounds.
    pub limits: Limits,
    /// Where alerts are delivered.
    pub webhooks: Vec<crate::deliver::Webhook>,
    /// The file it was read from.
    pub path: PathBuf,
}

impl RuleSet {
    /// Reads and checks a rules file. Label files named in it are read
    /// relative to its directory.
    pub fn load(path: &Path) -> Result<RuleSet> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            op: "read the rules file",
            path: path.to_path_buf(),
            source,
        })?;
        RuleSet::parse(&text, path)
    }

    /// Checks the text of a rules file; `path` names it in errors and
    /// anchors relative label file paths.
    pub fn parse(text: &str, path: &Path) -> Result<RuleSet> {
        let err = |rule: Option<String>, key: &str, message: String, fix: &str| {
            Error::Rules(Box::new(RulesError {
                file: path.to_path_buf(),
                line: None,
                rule,
                key: key.to_owned(),
                message,
                fix: fix.to_owned(),
            }))
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_at(text, s.start));
            let mut e = err(
                None,
                "",
                format!("not valid TOML: {}", e.message()),
                "fix the TOML syntax; see docs/alerts.md for the format",
            );
            if let Error::Rules(r) = &mut e {
                r.line = line;
            }
            e
        })?;
        RuleSet::parse_table(table, path).map_err(|e| match e {
            Error::Rules(mut r) => {
                r.line = locate(text, &r);
                Error::Rules(r)
            }
            other => other,
        })
    }

    fn parse_table(table: toml::Table, path: &Path) -> Result<RuleSet> {
        let err = |rule: Option<String>, key: &str, message: String, fix: &str| {
            Error::Rules(Box::new(RulesError {
                file: path.to_path_buf(),
                line: None,
                rule,
                key: key.to_owned(),
                message,
                fix: fix.to_owned(),
            }))
        };
        let raw: RawFile =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                err(
                    None,
                    &e.path().to_string(),
                    e.inner().to_string(),
                    "the top-level keys are version, default_time_zone, time_zones, labels, \
                     limits, rule and webhook (see docs/alerts.md)",
                )
            })?;
        match raw.version {
            Some(RULES_VERSION) => {}
            Some(v) => {
                return Err(err(
                    None,
                    "version",
                    format!(
                        "version {v} is not known to this sealog, which reads version {RULES_VERSION}"
                    ),
                    "write `version = 1`, or use the sealog release that wrote this file",
                ));
            }
            None => {
                return Err(err(
                    None,
                    "version",
                    "missing: a rules file says which version of the format it is".into(),
                    "add `version = 1` at the top of the file",
                ));
            }
        }
        let zone = |key: &str, name: &str| {
            TimeZone::get(name).map_err(|e| {
                err(
                    None,
                    key,
                    format!("`{name}` is not a time zone known here: {e}"),
                    "give an IANA time zone name such as `Europe/Berlin`, \
                     `America/New_York` or `UTC`",
                )
            })
        };
        let mut zones = TimeZones::default();
        if let Some(name) = &raw.default_time_zone {
            zones.default = zone("default_time_zone", name)?;
            zones.default_name = name.clone();
        }
        for (tenant, name) in &raw.time_zones {
            let z = zone(&format!("time_zones.{tenant}"), name)?;
            zones.tenants.insert(tenant.clone(), (z, name.clone()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut labels = BTreeMap::new();
        for (name, file) in &raw.labels {
            if !valid_name(name) {
                return Err(err(
                    None,
                    &format!("labels.{name}"),
                    format!("`{name}` is not a label map name"),
                    "name label maps with lowercase letters, digits, `_`, `-` or `.` \
                     (e.g. `country`, `asn`)",
                ));
            }
            let map = LabelMap::load(&base.join(file))?;
            labels.insert(name.clone(), Arc::new(map));
        }
        let limits = raw.limits.check(&err)?;
        let mut rules = Vec::<Rule>::new();
        for (i, value) in raw.rule.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("#{}", i + 1), |n| format!("`{n}` (#{})", i + 1));
            let rule = parse_rule(value, &label, &labels, &err)?;
            if let Some(first) = rules.iter().position(|r| r.name == rule.name) {
                return Err(err(
                    Some(label),
                    "name",
                    format!(
                        "the name `{}` is already used by rule #{}",
                        rule.name,
                        first + 1
                    ),
                    "give every rule its own name: alerts and their events name the rule",
                ));
            }
            rules.push(rule);
        }
        if rules.is_empty() {
            return Err(err(
                None,
                "rule",
                "the file defines no rule".into(),
                "add at least one [[rule]] table (see docs/alerts.md for examples)",
            ));
        }
        let mut webhooks = Vec::new();
        for (i, hook) in raw.webhook.iter().enumerate() {
            let key = format!("webhook[{}]", i + 1);
            let secret = crate::deliver::Webhook::read_secret(&base.join(&hook.secret_file))?;
            let hook = crate::deliver::Webhook::new(
                &hook.url,
                secret,
                hook.min_severity.unwrap_or(Severity::Info),
            )
            .map_err(|e| {
                err(
                    None,
                    &key,
                    e.to_string(),
                    "give an http:// or https:// URL and a secret_file (relative to the rules \
                     file) holding at least 16 random bytes, e.g. from \
                     `head -c 32 /dev/urandom | base64`",
                )
            })?;
            webhooks.push(hook);
        }
        Ok(RuleSet {
            rules,
            zones,
            limits,
            webhooks,
            path: path.to_path_buf(),
        })
    }
}

type ErrFn<'a> = dyn Fn(Option<String>, &str, String, &str) -> Error + 'a;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<u64>,
    default_time_zone: Option<String>,
    #[serde(default)]
    time_zones: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    rule: Vec<toml::Value>,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_file: String,
    min_severity: Option<Severity>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_groups: Option<u64>,
    max_values: Option<u64>,
    max_clock_skew: Option<String>,
    max_alert_seqs: Option<u64>,
}

impl RawLimits {
    fn check(&self, err: &ErrFn<'_>) -> Result<Limits> {
        let mut limits = Limits::default();
        let range = |key: &str, value: Option<u64>, lo: u64, hi: u64| -> Result<Option<usize>> {
            match value {
                None => Ok(None),
                Some(v) if (lo..=hi).contains(&v) => Ok(usize::try_from(v).ok()),
                Some(v) => Err(err(
                    None,
                    key,
                    format!("{v} is outside {lo}..={hi}"),
                    "choose a value in the range; see docs/alerts.md (Limits)",
                )),
            }
        };
        if let Some(v) = range("limits.max_groups", self.max_groups, 1, 10_000_000)? {
            limits.max_groups = v;
        }
        if let Some(v) = range("limits.max_values", self.max_values, 1, 1_000_000)? {
            limits.max_values = v;
        }
        if let Some(v) = range("limits.max_alert_seqs", self.max_alert_seqs, 1, 1_000)? {
            limits.max_alert_seqs = v;
        }
        if let Some(text) = &self.max_clock_skew {
            limits.max_clock_skew = duration(None, "limits.max_clock_skew", text, err)?;
        }
        Ok(limits)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    severity: Severity,
    description: Option<String>,
    kind: String,
    select: Option<RawSelector>,
    except: Option<RawSelector>,
    group_by: Option<String>,
    cooldown: Option<String>,
    // threshold
    count: Option<u64>,
    window: Option<String>,
    // baseline
    bucket: Option<String>,
    factor: Option<f64>,
    min_count: Option<u64>,
    baseline: Option<String>,
    warmup: Option<String>,
    // schedule
    days: Option<OneOrMany>,
    hours: Option<OneOrMany>,
    // first_seen
    value: Option<String>,
    learning: Option<String>,
    group_learning: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    actor: Option<OneOrMany>,
    action: Option<OneOrMany>,
    resource: Option<String>,
    resource_type: Option<String>,
    outcome: Option<Outcome>,
    tenant: Option<OneOrMany>,
    source_ip: Option<OneOrMany>,
}

/// More alternatives than this in one selector are refused: each is a
/// query when `alerts test` asks the indexes.
const MAX_QUERIES: usize = 256;

impl RawSelector {
    fn compile(self, rule: &str, key: &str, err: &ErrFn<'_>) -> Result<Vec<Query>> {
        let bad = |field: &str, message: String, fix: &str| {
            err(
                Some(rule.to_owned()),
                &format!("{key}.{field}"),
                message,
                fix,
            )
        };
        let mut base = Query {
            order: Order::OldestFirst,
            outcome: self.outcome,
            resource_type: self.resource_type,
            ..Query::default()
        };
        if let Some(actions) = self.action {
            for a in actions.into_vec() {
                base.actions.push(ActionPattern::new(a).map_err(|e| {
                    bad(
                        "action",
                        query_reason(e),
                        "e.g. `auth.login_failed`, `auth.*`, `*.export`",
                    )
                })?);
            }
            if base.actions.is_empty() {
                return Err(bad(
                    "action",
                    "the list is empty".into(),
                    "list at least one action, or leave the key out",
                ));
            }
        }
        if let Some(r) = self.resource {
            base.resource = Some(ResourceFilter::parse(&r));
        }
        let actors: Vec<Option<ActorFilter>> = match self.actor {
            None => vec![None],
            Some(list) => list
                .into_vec()
                .iter()
                .map(|a| Some(ActorFilter::parse(a)))
                .collect(),
        };
        let tenants: Vec<Option<String>> = match self.tenant {
            None => vec![None],
            Some(list) => list.into_vec().into_iter().map(Some).collect(),
        };
        let ips: Vec<Option<IpFilter>> = match self.source_ip {
            None => vec![None],
            Some(list) => list
                .into_vec()
                .iter()
                .map(|s| {
                    IpFilter::parse(s).map(Some).map_err(|e| {
                        bad(
                            "source_ip",
                            query_reason(e),
                            "give an address or a CIDR network such as 10.0.0.0/8 or 2001:db8::/32",
                        )
                    })
                })
                .collect::<Result<_>>()?,
        };
        for (field, len) in [
            ("actor", actors.len()),
            ("tenant", tenants.len()),
            ("source_ip", ips.len()),
        ] {
            if len == 0 {
                return Err(bad(
                    field,
                    "the list is empty".into(),
                    "list at least one value, or leave the key out",
                ));
            }
        }
        let combinations = actors.len() * tenants.len() * ips.len();
        if combinations > MAX_QUERIES {
            return Err(bad(
                "actor",
                format!(
                    "{combinations} combinations of actor, tenant and source_ip; at most {MAX_QUERIES}"
                ),
                "use a CIDR network or an action pattern instead of long lists, or split the rule",
            ));
        }
        let mut queries = Vec::with_capacity(combinations);
        for actor in &actors {
            for tenant in &tenants {
                for ip in &ips {
                    let q = Query {
                        actor: actor.clone(),
                        tenant: tenant.clone(),
                        source_ip: *ip,
                        ..base.clone()
                    };
                    q.validate().map_err(|e| {
                        let field = match &e {
                            sealog::Error::InvalidQuery { field, .. } => *field,
                            _ => "",
                        };
                        bad(
                            field,
                            query_reason(e),
                            "see `sealog query --help` for the filter syntax",
                        )
                    })?;
                    queries.push(q);
                }
            }
        }
        Ok(queries)
    }
}

fn query_reason(e: sealog::Error) -> String {
    match e {
        sealog::Error::InvalidQuery { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

fn duration(rule: Option<&str>, key: &str, text: &str, err: &ErrFn<'_>) -> Result<i64> {
    let d = sealog::query::parse_duration("duration", text).map_err(|e| {
        err(
            rule.map(str::to_owned),
            key,
            query_reason(e),
            "write a whole number and a unit, s, m, h, d or w: \"30s\", \"5m\", \"1h\", \"7d\"",
        )
    })?;
    i64::try_from(d.as_nanos())
        .ok()
        .filter(|&n| n <= 3650 * 86_400 * SECOND)
        .ok_or_else(|| {
            err(
                rule.map(str::to_owned),
                key,
                format!("`{text}` is longer than ten years"),
                "choose a shorter duration",
            )
        })
}

fn parse_rule(
    value: toml::Value,
    label: &str,
    labels: &BTreeMap<String, Arc<LabelMap>>,
    err: &ErrFn<'_>,
) -> Result<Rule> {
    let fingerprint = {
        let canonical = serde_json::to_vec(&value).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    };
    let rule_err =
        |key: &str, message: String, fix: &str| err(Some(label.to_owned()), key, message, fix);
    let raw: RawRule = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { String::new() } else { path };
        let message = e.inner().to_string();
        let fix = if message.contains("unknown field") {
            "remove or correct the key; docs/alerts.md lists the keys of each kind of rule"
        } else if message.contains("missing field") {
            "every rule needs name, severity and kind"
        } else if message.contains("severity") || key == "severity" {
            "severity is one of info, low, medium, high, critical"
        } else {
            "see docs/alerts.md for the keys of each kind of rule and their types"
        };
        rule_err(&key, message, fix)
    })?;
    if !valid_name(&raw.name) {
        return Err(rule_err(
            "name",
            format!("`{}` is not a rule name", raw.name),
            "use 1 to 64 lowercase letters, digits, `_`, `-` or `.`, starting with a letter or digit \
             (e.g. `brute-force-login`)",
        ));
    }
    let label = label.to_owned();
    let rule_err =
        |key: &str, message: String, fix: &str| err(Some(label.clone()), key, message, fix);
    if let Some(d) = &raw.description
        && (d.len() > 1024 || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(rule_err(
            "description",
            "longer than 1024 bytes, or holds control characters".into(),
            "keep the description to a few lines of plain text (it becomes the alert event's reason)",
        ));
    }
    let dur = |key: &str, text: &str| duration(Some(&label), key, text, err);
    let kind_name = raw.kind.as_str();
    // Keys that belong to one kind only: given to another, they are refused
    // rather than ignored (a misplaced `window` must not silently do
    // nothing).
    let owned: [(&str, bool, &str); 12] = [
        ("count", raw.count.is_some(), "threshold"),
        ("window", raw.window.is_some(), "threshold"),
        ("bucket", raw.bucket.is_some(), "baseline"),
        ("factor", raw.factor.is_some(), "baseline"),
        ("min_count", raw.min_count.is_some(), "baseline"),
        ("baseline", raw.baseline.is_some(), "baseline"),
        ("warmup", raw.warmup.is_some(), "baseline"),
        ("days", raw.days.is_some(), "schedule"),
        ("hours", raw.hours.is_some(), "schedule"),
        ("value", raw.value.is_some(), "first_seen"),
        ("learning", raw.learning.is_some(), "first_seen"),
        ("group_learning", raw.group_learning.is_some(), "first_seen"),
    ];
    if !["threshold", "baseline", "schedule", "first_seen", "match"].contains(&kind_name) {
        return Err(rule_err(
            "kind",
            format!("`{kind_name}` is not a kind of rule"),
            "kind is one of threshold, baseline, schedule, first_seen, match",
        ));
    }
    for (key, given, kind) in owned {
        if given && kind != kind_name {
            return Err(rule_err(
                key,
                format!("`{key}` is a key of `{kind}` rules, not of `{kind_name}` rules"),
                "remove it, or change the rule's kind",
            ));
        }
    }
    let required = |key: &str, present: bool| {
        if present {
            Ok(())
        } else {
            Err(rule_err(
                key,
                format!("missing: a `{kind_name}` rule needs `{key}`"),
                "see docs/alerts.md for the keys of each kind of rule",
            ))
        }
    };
    let (kind, default_group, default_cooldown) = match kind_name {
        "threshold" => {
            required("count", raw.count.is_some())?;
            required("window", raw.window.is_some())?;
            let count = raw.count.unwrap_or(0);
            if !(1..=10_000).contains(&count) {
                return Err(rule_err(
                    "count",
                    format!("{count} is outside 1..=10000"),
                    "count how many events make the alert, e.g. 5",
                ));
            }
            let window = dur("window", raw.window.as_deref().unwrap_or_default())?;
            if window <= 0 {
                return Err(rule_err(
                    "window",
                    "the window is empty".into(),
                    "give a window such as \"1m\"",
                ));
            }
            (
                Kind::Threshold {
                    count: u32::try_from(count).unwrap_or(1),
                    window,
                },
                GroupBy::Actor,
                window,
            )
        }
        "baseline" => {
            for key in ["bucket", "factor", "min_count", "baseline", "warmup"] {
                let present = match key {
                    "bucket" => raw.bucket.is_some(),
                    "factor" => raw.factor.is_some(),
                    "min_count" => raw.min_count.is_some(),
                    "baseline" => raw.baseline.is_some(),
                    _ => raw.warmup.is_some(),
                };
                required(key, present)?;
            }
            let bucket = dur("bucket", raw.bucket.as_deref().unwrap_or_default())?;
            let span = dur("baseline", raw.baseline.as_deref().unwrap_or_default())?;
            let warmup = dur("warmup", raw.warmup.as_deref().unwrap_or_default())?;
            let factor = raw.factor.unwrap_or(0.0);
            let min_count = raw.min_count.unwrap_or(0);
            if bucket < 60 * SECOND {
                return Err(rule_err(
                    "bucket",
                    "a bucket is at least 1 minute".into(),
                    "e.g. bucket = \"1h\"",
                ));
            }
            if span < 2 * bucket || span % bucket != 0 {
                return Err(rule_err(
                    "baseline",
                    "the baseline spans at least two buckets, and a whole number of them".into(),
                    "e.g. bucket = \"1h\" with baseline = \"7d\"",
                ));
            }
            if warmup < bucket {
                return Err(rule_err(
                    "warmup",
                    "the warm-up is at least one bucket: a group needs a baseline before its counts mean anything".into(),
                    "e.g. warmup = \"7d\" so a new actor does not fire in its first week",
                ));
            }
            if !(factor.is_finite() && factor > 1.0 && factor <= 1_000_000.0) {
                return Err(rule_err(
                    "factor",
                    format!("{factor} is not a number above 1"),
                    "e.g. factor = 10.0 for ten times the usual count",
                ));
            }
            if min_count == 0 {
                return Err(rule_err(
                    "min_count",
                    "0 would let a quiet group fire on its first event".into(),
                    "e.g. min_count = 50",
                ));
            }
            (
                Kind::Baseline {
                    bucket,
                    factor,
                    min_count,
                    span_buckets: u64::try_from(span / bucket).unwrap_or(2),
                    warmup,
                },
                GroupBy::Actor,
                bucket,
            )
        }
        "schedule" => {
            if raw.days.is_none() && raw.hours.is_none() {
                return Err(rule_err(
                    "hours",
                    "missing: a `schedule` rule needs `days`, `hours` or both".into(),
                    "e.g. days = \"mon-fri\" and hours = \"08:00-18:00\"",
                ));
            }
            let days = match raw.days {
                None => [true; 7],
                Some(d) => parse_days(&d.into_vec()).map_err(|m| {
                    rule_err(
                        "days",
                        m,
                        "list days as mon, tue, wed, thu, fri, sat, sun, or ranges such as mon-fri",
                    )
                })?,
            };
            let hours = match raw.hours {
                None => vec![(0, 24 * 60)],
                Some(h) => h
                    .into_vec()
                    .iter()
                    .map(|r| parse_hours(r))
                    .collect::<std::result::Result<Vec<_>, String>>()
                    .map_err(|m| rule_err("hours", m, "give local times as \"HH:MM-HH:MM\", e.g. \"08:00-18:00\" or \"22:00-06:00\""))?,
            };
            if hours.is_empty() {
                return Err(rule_err(
                    "hours",
                    "the list is empty".into(),
                    "list at least one range, or leave the key out",
                ));
            }
            (
                Kind::Schedule { days, hours },
                GroupBy::Actor,
                3600 * SECOND,
            )
        }
        "first_seen" => {
            required("value", raw.value.is_some())?;
            let text = raw.value.as_deref().unwrap_or_default();
            let value = if text == "source_ip" {
                ValueField::SourceIp
            } else if let Some(name) = text.strip_prefix("label:") {
                let map = labels.get(name).ok_or_else(|| {
                    rule_err(
                        "value",
                        format!("no label map `{name}` is declared"),
                        "declare it at the top of the file: [labels] with `name = \"file.csv\"`",
                    )
                })?;
                ValueField::Label(name.to_owned(), map.clone())
            } else {
                return Err(rule_err(
                    "value",
                    format!("`{text}` is not a watched value"),
                    "value is `source_ip` or `label:NAME` for a label map declared under [labels]",
                ));
            };
            let learning = match &raw.learning {
                Some(t) => dur("learning", t)?,
                None => 0,
            };
            let group_learning = match &raw.group_learning {
                Some(t) => dur("group_learning", t)?,
                None => 0,
            };
            (
                Kind::FirstSeen {
                    value,
                    learning,
                    group_learning,
                },
                GroupBy::Actor,
                0,
            )
        }
        _ => (Kind::Match, GroupBy::None, 0),
    };
    let group_by = match &raw.group_by {
        None => default_group,
        Some(g) => GroupBy::parse(g).ok_or_else(|| {
            rule_err(
                "group_by",
                format!("`{g}` is not a grouping"),
                "group_by is one of actor, source_ip, resource, tenant, none",
            )
        })?,
    };
    let cooldown = match &raw.cooldown {
        Some(t) => dur("cooldown", t)?,
        None => default_cooldown,
    };
    let select = Selector {
        queries: match raw.select {
            Some(s) => s.compile(&label, "select", err)?,
            None => Vec::new(),
        },
        except: match raw.except {
            Some(s) => s.compile(&label, "except", err)?,
            None => Vec::new(),
        },
    };
    if select.queries.is_empty() && kind_name == "match" {
        return Err(rule_err(
            "select",
            "missing: a `match` rule without a selector would fire on every event".into(),
            "add select = { action = \"...\" } naming what to alert on",
        ));
    }
    Ok(Rule {
        name: raw.name,
        severity: raw.severity,
        description: raw.description.unwrap_or_default(),
        select,
        group_by,
        cooldown,
        kind,
        fingerprint,
    })
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// The line of an error's key in the file: the key inside its rule (the
/// rule's `#N` in the label gives its index), the rule itself when the key
/// is missing, or a top-level key.
fn locate(text: &str, e: &RulesError) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    fn find<'i>(table: &DeTable<'i>, name: &str) -> Option<(usize, toml::Spanned<DeValue<'i>>)> {
        table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == name)
            .map(|(k, v)| (k.span().start, v.clone()))
    }
    let mut table = root.get_ref().clone();
    let mut at = None;
    if let Some(rule) = &e.rule {
        let index: usize = rule
            .rsplit_once('#')
            .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())?;
        let (start, rules) = find(&table, "rule")?;
        at = Some(start);
        let DeValue::Array(rules) = rules.get_ref() else {
            return at.map(|s| line_at(text, s));
        };
        let one = rules.get(index.checked_sub(1)?)?;
        at = Some(one.span().start);
        let DeValue::Table(t) = one.get_ref() else {
            return at.map(|s| line_at(text, s));
        };
        table = t.clone();
    }
    for part in e.key.split('.').filter(|p| !p.is_empty()) {
        let Some((start, value)) = find(&table, part) else {
            break;
        };
        at = Some(start);
        match value.get_ref() {
            DeValue::Table(t) => table = t.clone(),
            _ => break,
        }
    }
    at.map(|s| line_at(text, s))
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The short name of a weekday, Monday 0.
pub(crate) fn day_name(index: usize) -> &'static str {
    DAY_NAMES.get(index).copied().unwrap_or("?")
}

fn parse_days(items: &[String]) -> std::result::Result<[bool; 7], String> {
    let index = |d: &str| {
        DAY_NAMES
            .iter()
            .position(|n| *n == d.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("`{d}` is not a day"))
    };
    let mut days = [false; 7];
    if items.is_empty() {
        return Err("the list is empty".into());
    }
    for item in items {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                let mut d = a;
                loop {
                    if let Some(slot) = days.get_mut(d) {
                        *slot = true;
                    }
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => {
                if let Some(slot) = days.get_mut(index(item)?) {
                    *slot = true;
                }
            }
        }
    }
    Ok(days)
}

fn parse_hours(range: &str) -> std::result::Result<(u16, u16), String> {
    let minute = |t: &str| -> std::result::Result<u16, String> {
        let bad = || format!("`{t}` is not a time of day HH:MM");
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 || h > 24 || (h == 24 && m != 0) || h.to_string().len() > 2 {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (a, b) = range
        .split_once('-')
        .ok_or_else(|| format!("`{range}` is not a range HH:MM-HH:MM"))?;
    let (a, b) = (minute(a)?, minute(b)?);
    if a == b {
        return Err(format!("`{range}` is empty"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleSet> {
        RuleSet::parse(text, Path::new("rules.toml"))
    }

    fn rules_error(text: &str) -> RulesError {
        match parse(text) {
            Err(Error::Rules(e)) => *e,
            Err(other) => panic!("not a rules error: {other}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    const GOOD: &str = r#"
version = 1
default_time_zone = "Europe/Berlin"
[time_zones]
acme = "America/New_York"

[[rule]]
name = "brute-force-login"
severity = "high"
kind = "threshold"
select = { action = "auth.login", outcome = "failure" }
group_by = "source_ip"
count = 5
window = "1m"

[[rule]]
name = "bulk-read"
severity = "medium"
kind = "baseline"
select = { action = "*.read" }
bucket = "1h"
factor = 10.0
min_count = 50
baseline = "7d"
warmup = "7d"

[[rule]]
name = "after-hours-admin"
severity = "medium"
kind = "schedule"
select = { action = "admin.*" }
days = "mon-fri"
hours = "08:00-18:00"

[[rule]]
name = "new-admin-source"
severity = "high"
kind = "first_seen"
select = { actor = ["user:root", "user:admin"] }
value = "source_ip"
learning = "14d"

[[rule]]
name = "audit-config-changed"
severity = "critical"
kind = "match"
select = { action = ["audit.config_changed", "role.grant*"] }
except = { source_ip = "10.0.0.0/8" }
"#;

    #[test]
    fn a_rules_file_with_every_kind_parses() {
        let set = parse(GOOD).unwrap();
        assert_eq!(set.rules.len(), 5);
        let names: Vec<_> = set.rules.iter().map(|r| r.kind.name()).collect();
        assert_eq!(
            names,
            ["threshold", "baseline", "schedule", "first_seen", "match"]
        );
        let r = &set.rules[0];
        assert_eq!(r.group_by, GroupBy::SourceIp);
        assert_eq!(
            r.cooldown,
            60 * SECOND,
            "the cool-down defaults to the window"
        );
        assert_eq!(
            r.kind,
            Kind::Threshold {
                count: 5,
                window: 60 * SECOND
            }
        );
        assert_eq!(set.rules[3].select.queries.len(), 2, "one query per actor");
        assert_eq!(set.rules[4].select.except.len(), 1);
        assert_eq!(set.rules[4].group_by, GroupBy::None);
        match &set.rules[2].kind {
            Kind::Schedule { days, hours } => {
                assert_eq!(days, &[true, true, true, true, true, false, false]);
                assert_eq!(hours, &[(480, 1080)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(set.zones.for_tenant(Some("acme")).1, "America/New_York");
        assert_eq!(set.zones.for_tenant(Some("other")).1, "Europe/Berlin");
        assert_eq!(set.zones.for_tenant(None).1, "Europe/Berlin");
    }

    #[test]
    fn mistakes_are_refused_naming_the_rule_and_the_key() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                "window = \"1m\"",
                "window = \"1 minute\"",
                Some("`brute-force-login` (#1)"),
                "window",
            ),
            (
                "count = 5",
                "count = 0",
                Some("`brute-force-login` (#1)"),
                "count",
            ),
            (
                "window = \"1m\"",
                "window = \"1m\"\nwindw = 3",
                Some("`brute-force-login` (#1)"),
                "windw",
            ),
            (
                "outcome = \"failure\"",
                "outcome = \"failed\"",
                Some("`brute-force-login` (#1)"),
                "select.outcome",
            ),
            (
                "action = \"auth.login\"",
                "action = \"Auth.Login\"",
                Some("`brute-force-login` (#1)"),
                "select.action",
            ),
            (
                "factor = 10.0",
                "factor = 0.5",
                Some("`bulk-read` (#2)"),
                "factor",
            ),
            (
                "warmup = \"7d\"",
                "warmup = \"1m\"",
                Some("`bulk-read` (#2)"),
                "warmup",
            ),
            (
                "hours = \"08:00-18:00\"",
                "hours = \"8-18\"",
                Some("`after-hours-admin` (#3)"),
                "hours",
            ),
            (
                "days = \"mon-fri\"",
                "days = \"monday\"",
                Some("`after-hours-admin` (#3)"),
                "days",
            ),
            (
                "value = \"source_ip\"",
                "value = \"label:country\"",
                Some("`new-admin-source` (#4)"),
                "value",
            ),
            (
                "learning = \"14d\"",
                "learning = \"14d\"\nwindow = \"1m\"",
                Some("`new-admin-source` (#4)"),
                "window",
            ),
            (
                "kind = \"match\"",
                "kind = \"matches\"",
                Some("`audit-config-changed` (#5)"),
                "kind",
            ),
            (
                "severity = \"critical\"",
                "severity = \"urgent\"",
                Some("`audit-config-changed` (#5)"),
                "severity",
            ),
            (
                "except = { source_ip = \"10.0.0.0/8\" }",
                "except = { source_ip = \"10.0.0.0/99\" }",
                Some("`audit-config-changed` (#5)"),
                "except.source_ip",
            ),
            (
                "name = \"bulk-read\"",
                "name = \"brute-force-login\"",
                Some("`brute-force-login` (#2)"),
                "name",
            ),
            (
                "acme = \"America/New_York\"",
                "acme = \"America/Gotham\"",
                None,
                "time_zones.acme",
            ),
            ("version = 1", "version = 2", None, "version"),
            ("version = 1", "", None, "version"),
        ];
        for (from, to, rule, key) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let e = rules_error(&text);
            assert_eq!(e.rule.as_deref(), *rule, "{to}: {e}");
            assert_eq!(e.key, *key, "{to}: {e}");
            assert!(!e.fix.is_empty());
            let shown = e.to_string();
            assert!(shown.contains("rules.toml"), "{shown}");
        }
    }

    #[test]
    fn overnight_hours_and_day_ranges_wrap() {
        assert_eq!(parse_hours("22:00-06:00").unwrap(), (1320, 360));
        assert_eq!(parse_hours("00:00-24:00").unwrap(), (0, 1440));
        assert!(parse_hours("24:30-25:00").is_err());
        assert_eq!(
            parse_days(&["fri-mon".into()]).unwrap(),
            [true, false, false, false, true, true, true]
        );
    }

    #[test]
    fn invalid_toml_names_the_line() {
        let e = rules_error("version = 1\n[[rule]\nname = 3\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("rules.toml` line 2"), "{e}");
    }

    #[test]
    fn a_mistake_names_the_line_of_its_key_or_of_its_rule() {
        let line_of =
            |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
        // A wrong value: the line of the key.
        let text = GOOD.replacen("factor = 10.0", "factor = 0.5", 1);
        assert_eq!(rules_error(&text).line, line_of(&text, "factor = 0.5"));
        // A key inside an inline table.
        let text = GOOD.replacen("outcome = \"failure\"", "outcome = \"failed\"", 1);
        assert_eq!(
            rules_error(&text).line,
            line_of(&text, "outcome = \"failed\"")
        );
        // A missing key: the line where its rule starts.
        let text = GOOD.replacen("count = 5\n", "", 1);
        let e = rules_error(&text);
        assert_eq!(e.key, "count");
        let rule_start = line_of(&text, "name = \"brute-force-login\"").unwrap();
        assert!(
            e.line
                .is_some_and(|l| l <= rule_start && l + 1 >= rule_start),
            "{e}"
        );
        // A top-level key.
        let text = GOOD.replacen(
            "acme = \"America/New_York\"",
            "acme = \"America/Gotham\"",
            1,
        );
        assert_eq!(rules_error(&text).line, line_of(&text, "America/Gotham"));
    }
}
