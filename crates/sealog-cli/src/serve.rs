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

use crate::common::{Global, PrivacyArgs, SecretsArg, SecretsMode, check_store_exists};
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

Alerts: --alerts-rules FILE evaluates an alert rules file (docs/alerts.md)
on the live log, off the ingest path: each alert is appended as an
alert.raised event, delivered to the file's webhooks and streamed on
GET /v1/alerts.

SIGTERM or SIGINT (Ctrl-C): stop accepting, let in-flight requests finish
(at most --shutdown-grace-secs), sync and close the store, exit 0.

Examples:
  sealog serve
  sealog serve --create --data-dir /var/lib/sealog --secrets redact
  sealog serve --listen 0.0.0.0:7807 --data-dir /var/lib/sealog \\
      --signing-key /etc/sealog/log.key --tls-cert cert.pem --tls-key key.pem
  sealog serve --config /etc/sealog/server.toml
  sealog serve --alerts-rules /etc/sealog/rules.toml
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

    #[command(flatten)]
    privacy: PrivacyArgs,

    /// The server's settings (`listen`, `tokens`, TLS and the limits): the
    /// keys of the config file, as flags.
    #[command(flatten)]
    settings: Layer,
}

impl ServeArgs {
    /// The settings given as flags and environment variables, with the
    /// store's, which are options every command shares.
    fn layer(&self, global: &Global, data_dir_given: bool) -> Layer {
        Layer {
            data_dir: data_dir_given.then(|| global.data_dir.clone()),
            signing_key: global.signing_key.clone(),
            segment_size: global.segment_size.map(sealog_server::config::Size::Bytes),
            compress: global.compress.then_some(true),
            secrets: self.secrets.secrets.map(|m| {
                match m {
                    SecretsMode::Refuse => "refuse",
                    SecretsMode::Redact => "redact",
                }
                .to_owned()
            }),
            privacy: (!self.privacy.rules.is_empty()).then(|| self.privacy.rules.clone()),
            privacy_key: self.privacy.privacy_key.clone(),
            ..self.settings.clone()
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
        ServerError::Store { dir, source, .. }
            if matches!(*source, sealog::Error::Corruption(_)) =>
        {
            let sealog::Error::Corruption(corruption) = *source else {
                unreachable!("matched above")
            };
            CliError::Corrupt { dir, corruption }
        }
        // A mistake in the rules file (or its label and secret files) is
        // the user's to fix, like a wrong flag.
        ServerError::Alerts(
            e @ (sealog_alerts::Error::Rules(_)
            | sealog_alerts::Error::Labels { .. }
            | sealog_alerts::Error::Webhook { .. }),
        ) => {
            let fix = e.fix();
            CliError::usage(format!("alerts: {e}"), fix)
        }
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
        compress: false,
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
        let privacy = match &settings.privacy {
            Some(p) => format!(
                ", privacy rules {}{}",
                p.rules()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                p.key()
                    .map(|k| format!(" (privacy key id {})", k.id()))
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        eprintln!(
            "sealog serve: store {}, {}, {}{}{privacy}",
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
