//! The per-segment secondary index of sealog (the *sidecar*).
//!
//! A sealed segment's sidecar holds data derived from the segment so that
//! queries need not scan it:
//!
//! * the **offsets column**: for each record ordinal, the byte offset of the
//!   record's frame in the segment file;
//! * the **event-time column**: for each record ordinal, its event time
//!   (UTC nanoseconds, in the order the records were appended, not sorted);
//! * **term dictionaries** for low- and mid-cardinality fields (actor,
//!   action, resource type, outcome, tenant): the field's distinct terms,
//!   sorted bytewise, each with the roaring bitmap of the ordinals of the
//!   records that carry it, or, for a term with a single record, that
//!   ordinal stored inline;
//! * **hashed indexes** for high-cardinality fields (request id, resource
//!   id): sorted `(FNV-1a 64 of the term, ordinal)` pairs, 12 bytes per
//!   record, which give *candidate* ordinals that the engine confirms
//!   against the records (two terms can share a hash);
//! * **IP indexes** (source IP): sorted `(address, ordinal)` pairs, IPv4 and
//!   IPv6 apart, for exact and CIDR queries.
//!
//! [`IndexBuilder`] encodes a sidecar. [`IndexReader`] reads one in place,
//! straight from the bytes (typically an mmap), without copying anything or
//! building maps. It has two ways in:
//!
//! * [`IndexReader::parse`] checks the whole file (every CRC, every
//!   section's structure); verification and rebuilds use it;
//! * [`IndexReader::open`] checks only the header, the section table and
//!   the placement of the sections, in time proportional to the number of
//!   sections and without allocating. A query then calls
//!   [`IndexReader::check_section`] on each section it is about to use
//!   (the engine remembers which sections of which sidecar it has checked),
//!   so that the first query on a store does not read every sidecar whole.
//!
//! Lookups on a section that was not checked never panic and never read out
//! of bounds: damage gives an error or a wrong answer, never undefined
//! behaviour. Every byte of a sidecar is covered by a CRC-32 or a structural
//! rule, and the encoding is canonical: one content has exactly one
//! encoding, so a rebuilt sidecar can be compared with the old one byte for
//! byte.
//!
//! The byte-level layout is described in `docs/format.md` (section "Index
//! sidecar"); the constants of this module give its fixed sizes.
//!
//! Decoding never panics, never loops beyond the input's size, and never
//! allocates more than a small multiple of the bytes it is given.
//!
//! # Layout of this module
//!
//! One concern per file, in the order a sidecar is read:
//!
//! * `layout`: the magic, the version, the section kinds and every fixed
//!   size and offset of the format;
//! * `field`: the field ids, and a map with one place per known field;
//! * `error`: [`IndexError`] and the [`Region`]s it names;
//! * `bytes`: checked byte access shared by writer and reader;
//! * `header`: the fixed header, [`SegmentIdentity`] and the section table;
//! * `builder`: [`IndexBuilder`], which lays the file out;
//! * `reader`: [`IndexReader`], which opens it and checks sections;
//! * `columns`: the offsets and event-time columns;
//! * `postings` and `dictionary`: term dictionaries, written and read;
//! * `bitmap`: the structure check of roaring bitmaps and result sets;
//! * `hashed`: hashed indexes and [`term_key`];
//! * `ip`: IP indexes and CIDR blocks.

mod bitmap;
mod builder;
mod bytes;
mod columns;
mod dictionary;
mod error;
mod field;
mod filter;
mod hashed;
mod header;
mod ip;
mod layout;
mod postings;
mod reader;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use builder::IndexBuilder;
pub use dictionary::{TermDict, TermEntry, Terms};
pub use error::{IndexError, Region};
pub use field::IndexField;
pub use filter::{TermFilter, filter_hash};
pub use hashed::{FNV_OFFSET_BASIS, FNV_PRIME, HashedIndex, term_key};
pub use header::{SectionInfo, SegmentIdentity};
pub use ip::IpIndex;
pub use layout::{
    BLOCKS_HEADER_LEN, COLUMN_BLOCK_LEN, DICT_HEADER_LEN, FILTER_HEADER_LEN, FORMAT_VERSION,
    HASHED_ENTRY_LEN, HASHED_HEADER_LEN, HEADER_LEN, IP_HEADER_LEN, IP_V4_ENTRY_LEN,
    IP_V6_ENTRY_LEN, KIND_COLUMN_BLOCKS, KIND_DICT_BLOCKS, KIND_EVENT_TIMES, KIND_HASHED,
    KIND_HASHED_BLOCKS, KIND_IP, KIND_OFFSETS, KIND_TERM_DICT, KIND_TERM_FILTER, MAGIC,
    MAX_RECORDS, MAX_TERM_LEN, SECTION_ALIGN, SECTION_ENTRY_LEN, SectionKind, TERM_ENTRY_LEN,
    TERM_FILTER_FROM,
};
pub use reader::{DerivedKinds, IndexReader};
