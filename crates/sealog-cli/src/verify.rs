//! `sealog verify`: full verification of a store directory.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::{
    Global, Out, bytes, check_store_exists, load_public_key, rate, stderr_is_terminal, thousands,
};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Re-reads everything and trusts nothing derived: every frame checksum and
record, the hash chain from the store's genesis value through every record,
each sealed segment's Merkle root and footer, the links between segments,
the stored tree hashes, and every signed checkpoint in the store's history
(root and chain value at its size). The store may be in use by a server,
or a copy.

The index sidecars and key filters (files derived from the records, which
queries use) are compared with what the records give. --log-only skips
them, about a third of the work: it checks everything that makes the log
tamper-evident, and nothing a query's speed depends on.

With --public-key, each checkpoint's signature is checked too: then even
someone who could rewrite every file of the store is caught, because they
cannot sign. Checkpoints you kept elsewhere (--checkpoint) are checked the
same way, so a history that was deleted or rewritten cannot hide a change.

Exit status: 0 the store is intact; 1 tampering or corruption was found (the
file, byte offset, seq and what failed are printed) or verification could
not run; 2 usage error (no store at --data-dir, bad flags).

Examples:
  sealog verify
  sealog verify --data-dir /backup/sealog-2026-11-23
  sealog verify --json && echo intact
  sealog verify --log-only --public-key /etc/sealog/log.pub
  sealog verify --public-key /etc/sealog/log.pub --checkpoint published-2026-11-01.txt
  sealog verify --archive s3://audit-archive/prod --public-key /etc/sealog/log.pub";

/// Verify the whole store: checksums, records, hash chain, Merkle roots.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct VerifyArgs {
    /// Print the summary (or the problem found) as one JSON object.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    /// The log's public key (`sealog keygen`'s PREFIX.pub): check every
    /// checkpoint's signature.
    ///
    /// Example: --public-key /etc/sealog/log.pub
    #[arg(long, value_name = "FILE")]
    public_key: Option<std::path::PathBuf>,

    /// A signed checkpoint kept elsewhere (a file holding the signed note,
    /// as printed by `sealog checkpoint`); repeatable.
    ///
    /// Example: --checkpoint checkpoint-2026-11-01.txt
    #[arg(long, value_name = "FILE")]
    checkpoint: Vec<std::path::PathBuf>,

    /// Verify the archive at this URL instead of a local store (see
    /// `sealog archive`): every object against its manifest, segments,
    /// chain, roots, checkpoints and consistency proofs.
    ///
    /// Example: --archive s3://audit-archive/prod
    #[arg(long, value_name = "URL")]
    archive: Option<String>,

    /// Check the log only: frames, records, the hash chain, Merkle roots,
    /// footers, tree files and checkpoints, but not the index sidecars and
    /// key filters derived from the records (about a third of the work).
    ///
    /// Example: --log-only
    #[arg(long, conflicts_with = "archive")]
    log_only: bool,
}

/// Bytes of segment files: what verification reads.
fn segment_bytes(dir: &Path) -> (u64, u64) {
    let mut total = 0;
    let mut files = 0;
    if let Ok(read) = std::fs::read_dir(dir.join("segments")) {
        for entry in read.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".seg") {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                files += 1;
            }
        }
    }
    (files, total)
}

/// What the summary says about signatures: how many were checked, and
/// plainly when none were.
fn signature_line(authenticated: bool, checked: u64, records: u64, newest: Option<u64>) -> String {
    let uncovered = records.saturating_sub(newest.unwrap_or(0));
    let tail = if uncovered > 0 {
        format!(
            "; the last {} records are not covered by a signed checkpoint yet (sign one: \
             sealog checkpoint --signing-key PREFIX.key)",
            thousands(uncovered)
        )
    } else {
        String::new()
    };
    match (authenticated, checked) {
        (false, _) => {
            "  signatures  NOT checked: pass --public-key PREFIX.pub to check them".into()
        }
        (true, 0) => "  signatures  NONE checked: there is no signed checkpoint to check, so \
                      nothing here is authenticated by the key (sign one: sealog checkpoint \
                      --signing-key PREFIX.key; writers given --signing-key sign them)"
            .into(),
        (true, n) => format!(
            "  signatures  {} checked with the public key, all valid{tail}",
            thousands(n)
        ),
    }
}

/// What the summary says about the index files derived from the records.
fn indexes_line(report: &sealog::VerifyReport) -> String {
    if !report.indexes_checked {
        return "  indexes     NOT checked (--log-only): the index sidecars and key filters \
                queries use were not compared with the records"
            .into();
    }
    let missing = match report.sidecars_missing.len() {
        0 => String::new(),
        n => format!("; {n} sealed segment(s) have none yet (a query rebuilds it)"),
    };
    format!(
        "  indexes     {} index sidecar(s) and {} key-filter entries equal to what their \
         records give{missing}",
        report.sidecars_checked, report.key_filters_checked
    )
}

pub fn run(global: &Global, args: VerifyArgs) -> Result<(), CliError> {
    if let Some(url) = &args.archive {
        return crate::archive::verify(
            url,
            args.public_key.as_deref(),
            &args.checkpoint,
            args.json,
        );
    }
    let dir = &global.data_dir;
    check_store_exists(dir)?;
    let public_key = args
        .public_key
        .as_deref()
        .map(load_public_key)
        .transpose()?;
    let mut checkpoints = Vec::new();
    for path in &args.checkpoint {
        checkpoints.push(
            std::fs::read_to_string(path).map_err(|source| CliError::ReadInput {
                what: "checkpoint",
                path: path.clone(),
                source,
            })?,
        );
    }
    let authenticated = public_key.is_some();
    let options = sealog::VerifyOptions {
        public_key,
        checkpoints,
        log_only: args.log_only,
    };
    let bar = stderr_is_terminal().then(|| {
        let (files, total) = segment_bytes(dir);
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} verifying {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{files} segments, {}", bytes(total)));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let result = sealog::verify_dir_with(dir, &options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out = Out::new();
    match result {
        Ok(report) => {
            let secs = report.elapsed.as_secs_f64();
            // Over the records checked: an open segment's preallocated
            // zeros are read, but a rate over them says nothing.
            let mb_per_sec = rate(report.frame_bytes as f64 / 1e6, secs);
            let signatures = if authenticated { report.checkpoints } else { 0 };
            if args.json {
                out.json_line(&serde_json::json!({
                    "intact": true,
                    "segments": report.segments,
                    "sealed_segments": report.sealed_segments,
                    "records": report.records,
                    "bytes": report.bytes,
                    "record_bytes": report.frame_bytes,
                    "elapsed_secs": secs,
                    "mb_per_sec": mb_per_sec,
                    "chain_head": hex::encode(report.chain_head),
                    "unacknowledged_tail_bytes": report.unacknowledged_tail_bytes,
                    "root": hex::encode(report.root),
                    "checkpoints": report.checkpoints,
                    "checkpoints_authenticated": report.checkpoints_authenticated,
                    "signatures_checked": signatures,
                    "newest_checkpoint": report.newest_checkpoint,
                    "archived_not_local": report.archived_not_local,
                    "policy_note_covers": report.policy_note_covers,
                    "indexes_checked": report.indexes_checked,
                    "sidecars_checked": report.sidecars_checked,
                    "sidecars_missing": report.sidecars_missing.len(),
                    "key_filters_checked": report.key_filters_checked,
                    "key_filters_missing": report.key_filters_missing,
                }))?;
            } else {
                out.line(&format!("OK: the store at {} is intact", dir.display()))?;
                out.line(&format!(
                    "  segments    {} ({} sealed, {} open)",
                    report.segments,
                    report.sealed_segments,
                    report.segments - report.sealed_segments
                ))?;
                out.line(&format!("  records     {}", thousands(report.records)))?;
                if let (Some(first), Some(last)) = (
                    report.archived_not_local.first(),
                    report.archived_not_local.last(),
                ) {
                    out.line(&format!(
                        "  archived    {} segment(s) archived, not local ({first} .. {last}): \
                         their records were checked by their leaf hashes (chain, roots, \
                         checkpoints), not read; `sealog verify --archive URL` checks the copies",
                        report.archived_not_local.len()
                    ))?;
                }
                out.line(&format!(
                    "  bytes       {} of records ({}); {} of segment files read{}",
                    thousands(report.frame_bytes),
                    bytes(report.frame_bytes),
                    bytes(report.bytes),
                    if report.segments > report.sealed_segments {
                        ", with the open segment's preallocated space"
                    } else {
                        ""
                    }
                ))?;
                out.line(&format!(
                    "  elapsed     {secs:.3} s, {mb_per_sec:.1} MB/s of records"
                ))?;
                out.line(&format!("  chain head  {}", hex::encode(report.chain_head)))?;
                out.line(&format!("  tree root   {}", hex::encode(report.root)))?;
                out.line(&format!(
                    "  checkpoints {} consistent with the log{}",
                    report.checkpoints,
                    report
                        .newest_checkpoint
                        .map(|n| format!(" (newest covers {} records)", thousands(n)))
                        .unwrap_or_default()
                ))?;
                out.line(&signature_line(
                    authenticated,
                    signatures,
                    report.records,
                    report.newest_checkpoint,
                ))?;
                out.line(&indexes_line(&report))?;
                if report.unacknowledged_tail_bytes > 0 {
                    out.line(&format!(
                        "  note        {} bytes at the end of the open segment are an \
                         interrupted write that was never acknowledged; the next open for \
                         writing removes them (keeping a copy in lost+found/)",
                        report.unacknowledged_tail_bytes
                    ))?;
                }
            }
            out.flush()
        }
        Err(sealog::Error::Corruption(c)) => {
            if args.json {
                out.json_line(&serde_json::json!({
                    "intact": false,
                    "file": dir.join(&c.location.file),
                    "offset": c.location.offset,
                    "seq": c.location.seq,
                    "problem": c.kind.to_string(),
                }))?;
                out.flush()?;
            }
            Err(CliError::Corrupt {
                dir: dir.clone(),
                corruption: c,
            })
        }
        Err(e) => Err(CliError::store("verification", dir, e)),
    }
}
