//! Counters and histograms of the server, and the Prometheus text format.
//!
//! A small hand-written encoder rather than `metrics` +
//! `metrics-exporter-prometheus`: the exporter brings its own HTTP stack,
//! a quantile library and a registry for a handful of series whose names
//! and buckets are fixed here; the text format (version 0.0.4) is simple
//! and stable. The engine's own counters (syncs and their latency, commit
//! groups, segments) come from [`sealog::Store::stats`] at scrape time.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 13] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    10_000_000,
];
/// Upper bounds of batch size buckets, in events.
const BATCH_BUCKETS: [u64; 7] = [1, 10, 100, 500, 1_000, 5_000, 10_000];

/// A histogram with fixed bounds (plus +Inf).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        match self.counts.get(i) {
            Some(c) => c.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, scale: f64) {
        let mut cumulative = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                *bound as f64 * scale
            );
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum.load(Ordering::Relaxed) as f64 * scale
        );
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// The endpoints whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/events`.
    Ingest,
    /// `GET /v1/events` (a page).
    Query,
    /// `GET /v1/events` as NDJSON.
    Export,
    /// `GET /v1/events/{seq}`.
    Get,
    /// Proofs, receipts and checkpoints.
    Proof,
    /// `POST /v1/verify`.
    Verify,
}

impl Endpoint {
    const ALL: [Endpoint; 6] = [
        Endpoint::Ingest,
        Endpoint::Query,
        Endpoint::Export,
        Endpoint::Get,
        Endpoint::Proof,
        Endpoint::Verify,
    ];

    fn label(self) -> &'static str {
        match self {
            Endpoint::Ingest => "ingest",
            Endpoint::Query => "query",
            Endpoint::Export => "export",
            Endpoint::Get => "get",
            Endpoint::Proof => "proof",
            Endpoint::Verify => "verify",
        }
    }
}

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Successful ingest requests.
    pub ingest_requests: AtomicU64,
    /// Events acknowledged.
    pub ingest_events: AtomicU64,
    /// Request body bytes of acknowledged batches.
    pub ingest_bytes: AtomicU64,
    /// Events per acknowledged batch.
    pub batch_events: Histogram<7>,
    latency: [Histogram<13>; 6],
    /// 401 responses.
    pub auth_failures: AtomicU64,
    /// 403 responses.
    pub auth_denials: AtomicU64,
    /// 503 responses.
    pub unavailable: AtomicU64,
    /// 507 responses.
    pub storage_full: AtomicU64,
    /// Other 4xx responses.
    pub client_errors: AtomicU64,
    /// Replayed idempotent batches.
    pub idempotent_replays: AtomicU64,
    /// Refusals not recorded one by one (counted in summaries).
    pub refusals_suppressed: AtomicU64,
    /// Open connections.
    pub connections: AtomicU64,
    /// Open tail streams.
    pub tail_streams: AtomicU64,
    /// Pages of `GET /v1/events` answered from memory on the request's
    /// thread ([`sealog::Store::query_in_memory_with`]).
    pub query_pages_in_memory: AtomicU64,
    /// Pages of `GET /v1/events` searched on a blocking thread.
    pub query_pages_searched: AtomicU64,
    /// Counts (`count=true`) answered from memory on the request's thread
    /// ([`sealog::Store::count_in_memory`]).
    pub counts_in_memory: AtomicU64,
    /// Counts made on a blocking thread.
    pub counts_searched: AtomicU64,
    /// Background archiving, when the server archives.
    pub archiving: std::sync::OnceLock<std::sync::Arc<crate::archiving::Archiving>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ingest_requests: AtomicU64::new(0),
            ingest_events: AtomicU64::new(0),
            ingest_bytes: AtomicU64::new(0),
            batch_events: Histogram::new(&BATCH_BUCKETS),
            latency: std::array::from_fn(|_| Histogram::new(&LATENCY_BUCKETS_US)),
            auth_failures: AtomicU64::new(0),
            auth_denials: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            storage_full: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            idempotent_replays: AtomicU64::new(0),
            refusals_suppressed: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            tail_streams: AtomicU64::new(0),
            query_pages_in_memory: AtomicU64::new(0),
            query_pages_searched: AtomicU64::new(0),
            counts_in_memory: AtomicU64::new(0),
            counts_searched: AtomicU64::new(0),
            archiving: std::sync::OnceLock::new(),
        }
    }
}

/// Adds to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// Records the latency of a request to `endpoint`.
    pub fn observe(&self, endpoint: Endpoint, took: Duration) {
        let i = Endpoint::ALL
            .iter()
            .position(|&e| e == endpoint)
            .unwrap_or(0);
        if let Some(h) = self.latency.get(i) {
            h.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }

    /// Counts a response by its status.
    pub fn count_status(&self, status: u16) {
        match status {
            401 => add(&self.auth_failures, 1),
            403 => add(&self.auth_denials, 1),
            503 => add(&self.unavailable, 1),
            507 => add(&self.storage_full, 1),
            400..=499 => add(&self.client_errors, 1),
            _ => {}
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, stats: Option<&sealog::Stats>, data_dir: &Path, ready: bool) -> String {
        let mut out = String::with_capacity(8 << 10);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "sealog_ingest_requests_total",
            "Acknowledged ingest requests (batches).",
            get(&self.ingest_requests),
        );
        counter(
            &mut out,
            "sealog_ingest_events_total",
            "Events acknowledged (durable) through the HTTP API.",
            get(&self.ingest_events),
        );
        counter(
            &mut out,
            "sealog_ingest_bytes_total",
            "Request body bytes of acknowledged batches.",
            get(&self.ingest_bytes),
        );
        let _ = writeln!(
            out,
            "# HELP sealog_ingest_batch_events Events per acknowledged batch.\n# TYPE \
             sealog_ingest_batch_events histogram"
        );
        self.batch_events
            .write(&mut out, "sealog_ingest_batch_events", "", 1.0);
        let _ = writeln!(
            out,
            "# HELP sealog_http_request_duration_seconds Time to answer a request, by \
             endpoint.\n# TYPE sealog_http_request_duration_seconds histogram"
        );
        for (e, h) in Endpoint::ALL.iter().zip(&self.latency) {
            h.write(
                &mut out,
                "sealog_http_request_duration_seconds",
                &format!("endpoint=\"{}\"", e.label()),
                1e-6,
            );
        }
        counter(
            &mut out,
            "sealog_auth_failures_total",
            "Requests refused with 401 (missing, malformed, unknown or revoked token).",
            get(&self.auth_failures),
        );
        counter(
            &mut out,
            "sealog_auth_denials_total",
            "Requests refused with 403 (scope or tenant).",
            get(&self.auth_denials),
        );
        counter(
            &mut out,
            "sealog_http_unavailable_total",
            "Requests answered 503 (ingest saturated, store reopening, shutting down).",
            get(&self.unavailable),
        );
        counter(
            &mut out,
            "sealog_http_storage_full_total",
            "Requests answered 507 (disk full).",
            get(&self.storage_full),
        );
        counter(
            &mut out,
            "sealog_http_client_errors_total",
            "Other 4xx responses (invalid input).",
            get(&self.client_errors),
        );
        counter(
            &mut out,
            "sealog_idempotent_replays_total",
            "Batches answered from the idempotency table instead of being written again.",
            get(&self.idempotent_replays),
        );
        let _ = writeln!(
            out,
            "# HELP sealog_query_pages_total Pages of GET /v1/events, by where they were \
             answered: in_memory (on the request's thread, from the open segments and the \
             sealed segments in the page cache) or searched (on a blocking thread).\n# TYPE \
             sealog_query_pages_total counter\nsealog_query_pages_total{{answered=\"in_memory\"}} \
             {}\nsealog_query_pages_total{{answered=\"searched\"}} {}",
            get(&self.query_pages_in_memory),
            get(&self.query_pages_searched),
        );
        let _ = writeln!(
            out,
            "# HELP sealog_query_counts_total Counts of GET /v1/events?count=true, by where they \
             were answered: in_memory (on the request's thread) or searched (on a blocking \
             thread).\n# TYPE sealog_query_counts_total counter\n\
             sealog_query_counts_total{{answered=\"in_memory\"}} {}\n\
             sealog_query_counts_total{{answered=\"searched\"}} {}",
            get(&self.counts_in_memory),
            get(&self.counts_searched),
        );
        counter(
            &mut out,
            "sealog_refusals_suppressed_total",
            "Refused requests counted in summary audit events instead of one event each.",
            get(&self.refusals_suppressed),
        );
        gauge(
            &mut out,
            "sealog_http_connections",
            "Open connections.",
            get(&self.connections) as f64,
        );
        gauge(
            &mut out,
            "sealog_tail_streams",
            "Open tail (SSE) streams.",
            get(&self.tail_streams) as f64,
        );
        gauge(
            &mut out,
            "sealog_ready",
            "1 when the store accepts writes.",
            if ready { 1.0 } else { 0.0 },
        );
        gauge(
            &mut out,
            "sealog_disk_bytes",
            "Bytes of the files in the data directory.",
            dir_bytes(data_dir) as f64,
        );
        if let Some(s) = stats {
            gauge(
                &mut out,
                "sealog_records",
                "Records in the log.",
                s.records as f64,
            );
            gauge(
                &mut out,
                "sealog_segments",
                "Segment files (sealed and open).",
                s.segments as f64,
            );
            gauge(
                &mut out,
                "sealog_sealed_segments",
                "Sealed segment files.",
                s.sealed_segments as f64,
            );
            counter(
                &mut out,
                "sealog_store_appended_events_total",
                "Events appended since the store was opened (self-audit events included).",
                s.appended_events,
            );
            counter(
                &mut out,
                "sealog_store_written_bytes_total",
                "Frame bytes written since the store was opened.",
                s.written_bytes,
            );
            counter(
                &mut out,
                "sealog_store_commit_groups_total",
                "Commit groups (one write, at most one sync each).",
                s.commit_groups,
            );
            write_engine_histogram(
                &mut out,
                "sealog_fsync_duration_seconds",
                "Latency of each data sync (fdatasync) of the store.",
                &s.sync_latency_us,
                1e-6,
            );
            write_engine_histogram(
                &mut out,
                "sealog_commit_group_events",
                "Events made durable by one commit group.",
                &s.group_events,
                1.0,
            );
        }
        if let Some(a) = self.archiving.get() {
            a.render(&mut out);
        }
        // The conventional name, so that dashboards made for other
        // services show it; `sealog bench --http` divides it by requests.
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time of the server \
             process, all its threads.\n# TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {}",
            process_cpu_seconds()
        );
        out
    }
}

/// The CPU time this process has used, all threads, user and system.
fn process_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn write_engine_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    h: &sealog::stats::HistogramSnapshot,
    scale: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        cumulative += count;
        if *bound == u64::MAX {
            continue;
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 * scale
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", h.sum as f64 * scale);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Total size of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        m.batch_events.record(1);
        m.batch_events.record(1000);
        m.batch_events.record(1_000_000);
        let text = m.render(None, Path::new("/nonexistent"), true);
        assert!(
            text.contains("sealog_ingest_batch_events_bucket{le=\"1\"} 1"),
            "{text}"
        );
        assert!(text.contains("sealog_ingest_batch_events_bucket{le=\"1000\"} 2"));
        assert!(text.contains("sealog_ingest_batch_events_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("sealog_ingest_batch_events_count 3"));
    }

    /// The CPU time, in seconds, `process_cpu_seconds_total` gives in `text`.
    fn cpu_of(text: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("process_cpu_seconds_total "))
            .unwrap_or_else(|| panic!("no process_cpu_seconds_total in {text}"));
        line.split_once(' ').unwrap().1.parse().unwrap()
    }

    #[test]
    fn the_process_cpu_time_is_exposed_and_grows_with_work() {
        let m = Metrics::default();
        let text = m.render(None, Path::new("/nonexistent"), true);
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
        let before = cpu_of(&text);
        assert!(before > 0.0, "{before}");
        // Spin until this thread alone has used 20 ms more CPU time: the
        // process's total grows by at least that.
        let thread = || {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
            t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
        };
        let start = thread();
        let mut x = 0u64;
        while thread() < start + 0.02 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_of(&m.render(None, Path::new("/nonexistent"), true));
        assert!(after >= before + 0.02, "{before} -> {after}");
    }
}
