//! `sealog serve`: the HTTP server (crate `sealog-server`) on the store in
//! --data-dir.
//!
//! Settings come from flags, then `SEALOG_*` environment variables (clap
//! merges those two), then the TOML file given with --config, then the
//! defaults; the first that sets a value wins.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use sealog_server::{Layer, Server, ServerError};

use crate::common::{Global, SecretsArg, SecretsMode, check_store_exists};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Serves the HTTP API (docs/api.md) on the store in --data-dir. The first line
on standard output is the address, for scripts:
  listening on http://127.0.0.1:7807
Everything else (what the server does at start and shutdown) goes to
standard error.

Authentication: bearer tokens from the tokens file (--tokens, default
<data-dir>/tokens.json when it exists; manage it with `sealog token`).
Without a tokens file the server accepts unauthenticated requests, and so
refuses to listen on anything but a loopback address.

The store must exist (`sealog init` makes one); --create makes a new one if
there is none.

Settings: flags win over SEALOG_* environment variables, which win over the
--config TOML file (same names as the flags, with underscores: listen,
data_dir, tokens, tls_cert, tls_key, signing_key, segment_size, secrets,
max_body_bytes, ...), which wins over the defaults. With nothing at all,
the server runs on ./sealog-data at 127.0.0.1:7807.

SIGTERM or SIGINT (Ctrl-C): stop accepting, let in-flight requests finish
(at most --shutdown-grace-secs), sync and close the store, exit 0.

Examples:
  sealog serve
  sealog serve --create --data-dir /var/lib/sealog --secrets redact
  sealog serve --listen 0.0.0.0:7807 --data-dir /var/lib/sealog \\
      --signing-key /etc/sealog/log.key --tls-cert cert.pem --tls-key key.pem
  sealog serve --config /etc/sealog/server.toml
  SEALOG_LISTEN=127.0.0.1:0 sealog serve --max-body-bytes 4194304";

/// Run the HTTP server.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// A TOML config file (keys as the flags, with underscores).
    ///
    /// Example: --config /etc/sealog/server.toml
    #[arg(long, env = "SEALOG_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Create a new, empty store if there is none in the data directory
    /// (without it, a missing store is an error, so that a mistyped path or
    /// an unmounted volume does not silently start an empty log).
    ///
    /// Example: sealog serve --create --data-dir /var/lib/sealog
    #[arg(long)]
    create: bool,

    #[command(flatten)]
    secrets: SecretsArg,

    /// Address to listen on (default 127.0.0.1:7807; port 0 picks a free
    /// port, printed on the first line of standard output).
    ///
    /// Example: --listen 0.0.0.0:7807   or   --listen [::1]:7807
    #[arg(long, env = "SEALOG_LISTEN", value_name = "IP:PORT")]
    listen: Option<String>,

    /// The tokens file (default <data-dir>/tokens.json, if it exists).
    ///
    /// Example: --tokens /etc/sealog/tokens.json
    #[arg(long, env = "SEALOG_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,

    /// TLS certificate chain, PEM (with --tls-key).
    ///
    /// Example: --tls-cert /etc/sealog/cert.pem
    #[arg(long, env = "SEALOG_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (with --tls-cert).
    ///
    /// Example: --tls-key /etc/sealog/key.pem
    #[arg(long, env = "SEALOG_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,

    /// Largest request body in bytes (default 16777216).
    ///
    /// Example: --max-body-bytes 4194304
    #[arg(long, env = "SEALOG_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<u64>,

    /// Largest single event in bytes of JSON (default 65536).
    ///
    /// Example: --max-event-bytes 16384
    #[arg(long, env = "SEALOG_MAX_EVENT_BYTES", value_name = "BYTES")]
    max_event_bytes: Option<u64>,

    /// Most events in one request (default 10000).
    ///
    /// Example: --max-batch-events 5000
    #[arg(long, env = "SEALOG_MAX_BATCH_EVENTS", value_name = "N")]
    max_batch_events: Option<u64>,

    /// Seconds a request may take, body included (default 30).
    ///
    /// Example: --request-timeout-secs 10
    #[arg(long, env = "SEALOG_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    request_timeout_secs: Option<u64>,

    /// Seconds a client has to send the request head (default 10).
    ///
    /// Example: --header-timeout-secs 5
    #[arg(long, env = "SEALOG_HEADER_TIMEOUT_SECS", value_name = "SECS")]
    header_timeout_secs: Option<u64>,

    /// Seconds a client has to send the request body (default 20).
    ///
    /// Example: --body-timeout-secs 10
    #[arg(long, env = "SEALOG_BODY_TIMEOUT_SECS", value_name = "SECS")]
    body_timeout_secs: Option<u64>,

    /// Seconds `POST /v1/verify` may take (default 600).
    ///
    /// Example: --verify-timeout-secs 3600
    #[arg(long, env = "SEALOG_VERIFY_TIMEOUT_SECS", value_name = "SECS")]
    verify_timeout_secs: Option<u64>,

    /// Open connections at once (default 10000).
    ///
    /// Example: --max-connections 2000
    #[arg(long, env = "SEALOG_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<u64>,

    /// Memory of the batches being ingested at once, bodies (decoded) and
    /// parsed events (default 67108864); a batch that cannot fit within
    /// --ingest-wait-ms gets 503.
    ///
    /// Example: --ingest-inflight-bytes 33554432
    #[arg(long, env = "SEALOG_INGEST_INFLIGHT_BYTES", value_name = "BYTES")]
    ingest_inflight_bytes: Option<u64>,

    /// Batches being ingested at once (default 64).
    ///
    /// Example: --ingest-inflight-batches 32
    #[arg(long, env = "SEALOG_INGEST_INFLIGHT_BATCHES", value_name = "N")]
    ingest_inflight_batches: Option<u64>,

    /// Milliseconds a batch waits for the in-flight budget before 503
    /// (default 250).
    ///
    /// Example: --ingest-wait-ms 1000
    #[arg(long, env = "SEALOG_INGEST_WAIT_MS", value_name = "MS")]
    ingest_wait_ms: Option<u64>,

    /// Seconds in-flight requests get to finish at shutdown (default 30).
    ///
    /// Example: --shutdown-grace-secs 10
    #[arg(long, env = "SEALOG_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    shutdown_grace_secs: Option<u64>,

    /// Idempotency keys remembered (default 100000).
    ///
    /// Example: --idempotency-keys 10000
    #[arg(long, env = "SEALOG_IDEMPOTENCY_KEYS", value_name = "N")]
    idempotency_keys: Option<u64>,

    /// Seconds an idempotency key is remembered (default 86400).
    ///
    /// Example: --idempotency-ttl-secs 3600
    #[arg(long, env = "SEALOG_IDEMPOTENCY_TTL_SECS", value_name = "SECS")]
    idempotency_ttl_secs: Option<u64>,

    /// Tail (SSE) streams open at once (default 1000).
    ///
    /// Example: --max-tail-streams 100
    #[arg(long, env = "SEALOG_MAX_TAIL_STREAMS", value_name = "N")]
    max_tail_streams: Option<u64>,

    /// Refused requests recorded one by one every 10 s per token, and per
    /// source address for callers without a valid token (default 20); the
    /// rest go into one summary event per token or address.
    ///
    /// Example: --refusals-per-window 5
    #[arg(long, env = "SEALOG_REFUSALS_PER_WINDOW", value_name = "N")]
    refusals_per_window: Option<u64>,

    /// Archive sealed segments in the background to this archive (as
    /// `sealog archive`: file:///path, s3://bucket/prefix, gs://…, az://…;
    /// credentials from the AWS_*, GOOGLE_*, AZURE_* variables), retrying
    /// with backoff; lag and failures are in /metrics.
    ///
    /// Example: --archive s3://audit-archive/prod
    #[arg(long, env = "SEALOG_ARCHIVE", value_name = "URL")]
    archive: Option<String>,

    /// With --archive: remove local sealed segments older than this once
    /// their archived copies read back identical (reads then fetch them
    /// through the archive cache).
    ///
    /// Example: --archive-retain-local 90d
    #[arg(long, env = "SEALOG_ARCHIVE_RETAIN_LOCAL", value_name = "DURATION")]
    archive_retain_local: Option<String>,

    /// With --archive: size of the cache of segments fetched back from the
    /// archive for reads (default 1GiB; in <data-dir>/archive-cache).
    ///
    /// Example: --archive-cache 4GiB
    #[arg(long, env = "SEALOG_ARCHIVE_CACHE", value_name = "SIZE")]
    archive_cache: Option<String>,
}

impl ServeArgs {
    fn layer(&self, global: &Global, data_dir_given: bool) -> Layer {
        Layer {
            listen: self.listen.clone(),
            data_dir: data_dir_given.then(|| global.data_dir.clone()),
            tokens: self.tokens.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            signing_key: global.signing_key.clone(),
            segment_size: global.segment_size.map(sealog_server::config::Size::Bytes),
            secrets: self.secrets.secrets.map(|m| {
                match m {
                    SecretsMode::Refuse => "refuse",
                    SecretsMode::Redact => "redact",
                }
                .to_owned()
            }),
            max_body_bytes: self.max_body_bytes,
            max_event_bytes: self.max_event_bytes,
            max_batch_events: self.max_batch_events,
            request_timeout_secs: self.request_timeout_secs,
            header_timeout_secs: self.header_timeout_secs,
            body_timeout_secs: self.body_timeout_secs,
            verify_timeout_secs: self.verify_timeout_secs,
            max_connections: self.max_connections,
            ingest_inflight_bytes: self.ingest_inflight_bytes,
            ingest_inflight_batches: self.ingest_inflight_batches,
            ingest_wait_ms: self.ingest_wait_ms,
            shutdown_grace_secs: self.shutdown_grace_secs,
            idempotency_keys: self.idempotency_keys,
            idempotency_ttl_secs: self.idempotency_ttl_secs,
            max_tail_streams: self.max_tail_streams,
            refusals_per_window: self.refusals_per_window,
            archive: self.archive.clone(),
            archive_retain_local: self.archive_retain_local.clone(),
            archive_cache: self
                .archive_cache
                .clone()
                .map(sealog_server::config::Size::Text),
        }
    }
}

fn config_error(e: sealog_server::ConfigError) -> CliError {
    CliError::usage(e.message, e.fix)
}

/// The command line's form of a server error: its own fix, and for a
/// damaged store the report of `sealog verify` (with where it is).
fn server_error(e: ServerError) -> CliError {
    match e {
        ServerError::Config(e) => config_error(e),
        ServerError::Store {
            dir,
            source: sealog::Error::Corruption(corruption),
            ..
        } => CliError::Corrupt { dir, corruption },
        other => CliError::failed(other.to_string(), other.fix()),
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(global: &Global, args: ServeArgs, data_dir_given: bool) -> Result<(), CliError> {
    let file = match &args.config {
        Some(path) => Layer::from_file(path).map_err(config_error)?,
        None => Layer::default(),
    };
    let settings = args
        .layer(global, data_dir_given)
        .or(file)
        .resolve()
        .map_err(config_error)?;
    if !args.create {
        check_store_exists(&settings.data_dir)?;
    }
    // The segment size and the secret guard come with the settings
    // (`Server::bind` applies them).
    let effective = Global {
        data_dir: settings.data_dir.clone(),
        segment_size: None,
        signing_key: settings.signing_key.clone(),
    };
    let options = effective.store_options()?;
    // One descriptor per connection: take all the process may have.
    sealog_server::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sealog-http")
        .build()
        .map_err(|e| {
            CliError::failed(
                format!("cannot start the runtime: {e}"),
                "check the system's limits on threads",
            )
        })?;
    runtime.block_on(async move {
        // The handlers exist before the address is printed: a SIGTERM sent
        // as soon as the server says it listens (a supervisor's quick
        // restart, say) must shut it down gracefully, not kill it.
        let shutdown = shutdown_signal()?;
        let server = Server::bind(&settings, options)
            .await
            .map_err(server_error)?;
        let url = server.url();
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {url}");
            let _ = out.flush();
        }
        eprintln!(
            "sealog serve: store {}, {}, {}{}",
            settings.data_dir.display(),
            match &settings.tokens {
                Some(p) => format!("tokens from {}", p.display()),
                None => "NO AUTHENTICATION (no tokens file; loopback only)".into(),
            },
            if settings.tls.is_some() {
                "TLS"
            } else {
                "plain HTTP"
            },
            if settings.signing_key.is_some() {
                ", signing checkpoints"
            } else {
                ", no signing key (no checkpoints or receipts)"
            }
        );
        server.run(shutdown).await.map_err(server_error)?;
        eprintln!("sealog serve: stopped");
        Ok(())
    })
}

/// Registers the SIGTERM and SIGINT handlers now, and returns the future
/// that completes on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let handler = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| {
            CliError::failed(
                format!("cannot handle {name}: {e}"),
                "check the system's limits on signals",
            )
        })
    };
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = handler(SignalKind::interrupt(), "SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => eprintln!("sealog serve: SIGINT received"),
            _ = term.recv() => eprintln!("sealog serve: SIGTERM received"),
        }
    })
}
