//! sealog: a durable, append-only, tamper-evident storage engine for audit
//! logs.
//!
//! Open a [`Store`], append [`Event`]s, read them back, and verify that
//! nothing was altered:
//!
//! ```no_run
//! use sealog::{Durability, Store, StoreOptions};
//! use sealog::format::{Actor, Event, Outcome, Resource};
//!
//! let store = Store::open("./audit", StoreOptions::default())?;
//! let receipts = store.append_batch(vec![
//!     Event::new(Actor::new("user", "alice"), "customer.delete",
//!                Resource::new("customer", "4471"), Outcome::Success),
//!     Event::new(Actor::new("user", "bob"), "auth.login_failed",
//!                Resource::kind("session"), Outcome::Failure),
//! ])?;
//! assert_eq!(receipts[1].seq, receipts[0].seq + 1);
//! store.verify()?;
//! # Ok::<(), sealog::Error>(())
//! ```
//!
//! ## Guarantees
//!
//! - An append returns only once its events are on stable storage (under
//!   the default [`Durability::Group`]); concurrent appends share one sync.
//! - A batch is atomic: after a crash, all of it is present or none.
//! - Records are never updated or deleted. Each record's leaf hash
//!   (RFC 9162) and the BLAKE3 hash chain commit to everything before it;
//!   each sealed segment's footer carries its Merkle root.
//! - After a failed write or sync the store refuses writes until reopened.
//! - Reopening after a crash scans only the unsealed segments and removes
//!   only bytes that were never acknowledged, saying so in a
//!   `store.recovered` event.
//! - A damaged store is refused by every open (a missing segment, a broken
//!   link, a leaf file or checkpoint the segments do not match), and a read
//!   that meets damage fails naming the file, byte offset and seq: no read
//!   ever looks complete when it is not. Reading around damage is an
//!   explicit, read-only choice ([`OnDamage::ReadAround`]) whose skipped
//!   ranges [`Store::damage`] lists.
//!
//! The byte-level format is specified in `docs/format.md` and implemented
//! by the [`sealog_format`] crate, re-exported as [`mod@format`].

pub mod aggregate;
pub mod background;
mod batch;
pub mod checkpoint;
mod committer;
mod compressed;
mod damage;
mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod fs;
pub mod image;
mod index;
mod indexer;
mod key_filter;
mod layout;
pub mod mmap;
mod open_index;
mod options;
mod policy_note;
pub mod privacy;
mod progress;
pub mod pruned;
pub mod query;
mod readers;
mod recovery;
mod scan;
mod sealer;
mod search;
mod segment;
mod segment_file;
mod sequencer;
mod sidecar;
mod spread;
pub mod stats;
mod store;
mod time_order;
mod tree;
mod verify;
pub mod workload;
mod writer;

pub use sealog_format as format;
pub use sealog_format::{Event, Outcome, Record, Timestamp};

pub use checkpoint::{CheckpointOptions, SignedCheckpoint};
pub use compressed::{CompressReport, Compression};
pub use damage::{Damage, OnDamage};
pub use error::{BatchError, Corruption, CorruptionKind, Error, Location, Result};
pub use fs::{LockGuard, OpenMode, StdFs, Vfs, VfsFile};
pub use mmap::Mapped;
pub use options::{Durability, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, Preallocation, StoreOptions};
pub use recovery::{RecoveryReport, Truncation};
pub use scan::Scan;
pub use search::Matches;
pub use stats::Stats;
pub use store::{Appending, Head, READ_ONLY_OPEN_TRIES, Receipt, Store};
pub use verify::{VerifyOptions, VerifyReport, verify_dir, verify_dir_with};
