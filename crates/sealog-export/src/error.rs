//! The crate's error type.

use std::path::PathBuf;

/// What went wrong while exporting or forwarding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A record could not be read from the store.
    #[error("cannot read record {seq}: {source}")]
    Read {
        /// The record's seq.
        seq: u64,
        /// The engine's error (names the segment file and byte offset).
        #[source]
        source: sealog::Error,
    },
    /// A record's bytes passed their checksum but do not decode.
    #[error("record {seq} does not decode although its checksum holds")]
    Undecodable {
        /// The record's seq.
        seq: u64,
    },
    /// A record disappeared while it was read (the store shrank).
    #[error("record {seq} vanished from the store while it was read")]
    Vanished {
        /// The record's seq.
        seq: u64,
    },
    /// A file could not be written or read.
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output stream failed.
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    /// The Parquet encoder failed.
    #[error("Parquet encoding failed: {0}")]
    Parquet(String),
    /// An output file exists already; exports never replace one.
    #[error("`{}` exists already", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A setting is invalid.
    #[error("{message}")]
    Config {
        /// What is wrong, naming the setting.
        message: String,
        /// What to do about it.
        fix: String,
    },
    /// Another forwarder holds the cursor.
    #[error("the forward cursor `{}` is in use by another forwarder", path.display())]
    CursorLocked {
        /// The cursor file.
        path: PathBuf,
    },
    /// The cursor file is not one sealog wrote.
    #[error("the forward cursor `{}` is invalid: {reason}", path.display())]
    BadCursor {
        /// The cursor file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The cursor is past the end of the log: the store is not the one the
    /// cursor was written for, or it lost records.
    #[error(
        "the forward cursor `{}` is at seq {cursor}, past the end of the log ({len} records)",
        path.display()
    )]
    CursorAhead {
        /// The cursor file.
        path: PathBuf,
        /// The cursor's next seq.
        cursor: u64,
        /// The log's length.
        len: u64,
    },
}

impl ExportError {
    /// A configuration error with its fix.
    pub fn config(message: impl Into<String>, fix: impl Into<String>) -> ExportError {
        ExportError::Config {
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// What to do about this error.
    pub fn fix(&self) -> String {
        match self {
            ExportError::Read { .. } | ExportError::Undecodable { .. } => {
                "run `sealog verify` to find the damage; `sealog export --allow-damaged` reads \
                 around it"
                    .into()
            }
            ExportError::Vanished { .. } => "run `sealog verify` to check the store".into(),
            ExportError::Io { .. } => {
                "check that the directory exists, is writable and has free space".into()
            }
            ExportError::Output(_) => {
                "check where the output goes (disk space, a closed pipe)".into()
            }
            ExportError::Parquet(_) => {
                "report this: the records are valid but could not be encoded".into()
            }
            ExportError::Exists { .. } => {
                "export into an empty directory, or move the existing files away first".into()
            }
            ExportError::Config { fix, .. } => fix.clone(),
            ExportError::CursorLocked { .. } => {
                "stop the other forwarder (a `sealog forward` or a server's [[forward]]) or give \
                 this one another --name"
                    .into()
            }
            ExportError::BadCursor { .. } => {
                "restore the file from a backup, or remove it and restart with --start SEQ at \
                 the first seq the receiver lacks"
                    .into()
            }
            ExportError::CursorAhead { .. } => {
                "check --data-dir: the cursor belongs to another store; or remove the cursor \
                 and restart with --start"
                    .into()
            }
        }
    }
}
