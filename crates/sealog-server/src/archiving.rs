//! Background archiving (`sealog serve --archive URL`): after each seal,
//! the server uploads the newly sealed segments to the archive
//! ([`sealog_archive::Archiver`], the same rounds as `sealog archive`),
//! retrying with exponential backoff while the archive is unreachable; with
//! `archive_retain_local`, it then removes local segments whose archived
//! copies read back identical; reads of removed segments go through a
//! bounded cache (`archive_cache`). Lag and failures are in `/metrics`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealog_archive::{
    ArchiveCache, Archiver, ArchiverOptions, LockMode, ObjectLock, RetryPolicy, TargetOptions,
};
use tokio::sync::watch;

use crate::config::{ConfigError, Size, parse_size};
use crate::handle::StoreHandle;

/// How often the archiver looks for newly sealed segments.
const POLL: Duration = Duration::from_secs(1);
/// How often, at most, it looks for local segments to remove when nothing
/// was archived.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The archive settings of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// Where the archive is (`s3://bucket/prefix`, `file:///path`, ...).
    pub url: String,
    /// Remove local segments archived and older than this; `None` keeps
    /// every local segment.
    pub retain_local: Option<Duration>,
    /// Size of the cache of segments fetched back for reads.
    pub cache_bytes: u64,
    /// Its directory (`<data-dir>/archive-cache`).
    pub cache_dir: PathBuf,
    /// Also archive each segment's records as Parquet.
    pub parquet: bool,
    /// Object Lock retention sent with every upload, if configured.
    pub lock: Option<ObjectLock>,
}

/// The archive keys of a configuration, as given.
#[derive(Clone, Debug, Default)]
pub struct ArchiveKeys {
    /// `archive`
    pub url: Option<String>,
    /// `archive_retain_local`
    pub retain_local: Option<String>,
    /// `archive_cache`
    pub cache: Option<Size>,
    /// `archive_parquet`
    pub parquet: Option<bool>,
    /// `archive_retain`
    pub retain: Option<String>,
    /// `archive_lock_mode`
    pub lock_mode: Option<String>,
}

/// Parses a duration such as `30s`, `15m`, `12h`, `90d`, `2w`, `1y`.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError::new(
            format!("{key}: `{text}` is not a duration"),
            format!("give a whole number and a unit (s, m, h, d, w or y), e.g. {key} = \"90d\""),
        )
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?))
}

/// The archive settings from the config keys `archive`,
/// `archive_retain_local`, `archive_cache`, `archive_parquet`,
/// `archive_retain` and `archive_lock_mode`; `None` without `archive`.
pub fn resolve(keys: ArchiveKeys, data_dir: &Path) -> Result<Option<ArchiveSettings>, ConfigError> {
    let ArchiveKeys {
        url,
        retain_local,
        cache,
        parquet,
        retain,
        lock_mode,
    } = keys;
    let Some(url) = url else {
        let set = [
            ("archive_retain_local", retain_local.is_some()),
            ("archive_cache", cache.is_some()),
            ("archive_parquet", parquet.is_some()),
            ("archive_retain", retain.is_some()),
            ("archive_lock_mode", lock_mode.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(
                format!("{key} is set but archive is not: it applies to archiving only"),
                format!("set archive = \"s3://bucket/prefix\" (or --archive URL), or remove {key}"),
            ));
        }
        return Ok(None);
    };
    let mode = match lock_mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("compliance") => LockMode::Compliance,
        Some("governance") => LockMode::Governance,
        Some(other) => {
            return Err(ConfigError::new(
                format!("archive_lock_mode: `{other}` is not an Object Lock mode"),
                "give archive_lock_mode = \"compliance\" or \"governance\"",
            ));
        }
    };
    if lock_mode.is_some() && retain.is_none() {
        return Err(ConfigError::new(
            "archive_lock_mode is set but archive_retain is not: the mode goes with a retention",
            "set archive_retain = \"400d\" (the keep time), or remove archive_lock_mode",
        ));
    }
    let lock = retain
        .map(|t| parse_duration("archive_retain", &t))
        .transpose()?
        .map(|retain| ObjectLock { mode, retain });
    let retain_local = retain_local
        .map(|t| parse_duration("archive_retain_local", &t))
        .transpose()?;
    let cache_bytes = match cache {
        None => sealog_archive::DEFAULT_CACHE_BYTES,
        Some(Size::Bytes(n)) => n,
        Some(Size::Text(t)) => parse_size(&t).map_err(|e| {
            ConfigError::new(
                format!("archive_cache: {e}"),
                "give a size, e.g. archive_cache = \"4GiB\"",
            )
        })?,
    };
    Ok(Some(ArchiveSettings {
        url,
        retain_local,
        cache_bytes,
        cache_dir: data_dir.join("archive-cache"),
        parquet: parquet.unwrap_or(false),
        lock,
    }))
}

/// The background archiver of a server, and what it reports.
#[derive(Debug)]
pub struct Archiving {
    archiver: Archiver,
    settings: ArchiveSettings,
    /// When the last round succeeded.
    last_success: Mutex<Option<Instant>>,
    /// When local segments were last looked at for removal.
    last_prune: Mutex<Option<Instant>>,
    /// Sealed segments not archived yet, at the last look.
    lag_segments: AtomicU64,
    /// Segments removed from the store.
    pruned_segments: AtomicU64,
    /// Segments kept because their archived copies could not be confirmed.
    kept_segments: AtomicU64,
    /// Removal passes that failed.
    prune_failures: AtomicU64,
}

impl Archiving {
    /// An archiver for `settings` (the URL is checked now).
    pub fn new(settings: ArchiveSettings) -> Result<Archiving, ConfigError> {
        let archiver = Archiver::new(
            &settings.url,
            ArchiverOptions {
                target: TargetOptions {
                    lock: settings.lock,
                    ..TargetOptions::default()
                },
                parquet: settings.parquet,
                ..ArchiverOptions::default()
            },
        )
        .map_err(|e| ConfigError::new(format!("archive: {e}"), e.fix()))?;
        Ok(Archiving {
            archiver,
            settings,
            last_success: Mutex::new(None),
            last_prune: Mutex::new(None),
            lag_segments: AtomicU64::new(0),
            pruned_segments: AtomicU64::new(0),
            kept_segments: AtomicU64::new(0),
            prune_failures: AtomicU64::new(0),
        })
    }

    /// The source the store reads removed segments from: a bounded cache
    /// in front of the archive.
    pub fn read_source(
        settings: &ArchiveSettings,
    ) -> Result<Arc<dyn sealog::pruned::ArchiveSource>, ConfigError> {
        let cache = ArchiveCache::new(
            &settings.cache_dir,
            settings.cache_bytes,
            TargetOptions::default(),
        )
        .map_err(|e| {
            ConfigError::new(
                format!("archive_cache: {e}"),
                "let the server write to its data directory",
            )
        })?;
        Ok(Arc::new(cache))
    }

    /// Starts the archiver on a thread of its own, at the background
    /// priority ([`sealog::background::idle_thread_priority`]), with its
    /// own single-threaded runtime: everything a round does (reading the
    /// tree, hashing, and sending the objects, which over HTTP or TLS is
    /// CPU work of its own) then takes only the CPU that ingest leaves,
    /// instead of competing with it on the server's runtime. It stops when
    /// `stop` turns true, within a round too (an interrupted round is
    /// resumed from the archive's manifest at the next start).
    pub fn spawn(
        self: Arc<Self>,
        store: Arc<StoreHandle>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sealog-archiver".into())
            .spawn(move || {
                sealog::background::idle_thread_priority();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("sealog-archiver-io")
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("archiving could not start its runtime: {e}");
                        return;
                    }
                };
                let mut stopping = stop.clone();
                runtime.block_on(async move {
                    tokio::select! {
                        () = self.run(store, stop) => {}
                        _ = stopping.wait_for(|s| *s) => {}
                    }
                });
                // Blocking work of an interrupted round (a local file
                // being written) is not waited for.
                runtime.shutdown_background();
            })
    }

    /// Archives until `stop` turns true: a round whenever more is sealed
    /// than archived, retried with exponential backoff after a failure;
    /// then, with a local retention, a removal pass.
    pub async fn run(self: Arc<Self>, store: Arc<StoreHandle>, mut stop: watch::Receiver<bool>) {
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            wait = POLL;
            let Ok(s) = store.get() else {
                continue; // the store is being reopened
            };
            let sealed = sealog::image::sealed_segments(&s);
            let sealed_end = sealed.last().map_or(0, |x| x.footer.end_seq());
            let progress = self.archiver.progress();
            let archived = progress.archived_tree_size;
            self.lag_segments.store(
                sealed
                    .iter()
                    .filter(|x| x.header.first_seq >= archived.unwrap_or(0))
                    .count() as u64,
                Ordering::Relaxed,
            );
            let behind = archived.is_none_or(|a| a < sealed_end);
            if behind || progress.consecutive_failures > 0 {
                match self.archiver.round_async(&s).await {
                    Ok(report) => {
                        *lock(&self.last_success) = Some(Instant::now());
                        let lag = sealed
                            .iter()
                            .filter(|x| x.header.first_seq >= report.tree_size)
                            .count() as u64;
                        self.lag_segments.store(lag, Ordering::Relaxed);
                        if lag > 0 && report.manifest.is_some() {
                            wait = Duration::ZERO; // a bounded round: ship the rest
                        }
                    }
                    Err(e) => {
                        let failures = self.archiver.progress().consecutive_failures;
                        wait = RetryPolicy::default()
                            .backoff(u32::try_from(failures).unwrap_or(u32::MAX))
                            .max(POLL);
                        tracing::warn!(
                            url = %self.settings.url,
                            failures,
                            retry_in_secs = wait.as_secs_f64(),
                            "archiving failed ({failures} time(s) in a row; retrying in {:.1} \
                             s): {e}",
                            wait.as_secs_f64()
                        );
                        continue;
                    }
                }
            }
            if let Some(keep) = self.settings.retain_local {
                let due = lock(&self.last_prune).is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
                if due || behind {
                    *lock(&self.last_prune) = Some(Instant::now());
                    match self.archiver.prune_local_async(&s, keep).await {
                        Ok(r) => {
                            self.pruned_segments
                                .fetch_add(r.pruned.len() as u64, Ordering::Relaxed);
                            self.kept_segments
                                .fetch_add(r.kept.len() as u64, Ordering::Relaxed);
                            for (segment, reason) in &r.kept {
                                tracing::warn!(
                                    %segment,
                                    "kept {segment} although it is old enough to remove: \
                                     {reason}"
                                );
                            }
                        }
                        Err(e) => {
                            self.prune_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::error!("removing archived local segments failed: {e}");
                        }
                    }
                }
            }
        }
    }

    /// The archiving lines of `/metrics` (Prometheus text).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let p = self.archiver.progress();
        let mut metric = |kind: &str, name: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        metric(
            "gauge",
            "sealog_archive_archived_records",
            "Records in the archive (its newest manifest's tree size); -1 until known.",
            p.archived_tree_size.map_or(-1.0, |n| n as f64),
        );
        metric(
            "gauge",
            "sealog_archive_lag_records",
            "Sealed records not archived yet.",
            p.lag_records as f64,
        );
        metric(
            "gauge",
            "sealog_archive_lag_segments",
            "Sealed segments not archived yet.",
            self.lag_segments.load(Ordering::Relaxed) as f64,
        );
        metric(
            "gauge",
            "sealog_archive_lag_bytes",
            "Bytes of sealed segments not archived yet.",
            p.lag_bytes as f64,
        );
        metric(
            "gauge",
            "sealog_archive_seconds_since_success",
            "Seconds since the last successful archiving round; -1 if none succeeded since \
             the server started.",
            lock(&self.last_success).map_or(-1.0, |t| t.elapsed().as_secs_f64()),
        );
        metric(
            "counter",
            "sealog_archive_rounds_total",
            "Archiving rounds that wrote a manifest.",
            p.rounds as f64,
        );
        metric(
            "counter",
            "sealog_archive_failures_total",
            "Archiving rounds that failed.",
            p.failures as f64,
        );
        metric(
            "gauge",
            "sealog_archive_consecutive_failures",
            "Archiving rounds failed since the last success.",
            p.consecutive_failures as f64,
        );
        metric(
            "counter",
            "sealog_archive_retries_total",
            "Object-store requests retried after a transient failure.",
            p.retries as f64,
        );
        metric(
            "counter",
            "sealog_archive_bytes_total",
            "Bytes uploaded to the archive.",
            p.bytes_written as f64,
        );
        metric(
            "counter",
            "sealog_archive_pruned_segments_total",
            "Local segments removed after their archived copies read back identical.",
            self.pruned_segments.load(Ordering::Relaxed) as f64,
        );
        metric(
            "counter",
            "sealog_archive_kept_segments_total",
            "Local segments old enough to remove but kept: their archived copies could not \
             be confirmed.",
            self.kept_segments.load(Ordering::Relaxed) as f64,
        );
        metric(
            "counter",
            "sealog_archive_prune_failures_total",
            "Removal passes that failed.",
            self.prune_failures.load(Ordering::Relaxed) as f64,
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
