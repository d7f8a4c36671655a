//! The bundled HTTP server of sealog.
//!
//! ```no_run
//! # async fn run() -> Result<(), sealog_server::ServerError> {
//! use sealog_server::{Layer, Server};
//! let settings = Layer::default().resolve()?; // 127.0.0.1:7807, ./sealog-data
//! let server = Server::bind(&settings, sealog::StoreOptions::default()).await?;
//! println!("listening on {}", server.url());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! What it serves is in `docs/api.md`: ingest (`POST /v1/events`, durable
//! before the answer, all or nothing, idempotent with a key), queries and
//! NDJSON export, single records and their receipts, a Server-Sent Events
//! tail, checkpoints, inclusion and consistency proofs, verification,
//! statistics and Prometheus metrics, health and readiness.
//!
//! ## Threads and tasks
//!
//! - A multi-threaded tokio runtime accepts connections (at most
//!   `max_connections`, and at most the open-file limit less
//!   [`RESERVED_FDS`]) and runs the handlers; HTTP/1.1 via hyper, TLS via
//!   rustls (ring).
//! - Appends, queries, proofs and verification run on tokio's blocking
//!   pool: the engine blocks on `fdatasync`. Ingest is admitted against a
//!   budget of body bytes and of batches in flight; a batch that cannot
//!   get its share within `ingest_wait` is answered 503 with `Retry-After`.
//! - A follower thread publishes the log's size to tail streams.
//! - With `alerts_rules`, a task evaluates the alert rules on the committed
//!   records, off the ingest path, appends `alert.raised` events and
//!   delivers them to webhooks (`alerts.rs`; `GET /v1/alerts` streams
//!   them from the log).
//! - A task reopens the store after a failed write (`handle.rs`).
//! - A task writes summaries of suppressed refusals ([`audit`]).
//! - A task compacts the idempotency journal (`idempotency/journal.rs`).
//!
//! Shutdown (the future given to [`Server::run`] completes, e.g. on
//! SIGTERM): stop accepting, end tail streams, stop the alert task, let
//! in-flight requests finish (at most `shutdown_grace`, alert deliveries
//! under way too), record pending refusal summaries,
//! close the store (which syncs).

mod alerts;
pub mod archiving;
pub mod audit;
mod auth;
mod body;
pub mod config;
mod error;
mod forward;
mod handle;
mod idempotency;
pub mod ingest;
pub mod lock;
mod metrics;
pub mod params;
mod routes;
mod server;
mod state;
mod tail;
mod tls;
pub mod tokens;
pub mod wire;

use std::net::SocketAddr;

pub use config::{ConfigError, Layer, Limits, Settings, TlsFiles};
pub use error::{ApiError, ApiErrorParts, ErrorCode};
pub use server::Server;

/// Why the server could not start or stopped with an error. Each says
/// what is wrong ([`std::fmt::Display`]) and what to do about it
/// ([`ServerError::fix`]).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened or closed.
    #[error("{}", store_message(.op, .dir, .source))]
    Store {
        /// `open` or `close`.
        op: &'static str,
        /// The data directory.
        dir: std::path::PathBuf,
        /// The engine's error.
        #[source]
        source: Box<sealog::Error>,
    },
    /// The tokens file is unusable.
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    /// TLS files are unusable.
    #[error("TLS: {message}")]
    Tls {
        /// What is wrong, naming the file.
        message: String,
        /// What to do about it.
        fix: String,
    },
    /// The idempotency journal cannot be read or rewritten.
    #[error("the idempotency journal `{}`: {source}", path.display())]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The alert rules file, its cursor or its webhooks are unusable.
    #[error("alerts: {0}")]
    Alerts(#[source] sealog_alerts::Error),
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A thread of the server could not be started.
    #[error("cannot start the `{name}` thread: {source}")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn store_message(op: &str, dir: &std::path::Path, source: &sealog::Error) -> String {
    match source {
        // The engine's message names the directory already.
        sealog::Error::Locked { .. } => source.to_string(),
        _ => format!("cannot {op} the store at `{}`: {source}", dir.display()),
    }
}

impl ServerError {
    /// What to do about the error: one line, specific to it.
    pub fn fix(&self) -> String {
        match self {
            ServerError::Config(e) => e.fix.clone(),
            ServerError::Store { dir, source, .. } => store_fix(dir, source),
            ServerError::Tokens(e) => e.fix(),
            ServerError::Tls { fix, .. } => fix.clone(),
            ServerError::Journal { path, source } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => format!(
                    "let the user running the server read and write `{}`",
                    path.display()
                ),
                _ => format!(
                    "move `{}` aside: the server then starts without the remembered \
                     idempotency keys (a client retrying a batch with its key may write it \
                     twice)",
                    path.display()
                ),
            },
            ServerError::Bind { addr, source } => bind_fix(*addr, source),
            ServerError::Alerts(e) => e.fix(),
            ServerError::Thread { .. } => "raise the limit on processes and threads of the user \
                                           running the server (`ulimit -u`), or free memory"
                .to_owned(),
        }
    }
}

/// The fix for a store that cannot be opened (or closed).
pub fn store_fix(dir: &std::path::Path, source: &sealog::Error) -> String {
    let d = dir.display();
    match source {
        sealog::Error::Locked { path } => match lock::holder(path) {
            Some(h) => format!(
                "another sealog is running on this store: process {} (`{}`) holds its lock. \
                 Stop it (`kill {}`) or serve another --data-dir; reading commands (query, \
                 export, verify) work while it runs",
                h.pid, h.command, h.pid
            ),
            None => "another sealog is running on this store (a server, or a command \
                     writing to it): stop it or serve another --data-dir; reading commands \
                     (query, export, verify) work while it runs"
                .to_owned(),
        },
        sealog::Error::Corruption(_) => format!(
            "the store no longer matches what sealog wrote: keep a copy of `{d}` as evidence, \
             restore the damaged file named above from a backup or replica, and check with \
             `sealog verify --data-dir {d}` before serving it"
        ),
        e if e.io_kind() == Some(std::io::ErrorKind::PermissionDenied) => format!(
            "let the user running the server read and write `{d}` and everything in it \
             (e.g. `chown -R USER {d}`)"
        ),
        e if e.io_kind() == Some(std::io::ErrorKind::StorageFull) => {
            format!("free space on the disk that holds `{d}`, then start the server again")
        }
        sealog::Error::Config(_) => {
            "fix the store option named above (--segment-size, the signing key)".to_owned()
        }
        sealog::Error::IndexDamaged { .. } => format!(
            "start the server again: the index is rebuilt from the records; if it fails \
             again, run `sealog verify --data-dir {d}`"
        ),
        _ => format!(
            "check that `{d}` is a sealog store on a working disk (`sealog verify --data-dir \
             {d}`)"
        ),
    }
}

/// The fix for an address that cannot be listened on.
pub fn bind_fix(addr: SocketAddr, source: &std::io::Error) -> String {
    let ip = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    match source.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another process already listens on {addr} (another `sealog serve`? find it with \
             `ss -ltnp 'sport = :{}'`): stop it, or listen elsewhere with --listen {ip}:PORT \
             (port 0 picks a free one)",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "ports below 1024 need privileges: listen on a higher port (--listen {ip}:7807), \
             or allow the binary to bind low ports (`setcap cap_net_bind_service=+ep \
             $(command -v sealog)`)"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "{ip} is not an address of this host: listen on one of its addresses, on \
             0.0.0.0 (all of them) or on 127.0.0.1 (this host only)"
        ),
        _ => format!(
            "check --listen (or SEALOG_LISTEN, or `listen` in the config file): {addr} could \
             not be bound"
        ),
    }
}

/// The idempotency journal's file name in the data directory.
pub const IDEMPOTENCY_JOURNAL: &str = "idempotency.log";

/// File descriptors kept free for the store and the server's own files
/// when the open-file limit caps the number of connections. The store
/// keeps about 10 files open plus one per level of its Merkle tree (sealed
/// segments are memory-mapped, without a descriptor); sealing, exports,
/// verification and the tokens file open a few more for a while.
pub const RESERVED_FDS: u64 = 256;

/// The connections a process whose open-file limit is `soft` (`None`:
/// unlimited) can serve while keeping [`RESERVED_FDS`] descriptors for the
/// store: each connection holds one. At least 1.
pub fn connection_limit(max_connections: usize, soft: Option<u64>) -> usize {
    let allowed = soft.map_or(usize::MAX, |soft| {
        usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX)
    });
    max_connections.min(allowed).max(1)
}

/// The process's soft limit on open files (`None`: unlimited).
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the process's soft limit on open files to its hard limit, as a
/// server that holds one descriptor per connection should (many systems
/// start processes with a soft limit of 1,024). Returns the soft limit
/// before and after.
pub fn raise_open_file_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum && limit.maximum.is_some() {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    (limit.current, getrlimit(Resource::Nofile).current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_bind_failure_has_its_own_fix() {
        use std::io::{Error, ErrorKind};
        let addr: SocketAddr = "127.0.0.1:80"
            .parse()
            .unwrap_or(SocketAddr::from(([0; 4], 0)));
        let fixes: std::collections::BTreeSet<String> = [
            ErrorKind::AddrInUse,
            ErrorKind::PermissionDenied,
            ErrorKind::AddrNotAvailable,
            ErrorKind::Other,
        ]
        .into_iter()
        .map(|k| bind_fix(addr, &Error::from(k)))
        .collect();
        assert_eq!(fixes.len(), 4);
        assert!(
            fixes
                .iter()
                .any(|f| f.starts_with("ports below 1024 need privileges"))
        );
    }

    #[test]
    fn the_open_file_limit_caps_connections_and_keeps_descriptors_for_the_store() {
        assert_eq!(connection_limit(10_000, None), 10_000);
        assert_eq!(connection_limit(10_000, Some(20_000)), 10_000);
        assert_eq!(connection_limit(10_000, Some(1_024)), 1_024 - 256);
        assert_eq!(connection_limit(10_000, Some(100)), 1);
        assert_eq!(connection_limit(500, Some(1_024)), 500);
    }
}
