//! What several commands share: the global options, opening the store,
//! query filters, parsing of flag values, and number formatting.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sealog::format::Validator;
use sealog::format::validate::{SecretGuard, SecretPolicy};
use sealog::privacy::{PrivacyKey, PrivacyPolicy};
use sealog::query::{Order, Query};
use sealog::{Outcome, Store, StoreOptions, Timestamp};

use crate::error::{CliError, flag_of_query_field};

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The store directory.
    ///
    /// Created by `sealog init` (or `serve --create`), and by `append`,
    /// `import` and `bench` when it does not exist; the other commands need
    /// an existing store. Also read from the SEALOG_DATA_DIR environment
    /// variable.
    ///
    /// Example: --data-dir /var/lib/sealog
    #[arg(
        long,
        global = true,
        env = "SEALOG_DATA_DIR",
        default_value = "./sealog-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// The size of each segment file, for the commands that write (init,
    /// append, import, serve, bench): a number of bytes, or with a unit
    /// KiB, MiB or GiB; from 4KiB to 1GiB; default 64MiB.
    ///
    /// Each segment's space is reserved when it is created, and a writer
    /// prepares the next one ahead, so a store being written needs room for
    /// two segments. On a small volume, choose a smaller size. It is an
    /// option of each writer, not stored: give the same value to every
    /// command that writes (or set SEALOG_SEGMENT_SIZE).
    ///
    /// Example: --segment-size 16MiB
    #[arg(long, global = true, env = "SEALOG_SEGMENT_SIZE", value_name = "SIZE",
          value_parser = parse_segment_size)]
    pub segment_size: Option<u64>,

    /// The log's private signing key (a file written by `sealog keygen`).
    ///
    /// With it, a store opened for writing signs checkpoints (when a
    /// segment is sealed, every minute the log grew, when it closes if the
    /// log grew, and on demand), so that the log can be verified with the
    /// public key and receipts need no key. Keep the key off the
    /// store's disk. Also read from the SEALOG_SIGNING_KEY variable.
    ///
    /// Example: --signing-key /etc/sealog/log.key
    #[arg(long, global = true, env = "SEALOG_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Store sealed segments compressed, for the commands that write
    /// (append, import, serve, bench): each segment, once sealed, is
    /// rewritten as blocks of ~16 KiB compressed with zstd (level 6, a
    /// dictionary trained on the segment), and a writer also compresses
    /// the sealed segments it finds uncompressed, one at a time between
    /// seals. Records take ~5-6 times less space; reading one record
    /// decompresses its block (~10 µs). Every command reads both forms.
    /// Also `compress = true` in the server's config, or SEALOG_COMPRESS.
    ///
    /// Example: --compress
    #[arg(long, global = true, env = "SEALOG_COMPRESS")]
    pub compress: bool,
}

impl Global {
    /// Store options from the global flags.
    pub fn store_options(&self) -> Result<StoreOptions, CliError> {
        let mut options = StoreOptions::default();
        if let Some(size) = self.segment_size {
            options.segment_size = size;
        }
        if let Some(path) = &self.signing_key {
            options.checkpoints = Some(sealog::CheckpointOptions::new(load_signing_key(path)?));
        }
        if self.compress {
            options.compression = sealog::Compression::ZSTD;
        }
        Ok(options)
    }

    /// Opens (or creates) the store for writing, checking events with
    /// `validator` and transforming them with `privacy`.
    pub fn open_for_writing(
        &self,
        validator: Validator,
        privacy: PrivacyPolicy,
    ) -> Result<Store, CliError> {
        let options = StoreOptions {
            validator,
            privacy,
            ..self.store_options()?
        };
        Store::open(&self.data_dir, options)
            .map_err(|e| CliError::store("opening the store for writing", &self.data_dir, e))
    }

    /// Opens an existing store read-only (it may be in use by a server),
    /// refusing a damaged one unless `--allow-damaged` was given.
    pub fn open_read_only(&self, damaged: &DamageArgs) -> Result<Store, CliError> {
        open_read_only(&self.data_dir, damaged)
    }
}

/// `--allow-damaged`, the flag of the commands that read a store, and the
/// flags of where they read segments removed after archiving.
#[derive(Args, Debug, Clone, Default)]
pub struct DamageArgs {
    /// Read a damaged store anyway: skip what cannot be read (a missing or
    /// damaged segment file, a damaged record) and name each range left out
    /// on standard error. Without it, a damaged store is refused (exit 1)
    /// and no result can look complete when it is not. Nothing is written
    /// either way.
    ///
    /// Example: --allow-damaged
    #[arg(long)]
    pub allow_damaged: bool,

    #[command(flatten)]
    pub archive: ArchiveReadArgs,
}

/// Where a reading command gets the segments removed from the store after
/// they were archived (`sealog archive --retain-local`).
#[derive(Args, Debug, Clone, Default)]
pub struct ArchiveReadArgs {
    /// Read segments removed from the store after archiving from this
    /// archive (default: the archive each was removed to, as recorded in
    /// the store's pruned.log). Credentials as for `sealog archive`.
    ///
    /// Example: --archive s3://audit-archive/prod
    #[arg(long = "archive", value_name = "URL")]
    pub url: Option<String>,

    /// Size of the local cache of segments fetched from the archive (least
    /// recently used ones are evicted beyond it).
    ///
    /// Example: --archive-cache 4GiB
    #[arg(long = "archive-cache", value_name = "SIZE", default_value = "1GiB",
          value_parser = sealog_server::config::parse_size)]
    pub cache_size: u64,

    /// Directory of that cache (default: archive-cache/ in the data
    /// directory).
    ///
    /// Example: --archive-cache-dir /var/cache/sealog
    #[arg(long = "archive-cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl ArchiveReadArgs {
    /// The archive source of a store in `dir`: `None` when nothing was
    /// pruned from it (no cache is made).
    pub fn source(
        &self,
        dir: &Path,
    ) -> Result<Option<Arc<dyn sealog::pruned::ArchiveSource>>, CliError> {
        if !dir.join(sealog::pruned::PRUNED_FILE).exists() {
            return Ok(None);
        }
        let cache_dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| dir.join("archive-cache"));
        let cache = sealog_archive::ArchiveCache::new(
            &cache_dir,
            self.cache_size,
            sealog_archive::TargetOptions::default(),
        )
        .map_err(|e| CliError::Usage {
            message: format!("the archive cache cannot be used: {e}"),
            hint: "give a writable directory with --archive-cache-dir".into(),
        })?
        .with_url(self.url.clone());
        Ok(Some(Arc::new(cache)))
    }
}

impl DamageArgs {
    fn on_damage(&self) -> sealog::OnDamage {
        if self.allow_damaged {
            sealog::OnDamage::ReadAround
        } else {
            sealog::OnDamage::Refuse
        }
    }
}

/// The damage of a store read with `--allow-damaged` that standard error
/// has named so far: each range is named once, when it is first known
/// (when the store is opened, or when a read meets it).
#[derive(Debug, Default)]
pub struct DamageWarnings {
    named: std::collections::BTreeSet<(u64, String)>,
}

impl DamageWarnings {
    /// Names on standard error every range of `store`'s damage not named
    /// yet.
    pub fn name_new(&mut self, dir: &Path, store: &Store) {
        for d in store.damage() {
            let key = (d.first_seq, d.corruption.location.file.clone());
            if !self.named.insert(key) {
                continue;
            }
            let records = match d.records() {
                Some(0) => "no records left out".to_owned(),
                Some(1) => format!("seq {} left out", d.first_seq),
                Some(n) => format!(
                    "seqs {} to {} left out ({} records)",
                    d.first_seq,
                    d.first_seq + n - 1,
                    thousands(n)
                ),
                None => format!(
                    "seqs from {} on left out (how many is unknown)",
                    d.first_seq
                ),
            };
            eprintln!(
                "warning: damaged store, {records}: {}\n  where: {}",
                d.corruption.kind,
                crate::error::describe_location(dir, &d.corruption.location)
            );
        }
    }

    /// After the results: a reminder that they are incomplete, if they are.
    pub fn finish(&self) {
        if !self.named.is_empty() {
            eprintln!(
                "warning: the results leave out what the {} warning(s) above name (--allow-damaged); \
                 keep the store directory as evidence and run `sealog verify` for the full picture",
                self.named.len()
            );
        }
    }
}

/// Parses a `--segment-size` value: bytes, or a number with a binary unit
/// (`16MiB`, `512KiB`, `1GiB`), within the engine's bounds.
pub fn parse_segment_size(text: &str) -> Result<u64, String> {
    let size = sealog_server::config::parse_size(text)?;
    if !(sealog::MIN_SEGMENT_SIZE..=sealog::MAX_SEGMENT_SIZE).contains(&size) {
        return Err(format!(
            "{size} bytes is outside the segment sizes allowed, 4KiB ({}) to 1GiB ({})",
            sealog::MIN_SEGMENT_SIZE,
            sealog::MAX_SEGMENT_SIZE
        ));
    }
    Ok(size)
}

/// What to do with an event whose metadata has a key that looks like a
/// secret (`password`, `token`, `api_key`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SecretsMode {
    /// Refuse the event, naming the key (the default).
    Refuse,
    /// Store the event with the value replaced by "[REDACTED]".
    Redact,
}

impl SecretsMode {
    /// The secret guard's policy for this mode.
    pub fn policy(self) -> SecretPolicy {
        match self {
            SecretsMode::Refuse => SecretPolicy::Reject,
            SecretsMode::Redact => SecretPolicy::Redact,
        }
    }
}

/// The `--secrets` flag of the commands that take events.
#[derive(Args, Debug, Clone, Default)]
pub struct SecretsArg {
    /// What to do with an event whose metadata has a key that looks like a
    /// secret (password, passwd, secret, token, api_key, authorization,
    /// cookie, card_number, cvv, ssn, at any depth): refuse it (the
    /// default), or store it with the value replaced by "[REDACTED]". Also
    /// read from SEALOG_SECRETS.
    ///
    /// Example: --secrets redact
    #[arg(long, env = "SEALOG_SECRETS", value_enum, value_name = "MODE")]
    pub secrets: Option<SecretsMode>,
}

impl SecretsArg {
    /// The validator events are checked with.
    pub fn validator(&self) -> Validator {
        validator_for(self.secrets)
    }
}

/// `--privacy` and `--privacy-key`, the flags of the commands that take
/// events or queries.
#[derive(Args, Debug, Clone, Default)]
pub struct PrivacyArgs {
    /// A privacy rule, FIELD=TRANSFORM: source.ip=mask (zero the last octet
    /// of IPv4, the last 80 bits of IPv6), FIELD=hash (replace the value by
    /// its keyed hash, "hmac:" and 64 hex digits; needs --privacy-key) or
    /// FIELD=drop. Fields: actor.id, actor.on_behalf_of.id,
    /// actor.session_id, resource.id, tenant, source.ip, source.user_agent,
    /// request_id, reason, metadata.KEY. Events are transformed before they
    /// are written; query values are transformed the same way, so a clear
    /// value finds its records. Repeat the flag for several rules; give
    /// every command on one store the same rules (docs/privacy.md). Also
    /// read from SEALOG_PRIVACY, comma-separated.
    ///
    /// Example: --privacy source.ip=mask --privacy actor.id=hash
    #[arg(
        long = "privacy",
        env = "SEALOG_PRIVACY",
        value_delimiter = ',',
        value_name = "FIELD=TRANSFORM"
    )]
    pub rules: Vec<String>,

    /// The key file of the hash rules: at least 32 bytes (make one with
    /// `head -c 32 /dev/urandom > privacy.key`). Keep it out of the data
    /// directory. Also read from SEALOG_PRIVACY_KEY.
    ///
    /// Example: --privacy-key /etc/sealog/privacy.key
    #[arg(long, env = "SEALOG_PRIVACY_KEY", value_name = "FILE")]
    pub privacy_key: Option<PathBuf>,
}

impl PrivacyArgs {
    /// The policy of these flags (none without rules).
    pub fn policy(&self) -> Result<PrivacyPolicy, CliError> {
        let fix = "give rules as --privacy FIELD=TRANSFORM (e.g. --privacy source.ip=mask \
                   --privacy actor.id=hash) and, for hash rules, --privacy-key FILE with a key \
                   of at least 32 bytes; see docs/privacy.md";
        let key = match &self.privacy_key {
            Some(path) => {
                Some(PrivacyKey::from_file(path).map_err(|e| CliError::usage(e.to_string(), fix))?)
            }
            None => None,
        };
        if self.rules.is_empty() {
            if key.is_some() {
                return Err(CliError::usage(
                    "--privacy-key is given without any --privacy rule",
                    fix,
                ));
            }
            return Ok(PrivacyPolicy::default());
        }
        PrivacyPolicy::parse(&self.rules, key).map_err(|e| CliError::usage(e.to_string(), fix))
    }
}

/// Warns on standard error when `filters` (clear values) name a field and
/// the log says its writer applies other privacy rules (or another key)
/// than `given`: the filter's value is then compared with values stored
/// under other transforms and may find nothing, which would read as "no
/// such events". Reading errors are not this check's to report.
pub fn warn_if_privacy_differs(store: &sealog::Store, given: &PrivacyPolicy, filters: &Query) {
    if let Some(warning) = privacy_warning(store, given, filters) {
        eprintln!("{warning}");
    }
}

/// The warning of [`warn_if_privacy_differs`], if there is one. Finding
/// the log's newest policy record looks into every segment's index when
/// the log has none (the common case): a command can ask for it on another
/// thread while it answers.
pub fn privacy_warning(
    store: &sealog::Store,
    given: &PrivacyPolicy,
    filters: &Query,
) -> Option<String> {
    let names_a_value = filters.actor.is_some()
        || filters.resource.as_ref().is_some_and(|r| r.id.is_some())
        || filters.tenant.is_some()
        || filters.request_id.is_some()
        || filters.source_ip.is_some();
    if !names_a_value {
        return None;
    }
    let Ok(Some((seq, recorded))) = store.recorded_privacy_policy() else {
        return None;
    };
    let given = given.describe();
    if recorded == given {
        return None;
    }
    let fix = if recorded.is_empty() {
        "run it without --privacy and --privacy-key".to_owned()
    } else {
        format!(
            "give the writer's rules and key: --privacy {}{}",
            recorded.rules.join(","),
            match &recorded.key_id {
                Some(id) => format!(" --privacy-key FILE (the key whose id is {id})"),
                None => String::new(),
            }
        )
    };
    Some(format!(
        "warning: the log records that its writer applies {recorded} from seq {seq} on, and \
         this command was given {given}: a filter on a field the two treat differently \
         compares other values than the stored ones and may find nothing\n  fix:   {fix} \
         (docs/privacy.md)"
    ))
}

/// The validator of a secret-guard mode (the default guard: refuse).
pub fn validator_for(mode: Option<SecretsMode>) -> Validator {
    let mut validator = Validator::default();
    if let Some(mode) = mode {
        validator.secrets = SecretGuard::with_policy(mode.policy());
    }
    validator
}

/// Reads a private key file (`sealog keygen`'s `PREFIX.key`).
pub fn load_signing_key(path: &Path) -> Result<sealog::format::note::SigningKey, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadInput {
        what: "signing key",
        path: path.to_path_buf(),
        source,
    })?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    sealog::format::note::SigningKey::parse(line).map_err(|e| {
        CliError::usage(
            format!("`{}` is not a sealog signing key: {e}", path.display()),
            "pass the PREFIX.key file written by `sealog keygen` (the PREFIX.pub file is the \
             public key, for verifying)",
        )
    })
}

/// Reads a public key file (`sealog keygen`'s `PREFIX.pub`).
pub fn load_public_key(path: &Path) -> Result<sealog::format::note::VerifierKey, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadInput {
        what: "public key",
        path: path.to_path_buf(),
        source,
    })?;
    sealog::format::note::VerifierKey::parse(text.trim_end()).map_err(|e| {
        let hint = if text.starts_with("PRIVATE+KEY+") {
            "this is the private key: pass the PREFIX.pub file, and keep PREFIX.key secret"
        } else {
            "pass the PREFIX.pub file written by `sealog keygen`"
        };
        CliError::usage(
            format!("`{}` is not a sealog public key: {e}", path.display()),
            hint,
        )
    })
}

/// Opens an existing store read-only, reporting a missing store as a usage
/// error and a damaged one (without `--allow-damaged`) as damage.
pub fn open_read_only(dir: &Path, damaged: &DamageArgs) -> Result<Store, CliError> {
    check_store_exists(dir)?;
    let options = StoreOptions {
        on_damage: damaged.on_damage(),
        archive: damaged.archive.source(dir)?,
        ..StoreOptions::default()
    };
    Store::open_read_only_with(dir, options)
        .map_err(|e| CliError::read("opening the store", dir, e))
}

/// A directory is a store when it holds a manifest (`STORE`) or a
/// `segments` directory.
pub fn check_store_exists(dir: &Path) -> Result<(), CliError> {
    if dir.join("STORE").exists() || dir.join("segments").is_dir() {
        Ok(())
    } else {
        Err(CliError::NoStore {
            dir: dir.to_path_buf(),
        })
    }
}

/// The outcome of an action, as a flag value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// The action happened.
    Success,
    /// The action was attempted and failed.
    Failure,
    /// The action was refused by an authorization decision.
    Denied,
}

impl From<OutcomeArg> for Outcome {
    fn from(o: OutcomeArg) -> Outcome {
        match o {
            OutcomeArg::Success => Outcome::Success,
            OutcomeArg::Failure => Outcome::Failure,
            OutcomeArg::Denied => Outcome::Denied,
        }
    }
}

/// The filters of `query`, `tail` and `export`: the engine's, which are
/// also the HTTP server's query parameters.
pub use sealog::query::Filters;

/// The field and reason of an event that failed to parse or validate; a
/// document that is not JSON at all is reported as a whole.
pub fn field_and_reason(e: &sealog::format::ValidationError) -> (String, String) {
    use sealog::format::validate::ValidationErrorKind;
    match (e.field(), e.kind()) {
        ("" | "?", ValidationErrorKind::Json(_)) => (
            String::new(),
            format!("is not a JSON event: {}", e.reason()),
        ),
        (field, _) => (field.to_owned(), e.reason()),
    }
}

/// An engine query error as a usage error naming the flag.
pub fn query_error(e: sealog::Error) -> CliError {
    match e {
        sealog::Error::InvalidQuery {
            field: "since",
            reason,
        } => CliError::usage(
            format!("--since {reason}"),
            "give a whole number and a unit: s, m, h, d or w, e.g. --since 1h or --since 7d",
        ),
        sealog::Error::InvalidQuery { field, reason } => CliError::usage(
            format!("{}: {reason}", flag_of_query_field(field)),
            "see `sealog query --help` for the filter syntax",
        ),
        other => CliError::usage(other.to_string(), "see `sealog query --help`"),
    }
}

/// What results are ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OrderBy {
    /// Append order: the order the store recorded the events in (seq).
    #[default]
    Seq,
    /// Event time (the `time` the client gave, else the recorded time),
    /// ties broken by seq.
    Time,
}

/// Sets the order of a query.
pub fn with_order(mut q: Query, by: OrderBy, oldest_first: bool) -> Query {
    q.order = match (by, oldest_first) {
        (OrderBy::Seq, false) => Order::NewestFirst,
        (OrderBy::Seq, true) => Order::OldestFirst,
        (OrderBy::Time, false) => Order::LatestTimeFirst,
        (OrderBy::Time, true) => Order::EarliestTimeFirst,
    };
    q
}

/// Parses an RFC 3339 flag value.
pub fn parse_time(flag: &str, text: &str) -> Result<Timestamp, CliError> {
    Timestamp::parse_rfc3339(text).map_err(|e| {
        CliError::usage(
            format!("{flag}: {e}"),
            "give a time such as 2026-11-23T17:25:00Z or 2026-11-23T18:25:00+01:00",
        )
    })
}

/// Output formats of record listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document: `{"records": [...], "next_cursor": ...}`.
    Json,
    /// One record per line, as JSON (re-importable with `sealog import`).
    Ndjson,
}

impl ListFormat {
    /// The format asked for, or the default: a table on a terminal, NDJSON
    /// otherwise.
    pub fn resolve(asked: Option<ListFormat>) -> ListFormat {
        asked.unwrap_or_else(|| {
            if io::stdout().is_terminal() {
                ListFormat::Table
            } else {
                ListFormat::Ndjson
            }
        })
    }
}

/// Buffered standard output whose errors become [`CliError`]s.
pub struct Out {
    inner: io::BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    /// Standard output.
    pub fn new() -> Out {
        Out {
            inner: io::BufWriter::with_capacity(64 << 10, io::stdout().lock()),
        }
    }

    /// Writes a line.
    pub fn line(&mut self, text: &str) -> Result<(), CliError> {
        self.inner
            .write_all(text.as_bytes())
            .and_then(|()| self.inner.write_all(b"\n"))
            .map_err(CliError::stdout)
    }

    /// Writes a value as one line of JSON.
    pub fn json_line<T: serde::Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.inner, value)
            .map_err(|e| CliError::stdout(io::Error::from(e)))?;
        self.inner.write_all(b"\n").map_err(CliError::stdout)
    }

    /// Writes bytes as they are.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.inner.write_all(bytes).map_err(CliError::stdout)
    }

    /// Writes a value as indented JSON.
    pub fn json_pretty<T: serde::Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        serde_json::to_writer_pretty(&mut self.inner, value)
            .map_err(|e| CliError::stdout(io::Error::from(e)))?;
        self.inner.write_all(b"\n").map_err(CliError::stdout)
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<(), CliError> {
        self.inner.flush().map_err(CliError::stdout)
    }

    /// The underlying writer.
    pub fn writer(&mut self) -> &mut impl Write {
        &mut self.inner
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

/// A count per second, rounded.
pub fn rate(count: f64, secs: f64) -> f64 {
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// True when standard error is a terminal (progress bars go there).
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// Parses a duration flag: `250ms`, `30s`, `15m`, `1h`, `7d`, `2w`, `1y`.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, CliError> {
    let bad = || {
        CliError::usage(
            format!("{flag} `{text}` is not a duration"),
            "give a whole number and a unit: ms, s, m, h, d, w or y, e.g. 30s or 400d",
        )
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(n.checked_mul(ms).ok_or_else(bad)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
