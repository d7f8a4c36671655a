//! How a store is opened: durability, segment size, validation rules.

use std::sync::Arc;
use std::time::Duration;

use sealog_format::Validator;
use sealog_format::segment::{END_MARKER_LEN, FOOTER_LEN, HEADER_LEN};

use crate::damage::OnDamage;
use crate::error::{Error, Result};
use crate::fs::{StdFs, Vfs};
use crate::privacy::PrivacyPolicy;

/// When an append returns.
///
/// Durability is a property of each append: [`StoreOptions::durability`]
/// sets the default, and [`crate::Store::append_batch_with`] chooses per
/// call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Return only once the events are on stable storage (`fdatasync`).
    /// Concurrent appends share one sync (group commit). The default.
    #[default]
    Group,
    /// Return once the events are written to the operating system, without
    /// waiting for a sync. They survive a crash of the process but not of
    /// the machine: a power loss can lose the last moments of appends (the
    /// store syncs when a segment is sealed, on [`crate::Store::sync`] and on
    /// close). Recovery then truncates to the last complete batch.
    Buffered,
}

/// How a new segment file's space is reserved before records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Preallocation {
    /// Write zeros over the whole segment ahead of use (in the background).
    /// Syncs are then pure data writes: measured 565 MiB/s of 1 MiB
    /// durable writes against 132 MiB/s into `fallocate`d space, whose
    /// unwritten extents cost a journal commit at every sync. The default.
    #[default]
    ZeroFill,
    /// Reserve blocks with `fallocate` (fast to create, slower syncs).
    Allocate,
    /// Do not reserve space; the file grows as records are written.
    None,
}

/// Options for [`crate::Store::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Default durability of appends (default [`Durability::Group`]).
    pub durability: Durability,
    /// Size at which the active segment is sealed and a new one started
    /// (default 64 MiB; between 4 KiB and 1 GiB).
    pub segment_size: u64,
    /// Seal the active segment once it is this old, even if not full
    /// (default: never).
    pub segment_max_age: Option<Duration>,
    /// Largest encoded batch accepted by one append (default 16 MiB, and at
    /// most what one segment can hold).
    pub max_batch_bytes: u64,
    /// How segment space is reserved (default [`Preallocation::ZeroFill`]).
    pub preallocation: Preallocation,
    /// The rules events must satisfy: field limits and the secret guard.
    pub validator: Validator,
    /// Per-field transforms applied to every event after validation and
    /// before it is encoded, hashed and written, and to the values of every
    /// query (default: none). See [`crate::privacy`].
    pub privacy: PrivacyPolicy,
    /// Signed checkpoints: the key and when to sign (default: none; the
    /// store then issues no checkpoints, proofs and receipts).
    pub checkpoints: Option<crate::checkpoint::CheckpointOptions>,
    /// What a read-only open does with a damaged store (default
    /// [`OnDamage::Refuse`]; [`OnDamage::ReadAround`] is refused by a
    /// writable open).
    pub on_damage: OnDamage,
    /// Where reads get the records of segments archived and removed from
    /// the store (`pruned.log`; default: nowhere, and such a read fails
    /// with [`crate::Error::Archived`] naming the segment and archive).
    pub archive: Option<Arc<dyn crate::pruned::ArchiveSource>>,
    /// Whether the sealer stores sealed segments compressed (default
    /// [`crate::Compression::None`]). Any open reads both forms; a writer
    /// with compression also compresses, between seals, the sealed segments
    /// it finds uncompressed. Builds before compressed segments existed
    /// cannot read a store holding one.
    pub compression: crate::Compression,
    /// The filesystem (the real one unless a test substitutes its own).
    pub fs: Arc<dyn Vfs>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Group,
            segment_size: 64 << 20,
            segment_max_age: None,
            max_batch_bytes: 16 << 20,
            preallocation: Preallocation::ZeroFill,
            validator: Validator::default(),
            privacy: PrivacyPolicy::default(),
            checkpoints: None,
            on_damage: OnDamage::Refuse,
            archive: None,
            compression: crate::Compression::None,
            fs: Arc::new(StdFs),
        }
    }
}

/// Bytes of a segment that frames cannot use.
pub(crate) const SEGMENT_OVERHEAD: u64 = (HEADER_LEN + END_MARKER_LEN + FOOTER_LEN) as u64;
/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 4 << 10;
/// Largest segment size accepted (frame offsets are stored as u32).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

impl StoreOptions {
    /// Checks the options and returns the effective batch limit.
    pub(crate) fn check(&self) -> Result<u64> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::Config(format!(
                "segment_size {} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        self.compression.check()?;
        if self.max_batch_bytes == 0 {
            return Err(Error::Config("max_batch_bytes must be positive".into()));
        }
        if self.segment_max_age.is_some_and(|a| a.is_zero()) {
            return Err(Error::Config("segment_max_age must be positive".into()));
        }
        Ok(self
            .max_batch_bytes
            .min(self.segment_size - SEGMENT_OVERHEAD))
    }
}
