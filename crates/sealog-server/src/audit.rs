//! The server's own audit trail.
//!
//! Every refused request (`auth.failed` for 401, `auth.denied` for 403),
//! every read of the log (`log.query`, `log.read`, `log.export`,
//! `log.tail`), every proof, receipt and checkpoint request (`log.proof`,
//! `log.checkpoint`) and every verification (`log.verify`) is appended to
//! the log itself, durably, before the response is sent. The actor is the
//! caller: `{"type": "token", "id": NAME}` for a token, `{"type": "local",
//! "id": "local"}` for an unauthenticated server on loopback, and for a
//! failed authentication the token's name if the secret belonged to a
//! revoked token, else `{"type": "anonymous", "id": "anonymous"}`.
//!
//! A flood of refused requests must not become a flood of writes, and
//! must not hide who was refused. Each refusal counts against the budget
//! of one *subject*: a token (refused for its scope or tenant, or revoked)
//! has its own, wherever it calls from; a caller without a valid token is
//! known only by its source address, and each address has one. The first
//! [`crate::Limits::refusals_per_window`] refusals of a subject's window are
//! recorded one by one, and at most `ADDRESSES_IN_FULL` (50) times as many
//! from all addresses together (a client with many addresses, an IPv6
//! prefix say, would otherwise write 20 events per address and window) and,
//! separately, as many from all tokens together, so anonymous refusals can
//! never use up the allowance of a token's. The rest are counted and
//! recorded as one `auth.refusals_summarized` event per subject when its
//! window ends: it names that subject alone (the token, or `anonymous` and
//! the address) with its counts by reason. The table of anonymous addresses
//! is bounded (`MAX_ADDRESSES`, 4,096); addresses beyond it share one anonymous
//! counter. Tokens are not bounded here: their names come from the tokens
//! file, which callers cannot add to.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sealog::format::{Actor, Event, Metadata, Resource};
use sealog::{Outcome, Store};
use serde_json::Value;

use crate::tokens::Scope;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `token` or `local`.
    pub kind: &'static str,
    /// The token's name (`local` without tokens).
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Its tenant binding.
    pub tenant: Option<String>,
}

impl Principal {
    /// The principal of an unauthenticated server on loopback: everything.
    pub fn local() -> Principal {
        Principal {
            kind: "local",
            name: "local".into(),
            scopes: vec![Scope::Ingest, Scope::Query, Scope::Admin],
            tenant: None,
        }
    }

    /// The actor of its audit events.
    pub fn actor(&self) -> Actor {
        Actor::new(self.kind, clean(&self.name, 256))
    }

    /// Whether it has `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Where a request came from.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The peer's address.
    pub ip: Option<IpAddr>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
    /// `GET /v1/events` and the like.
    pub endpoint: String,
}

/// Removes control characters and cuts to `max` bytes (on a character
/// boundary), so text a client controls always passes validation.
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// Builds an audit event.
pub fn event(
    action: &str,
    actor: Actor,
    resource: Resource,
    outcome: Outcome,
    origin: &Origin,
    metadata: Metadata,
) -> Event {
    let mut e = Event::new(actor, action, resource, outcome);
    if let Some(ip) = origin.ip {
        e = e.with_source_ip(ip);
    }
    if let Some(ua) = &origin.user_agent {
        e = e.with_user_agent(clean(ua, 512));
    }
    let mut metadata = metadata;
    metadata.insert("endpoint".into(), clean(&origin.endpoint, 256).into());
    e.with_metadata(metadata)
}

/// The query parameters of a request as metadata (values cut to 256 bytes,
/// at most 32 parameters), so the event says who asked what.
pub fn params_metadata(params: &[(String, String)]) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in params.iter().take(32) {
        let key = clean(k, 64);
        let value = Value::String(clean(v, 256));
        match map.get_mut(&key) {
            Some(Value::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(key, value);
            }
        }
    }
    Value::Object(map)
}

/// Appends audit events durably: queued for the committer now, and
/// resolved once their commit group is synced. No thread waits for them,
/// so the records of concurrent requests share commit groups (and their
/// `fdatasync`) with each other and with ingest.
pub(crate) async fn append(store: Store, events: Vec<Event>) -> Result<(), sealog::Error> {
    store.append_batch_async(events).await.map(|_| ())
}

/// A refusal to record.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// `auth.failed` or `auth.denied`.
    pub(crate) action: &'static str,
    /// Who was refused.
    pub(crate) actor: Actor,
    /// Why, for a person.
    pub(crate) reason: String,
    /// Why, as a stable word counted in summaries: the response's error
    /// code (`invalid_token`, `insufficient_scope`, `tenant_forbidden`,
    /// ...), or `other_tenant_record` for the 404 that hides another
    /// tenant's record.
    pub(crate) code: &'static str,
    /// Where from.
    pub(crate) origin: Origin,
    /// The HTTP status of the refusal.
    pub(crate) status: u16,
}

impl Refusal {
    /// The event.
    pub(crate) fn to_event(&self) -> Event {
        let mut metadata = Metadata::new();
        metadata.insert("status".into(), self.status.into());
        let outcome = if self.action == "auth.denied" {
            Outcome::Denied
        } else {
            Outcome::Failure
        };
        event(
            self.action,
            self.actor.clone(),
            Resource::new("endpoint", clean(&self.origin.endpoint, 256)),
            outcome,
            &self.origin,
            metadata,
        )
        .with_reason(clean(&self.reason, 2048))
    }

    /// Whose budget the refusal counts against: a named principal (a token,
    /// valid or revoked) has its own wherever it calls from; an anonymous
    /// caller is known only by its address.
    fn subject(&self) -> Subject {
        if self.actor.kind == "anonymous" {
            Subject::Anonymous(self.origin.ip)
        } else {
            Subject::Named {
                kind: self.actor.kind.clone(),
                name: self.actor.id.clone(),
            }
        }
    }
}

/// Refusals recorded one by one in a window from all addresses together
/// (and, separately, from all tokens together), in multiples of the
/// per-principal allowance: with the default of 20, 1,000 per window.
pub const ADDRESSES_IN_FULL: u32 = 50;

/// The addresses beyond which anonymous refusals share one counter.
pub(crate) const MAX_ADDRESSES: usize = 4096;

/// The distinct source addresses a token's summary lists.
const ADDRESSES_LISTED: usize = 16;

/// Who a refusal's budget and summary belong to. Summaries never mix two
/// subjects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    /// A caller that proved who it is (or whose revoked token named it):
    /// its own budget, whatever address it calls from.
    Named { kind: String, name: String },
    /// A caller without a valid token, per source address (`None`: the
    /// shared counter of addresses beyond the table, or no address).
    Anonymous(Option<IpAddr>),
}

/// One subject's window of refusals.
#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u64,
    suppressed: u64,
    /// Suppressed refusals by [`Refusal::code`].
    by_reason: BTreeMap<&'static str, u64>,
    /// Distinct source addresses of the suppressed refusals (named
    /// subjects only; at most [`ADDRESSES_LISTED`]), and the number of
    /// suppressed refusals from addresses beyond the list.
    addresses: Vec<IpAddr>,
    from_unlisted_addresses: u64,
    last: Option<Refusal>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            recorded: 0,
            suppressed: 0,
            by_reason: BTreeMap::new(),
            addresses: Vec::new(),
            from_unlisted_addresses: 0,
            last: None,
        }
    }
}

/// One class's window of refusals from all its subjects together.
#[derive(Debug)]
struct Pool {
    started: Instant,
    recorded: u32,
}

impl Pool {
    fn take(&mut self, now: Instant, window: Duration, cap: u32) -> bool {
        if now.duration_since(self.started) >= window {
            self.started = now;
            self.recorded = 0;
        }
        if self.recorded < cap {
            self.recorded += 1;
            true
        } else {
            false
        }
    }
}

/// Decides which refusals are recorded one by one.
#[derive(Debug)]
pub(crate) struct RefusalLimiter {
    per_window: u32,
    total_per_window: u32,
    window: Duration,
    max_addresses: usize,
    table: Mutex<Table>,
}

/// The windows of every subject, and of each class together.
#[derive(Debug)]
struct Table {
    subjects: HashMap<Subject, Window>,
    /// Anonymous subjects in `subjects` (bounded by `max_addresses`).
    anonymous: usize,
    anonymous_pool: Pool,
    named_pool: Pool,
}

impl RefusalLimiter {
    /// A limiter: `per_window` refusals recorded one by one per subject
    /// (token, or anonymous address) and window, `total_per_window` from
    /// all anonymous addresses together and as many from all tokens
    /// together; at most `max_addresses` anonymous addresses have their own
    /// counter.
    pub(crate) fn new(
        per_window: u32,
        total_per_window: u32,
        window: Duration,
        max_addresses: usize,
    ) -> RefusalLimiter {
        let now = Instant::now();
        RefusalLimiter {
            per_window,
            total_per_window,
            window,
            max_addresses,
            table: Mutex::new(Table {
                subjects: HashMap::new(),
                anonymous: 0,
                anonymous_pool: Pool {
                    started: now,
                    recorded: 0,
                },
                named_pool: Pool {
                    started: now,
                    recorded: 0,
                },
            }),
        }
    }

    /// True if this refusal is to be recorded now; otherwise it is counted
    /// for its subject's summary.
    pub(crate) fn admit(&self, refusal: &Refusal) -> bool {
        let now = Instant::now();
        let window = self.window;
        let mut guard = self.table.lock();
        let table = &mut *guard;
        let mut subject = refusal.subject();
        if matches!(subject, Subject::Anonymous(Some(_)))
            && !table.subjects.contains_key(&subject)
            && table.anonymous >= self.max_addresses
        {
            // Make room from windows that ended with nothing to report;
            // otherwise count under the shared overflow entry.
            table
                .subjects
                .retain(|_, w| now.duration_since(w.started) < window || w.suppressed > 0);
            table.anonymous = table
                .subjects
                .keys()
                .filter(|s| matches!(s, Subject::Anonymous(_)))
                .count();
            if table.anonymous >= self.max_addresses {
                subject = Subject::Anonymous(None);
            }
        }
        let named = matches!(subject, Subject::Named { .. });
        if !named && !table.subjects.contains_key(&subject) {
            table.anonymous += 1;
        }
        let w = table
            .subjects
            .entry(subject)
            .or_insert_with(|| Window::new(now));
        if now.duration_since(w.started) >= window && w.suppressed == 0 {
            *w = Window::new(now);
        }
        let pool = if named {
            &mut table.named_pool
        } else {
            &mut table.anonymous_pool
        };
        if w.recorded < u64::from(self.per_window) && pool.take(now, window, self.total_per_window)
        {
            w.recorded += 1;
            return true;
        }
        w.suppressed += 1;
        *w.by_reason.entry(refusal.code).or_insert(0) += 1;
        if named
            && let Some(ip) = refusal.origin.ip
            && !w.addresses.contains(&ip)
        {
            if w.addresses.len() < ADDRESSES_LISTED {
                w.addresses.push(ip);
            } else {
                w.from_unlisted_addresses += 1;
            }
        }
        w.last = Some(refusal.clone());
        false
    }

    /// Summary events of windows that have ended with suppressed refusals,
    /// one per subject; with `all`, of every window (at shutdown).
    pub(crate) fn drain(&self, all: bool) -> Vec<Event> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut guard = self.table.lock();
        let table = &mut *guard;
        let window = self.window;
        table.subjects.retain(|subject, w| {
            let ended = all || now.duration_since(w.started) >= window;
            if !ended {
                return true;
            }
            if w.suppressed > 0
                && let Some(last) = &w.last
            {
                out.push(self.summary(subject, w, last, now));
            }
            false
        });
        table.anonymous = table
            .subjects
            .keys()
            .filter(|s| matches!(s, Subject::Anonymous(_)))
            .count();
        out
    }

    /// The `auth.refusals_summarized` event of one subject's window.
    fn summary(&self, subject: &Subject, w: &Window, last: &Refusal, now: Instant) -> Event {
        let mut metadata = Metadata::new();
        metadata.insert("count".into(), w.suppressed.into());
        metadata.insert("recorded".into(), w.recorded.into());
        // A list, not an object keyed by code: codes such as
        // `invalid_token` would trip the secret guard as metadata keys.
        let by_reason: Vec<Value> = w
            .by_reason
            .iter()
            .map(|(code, n)| serde_json::json!({"reason": code, "count": n}))
            .collect();
        metadata.insert("by_reason".into(), Value::Array(by_reason));
        metadata.insert(
            "window_secs".into(),
            now.duration_since(w.started).as_secs().into(),
        );
        metadata.insert("last_action".into(), last.action.into());
        metadata.insert("last_reason".into(), clean(&last.reason, 512).into());
        let reasons = w
            .by_reason
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (actor, ip, who, limit) = match subject {
            Subject::Named { kind, name } => {
                let listed: Vec<Value> = w
                    .addresses
                    .iter()
                    .map(|ip| Value::String(ip.to_string()))
                    .collect();
                metadata.insert("addresses".into(), Value::Array(listed));
                if w.from_unlisted_addresses > 0 {
                    metadata.insert(
                        "from_unlisted_addresses".into(),
                        w.from_unlisted_addresses.into(),
                    );
                }
                let ip = match w.addresses.as_slice() {
                    [one] if w.from_unlisted_addresses == 0 => Some(*one),
                    _ => None,
                };
                (
                    Actor::new(kind.clone(), clean(name, 256)),
                    ip,
                    format!("of {kind} `{}`", clean(name, 256)),
                    format!(
                        "more than {} per {} s for one {kind}, or {} for all of them",
                        self.per_window,
                        self.window.as_secs(),
                        self.total_per_window
                    ),
                )
            }
            Subject::Anonymous(ip) => {
                if ip.is_none() {
                    metadata.insert("addresses".into(), "many (table full)".into());
                }
                (
                    Actor::new("anonymous", "anonymous"),
                    *ip,
                    match ip {
                        Some(_) => "without a valid token from this address".to_owned(),
                        None => "without a valid token from addresses beyond the table".to_owned(),
                    },
                    format!(
                        "more than {} per {} s from one address, or {} from all",
                        self.per_window,
                        self.window.as_secs(),
                        self.total_per_window
                    ),
                )
            }
        };
        let origin = Origin {
            ip,
            user_agent: last.origin.user_agent.clone(),
            endpoint: last.origin.endpoint.clone(),
        };
        event(
            "auth.refusals_summarized",
            actor,
            Resource::kind("endpoint"),
            Outcome::Failure,
            &origin,
            metadata,
        )
        .with_reason(clean(
            &format!(
                "{} more refused requests {who} were not recorded one by one ({limit}): \
                 {reasons}",
                w.suppressed
            ),
            2048,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(ip: &str) -> Refusal {
        Refusal {
            action: "auth.failed",
            actor: Actor::new("anonymous", "anonymous"),
            reason: "no token".into(),
            code: "missing_token",
            origin: Origin {
                ip: ip.parse().ok(),
                user_agent: Some("t\u{7}est".into()),
                endpoint: "GET /v1/events".into(),
            },
            status: 401,
        }
    }

    #[test]
    fn a_flood_is_summarized_per_address() {
        let limiter = RefusalLimiter::new(3, 100, Duration::from_secs(3600), 2);
        let admitted = (0..10)
            .filter(|_| limiter.admit(&refusal("10.0.0.1")))
            .count();
        assert_eq!(admitted, 3);
        assert!(limiter.admit(&refusal("10.0.0.2")));
        // The table is full: a third address shares the overflow entry.
        assert!(limiter.admit(&refusal("10.0.0.3")));
        let events = limiter.drain(true);
        assert_eq!(events.len(), 1);
        let m = events[0].metadata.as_ref().map(|m| m["count"].clone());
        assert_eq!(m, Some(7.into()));
        let mut e = events[0].clone();
        assert!(sealog::format::validate::validate(&mut e).is_ok());
    }

    #[test]
    fn a_flood_from_many_addresses_is_summarized_too() {
        let limiter = RefusalLimiter::new(3, 10, Duration::from_secs(3600), 100);
        let mut admitted = 0u64;
        for i in 0..50 {
            for _ in 0..5 {
                if limiter.admit(&refusal(&format!("10.0.0.{i}"))) {
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 10, "at most 10 from all addresses together");
        let events = limiter.drain(true);
        // Every address still has its own summary, and every refusal is
        // either recorded or counted.
        assert_eq!(events.len(), 50);
        let counted: u64 = events
            .iter()
            .map(|e| e.metadata.as_ref().unwrap()["count"].as_u64().unwrap())
            .sum();
        assert_eq!(admitted + counted, 250);
    }

    fn denial(token: &str, ip: &str, code: &'static str) -> Refusal {
        Refusal {
            action: "auth.denied",
            actor: Actor::new("token", token),
            reason: format!("token `{token}` is bound to tenant `acme`"),
            code,
            origin: Origin {
                ip: ip.parse().ok(),
                user_agent: None,
                endpoint: "GET /v1/events".into(),
            },
            status: 403,
        }
    }

    fn meta(e: &Event) -> &Metadata {
        e.metadata.as_ref().unwrap()
    }

    #[test]
    fn anonymous_refusals_cannot_use_up_a_tokens_budget_from_the_same_address() {
        let limiter = RefusalLimiter::new(20, 1000, Duration::from_secs(3600), 16);
        for _ in 0..20 {
            assert!(limiter.admit(&refusal("10.0.0.1")));
        }
        // The address's anonymous budget is spent; the insider's token,
        // calling from the same address, still has all of its own.
        for i in 0..6 {
            let code = if i % 2 == 0 {
                "tenant_forbidden"
            } else {
                "other_tenant_record"
            };
            assert!(
                limiter.admit(&denial("acme-reader", "10.0.0.1", code)),
                "attempt {i}"
            );
        }
        assert!(!limiter.admit(&refusal("10.0.0.1")));
        let events = limiter.drain(true);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor.kind, "anonymous");
    }

    #[test]
    fn two_tokens_behind_one_address_have_their_own_budgets_and_summaries() {
        let limiter = RefusalLimiter::new(3, 1000, Duration::from_secs(3600), 16);
        for _ in 0..50 {
            limiter.admit(&refusal("10.0.0.9"));
        }
        let a = (0..5)
            .filter(|_| limiter.admit(&denial("alice", "10.0.0.9", "tenant_forbidden")))
            .count();
        let b = (0..4)
            .filter(|_| limiter.admit(&denial("bob", "10.0.0.9", "insufficient_scope")))
            .count();
        assert_eq!((a, b), (3, 3));
        let events = limiter.drain(true);
        assert_eq!(events.len(), 3, "one summary per subject: {events:?}");
        let of = |kind: &str, id: &str| {
            events
                .iter()
                .find(|e| e.actor.kind == kind && e.actor.id == id)
                .unwrap_or_else(|| panic!("no summary for {kind}:{id}"))
        };
        let alice = of("token", "alice");
        assert_eq!(meta(alice)["count"], 2);
        assert_eq!(meta(alice)["recorded"], 3);
        assert_eq!(
            meta(alice)["by_reason"],
            serde_json::json!([{"reason": "tenant_forbidden", "count": 2}])
        );
        assert_eq!(meta(alice)["addresses"], serde_json::json!(["10.0.0.9"]));
        assert!(
            alice
                .reason
                .as_deref()
                .unwrap()
                .contains("of token `alice`")
        );
        let bob = of("token", "bob");
        assert_eq!(meta(bob)["count"], 1);
        assert_eq!(
            meta(bob)["by_reason"],
            serde_json::json!([{"reason": "insufficient_scope", "count": 1}])
        );
        let anonymous = of("anonymous", "anonymous");
        assert_eq!(meta(anonymous)["count"], 47);
        assert_eq!(
            meta(anonymous)["by_reason"],
            serde_json::json!([{"reason": "missing_token", "count": 47}])
        );
        for e in &events {
            let mut e = e.clone();
            assert!(sealog::format::validate::validate(&mut e).is_ok());
        }
    }

    #[test]
    fn a_summary_names_one_principal_whatever_came_last() {
        let limiter = RefusalLimiter::new(1, 1000, Duration::from_secs(3600), 16);
        limiter.admit(&denial("mallory", "10.0.0.5", "tenant_forbidden"));
        limiter.admit(&denial("mallory", "10.0.0.5", "tenant_forbidden"));
        limiter.admit(&denial("mallory", "10.0.0.6", "other_tenant_record"));
        // Anonymous refusals after the token's do not take over its summary.
        for _ in 0..5 {
            limiter.admit(&refusal("10.0.0.5"));
        }
        let events = limiter.drain(true);
        let mallory: Vec<_> = events.iter().filter(|e| e.actor.id == "mallory").collect();
        assert_eq!(mallory.len(), 1);
        let m = meta(mallory[0]);
        assert_eq!(m["count"], 2);
        assert_eq!(
            m["by_reason"],
            serde_json::json!([
                {"reason": "other_tenant_record", "count": 1},
                {"reason": "tenant_forbidden", "count": 1}
            ])
        );
        assert_eq!(m["addresses"], serde_json::json!(["10.0.0.5", "10.0.0.6"]));
        assert!(mallory[0].source.as_ref().and_then(|s| s.ip).is_none());
        let anonymous: Vec<_> = events
            .iter()
            .filter(|e| e.actor.kind == "anonymous")
            .collect();
        assert_eq!(anonymous.len(), 1);
        assert_eq!(meta(anonymous[0])["count"], 4);
        assert_eq!(
            anonymous[0].source.as_ref().and_then(|s| s.ip),
            Some("10.0.0.5".parse().unwrap())
        );
    }

    #[test]
    fn a_flood_from_many_addresses_is_capped_without_hiding_a_token() {
        let limiter = RefusalLimiter::new(20, 1000, Duration::from_secs(3600), 4096);
        let mut admitted = 0u64;
        for i in 0..5000u32 {
            let ip = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i));
            let mut r = refusal("::1");
            r.origin.ip = Some(IpAddr::V6(ip));
            if limiter.admit(&r) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 1000, "the cap across addresses holds");
        // The anonymous flood has used its whole allowance; a token's
        // refusals are still recorded one by one.
        assert!(limiter.admit(&denial("insider", "10.0.0.1", "tenant_forbidden")));
        let events = limiter.drain(true);
        // One summary per address in the table, one for the overflow.
        assert_eq!(events.len(), 4096 - 1000 + 1);
        assert!(events.iter().all(|e| e.actor.kind == "anonymous"));
        let counted: u64 = events
            .iter()
            .map(|e| meta(e)["count"].as_u64().unwrap())
            .sum();
        assert_eq!(admitted + counted, 5000);
    }

    #[test]
    fn client_text_is_cleaned() {
        assert_eq!(clean("a\u{0}b\nc", 10), "abc");
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean("", 5), "-");
        let mut e = refusal("::1").to_event();
        assert!(sealog::format::validate::validate(&mut e).is_ok());
    }
}
