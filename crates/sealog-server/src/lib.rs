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
//! - A task reopens the store after a failed write ([`handle`]).
//! - A task writes summaries of suppressed refusals ([`audit`]).
//!
//! Shutdown (the future given to [`Server::run`] completes, e.g. on
//! SIGTERM): stop accepting, end tail streams, let in-flight requests
//! finish (at most `shutdown_grace`), record pending refusal summaries,
//! close the store (which syncs).

pub mod app;
pub mod archiving;
pub mod audit;
pub mod body;
pub mod client;
pub mod config;
pub mod error;
pub mod handle;
pub mod idempotency;
pub mod ingest;
pub mod lock;
pub mod metrics;
pub mod params;
pub mod tail;
pub mod tokens;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sealog::StoreOptions;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

pub use config::{ConfigError, Layer, Limits, Settings, TlsFiles};
pub use error::ApiError;

use crate::app::{App, Peer};
use crate::handle::StoreHandle;
use crate::tokens::TokenStore;

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
        source: sealog::Error,
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
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
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

/// A bound server, ready to [`Server::run`].
pub struct Server {
    app: Arc<App>,
    connection_limit: usize,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    local_addr: SocketAddr,
    visible_tx: watch::Sender<u64>,
    stop_tx: watch::Sender<bool>,
    archiving: Option<Arc<archiving::Archiving>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

fn tls_error(message: String, fix: impl Into<String>) -> ServerError {
    ServerError::Tls {
        message,
        fix: fix.into(),
    }
}

fn unreadable_fix(flag: &str, e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            format!("check the path given with {flag}")
        }
        rustls_pki_types::pem::Error::Io(io)
            if io.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            format!("let the user running the server read the file given with {flag}")
        }
        _ => format!("give {flag} a PEM file"),
    }
}

fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| {
            tls_error(
                format!(
                    "cannot read the certificate `{}`: {e}",
                    files.cert.display()
                ),
                unreadable_fix("--tls-cert", &e),
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            tls_error(
                format!(
                    "the certificate file `{}` is not PEM: {e}",
                    files.cert.display()
                ),
                "give --tls-cert the certificate chain in PEM (`-----BEGIN CERTIFICATE-----` \
                 blocks, leaf first); convert DER with `openssl x509 -inform der -in cert.der \
                 -out cert.pem`",
            )
        })?;
    if certs.is_empty() {
        return Err(tls_error(
            format!(
                "the certificate file `{}` holds no certificate",
                files.cert.display()
            ),
            "give --tls-cert the file with the `-----BEGIN CERTIFICATE-----` blocks (a key \
             file goes to --tls-key)",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        let fix = match &e {
            rustls_pki_types::pem::Error::NoItemsFound => "give --tls-key the private key in \
                 PEM (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`); \
                 an encrypted key must be decrypted first (`openssl pkey -in key.pem -out \
                 plain.pem`)"
                .to_owned(),
            other => unreadable_fix("--tls-key", other),
        };
        tls_error(
            format!(
                "cannot read a private key from `{}`: {e}",
                files.key.display()
            ),
            fix,
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            tls_error(
                e.to_string(),
                "this build's TLS library offers no protocol version: report it",
            )
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_error(
                format!(
                    "the certificate `{}` and the key `{}` do not make a usable pair: {e}",
                    files.cert.display(),
                    files.key.display()
                ),
                "give --tls-key the key of the certificate's leaf (compare `openssl x509 \
                 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)",
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Server {
    /// Opens the store, loads tokens and TLS files, and binds the address.
    ///
    /// `options` are the store's (a signing key in `checkpoints`, a test
    /// filesystem in `fs`); the settings' segment size and secret guard
    /// policy, where set, override theirs. Without a tokens file the server
    /// runs unauthenticated, which is refused on a non-loopback address.
    pub async fn bind(settings: &Settings, options: StoreOptions) -> Result<Server, ServerError> {
        let mut options = settings.store_options(options);
        let archiving = match &settings.archive {
            Some(a) => {
                options.archive = Some(archiving::Archiving::read_source(a)?);
                Some(Arc::new(archiving::Archiving::new(a.clone())?))
            }
            None => None,
        };
        if settings.tokens.is_none() && !settings.listen.ip().is_loopback() {
            return Err(ConfigError::new(
                format!(
                    "refusing to listen on {} without authentication: there is no tokens file \
                     (looked for {}; `sealog token create` makes one)",
                    settings.listen,
                    settings.data_dir.join(tokens::DEFAULT_FILE_NAME).display()
                ),
                format!(
                    "create a token with `sealog token create --data-dir {} --name NAME \
                     --scopes ingest,query` (the server then requires tokens), or listen on a \
                     loopback address such as 127.0.0.1:7807",
                    settings.data_dir.display()
                ),
            )
            .into());
        }
        let tokens = match &settings.tokens {
            Some(path) => Some(TokenStore::open(path)?),
            None => None,
        };
        let tls = settings.tls.as_ref().map(load_tls).transpose()?;
        let validator = options.validator.clone();
        let dir = settings.data_dir.clone();
        let opened = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || StoreHandle::open(dir, options)).await
        };
        let handle = match opened {
            Ok(Ok(h)) => Arc::new(h),
            Ok(Err(source)) => {
                return Err(ServerError::Store {
                    op: "open",
                    dir,
                    source,
                });
            }
            Err(_) => {
                return Err(ServerError::Store {
                    op: "open",
                    dir,
                    source: sealog::Error::Closed,
                });
            }
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: settings.listen,
            source,
        })?;
        let (visible_tx, visible_rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = Arc::new(App::new(
            handle,
            tokens,
            settings.limits.clone(),
            validator,
            visible_rx,
            stop_rx,
        ));
        if let Some(a) = &archiving {
            let _ = app.metrics.archiving.set(a.clone());
        }
        let journal = dir.join(IDEMPOTENCY_JOURNAL);
        let loaded = {
            let app = app.clone();
            let path = journal.clone();
            tokio::task::spawn_blocking(move || match app.store.get() {
                Ok(store) => app.idempotency.open_journal(&path, &store),
                Err(_) => Err(std::io::Error::other("the store is not open")),
            })
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the loading thread failed")))
        };
        match loaded {
            Ok(loaded) => {
                if loaded.keys > 0 || loaded.expired > 0 {
                    eprintln!(
                        "sealog serve: idempotency keys remembered from {}: {} ({} expired)",
                        journal.display(),
                        loaded.keys,
                        loaded.expired
                    );
                }
                if let Some(first) = &loaded.first_damage {
                    eprintln!(
                        "sealog serve: the idempotency journal {} had {} unusable entr{}, \
                         forgotten (a retry of those batches with their key may write them \
                         again); the first found: {first}",
                        journal.display(),
                        loaded.damaged,
                        if loaded.damaged == 1 { "y" } else { "ies" }
                    );
                }
            }
            Err(source) => {
                return Err(ServerError::Journal {
                    path: journal,
                    source,
                });
            }
        }
        // Connections beyond the open-file limit would take the
        // descriptors the store needs for its next segment, and a store
        // that cannot create a file refuses writes until it is reopened
        // (measured: 2,000 idle connections against a limit of 1,024 did
        // that within seconds, and the reopen failed for the same reason).
        let soft = open_file_limit();
        let max = settings.limits.max_connections;
        let connection_limit = connection_limit(max, soft);
        if connection_limit < max {
            eprintln!(
                "sealog serve: serving at most {connection_limit} connections at once, not \
                 max_connections = {max}: the open-file limit is {} and {RESERVED_FDS} \
                 descriptors are kept for the store (raise the limit: `ulimit -n`, or \
                 LimitNOFILE= in a systemd unit)",
                soft.unwrap_or(0)
            );
        }
        Ok(Server {
            app,
            connection_limit,
            listener,
            tls,
            local_addr,
            visible_tx,
            stop_tx,
            archiving,
        })
    }

    /// The address bound (the port chosen when the settings said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// How many connections are served at once: `max_connections`, or
    /// fewer if the open-file limit is too low for it (see
    /// [`connection_limit`]).
    pub fn connection_limit(&self) -> usize {
        self.connection_limit
    }

    /// The shared state (for tests and embedding).
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server {
            app,
            connection_limit,
            listener,
            tls,
            local_addr: _,
            visible_tx,
            stop_tx,
            archiving,
        } = self;
        let limits = app.limits.clone();
        let reopen = tokio::spawn(app.store.clone().reopen_loop());
        let archiver =
            archiving.map(|a| tokio::spawn(a.run(app.store.clone(), stop_tx.subscribe())));
        let follower = {
            let handle = app.store.clone();
            let stopping = stop_tx.subscribe();
            std::thread::Builder::new()
                .name("sealog-follower".into())
                .spawn(move || tail::follow(handle, visible_tx, stopping))
                .ok()
        };
        let flusher = {
            let app = app.clone();
            let every = (limits.refusal_window / 2).max(Duration::from_millis(100));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    flush_refusals(&app, false).await;
                }
            })
        };
        let journal_syncer = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut failing = false;
                loop {
                    tick.tick().await;
                    let app = app.clone();
                    let synced =
                        tokio::task::spawn_blocking(move || app.idempotency.sync_journal())
                            .await
                            .unwrap_or(Ok(()));
                    match synced {
                        Err(e) if !failing => {
                            failing = true;
                            eprintln!(
                                "sealog serve: syncing the idempotency journal failed ({e}): \
                                 a power loss may forget the newest keys"
                            );
                        }
                        Err(_) => {}
                        Ok(()) => failing = false,
                    }
                }
            })
        };
        let router = app::router(app.clone());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(connection_limit));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let http = Arc::new(http);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(v) => v,
                    Err(e) => {
                        // Out of file descriptors, say: wait and go on.
                        eprintln!("sealog serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(Peer(peer));
                router.clone().oneshot(req)
            });
            let watcher = graceful.watcher();
            let http = http.clone();
            let app = app.clone();
            let tls = tls.clone();
            let handshake = limits.header_timeout;
            tokio::spawn(async move {
                metrics::add(&app.metrics.connections, 1);
                match tls {
                    None => {
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                    Some(acceptor) => {
                        if let Ok(Ok(tls_stream)) =
                            tokio::time::timeout(handshake, acceptor.accept(stream)).await
                        {
                            let conn = http.serve_connection(TokioIo::new(tls_stream), service);
                            let _ = watcher.watch(conn).await;
                        }
                    }
                }
                app.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        drop(listener);
        eprintln!("sealog serve: shutting down: no longer accepting connections");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => eprintln!("sealog serve: in-flight requests finished"),
            Err(_) => eprintln!(
                "sealog serve: the grace period of {} s ended with requests still open; closing \
                 the store anyway (unacknowledged batches may or may not be written)",
                limits.shutdown_grace.as_secs()
            ),
        }
        flusher.abort();
        journal_syncer.abort();
        if let Some(a) = archiver {
            a.abort();
        }
        {
            let app = app.clone();
            let synced = tokio::task::spawn_blocking(move || app.idempotency.sync_journal()).await;
            if let Ok(Err(e)) = synced {
                eprintln!("sealog serve: syncing the idempotency journal failed ({e})");
            }
        }
        flush_refusals(&app, true).await;
        let store = app.store.take_for_close();
        reopen.abort();
        if let Some(f) = follower {
            let _ = tokio::task::spawn_blocking(move || f.join()).await;
        }
        let dir = app.store.dir().to_path_buf();
        if let Some(store) = store {
            let closed = tokio::task::spawn_blocking(move || store.close()).await;
            match closed {
                Ok(Ok(())) => eprintln!("sealog serve: store synced and closed"),
                Ok(Err(source)) => {
                    return Err(ServerError::Store {
                        op: "close",
                        dir,
                        source,
                    });
                }
                Err(_) => {
                    return Err(ServerError::Store {
                        op: "close",
                        dir,
                        source: sealog::Error::Closed,
                    });
                }
            }
        }
        Ok(())
    }
}

async fn flush_refusals(app: &App, all: bool) {
    let events = app.refusals.drain(all);
    if events.is_empty() {
        return;
    }
    if let Ok(store) = app.store.get()
        && let Err(e) = audit::append(store, events).await
    {
        app.store.report(&e);
        eprintln!("sealog serve: could not record the summary of refused requests: {e}");
    }
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
