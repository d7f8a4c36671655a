//! The query model: which events to find, in which order, one page at a
//! time.
//!
//! A [`Query`] ANDs together predicates on actor, action (exact, a list, or
//! glob patterns such as `customer.*`, `*.export`, `*export*`), resource,
//! resource type, outcome, tenant, source IP (exact or CIDR), request id and
//! an event-time range `[from, to)`. Results come in append order, newest
//! first (highest seq first, the default) or oldest first, or in event-time
//! order, latest or earliest event time first (ties broken by seq), `limit`
//! at a time. A page's `next_cursor` is a position in that order (a seq, or
//! an event time and a seq), so paging never repeats or skips a record that
//! existed when the first page was read, while new events are appended:
//! in append order new events have higher seqs, so newest-first paging
//! continues downward and oldest-first paging reaches them last; in
//! event-time order a new event shows up in a later page only if its
//! position is still ahead of the cursor.
//!
//! ```
//! use sealog::query::{ActionPattern, ActorFilter, Query};
//! let q = Query {
//!     actor: Some(ActorFilter::parse("user:alice")),
//!     actions: vec![ActionPattern::new("customer.*")?],
//!     limit: 50,
//!     ..Query::default()
//! };
//! # Ok::<(), sealog::Error>(())
//! ```
//!
//! [`Filters`] is the same query as text, the way people give it: the
//! HTTP server's query-string parameters and the command line's flags are
//! both this one struct (it derives `serde::Deserialize` and, with the
//! `clap` feature, `clap::Args`), and [`Filters::to_query_at`] is the one
//! conversion into a [`Query`]. Adding a filter is a field there, its
//! conversion, and its documentation.

use std::fmt;
use std::net::IpAddr;

use sealog_format::record::RecordView;
use sealog_format::{Outcome, Record, Timestamp};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The largest page a query may ask for.
pub const MAX_LIMIT: usize = 10_000;
/// The page size when none is given.
pub const DEFAULT_LIMIT: usize = 100;

/// Result order.
///
/// Append order (seq) is the order the store recorded events in. Event-time
/// order follows the `time` the clients gave (the recorded time for an
/// event without one), which can differ: clients' clocks drift, batches
/// arrive late, imports bring old events. Ties in event time are broken by
/// seq, so the order is total and a cursor is a stable position in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Most recently recorded first (descending seq). The default.
    #[default]
    NewestFirst,
    /// Oldest first (ascending seq).
    OldestFirst,
    /// Latest event time first (descending event time, then seq).
    LatestTimeFirst,
    /// Earliest event time first (ascending event time, then seq).
    EarliestTimeFirst,
}

impl Order {
    /// True for the event-time orders.
    pub const fn by_time(self) -> bool {
        matches!(self, Order::LatestTimeFirst | Order::EarliestTimeFirst)
    }

    /// True for the orders that start with the highest key (seq or time).
    pub const fn descending(self) -> bool {
        matches!(self, Order::NewestFirst | Order::LatestTimeFirst)
    }

    /// The short code of the order in a cursor.
    const fn code(self) -> &'static str {
        match self {
            Order::NewestFirst => "n",
            Order::OldestFirst => "o",
            Order::LatestTimeFirst => "tn",
            Order::EarliestTimeFirst => "to",
        }
    }
}

/// Matches the actor by id, and optionally by type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActorFilter {
    /// The actor's type (`user`, `service`, ...), or any.
    pub kind: Option<String>,
    /// The actor's id.
    pub id: String,
}

impl ActorFilter {
    /// Parses `TYPE:ID` or `ID`: the text before the first `:` is taken as
    /// the type when it is a valid type word (a lowercase letter, then
    /// letters, digits, `_`, `.`, `-`); otherwise the whole text is the id.
    pub fn parse(text: &str) -> ActorFilter {
        match split_typed(text) {
            Some((kind, id)) => ActorFilter {
                kind: Some(kind.to_owned()),
                id: id.to_owned(),
            },
            None => ActorFilter {
                kind: None,
                id: text.to_owned(),
            },
        }
    }
}

/// Matches the resource by type and/or id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceFilter {
    /// The resource's type, or any.
    pub kind: Option<String>,
    /// The resource's id, or any.
    pub id: Option<String>,
}

impl ResourceFilter {
    /// Parses `TYPE:ID`, `TYPE:` (any id of that type) or `ID`, with the
    /// same rule as [`ActorFilter::parse`].
    pub fn parse(text: &str) -> ResourceFilter {
        match split_typed(text) {
            Some((kind, "")) => ResourceFilter {
                kind: Some(kind.to_owned()),
                id: None,
            },
            Some((kind, id)) => ResourceFilter {
                kind: Some(kind.to_owned()),
                id: Some(id.to_owned()),
            },
            None => ResourceFilter {
                kind: None,
                id: Some(text.to_owned()),
            },
        }
    }
}

fn split_typed(text: &str) -> Option<(&str, &str)> {
    let (kind, id) = text.split_once(':')?;
    let mut bytes = kind.bytes();
    let word = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    word.then_some((kind, id))
}

/// An action pattern: an exact action name, or a glob where `*` matches any
/// run of characters (including dots).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActionPattern {
    pattern: String,
}

impl ActionPattern {
    /// A pattern; refuses an empty one and characters no action can contain.
    pub fn new(pattern: impl Into<String>) -> Result<ActionPattern> {
        let pattern = pattern.into();
        let valid = !pattern.is_empty()
            && pattern.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b'*')
            });
        if !valid {
            return Err(Error::InvalidQuery {
                field: "action",
                reason: format!(
                    "`{pattern}` is not an action pattern: use lowercase action names with `*` \
                     as a wildcard, e.g. `customer.delete`, `customer.*`, `*.export`"
                ),
            });
        }
        Ok(ActionPattern { pattern })
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The fixed text before the first `*` (the whole pattern if none).
    pub fn literal_prefix(&self) -> &str {
        self.pattern.split('*').next().unwrap_or_default()
    }

    /// True if the pattern has no wildcard.
    pub fn is_exact(&self) -> bool {
        !self.pattern.contains('*')
    }

    /// Whether `action` matches.
    pub fn matches(&self, action: &str) -> bool {
        glob_match(self.pattern.as_bytes(), action.as_bytes())
    }
}

impl fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Matches the source IP exactly or within a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFilter {
    /// One address.
    Exact(IpAddr),
    /// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`).
    Cidr {
        /// The network address (host bits are ignored).
        network: IpAddr,
        /// Prefix length in bits.
        prefix: u8,
    },
}

impl IpFilter {
    /// Parses an address or `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Result<IpFilter> {
        let bad = |reason: String| Error::InvalidQuery {
            field: "source_ip",
            reason,
        };
        match text.split_once('/') {
            None => text
                .parse()
                .map(IpFilter::Exact)
                .map_err(|_| bad(format!("`{text}` is not an IPv4 or IPv6 address"))),
            Some((addr, prefix)) => {
                let network: IpAddr = addr
                    .parse()
                    .map_err(|_| bad(format!("`{addr}` is not an IPv4 or IPv6 address")))?;
                let max = if network.is_ipv4() { 32 } else { 128 };
                let prefix: u8 =
                    prefix.parse().ok().filter(|&p| p <= max).ok_or_else(|| {
                        bad(format!("`/{prefix}` is not a prefix length 0..={max}"))
                    })?;
                Ok(IpFilter::Cidr { network, prefix })
            }
        }
    }

    /// The inclusive range of addresses matched, as numbers, with the
    /// family: IPv4 as `u32`, IPv6 as `u128`. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) count as IPv4.
    pub fn range(&self) -> IpRange {
        let (addr, prefix) = match *self {
            IpFilter::Exact(a) => (canonical(a), None),
            IpFilter::Cidr { network, prefix } => match network {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                    (canonical(network), Some(prefix - 96))
                }
                _ => (network, Some(prefix)),
            },
        };
        match addr {
            IpAddr::V4(v4) => {
                let n = u32::from(v4);
                let bits = u32::from(prefix.unwrap_or(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                IpRange::V4(n & mask, (n & mask) | !mask)
            }
            IpAddr::V6(v6) => {
                let n = u128::from(v6);
                let bits = u32::from(prefix.unwrap_or(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                IpRange::V6(n & mask, (n & mask) | !mask)
            }
        }
    }

    /// Whether `ip` matches.
    pub fn matches(&self, ip: IpAddr) -> bool {
        match (self.range(), canonical(ip)) {
            (IpRange::V4(lo, hi), IpAddr::V4(v4)) => (lo..=hi).contains(&u32::from(v4)),
            (IpRange::V6(lo, hi), IpAddr::V6(v6)) => (lo..=hi).contains(&u128::from(v6)),
            _ => false,
        }
    }
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRange {
    /// IPv4, as numbers.
    V4(u32, u32),
    /// IPv6, as numbers.
    V6(u128, u128),
}

/// IPv4-mapped IPv6 addresses as IPv4; everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Which end of a time range a time value gives, for a date given alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeBound {
    /// The start (`from`, inclusive): a date alone is that day's first
    /// instant, `00:00:00Z`.
    Start,
    /// The end (`to`, exclusive): a date alone includes that whole day, so
    /// it is the next day's first instant.
    End,
}

/// Parses a time of a query's range: an RFC 3339 time
/// (`2026-11-27T10:00:00Z`, `2026-11-27T11:00:00+01:00`) or a date alone
/// (`2026-11-27`, a UTC day: its start for [`TimeBound::Start`], its end for
/// [`TimeBound::End`]). `field` names the query field in the error.
pub fn parse_time(field: &'static str, text: &str, bound: TimeBound) -> Result<Timestamp> {
    let is_date = text.len() == 10 && text.bytes().filter(|&b| b == b'-').count() == 2;
    if !is_date {
        return Timestamp::parse_rfc3339(text).map_err(|e| Error::InvalidQuery {
            field,
            reason: format!(
                "{e}; give a time such as 2026-11-23T17:25:00Z or 2026-11-23T18:25:00+01:00, \
                 or a date such as 2026-11-23"
            ),
        });
    }
    let day = Timestamp::parse_date(text).map_err(|e| Error::InvalidQuery {
        field,
        reason: format!("{e}; give a date such as 2026-11-23"),
    })?;
    match bound {
        TimeBound::Start => Ok(day),
        TimeBound::End => day
            .as_nanos()
            .checked_add(DAY_NANOS)
            .map(Timestamp::from_nanos)
            .ok_or_else(|| Error::InvalidQuery {
                field,
                reason: format!("the end of {text} is outside the representable range"),
            }),
    }
}

const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// Parses a duration such as `30s`, `15m`, `1h`, `7d` or `2w`: a whole
/// number and a unit (s, m, h, d or w). `field` names the query field in
/// the error.
pub fn parse_duration(field: &'static str, text: &str) -> Result<std::time::Duration> {
    let bad = || Error::InvalidQuery {
        field,
        reason: format!(
            "`{}` is not a duration: give a whole number and a unit, s, m, h, d or w \
             (e.g. 1h or 7d)",
            text.chars().take(40).collect::<String>()
        ),
    };
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs(
        n.checked_mul(unit_secs).ok_or_else(bad)?,
    ))
}

/// The event-time range "within `duration` before `now`": `from = now -
/// duration` (inclusive) and `to` just after `now` (exclusive), so an event
/// dated in the future is not "within the last hour".
pub fn since(duration: std::time::Duration, now: Timestamp) -> (Timestamp, Timestamp) {
    let nanos = i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
    (
        Timestamp::from_nanos(now.as_nanos().saturating_sub(nanos)),
        Timestamp::from_nanos(now.as_nanos().saturating_add(1)),
    )
}

/// Declares the filter struct and, from the same field list, its
/// [`Filters::FIELDS`]: the names a query string and the flags use cannot
/// drift from the fields.
macro_rules! filters_struct {
    (
        $(#[$meta:meta])*
        pub struct Filters {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct Filters {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Filters {
            /// The names of the filters, in declaration order: the
            /// query-string parameters (`resource_type`) and, with `-`
            /// for `_`, the flags (`--resource-type`).
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

filters_struct! {
    /// The filters of a query as given, one text value each (several for
    /// `action`), before parsing: the HTTP server's query-string parameters
    /// (`GET /v1/events`, `/v1/tail`, the export) and the command line's
    /// filter flags (`query`, `tail`, `export`). [`Filters::to_query_at`]
    /// turns them into a [`Query`], refusing a value naming its field.
    ///
    /// Unknown fields are refused (a typo such as `actr=alice` must not
    /// silently widen a query during an incident).
    #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[cfg_attr(feature = "clap", derive(clap::Args))]
    #[cfg_attr(
        feature = "clap",
        command(next_help_heading = "Filters (all given filters must match)")
    )]
    pub struct Filters {
        /// The actor: `TYPE:ID` or just `ID` (any type).
        ///
        /// Example: --actor user:alice   or   --actor alice
        #[cfg_attr(feature = "clap", arg(long, value_name = "[TYPE:]ID"))]
        pub actor: Option<String>,

        /// The action, exact or a glob where `*` matches anything (dots
        /// included). Repeat the flag to match any of several.
        ///
        /// Example: --action 'customer.*' --action auth.login_failed
        #[cfg_attr(feature = "clap", arg(long, value_name = "PATTERN"))]
        pub action: Vec<String>,

        /// The resource: `TYPE:ID`, `TYPE:` (any id of that type) or `ID`.
        ///
        /// Example: --resource customer:4471   or   --resource customer:
        #[cfg_attr(feature = "clap", arg(long, value_name = "TYPE:ID"))]
        pub resource: Option<String>,

        /// The resource type.
        ///
        /// Example: --resource-type invoice
        #[cfg_attr(feature = "clap", arg(long, value_name = "TYPE"))]
        pub resource_type: Option<String>,

        /// The outcome.
        ///
        /// Example: --outcome denied
        #[cfg_attr(
            feature = "clap",
            arg(long, value_name = "OUTCOME", value_parser = ["success", "failure", "denied"])
        )]
        pub outcome: Option<String>,

        /// The tenant.
        ///
        /// Example: --tenant acme
        #[cfg_attr(feature = "clap", arg(long, value_name = "TENANT"))]
        pub tenant: Option<String>,

        /// The source IP address, exact or a CIDR network (IPv4 or IPv6;
        /// IPv4-mapped IPv6 addresses count as IPv4).
        ///
        /// Example: --source-ip 203.0.113.9   or   --source-ip 10.0.0.0/8
        #[cfg_attr(feature = "clap", arg(long, value_name = "IP|CIDR"))]
        pub source_ip: Option<String>,

        /// The request id.
        ///
        /// Example: --request-id req-7f3a
        #[cfg_attr(feature = "clap", arg(long, value_name = "ID"))]
        pub request_id: Option<String>,

        /// Only events that happened within this long before now, and not
        /// after now: event time in [now - DURATION, now]. A number and a unit,
        /// s (seconds), m (minutes), h (hours), d (days) or w (weeks). Events
        /// dated in the future (a client's clock ahead) are left out; --from
        /// alone includes them. With --to, that is the end instead of now.
        ///
        /// Example: --since 1h   or   --since 7d
        #[cfg_attr(
            feature = "clap",
            arg(long, value_name = "DURATION", conflicts_with = "from")
        )]
        pub since: Option<String>,

        /// Only events that happened at or after this time: RFC 3339, or a date
        /// alone for the start of that day in UTC.
        ///
        /// Example: --from 2026-11-23T00:00:00Z   or   --from 2026-11-23
        #[cfg_attr(feature = "clap", arg(long, value_name = "TIME"))]
        pub from: Option<String>,

        /// Only events that happened before this time (exclusive): RFC 3339,
        /// or a date alone for the end of that day in UTC (the whole day is
        /// included). Also --until.
        ///
        /// Example: --to 2026-11-24T00:00:00+01:00   or   --until 2026-11-23
        #[cfg_attr(
            feature = "clap",
            arg(long, visible_alias = "until", value_name = "TIME")
        )]
        pub to: Option<String>,
    }
}

impl Filters {
    /// The query these filters describe (newest first, the default limit),
    /// `since` counted back from now.
    pub fn to_query(&self) -> Result<Query> {
        self.to_query_at(Timestamp::now())
    }

    /// True when the end of the time range is "now" (`since` without
    /// `to`): a follower moves it as time passes.
    pub fn ends_now(&self) -> bool {
        self.since.is_some() && self.to.is_none()
    }

    /// The query these filters describe at the instant `now`: `since = D`
    /// is the event-time range `[now - D, now]` (its end replaced by `to`
    /// if given) and is refused beside `from`. Each value that does not
    /// parse, and a query that [`Query::validate`] refuses, is an
    /// [`Error::InvalidQuery`] naming the field.
    pub fn to_query_at(&self, now: Timestamp) -> Result<Query> {
        let mut q = Query {
            actor: self.actor.as_deref().map(ActorFilter::parse),
            resource: self.resource.as_deref().map(ResourceFilter::parse),
            resource_type: self.resource_type.clone(),
            tenant: self.tenant.clone(),
            request_id: self.request_id.clone(),
            ..Query::default()
        };
        for pattern in &self.action {
            q.actions.push(ActionPattern::new(pattern.as_str())?);
        }
        if let Some(text) = &self.outcome {
            q.outcome = Some(
                text.parse::<Outcome>()
                    .map_err(|reason| Error::InvalidQuery {
                        field: "outcome",
                        reason,
                    })?,
            );
        }
        if let Some(text) = &self.source_ip {
            q.source_ip = Some(IpFilter::parse(text)?);
        }
        if let Some(text) = &self.since {
            if self.from.is_some() {
                return Err(Error::InvalidQuery {
                    field: "since",
                    reason: "is given with `from`: give one start of the time range, `since` (a \
                             duration back from now) or `from` (a time or a date)"
                        .into(),
                });
            }
            let (from, to) = since(parse_duration("since", text)?, now);
            q.from = Some(from);
            q.to = Some(to);
        }
        if let Some(text) = &self.from {
            q.from = Some(parse_time("from", text, TimeBound::Start)?);
        }
        if let Some(text) = &self.to {
            q.to = Some(parse_time("to", text, TimeBound::End)?);
        }
        q.validate()?;
        Ok(q)
    }
}

/// Which events to find.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Query {
    /// The actor.
    pub actor: Option<ActorFilter>,
    /// Action patterns, any of which may match (empty: any action).
    pub actions: Vec<ActionPattern>,
    /// The resource (type and/or id).
    pub resource: Option<ResourceFilter>,
    /// The resource type.
    pub resource_type: Option<String>,
    /// The outcome.
    pub outcome: Option<Outcome>,
    /// The tenant.
    pub tenant: Option<String>,
    /// The source IP address or network.
    pub source_ip: Option<IpFilter>,
    /// The request id.
    pub request_id: Option<String>,
    /// Earliest event time, inclusive.
    pub from: Option<Timestamp>,
    /// Latest event time, exclusive.
    pub to: Option<Timestamp>,
    /// Result order.
    pub order: Order,
    /// Page size (1..=[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]).
    pub limit: usize,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            actor: None,
            actions: Vec::new(),
            resource: None,
            resource_type: None,
            outcome: None,
            tenant: None,
            source_ip: None,
            request_id: None,
            from: None,
            to: None,
            order: Order::NewestFirst,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// One page of results: the matching records ([`Store::query`]), or what
/// the caller made of each ([`Store::query_with`]).
///
/// [`Store::query`]: crate::Store::query
/// [`Store::query_with`]: crate::Store::query_with
#[derive(Clone, Debug, PartialEq)]
pub struct Page<R = Record> {
    /// The matching records, in the query's order.
    pub records: Vec<R>,
    /// Pass as [`Query::cursor`] to get the next page; `None` when there are
    /// no more matches (at the time of the query).
    pub next_cursor: Option<String>,
}

impl Query {
    /// Checks the query's own consistency.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidQuery {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(Error::InvalidQuery {
                field: "limit",
                reason: format!("{} is outside 1..={MAX_LIMIT}", self.limit),
            });
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(Error::InvalidQuery {
                field: "from",
                reason: format!("the time range is empty: from {from} is not before to {to}"),
            });
        }
        if let Some(a) = &self.actor
            && a.id.is_empty()
        {
            return bad("actor", "the actor id is empty");
        }
        if let Some(r) = &self.resource {
            if r.kind.is_none() && r.id.is_none() {
                return bad("resource", "give a resource type, an id, or both");
            }
            if r.id.as_deref() == Some("") || r.kind.as_deref() == Some("") {
                return bad("resource", "the resource type or id is empty");
            }
        }
        for (field, value) in [
            ("resource_type", &self.resource_type),
            ("tenant", &self.tenant),
            ("request_id", &self.request_id),
        ] {
            if value.as_deref() == Some("") {
                return Err(Error::InvalidQuery {
                    field,
                    reason: "empty value".into(),
                });
            }
        }
        Ok(())
    }

    /// Whether a record matches every predicate (not order, limit or
    /// cursor).
    pub fn matches(&self, r: &RecordView<'_>) -> bool {
        if let Some(a) = &self.actor
            && (r.actor_id != a.id || a.kind.as_deref().is_some_and(|k| k != r.actor_type))
        {
            return false;
        }
        if !self.actions.is_empty() && !self.actions.iter().any(|p| p.matches(r.action)) {
            return false;
        }
        if let Some(f) = &self.resource
            && (f.kind.as_deref().is_some_and(|k| k != r.resource_type)
                || f.id.as_deref().is_some_and(|id| r.resource_id != Some(id)))
        {
            return false;
        }
        if self
            .resource_type
            .as_deref()
            .is_some_and(|t| t != r.resource_type)
        {
            return false;
        }
        if self.outcome.is_some_and(|o| o != r.outcome) {
            return false;
        }
        if self.tenant.is_some() && self.tenant.as_deref() != r.tenant {
            return false;
        }
        if let Some(f) = &self.source_ip
            && !r.source_ip.is_some_and(|ip| f.matches(ip))
        {
            return false;
        }
        if self.request_id.is_some() && self.request_id.as_deref() != r.request_id {
            return false;
        }
        let t = r.event_time();
        if self.from.is_some_and(|from| t < from) || self.to.is_some_and(|to| t >= to) {
            return false;
        }
        true
    }

    /// A fingerprint of the predicates and order (not limit or cursor), so
    /// a cursor is only accepted by the query that produced it.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::fmt::Write as _;
        // The text is hashed as it is formatted, not gathered first.
        let mut hash = Fnv1a64::new();
        let _ = write!(
            hash,
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.actor,
            self.actions,
            self.resource,
            self.resource_type,
            self.outcome,
            self.tenant,
            self.source_ip,
            self.request_id,
            self.from,
            self.to,
            self.order
        );
        hash.0
    }
}

/// FNV-1a, 64 bits, over text written to it piece by piece.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Fnv1a64 {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl std::fmt::Write for Fnv1a64 {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.add(s.as_bytes());
        Ok(())
    }
}

/// The position a cursor encodes: results continue strictly after it in
/// the query's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// After this seq (append orders).
    Seq(u64),
    /// After this (event time, seq) (event-time orders).
    Time {
        /// The event time of the last record returned, in nanoseconds.
        time: i64,
        /// Its seq.
        seq: u64,
    },
}

const CURSOR_VERSION: u8 = 1;

impl Cursor {
    /// The cursor after the record `view` in `order`.
    pub(crate) fn after(view: &sealog_format::record::RecordView<'_>, order: Order) -> Cursor {
        if order.by_time() {
            Cursor::Time {
                time: view.event_time().as_nanos(),
                seq: view.seq,
            }
        } else {
            Cursor::Seq(view.seq)
        }
    }

    /// `v1.<order>.<position>.<fingerprint hex>`, the position being a seq
    /// or `<event time in ns>_<seq>`: opaque to clients, readable in logs.
    pub(crate) fn encode(self, query: &Query) -> String {
        let position = match self {
            Cursor::Seq(seq) => seq.to_string(),
            Cursor::Time { time, seq } => format!("{time}_{seq}"),
        };
        format!(
            "v{CURSOR_VERSION}.{}.{position}.{:016x}",
            query.order.code(),
            query.fingerprint()
        )
    }

    pub(crate) fn decode(text: &str, query: &Query) -> Result<Cursor> {
        let bad = |reason: &str| Error::InvalidQuery {
            field: "cursor",
            reason: format!("`{}` {reason}", text.chars().take(80).collect::<String>()),
        };
        let mut parts = text.split('.');
        let (Some(version), Some(order), Some(position), Some(fp), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad("is not a cursor returned by this store"));
        };
        if version != format!("v{CURSOR_VERSION}") {
            return Err(bad("is not a cursor of this version"));
        }
        let not_ours = || bad("is not a cursor returned by this store");
        let cursor = match order {
            "n" | "o" => Cursor::Seq(position.parse().map_err(|_| not_ours())?),
            "tn" | "to" => {
                let (time, seq) = position.split_once('_').ok_or_else(not_ours)?;
                Cursor::Time {
                    time: time.parse().map_err(|_| not_ours())?,
                    seq: seq.parse().map_err(|_| not_ours())?,
                }
            }
            _ => return Err(not_ours()),
        };
        let fingerprint = u64::from_str_radix(fp, 16).map_err(|_| not_ours())?;
        if order != query.order.code() || fingerprint != query.fingerprint() {
            return Err(bad(
                "belongs to a different query (the filters and order must stay the same \
                 between pages)",
            ));
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_wildcards() {
        let p = |s: &str| ActionPattern::new(s).unwrap();
        assert!(p("customer.*").matches("customer.delete"));
        assert!(!p("customer.*").matches("customers.delete"));
        assert!(p("*.export").matches("invoice.export"));
        assert!(!p("*.export").matches("invoice.export_csv"));
        assert!(p("*export*").matches("report.export_csv"));
        assert!(p("*export*").matches("export"));
        assert!(p("a*b*c").matches("axxbyyc"));
        assert!(!p("a*b*c").matches("axxbyy"));
        assert!(p("*").matches(""));
        assert!(p("auth.login").matches("auth.login"));
        assert!(!p("auth.login").matches("auth.login_failed"));
        assert!(ActionPattern::new("").is_err());
        assert!(ActionPattern::new("Customer.*").is_err());
        assert_eq!(p("customer.*").literal_prefix(), "customer.");
    }

    #[test]
    fn typed_filters_parse() {
        assert_eq!(
            ActorFilter::parse("user:alice"),
            ActorFilter {
                kind: Some("user".into()),
                id: "alice".into()
            }
        );
        assert_eq!(ActorFilter::parse("alice").kind, None);
        assert_eq!(ActorFilter::parse("Urn:x").kind, None);
        assert_eq!(
            ResourceFilter::parse("order:456").id.as_deref(),
            Some("456")
        );
        assert_eq!(ResourceFilter::parse("order:").id, None);
        assert_eq!(ResourceFilter::parse("456").kind, None);
    }

    #[test]
    fn cidr_ranges_cover_their_networks() {
        let f = IpFilter::parse("10.0.0.0/8").unwrap();
        assert!(f.matches("10.255.1.2".parse().unwrap()));
        assert!(f.matches("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!f.matches("11.0.0.0".parse().unwrap()));
        assert!(!f.matches("2001:db8::1".parse().unwrap()));
        let f = IpFilter::parse("2001:db8::/32").unwrap();
        assert!(f.matches("2001:db8:ffff::1".parse().unwrap()));
        assert!(!f.matches("2001:db9::1".parse().unwrap()));
        assert!(
            IpFilter::parse("0.0.0.0/0")
                .unwrap()
                .matches("8.8.8.8".parse().unwrap())
        );
        assert!(IpFilter::parse("10.0.0.0/33").is_err());
        assert!(IpFilter::parse("10.0.0/8").is_err());
        assert!(
            IpFilter::parse("::ffff:10.0.0.0/104")
                .unwrap()
                .matches("10.1.1.1".parse().unwrap())
        );
    }

    fn fnv1a64(bytes: &[u8]) -> u64 {
        let mut h = Fnv1a64::new();
        h.add(bytes);
        h.0
    }

    /// Cursors handed out before carry fingerprints of the gathered text:
    /// hashing it as it is formatted gives the same value.
    #[test]
    fn the_fingerprint_is_the_hash_of_the_whole_canonical_text() {
        let queries = [
            Query::default(),
            Query {
                actor: Some(ActorFilter::parse("user:alice")),
                actions: vec![ActionPattern::new("auth.*").unwrap()],
                tenant: Some("acmé".into()),
                from: Some(Timestamp::from_nanos(1_700_000_000_000_000_000)),
                order: Order::LatestTimeFirst,
                ..Query::default()
            },
        ];
        for q in queries {
            let text = format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                q.actor,
                q.actions,
                q.resource,
                q.resource_type,
                q.outcome,
                q.tenant,
                q.source_ip,
                q.request_id,
                q.from,
                q.to,
                q.order
            );
            assert_eq!(q.fingerprint(), fnv1a64(text.as_bytes()));
        }
        // FNV-1a's published 64-bit test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_queries() {
        let q = Query {
            tenant: Some("acme".into()),
            ..Query::default()
        };
        let text = Cursor::Seq(42).encode(&q);
        assert_eq!(Cursor::decode(&text, &q).unwrap(), Cursor::Seq(42));
        let other = Query {
            tenant: Some("evil".into()),
            ..Query::default()
        };
        let err = Cursor::decode(&text, &other).unwrap_err().to_string();
        assert!(err.contains("different query"), "{err}");
        let reversed = Query {
            order: Order::OldestFirst,
            ..q.clone()
        };
        assert!(Cursor::decode(&text, &reversed).is_err());
        assert!(Cursor::decode("garbage", &q).is_err());
        assert!(Cursor::decode("v1.n.x.00", &q).is_err());
        // The limit is not part of the fingerprint: pages may change size.
        let bigger = Query {
            limit: 500,
            ..q.clone()
        };
        assert!(Cursor::decode(&text, &bigger).is_ok());
    }

    #[test]
    fn time_order_cursors_carry_time_and_seq_and_refuse_append_order() {
        let q = Query {
            order: Order::LatestTimeFirst,
            ..Query::default()
        };
        let position = Cursor::Time {
            time: -1_000_000_007,
            seq: 9,
        };
        let text = position.encode(&q);
        assert!(text.starts_with("v1.tn.-1000000007_9."), "{text}");
        assert_eq!(Cursor::decode(&text, &q).unwrap(), position);
        for other in [Order::NewestFirst, Order::EarliestTimeFirst] {
            let other = Query {
                order: other,
                ..Query::default()
            };
            let err = Cursor::decode(&text, &other).unwrap_err().to_string();
            assert!(err.contains("different query"), "{err}");
        }
        let seq_cursor = Cursor::Seq(9).encode(&Query::default());
        assert!(Cursor::decode(&seq_cursor, &q).is_err());
        assert!(Cursor::decode("v1.tn.5.00", &q).is_err());
        assert!(Cursor::decode("v1.tn.x_5.00", &q).is_err());
    }

    #[test]
    fn a_date_alone_starts_a_range_at_its_first_instant_and_ends_it_after_its_last() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(
            parse_time("from", "2026-11-27", TimeBound::Start).unwrap(),
            t("2026-11-27T00:00:00Z")
        );
        assert_eq!(
            parse_time("to", "2026-11-27", TimeBound::End).unwrap(),
            t("2026-11-28T00:00:00Z")
        );
        assert_eq!(
            parse_time("to", "2026-11-27T10:00:00+01:00", TimeBound::End).unwrap(),
            t("2026-11-27T09:00:00Z")
        );
        for bad in ["2026-13-01", "yesterday", "2026-11-27 10:00"] {
            let err = parse_time("from", bad, TimeBound::Start).unwrap_err();
            assert!(
                matches!(err, Error::InvalidQuery { field: "from", .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn since_ends_at_now_and_durations_parse() {
        let now = Timestamp::from_nanos(10_000_000_000_000);
        let (from, to) = since(std::time::Duration::from_secs(3600), now);
        assert_eq!(from.as_nanos(), now.as_nanos() - 3_600_000_000_000);
        assert_eq!(to.as_nanos(), now.as_nanos() + 1);
        assert_eq!(
            parse_duration("since", "2w").unwrap().as_secs(),
            14 * 86_400
        );
        for bad in ["1y", "h", "10", "", "-1h", "99999999999999999999w"] {
            assert!(parse_duration("since", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_bound_since_by_now_and_dates_cover_whole_days() {
        let now = Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        let filters = Filters {
            since: Some("1h".into()),
            ..Filters::default()
        };
        let q = filters.to_query_at(now).unwrap();
        assert_eq!(
            q.from,
            Some(Timestamp::parse_rfc3339("2026-11-27T11:00:00Z").unwrap())
        );
        assert_eq!(q.to.map(|t| t.as_nanos()), Some(now.as_nanos() + 1));
        assert!(filters.ends_now());
        let filters = Filters {
            from: Some("2026-11-27".into()),
            to: Some("2026-11-27".into()),
            ..Filters::default()
        };
        let q = filters.to_query_at(now).unwrap();
        assert_eq!(
            q.from,
            Some(Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap())
        );
        assert_eq!(
            q.to,
            Some(Timestamp::parse_rfc3339("2026-11-28T00:00:00Z").unwrap())
        );
    }

    #[test]
    fn filters_refuse_bad_values_naming_the_field() {
        for (filters, field) in [
            (
                Filters {
                    action: vec!["Customer.*".into()],
                    ..Filters::default()
                },
                "action",
            ),
            (
                Filters {
                    outcome: Some("maybe".into()),
                    ..Filters::default()
                },
                "outcome",
            ),
            (
                Filters {
                    source_ip: Some("10.0.0.0/33".into()),
                    ..Filters::default()
                },
                "source_ip",
            ),
            (
                Filters {
                    since: Some("3y".into()),
                    ..Filters::default()
                },
                "since",
            ),
            (
                Filters {
                    since: Some("1h".into()),
                    from: Some("2026-11-27".into()),
                    ..Filters::default()
                },
                "since",
            ),
            (
                Filters {
                    from: Some("yesterday".into()),
                    ..Filters::default()
                },
                "from",
            ),
            (
                Filters {
                    to: Some("2026-13-01".into()),
                    ..Filters::default()
                },
                "to",
            ),
            (
                Filters {
                    actor: Some(String::new()),
                    ..Filters::default()
                },
                "actor",
            ),
        ] {
            match filters.to_query() {
                Err(Error::InvalidQuery { field: f, .. }) => assert_eq!(f, field, "{filters:?}"),
                other => panic!("{filters:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_filter_field_is_a_named_key_and_no_other_is() {
        for name in Filters::FIELDS {
            let value = if *name == "action" {
                serde_json::json!(["a.b"])
            } else {
                serde_json::json!("x")
            };
            let mut one = serde_json::Map::new();
            one.insert((*name).to_owned(), value);
            assert!(
                serde_json::from_value::<Filters>(one.into()).is_ok(),
                "`{name}` is not a field"
            );
        }
        let err = serde_json::from_value::<Filters>(serde_json::json!({"actr": "alice"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `actr`"), "{err}");
        let every = Filters {
            actor: Some("user:alice".into()),
            action: vec!["customer.*".into(), "auth.login".into()],
            resource: Some("customer:".into()),
            resource_type: Some("customer".into()),
            outcome: Some("denied".into()),
            tenant: Some("acme".into()),
            source_ip: Some("10.0.0.0/8".into()),
            request_id: Some("req-1".into()),
            since: None,
            from: Some("2026-01-01T00:00:00Z".into()),
            to: Some("2026-02-01".into()),
        };
        let q = every.to_query().unwrap();
        assert_eq!(q.actor.unwrap().id, "alice");
        assert_eq!(q.actions.len(), 2);
        assert_eq!(q.resource.unwrap().kind.as_deref(), Some("customer"));
        assert_eq!(q.resource_type.as_deref(), Some("customer"));
        assert_eq!(q.outcome, Some(Outcome::Denied));
        assert_eq!(q.tenant.as_deref(), Some("acme"));
        assert!(q.source_ip.is_some());
        assert_eq!(q.request_id.as_deref(), Some("req-1"));
        assert!(q.from.is_some() && q.to.is_some());
    }

    #[test]
    fn inconsistent_queries_are_refused_naming_the_field() {
        let q = Query {
            limit: 0,
            ..Query::default()
        };
        assert!(matches!(
            q.validate(),
            Err(Error::InvalidQuery { field: "limit", .. })
        ));
        let q = Query {
            from: Some(Timestamp::from_nanos(10)),
            to: Some(Timestamp::from_nanos(10)),
            ..Query::default()
        };
        assert!(matches!(
            q.validate(),
            Err(Error::InvalidQuery { field: "from", .. })
        ));
        let q = Query {
            resource: Some(ResourceFilter::default()),
            ..Query::default()
        };
        assert!(matches!(
            q.validate(),
            Err(Error::InvalidQuery {
                field: "resource",
                ..
            })
        ));
    }
}
