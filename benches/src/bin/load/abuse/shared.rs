//! What the tasks of an abuse run share: the current phase, the count of
//! open abusive connections, outcome tallies, per-phase latency samples,
//! and small helpers (locking, microseconds, the failure message).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sealog::workload::percentile;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Failure;

pub(super) const PHASES: [&str; 4] = ["baseline", "flood", "over_limit", "after"];
pub(super) const DONE: u8 = 4;

pub(super) fn failed(message: String) -> Failure {
    Failure::failed(
        message,
        "check that `sealog serve` runs at that URL, and --token if it has tokens",
    )
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Counts of outcomes, by label ("401 invalid_token", "closed", ...).
#[derive(Default)]
pub(super) struct Tally(pub(super) Mutex<BTreeMap<String, u64>>);

impl Tally {
    pub(super) fn add(&self, label: impl Into<String>) {
        *lock(&self.0).entry(label.into()).or_insert(0) += 1;
    }

    pub(super) fn total(&self) -> u64 {
        lock(&self.0).values().sum()
    }

    pub(super) fn json(&self) -> Value {
        json!(*lock(&self.0))
    }
}

/// What the run shares between its tasks.
pub(super) struct Shared {
    pub(super) addr: SocketAddr,
    pub(super) host: String,
    pub(super) token: Option<String>,
    pub(super) phase: AtomicU8,
    /// Abusive connections open now (held, slow, flooding), client side.
    pub(super) open: AtomicI64,
    /// Connection attempts in progress (a burst of thousands of SYNs
    /// would only overflow the server's accept queue).
    pub(super) connecting: Semaphore,
}

impl Shared {
    pub(super) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    pub(super) fn auth_header(&self) -> String {
        match &self.token {
            Some(t) => format!("Authorization: Bearer {t}\r\n"),
            None => String::new(),
        }
    }
}

/// Counts an open connection for as long as it lives.
pub(super) struct OpenGuard<'a>(&'a AtomicI64);

impl<'a> OpenGuard<'a> {
    pub(super) fn new(open: &'a AtomicI64) -> OpenGuard<'a> {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Latency samples per phase, in microseconds.
#[derive(Default)]
pub(super) struct PhaseSamples {
    ok: [Vec<u64>; 4],
    errors: [u64; 4],
}

impl PhaseSamples {
    pub(super) fn push(&mut self, phase: u8, us: u64) {
        if let Some(v) = self.ok.get_mut(usize::from(phase)) {
            v.push(us);
        }
    }

    pub(super) fn error(&mut self, phase: u8) {
        if let Some(e) = self.errors.get_mut(usize::from(phase)) {
            *e += 1;
        }
    }

    pub(super) fn merge(&mut self, other: PhaseSamples) {
        for (a, b) in self.ok.iter_mut().zip(other.ok) {
            a.extend(b);
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
    }

    pub(super) fn json(&mut self) -> Value {
        let mut out = serde_json::Map::new();
        for ((name, v), errors) in PHASES.iter().zip(self.ok.iter_mut()).zip(self.errors) {
            v.sort_unstable();
            let ms = |us: u64| us as f64 / 1000.0;
            out.insert(
                (*name).to_owned(),
                json!({
                    "n": v.len(),
                    "errors": errors,
                    "p50_ms": ms(percentile(v, 0.50)),
                    "p99_ms": ms(percentile(v, 0.99)),
                    "max_ms": ms(v.last().copied().unwrap_or(0)),
                }),
            );
        }
        Value::Object(out)
    }
}
