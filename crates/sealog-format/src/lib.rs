//! The formats of sealog: pure bytes, no I/O.
//!
//! This crate defines everything sealog writes, so that a verifier (in Rust
//! or, from `docs/format.md`, in any language) needs nothing else:
//!
//! - [`event`]: the audit event model and its JSON shape;
//! - [`validate`]: the content rules and the secret guard;
//! - [`record`]: the record body, the bytes that are hashed;
//! - [`frame`]: length + CRC framing of records inside a segment;
//! - [`segment`]: segment header and footer, the store manifest;
//! - [`compressed`]: compressed sealed segments (zstd blocks of the
//!   segment's bytes, readable one block at a time);
//! - [`index`]: the per-segment index sidecar (term dictionaries, exact-match
//!   keys, addresses, columns);
//! - [`keyfilter`]: the store-wide Bloom filters of each sealed segment's
//!   exact-match keys (`key-filters`);
//! - [`chain`]: the BLAKE3 hash chain;
//! - [`merkle`]: the RFC 9162 Merkle tree, inclusion and consistency proofs;
//! - [`note`]: C2SP signed notes with Ed25519 keys;
//! - [`checkpoint`]: C2SP tlog checkpoints (signed tree heads);
//! - [`receipt`]: C2SP `tlog-proof@v1` receipts, verifiable offline.
//!
//! All integers are little-endian and fixed-width; every structure carries a
//! magic number and a format version. Decoding never panics on bad input: it
//! returns an error that says what was wrong and where.

#![forbid(unsafe_code)]
#![deny(clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

pub mod chain;
pub mod checkpoint;
pub mod compressed;
pub mod event;
pub mod frame;
pub mod index;
pub mod keyfilter;
mod le;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod record;
pub mod segment;
pub mod validate;

pub use event::{Actor, Event, Metadata, Outcome, Principal, Record, Resource, Source, Timestamp};
pub use merkle::Hash;
pub use validate::{EventLimits, SecretGuard, SecretPolicy, ValidationError, Validator};
