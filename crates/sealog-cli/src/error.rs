//! The command line's errors: each says what went wrong, where, and how to
//! fix it, and maps to an exit code.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | success (for `verify`: the store is intact; for `verify-receipt`: the receipt is valid) |
//! | 1 | the operation failed, or tampering/corruption was found, or a receipt is invalid |
//! | 2 | usage error: a bad flag, bad JSON or an invalid event given as input, an unreadable input file, no store at `--data-dir` |

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// "Too many open files" (the process's limit), on Linux, macOS and the
/// BSDs: `io::ErrorKind` has no stable kind for it.
const EMFILE: i32 = 24;

/// Exit code of a successful command.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed operation, detected tampering or an invalid receipt.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a usage error.
pub const EXIT_USAGE: u8 = 2;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value is wrong.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// An event given as input is malformed or breaks a validation rule.
    #[error("invalid event{}: {}", at(.input, *.line), describe_field(.field, .reason))]
    InvalidEvent {
        /// Where the event came from (`--json`, a file name, `stdin`).
        input: String,
        /// The 1-based line number in that input, if it has lines.
        line: Option<u64>,
        /// The JSON path of the offending field (empty: the whole event).
        field: String,
        /// What is wrong with it.
        reason: String,
        /// What happened to the rest of the input, and how to go on.
        hint: String,
    },
    /// An input file cannot be read.
    #[error("cannot read {what} `{}`: {source}", path.display())]
    ReadInput {
        /// What the file is (`import file`, `public key`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// There is no store at the data directory.
    #[error("no sealog store at `{}`", dir.display())]
    NoStore {
        /// The data directory.
        dir: PathBuf,
    },
    /// The store reported an error.
    #[error("{op} failed: {source}")]
    Store {
        /// What the command was doing (`open the store`, `append`, ...).
        op: &'static str,
        /// The store directory.
        dir: PathBuf,
        /// The engine's error.
        #[source]
        source: sealog::Error,
    },
    /// Writing to the store failed part-way through an input (a full disk,
    /// an I/O error): the hint says what of the input is in the log.
    #[error("{op} failed at {input} line {line}: {source}")]
    Interrupted {
        /// What the command was doing.
        op: &'static str,
        /// The input (a file name, `stdin`).
        input: String,
        /// The first line of the batch that failed.
        line: u64,
        /// The store directory.
        dir: PathBuf,
        /// The engine's error.
        #[source]
        source: Box<sealog::Error>,
        /// What is in the log, and how to go on.
        hint: String,
    },
    /// Verification found bytes that are not what sealog wrote.
    #[error("TAMPERING OR CORRUPTION DETECTED: {}", corruption.kind)]
    Corrupt {
        /// The store directory.
        dir: PathBuf,
        /// Where and what.
        corruption: Box<sealog::Corruption>,
    },
    /// A command reading the store met damage: the store does not hold
    /// what sealog wrote, so its answer would be incomplete.
    #[error("the store is damaged, so the answer would be incomplete: {}", corruption.kind)]
    Damaged {
        /// The store directory.
        dir: PathBuf,
        /// Where and what.
        corruption: Box<sealog::Corruption>,
    },
    /// A receipt does not verify.
    #[error("receipt `{}` is INVALID: {reason}", path.display())]
    InvalidReceipt {
        /// The receipt file.
        path: PathBuf,
        /// Exactly why.
        reason: String,
        /// What to check.
        hint: String,
    },
    /// Writing output or a file failed.
    #[error("cannot {op} `{}`: {source}", path.display())]
    Write {
        /// What the command was doing (`write`, `create`, ...).
        op: &'static str,
        /// The file (`stdout` for standard output).
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Archiving, verifying an archive or restoring from one failed.
    #[error("{}{error}", if matches!(**error, sealog_archive::ArchiveError::Tampered { .. }) { "ARCHIVE TAMPERING OR CORRUPTION DETECTED: " } else { "" })]
    Archive {
        /// The archive URL.
        url: String,
        /// What went wrong, naming the object.
        error: Box<sealog_archive::ArchiveError>,
    },
    /// Something else failed.
    #[error("{message}")]
    Failed {
        /// What failed.
        message: String,
        /// How to fix it.
        hint: String,
    },
}

fn at(input: &str, line: Option<u64>) -> String {
    match line {
        Some(line) => format!(" at {input} line {line}"),
        None => format!(" in {input}"),
    }
}

fn describe_field(field: &str, reason: &str) -> String {
    if field.is_empty() {
        reason.to_owned()
    } else {
        format!("`{field}` {reason}")
    }
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A failure that is not a usage error.
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError::Failed {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// An engine error, classified: a damaged store is reported as
    /// corruption, an invalid query as a usage error.
    pub fn store(op: &'static str, dir: &Path, source: sealog::Error) -> CliError {
        match source {
            sealog::Error::Corruption(corruption) => CliError::Corrupt {
                dir: dir.to_path_buf(),
                corruption,
            },
            sealog::Error::InvalidQuery { field, reason } => CliError::Usage {
                message: format!("{}: {reason}", flag_of_query_field(field)),
                hint: "see `sealog query --help` for the filter syntax".into(),
            },
            sealog::Error::InvalidEvent(e) => CliError::InvalidEvent {
                input: "the event".into(),
                line: None,
                field: e.field().to_owned(),
                reason: e.reason(),
                hint: "fix the field and try again".into(),
            },
            source => CliError::Store {
                op,
                dir: dir.to_path_buf(),
                source,
            },
        }
    }

    /// An engine error met by a command that reads the store: damage is
    /// reported as such (with what to do about it, `--allow-damaged`
    /// included), the rest as by [`CliError::store`].
    pub fn read(op: &'static str, dir: &Path, source: sealog::Error) -> CliError {
        match source {
            sealog::Error::Corruption(corruption) => CliError::Damaged {
                dir: dir.to_path_buf(),
                corruption,
            },
            other => CliError::store(op, dir, other),
        }
    }

    /// A write to standard output failed.
    pub fn stdout(source: io::Error) -> CliError {
        CliError::Write {
            op: "write to",
            path: PathBuf::from("stdout"),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage { .. }
            | CliError::InvalidEvent { .. }
            | CliError::ReadInput { .. }
            | CliError::NoStore { .. } => EXIT_USAGE,
            CliError::Store {
                source: sealog::Error::Config(_),
                ..
            } => EXIT_USAGE,
            CliError::Store { .. }
            | CliError::Interrupted { .. }
            | CliError::Corrupt { .. }
            | CliError::Damaged { .. }
            | CliError::InvalidReceipt { .. }
            | CliError::Write { .. }
            | CliError::Failed { .. } => EXIT_FAILED,
            CliError::Archive { error, .. } => match **error {
                sealog_archive::ArchiveError::Config { .. } => EXIT_USAGE,
                _ => EXIT_FAILED,
            },
        }
    }

    /// True when the error is a closed pipe on standard output (`sealog
    /// export | head`): not worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Write { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Where the problem is, when that is more than the message says.
    fn location(&self) -> Option<String> {
        match self {
            CliError::Corrupt { dir, corruption } | CliError::Damaged { dir, corruption } => {
                Some(describe_location(dir, &corruption.location))
            }
            CliError::Interrupted {
                dir, input, line, ..
            } => Some(format!("store {}; {input} line {line}", dir.display())),
            CliError::Store {
                dir,
                source: sealog::Error::Archived { segment, url, .. },
                ..
            } => Some(format!(
                "{} (removed from the store after archiving; archived at {url})",
                dir.join(&**segment).display()
            )),
            CliError::Store { dir, source, .. } => match source.corruption() {
                Some(c) => Some(format!("{}", dir.join(&c.location.file).display())),
                None => Some(format!("store {}", dir.display())),
            },
            CliError::Archive { url, error } => Some(match error.object() {
                Some(object) => format!("object {object} in the archive {url}"),
                None => format!("archive {url}"),
            }),
            _ => None,
        }
    }

    /// How to fix the problem.
    fn hint(&self) -> Option<String> {
        match self {
            CliError::Usage { hint, .. }
            | CliError::InvalidEvent { hint, .. }
            | CliError::InvalidReceipt { hint, .. }
            | CliError::Interrupted { hint, .. }
            | CliError::Failed { hint, .. } => Some(hint.clone()),
            CliError::ReadInput { what, source, .. }
                if *what == "signing key" && source.kind() == io::ErrorKind::NotFound =>
            {
                Some(
                    "create a key pair with `sealog keygen --name ORIGIN --out PREFIX` and pass \
                     PREFIX.key with --signing-key (or SEALOG_SIGNING_KEY); without a signing key the log \
                     issues no checkpoints or receipts"
                        .into(),
                )
            }
            CliError::ReadInput { what, .. } => {
                Some(format!("check the path and permissions of the {what}"))
            }
            CliError::NoStore { dir } => Some(format!(
                "if the store is elsewhere, pass its directory with --data-dir or \
                 SEALOG_DATA_DIR; to start a new one here, run `sealog init --data-dir {}` (or \
                 `sealog serve --create`); `sealog append` and `sealog import` also create one",
                dir.display()
            )),
            CliError::Corrupt { dir, corruption }
                if matches!(corruption.kind, sealog::CorruptionKind::Sidecar { .. }) =>
            {
                Some(format!(
                    "the records verified; only their index is wrong: remove {} (derived data) \
                     and the next query rebuilds it from the records",
                    dir.join(&corruption.location.file).display()
                ))
            }
            CliError::Corrupt { dir, corruption }
                if matches!(corruption.kind, sealog::CorruptionKind::KeyFilters { .. }) =>
            {
                Some(format!(
                    "the records verified; only the key filters are wrong: remove {} (derived \
                     data); until a writable open (`sealog serve`, `append`, `import`) writes \
                     it again, searches open every segment's index",
                    dir.join(&corruption.location.file).display()
                ))
            }
            CliError::Corrupt { dir, corruption }
                if matches!(corruption.kind, sealog::CorruptionKind::Compressed { .. }) =>
            {
                Some(compressed_hint(dir, corruption))
            }
            CliError::Corrupt { .. } => Some(
                "the store no longer matches what sealog wrote: keep a copy of the directory \
                 as evidence, restore the damaged file from a backup or replica, and run \
                 `sealog verify` again"
                    .into(),
            ),
            CliError::Damaged { dir, corruption } => Some(damage_hint(dir, corruption)),
            CliError::Write { .. } => {
                Some("check free disk space and permissions of the output".into())
            }
            CliError::Store { source, .. } => Some(store_hint(source)),
            CliError::Archive { error, .. } => Some(error.fix()),
        }
    }
}

/// `file DIR/FILE, byte offset N, seq S`.
pub fn describe_location(dir: &Path, loc: &sealog::Location) -> String {
    let mut out = format!("file {}", dir.join(&loc.file).display());
    match loc.offset {
        Some(offset) => out.push_str(&format!(", byte offset {offset}")),
        None => out.push_str(", byte offset unknown (the whole file)"),
    }
    if let Some(seq) = loc.seq {
        out.push_str(&format!(", seq {seq}"));
    }
    out
}

/// What to do about damage a reading command met, for its kind.
fn damage_hint(dir: &Path, corruption: &sealog::Corruption) -> String {
    use sealog::CorruptionKind as K;
    let file = dir.join(&corruption.location.file);
    let file = file.display();
    let evidence = "keep the store directory as it is (it is evidence)";
    let verify = "run `sealog verify` for the full picture";
    let around = "or pass --allow-damaged to read the rest (each range left out is named)";
    match &corruption.kind {
        K::MissingSegment { .. } => {
            format!("{evidence}; restore {file} from a backup or the archive; {verify}; {around}")
        }
        K::RecordsMissing { .. } | K::Truncated { .. } => format!(
            "the newest segment files were removed or cut: {evidence}; restore them from a \
             backup or the archive; {verify}; {around}"
        ),
        K::LeavesShort { .. } => format!(
            "{evidence}; restore {file} from a backup, or let the next open for writing \
             recompute it from the records; {verify}; {around}"
        ),
        K::HashMismatch { .. } | K::Checkpoint(_) | K::CheckpointMismatch { .. } => format!(
            "the log no longer matches what was signed: {evidence}; run `sealog verify \
             --public-key PREFIX.pub` to find the altered record or file and restore it from a \
             backup or the archive; {around}"
        ),
        K::Compressed { .. } => compressed_hint(dir, corruption),
        _ => format!("{evidence}; restore {file} from a backup or the archive; {verify}; {around}"),
    }
}

/// What to do about a compressed sealed segment that does not decode (a
/// damaged block, block table or dictionary): its records are lost from
/// this copy, and only another copy of the file brings them back. The
/// archive keeps a segment under its name in the store (`segments/….seg`).
fn compressed_hint(dir: &Path, corruption: &sealog::Corruption) -> String {
    let name = &corruption.location.file;
    format!(
        "records of {} cannot be read from this copy (those of its damaged blocks, or all of \
         them if its block table or dictionary is damaged): keep the store directory as it is \
         (it is evidence); restore that segment file from an archived copy (the archive's \
         {name}, or from a store rebuilt with `sealog restore`) or from a backup; `sealog \
         export --allow-damaged >/dev/null` names every damaged block (`sealog verify` stops \
         at the first); the other segments are readable, and with --allow-damaged queries skip \
         what cannot be read",
        dir.join(name).display()
    )
}

fn store_hint(error: &sealog::Error) -> String {
    match error {
        sealog::Error::Archived { url, .. } => format!(
            "the segment was removed from this store after it was archived to {url}: make the \
             archive reachable (credentials and endpoint: the AWS_*, GOOGLE_*, AZURE_* \
             variables, as for `sealog archive`), or give where a copy of the archive is with \
             --archive URL; `sealog verify --archive URL` checks the archive"
        ),
        sealog::Error::Locked { path } => {
            let who = match sealog_server::lock::holder(path) {
                Some(h) => format!("process {} (`{}`)", h.pid, h.command),
                None => "another process (a sealog server?)".to_owned(),
            };
            format!(
                "{who} has the store open for writing: send events through it if it is a \
                 server, or stop it first; reading commands (query, tail, export, stats, verify) \
                 work while it runs"
            )
        }
        sealog::Error::SegmentSpace { size, .. } => format!(
            "free space on the store's disk, or use smaller segments: --segment-size {} (a \
             writer needs room for two segments; give the same --segment-size, or set \
             SEALOG_SEGMENT_SIZE, to every command that writes)",
            smaller_segment(*size)
        ),
        sealog::Error::WritesRefused { .. } | sealog::Error::Unacknowledged { .. }
            if error.io_kind() == Some(io::ErrorKind::StorageFull) =>
        {
            "the disk is full: free space (or use a smaller --segment-size), then run the \
             command again (acknowledged events are safe)"
                .into()
        }
        sealog::Error::WritesRefused { .. } => {
            "fix the cause above and run the command again (acknowledged events are safe)".into()
        }
        sealog::Error::Unacknowledged { .. } => {
            "fix the cause above; the failed batch may be in the log after the next open (all of \
             it or none): check with `sealog query` before sending it again (acknowledged events \
             are safe)"
                .into()
        }
        sealog::Error::BatchTooLarge { .. } => "use a smaller --batch".into(),
        sealog::Error::InvalidBatch(_) => "fix the events named above".into(),
        sealog::Error::Config(_) => "check the flag values".into(),
        sealog::Error::Io { .. } if error.io_kind() == Some(io::ErrorKind::PermissionDenied) => {
            "check the permissions of the store directory".into()
        }
        sealog::Error::Io { .. } if error.io_kind() == Some(io::ErrorKind::StorageFull) => {
            "the disk is full: free space and run the command again".into()
        }
        sealog::Error::Io { source, .. } if source.raw_os_error() == Some(EMFILE) => format!(
            "raise the limit on open files (`ulimit -n`, or LimitNOFILE= in a systemd unit; \
             this process may open {})",
            sealog_server::open_file_limit().map_or("any number".into(), |n| n.to_string())
        ),
        _ => "run `sealog verify` to check the store; see the message above".into(),
    }
}

/// A segment size a quarter of `size` (at least the smallest allowed), as a
/// `--segment-size` value.
fn smaller_segment(size: u64) -> String {
    let quarter = (size / 4).max(sealog::MIN_SEGMENT_SIZE);
    if quarter >= 1 << 20 && quarter.is_multiple_of(1 << 20) {
        format!("{}MiB", quarter >> 20)
    } else if quarter.is_multiple_of(1 << 10) {
        format!("{}KiB", quarter >> 10)
    } else {
        quarter.to_string()
    }
}

/// The flag that sets a query field.
pub fn flag_of_query_field(field: &str) -> &'static str {
    match field {
        "actor" => "--actor",
        "action" => "--action",
        "resource" => "--resource",
        "resource_type" => "--resource-type",
        "outcome" => "--outcome",
        "tenant" => "--tenant",
        "source_ip" => "--source-ip",
        "request_id" => "--request-id",
        "from" => "--from/--since",
        "to" => "--to/--until",
        "since" => "--since",
        "limit" => "--limit",
        "cursor" => "--cursor",
        _ => "the query",
    }
}

/// The full report printed on standard error.
pub struct Report<'a>(pub &'a CliError);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.0)?;
        if let Some(location) = self.0.location() {
            write!(f, "\n  where: {location}")?;
        }
        if let Some(hint) = self.0.hint() {
            write!(f, "\n  fix:   {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running out of descriptors is not damage: the fix names the limit.
    #[test]
    fn too_many_open_files_names_the_limit_not_the_store() {
        let error = sealog::Error::Io {
            op: "open",
            path: PathBuf::from("store/segments/00000000000000000000.seg"),
            source: io::Error::from_raw_os_error(EMFILE),
        };
        let fix = store_hint(&error);
        assert!(fix.contains("raise the limit on open files"), "{fix}");
        assert!(fix.contains("ulimit -n"), "{fix}");
        assert!(!fix.contains("verify"), "{fix}");
        let other = sealog::Error::Io {
            op: "open",
            path: PathBuf::from("store/segments/00000000000000000000.seg"),
            source: io::Error::from_raw_os_error(5),
        };
        assert!(store_hint(&other).contains("sealog verify"));
    }

    /// A damaged compressed segment: the fix names the file to restore and
    /// where a copy is, for `verify` (corruption) and for reading commands
    /// (damage) alike, instead of the generic advice.
    #[test]
    fn a_damaged_compressed_segment_says_to_restore_that_file_from_a_copy() {
        let dir = PathBuf::from("store");
        let corruption = || {
            Box::new(sealog::Corruption {
                location: sealog::Location {
                    file: "segments/00000000000000001000.seg".into(),
                    offset: Some(16174),
                    seq: None,
                },
                kind: sealog::CorruptionKind::Compressed {
                    problem: "byte 16174 (block 5): block 5's stored bytes have CRC-32 \
                              0x1041c955, the table says 0x2479b981"
                        .into(),
                },
            })
        };
        let file = dir.join("segments/00000000000000001000.seg");
        for error in [
            CliError::Corrupt {
                dir: dir.clone(),
                corruption: corruption(),
            },
            CliError::Damaged {
                dir: dir.clone(),
                corruption: corruption(),
            },
        ] {
            let fix = error.hint().unwrap();
            assert!(
                fix.contains(&format!("records of {} cannot be read", file.display())),
                "{fix}"
            );
            assert!(fix.contains("archived copy"), "{fix}");
            assert!(
                fix.contains("the archive's segments/00000000000000001000.seg"),
                "{fix}"
            );
            assert!(fix.contains("sealog restore"), "{fix}");
            assert!(fix.contains("backup"), "{fix}");
            assert!(fix.contains("names every damaged block"), "{fix}");
            assert!(fix.contains("--allow-damaged"), "{fix}");
            assert!(!fix.contains("replica"), "not the generic advice: {fix}");
            let report = Report(&error).to_string();
            assert!(
                report.contains(&format!(
                    "where: file {}, byte offset 16174",
                    file.display()
                )),
                "{report}"
            );
        }
        // Other damage keeps its own advice.
        let other = CliError::Corrupt {
            dir,
            corruption: Box::new(sealog::Corruption {
                location: sealog::Location {
                    file: "segments/00000000000000001000.seg".into(),
                    offset: None,
                    seq: None,
                },
                kind: sealog::CorruptionKind::Layout("bad".into()),
            }),
        };
        assert!(
            !other
                .hint()
                .unwrap()
                .contains("cannot be read from this copy")
        );
    }
}
