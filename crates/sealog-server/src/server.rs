//! The server: binding (the store, the tokens, TLS, the idempotency
//! journal, the address) and serving (the accept loop, the background
//! tasks, graceful shutdown).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sealog::StoreOptions;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::alerts::Alerting;
use crate::auth::Peer;
use crate::config::{ConfigError, Settings};
use crate::handle::StoreHandle;
use crate::state::App;
use crate::tokens::{self, TokenStore};
use crate::{
    IDEMPOTENCY_JOURNAL, RESERVED_FDS, ServerError, audit, connection_limit, metrics,
    open_file_limit, routes, tail, tls,
};

/// How often the background task looks whether the idempotency journal
/// is due for compaction.
const JOURNAL_COMPACTION_EVERY: Duration = Duration::from_secs(1);

/// A bound server, ready to [`Server::run`].
pub struct Server {
    app: Arc<App>,
    connection_limit: usize,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    local_addr: SocketAddr,
    visible_tx: watch::Sender<u64>,
    stop_tx: watch::Sender<bool>,
    forwarders: crate::forward::Forwarders,
    archiving: Option<Arc<crate::archiving::Archiving>>,
    alerting: Option<Alerting>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
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
                // Each archive round rests on a checkpoint signed by this
                // store's key, covering what it uploads; a server without
                // the key would fail every round (and keep every segment).
                if options.checkpoints.is_none() {
                    return Err(ConfigError::new(
                        format!(
                            "archive = \"{}\" needs the log's signing key: every archive \
                             round uploads a checkpoint signed by it, covering the segments \
                             it ships, and this server has none",
                            a.url
                        ),
                        "give --signing-key FILE (or signing_key in the configuration; \
                         `sealog keygen` writes one), or serve without archive",
                    )
                    .into());
                }
                options.archive = Some(crate::archiving::Archiving::read_source(a)?);
                Some(Arc::new(crate::archiving::Archiving::new(a.clone())?))
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
        let tls = settings.tls.as_ref().map(tls::load_tls).transpose()?;
        let validator = options.validator.clone();
        // The journal goes through the store's filesystem.
        let fs = options.fs.clone();
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
                    source: Box::new(source),
                });
            }
            Err(_) => {
                return Err(ServerError::Store {
                    op: "open",
                    dir,
                    source: Box::new(sealog::Error::Closed),
                });
            }
        };
        let alerting = match &settings.alerts_rules {
            None => None,
            Some(rules) => {
                let store = handle.get().map_err(|_| ServerError::Store {
                    op: "open",
                    dir: dir.clone(),
                    source: Box::new(sealog::Error::Closed),
                })?;
                let (rules, dir) = (rules.clone(), dir.clone());
                let loaded =
                    tokio::task::spawn_blocking(move || Alerting::load(&rules, &dir, &store))
                        .await
                        .map_err(|e| {
                            ServerError::Alerts(sealog_alerts::Error::Io {
                                op: "load the alert rules",
                                path: settings.alerts_rules.clone().unwrap_or_default(),
                                source: std::io::Error::other(e.to_string()),
                            })
                        })??;
                Some(loaded)
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
                Ok(store) => app.idempotency.open_journal(fs, &path, &store),
                Err(_) => Err(std::io::Error::other("the store is not open")),
            })
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the loading thread failed")))
        };
        match loaded {
            Ok(loaded) => {
                if loaded.keys > 0 || loaded.expired > 0 {
                    tracing::info!(
                        path = %journal.display(),
                        keys = loaded.keys,
                        expired = loaded.expired,
                        "idempotency keys remembered from the journal"
                    );
                }
                if loaded.unacknowledged > 0 {
                    tracing::info!(
                        path = %journal.display(),
                        keys = loaded.unacknowledged,
                        "idempotency keys of batches that were not acknowledged (their records \
                         are past the log's end: the server stopped while they were being \
                         committed), forgotten"
                    );
                }
                if let Some(first) = &loaded.first_damage {
                    tracing::warn!(
                        path = %journal.display(),
                        unusable = loaded.damaged,
                        first = %first,
                        "the idempotency journal had unusable entries, forgotten (a retry of \
                         those batches with their key may write them again)"
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
            tracing::warn!(
                connection_limit,
                max_connections = max,
                open_file_limit = soft.unwrap_or(0),
                reserved = RESERVED_FDS,
                "serving at most {connection_limit} connections at once, not max_connections = \
                 {max}: the open-file limit is {} and {RESERVED_FDS} descriptors are kept for \
                 the store (raise the limit: `ulimit -n`, or LimitNOFILE= in a systemd unit)",
                soft.unwrap_or(0)
            );
        }
        // Forward filters name clear values; match them as the store's
        // privacy rules stored them.
        let privacy = match app.store.get() {
            Ok(store) => store.privacy().clone(),
            Err(_) => settings.privacy.clone().unwrap_or_default(),
        };
        let forwarders =
            crate::forward::Forwarders::start(&settings.data_dir, &settings.forward, &privacy)?;
        Ok(Server {
            app,
            connection_limit,
            listener,
            tls,
            local_addr,
            visible_tx,
            stop_tx,
            forwarders,
            archiving,
            alerting,
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
            forwarders: _forwarders,
            archiving,
            alerting,
        } = self;
        let limits = app.limits.clone();
        let reopen = tokio::spawn(app.store.clone().reopen_loop());
        let archiver = match archiving {
            Some(a) => Some(
                a.spawn(app.store.clone(), stop_tx.subscribe())
                    .map_err(|source| ServerError::Thread {
                        name: "sealog-archiver",
                        source,
                    })?,
            ),
            None => None,
        };
        let follower = {
            let handle = app.store.clone();
            let stopping = stop_tx.subscribe();
            std::thread::Builder::new()
                .name("sealog-follower".into())
                .spawn(move || tail::follow(handle, visible_tx, stopping))
                .ok()
        };
        let alerts = match alerting {
            Some(a) => Some(a.start(app.store.clone(), stop_tx.subscribe())?),
            None => None,
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
        // Compaction of the idempotency journal, off the ingest path.
        let journal_compactor = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(JOURNAL_COMPACTION_EVERY);
                let mut failing = false;
                loop {
                    tick.tick().await;
                    let app = app.clone();
                    let compacted =
                        tokio::task::spawn_blocking(move || app.idempotency.compact_journal())
                            .await
                            .unwrap_or(Ok(false));
                    match compacted {
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(
                                error = %e,
                                "could not compact the idempotency journal; it keeps growing \
                                 until this works"
                            );
                        }
                        Err(_) => {}
                        Ok(_) => failing = false,
                    }
                }
            })
        };
        let router = routes::router(app.clone());
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
                        tracing::warn!(error = %e, "accepting a connection failed; retrying");
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
        tracing::info!("shutting down: no longer accepting connections");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("in-flight requests finished"),
            Err(_) => tracing::warn!(
                grace_secs = limits.shutdown_grace.as_secs(),
                "the grace period ended with requests still open; closing the store anyway \
                 (unacknowledged batches may or may not be written)"
            ),
        }
        if let Some(mut task) = alerts {
            // It stopped following when `stop_tx` was sent; deliveries
            // under way get what is left of the grace period. A delivery
            // cut off is made again after the next start: the cursor has
            // not moved past its records.
            if tokio::time::timeout(limits.shutdown_grace, &mut task)
                .await
                .is_err()
            {
                tracing::warn!(
                    "alert deliveries were still under way at the end of the grace period; \
                     they are made again at the next start"
                );
                task.abort();
            }
        }
        flusher.abort();
        journal_compactor.abort();
        if let Some(a) = archiver {
            // It stops at `stop_tx`, within a round too; its store handle
            // goes with it before the store is closed.
            let joined = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::task::spawn_blocking(move || a.join()),
            )
            .await;
            if joined.is_err() {
                tracing::warn!("the archiver did not stop within 10 s; closing without it");
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
                Ok(Ok(())) => tracing::info!(dir = %dir.display(), "store synced and closed"),
                Ok(Err(source)) => {
                    return Err(ServerError::Store {
                        op: "close",
                        dir,
                        source: Box::new(source),
                    });
                }
                Err(_) => {
                    return Err(ServerError::Store {
                        op: "close",
                        dir,
                        source: Box::new(sealog::Error::Closed),
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
        tracing::error!(error = %e, "could not record the summary of refused requests");
    }
}
