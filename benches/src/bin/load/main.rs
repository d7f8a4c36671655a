//! `load`: the load generator of a running `sealog serve`.
//!
//! `cargo run --release -p sealog-benches --bin load -- --http URL` sends
//! the workload's events as NDJSON batches from concurrent keep-alive
//! connections (durable acknowledgements) and measures throughput, request
//! latency, the server's syncs and query latency ([`http`]); with
//! `--abuse`, it abuses the server instead while honest clients work and
//! are measured, then checks that nothing acknowledged was lost
//! ([`abuse`]). Exit status: 0, 1 when the run or a check failed, 2 for a
//! usage error. See docs/benchmarks.md.

mod abuse;
mod http;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sealog::workload::{Workload, WorkloadShape};

const AFTER_HELP: &str = "\
Sends the events of sealog's workload generator (the events of `sealog
bench`) to a running `sealog serve`: NDJSON batches of --batch events
POSTed from --clients connections, each acknowledged only once durable.
Reports events/s, MB/s of request bodies, the latency of each request, the
server's syncs (from /v1/stats, which needs --token with the query scope
when the server has tokens), and the latency (p50/p99) of two typical
queries after the ingest and, with --query-clients, during it.

With --abuse, the server is abused instead, bounded in count and time:
thousands of held connections (and, for a while, more than its
max_connections), slow senders, oversized and malformed bodies and a flood
of failed authentications, while honest clients ingest durably at a steady
rate and query. It reports connections held (here and, from /v1/stats, on
the server), the server's memory (--server-pid), honest query and ingest
latency in each phase, how each kind of abuse was answered, and checks that
every acknowledged honest event is in the log, that POST /v1/verify passes
and that the failed authentications were summarized; exit 1 if a check
fails. The token needs the scopes ingest, query and admin.

Examples:
  load --http http://127.0.0.1:7807 --clients 64 --batch 1000 --events 2000000
  load --http http://127.0.0.1:7807 --abuse --server-pid 4242";

/// Load a running `sealog serve`: the write benchmark over HTTP, or load
/// and abuse.
#[derive(Parser, Debug)]
#[command(name = "load", about, after_help = AFTER_HELP, max_term_width = 100)]
pub struct LoadArgs {
    /// The server: POST the events as NDJSON batches of --batch to
    /// URL/v1/events from --clients concurrent connections (durable
    /// acknowledgements), then measure query latency.
    ///
    /// Example: --http http://127.0.0.1:7807 --clients 16
    #[arg(long, value_name = "URL")]
    pub http: String,

    /// Number of events to send.
    ///
    /// Example: --events 1000000
    #[arg(long, default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,

    /// Approximate size of each encoded record in bytes (metadata pads the
    /// events up to it).
    ///
    /// Example: --event-size 1024
    #[arg(long, default_value_t = 300, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(64..=65_536))]
    event_size: u64,

    /// Events per request.
    ///
    /// Example: --batch 100
    #[arg(long, default_value_t = 1000, value_name = "B",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,

    /// Print one JSON object with the results.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    /// Seed of the workload generator (the same seed gives the same
    /// events).
    ///
    /// Example: --seed 7
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,

    /// Concurrent client connections sending batches.
    ///
    /// Example: --clients 64
    #[arg(long, default_value_t = 16, value_name = "C",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub clients: u64,

    /// The bearer token (scopes ingest and query, no tenant binding, for
    /// the query and the server's sync count from /v1/stats; with --abuse
    /// also admin). Also read from SEALOG_TOKEN.
    ///
    /// Example: --token slg_...
    #[arg(
        long,
        env = "SEALOG_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// With an https URL: the CA certificate (PEM) to trust.
    ///
    /// Example: --ca ca.pem
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,

    /// Queries of each kind timed one after another once the ingest is
    /// done (0: none).
    ///
    /// Example: --queries 500
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub queries: u64,

    /// Connections running queries in a loop while the ingest runs, for
    /// query latency under load (0: none).
    ///
    /// Example: --query-clients 2
    #[arg(long, default_value_t = 0, value_name = "Q")]
    pub query_clients: u64,

    /// Load and abuse against the server (`--abuse` and its flags).
    #[command(flatten)]
    pub abuse: abuse::AbuseArgs,
}

/// Largest pool of distinct pre-generated events; longer runs reuse it.
pub const POOL_MAX: u64 = 1_000_000;

impl LoadArgs {
    /// The workload of these arguments.
    pub fn workload(&self) -> Workload {
        Workload::with_shape(
            self.seed,
            WorkloadShape {
                event_size: usize::try_from(self.event_size).unwrap_or(300),
                total: self.events,
                ..WorkloadShape::default()
            },
        )
    }

    /// Number of events.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Events per batch.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Approximate event size.
    pub fn event_size(&self) -> u64 {
        self.event_size
    }

    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Why a run failed, and what to do about it.
#[derive(Debug)]
pub struct Failure {
    message: String,
    fix: String,
    usage: bool,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            fix: fix.into(),
            usage: true,
        }
    }

    /// A failed run or check (exit 1).
    pub fn failed(message: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            fix: fix.into(),
            usage: false,
        }
    }

    fn stdout(e: io::Error) -> Failure {
        Failure::failed(
            format!("cannot write to standard output: {e}"),
            "check where standard output goes",
        )
    }
}

/// Buffered standard output whose errors become [`Failure`]s.
pub struct Out {
    inner: io::BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    /// Standard output.
    pub fn stdout() -> Out {
        Out {
            inner: io::BufWriter::new(io::stdout().lock()),
        }
    }

    /// Writes a line.
    pub fn line(&mut self, text: &str) -> Result<(), Failure> {
        writeln!(self.inner, "{text}").map_err(Failure::stdout)
    }

    /// Writes a value as one line of JSON.
    pub fn json_line<T: serde::Serialize>(&mut self, value: &T) -> Result<(), Failure> {
        serde_json::to_writer(&mut self.inner, value)
            .map_err(|e| Failure::stdout(io::Error::from(e)))?;
        self.line("")
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<(), Failure> {
        self.inner.flush().map_err(Failure::stdout)
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count with a binary unit: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("B"))
    }
}

/// A count per second.
pub fn rate(count: f64, secs: f64) -> f64 {
    if secs > 0.0 { count / secs } else { 0.0 }
}

fn main() -> ExitCode {
    let args = LoadArgs::parse();
    let url = args.http.clone();
    let result = if args.abuse.abuse {
        abuse::run(&args, &url)
    } else {
        http::run(&args, &url)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}\nfix: {}", e.message, e.fix);
            ExitCode::from(if e.usage { 2 } else { 1 })
        }
    }
}
