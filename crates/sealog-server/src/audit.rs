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
//! A flood of refused requests must not become a flood of writes: per
//! source address, the first [`crate::Limits::refusals_per_window`]
//! refusals of each window are recorded one by one, and at most
//! [`ADDRESSES_IN_FULL`] times as many from all addresses together (a
//! client with many addresses, an IPv6 prefix say, would otherwise write
//! 20 events per address and window); the rest are counted and recorded
//! as one `auth.refusals_summarized` event per address when the window
//! ends. The table of addresses is bounded; addresses beyond it share one
//! counter.

use std::collections::HashMap;
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

/// Appends audit events durably (on a blocking thread).
pub async fn append(store: Store, events: Vec<Event>) -> Result<(), sealog::Error> {
    match tokio::task::spawn_blocking(move || store.append_batch(events)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(sealog::Error::Closed),
    }
}

/// A refusal to record.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// `auth.failed` or `auth.denied`.
    pub action: &'static str,
    /// Who was refused.
    pub actor: Actor,
    /// Why, for a person.
    pub reason: String,
    /// Where from.
    pub origin: Origin,
    /// The tenant the request was about, if any.
    pub status: u16,
}

impl Refusal {
    /// The event.
    pub fn to_event(&self) -> Event {
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
}

/// Refusals recorded one by one in a window from all addresses together,
/// in multiples of the per-address allowance: with the default of 20 per
/// address, 1,000 per window.
pub const ADDRESSES_IN_FULL: u32 = 50;

/// A per-address window of refusals.
#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u32,
    suppressed: u64,
    last: Option<Refusal>,
}

/// Decides which refusals are recorded one by one.
#[derive(Debug)]
pub struct RefusalLimiter {
    per_window: u32,
    total_per_window: u32,
    window: Duration,
    max_addresses: usize,
    table: Mutex<Table>,
}

/// The windows of every address, and the one of all of them together.
#[derive(Debug)]
struct Table {
    addresses: HashMap<Option<IpAddr>, Window>,
    started: Instant,
    recorded: u32,
}

impl RefusalLimiter {
    /// A limiter: `per_window` refusals recorded one by one per address and
    /// window, `total_per_window` from all addresses together.
    pub fn new(
        per_window: u32,
        total_per_window: u32,
        window: Duration,
        max_addresses: usize,
    ) -> RefusalLimiter {
        RefusalLimiter {
            per_window,
            total_per_window,
            window,
            max_addresses,
            table: Mutex::new(Table {
                addresses: HashMap::new(),
                started: Instant::now(),
                recorded: 0,
            }),
        }
    }

    /// True if this refusal is to be recorded now; otherwise it is counted
    /// for the address's summary.
    pub fn admit(&self, refusal: &Refusal) -> bool {
        let now = Instant::now();
        let mut guard = self.table.lock();
        let Table {
            addresses: table,
            started,
            recorded,
        } = &mut *guard;
        if now.duration_since(*started) >= self.window {
            *started = now;
            *recorded = 0;
        }
        let mut key = refusal.origin.ip;
        if !table.contains_key(&key) && table.len() >= self.max_addresses {
            // Make room from windows that ended with nothing to report;
            // otherwise count under the shared overflow entry.
            let window = self.window;
            table.retain(|_, w| now.duration_since(w.started) < window || w.suppressed > 0);
            if table.len() >= self.max_addresses {
                key = None;
            }
        }
        let w = table.entry(key).or_insert_with(|| Window {
            started: now,
            recorded: 0,
            suppressed: 0,
            last: None,
        });
        if now.duration_since(w.started) >= self.window && w.suppressed == 0 {
            w.started = now;
            w.recorded = 0;
        }
        if w.recorded < self.per_window && *recorded < self.total_per_window {
            w.recorded += 1;
            *recorded += 1;
            true
        } else {
            w.suppressed += 1;
            w.last = Some(refusal.clone());
            false
        }
    }

    /// Summary events of windows that have ended with suppressed refusals;
    /// with `all`, of every window (at shutdown).
    pub fn drain(&self, all: bool) -> Vec<Event> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut guard = self.table.lock();
        let window = self.window;
        guard.addresses.retain(|ip, w| {
            let ended = all || now.duration_since(w.started) >= window;
            if !ended {
                return true;
            }
            if w.suppressed > 0
                && let Some(last) = &w.last
            {
                let mut metadata = Metadata::new();
                metadata.insert("count".into(), w.suppressed.into());
                metadata.insert(
                    "window_secs".into(),
                    now.duration_since(w.started).as_secs().into(),
                );
                metadata.insert("last_action".into(), last.action.into());
                metadata.insert("last_reason".into(), clean(&last.reason, 512).into());
                if ip.is_none() {
                    metadata.insert("addresses".into(), "many (table full)".into());
                }
                let origin = Origin {
                    ip: *ip,
                    user_agent: last.origin.user_agent.clone(),
                    endpoint: last.origin.endpoint.clone(),
                };
                out.push(
                    event(
                        "auth.refusals_summarized",
                        last.actor.clone(),
                        Resource::kind("endpoint"),
                        Outcome::Failure,
                        &origin,
                        metadata,
                    )
                    .with_reason(format!(
                        "{} more refused requests from this address were not recorded one by \
                         one (more than {} per {} s from one address, or {} from all)",
                        w.suppressed,
                        self.per_window,
                        window.as_secs(),
                        self.total_per_window
                    )),
                );
            }
            false
        });
        out
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

    #[test]
    fn client_text_is_cleaned() {
        assert_eq!(clean("a\u{0}b\nc", 10), "abc");
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean("", 5), "-");
        let mut e = refusal("::1").to_event();
        assert!(sealog::format::validate::validate(&mut e).is_ok());
    }
}
