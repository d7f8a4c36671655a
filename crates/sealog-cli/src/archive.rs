//! `sealog archive`, `sealog restore` and `sealog verify --archive`: the
//! off-host, write-once copy of the store in object storage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use sealog_archive::{
    ArchiveError, Archiver, ArchiverOptions, LockMode, ObjectLock, RetryPolicy, RoundReport,
    TargetOptions,
};

use crate::common::{
    Global, Out, bytes, check_store_exists, load_public_key, load_signing_key, parse_duration,
    rate, thousands,
};
use crate::error::CliError;

const ARCHIVE_AFTER_HELP: &str = "\
Copies the store's sealed segments to object storage, write-once: each
segment with its index sidecar and the Merkle tree entries it completes, a
signed checkpoint covering them, and last a manifest naming every object
with its SHA-256 and the proofs that tie the round to the log and to the
round before. The archive's newest manifest is the cursor: a run that was
interrupted (even by kill -9) resumes there, finds what it had uploaded,
and uploads nothing twice. An object is never overwritten; one that exists
with other bytes stops the run and is named.

URLs: file:///path, s3://bucket/prefix (AWS_* variables: credentials,
AWS_REGION, AWS_ENDPOINT_URL for MinIO/Ceph/other S3-compatible servers,
AWS_ALLOW_HTTP=true for plain HTTP), gs://bucket/prefix (GOOGLE_*),
az://container/prefix (AZURE_*).

The store is opened read-only, so this works beside `sealog serve`. A
manifest must carry a signed checkpoint covering what it archives: the
store's own (signed at each seal when the server has a signing key), or
one signed here with --signing-key.

Object Lock (S3): with --retain, every object is written with a retention
(--lock-mode, COMPLIANCE by default) until that long from the upload; the
bucket must have Object Lock enabled. Without it, the bucket's default
retention applies (recommended: set one on the bucket).

Examples:
  sealog archive --to file:///mnt/archive/sealog
  AWS_REGION=eu-west-1 sealog archive --to s3://audit-archive/prod --retain 400d
  sealog archive --to s3://audit-archive/prod --follow --interval 30s
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true \\
      sealog archive --to s3://sealog/prod --signing-key /etc/sealog/log.key";

/// Object Lock retention mode.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LockModeArg {
    /// Nobody can delete an object or shorten its retention before the date.
    Compliance,
    /// Users allowed to bypass governance retention can.
    Governance,
}

/// Options shared by the commands that reach an archive.
#[derive(Args, Debug, Clone)]
pub struct ReachArgs {
    /// Attempts per object-store request before giving up (backoff doubles
    /// from 200 ms, at most 30 s, with jitter).
    ///
    /// Example: --retries 8
    #[arg(long, default_value_t = 8, value_name = "N")]
    retries: u32,

    /// Time limit of one object-store request.
    ///
    /// Example: --request-timeout 60s
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    request_timeout: String,
}

impl ReachArgs {
    fn policy(&self) -> Result<RetryPolicy, CliError> {
        Ok(RetryPolicy {
            attempts: self.retries.max(1),
            request_timeout: parse_duration("--request-timeout", &self.request_timeout)?,
            ..RetryPolicy::default()
        })
    }
}

/// Copy sealed segments to object storage, write-once.
#[derive(Args, Debug)]
#[command(after_help = ARCHIVE_AFTER_HELP)]
pub struct ArchiveArgs {
    /// Where the archive is: file:///path, s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix.
    ///
    /// Example: --to s3://audit-archive/prod
    #[arg(long, value_name = "URL")]
    to: String,

    /// Archive what is sealed now, then exit (the default).
    ///
    /// Example: --once
    #[arg(long, conflicts_with = "follow")]
    once: bool,

    /// Keep archiving as segments are sealed, until stopped.
    ///
    /// Example: --follow
    #[arg(long)]
    follow: bool,

    /// With --follow: how often to look for newly sealed segments.
    ///
    /// Example: --interval 30s
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    interval: String,

    /// Object Lock mode of the retention sent with each object (S3; needs
    /// --retain).
    ///
    /// Example: --lock-mode governance
    #[arg(long, value_enum, value_name = "MODE", requires = "retain")]
    lock_mode: Option<LockModeArg>,

    /// Retain every uploaded object (S3 Object Lock) this long from its
    /// upload: d, w or y units (a year is 365 days).
    ///
    /// Example: --retain 400d
    #[arg(long, value_name = "DURATION")]
    retain: Option<String>,

    /// At most this many bytes of segments per round (and manifest); 0 for
    /// no limit.
    ///
    /// Example: --max-round-bytes 1073741824
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    max_round_bytes: u64,

    /// Remove local sealed segments whose newest record is older than
    /// this, once their archived copies were read back and found identical
    /// (SHA-256 against the manifest and the local file). The tree files
    /// stay, so proofs and `sealog verify` still cover them, and reads
    /// fetch them from the archive. Opens the store for writing (the
    /// removal is an `archive.pruned` event): beside a running server, set
    /// `archive_retain_local` in its configuration instead.
    ///
    /// Example: --retain-local 90d
    #[arg(long, value_name = "DURATION")]
    retain_local: Option<String>,

    /// Also upload each segment's records as Parquet, one file per event
    /// date: parquet/date=YYYY-MM-DD/<first seq>.parquet in the archive
    /// (schema: docs/format.md), for SQL engines over the bucket.
    ///
    /// Example: --parquet
    #[arg(long)]
    parquet: bool,

    /// Print one JSON object per round.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    reach: ReachArgs,
}

/// The command line's error for an archive error.
pub fn archive_error(url: &str, e: ArchiveError) -> CliError {
    CliError::Archive {
        url: url.to_owned(),
        error: Box::new(e),
    }
}

pub fn archive(global: &Global, args: ArchiveArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    check_store_exists(dir)?;
    let lock = match &args.retain {
        Some(r) => Some(ObjectLock {
            mode: match args.lock_mode.unwrap_or(LockModeArg::Compliance) {
                LockModeArg::Compliance => LockMode::Compliance,
                LockModeArg::Governance => LockMode::Governance,
            },
            retain: parse_duration("--retain", r)?,
        }),
        None => None,
    };
    let signing_key = global
        .signing_key
        .as_deref()
        .map(load_signing_key)
        .transpose()?
        .map(Arc::new);
    let options = ArchiverOptions {
        target: TargetOptions {
            lock,
            retry: args.reach.policy()?,
            config: Vec::new(),
        },
        signing_key,
        max_round_bytes: args.max_round_bytes,
        parquet: args.parquet,
    };
    let interval = parse_duration("--interval", &args.interval)?;
    let retain_local = args
        .retain_local
        .as_deref()
        .map(|r| parse_duration("--retain-local", r))
        .transpose()?;
    let archiver = Archiver::new(&args.to, options).map_err(|e| archive_error(&args.to, e))?;
    let mut out = Out::new();
    loop {
        // A damaged store is refused: an archive copies only what verifies.
        let store = crate::common::open_read_only(dir, &crate::common::DamageArgs::default())?;
        let started = Instant::now();
        let result = archiver.round(&store);
        drop(store);
        match result {
            Ok(report) => {
                print_round(&mut out, &args, &report, started.elapsed())?;
                // More to ship right away (the round was bounded)?
                let progress = archiver.progress();
                if report.manifest.is_some() && progress.lag_records > 0 {
                    continue;
                }
                if let Some(keep) = retain_local {
                    prune(global, &archiver, &args, keep, &mut out)?;
                }
                if !args.follow {
                    return Ok(());
                }
                std::thread::sleep(interval);
            }
            Err(e) if args.follow => {
                let failures = archiver.progress().consecutive_failures;
                let wait = RetryPolicy::default()
                    .backoff(u32::try_from(failures).unwrap_or(u32::MAX))
                    .max(interval);
                eprintln!("{}", crate::error::Report(&archive_error(&args.to, e)));
                eprintln!(
                    "  retry: in {:.1} s ({failures} failed round(s) in a row)",
                    wait.as_secs_f64()
                );
                std::thread::sleep(wait);
            }
            Err(e) => return Err(archive_error(&args.to, e)),
        }
    }
}

/// Removes the archived local segments older than `keep`, and says what
/// it removed and what it kept, and why.
fn prune(
    global: &Global,
    archiver: &Archiver,
    args: &ArchiveArgs,
    keep: Duration,
    out: &mut Out,
) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let store = match sealog::Store::open(dir, global.store_options()?) {
        Ok(store) => store,
        Err(sealog::Error::Locked { .. }) => {
            return Err(CliError::Usage {
                message: format!(
                    "--retain-local needs the store at {} open for writing, and another process \
                     (a server?) has it",
                    dir.display()
                ),
                hint: "let the server remove archived segments: set `archive` and \
                       `archive_retain_local` in its configuration; or run this while it is \
                       stopped"
                    .into(),
            });
        }
        Err(e) => return Err(CliError::store("opening the store for writing", dir, e)),
    };
    let result = archiver.prune_local(&store, keep);
    store
        .close()
        .map_err(|e| CliError::store("closing the store", dir, e))?;
    let report = result.map_err(|e| archive_error(&args.to, e))?;
    if args.json {
        out.json_line(&serde_json::json!({
            "url": args.to,
            "pruned": report.pruned,
            "pruned_records": report.records,
            "freed_bytes": report.bytes,
            "kept": report
                .kept
                .iter()
                .map(|(segment, reason)| serde_json::json!({"segment": segment, "reason": reason}))
                .collect::<Vec<_>>(),
        }))?;
    } else {
        if !report.pruned.is_empty() {
            out.line(&format!(
                "removed {} archived segment(s) from the store ({} records, {}), each read back \
                 from {} and found identical",
                report.pruned.len(),
                thousands(report.records),
                bytes(report.bytes),
                args.to
            ))?;
        }
        for (segment, reason) in &report.kept {
            out.line(&format!("kept {segment}: {reason}"))?;
        }
    }
    out.flush()?;
    if let Some((segment, reason)) = report.kept.first() {
        eprintln!(
            "warning: {} archived segment(s) kept because their archived copies could not be \
             confirmed, first {segment}: {reason}; run `sealog verify --archive {}`",
            report.kept.len(),
            args.to
        );
    }
    Ok(())
}

fn print_round(
    out: &mut Out,
    args: &ArchiveArgs,
    r: &RoundReport,
    elapsed: Duration,
) -> Result<(), CliError> {
    let secs = elapsed.as_secs_f64();
    let mb_per_sec = rate(r.bytes_written as f64 / 1e6, secs);
    if args.json {
        out.json_line(&serde_json::json!({
            "url": args.to,
            "manifest": r.manifest,
            "round": r.round,
            "from_size": r.from_size,
            "tree_size": r.tree_size,
            "segments": r.segments,
            "objects_written": r.objects_written,
            "objects_already_there": r.objects_already_there,
            "bytes_written": r.bytes_written,
            "elapsed_secs": secs,
            "mb_per_sec": mb_per_sec,
            "checkpoint_size": r.checkpoint_size,
            "signed_checkpoint": r.signed_checkpoint,
        }))?;
    } else if let Some(manifest) = &r.manifest {
        out.line(&format!(
            "archived round {} to {}: {} segment(s), records {}..{}",
            r.round,
            args.to,
            r.segments,
            thousands(r.from_size),
            thousands(r.tree_size)
        ))?;
        out.line(&format!(
            "  objects   {} written, {} already there (resumed)",
            r.objects_written, r.objects_already_there
        ))?;
        out.line(&format!(
            "  bytes     {} in {secs:.3} s, {mb_per_sec:.1} MB/s",
            bytes(r.bytes_written)
        ))?;
        out.line(&format!(
            "  archive   holds records 0..{}; checkpoint of {} records{}",
            thousands(r.tree_size),
            thousands(r.checkpoint_size.unwrap_or(0)),
            if r.signed_checkpoint {
                " (signed now with --signing-key)"
            } else {
                ""
            }
        ))?;
        out.line(&format!("  manifest  {manifest}"))?;
    } else {
        out.line(&format!(
            "nothing to archive: {} holds every sealed record (0..{})",
            args.to,
            thousands(r.tree_size)
        ))?;
    }
    out.flush()
}

const RESTORE_AFTER_HELP: &str = "\
Rebuilds a local store from an archive, for disaster recovery: the archive
is verified as it is read (as `sealog verify --archive`), the segments,
sidecars and tree files are written to a staging directory, the store
manifest is made from the segments' store id, checkpoints.log from the
archived checkpoints the restored records cover, and the result is verified
again by the engine before it is moved to --data-dir. The target must be a
new or empty directory. The restored store can be opened for writing to
continue the log.

If the newest archived checkpoint covers more records than were archived,
those records were signed but are lost with the original store: the restore
says so, and a log continued from the restored store forks from that
checkpoint.

Examples:
  sealog restore --from s3://audit-archive/prod --data-dir /var/lib/sealog \\
      --public-key /etc/sealog/log.pub
  sealog restore --from file:///mnt/archive/sealog --data-dir ./restored";

/// Rebuild a verified local store from an archive.
#[derive(Args, Debug)]
#[command(after_help = RESTORE_AFTER_HELP)]
pub struct RestoreArgs {
    /// The archive: file:///path, s3://bucket/prefix, gs://… or az://….
    ///
    /// Example: --from s3://audit-archive/prod
    #[arg(long, value_name = "URL")]
    from: String,

    /// The log's public key: check every archived checkpoint's signature.
    ///
    /// Example: --public-key /etc/sealog/log.pub
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,

    /// Print the summary as one JSON object.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    reach: ReachArgs,
}

pub fn restore(global: &Global, args: RestoreArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let public_key = args
        .public_key
        .as_deref()
        .map(load_public_key)
        .transpose()?;
    let options = sealog_archive::VerifyOptions {
        public_key,
        checkpoints: Vec::new(),
    };
    let target = TargetOptions {
        lock: None,
        retry: args.reach.policy()?,
        config: Vec::new(),
    };
    let report = sealog_archive::blocking::restore(&args.from, dir, target, &options)
        .map_err(|e| archive_error(&args.from, e))?;
    let mut out = Out::new();
    if args.json {
        out.json_line(&serde_json::json!({
            "restored": true,
            "data_dir": dir,
            "records": report.records,
            "segments": report.archive.segments,
            "rounds": report.archive.rounds,
            "checkpoints": report.checkpoints,
            "root": hex::encode(report.archive.root),
            "checkpoints_authenticated": report.archive.checkpoints_authenticated,
            "unarchived_signed": report.unarchived_signed,
        }))?;
    } else {
        out.line(&format!(
            "restored {} records ({} segments, {} rounds) from {} into {}",
            thousands(report.records),
            report.archive.segments,
            report.archive.rounds,
            args.from,
            dir.display()
        ))?;
        out.line(&format!(
            "  tree root   {}",
            hex::encode(report.archive.root)
        ))?;
        out.line(&format!(
            "  checkpoints {} written to checkpoints.log; {}",
            report.checkpoints,
            if report.archive.checkpoints_authenticated {
                "signatures checked with the public key"
            } else {
                "signatures NOT checked: pass --public-key"
            }
        ))?;
        if let Some(n) = report.unarchived_signed {
            out.line(&format!(
                "  WARNING     the newest archived checkpoint covers {} records, {} more than \
                 the archive holds: those records are lost with the original store, and a \
                 log continued from this one forks from that checkpoint",
                thousands(n),
                thousands(n - report.records)
            ))?;
        }
        out.line(
            "  next        sealog verify --data-dir DIR; the store can be opened for writing",
        )?;
    }
    out.flush()
}

/// `sealog verify --archive URL`.
pub fn verify(
    url: &str,
    public_key: Option<&std::path::Path>,
    checkpoints: &[PathBuf],
    json: bool,
) -> Result<(), CliError> {
    let public_key = public_key.map(load_public_key).transpose()?;
    let mut given = Vec::new();
    for path in checkpoints {
        given.push(
            std::fs::read_to_string(path).map_err(|source| CliError::ReadInput {
                what: "checkpoint",
                path: path.clone(),
                source,
            })?,
        );
    }
    let authenticated = public_key.is_some();
    let options = sealog_archive::VerifyOptions {
        public_key,
        checkpoints: given,
    };
    let result = sealog_archive::blocking::verify(url, TargetOptions::default(), &options);
    let mut out = Out::new();
    match result {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64();
            let mb_per_sec = rate(r.bytes as f64 / 1e6, secs);
            if json {
                out.json_line(&serde_json::json!({
                    "intact": true,
                    "url": url,
                    "rounds": r.rounds,
                    "segments": r.segments,
                    "parquet_segments": r.parquet_segments,
                    "records": r.records,
                    "objects": r.objects,
                    "bytes": r.bytes,
                    "elapsed_secs": secs,
                    "mb_per_sec": mb_per_sec,
                    "store_id": r.store_id,
                    "origin": r.origin,
                    "root": hex::encode(r.root),
                    "chain_head": hex::encode(r.chain_head),
                    "newest_checkpoint": r.newest_checkpoint,
                    "checkpoints_authenticated": r.checkpoints_authenticated,
                    "given_checkpoints": r.given_checkpoints,
                    "unlisted": r.unlisted,
                }))?;
            } else {
                out.line(&format!("OK: the archive at {url} is intact"))?;
                out.line(&format!(
                    "  rounds      {} (manifests chained from round 1)",
                    r.rounds
                ))?;
                out.line(&format!("  segments    {}", r.segments))?;
                if r.parquet_segments > 0 {
                    out.line(&format!(
                        "  parquet     {} segment(s) with Parquet copies, every row equal to \
                         its record",
                        r.parquet_segments
                    ))?;
                }
                out.line(&format!("  records     0..{}", thousands(r.records)))?;
                out.line(&format!(
                    "  objects     {} ({}), {secs:.3} s, {mb_per_sec:.1} MB/s",
                    r.objects,
                    bytes(r.bytes)
                ))?;
                out.line(&format!("  tree root   {}", hex::encode(r.root)))?;
                out.line(&format!("  chain head  {}", hex::encode(r.chain_head)))?;
                let signed = if authenticated {
                    "signatures checked with the public key"
                } else {
                    "signatures NOT checked: pass --public-key"
                };
                out.line(&format!(
                    "  checkpoints every round's proven consistent{}; {signed}",
                    r.newest_checkpoint
                        .map(|n| format!(" (newest covers {} records)", thousands(n)))
                        .unwrap_or_default()
                ))?;
                if r.given_checkpoints > 0 {
                    out.line(&format!(
                        "  given       {} checkpoint(s) match the archived log",
                        r.given_checkpoints
                    ))?;
                }
                if !r.unlisted.is_empty() {
                    out.line(&format!(
                        "  note        {} object(s) no manifest lists (an unfinished round's \
                         uploads, or put there by someone else), e.g. {}",
                        r.unlisted.len(),
                        r.unlisted.first().map(String::as_str).unwrap_or_default()
                    ))?;
                }
            }
            out.flush()
        }
        Err(e) => {
            if json {
                out.json_line(&serde_json::json!({
                    "intact": false,
                    "url": url,
                    "object": e.object(),
                    "problem": e.to_string(),
                }))?;
                out.flush()?;
            }
            Err(archive_error(url, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_units_retention_needs() {
        let d = |t| parse_duration("--retain", t).ok();
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(d("400d"), Some(Duration::from_secs(400 * 86_400)));
        assert_eq!(d("1y"), Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(d("1"), None);
        assert_eq!(d("3 days"), None);
    }
}
