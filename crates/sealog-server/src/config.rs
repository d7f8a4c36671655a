//! The server's configuration: where to listen, the store, the tokens, TLS,
//! and every limit, with its default.
//!
//! Settings come in [`Layer`]s: the command line and environment (merged
//! by the CLI), then a TOML file, then the defaults here. The first layer
//! that sets a value wins ([`Layer::or`]); [`Layer::resolve`] fills in the
//! defaults and checks the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealog::StoreOptions;
use sealog::format::{SecretGuard, SecretPolicy};
use sealog::privacy::{PrivacyKey, PrivacyPolicy};
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7807";
/// The default data directory (the same as the rest of the command line).
pub const DEFAULT_DATA_DIR: &str = "./sealog-data";

/// Limits on requests, connections and in-flight work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (default 16 MiB).
    pub max_body_bytes: u64,
    /// Largest single event, as JSON (default 64 KiB).
    pub max_event_bytes: u64,
    /// Most events in one batch (default 10,000).
    pub max_batch_events: u64,
    /// Time to answer a request, body included (default 30 s). Streams
    /// (NDJSON export, tail) are exempt once their headers are sent.
    pub request_timeout: Duration,
    /// Time for a client to send the request head (default 10 s).
    pub header_timeout: Duration,
    /// Time for a client to send the request body (default 20 s): slow
    /// senders are cut off.
    pub body_timeout: Duration,
    /// Time `POST /v1/verify` may take (default 10 min).
    pub verify_timeout: Duration,
    /// Open connections at once (default 10,000); more wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
    /// Memory of the batches being ingested at once, their decoded bodies
    /// and parsed events (default 64 MiB).
    pub ingest_inflight_bytes: u64,
    /// Batches being parsed and appended at once (default 1,024). Their
    /// memory is bounded by `ingest_inflight_bytes`; this bounds their
    /// count. A batch past it waits for a slot (at most `ingest_wait`).
    pub ingest_inflight_batches: usize,
    /// How long a batch waits for the in-flight budget before the server
    /// answers 503 (default 250 ms).
    pub ingest_wait: Duration,
    /// Time in-flight requests get to finish on shutdown (default 30 s).
    pub shutdown_grace: Duration,
    /// Idempotency keys remembered (default 100,000).
    pub idempotency_keys: usize,
    /// Receipts remembered across all idempotency keys (default 1,000,000,
    /// about 100 MB).
    pub idempotency_receipts: usize,
    /// How long an idempotency key is remembered (default 24 h).
    pub idempotency_ttl: Duration,
    /// Concurrent tail (SSE) streams (default 1,000).
    pub max_tail_streams: usize,
    /// Concurrent NDJSON exports (default 16).
    pub max_exports: usize,
    /// Refused requests recorded one by one per window and token, and per
    /// source address for callers without a valid token (default 20); the
    /// rest are counted in one summary event per token or address.
    pub refusals_per_window: u32,
    /// The window of [`Limits::refusals_per_window`] (default 10 s).
    pub refusal_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_event_bytes: 64 << 10,
            max_batch_events: 10_000,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            verify_timeout: Duration::from_secs(600),
            max_connections: 10_000,
            ingest_inflight_bytes: 64 << 20,
            ingest_inflight_batches: 1024,
            ingest_wait: Duration::from_millis(250),
            shutdown_grace: Duration::from_secs(30),
            idempotency_keys: 100_000,
            idempotency_receipts: 1_000_000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_tail_streams: 1_000,
            max_exports: 16,
            refusals_per_window: 20,
            refusal_window: Duration::from_secs(10),
        }
    }
}

/// TLS certificate chain and private key, PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Everything the server needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The store directory.
    pub data_dir: PathBuf,
    /// The tokens file; `None`: no authentication (loopback only).
    pub tokens: Option<PathBuf>,
    /// TLS, if configured.
    pub tls: Option<TlsFiles>,
    /// The log's private key file, if configured.
    pub signing_key: Option<PathBuf>,
    /// The segment size, if configured (else the store options' own).
    pub segment_size: Option<u64>,
    /// Whether sealed segments are stored compressed, if configured (else
    /// the store options' own).
    pub compress: Option<bool>,
    /// What the secret guard does with a secret-looking metadata key, if
    /// configured (else the store options' own: refuse).
    pub secrets: Option<SecretPolicy>,
    /// The privacy transforms, with their key loaded, if configured.
    pub privacy: Option<PrivacyPolicy>,
    /// The alert rules file evaluated on the live log, if configured.
    pub alerts_rules: Option<PathBuf>,
    /// Limits.
    pub limits: Limits,
    /// The forwarders (`[[forward]]` tables, docs/siem.md).
    pub forward: Vec<crate::forward::ForwardConfig>,
    /// Background archiving, if configured.
    pub archive: Option<crate::archiving::ArchiveSettings>,
}

impl Settings {
    /// `base` with the store settings of this configuration applied: the
    /// segment size, the secret guard's policy and the privacy policy,
    /// where they are set.
    pub fn store_options(&self, mut base: StoreOptions) -> StoreOptions {
        if let Some(size) = self.segment_size {
            base.segment_size = size;
        }
        match self.compress {
            Some(true) => base.compression = sealog::Compression::ZSTD,
            Some(false) => base.compression = sealog::Compression::None,
            None => {}
        }
        if let Some(policy) = self.secrets {
            base.validator.secrets = SecretGuard::with_policy(policy);
        }
        if let Some(privacy) = &self.privacy {
            base.privacy = privacy.clone();
        }
        base
    }
}

/// A size in bytes, as a config file gives it: a number of bytes, or a
/// string with a binary unit (`"16MiB"`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A number of bytes.
    Bytes(u64),
    /// A number with a unit, parsed by [`parse_size`].
    Text(String),
}

/// A size flag (`--archive-cache 4GiB`), checked as [`parse_size`] does.
#[cfg(feature = "clap")]
fn size_flag(text: &str) -> Result<Size, String> {
    parse_size(text)?;
    Ok(Size::Text(text.to_owned()))
}

/// Parses a size: a number of bytes, or a number followed by a binary unit
/// `KiB`, `MiB` or `GiB` (`K`, `M` and `G` for short; `B` for bytes), with
/// or without a space: `65536`, `512KiB`, `16MiB`, `1 GiB`. Decimal units
/// (`MB`) are refused rather than guessed at.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        |why: &str| format!("`{text}` is not a size: {why} (e.g. 65536, 512KiB, 16MiB, 1GiB)");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let n: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" | "kiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "KB" | "kB" | "MB" | "GB" => {
            return Err(bad("decimal units are ambiguous here; use KiB, MiB or GiB"));
        }
        _ => return Err(bad("the unit must be KiB, MiB or GiB")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| bad("the size is too large"))
}

/// Declares [`Layer`] and, from the same field list, [`Layer::KEYS`] and
/// [`Layer::or`]: a key is one field, whatever reads it.
macro_rules! layer_struct {
    (
        $(#[$meta:meta])*
        pub struct Layer {
            $( $(#[$field_meta:meta])* pub $field:ident: Option<$ty:ty>, )*
        }
    ) => {
        $(#[$meta])*
        pub struct Layer {
            $( $(#[$field_meta])* pub $field: Option<$ty>, )*
        }

        impl Layer {
            /// The keys of the config file, in declaration order (the flags
            /// are these with `-` for `_`, the environment variables
            /// `SEALOG_` and these in capitals).
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// This layer, with unset values taken from `other`.
            pub fn or(self, other: Layer) -> Layer {
                Layer { $( $field: self.$field.or(other.$field), )* }
            }
        }
    };
}

layer_struct! {
    /// One source of settings, every one optional: the TOML config file
    /// (exactly these keys; any other is refused by name) and, with the
    /// `clap` feature, the flags of `sealog serve` with their `SEALOG_*`
    /// environment variables. The store's settings (`data_dir`,
    /// `signing_key`, `segment_size`, `secrets`) are options the command
    /// line shares with other commands, so they are not flags here. Every
    /// key is listed with its default in docs/api.md.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[cfg_attr(feature = "clap", derive(clap::Args))]
    #[allow(
        rustdoc::broken_intra_doc_links,
        rustdoc::invalid_html_tags,
        reason = "the field docs are also the flags' help, plain text for a terminal: \
                  `[::1]:7807` and `<data-dir>` are not links or HTML there"
    )]
    pub struct Layer {
        /// Address to listen on (default 127.0.0.1:7807; port 0 picks a free
        /// port, printed on the first line of standard output).
        ///
        /// Example: --listen 0.0.0.0:7807   or   --listen [::1]:7807
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_LISTEN", value_name = "IP:PORT"))]
        pub listen: Option<String>,

        /// The store directory (default ./sealog-data): the global --data-dir.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub data_dir: Option<PathBuf>,

        /// The tokens file (default <data-dir>/tokens.json, if it exists).
        ///
        /// Example: --tokens /etc/sealog/tokens.json
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_TOKENS", value_name = "FILE"))]
        pub tokens: Option<PathBuf>,

        /// TLS certificate chain, PEM (with --tls-key).
        ///
        /// Example: --tls-cert /etc/sealog/cert.pem
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_TLS_CERT", value_name = "PEM"))]
        pub tls_cert: Option<PathBuf>,

        /// TLS private key, PEM (with --tls-cert).
        ///
        /// Example: --tls-key /etc/sealog/key.pem
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_TLS_KEY", value_name = "PEM"))]
        pub tls_key: Option<PathBuf>,

        /// An alert rules file (TOML, see docs/alerts.md) evaluated on the live
        /// log (default none): alerts become `alert.raised` events, go to the
        /// file's webhooks and stream on GET /v1/alerts. The cursor and the
        /// dead-letter file are kept in <data-dir>/alerts/.
        ///
        /// Example: --alerts-rules /etc/sealog/rules.toml
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_ALERTS_RULES", value_name = "FILE")
        )]
        pub alerts_rules: Option<PathBuf>,

        /// The log's private signing key file: the global --signing-key.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub signing_key: Option<PathBuf>,

        /// The size of each segment file, bytes or a string with a binary unit
        /// (`"16MiB"`): the global --segment-size.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub segment_size: Option<Size>,

        /// Store sealed segments compressed (zstd; default false): the
        /// global --compress.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub compress: Option<bool>,

        /// What the secret guard does with a secret-looking metadata key,
        /// `refuse` (the default) or `redact`: the --secrets of the commands that
        /// take events.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub secrets: Option<String>,

        /// The privacy rules, `FIELD=TRANSFORM`, applied to every event before
        /// it is written and to query values (default none; docs/privacy.md):
        /// the --privacy of the commands that take events or queries.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub privacy: Option<Vec<String>>,

        /// The privacy key file, for the `hash` rules (at least 32 bytes; keep
        /// it out of the data directory): the --privacy-key of those commands.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub privacy_key: Option<PathBuf>,

        /// Largest request body in bytes (default 16777216).
        ///
        /// Example: --max-body-bytes 4194304
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_MAX_BODY_BYTES", value_name = "BYTES")
        )]
        pub max_body_bytes: Option<u64>,

        /// Largest single event in bytes of JSON (default 65536).
        ///
        /// Example: --max-event-bytes 16384
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_MAX_EVENT_BYTES", value_name = "BYTES")
        )]
        pub max_event_bytes: Option<u64>,

        /// Most events in one request (default 10000).
        ///
        /// Example: --max-batch-events 5000
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_MAX_BATCH_EVENTS", value_name = "N"))]
        pub max_batch_events: Option<u64>,

        /// Seconds a request may take, body included (default 30).
        ///
        /// Example: --request-timeout-secs 10
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_REQUEST_TIMEOUT_SECS", value_name = "SECS")
        )]
        pub request_timeout_secs: Option<u64>,

        /// Seconds a client has to send the request head (default 10).
        ///
        /// Example: --header-timeout-secs 5
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_HEADER_TIMEOUT_SECS", value_name = "SECS")
        )]
        pub header_timeout_secs: Option<u64>,

        /// Seconds a client has to send the request body (default 20).
        ///
        /// Example: --body-timeout-secs 10
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_BODY_TIMEOUT_SECS", value_name = "SECS")
        )]
        pub body_timeout_secs: Option<u64>,

        /// Seconds `POST /v1/verify` may take (default 600).
        ///
        /// Example: --verify-timeout-secs 3600
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_VERIFY_TIMEOUT_SECS", value_name = "SECS")
        )]
        pub verify_timeout_secs: Option<u64>,

        /// Open connections at once (default 10000).
        ///
        /// Example: --max-connections 2000
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_MAX_CONNECTIONS", value_name = "N"))]
        pub max_connections: Option<u64>,

        /// Memory of the batches being ingested at once, bodies (decoded) and
        /// parsed events (default 67108864); a batch that cannot fit within
        /// --ingest-wait-ms gets 503.
        ///
        /// Example: --ingest-inflight-bytes 33554432
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_INGEST_INFLIGHT_BYTES", value_name = "BYTES")
        )]
        pub ingest_inflight_bytes: Option<u64>,

        /// Batches being parsed and appended at once (default 1024).
        ///
        /// Example: --ingest-inflight-batches 256
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_INGEST_INFLIGHT_BATCHES", value_name = "N")
        )]
        pub ingest_inflight_batches: Option<u64>,

        /// Milliseconds a batch waits for the in-flight budget before 503
        /// (default 250).
        ///
        /// Example: --ingest-wait-ms 1000
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_INGEST_WAIT_MS", value_name = "MS"))]
        pub ingest_wait_ms: Option<u64>,

        /// Seconds in-flight requests get to finish at shutdown (default 30).
        ///
        /// Example: --shutdown-grace-secs 10
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_SHUTDOWN_GRACE_SECS", value_name = "SECS")
        )]
        pub shutdown_grace_secs: Option<u64>,

        /// Idempotency keys remembered (default 100000).
        ///
        /// Example: --idempotency-keys 10000
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_IDEMPOTENCY_KEYS", value_name = "N"))]
        pub idempotency_keys: Option<u64>,

        /// Seconds an idempotency key is remembered (default 86400).
        ///
        /// Example: --idempotency-ttl-secs 3600
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_IDEMPOTENCY_TTL_SECS", value_name = "SECS")
        )]
        pub idempotency_ttl_secs: Option<u64>,

        /// Tail (SSE) streams open at once (default 1000).
        ///
        /// Example: --max-tail-streams 100
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_MAX_TAIL_STREAMS", value_name = "N"))]
        pub max_tail_streams: Option<u64>,

        /// Refused requests recorded one by one every 10 s per token, and per
        /// source address for callers without a valid token (default 20); the
        /// rest go into one summary event per token or address.
        ///
        /// Example: --refusals-per-window 5
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_REFUSALS_PER_WINDOW", value_name = "N")
        )]
        pub refusals_per_window: Option<u64>,


        /// Archive sealed segments in the background to this archive (as
        /// `sealog archive`: file:///path, s3://bucket/prefix, gs://…, az://…;
        /// credentials from the AWS_*, GOOGLE_*, AZURE_* variables), retrying
        /// with backoff; lag and failures are in /metrics.
        ///
        /// Example: --archive s3://audit-archive/prod
        #[cfg_attr(feature = "clap", arg(long, env = "SEALOG_ARCHIVE", value_name = "URL"))]
        pub archive: Option<String>,

        /// With --archive: remove local sealed segments older than this once
        /// their archived copies read back identical (reads then fetch them
        /// through the archive cache).
        ///
        /// Example: --archive-retain-local 90d
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_ARCHIVE_RETAIN_LOCAL", value_name = "DURATION")
        )]
        pub archive_retain_local: Option<String>,

        /// With --archive: size of the cache of segments fetched back from the
        /// archive for reads (default 1GiB), in <data-dir>/archive-cache.
        ///
        /// Example: --archive-cache 4GiB
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_ARCHIVE_CACHE", value_name = "SIZE", value_parser = size_flag)
        )]
        pub archive_cache: Option<Size>,

        /// With --archive: also archive each sealed segment's records as
        /// Parquet, one file per event date under parquet/date=YYYY-MM-DD/ in
        /// the archive, for SQL engines over the bucket (default false).
        ///
        /// Example: --archive-parquet true
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_ARCHIVE_PARQUET", value_name = "BOOL")
        )]
        pub archive_parquet: Option<bool>,

        /// With --archive: retain every uploaded object this long (S3 Object
        /// Lock, sent with each upload): d, w or y units. Without it the
        /// bucket's default retention applies, if any.
        ///
        /// Example: --archive-retain 400d
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_ARCHIVE_RETAIN", value_name = "DURATION")
        )]
        pub archive_retain: Option<String>,

        /// With --archive-retain: the Object Lock mode, compliance (default)
        /// or governance.
        ///
        /// Example: --archive-lock-mode governance
        #[cfg_attr(
            feature = "clap",
            arg(long, env = "SEALOG_ARCHIVE_LOCK_MODE", value_name = "MODE")
        )]
        pub archive_lock_mode: Option<String>,
        /// Forwarders to SIEMs: `[[forward]]` tables of the config file only
        /// (see docs/siem.md), no flag.
        #[cfg_attr(feature = "clap", arg(skip))]
        pub forward: Option<Vec<crate::forward::ForwardConfig>>,
    }
}

/// A configuration problem: what is wrong, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// What is wrong, naming the setting.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl ConfigError {
    /// A problem and its fix.
    pub fn new(message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Loads the key and parses the rules of the privacy settings.
fn resolve_privacy(
    rules: Option<Vec<String>>,
    key: Option<PathBuf>,
) -> Result<Option<PrivacyPolicy>, ConfigError> {
    let fix = "give privacy rules as FIELD=TRANSFORM (privacy = [\"source.ip=mask\", \
               \"actor.id=hash\"]) and, for hash rules, privacy_key = the path of a key file of \
               at least 32 bytes (`head -c 32 /dev/urandom > privacy.key`); see docs/privacy.md";
    let key = match key {
        Some(path) => {
            Some(PrivacyKey::from_file(&path).map_err(|e| ConfigError::new(e.to_string(), fix))?)
        }
        None => None,
    };
    let rules = rules.unwrap_or_default();
    if rules.is_empty() {
        if key.is_some() {
            return Err(ConfigError::new(
                "privacy_key is set but there are no privacy rules",
                fix,
            ));
        }
        return Ok(None);
    }
    PrivacyPolicy::parse(&rules, key)
        .map(Some)
        .map_err(|e| ConfigError::new(e.to_string(), fix))
}

/// Where a setting is set: its flag, environment variable and config key.
fn setting(key: &str) -> String {
    format!(
        "--{} (or SEALOG_{}, or `{key}` in the config file)",
        key.replace('_', "-"),
        key.to_ascii_uppercase()
    )
}

impl Layer {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let fix = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the path given with --config (or SEALOG_CONFIG), or leave it out to \
                     use flags and defaults only"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "let the user running the server read the file (or pass another with \
                     --config)"
                }
                _ => "check the file given with --config (or SEALOG_CONFIG)",
            };
            ConfigError::new(
                format!("cannot read the config file `{}`: {e}", path.display()),
                fix,
            )
        })?;
        toml::from_str(&text).map_err(|e| {
            let text = e.to_string();
            let fix = if text.contains("unknown field") {
                "remove or rename the key named above: the keys are the flags of `sealog serve \
                 --help` with underscores (listen, data_dir, tokens, tls_cert, tls_key, \
                 signing_key, max_body_bytes, ...), listed in docs/api.md"
            } else if text.contains("invalid type") {
                "give the key a value of its type: numbers bare (max_body_bytes = 4194304), \
                 addresses and paths quoted (listen = \"127.0.0.1:7807\")"
            } else {
                "fix the TOML syntax at the line and column named above"
            };
            ConfigError::new(
                format!("the config file `{}` is invalid: {text}", path.display()),
                fix,
            )
        })
    }

    /// Fills in the defaults and checks the values.
    ///
    /// The tokens file defaults to `<data-dir>/tokens.json` when that file
    /// exists; without one the server runs unauthenticated, which
    /// [`crate::Server::bind`] allows only on a loopback address.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::new(
                format!("listen address `{listen_text}` is not IP:PORT"),
                format!(
                    "give {} as an IP address and a port, e.g. 127.0.0.1:7807, [::1]:7807 or \
                     0.0.0.0:7807 (host names are not accepted; port 0 picks a free port)",
                    setting("listen")
                ),
            )
        })?;
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let tokens = match self.tokens {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::new(
                        format!("the tokens file `{}` does not exist", path.display()),
                        format!(
                            "create it with a first token: `sealog token create --tokens {} \
                             --name NAME --scopes ingest,query`; or drop --tokens to use \
                             <data-dir>/tokens.json",
                            path.display()
                        ),
                    ));
                }
                Some(path)
            }
            None => {
                let default = data_dir.join(crate::tokens::DEFAULT_FILE_NAME);
                default.exists().then_some(default)
            }
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (cert, _) => {
                let (given, missing) = if cert.is_some() {
                    ("--tls-cert", "--tls-key")
                } else {
                    ("--tls-key", "--tls-cert")
                };
                return Err(ConfigError::new(
                    format!("{given} is set but {missing} is not: TLS needs both"),
                    "pass both --tls-cert and --tls-key (or tls_cert and tls_key in the config \
                     file), or neither to serve plain HTTP",
                ));
            }
        };
        let segment_size = match self.segment_size {
            None => None,
            Some(size) => {
                let bytes = match size {
                    Size::Bytes(n) => n,
                    Size::Text(text) => parse_size(&text).map_err(|e| {
                        ConfigError::new(
                            format!("segment_size: {e}"),
                            "give a size with a unit, e.g. segment_size = \"16MiB\", or a \
                             number of bytes",
                        )
                    })?,
                };
                if !(sealog::MIN_SEGMENT_SIZE..=sealog::MAX_SEGMENT_SIZE).contains(&bytes) {
                    return Err(ConfigError::new(
                        format!(
                            "segment_size: {bytes} bytes is outside the sizes allowed, 4KiB ({}) \
                             to 1GiB ({})",
                            sealog::MIN_SEGMENT_SIZE,
                            sealog::MAX_SEGMENT_SIZE
                        ),
                        "set segment_size between 4KiB and 1GiB (64MiB, the default, suits \
                         most stores), or leave it out",
                    ));
                }
                Some(bytes)
            }
        };
        let secrets = match self.secrets.as_deref() {
            None => None,
            Some("refuse") => Some(SecretPolicy::Reject),
            Some("redact") => Some(SecretPolicy::Redact),
            Some(other) => {
                return Err(ConfigError::new(
                    format!("secrets: `{other}` is not a mode of the secret guard"),
                    "use \"refuse\" (refuse events whose metadata has a secret-looking key; the \
                     default) or \"redact\" (store them with the value replaced by \
                     \"[REDACTED]\")",
                ));
            }
        };
        let privacy = resolve_privacy(self.privacy, self.privacy_key)?;
        let d = Limits::default();
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        let positive = |name: &str, v: Option<u64>| -> Result<Option<u64>, ConfigError> {
            match v {
                Some(0) => Err(ConfigError::new(
                    format!("{name} is 0; it must be positive"),
                    format!(
                        "set {} to a number above 0, or leave it out for its default",
                        setting(name)
                    ),
                )),
                other => Ok(other),
            }
        };
        let size = |v: Option<u64>, default: usize| {
            v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        let max_body_bytes = positive("max_body_bytes", self.max_body_bytes)?;
        if max_body_bytes.is_some_and(|b| b > u64::from(u32::MAX)) {
            return Err(ConfigError::new(
                "max_body_bytes is 4 GiB or more",
                format!(
                    "set {} below 4294967296 (the default is 16777216)",
                    setting("max_body_bytes")
                ),
            ));
        }
        let limits = Limits {
            max_body_bytes: max_body_bytes.unwrap_or(d.max_body_bytes),
            max_event_bytes: positive("max_event_bytes", self.max_event_bytes)?
                .unwrap_or(d.max_event_bytes),
            max_batch_events: positive("max_batch_events", self.max_batch_events)?
                .unwrap_or(d.max_batch_events),
            request_timeout: secs(
                positive("request_timeout_secs", self.request_timeout_secs)?,
                d.request_timeout,
            ),
            header_timeout: secs(
                positive("header_timeout_secs", self.header_timeout_secs)?,
                d.header_timeout,
            ),
            body_timeout: secs(
                positive("body_timeout_secs", self.body_timeout_secs)?,
                d.body_timeout,
            ),
            verify_timeout: secs(
                positive("verify_timeout_secs", self.verify_timeout_secs)?,
                d.verify_timeout,
            ),
            max_connections: size(
                positive("max_connections", self.max_connections)?,
                d.max_connections,
            ),
            ingest_inflight_bytes: positive("ingest_inflight_bytes", self.ingest_inflight_bytes)?
                .unwrap_or(d.ingest_inflight_bytes),
            ingest_inflight_batches: size(
                positive("ingest_inflight_batches", self.ingest_inflight_batches)?,
                d.ingest_inflight_batches,
            ),
            ingest_wait: self
                .ingest_wait_ms
                .map_or(d.ingest_wait, Duration::from_millis),
            shutdown_grace: secs(self.shutdown_grace_secs, d.shutdown_grace),
            idempotency_keys: size(self.idempotency_keys, d.idempotency_keys),
            idempotency_receipts: d.idempotency_receipts,
            idempotency_ttl: secs(self.idempotency_ttl_secs, d.idempotency_ttl),
            max_tail_streams: size(self.max_tail_streams, d.max_tail_streams),
            max_exports: d.max_exports,
            refusals_per_window: self.refusals_per_window.map_or(d.refusals_per_window, |v| {
                u32::try_from(v).unwrap_or(u32::MAX)
            }),
            refusal_window: d.refusal_window,
        };
        let archive = crate::archiving::resolve(
            crate::archiving::ArchiveKeys {
                url: self.archive,
                retain_local: self.archive_retain_local,
                cache: self.archive_cache,
                parquet: self.archive_parquet,
                retain: self.archive_retain,
                lock_mode: self.archive_lock_mode,
            },
            &data_dir,
        )?;
        Ok(Settings {
            listen,
            data_dir,
            tokens,
            tls,
            signing_key: self.signing_key,
            segment_size,
            compress: self.compress,
            secrets,
            privacy,
            alerts_rules: self.alerts_rules,
            limits,
            forward: self.forward.unwrap_or_default(),
            archive,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn earlier_layers_win_and_defaults_fill_the_rest() {
        let flags = Layer {
            listen: Some("127.0.0.1:9000".into()),
            ..Layer::default()
        };
        let file: Layer = toml::from_str(
            "listen = \"0.0.0.0:1\"\nmax_body_bytes = 1024\ndata_dir = \"/nonexistent\"\n",
        )
        .unwrap();
        let s = flags.or(file).resolve().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(s.limits.max_body_bytes, 1024);
        assert_eq!(s.limits.max_batch_events, 10_000);
        assert_eq!(s.data_dir, PathBuf::from("/nonexistent"));
        assert!(s.tokens.is_none());
    }

    fn archive_of(toml: &str) -> Result<Option<crate::archiving::ArchiveSettings>, String> {
        let layer: Layer = toml::from_str(toml).unwrap();
        layer.resolve().map(|s| s.archive).map_err(|e| e.message)
    }

    #[test]
    fn archive_keys_resolve_and_are_refused_without_the_archive() {
        let a = archive_of(
            "archive = \"s3://b/p\"\narchive_parquet = true\narchive_retain = \"400d\"\n\
             archive_lock_mode = \"GOVERNANCE\"\n",
        )
        .unwrap()
        .unwrap();
        assert!(a.parquet);
        let lock = a.lock.unwrap();
        assert_eq!(lock.mode, sealog_archive::LockMode::Governance);
        assert_eq!(lock.retain, Duration::from_secs(400 * 86_400));
        let plain = archive_of("archive = \"s3://b/p\"\n").unwrap().unwrap();
        assert!(!plain.parquet);
        assert!(plain.lock.is_none());
        let retain_only = archive_of("archive = \"s3://b/p\"\narchive_retain = \"30d\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            retain_only.lock.unwrap().mode,
            sealog_archive::LockMode::Compliance
        );
        assert_eq!(archive_of("").unwrap(), None);
        for key in [
            "archive_parquet = true",
            "archive_retain = \"400d\"",
            "archive_cache = \"1GiB\"",
            "archive_retain_local = \"90d\"",
        ] {
            let name = key.split(' ').next().unwrap();
            let e = archive_of(key).unwrap_err();
            assert!(
                e.starts_with(&format!("{name} is set but archive is not")),
                "{e}"
            );
        }
        let e =
            archive_of("archive = \"s3://b/p\"\narchive_lock_mode = \"governance\"\n").unwrap_err();
        assert!(e.contains("archive_retain is not"), "{e}");
        let e = archive_of(
            "archive = \"s3://b/p\"\narchive_retain = \"1d\"\narchive_lock_mode = \"legal\"\n",
        )
        .unwrap_err();
        assert!(e.contains("`legal` is not an Object Lock mode"), "{e}");
        let e = archive_of("archive = \"s3://b/p\"\narchive_retain = \"soon\"\n").unwrap_err();
        assert!(e.contains("archive_retain"), "{e}");
    }

    #[test]
    fn nothing_at_all_is_a_working_configuration() {
        let s = Layer::default().resolve().unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn sizes_take_binary_units_and_refuse_decimal_ones() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size(" 1 GiB "), Ok(1 << 30));
        assert!(parse_size("16MB").unwrap_err().contains("MiB"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("17179869184GiB").is_err());
    }

    #[test]
    fn segment_size_and_secrets_keys_reach_the_store_options() {
        let file: Layer =
            toml::from_str("segment_size = \"16MiB\"\nsecrets = \"redact\"\n").unwrap();
        let s = file.resolve().unwrap();
        let options = s.store_options(StoreOptions::default());
        assert_eq!(options.segment_size, 16 << 20);
        assert_eq!(options.validator.secrets.policy(), SecretPolicy::Redact);
        let bytes: Layer = toml::from_str("segment_size = 65536\n").unwrap();
        assert_eq!(bytes.resolve().unwrap().segment_size, Some(65536));
        // Unset keys leave the options as they were.
        let none = Layer::default().resolve().unwrap();
        let options = none.store_options(StoreOptions::default());
        assert_eq!(options.segment_size, StoreOptions::default().segment_size);
        assert_eq!(options.validator.secrets.policy(), SecretPolicy::Reject);
        for bad in [
            "segment_size = \"2KiB\"\n",
            "segment_size = \"2GiB\"\n",
            "segment_size = \"16MB\"\n",
            "secrets = \"allow\"\n",
        ] {
            let layer: Layer = toml::from_str(bad).unwrap();
            let e = layer.resolve().unwrap_err().to_string();
            assert!(
                e.starts_with("segment_size") || e.starts_with("secrets"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn privacy_keys_load_the_key_and_reach_the_store_options() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("privacy.key");
        std::fs::write(&key, [5u8; 32]).unwrap();
        let toml = format!(
            "privacy = [\"source.ip=mask\", \"actor.id=hash\"]\nprivacy_key = {:?}\n",
            key.display().to_string()
        );
        let layer: Layer = toml::from_str(&toml).unwrap();
        let options = layer
            .resolve()
            .unwrap()
            .store_options(StoreOptions::default());
        let rules: Vec<String> = options
            .privacy
            .rules()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(rules, ["source.ip=mask", "actor.id=hash"]);
        assert_eq!(
            options.privacy.key().unwrap().hash(b"alice"),
            PrivacyKey::from_bytes(&[5u8; 32]).unwrap().hash(b"alice")
        );
        // A short key, a missing key file, a hash rule without a key and a
        // bad rule are errors at startup.
        std::fs::write(&key, [5u8; 16]).unwrap();
        let short = format!(
            "privacy = [\"actor.id=hash\"]\nprivacy_key = {:?}\n",
            key.display().to_string()
        );
        for (bad, says) in [
            (short.as_str(), "at least 32"),
            (
                "privacy = [\"actor.id=hash\"]\nprivacy_key = \"/nonexistent/k\"\n",
                "cannot read",
            ),
            ("privacy = [\"actor.id=hash\"]\n", "no privacy key"),
            ("privacy = [\"actor.id=scramble\"]\n", "not a transform"),
        ] {
            let layer: Layer = toml::from_str(bad).unwrap();
            let e = layer.resolve().unwrap_err();
            assert!(e.message.contains(says), "{bad}: {e}");
            assert!(e.fix.contains("docs/privacy.md"), "{bad}: {}", e.fix);
        }
    }

    #[test]
    fn unknown_keys_and_half_tls_are_refused() {
        assert!(toml::from_str::<Layer>("lisen = \"x\"").is_err());
        let half = Layer {
            tls_cert: Some("c.pem".into()),
            ..Layer::default()
        };
        assert!(half.resolve().is_err());
        let zero = Layer {
            max_body_bytes: Some(0),
            ..Layer::default()
        };
        assert!(zero.resolve().is_err());
    }
}
