//! sealog-archive: an off-host, write-once copy of a sealog store in object
//! storage (S3 and S3-compatible servers, Google Cloud Storage, Azure Blob
//! Storage, local directories), built on the `object_store` crate.
//!
//! - [`Archiver`] uploads a store's sealed segments round by round: each
//!   segment with its index sidecar and the Merkle tree entries it
//!   completes, a signed checkpoint covering them, and last a manifest that
//!   names every object with its SHA-256, the archived tree size, the
//!   checkpoint and the RFC 9162 consistency proofs tying it to the
//!   archived records and to the previous manifest's checkpoint. Objects
//!   are written once (conditional puts; an existing object is compared,
//!   never replaced), with S3 Object Lock retention when configured.
//! - [`verify`] checks an archive alone, with the log's public key: every
//!   object, segment, chain link, root, signature and proof. Whoever holds
//!   the bucket and the key can prove the archive is a complete, unforked
//!   prefix of the log.
//! - [`restore`] rebuilds a verified local store from an archive.
//! - [`Archiver::prune_local`] removes local segments whose archived copies
//!   read back identical (retention of local copies), and [`ArchiveCache`]
//!   serves the store's reads of them from a bounded local cache.
//!
//! The archive's layout and manifest format are specified in
//! `docs/archive.md`. Everything is async inside; [`blocking`] holds the
//! blocking facades the command line uses.

mod cache;
mod error;
pub mod layout;
pub mod manifest;
mod parquet;
mod restore;
mod retain;
mod target;
mod upload;
mod verify;

pub use cache::{ArchiveCache, DEFAULT_CACHE_BYTES};
pub use error::{ArchiveError, Result};
pub use restore::{RestoreReport, restore};
pub use retain::PruneReport;
pub use target::{LockMode, ObjectLock, PutOutcome, RetryPolicy, Target, TargetOptions, Uploader};
pub use upload::{Archiver, ArchiverOptions, Head, Progress, RoundReport, read_head};
pub use verify::{ArchiveReport, Sink, VerifyOptions, verify};

/// Blocking versions of the async functions, each on a small runtime of
/// its own (for the command line; a server drives the async ones).
pub mod blocking {
    use std::path::Path;

    use crate::{ArchiveReport, RestoreReport, Result, Target, TargetOptions, VerifyOptions};

    fn runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| crate::ArchiveError::Io {
                op: "start the archive's runtime",
                path: "tokio".into(),
                source,
            })
    }

    /// [`crate::verify`] of the archive at `url`.
    pub fn verify(
        url: &str,
        target: TargetOptions,
        options: &VerifyOptions,
    ) -> Result<ArchiveReport> {
        let target = Target::open(url, target)?;
        runtime()?.block_on(crate::verify(&target, options, None))
    }

    /// The newest manifest of the archive at `url` ([`crate::read_head`]).
    pub fn head(url: &str, target: TargetOptions) -> Result<Option<crate::Head>> {
        let target = Target::open(url, target)?;
        runtime()?.block_on(crate::read_head(&target))
    }

    /// [`crate::restore`] of the archive at `url` into `dir`.
    pub fn restore(
        url: &str,
        dir: &Path,
        target: TargetOptions,
        options: &VerifyOptions,
    ) -> Result<RestoreReport> {
        let target = Target::open(url, target)?;
        runtime()?.block_on(crate::restore(&target, dir, options))
    }
}
