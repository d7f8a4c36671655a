//! What several commands share: the global options, opening the store,
//! query filters, parsing of flag values, and number formatting.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sealog::format::Validator;
use sealog::format::validate::{SecretGuard, SecretPolicy};
use sealog::query::{
    ActionPattern, ActorFilter, IpFilter, Order, Query, ResourceFilter, TimeBound,
};
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
        Ok(options)
    }

    /// Opens (or creates) the store for writing, checking events with
    /// `validator`.
    pub fn open_for_writing(&self, validator: Validator) -> Result<Store, CliError> {
        let options = StoreOptions {
            validator,
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

/// The filters of `query`, `tail` and `export`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Filters (all given filters must match)")]
pub struct Filters {
    /// The actor: `TYPE:ID` or just `ID` (any type).
    ///
    /// Example: --actor user:alice   or   --actor alice
    #[arg(long, value_name = "[TYPE:]ID")]
    pub actor: Option<String>,

    /// The action, exact or a glob where `*` matches anything (dots
    /// included). Repeat the flag to match any of several.
    ///
    /// Example: --action 'customer.*' --action auth.login_failed
    #[arg(long = "action", value_name = "PATTERN")]
    pub actions: Vec<String>,

    /// The resource: `TYPE:ID`, `TYPE:` (any id of that type) or `ID`.
    ///
    /// Example: --resource customer:4471   or   --resource customer:
    #[arg(long, value_name = "TYPE:ID")]
    pub resource: Option<String>,

    /// The resource type.
    ///
    /// Example: --resource-type invoice
    #[arg(long, value_name = "TYPE")]
    pub resource_type: Option<String>,

    /// The outcome.
    ///
    /// Example: --outcome denied
    #[arg(long, value_enum)]
    pub outcome: Option<OutcomeArg>,

    /// The tenant.
    ///
    /// Example: --tenant acme
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// The source IP address, exact or a CIDR network (IPv4 or IPv6;
    /// IPv4-mapped IPv6 addresses count as IPv4).
    ///
    /// Example: --source-ip 203.0.113.9   or   --source-ip 10.0.0.0/8
    #[arg(long, value_name = "IP|CIDR")]
    pub source_ip: Option<String>,

    /// The request id.
    ///
    /// Example: --request-id req-7f3a
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,

    /// Only events that happened within this long before now, and not
    /// after now: event time in [now - DURATION, now]. A number and a unit,
    /// s (seconds), m (minutes), h (hours), d (days) or w (weeks). Events
    /// dated in the future (a client's clock ahead) are left out; --from
    /// alone includes them. With --to, that is the end instead of now.
    ///
    /// Example: --since 1h   or   --since 7d
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    pub since: Option<String>,

    /// Only events that happened at or after this time: RFC 3339, or a date
    /// alone for the start of that day in UTC.
    ///
    /// Example: --from 2026-11-23T00:00:00Z   or   --from 2026-11-23
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,

    /// Only events that happened before this time (exclusive): RFC 3339,
    /// or a date alone for the end of that day in UTC (the whole day is
    /// included). Also --until.
    ///
    /// Example: --to 2026-11-24T00:00:00+01:00   or   --until 2026-11-23
    #[arg(long, visible_alias = "until", value_name = "TIME")]
    pub to: Option<String>,
}

impl Filters {
    /// The query these filters describe (newest first, default limit), with
    /// `--since` counted back from now.
    pub fn to_query(&self) -> Result<Query, CliError> {
        self.to_query_at(Timestamp::now())
    }

    /// True when the end of the time range is "now" (`--since` without
    /// `--to`): a follower moves it as time passes.
    pub fn ends_now(&self) -> bool {
        self.since.is_some() && self.to.is_none()
    }

    /// The query these filters describe at the instant `now`.
    pub fn to_query_at(&self, now: Timestamp) -> Result<Query, CliError> {
        let mut q = Query::default();
        if let Some(actor) = &self.actor {
            q.actor = Some(ActorFilter::parse(actor));
        }
        for pattern in &self.actions {
            q.actions
                .push(ActionPattern::new(pattern.as_str()).map_err(query_error)?);
        }
        if let Some(resource) = &self.resource {
            q.resource = Some(ResourceFilter::parse(resource));
        }
        q.resource_type.clone_from(&self.resource_type);
        q.outcome = self.outcome.map(Outcome::from);
        q.tenant.clone_from(&self.tenant);
        if let Some(ip) = &self.source_ip {
            q.source_ip = Some(IpFilter::parse(ip).map_err(query_error)?);
        }
        q.request_id.clone_from(&self.request_id);
        if let Some(since) = &self.since {
            let (from, to) = sealog::query::since(parse_duration(since)?, now);
            q.from = Some(from);
            q.to = Some(to);
        }
        if let Some(from) = &self.from {
            q.from = Some(
                sealog::query::parse_time("from", from, TimeBound::Start).map_err(query_error)?,
            );
        }
        if let Some(to) = &self.to {
            q.to = Some(sealog::query::parse_time("to", to, TimeBound::End).map_err(query_error)?);
        }
        q.validate().map_err(query_error)?;
        Ok(q)
    }
}

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

/// Parses `30s`, `15m`, `1h`, `7d`, `2w` (the value of `--since`).
pub fn parse_duration(text: &str) -> Result<Duration, CliError> {
    sealog::query::parse_duration("since", text).map_err(|_| {
        CliError::usage(
            format!("--since `{text}` is not a duration"),
            "give a whole number and a unit: s, m, h, d or w, e.g. --since 1h or --since 7d",
        )
    })
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

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("2w").ok(),
            Some(Duration::from_secs(14 * 86_400))
        );
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn since_is_bounded_by_now_and_dates_cover_whole_days() {
        let now = Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        let filters = Filters {
            since: Some("1h".into()),
            ..Filters::default()
        };
        let q = filters.to_query_at(now).unwrap();
        assert_eq!(
            q.from,
            Some(Timestamp::parse_rfc3339("2026-11-27T11:00:00Z").unwrap())
        );
        assert_eq!(q.to.map(|t| t.as_nanos()), Some(now.as_nanos() + 1));
        assert!(filters.ends_now());
        let filters = Filters {
            from: Some("2026-11-27".into()),
            to: Some("2026-11-27".into()),
            ..Filters::default()
        };
        let q = filters.to_query_at(now).unwrap();
        assert_eq!(
            q.from,
            Some(Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap())
        );
        assert_eq!(
            q.to,
            Some(Timestamp::parse_rfc3339("2026-11-28T00:00:00Z").unwrap())
        );
    }

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
