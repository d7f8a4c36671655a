//! The archive's error type: every error names the object (or the URL)
//! and says how to fix it.

/// Everything archiving, verifying and restoring can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive's content is not what sealog wrote: an object was
    /// altered, deleted, replaced or reordered, or a proof fails.
    #[error("archive object `{object}` {problem}")]
    Tampered {
        /// The object, relative to the archive prefix.
        object: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An object to be written exists with other bytes: it is never
    /// overwritten.
    #[error("archive object `{object}` already exists with other content ({detail})")]
    Conflict {
        /// The object, relative to the archive prefix.
        object: String,
        /// The two digests.
        detail: String,
    },
    /// The object store failed (after the retries).
    #[error("{op} `{object}` at {url} failed after {attempts} attempt(s): {source}")]
    ObjectStore {
        /// What was being done (`upload`, `download`, `list`).
        op: &'static str,
        /// The object (or prefix).
        object: String,
        /// The archive URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The local store failed.
    #[error("{op}: {source}")]
    Store {
        /// What was being done.
        op: String,
        /// The engine's error.
        #[source]
        source: sealog::Error,
    },
    /// A local file operation failed.
    #[error("{op} `{}` failed: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The request cannot be carried out as configured.
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
}

impl ArchiveError {
    /// A configuration error with its fix.
    pub fn config(message: impl Into<String>, fix: impl Into<String>) -> ArchiveError {
        ArchiveError::Config {
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// Tampering found in `object`.
    pub fn tampered(object: impl Into<String>, problem: impl Into<String>) -> ArchiveError {
        ArchiveError::Tampered {
            object: object.into(),
            problem: problem.into(),
        }
    }

    /// An engine error while doing `op`.
    pub fn store(op: impl Into<String>, source: sealog::Error) -> ArchiveError {
        ArchiveError::Store {
            op: op.into(),
            source,
        }
    }

    /// The object this error is about, if any.
    pub fn object(&self) -> Option<&str> {
        match self {
            ArchiveError::Tampered { object, .. }
            | ArchiveError::Conflict { object, .. }
            | ArchiveError::ObjectStore { object, .. } => Some(object),
            _ => None,
        }
    }

    /// How to fix it.
    pub fn fix(&self) -> String {
        match self {
            ArchiveError::Tampered { .. } => "the archive no longer holds what sealog wrote: \
                 keep the bucket as evidence (do not delete anything), compare with the local \
                 store (`sealog verify`) and restore from a copy that verifies"
                .into(),
            ArchiveError::Conflict { .. } => "archived objects are never overwritten: find out \
                 who wrote the existing object (another store archiving to the same URL, or \
                 tampering); archive this store to its own prefix"
                .into(),
            ArchiveError::ObjectStore { .. } => "check that the object store is reachable and \
                 the credentials (AWS_*, GOOGLE_*, AZURE_* variables) allow it; run the command \
                 again: it resumes where it stopped and uploads nothing twice"
                .into(),
            ArchiveError::Store { .. } => {
                "run `sealog verify` on the local store; see the message above".into()
            }
            ArchiveError::Io { .. } => "check free space and permissions".into(),
            ArchiveError::Config { fix, .. } => fix.clone(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;
