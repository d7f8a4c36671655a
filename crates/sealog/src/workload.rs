//! A synthetic audit workload for benchmarks and load tests.
//!
//! [`Workload`] generates realistic events deterministically from a seed:
//! actors drawn from a skewed (Zipf-like) distribution over a population,
//! a few hundred actions over a few dozen resource types, a large resource
//! space, mostly-successful outcomes, tenants, source addresses, user
//! agents, request ids, and metadata padded so each record has roughly the
//! requested size. Event times advance evenly across a time window.
//!
//! ```
//! use sealog::workload::Workload;
//! let mut w = Workload::new(7);
//! let a = w.event(0);
//! let b = Workload::new(7).event(0);
//! assert_eq!(a, b); // deterministic
//! ```

use std::net::{IpAddr, Ipv4Addr};

use sealog_format::{Actor, Event, Metadata, Outcome, Resource, Timestamp};

const RESOURCE_TYPES: [&str; 40] = [
    "customer",
    "invoice",
    "order",
    "payment",
    "subscription",
    "user",
    "role",
    "permission",
    "api_key",
    "session",
    "report",
    "dashboard",
    "document",
    "folder",
    "project",
    "repository",
    "pipeline",
    "deployment",
    "secret_ref",
    "bucket",
    "database",
    "table",
    "cluster",
    "node",
    "ticket",
    "contract",
    "product",
    "price",
    "coupon",
    "webhook",
    "integration",
    "audit_export",
    "organization",
    "team",
    "invite",
    "device",
    "certificate",
    "domain",
    "mailbox",
    "policy",
];

const VERBS: [&str; 5] = ["read", "create", "update", "delete", "export"];

const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/18.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "curl/8.11.1",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "terraform-provider/5.80.0",
];

/// Parameters of a synthetic workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadShape {
    /// Number of distinct actors (default 10,000).
    pub actors: u64,
    /// Skew of the actor distribution: the `k`-th most active actor acts
    /// with weight `1 / k^skew` (default 1.1).
    pub skew: f64,
    /// Number of distinct resources (default 1,000,000).
    pub resources: u64,
    /// Number of tenants (default 100).
    pub tenants: u64,
    /// Target size of each record in bytes (default 300); metadata pads
    /// events up to it.
    pub event_size: usize,
    /// Start of the event-time window (default 2026-01-01T00:00:00Z).
    pub time_start: Timestamp,
    /// Length of the event-time window in nanoseconds (default 90 days).
    pub time_span: i64,
    /// Events spread over the window (default 100,000,000).
    pub total: u64,
}

impl Default for WorkloadShape {
    fn default() -> Self {
        WorkloadShape {
            actors: 10_000,
            skew: 1.1,
            resources: 1_000_000,
            tenants: 100,
            event_size: 300,
            time_start: Timestamp::from_nanos(1_767_225_600_000_000_000),
            time_span: 90 * 24 * 3600 * 1_000_000_000i64,
            total: 100_000_000,
        }
    }
}

/// A deterministic generator of audit events (see the module docs).
#[derive(Clone, Debug)]
pub struct Workload {
    shape: WorkloadShape,
    seed: u64,
    /// Cumulative weights of the actor ranks, for inverse-CDF sampling.
    actor_cdf: Vec<f64>,
    actions: Vec<(String, usize)>,
}

impl Workload {
    /// The default shape with the given seed.
    pub fn new(seed: u64) -> Workload {
        Workload::with_shape(seed, WorkloadShape::default())
    }

    /// A workload of the given shape.
    pub fn with_shape(seed: u64, shape: WorkloadShape) -> Workload {
        let n = shape.actors.clamp(1, 10_000_000) as usize;
        let mut actor_cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(shape.skew);
            actor_cdf.push(total);
        }
        for w in &mut actor_cdf {
            *w /= total;
        }
        let actions = RESOURCE_TYPES
            .iter()
            .enumerate()
            .flat_map(|(t, ty)| VERBS.iter().map(move |v| (format!("{ty}.{v}"), t)))
            .collect();
        Workload {
            shape,
            seed,
            actor_cdf,
            actions,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &WorkloadShape {
        &self.shape
    }

    /// Every action the workload uses (`customer.read`, ...).
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().map(|(a, _)| a.as_str())
    }

    /// The id of the actor of the given popularity rank (0 = most active).
    pub fn actor_id(rank: u64) -> String {
        format!("u{rank:05}")
    }

    /// The `i`-th event (pure: the same `i` always gives the same event).
    pub fn event(&self, i: u64) -> Event {
        let mut rng = Rng(self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let actor_rank = self.actor_rank(rng.unit());
        let (action, type_index) = self
            .actions
            .get(rng.below(self.actions.len() as u64) as usize)
            .map(|(a, t)| (a.clone(), *t))
            .unwrap_or_else(|| ("customer.read".into(), 0));
        let resource_type = RESOURCE_TYPES
            .get(type_index)
            .copied()
            .unwrap_or("customer");
        let resource_id = rng.below(self.shape.resources.max(1));
        let outcome = match rng.below(100) {
            0..=89 => Outcome::Success,
            90..=96 => Outcome::Failure,
            _ => Outcome::Denied,
        };
        let kind = if actor_rank % 50 == 49 {
            "service"
        } else {
            "user"
        };
        let tenant = (actor_rank * 7 + 3) % self.shape.tenants.max(1);
        let step = self.shape.time_span / self.shape.total.max(1) as i64;
        let time = self.shape.time_start.as_nanos()
            + (i % self.shape.total.max(1)) as i64 * step
            + rng.below(step.max(1) as u64) as i64;
        let ip = Ipv4Addr::new(
            10,
            (actor_rank % 200) as u8,
            rng.below(256) as u8,
            rng.below(254) as u8 + 1,
        );
        let event = Event::new(
            Actor::new(kind, Self::actor_id(actor_rank)),
            action,
            Resource::new(resource_type, format!("{resource_type}-{resource_id}")),
            outcome,
        )
        .with_time(Timestamp::from_nanos(time))
        .with_tenant(format!("tenant-{tenant:03}"))
        .with_source_ip(IpAddr::V4(ip))
        .with_user_agent(
            USER_AGENTS
                .get(rng.below(8) as usize)
                .copied()
                .unwrap_or("curl/8"),
        )
        .with_request_id(format!("{:016x}", rng.next()));
        // Pad with metadata to the target size (fixed overhead measured from
        // the encoding: ~16 bytes of framing and trailer plus fields).
        let base = sealog_format::record::encode(&event, 0, Timestamp::UNIX_EPOCH)
            .map(|b| b.len())
            .unwrap_or(200);
        let mut metadata = Metadata::new();
        metadata.insert(
            "plan".into(),
            ["free", "team", "business", "enterprise"][rng.below(4) as usize].into(),
        );
        let overhead = base + 4 + r#"{"plan":"enterprise","detail":""}"#.len();
        if self.shape.event_size > overhead {
            let detail: String = (0..self.shape.event_size - overhead)
                .map(|k| char::from(b'a' + ((i as usize + k) % 26) as u8))
                .collect();
            metadata.insert("detail".into(), detail.into());
        }
        event.with_metadata(metadata)
    }

    /// Events `from..to`.
    pub fn events(&self, from: u64, to: u64) -> Vec<Event> {
        (from..to).map(|i| self.event(i)).collect()
    }

    /// Events `0..n`, generated on every core: the pool a benchmark makes
    /// before its clock starts.
    pub fn generate(&self, n: u64) -> Vec<Event> {
        let workers = crate::spread::cores() as u64;
        let chunk = n.div_ceil(workers).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|k| {
                    let from = (k * chunk).min(n);
                    let to = ((k + 1) * chunk).min(n);
                    s.spawn(move || self.events(from, to))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    fn actor_rank(&self, u: f64) -> u64 {
        self.actor_cdf.partition_point(|&c| c < u) as u64
    }
}

/// The `p`-th percentile (`p` from 0.0 to 1.0) of `sorted`, ascending
/// values: the value of rank `round((len - 1) * p)`, 0 when there is none.
/// The one definition the benchmarks and load generators report with.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// SplitMix64: small, fast, and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn generated_pools_are_the_events_in_order() {
        let w = Workload::new(3);
        assert_eq!(w.generate(37), w.events(0, 37));
        assert!(w.generate(0).is_empty());
    }

    #[test]
    fn events_are_valid_and_close_to_the_target_size() {
        let w = Workload::new(1);
        let validator = sealog_format::Validator::default();
        for i in 0..500 {
            let mut e = w.event(i);
            validator.validate(&mut e).unwrap();
            let len = sealog_format::record::encode(&e, i, Timestamp::now())
                .unwrap()
                .len();
            assert!((290..=320).contains(&len), "event {i} is {len} bytes");
        }
    }

    #[test]
    fn actors_are_skewed() {
        let w = Workload::new(2);
        let top = (0..10_000)
            .filter(|&i| w.event(i).actor.id == Workload::actor_id(0))
            .count();
        assert!(
            top > 500,
            "the most active actor has {top} of 10,000 events"
        );
        assert_eq!(w.actions().count(), 200);
    }
}
