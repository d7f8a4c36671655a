//! `load --http URL --abuse`: load and abuse against a running
//! server on loopback, bounded in count and time, while honest clients
//! work and are measured.
//!
//! The run has four phases:
//!
//! 1. **baseline** (`--baseline-secs`): the honest clients alone. They run
//!    through every phase: `--honest-clients` connections ingest NDJSON
//!    batches of `--honest-batch` events at `--honest-rate` events/s in
//!    all (durable acknowledgements, a unique `request_id` per event and an
//!    `Idempotency-Key` per batch, so a retry never writes twice); one
//!    client queries `GET /v1/events?actor=…&limit=100` in a loop; and a
//!    probe opens a fresh connection twice a second for `GET /healthz`.
//! 2. **flood** (`--abuse-secs`), everything at once: `--hold` idle
//!    connections (reopened whenever the server closes one); `--slow`
//!    senders trickling a request head a byte a second and `--slow`
//!    trickling an ingest body; `--bad-bodies` connections cycling through
//!    oversized and malformed bodies; `--auth-flood` connections sending
//!    unknown, missing and malformed tokens (from `--auth-sources`
//!    loopback addresses).
//! 3. **over the limit** (`--over-limit-secs`): `--over-limit` idle
//!    connections at once, above the server's `max_connections`; the
//!    rest of the abuse has stopped.
//! 4. **after** (`--after-secs`): the honest clients alone again.
//!
//! Then it checks that every acknowledged honest event is in the log (an
//! NDJSON export of the honest actor), that `POST /v1/verify` finds the
//! log intact, and that the flood of failed authentications did not write
//! one event each (the server records the first few per address and
//! window and summarizes the rest). It exits 1 if a check fails.
//!
//! Memory is the server's own `VmRSS` / `VmHWM` from
//! `/proc/<--server-pid>/status`, sampled every 250 ms; open connections
//! are counted by the driver and read from the server's `/v1/stats`.

mod abusers;
mod checks;
mod driver;
mod honest;
mod monitor;
mod raw;
mod report;
mod shared;

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use self::driver::run_async;
use self::report::print_report;
use self::shared::failed;
use crate::{Failure, LoadArgs, Out};

/// The flags of `--abuse`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Load and abuse (with --http URL --abuse)")]
pub struct AbuseArgs {
    /// With --http: instead of the write benchmark, abuse the server (held
    /// connections, slow senders, bad bodies, failed authentications)
    /// while honest clients ingest and query, then check that nothing
    /// acknowledged was lost. The token needs the scopes ingest, query
    /// and admin (admin for the final verification).
    ///
    /// Example: --http http://127.0.0.1:7807 --abuse --server-pid 4242
    #[arg(long, requires = "http")]
    pub abuse: bool,

    /// Seconds of honest load alone before the flood.
    ///
    /// Example: --baseline-secs 5
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub baseline_secs: u64,

    /// Seconds the flood lasts.
    ///
    /// Example: --abuse-secs 60
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub abuse_secs: u64,

    /// Seconds with --over-limit connections open (0: no such phase).
    ///
    /// Example: --over-limit-secs 0
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub over_limit_secs: u64,

    /// Seconds of honest load alone after the abuse.
    ///
    /// Example: --after-secs 10
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub after_secs: u64,

    /// Idle connections held during the flood (below the server's
    /// max_connections, default 10,000).
    ///
    /// Example: --hold 2000
    #[arg(long, default_value_t = 5_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub hold: u64,

    /// Idle connections held at once in the over-the-limit phase (above
    /// the server's max_connections; 0: no such phase).
    ///
    /// Example: --over-limit 12000
    #[arg(long, default_value_t = 11_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub over_limit: u64,

    /// Slow senders of each kind: request heads trickled a byte a second,
    /// and ingest bodies trickled a byte a second.
    ///
    /// Example: --slow 100
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub slow: u64,

    /// The Content-Length the slow ingest senders declare (and never
    /// send).
    ///
    /// Example: --slow-body-bytes 8388608
    #[arg(long, default_value_t = 1_000, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(2..))]
    pub slow_body_bytes: u64,

    /// Connections cycling through oversized and malformed bodies.
    ///
    /// Example: --bad-bodies 8
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub bad_bodies: u64,

    /// Connections sending requests with unknown, missing or malformed
    /// tokens as fast as the server answers.
    ///
    /// Example: --auth-flood 500
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub auth_flood: u64,

    /// Distinct loopback source addresses of the failed authentications
    /// (127.1.0.0 and up; 1: all from 127.0.0.1).
    ///
    /// Example: --auth-sources 5000
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub auth_sources: u64,

    /// Honest ingest connections.
    ///
    /// Example: --honest-clients 8
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub honest_clients: u64,

    /// Events per honest ingest request.
    ///
    /// Example: --honest-batch 1000
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub honest_batch: u64,

    /// Honest events per second, all honest ingest connections together.
    ///
    /// Example: --honest-rate 20000
    #[arg(long, default_value_t = 5_000, value_name = "EVENTS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub honest_rate: u64,

    /// The server's process id, to sample its memory (VmRSS, VmHWM) from
    /// /proc/PID/status.
    ///
    /// Example: --server-pid $(pgrep -n sealog)
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Write the request_id of every acknowledged honest event to FILE, one
    /// per line (to check the store independently afterwards).
    ///
    /// Example: --record-acked acked.txt
    #[arg(long, value_name = "FILE")]
    pub record_acked: Option<PathBuf>,

    /// Seconds to wait at the end for the server's summaries of refused
    /// requests (written when an address's 10-second window ends).
    ///
    /// Example: --summary-wait-secs 0
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub summary_wait_secs: u64,
}

fn socket_addr(url: &str) -> Result<(SocketAddr, String), Failure> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Failure::usage(
            format!("`{url}`: --abuse speaks plain HTTP"),
            "give --http http://HOST:PORT (run the abused server without TLS, on loopback)",
        )
    })?;
    let authority = rest.split('/').next().unwrap_or_default().to_owned();
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Failure::usage(
                format!("cannot resolve `{authority}`"),
                "give --http http://127.0.0.1:PORT",
            )
        })?;
    Ok((addr, authority))
}

pub fn run(args: &LoadArgs, url: &str) -> Result<(), Failure> {
    let a = &args.abuse;
    let (addr, host) = socket_addr(url)?;
    let fd_limit = sealog_server::raise_open_file_limit();
    let needed = a.hold.max(a.over_limit) + a.auth_flood + 2 * a.slow + a.bad_bodies + 200;
    if let (_, Some(limit)) = fd_limit
        && limit < needed
    {
        return Err(Failure::usage(
            format!(
                "this run needs about {needed} file descriptors and the limit is {limit} (hard \
                 limit reached)"
            ),
            "raise it (ulimit -Hn) or lower --hold and --over-limit",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let report = runtime.block_on(run_async(args, url, addr, host, fd_limit))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let ok = report["checks"]["passed"].as_bool().unwrap_or(false);
    let mut out = Out::stdout();
    if args.json() {
        out.json_line(&report)?;
    } else {
        print_report(&mut out, &report)?;
    }
    out.flush()?;
    if ok {
        Ok(())
    } else {
        Err(Failure::failed(
            format!("a check failed: {}", report["checks"]["failures"]),
            "the report above says which",
        ))
    }
}
