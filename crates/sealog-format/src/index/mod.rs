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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::{Bound, Range};

use roaring::RoaringBitmap;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// The eight bytes every sidecar starts with.
pub const MAGIC: [u8; 8] = *b"SEALOGIX";

/// The format version this module writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Length in bytes of the fixed header written by this version.
///
/// Readers accept longer headers (a later minor revision may append fields,
/// which this version ignores); the header CRC is always its last 4 bytes.
pub const HEADER_LEN: usize = 72;

/// Length in bytes of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 24;

/// Sections start at offsets that are multiples of this.
pub const SECTION_ALIGN: u64 = 8;

/// Length in bytes of a term dictionary's own header.
pub const DICT_HEADER_LEN: usize = 16;

/// Length in bytes of one term entry in a term dictionary.
pub const TERM_ENTRY_LEN: usize = 20;

/// The longest term, in bytes.
pub const MAX_TERM_LEN: usize = 1024;

/// The most records a segment's sidecar can describe (ordinals are `u32`).
pub const MAX_RECORDS: u64 = u32::MAX as u64;

/// Section kind of the offsets column (`record_count × u32`).
pub const KIND_OFFSETS: u16 = 1;
/// Section kind of the event-time column (`record_count × i64`).
pub const KIND_EVENT_TIMES: u16 = 2;
/// Section kind of a term dictionary (one per field).
pub const KIND_TERM_DICT: u16 = 3;
/// Section kind of a hashed index (one per field).
pub const KIND_HASHED: u16 = 4;
/// Section kind of an IP index (one per field).
pub const KIND_IP: u16 = 5;

/// Length in bytes of a hashed index's own header.
pub const HASHED_HEADER_LEN: usize = 8;
/// Bytes per entry of a hashed index: a `u64` key and a `u32` ordinal.
pub const HASHED_ENTRY_LEN: usize = HASHED_KEY_LEN + ORDINAL_LEN;
/// Length in bytes of an IP index's own header.
pub const IP_HEADER_LEN: usize = 8;
/// Bytes per IPv4 entry of an IP index: a `u32` address and a `u32` ordinal.
pub const IP_V4_ENTRY_LEN: usize = IP_V4_LEN + ORDINAL_LEN;
/// Bytes per IPv6 entry of an IP index: 16 address bytes and a `u32` ordinal.
pub const IP_V6_ENTRY_LEN: usize = IP_V6_LEN + ORDINAL_LEN;

/// FNV-1a 64-bit offset basis (the hash of the empty string).
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Width of a stored ordinal.
const ORDINAL_LEN: usize = 4;
/// Width of a hashed index key.
const HASHED_KEY_LEN: usize = 8;
/// Width of a stored IPv4 address.
const IP_V4_LEN: usize = 4;
/// Width of a stored IPv6 address.
const IP_V6_LEN: usize = 16;
/// IPv6 addresses `::ffff:0:0/96` (IPv4-mapped) are stored as IPv4: the
/// first and last such address as `u128`.
const MAPPED_V4_FIRST: u128 = 0xffff_0000_0000;
const MAPPED_V4_LAST: u128 = 0xffff_ffff_ffff;

/// Width in bytes of one value of the offsets column.
const OFFSET_WIDTH: u64 = 4;
/// Width in bytes of one value of the event-time column.
const EVENT_TIME_WIDTH: u64 = 8;
/// Longest header a reader accepts.
const MAX_HEADER_LEN: u16 = 4096;
/// Number of fields this version knows (ids `1..=KNOWN_FIELDS`).
const KNOWN_FIELDS: usize = 9;

// Roaring portable-format constants.
const ROARING_COOKIE_NO_RUNS: u32 = 12346;
const ROARING_COOKIE_RUNS: u32 = 12347;
const ROARING_MAX_CONTAINERS: usize = 1 << 16;
const ROARING_ARRAY_LIMIT: u64 = 4096;
const ROARING_BITSET_BYTES: usize = 8192;
const ROARING_OFFSETS_THRESHOLD: usize = 4;

// ---------------------------------------------------------------------------
// Fields and identity
// ---------------------------------------------------------------------------

/// A field of an audit record that sidecars index.
///
/// The discriminant is the field id stored in the file. Readers skip
/// sections of ids they do not know, so new fields can be added later.
///
/// Any field can have a section of any index kind; sealog indexes `actor`,
/// `action`, `resource_type`, `outcome` and `tenant` with term dictionaries,
/// `request_id` and `resource_id` with hashed indexes, and `source_ip` with
/// an IP index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum IndexField {
    /// Who acted.
    Actor = 1,
    /// What was done.
    Action = 2,
    /// What it was done to.
    Resource = 3,
    /// The type of that resource.
    ResourceType = 4,
    /// How it ended (success, denied, error, ...).
    Outcome = 5,
    /// The tenant the record belongs to.
    Tenant = 6,
    /// The client's IP address.
    SourceIp = 7,
    /// The request id that produced the record.
    RequestId = 8,
    /// The id of the resource, without its type.
    ResourceId = 9,
}

impl IndexField {
    /// Every field this version knows, in id order.
    pub const ALL: &'static [IndexField] = &[
        IndexField::Actor,
        IndexField::Action,
        IndexField::Resource,
        IndexField::ResourceType,
        IndexField::Outcome,
        IndexField::Tenant,
        IndexField::SourceIp,
        IndexField::RequestId,
        IndexField::ResourceId,
    ];

    /// The field id stored in the file.
    pub const fn id(self) -> u16 {
        self as u16
    }

    /// The field with id `id`, or `None` for an id this version does not know.
    pub const fn from_u16(id: u16) -> Option<IndexField> {
        Some(match id {
            1 => IndexField::Actor,
            2 => IndexField::Action,
            3 => IndexField::Resource,
            4 => IndexField::ResourceType,
            5 => IndexField::Outcome,
            6 => IndexField::Tenant,
            7 => IndexField::SourceIp,
            8 => IndexField::RequestId,
            9 => IndexField::ResourceId,
            _ => return None,
        })
    }

    /// The field's name, in snake case (`"resource_type"`).
    pub const fn name(self) -> &'static str {
        match self {
            IndexField::Actor => "actor",
            IndexField::Action => "action",
            IndexField::Resource => "resource",
            IndexField::ResourceType => "resource_type",
            IndexField::Outcome => "outcome",
            IndexField::Tenant => "tenant",
            IndexField::SourceIp => "source_ip",
            IndexField::RequestId => "request_id",
            IndexField::ResourceId => "resource_id",
        }
    }

    /// Position of the field in per-field arrays (`id - 1`).
    fn slot(self) -> usize {
        usize::from(self.id()).saturating_sub(1)
    }
}

impl fmt::Display for IndexField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The segment a sidecar belongs to.
///
/// Stored in the sidecar's header so that the engine can reject a sidecar
/// that was written for another segment (see [`IndexReader::check_identity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SegmentIdentity {
    /// The store the segment belongs to.
    pub store_id: [u8; 16],
    /// The segment's number within the store.
    pub segment_no: u64,
    /// Sequence number of the segment's first record (ordinal 0).
    pub first_seq: u64,
    /// Number of records in the segment.
    pub record_count: u64,
    /// The CRC-32 stored in the segment's footer.
    pub segment_footer_crc: u32,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What kind of data a section holds, as named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SectionKind {
    /// The offsets column.
    Offsets,
    /// The event-time column.
    EventTimes,
    /// A term dictionary.
    TermDict,
    /// A hashed index.
    Hashed,
    /// An IP index.
    Ip,
    /// A kind this version does not know; readers skip such sections.
    Unknown(u16),
}

impl SectionKind {
    /// The kind stored as `kind` in a section-table entry.
    pub const fn from_u16(kind: u16) -> SectionKind {
        match kind {
            KIND_OFFSETS => SectionKind::Offsets,
            KIND_EVENT_TIMES => SectionKind::EventTimes,
            KIND_TERM_DICT => SectionKind::TermDict,
            KIND_HASHED => SectionKind::Hashed,
            KIND_IP => SectionKind::Ip,
            other => SectionKind::Unknown(other),
        }
    }

    /// The value stored in a section-table entry.
    pub const fn to_u16(self) -> u16 {
        match self {
            SectionKind::Offsets => KIND_OFFSETS,
            SectionKind::EventTimes => KIND_EVENT_TIMES,
            SectionKind::TermDict => KIND_TERM_DICT,
            SectionKind::Hashed => KIND_HASHED,
            SectionKind::Ip => KIND_IP,
            SectionKind::Unknown(other) => other,
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionKind::Offsets => f.write_str("offsets column"),
            SectionKind::EventTimes => f.write_str("event-time column"),
            SectionKind::TermDict => f.write_str("term dictionary"),
            SectionKind::Hashed => f.write_str("hashed index"),
            SectionKind::Ip => f.write_str("IP index"),
            SectionKind::Unknown(kind) => write!(f, "section of unknown kind {kind}"),
        }
    }
}

/// The part of a sidecar an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Region {
    /// The fixed header.
    Header,
    /// The section table.
    SectionTable,
    /// The section described by entry `index` of the section table.
    Section {
        /// Position in the section table (0-based).
        index: u32,
        /// The entry's `kind`.
        kind: u16,
        /// The entry's `field` id.
        field: u16,
    },
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Region::Header => f.write_str("header"),
            Region::SectionTable => f.write_str("section table"),
            Region::Section { index, kind, field } => {
                let kind = SectionKind::from_u16(kind);
                write!(f, "section #{index} ({kind}")?;
                let per_field = matches!(
                    kind,
                    SectionKind::TermDict | SectionKind::Hashed | SectionKind::Ip
                );
                if per_field || field != 0 {
                    match IndexField::from_u16(field) {
                        Some(known) => write!(f, ", field {known}")?,
                        None => write!(f, ", field id {field}")?,
                    }
                }
                f.write_str(")")
            }
        }
    }
}

/// Renders an optional term index for error messages.
struct TermAt(Option<usize>);

impl fmt::Display for TermAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(index) => write!(f, " (term #{index})"),
            None => Ok(()),
        }
    }
}

/// Why a sidecar could not be encoded, parsed or read.
///
/// Every variant that describes damage names the region and byte offset so
/// an operator can look at the file; the cure for a damaged sidecar is to
/// rebuild it from its segment (sidecars hold derived data only).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The file does not start with [`MAGIC`].
    #[error(
        "not a sealog index sidecar: the first 8 bytes are {found:02x?}, expected \"SEALOGIX\""
    )]
    BadMagic {
        /// The first eight bytes of the file.
        found: [u8; 8],
    },

    /// The file was written by a format version this reader does not know.
    #[error(
        "index sidecar has format version {found}, this build reads version {supported}; \
         upgrade sealog or rebuild the sidecar"
    )]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this reader supports.
        supported: u16,
    },

    /// The header sets flags this reader does not know.
    #[error(
        "index sidecar header sets unknown flags {flags:#010x}; it needs a newer sealog, \
         or rebuild the sidecar"
    )]
    UnsupportedFlags {
        /// The header's flags.
        flags: u32,
    },

    /// The header length field is invalid.
    #[error(
        "index sidecar header length {found} (bytes 10..12) is invalid: it must be a multiple \
         of 8 between {HEADER_LEN} and {MAX_HEADER_LEN}; the sidecar is corrupt, rebuild it"
    )]
    BadHeaderLength {
        /// The header length in the file.
        found: u16,
    },

    /// The file ends before a structure it declares.
    #[error(
        "index sidecar is truncated: the {what} needs {needed} bytes at offset {offset}, \
         but only {available} are there; rebuild the sidecar"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// How many bytes the file has from `offset` on.
        available: u64,
    },

    /// A CRC-32 does not match the bytes it covers.
    #[error(
        "index sidecar checksum mismatch in the {region} (bytes {offset}..+{len}): stored \
         {expected:#010x}, computed {actual:#010x}; the file is damaged, rebuild it"
    )]
    ChecksumMismatch {
        /// The region whose checksum failed.
        region: Region,
        /// Offset of the covered bytes.
        offset: u64,
        /// Length of the covered bytes.
        len: u64,
        /// The CRC stored in the file.
        expected: u32,
        /// The CRC of the bytes as they are.
        actual: u32,
    },

    /// A section extends past the end of the file.
    #[error(
        "index sidecar {region} spans bytes {offset}..+{len}, past the end of the \
         {file_len}-byte file; rebuild the sidecar"
    )]
    SectionOutOfBounds {
        /// The section.
        region: Region,
        /// Its declared offset.
        offset: u64,
        /// Its declared length.
        len: u64,
        /// Length of the file.
        file_len: u64,
    },

    /// A section does not start where the layout puts it (gap or overlap).
    #[error(
        "index sidecar {region} starts at offset {offset}, but the layout puts it at \
         {expected}; rebuild the sidecar"
    )]
    SectionMisplaced {
        /// The section.
        region: Region,
        /// Its declared offset.
        offset: u64,
        /// Where it must start.
        expected: u64,
    },

    /// The section table is not sorted by (kind, field), or repeats an entry.
    #[error(
        "index sidecar {region} is out of order or repeated in the section table (entries \
         must be sorted by kind, then field, without repeats); rebuild the sidecar"
    )]
    SectionOrder {
        /// The first entry out of order.
        region: Region,
    },

    /// A required section is absent.
    #[error("index sidecar has no {kind} section; rebuild the sidecar")]
    MissingSection {
        /// The missing section's kind.
        kind: SectionKind,
    },

    /// A column section carries a field id.
    #[error("index sidecar {region}: a column section must have field id 0; rebuild the sidecar")]
    BadSectionField {
        /// The section.
        region: Region,
    },

    /// A padding byte between sections is not zero.
    #[error("index sidecar padding byte at offset {offset} is not zero; rebuild the sidecar")]
    NonZeroPadding {
        /// Offset of the byte.
        offset: u64,
    },

    /// Bytes follow the last section.
    #[error(
        "index sidecar has {len} unexpected bytes after its last section, from offset \
         {offset}; rebuild the sidecar"
    )]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: u64,
        /// How many there are.
        len: u64,
    },

    /// A column's length is not `record_count × width`.
    #[error(
        "index sidecar {column} has {found} bytes, expected {expected} (record count × \
         value width); rebuild the sidecar"
    )]
    BadColumnLength {
        /// Which column.
        column: SectionKind,
        /// Required length.
        expected: u64,
        /// Length found.
        found: u64,
    },

    /// Frame offsets are not strictly increasing.
    #[error(
        "frame offset of ordinal {ordinal} is {offset}, not above the previous ordinal's \
         {previous}: offsets must be strictly increasing"
    )]
    OffsetsNotIncreasing {
        /// The first ordinal out of order.
        ordinal: u64,
        /// The offset of the ordinal before it.
        previous: u32,
        /// Its offset.
        offset: u32,
    },

    /// A term dictionary's header or length is inconsistent.
    #[error(
        "index sidecar term dictionary of field {field} is malformed: {reason}; rebuild the sidecar"
    )]
    BadDictionary {
        /// The dictionary's field.
        field: IndexField,
        /// What is wrong.
        reason: String,
    },

    /// A term entry is inconsistent.
    #[error(
        "index sidecar term dictionary of field {field}, term #{index}: {reason}; rebuild the sidecar"
    )]
    BadTermEntry {
        /// The dictionary's field.
        field: IndexField,
        /// Position of the entry.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },

    /// Terms are not strictly increasing in bytewise order.
    #[error(
        "index sidecar term dictionary of field {field}: term #{index} does not sort strictly \
         after term #{prev} (terms must be unique and sorted bytewise); rebuild the sidecar",
        prev = index.saturating_sub(1)
    )]
    UnsortedTerms {
        /// The dictionary's field.
        field: IndexField,
        /// The first term out of order.
        index: usize,
    },

    /// A term is longer than [`MAX_TERM_LEN`].
    #[error("term of field {field} is {len} bytes long, the limit is {max}")]
    TermTooLong {
        /// The term's field.
        field: IndexField,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A term index past the end of a dictionary.
    #[error(
        "term #{index} requested from the term dictionary of field {field}, which has {len} terms"
    )]
    TermIndexOutOfRange {
        /// The dictionary's field.
        field: IndexField,
        /// The requested index.
        index: usize,
        /// Number of terms in the dictionary.
        len: usize,
    },

    /// A term's serialized bitmap is malformed or disagrees with its entry.
    #[error(
        "index sidecar term dictionary of field {field}, term #{term_index}: bad bitmap: \
         {reason}; rebuild the sidecar"
    )]
    BadBitmap {
        /// The dictionary's field.
        field: IndexField,
        /// Position of the term.
        term_index: usize,
        /// What is wrong.
        reason: String,
    },

    /// An ordinal at or past the segment's record count.
    #[error(
        "ordinal {ordinal} of field {field}{term} is out of range: the segment has \
         {record_count} records",
        term = TermAt(*term_index)
    )]
    OrdinalOutOfRange {
        /// The field whose term refers to the ordinal.
        field: IndexField,
        /// Position of the term in its dictionary, when reading.
        term_index: Option<usize>,
        /// The ordinal.
        ordinal: u64,
        /// The segment's record count.
        record_count: u64,
    },

    /// A count or size exceeds what the format can represent.
    #[error("{what} is {value}, more than the index sidecar format allows ({limit})")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },

    /// The builder holds a different number of records than its identity says.
    #[error(
        "the segment identity says {expected} records but {found} were given to the index builder"
    )]
    RecordCountMismatch {
        /// The identity's record count.
        expected: u64,
        /// Records given to the builder.
        found: u64,
    },

    /// The two columns given to the builder differ in length.
    #[error("offsets column has {offsets} values but event-time column has {event_times}")]
    ColumnLengthMismatch {
        /// Length of the offsets column.
        offsets: u64,
        /// Length of the event-time column.
        event_times: u64,
    },

    /// The sidecar belongs to another segment.
    #[error(
        "index sidecar belongs to another segment: its {what} is {found}, the segment's is \
         {expected}; rebuild the sidecar"
    )]
    IdentityMismatch {
        /// The first identity field that differs.
        what: &'static str,
        /// The segment's value.
        expected: String,
        /// The sidecar's value.
        found: String,
    },

    /// A hashed index is malformed.
    #[error(
        "index sidecar hashed index of field {field} is malformed: {reason}; rebuild the sidecar"
    )]
    BadHashedIndex {
        /// The index's field.
        field: IndexField,
        /// What is wrong.
        reason: String,
    },

    /// An IP index is malformed.
    #[error("index sidecar IP index of field {field} is malformed: {reason}; rebuild the sidecar")]
    BadIpIndex {
        /// The index's field.
        field: IndexField,
        /// What is wrong.
        reason: String,
    },

    /// A CIDR prefix is longer than its address family allows.
    #[error("CIDR prefix /{prefix_len} is too long for {family}: the longest is /{max}")]
    BadPrefixLength {
        /// The requested prefix length.
        prefix_len: u8,
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
        /// The family's longest prefix (32 or 128).
        max: u8,
    },

    /// A section index past the end of the section table.
    #[error("section #{index} requested from an index sidecar that has {count} sections")]
    SectionIndexOutOfRange {
        /// The requested position.
        index: usize,
        /// Number of sections in the table.
        count: usize,
    },

    /// The roaring library failed to serialize a bitmap.
    #[error("could not serialize the bitmap of a term of field {field}: {source}")]
    BitmapSerialize {
        /// The term's field.
        field: IndexField,
        /// The underlying error.
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------
// Little helpers
// ---------------------------------------------------------------------------

/// CRC-32 (IEEE, as computed by `crc32fast`).
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Rounds `n` up to a multiple of [`SECTION_ALIGN`], or `None` on overflow.
fn align_up(n: u64) -> Option<u64> {
    Some(n.checked_add(SECTION_ALIGN - 1)? & !(SECTION_ALIGN - 1))
}

fn to_u64(n: usize) -> u64 {
    // usize is at most 64 bits on every supported target.
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `bytes[start..start + len]` with all arithmetic checked.
fn sub(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// A cursor over bytes that refuses to read past the end.
struct Cursor<'b> {
    rest: &'b [u8],
    pos: usize,
}

impl<'b> Cursor<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Cursor {
            rest: bytes,
            pos: 0,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.pos += n;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        self.pos += N;
        Some(*head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

// ---------------------------------------------------------------------------
// Raw fixed-width records
// ---------------------------------------------------------------------------

/// The fixed header, as stored.
struct RawHeader {
    version: u16,
    header_len: u16,
    flags: u32,
    identity: SegmentIdentity,
    section_count: u32,
    table_crc: u32,
}

impl RawHeader {
    /// Writes the first 68 bytes of a header (everything but the CRC).
    fn encode(&self) -> [u8; HEADER_LEN - 4] {
        let mut out = [0u8; HEADER_LEN - 4];
        let mut w = Writer::new(&mut out);
        w.put(&MAGIC);
        w.put(&self.version.to_le_bytes());
        w.put(&self.header_len.to_le_bytes());
        w.put(&self.flags.to_le_bytes());
        w.put(&self.identity.store_id);
        w.put(&self.identity.segment_no.to_le_bytes());
        w.put(&self.identity.first_seq.to_le_bytes());
        w.put(&self.identity.record_count.to_le_bytes());
        w.put(&self.identity.segment_footer_crc.to_le_bytes());
        w.put(&self.section_count.to_le_bytes());
        w.put(&self.table_crc.to_le_bytes());
        out
    }

    /// Reads the fields after the magic from the first 72 bytes of a file.
    fn decode(h: &[u8; HEADER_LEN]) -> Option<RawHeader> {
        let mut r = Cursor::new(h);
        r.array::<8>()?;
        Some(RawHeader {
            version: r.u16()?,
            header_len: r.u16()?,
            flags: r.u32()?,
            identity: SegmentIdentity {
                store_id: r.array()?,
                segment_no: r.u64()?,
                first_seq: r.u64()?,
                record_count: r.u64()?,
                segment_footer_crc: r.u32()?,
            },
            section_count: r.u32()?,
            table_crc: r.u32()?,
        })
    }
}

/// One entry of the section table, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawSection {
    kind: u16,
    field: u16,
    crc: u32,
    offset: u64,
    len: u64,
}

impl RawSection {
    fn encode(&self) -> [u8; SECTION_ENTRY_LEN] {
        let mut out = [0u8; SECTION_ENTRY_LEN];
        let mut w = Writer::new(&mut out);
        w.put(&self.kind.to_le_bytes());
        w.put(&self.field.to_le_bytes());
        w.put(&self.crc.to_le_bytes());
        w.put(&self.offset.to_le_bytes());
        w.put(&self.len.to_le_bytes());
        out
    }

    fn decode(e: &[u8; SECTION_ENTRY_LEN]) -> RawSection {
        RawSection {
            kind: u16::from_le_bytes([e[0], e[1]]),
            field: u16::from_le_bytes([e[2], e[3]]),
            crc: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            offset: u64::from_le_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]),
            len: u64::from_le_bytes([e[16], e[17], e[18], e[19], e[20], e[21], e[22], e[23]]),
        }
    }
}

/// One term entry of a dictionary, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawTerm {
    term_offset: u32,
    term_len: u32,
    cardinality: u32,
    bitmap_offset: u32,
    bitmap_len: u32,
}

impl RawTerm {
    fn encode(&self) -> [u8; TERM_ENTRY_LEN] {
        let mut out = [0u8; TERM_ENTRY_LEN];
        let mut w = Writer::new(&mut out);
        w.put(&self.term_offset.to_le_bytes());
        w.put(&self.term_len.to_le_bytes());
        w.put(&self.cardinality.to_le_bytes());
        w.put(&self.bitmap_offset.to_le_bytes());
        w.put(&self.bitmap_len.to_le_bytes());
        out
    }

    #[inline]
    fn decode(e: &[u8; TERM_ENTRY_LEN]) -> RawTerm {
        RawTerm {
            term_offset: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            term_len: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            cardinality: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            bitmap_offset: u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
            bitmap_len: u32::from_le_bytes([e[16], e[17], e[18], e[19]]),
        }
    }
}

/// Writes consecutive byte strings into a fixed buffer.
struct Writer<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    fn new(out: &'b mut [u8]) -> Self {
        Writer { out, pos: 0 }
    }

    /// Copies `bytes` at the current position; callers size buffers exactly.
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}

/// Overwrites `out[at..at + bytes.len()]`; the range is always in bounds.
fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

// ---------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------

/// Collects a segment's columns and terms, then encodes its sidecar.
///
/// Records are numbered by ordinal (`seq - first_seq`) in the order they are
/// pushed. Terms can be added in any order, and adding the same (field,
/// term, ordinal) again changes nothing: the encoding only depends on the
/// content, never on the order of calls.
///
/// Typical use: [`new`](Self::new) with the segment's identity, one
/// [`push_record`](Self::push_record) per record in ordinal order, then per
/// record and indexed field one [`add_term`](Self::add_term) (term
/// dictionary), [`add_hashed`](Self::add_hashed) (hashed index) or
/// [`add_ip`](Self::add_ip) (IP index), then [`encode`](Self::encode).
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    identity: SegmentIdentity,
    offsets: Vec<u32>,
    event_times: Vec<i64>,
    fields: BTreeMap<IndexField, Postings>,
    hashed: BTreeMap<IndexField, Vec<(u64, u32)>>,
    ips: BTreeMap<IndexField, IpPostings>,
}

/// The addresses of one field while building, IPv4-mapped IPv6 addresses
/// already turned into IPv4.
#[derive(Debug, Clone, Default)]
struct IpPostings {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u32)>,
}

/// The terms of one field while building: each distinct term gets an id,
/// and every (term, record) pair is appended as `(id, ordinal)`.
/// Bitmaps are only built, already sorted, by `encode`.
#[derive(Debug, Clone, Default)]
struct Postings {
    ids: HashMap<Box<[u8]>, u32>,
    pairs: Vec<(u32, u32)>,
}

impl Postings {
    /// The id of `term`, allocated on first use.
    fn id(&mut self, term: &[u8]) -> Result<u32, IndexError> {
        if let Some(&id) = self.ids.get(term) {
            return Ok(id);
        }
        let id = fit_u32("term count", self.ids.len())?;
        self.ids.insert(term.into(), id);
        Ok(id)
    }
}

impl IndexBuilder {
    /// A builder for the sidecar of the segment `identity`.
    ///
    /// `identity.record_count` is the number of records the columns must
    /// hold when [`encode`](Self::encode) is called, and bounds ordinals.
    pub fn new(identity: SegmentIdentity) -> Self {
        IndexBuilder {
            identity,
            offsets: Vec::new(),
            event_times: Vec::new(),
            fields: BTreeMap::new(),
            hashed: BTreeMap::new(),
            ips: BTreeMap::new(),
        }
    }

    /// The identity given to [`new`](Self::new).
    pub fn identity(&self) -> &SegmentIdentity {
        &self.identity
    }

    /// Number of records pushed so far.
    pub fn pushed_records(&self) -> u64 {
        to_u64(self.offsets.len())
    }

    /// Appends the next record's frame offset and event time.
    ///
    /// Offsets must be strictly increasing; [`encode`](Self::encode) checks.
    pub fn push_record(&mut self, frame_offset: u32, event_time: i64) {
        self.offsets.push(frame_offset);
        self.event_times.push(event_time);
    }

    /// Replaces both columns at once (index = ordinal).
    pub fn set_columns(
        &mut self,
        offsets: Vec<u32>,
        event_times: Vec<i64>,
    ) -> Result<(), IndexError> {
        if offsets.len() != event_times.len() {
            return Err(IndexError::ColumnLengthMismatch {
                offsets: to_u64(offsets.len()),
                event_times: to_u64(event_times.len()),
            });
        }
        self.offsets = offsets;
        self.event_times = event_times;
        Ok(())
    }

    /// Declares `field` indexed by a term dictionary, even if no term is
    /// ever added to it.
    ///
    /// The sidecar then holds an empty dictionary for the field, which tells
    /// readers that no record has it (a missing dictionary means "not
    /// indexed", and queries on it must scan).
    pub fn add_field(&mut self, field: IndexField) {
        self.fields.entry(field).or_default();
    }

    /// Declares `field` indexed by a hashed index, even if no term is ever
    /// added to it (see [`add_field`](Self::add_field)).
    pub fn add_hashed_field(&mut self, field: IndexField) {
        self.hashed.entry(field).or_default();
    }

    /// Declares `field` indexed by an IP index, even if no address is ever
    /// added to it (see [`add_field`](Self::add_field)).
    pub fn add_ip_field(&mut self, field: IndexField) {
        self.ips.entry(field).or_default();
    }

    fn check_ordinal(&self, field: IndexField, ordinal: u32) -> Result<(), IndexError> {
        if u64::from(ordinal) >= self.identity.record_count {
            return Err(IndexError::OrdinalOutOfRange {
                field,
                term_index: None,
                ordinal: u64::from(ordinal),
                record_count: self.identity.record_count,
            });
        }
        Ok(())
    }

    /// Records, in the term dictionary of `field`, that the record
    /// `ordinal` has `term`.
    pub fn add_term(
        &mut self,
        field: IndexField,
        term: &[u8],
        ordinal: u32,
    ) -> Result<(), IndexError> {
        check_term(field, term)?;
        self.check_ordinal(field, ordinal)?;
        let postings = self.fields.entry(field).or_default();
        let id = postings.id(term)?;
        postings.pairs.push((id, ordinal));
        Ok(())
    }

    /// Records, in the term dictionary of `field`, that every record in
    /// `ordinals` has `term` (a union with what the term already has).
    ///
    /// An empty `ordinals` declares the field but adds no term.
    pub fn insert_bitmap(
        &mut self,
        field: IndexField,
        term: &[u8],
        ordinals: &RoaringBitmap,
    ) -> Result<(), IndexError> {
        check_term(field, term)?;
        if let Some(max) = ordinals.max()
            && u64::from(max) >= self.identity.record_count
        {
            return Err(IndexError::OrdinalOutOfRange {
                field,
                term_index: None,
                ordinal: u64::from(max),
                record_count: self.identity.record_count,
            });
        }
        let postings = self.fields.entry(field).or_default();
        if ordinals.is_empty() {
            return Ok(());
        }
        let id = postings.id(term)?;
        postings
            .pairs
            .extend(ordinals.iter().map(|ordinal| (id, ordinal)));
        Ok(())
    }

    /// Adds every posting of a dictionary field at once: `terms[id]` is the
    /// term of id `id`, and each `(id, ordinal)` pair says that record
    /// `ordinal` has that term. The result is the same as calling
    /// [`add_term`](Self::add_term) for each pair, without looking each
    /// term up again (an open segment's in-memory index keeps exactly this).
    pub fn add_term_postings(
        &mut self,
        field: IndexField,
        terms: &[&[u8]],
        pairs: &[(u32, u32)],
    ) -> Result<(), IndexError> {
        for term in terms {
            check_term(field, term)?;
        }
        for &(_, ordinal) in pairs {
            self.check_ordinal(field, ordinal)?;
        }
        let postings = self.fields.entry(field).or_default();
        let mut ids = Vec::with_capacity(terms.len());
        for term in terms {
            ids.push(postings.id(term)?);
        }
        postings.pairs.reserve(pairs.len());
        for &(id, ordinal) in pairs {
            let Some(&mapped) = usize::try_from(id).ok().and_then(|i| ids.get(i)) else {
                return Err(IndexError::TooLarge {
                    what: "term id",
                    value: u64::from(id),
                    limit: terms.len() as u64,
                });
            };
            postings.pairs.push((mapped, ordinal));
        }
        Ok(())
    }

    /// Records, in the hashed index of `field`, that the record `ordinal`
    /// has `term`: stores the pair ([`term_key`]`(term)`, `ordinal`).
    ///
    /// Terms of any length are accepted; only their hash is stored.
    pub fn add_hashed(
        &mut self,
        field: IndexField,
        term: &[u8],
        ordinal: u32,
    ) -> Result<(), IndexError> {
        self.add_hashed_key(field, term_key(term), ordinal)
    }

    /// Records, in the hashed index of `field`, the pair (`key`, `ordinal`)
    /// for a key already computed with [`term_key`].
    pub fn add_hashed_key(
        &mut self,
        field: IndexField,
        key: u64,
        ordinal: u32,
    ) -> Result<(), IndexError> {
        self.check_ordinal(field, ordinal)?;
        self.hashed.entry(field).or_default().push((key, ordinal));
        Ok(())
    }

    /// Records, in the IP index of `field`, that the record `ordinal` has
    /// the address `addr`.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is stored as the IPv4
    /// address `a.b.c.d`, so that IPv4 queries find it.
    pub fn add_ip(
        &mut self,
        field: IndexField,
        addr: IpAddr,
        ordinal: u32,
    ) -> Result<(), IndexError> {
        self.check_ordinal(field, ordinal)?;
        let postings = self.ips.entry(field).or_default();
        match canonical_ip(addr) {
            IpAddr::V4(v4) => postings.v4.push((v4.to_bits(), ordinal)),
            IpAddr::V6(v6) => postings.v6.push((v6.to_bits(), ordinal)),
        }
        Ok(())
    }

    /// Encodes the sidecar.
    ///
    /// Fails if the number of records differs from the identity's record
    /// count, if offsets are not strictly increasing, or if a dictionary
    /// outgrows the format's 32-bit sizes.
    pub fn encode(&self) -> Result<Vec<u8>, IndexError> {
        let record_count = self.identity.record_count;
        if record_count > MAX_RECORDS {
            return Err(IndexError::TooLarge {
                what: "record count",
                value: record_count,
                limit: MAX_RECORDS,
            });
        }
        let pushed = to_u64(self.offsets.len());
        if pushed != record_count || self.event_times.len() != self.offsets.len() {
            return Err(IndexError::RecordCountMismatch {
                expected: record_count,
                found: pushed,
            });
        }
        check_offsets_increasing(self.offsets.iter().copied())?;

        let section_count = 2 + self.fields.len() + self.hashed.len() + self.ips.len();
        let table_start = HEADER_LEN;
        let table_end = table_start + section_count * SECTION_ENTRY_LEN;
        let mut out = vec![0u8; table_end];
        let mut table = Vec::with_capacity(section_count);

        // Offsets column.
        let start = begin_section(&mut out);
        out.reserve(self.offsets.len() * 4);
        for offset in &self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        table.push(end_section(&out, KIND_OFFSETS, 0, start));

        // Event-time column.
        let start = begin_section(&mut out);
        out.reserve(self.event_times.len() * 8);
        for time in &self.event_times {
            out.extend_from_slice(&time.to_le_bytes());
        }
        table.push(end_section(&out, KIND_EVENT_TIMES, 0, start));

        // Term dictionaries, in field id order (the BTreeMap's order).
        for (&field, postings) in &self.fields {
            let start = begin_section(&mut out);
            encode_dictionary(&mut out, field, postings)?;
            table.push(end_section(&out, KIND_TERM_DICT, field.id(), start));
        }

        // Hashed indexes, then IP indexes: kinds 4 and 5 sort after 3.
        for (&field, pairs) in &self.hashed {
            let start = begin_section(&mut out);
            encode_hashed(&mut out, pairs)?;
            table.push(end_section(&out, KIND_HASHED, field.id(), start));
        }
        for (&field, postings) in &self.ips {
            let start = begin_section(&mut out);
            encode_ip(&mut out, postings)?;
            table.push(end_section(&out, KIND_IP, field.id(), start));
        }

        let mut table_bytes = Vec::with_capacity(section_count * SECTION_ENTRY_LEN);
        for entry in &table {
            table_bytes.extend_from_slice(&entry.encode());
        }
        patch(&mut out, table_start, &table_bytes);

        let header = RawHeader {
            version: FORMAT_VERSION,
            header_len: HEADER_LEN as u16,
            flags: 0,
            identity: self.identity,
            section_count: u32::try_from(section_count).unwrap_or(u32::MAX),
            table_crc: crc32(&table_bytes),
        }
        .encode();
        patch(&mut out, 0, &header);
        patch(&mut out, HEADER_LEN - 4, &crc32(&header).to_le_bytes());
        Ok(out)
    }
}

fn check_term(field: IndexField, term: &[u8]) -> Result<(), IndexError> {
    if term.len() > MAX_TERM_LEN {
        return Err(IndexError::TermTooLong {
            field,
            len: term.len(),
            max: MAX_TERM_LEN,
        });
    }
    Ok(())
}

/// The key of `term` in a hashed index: its 64-bit FNV-1a hash.
///
/// FNV-1a starts from [`FNV_OFFSET_BASIS`] and, for each byte, XORs the
/// byte into the low 8 bits and multiplies by [`FNV_PRIME`] modulo 2^64.
/// `term_key(b"")` is `0xcbf29ce484222325`, `term_key(b"a")` is
/// `0xaf63dc4c8601ec8c`.
pub const fn term_key(term: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut rest = term;
    while let [byte, tail @ ..] = rest {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        rest = tail;
    }
    hash
}

/// `addr` as an IP index stores it: an IPv4-mapped IPv6 address becomes
/// IPv4, everything else is unchanged.
fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Pads `out` with zeros to the next section boundary; returns the offset.
fn begin_section(out: &mut Vec<u8>) -> usize {
    let aligned = out.len().next_multiple_of(SECTION_ALIGN as usize);
    out.resize(aligned, 0);
    aligned
}

/// The table entry for the section that spans `out[start..]`.
fn end_section(out: &[u8], kind: u16, field: u16, start: usize) -> RawSection {
    let bytes = out.get(start..).unwrap_or_default();
    RawSection {
        kind,
        field,
        crc: crc32(bytes),
        offset: to_u64(start),
        len: to_u64(bytes.len()),
    }
}

fn check_offsets_increasing(offsets: impl Iterator<Item = u32>) -> Result<(), IndexError> {
    let mut previous: Option<u32> = None;
    for (ordinal, offset) in offsets.enumerate() {
        if let Some(previous) = previous
            && offset <= previous
        {
            return Err(IndexError::OffsetsNotIncreasing {
                ordinal: to_u64(ordinal),
                previous,
                offset,
            });
        }
        previous = Some(offset);
    }
    Ok(())
}

/// `value` as a `u32` dictionary size, or [`IndexError::TooLarge`].
fn fit_u32(what: &'static str, value: usize) -> Result<u32, IndexError> {
    u32::try_from(value).map_err(|_| IndexError::TooLarge {
        what,
        value: to_u64(value),
        limit: u64::from(u32::MAX),
    })
}

/// Appends the dictionary section of `field` to `out`.
fn encode_dictionary(
    out: &mut Vec<u8>,
    field: IndexField,
    postings: &Postings,
) -> Result<(), IndexError> {
    // Terms in bytewise order; `rank[id]` is a term's position.
    let mut sorted: Vec<(&[u8], u32)> = postings
        .ids
        .iter()
        .map(|(term, &id)| (&**term, id))
        .collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut rank = vec![0u32; sorted.len()];
    for (position, &(_, id)) in sorted.iter().enumerate() {
        if let Some(slot) = rank.get_mut(id as usize) {
            *slot = fit_u32("term count", position)?;
        }
    }

    // Bucket the ordinals by term rank (a counting sort): `ordinals` then
    // holds each term's ordinals in `starts[r]..starts[r + 1]`.
    let mut starts = vec![0usize; sorted.len() + 1];
    for &(id, _) in &postings.pairs {
        let r = rank.get(id as usize).copied().unwrap_or(0) as usize;
        if let Some(count) = starts.get_mut(r + 1) {
            *count += 1;
        }
    }
    let mut total = 0;
    for start in &mut starts {
        total += *start;
        *start = total;
    }
    let mut next = starts.clone();
    let mut ordinals = vec![0u32; postings.pairs.len()];
    for &(id, ordinal) in &postings.pairs {
        let r = rank.get(id as usize).copied().unwrap_or(0) as usize;
        if let Some(at) = next.get_mut(r) {
            if let Some(slot) = ordinals.get_mut(*at) {
                *slot = ordinal;
            }
            *at += 1;
        }
    }

    let count = fit_u32("term count", sorted.len())?;
    let term_heap_len: usize = sorted.iter().map(|(term, _)| term.len()).sum();
    let term_heap_len_u32 = fit_u32("term heap size", term_heap_len)?;

    let start = out.len();
    let entries_start = start + DICT_HEADER_LEN;
    let heap_start = entries_start + sorted.len() * TERM_ENTRY_LEN;
    out.resize(heap_start, 0);
    out.reserve(term_heap_len);
    for (term, _) in &sorted {
        out.extend_from_slice(term);
    }

    let bitmaps_start = out.len();
    let mut entries = Vec::with_capacity(sorted.len());
    let mut term_offset = 0u32;
    for (r, &(term, _)) in sorted.iter().enumerate() {
        let range = starts.get(r).copied().unwrap_or(0)..starts.get(r + 1).copied().unwrap_or(0);
        let values = ordinals.get_mut(range).unwrap_or_default();
        if !values.is_sorted() {
            values.sort_unstable();
        }
        let term_len = fit_u32("term length", term.len())?;
        if let (Some(&first), Some(&last)) = (values.first(), values.last())
            && first == last
        {
            // One record (perhaps added more than once): stored inline.
            entries.push(RawTerm {
                term_offset,
                term_len,
                cardinality: 1,
                bitmap_offset: first,
                bitmap_len: 0,
            });
            term_offset += term_len;
            continue;
        }
        // Canonical form: built by appending sorted values (array and
        // bitset containers only), then `optimize` picks each container's
        // smallest representation from its content alone.
        let mut bitmap = RoaringBitmap::new();
        for &value in values.iter() {
            // Duplicates (the same record added twice) are refused: skip.
            let _ = bitmap.try_push(value);
        }
        bitmap.optimize();
        let bitmap_offset = out.len() - bitmaps_start;
        bitmap
            .serialize_into(&mut *out)
            .map_err(|source| IndexError::BitmapSerialize { field, source })?;
        let bitmap_len = out.len() - bitmaps_start - bitmap_offset;
        entries.push(RawTerm {
            term_offset,
            term_len,
            cardinality: u32::try_from(bitmap.len()).unwrap_or(u32::MAX),
            bitmap_offset: fit_u32("bitmap heap size", bitmap_offset)?,
            bitmap_len: fit_u32("bitmap size", bitmap_len)?,
        });
        term_offset += term_len;
    }
    let bitmap_heap_len = fit_u32("bitmap heap size", out.len() - bitmaps_start)?;

    let mut header = [0u8; DICT_HEADER_LEN];
    let mut w = Writer::new(&mut header);
    w.put(&count.to_le_bytes());
    w.put(&term_heap_len_u32.to_le_bytes());
    w.put(&bitmap_heap_len.to_le_bytes());
    w.put(&0u32.to_le_bytes());
    patch(out, start, &header);
    for (i, entry) in entries.iter().enumerate() {
        patch(out, entries_start + i * TERM_ENTRY_LEN, &entry.encode());
    }
    Ok(())
}

/// Appends a hashed index section holding `pairs` (sorted, deduplicated).
fn encode_hashed(out: &mut Vec<u8>, pairs: &[(u64, u32)]) -> Result<(), IndexError> {
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let count = fit_u32("hashed index entry count", sorted.len())?;
    out.reserve(HASHED_HEADER_LEN + sorted.len() * HASHED_ENTRY_LEN);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (key, _) in &sorted {
        out.extend_from_slice(&key.to_le_bytes());
    }
    for (_, ordinal) in &sorted {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    Ok(())
}

/// Appends an IP index section holding `postings` (sorted, deduplicated).
fn encode_ip(out: &mut Vec<u8>, postings: &IpPostings) -> Result<(), IndexError> {
    let mut v4 = postings.v4.clone();
    v4.sort_unstable();
    v4.dedup();
    let mut v6 = postings.v6.clone();
    v6.sort_unstable();
    v6.dedup();
    let count4 = fit_u32("IPv4 entry count", v4.len())?;
    let count6 = fit_u32("IPv6 entry count", v6.len())?;
    out.reserve(IP_HEADER_LEN + v4.len() * IP_V4_ENTRY_LEN + v6.len() * IP_V6_ENTRY_LEN);
    out.extend_from_slice(&count4.to_le_bytes());
    out.extend_from_slice(&count6.to_le_bytes());
    for (addr, _) in &v4 {
        out.extend_from_slice(&addr.to_le_bytes());
    }
    for (_, ordinal) in &v4 {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    for (addr, _) in &v6 {
        // Network byte order: bytewise order is numeric order.
        out.extend_from_slice(&addr.to_be_bytes());
    }
    for (_, ordinal) in &v6 {
        out.extend_from_slice(&ordinal.to_le_bytes());
    }
    Ok(())
}
// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// A sidecar, read in place.
///
/// A reader is a cheap view (a few hundred bytes, no heap) over the file's
/// bytes, meant to be created per query. There are two ways to get one:
///
/// * [`parse`](Self::parse) checks the whole file: everything
///   [`open`](Self::open) checks, then every section with
///   [`check_section`](Self::check_section);
/// * [`open`](Self::open) checks the header, the section table and the
///   placement of the sections, in time proportional to the number of
///   sections, without reading the sections themselves. The caller then
///   checks, once, each section it uses (see
///   [`section_for`](Self::section_for) and
///   [`column_sections`](Self::column_sections)) and remembers that it did.
///
/// Lookups on a section that was not checked are memory-safe and never
/// panic, but may return wrong answers or errors if the section is damaged.
/// Term bitmaps are decoded, and fully checked, by [`TermDict::bitmap`].
#[derive(Debug, Clone, Copy)]
pub struct IndexReader<'a> {
    bytes: &'a [u8],
    identity: SegmentIdentity,
    table: &'a [[u8; SECTION_ENTRY_LEN]],
    /// Table positions of the offsets and event-time columns.
    columns: [usize; 2],
    offsets: &'a [[u8; 4]],
    event_times: &'a [[u8; 8]],
    /// Section bytes per known field (slot `id - 1`), for each index kind.
    dicts: [Option<&'a [u8]>; KNOWN_FIELDS],
    hashed: [Option<&'a [u8]>; KNOWN_FIELDS],
    ips: [Option<&'a [u8]>; KNOWN_FIELDS],
}

/// A section of a sidecar, as listed by [`IndexReader::sections`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// What the section holds.
    pub kind: SectionKind,
    /// The field id (0 for columns).
    pub field: u16,
    /// Offset of the section in the file.
    pub offset: u64,
    /// Length of the section.
    pub len: u64,
    /// CRC-32 of the section's bytes.
    pub crc: u32,
}

impl SectionInfo {
    fn from_raw(s: RawSection) -> SectionInfo {
        SectionInfo {
            kind: SectionKind::from_u16(s.kind),
            field: s.field,
            offset: s.offset,
            len: s.len,
            crc: s.crc,
        }
    }
}

impl<'a> IndexReader<'a> {
    /// Checks a whole sidecar and returns a reader over it.
    ///
    /// Equivalent to [`open`](Self::open) followed by
    /// [`check_section`](Self::check_section) of every section. Its cost is
    /// proportional to the file's size; verification and rebuilds use it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, IndexError> {
        let reader = Self::open(bytes)?;
        for index in 0..reader.table.len() {
            reader.check_section(index)?;
        }
        Ok(reader)
    }

    /// Checks a sidecar's header, section table and section placement, and
    /// returns a reader over it, without reading the sections.
    ///
    /// Checked: magic, version, header length, header CRC, flags, the
    /// record-count limit, the table's bounds and CRC, the table's order,
    /// each section's position, bounds and padding, the end of the file,
    /// and the presence, field id and length of both columns. Not checked:
    /// the sections' CRCs and contents, which
    /// [`check_section`](Self::check_section) checks one section at a time.
    ///
    /// Costs O(number of sections) and does not allocate.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        let file_len = to_u64(bytes.len());
        if let Some(magic) = bytes.first_chunk::<8>()
            && *magic != MAGIC
        {
            return Err(IndexError::BadMagic { found: *magic });
        }
        let Some(fixed) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(IndexError::Truncated {
                what: "header",
                offset: 0,
                needed: to_u64(HEADER_LEN),
                available: file_len,
            });
        };
        let Some(header) = RawHeader::decode(fixed) else {
            return Err(IndexError::Truncated {
                what: "header",
                offset: 0,
                needed: to_u64(HEADER_LEN),
                available: file_len,
            });
        };
        if header.version != FORMAT_VERSION {
            return Err(IndexError::UnsupportedVersion {
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        let header_len = header.header_len;
        if usize::from(header_len) < HEADER_LEN
            || header_len > MAX_HEADER_LEN
            || header_len % 8 != 0
        {
            return Err(IndexError::BadHeaderLength { found: header_len });
        }
        let header_len = usize::from(header_len);
        let Some(full_header) = bytes.get(..header_len) else {
            return Err(IndexError::Truncated {
                what: "header",
                offset: 0,
                needed: to_u64(header_len),
                available: file_len,
            });
        };
        let (covered, stored) = full_header.split_at(header_len - 4);
        let stored = u32::from_le_bytes([
            stored.first().copied().unwrap_or(0),
            stored.get(1).copied().unwrap_or(0),
            stored.get(2).copied().unwrap_or(0),
            stored.get(3).copied().unwrap_or(0),
        ]);
        let actual = crc32(covered);
        if stored != actual {
            return Err(IndexError::ChecksumMismatch {
                region: Region::Header,
                offset: 0,
                len: to_u64(covered.len()),
                expected: stored,
                actual,
            });
        }
        if header.flags != 0 {
            return Err(IndexError::UnsupportedFlags {
                flags: header.flags,
            });
        }
        let identity = header.identity;
        let record_count = identity.record_count;
        if record_count > MAX_RECORDS {
            return Err(IndexError::TooLarge {
                what: "record count",
                value: record_count,
                limit: MAX_RECORDS,
            });
        }

        // Section table.
        let table_start = to_u64(header_len);
        let table_len = u64::from(header.section_count) * to_u64(SECTION_ENTRY_LEN);
        let Some(table_bytes) = sub(bytes, table_start, table_len) else {
            return Err(IndexError::Truncated {
                what: "section table",
                offset: table_start,
                needed: table_len,
                available: file_len.saturating_sub(table_start),
            });
        };
        let actual = crc32(table_bytes);
        if actual != header.table_crc {
            return Err(IndexError::ChecksumMismatch {
                region: Region::SectionTable,
                offset: table_start,
                len: table_len,
                expected: header.table_crc,
                actual,
            });
        }
        let (table, _) = table_bytes.as_chunks::<SECTION_ENTRY_LEN>();

        // Sections, in table order.
        let mut offsets: Option<(usize, &'a [u8])> = None;
        let mut event_times: Option<(usize, &'a [u8])> = None;
        let mut dicts = [None; KNOWN_FIELDS];
        let mut hashed = [None; KNOWN_FIELDS];
        let mut ips = [None; KNOWN_FIELDS];
        let mut prev_end = table_start + table_len;
        let mut prev_key: Option<(u16, u16)> = None;
        for (index, entry) in table.iter().enumerate() {
            let s = RawSection::decode(entry);
            let region = Region::Section {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                kind: s.kind,
                field: s.field,
            };
            if prev_key.is_some_and(|prev| (s.kind, s.field) <= prev) {
                return Err(IndexError::SectionOrder { region });
            }
            prev_key = Some((s.kind, s.field));

            let expected = align_up(prev_end).unwrap_or(u64::MAX);
            if s.offset != expected {
                return Err(IndexError::SectionMisplaced {
                    region,
                    offset: s.offset,
                    expected,
                });
            }
            let out_of_bounds = IndexError::SectionOutOfBounds {
                region,
                offset: s.offset,
                len: s.len,
                file_len,
            };
            let Some(padding) = sub(bytes, prev_end, s.offset - prev_end) else {
                return Err(out_of_bounds);
            };
            if let Some(pos) = padding.iter().position(|&b| b != 0) {
                return Err(IndexError::NonZeroPadding {
                    offset: prev_end + to_u64(pos),
                });
            }
            let Some(data) = sub(bytes, s.offset, s.len) else {
                return Err(out_of_bounds);
            };
            let field = IndexField::from_u16(s.field);
            match SectionKind::from_u16(s.kind) {
                kind @ (SectionKind::Offsets | SectionKind::EventTimes) => {
                    if s.field != 0 {
                        return Err(IndexError::BadSectionField { region });
                    }
                    let width = if kind == SectionKind::Offsets {
                        OFFSET_WIDTH
                    } else {
                        EVENT_TIME_WIDTH
                    };
                    let expected = record_count * width;
                    if s.len != expected {
                        return Err(IndexError::BadColumnLength {
                            column: kind,
                            expected,
                            found: s.len,
                        });
                    }
                    if kind == SectionKind::Offsets {
                        offsets = Some((index, data));
                    } else {
                        event_times = Some((index, data));
                    }
                }
                SectionKind::TermDict => set_slot(&mut dicts, field, data),
                SectionKind::Hashed => set_slot(&mut hashed, field, data),
                SectionKind::Ip => set_slot(&mut ips, field, data),
                SectionKind::Unknown(_) => {}
            }
            prev_end = s.offset + s.len;
        }
        if prev_end != file_len {
            return Err(IndexError::TrailingBytes {
                offset: prev_end,
                len: file_len.saturating_sub(prev_end),
            });
        }
        let Some((offsets_index, offsets)) = offsets else {
            return Err(IndexError::MissingSection {
                kind: SectionKind::Offsets,
            });
        };
        let Some((event_times_index, event_times)) = event_times else {
            return Err(IndexError::MissingSection {
                kind: SectionKind::EventTimes,
            });
        };
        let (offsets, _) = offsets.as_chunks::<4>();
        let (event_times, _) = event_times.as_chunks::<8>();

        Ok(IndexReader {
            bytes,
            identity,
            table,
            columns: [offsets_index, event_times_index],
            offsets,
            event_times,
            dicts,
            hashed,
            ips,
        })
    }

    /// Checks section `index` of the table completely: its CRC, then its
    /// structure.
    ///
    /// * offsets column: frame offsets strictly increase;
    /// * event-time column: nothing more;
    /// * term dictionary of a known field: header and length, every entry
    ///   (bounds, tiling, term length, cardinality, inline singletons with
    ///   an ordinal below the record count, no one-record bitmap), terms
    ///   unique and sorted, and every bitmap's structure, declared number
    ///   of values, and largest value (the order of its values is checked
    ///   when [`TermDict::bitmap`] decodes it);
    /// * hashed index of a known field: header and length, entries
    ///   strictly increasing by (key, ordinal), ordinals below the record
    ///   count;
    /// * IP index of a known field: header and length, both arrays strictly
    ///   increasing by (address, ordinal), no IPv4-mapped address among the
    ///   IPv6 ones, ordinals below the record count;
    /// * any other section (unknown kind or field): its CRC only.
    ///
    /// Costs O(section length). A reader from [`parse`](Self::parse) has
    /// passed this for every section.
    pub fn check_section(&self, index: usize) -> Result<(), IndexError> {
        let Some(entry) = self.table.get(index) else {
            return Err(IndexError::SectionIndexOutOfRange {
                index,
                count: self.table.len(),
            });
        };
        let s = RawSection::decode(entry);
        let region = Region::Section {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            kind: s.kind,
            field: s.field,
        };
        // `open` checked the bounds; a reader is only made by `open`.
        let Some(data) = sub(self.bytes, s.offset, s.len) else {
            return Err(IndexError::SectionOutOfBounds {
                region,
                offset: s.offset,
                len: s.len,
                file_len: to_u64(self.bytes.len()),
            });
        };
        let actual = crc32(data);
        if actual != s.crc {
            return Err(IndexError::ChecksumMismatch {
                region,
                offset: s.offset,
                len: s.len,
                expected: s.crc,
                actual,
            });
        }
        let record_count = self.identity.record_count;
        let field = IndexField::from_u16(s.field);
        match (SectionKind::from_u16(s.kind), field) {
            (SectionKind::Offsets, _) => {
                let (offsets, _) = data.as_chunks::<4>();
                check_offsets_increasing(offsets.iter().map(|b| u32::from_le_bytes(*b)))
            }
            (SectionKind::TermDict, Some(field)) => TermDict::check(data, field, record_count),
            (SectionKind::Hashed, Some(field)) => HashedIndex::check(data, field, record_count),
            (SectionKind::Ip, Some(field)) => IpIndex::check(data, field, record_count),
            _ => Ok(()),
        }
    }

    /// Position in the section table of the section of `kind` for the field
    /// id `field` (`0` for a column), if the file has one.
    ///
    /// For example `section_for(SectionKind::Hashed,
    /// IndexField::RequestId.id())`. A binary search over the table.
    pub fn section_for(&self, kind: SectionKind, field: u16) -> Option<usize> {
        let key = (kind.to_u16(), field);
        self.table
            .binary_search_by_key(&key, |entry| {
                let s = RawSection::decode(entry);
                (s.kind, s.field)
            })
            .ok()
    }

    /// Positions in the section table of the offsets column and of the
    /// event-time column, in that order (every sidecar has both).
    pub fn column_sections(&self) -> [usize; 2] {
        self.columns
    }

    /// Number of sections in the table.
    pub fn section_count(&self) -> usize {
        self.table.len()
    }

    /// The section at position `index` of the table.
    pub fn section(&self, index: usize) -> Option<SectionInfo> {
        self.table
            .get(index)
            .map(|entry| SectionInfo::from_raw(RawSection::decode(entry)))
    }

    /// The segment this sidecar belongs to.
    pub fn identity(&self) -> &SegmentIdentity {
        &self.identity
    }

    /// Checks that this sidecar belongs to the segment `expected`.
    pub fn check_identity(&self, expected: &SegmentIdentity) -> Result<(), IndexError> {
        let found = &self.identity;
        let mismatch = |what: &'static str, expected: String, found: String| {
            Err(IndexError::IdentityMismatch {
                what,
                expected,
                found,
            })
        };
        let hex = |id: &[u8; 16]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if found.store_id != expected.store_id {
            return mismatch("store id", hex(&expected.store_id), hex(&found.store_id));
        }
        if found.segment_no != expected.segment_no {
            let (e, f) = (expected.segment_no, found.segment_no);
            return mismatch("segment number", e.to_string(), f.to_string());
        }
        if found.first_seq != expected.first_seq {
            let (e, f) = (expected.first_seq, found.first_seq);
            return mismatch("first sequence number", e.to_string(), f.to_string());
        }
        if found.record_count != expected.record_count {
            let (e, f) = (expected.record_count, found.record_count);
            return mismatch("record count", e.to_string(), f.to_string());
        }
        if found.segment_footer_crc != expected.segment_footer_crc {
            let (e, f) = (expected.segment_footer_crc, found.segment_footer_crc);
            return mismatch(
                "segment footer CRC",
                format!("{e:#010x}"),
                format!("{f:#010x}"),
            );
        }
        Ok(())
    }

    /// Number of records in the segment (ordinals are `0..record_count`).
    pub fn record_count(&self) -> u64 {
        self.identity.record_count
    }

    /// Byte offset of record `ordinal`'s frame in the segment file.
    #[inline]
    pub fn offset(&self, ordinal: u32) -> Option<u32> {
        let bytes = self.offsets.get(usize::try_from(ordinal).ok()?)?;
        Some(u32::from_le_bytes(*bytes))
    }

    /// The ordinal of the record whose frame starts at `frame_offset`.
    pub fn ordinal_at(&self, frame_offset: u32) -> Option<u32> {
        let index = self
            .offsets
            .binary_search_by_key(&frame_offset, |b| u32::from_le_bytes(*b))
            .ok()?;
        u32::try_from(index).ok()
    }

    /// Event time (UTC nanoseconds) of record `ordinal`.
    #[inline]
    pub fn event_time(&self, ordinal: u32) -> Option<i64> {
        let bytes = self.event_times.get(usize::try_from(ordinal).ok()?)?;
        Some(i64::from_le_bytes(*bytes))
    }

    /// Ordinals of the records whose event time `t` is in `from <= t < to`.
    ///
    /// One branch-free pass over the event-time column.
    pub fn time_filter(&self, from: i64, to: i64) -> RoaringBitmap {
        let mut result = RoaringBitmap::new();
        if from >= to {
            return result;
        }
        // `from <= t < to` is `t - from < to - from` in wrapping unsigned
        // arithmetic, which is a single comparison per value.
        let base = from as u64;
        let width = (to as u64).wrapping_sub(base);
        let hit =
            |t: &[u8; 8]| u8::from((i64::from_le_bytes(*t) as u64).wrapping_sub(base) < width);
        // At most 2^31 ordinals per `from_lsb0_bytes` call keeps it in u32.
        const BLOCK: usize = 1 << 31;
        for (block_no, block) in self.event_times.chunks(BLOCK).enumerate() {
            let mut bits = vec![0u8; block.len().div_ceil(8)];
            let (octets, tail) = block.as_chunks::<8>();
            for (byte, octet) in bits.iter_mut().zip(octets) {
                let mut acc = 0u8;
                for (j, t) in octet.iter().enumerate() {
                    acc |= hit(t) << j;
                }
                *byte = acc;
            }
            if let Some(last) = bits.last_mut()
                && !tail.is_empty()
            {
                let mut acc = 0u8;
                for (j, t) in tail.iter().enumerate() {
                    acc |= hit(t) << j;
                }
                *last = acc;
            }
            let first = u32::try_from(block_no * BLOCK).unwrap_or(u32::MAX);
            let part = RoaringBitmap::from_lsb0_bytes(first, &bits);
            if block_no == 0 {
                result = part;
            } else {
                result |= part;
            }
        }
        result
    }

    /// The ordinals of `candidates` whose event time `t` is in
    /// `from <= t < to`; cheaper than [`time_filter`](Self::time_filter)
    /// when the candidates are few. Ordinals past the segment are dropped.
    pub fn time_filter_in(&self, from: i64, to: i64, candidates: &RoaringBitmap) -> RoaringBitmap {
        let mut result = RoaringBitmap::new();
        for ordinal in candidates {
            match self.event_time(ordinal) {
                Some(t) if from <= t && t < to => {
                    // Candidates iterate in increasing order, so this appends.
                    let _ = result.try_push(ordinal);
                }
                Some(_) => {}
                None => break,
            }
        }
        result
    }

    /// The term dictionary of `field`, or `None` if the sidecar has none
    /// (then queries on the field use another index or scan the segment).
    pub fn field(&self, field: IndexField) -> Option<TermDict<'a>> {
        let data = self.dicts.get(field.slot()).copied().flatten()?;
        Some(TermDict::view(data, field, self.identity.record_count))
    }

    /// The term dictionaries of every field this version knows, in field
    /// id order (dictionaries of unknown field ids are skipped).
    pub fn fields(&self) -> impl Iterator<Item = TermDict<'a>> + '_ {
        IndexField::ALL
            .iter()
            .filter_map(|&field| self.field(field))
    }

    /// The hashed index of `field`, or `None` if the sidecar has none.
    pub fn hashed(&self, field: IndexField) -> Option<HashedIndex<'a>> {
        let data = self.hashed.get(field.slot()).copied().flatten()?;
        Some(HashedIndex::view(data, field, self.identity.record_count))
    }

    /// The hashed indexes of every field this version knows, in field id
    /// order.
    pub fn hashed_fields(&self) -> impl Iterator<Item = HashedIndex<'a>> + '_ {
        IndexField::ALL
            .iter()
            .filter_map(|&field| self.hashed(field))
    }

    /// The IP index of `field`, or `None` if the sidecar has none.
    pub fn ip(&self, field: IndexField) -> Option<IpIndex<'a>> {
        let data = self.ips.get(field.slot()).copied().flatten()?;
        Some(IpIndex::view(data, field, self.identity.record_count))
    }

    /// The IP indexes of every field this version knows, in field id order.
    pub fn ip_fields(&self) -> impl Iterator<Item = IpIndex<'a>> + '_ {
        IndexField::ALL.iter().filter_map(|&field| self.ip(field))
    }

    /// Every section of the file, in table order, including the ones this
    /// version skips.
    pub fn sections(&self) -> impl ExactSizeIterator<Item = SectionInfo> + 'a {
        self.table
            .iter()
            .map(|entry| SectionInfo::from_raw(RawSection::decode(entry)))
    }
}

/// Records the bytes of a per-field section in `slots`, unless the field is
/// unknown (such sections are skipped).
fn set_slot<'a>(
    slots: &mut [Option<&'a [u8]>; KNOWN_FIELDS],
    field: Option<IndexField>,
    data: &'a [u8],
) {
    if let Some(slot) = field.and_then(|field| slots.get_mut(field.slot())) {
        *slot = Some(data);
    }
}

// ---------------------------------------------------------------------------
// Term dictionary
// ---------------------------------------------------------------------------

/// The term dictionary of one field, read in place.
///
/// Terms are unique and sorted bytewise (unsigned lexicographic order, a
/// proper prefix first); a term's position is its *index*. Lookups are
/// binary searches over the entry table and never allocate. A term with a
/// single record keeps that record's ordinal in its entry (see
/// [`inline_ordinal`](Self::inline_ordinal)) instead of a bitmap.
#[derive(Debug, Clone, Copy)]
pub struct TermDict<'a> {
    field: IndexField,
    record_count: u64,
    entries: &'a [[u8; TERM_ENTRY_LEN]],
    terms: &'a [u8],
    bitmaps: &'a [u8],
}

/// The parts of a dictionary section, as [`TermDict::split`] finds them.
struct DictParts<'a> {
    term_heap_len: u32,
    bitmap_heap_len: u32,
    reserved: u32,
    entries: &'a [[u8; TERM_ENTRY_LEN]],
    terms: &'a [u8],
    bitmaps: &'a [u8],
}

/// One term of a dictionary, as yielded by [`TermDict::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermEntry<'a> {
    /// Position of the term in the dictionary.
    pub index: usize,
    /// The term's bytes.
    pub term: &'a [u8],
    /// Number of records that have the term.
    pub cardinality: u64,
}

impl<'a> TermDict<'a> {
    /// Splits a dictionary section into its header words and its three
    /// parts, checking only that the header adds up to the section's length.
    fn split(data: &'a [u8]) -> Result<DictParts<'a>, String> {
        let Some((header, rest)) = data.split_first_chunk::<DICT_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than the {DICT_HEADER_LEN}-byte dictionary header",
                data.len()
            ));
        };
        let count = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let term_heap_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let bitmap_heap_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let reserved = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let entries_len = u64::from(count) * to_u64(TERM_ENTRY_LEN);
        let expected = to_u64(DICT_HEADER_LEN)
            + entries_len
            + u64::from(term_heap_len)
            + u64::from(bitmap_heap_len);
        if expected != to_u64(data.len()) {
            return Err(format!(
                "the section is {} bytes, but its header ({count} terms, {term_heap_len} term \
                 bytes, {bitmap_heap_len} bitmap bytes) adds up to {expected}",
                data.len()
            ));
        }
        let mut cursor = Cursor::new(rest);
        let (Some(entries), Some(terms), Some(bitmaps)) = (
            usize::try_from(entries_len)
                .ok()
                .and_then(|n| cursor.take(n)),
            cursor.take(term_heap_len as usize),
            cursor.take(bitmap_heap_len as usize),
        ) else {
            return Err("the section is shorter than its header says".to_owned());
        };
        let (entries, _) = entries.as_chunks::<TERM_ENTRY_LEN>();
        Ok(DictParts {
            term_heap_len,
            bitmap_heap_len,
            reserved,
            entries,
            terms,
            bitmaps,
        })
    }

    /// A view of a dictionary section, without checking it. If the header
    /// does not add up to the section's length, the view is empty.
    fn view(data: &'a [u8], field: IndexField, record_count: u64) -> Self {
        let (entries, terms, bitmaps) = match Self::split(data) {
            Ok(parts) => (parts.entries, parts.terms, parts.bitmaps),
            Err(_) => (&[][..], &[][..], &[][..]),
        };
        TermDict {
            field,
            record_count,
            entries,
            terms,
            bitmaps,
        }
    }

    /// Checks a dictionary section (whose CRC has been checked).
    fn check(data: &'a [u8], field: IndexField, record_count: u64) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadDictionary { field, reason };
        let DictParts {
            term_heap_len,
            bitmap_heap_len,
            reserved,
            entries,
            terms,
            bitmaps,
        } = Self::split(data).map_err(bad)?;
        if reserved != 0 {
            return Err(bad(format!("reserved header word is {reserved:#x}, not 0")));
        }

        // Entries must tile both heaps in order, and terms must increase.
        let entry_error = |index: usize, reason: &'static str| IndexError::BadTermEntry {
            field,
            index,
            reason,
        };
        let mut term_end = 0u64;
        let mut bitmap_end = 0u64;
        let mut previous: Option<&[u8]> = None;
        for (index, entry) in entries.iter().enumerate() {
            let e = RawTerm::decode(entry);
            if u64::from(e.term_offset) != term_end {
                return Err(entry_error(
                    index,
                    "term does not start where the previous one ends",
                ));
            }
            if e.term_len as usize > MAX_TERM_LEN {
                return Err(entry_error(index, "term is longer than 1024 bytes"));
            }
            let Some(term) = sub(terms, u64::from(e.term_offset), u64::from(e.term_len)) else {
                return Err(entry_error(index, "term extends past the term heap"));
            };
            if previous.is_some_and(|prev| prev >= term) {
                return Err(IndexError::UnsortedTerms { field, index });
            }
            previous = Some(term);
            term_end += u64::from(e.term_len);

            if e.bitmap_len == 0 {
                // Inline: `bitmap_offset` is the term's only ordinal.
                if e.cardinality != 1 {
                    return Err(entry_error(
                        index,
                        "an inline entry (bitmap length 0) must have cardinality 1",
                    ));
                }
                if u64::from(e.bitmap_offset) >= record_count {
                    return Err(IndexError::OrdinalOutOfRange {
                        field,
                        term_index: Some(index),
                        ordinal: u64::from(e.bitmap_offset),
                        record_count,
                    });
                }
                continue;
            }
            if u64::from(e.bitmap_offset) != bitmap_end {
                return Err(entry_error(
                    index,
                    "bitmap does not start where the previous one ends",
                ));
            }
            let Some(bitmap) = sub(bitmaps, u64::from(e.bitmap_offset), u64::from(e.bitmap_len))
            else {
                return Err(entry_error(index, "bitmap extends past the bitmap heap"));
            };
            if e.cardinality == 0 {
                return Err(entry_error(index, "cardinality is zero"));
            }
            if e.cardinality == 1 {
                return Err(entry_error(
                    index,
                    "a term with one record must be stored inline, not as a bitmap",
                ));
            }
            if u64::from(e.cardinality) > record_count {
                return Err(entry_error(
                    index,
                    "cardinality is larger than the segment's record count",
                ));
            }
            check_bitmap_shape(bitmap, &e, field, index, record_count)?;
            bitmap_end += u64::from(e.bitmap_len);
        }
        if term_end != u64::from(term_heap_len) {
            return Err(bad(format!(
                "terms use {term_end} of the {term_heap_len} term heap bytes"
            )));
        }
        if bitmap_end != u64::from(bitmap_heap_len) {
            return Err(bad(format!(
                "bitmaps use {bitmap_end} of the {bitmap_heap_len} bitmap heap bytes"
            )));
        }
        Ok(())
    }

    /// The field this dictionary indexes.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of distinct terms.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no record has the field.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn entry(&self, index: usize) -> Option<RawTerm> {
        self.entries.get(index).map(RawTerm::decode)
    }

    #[inline]
    fn term_of(&self, entry: &[u8; TERM_ENTRY_LEN]) -> &'a [u8] {
        let e = RawTerm::decode(entry);
        let start = e.term_offset as usize;
        // A checked section has every term inside the heap; in an unchecked
        // one, a term outside it reads as empty.
        self.terms
            .get(start..start.saturating_add(e.term_len as usize))
            .unwrap_or_default()
    }

    /// The term at `index`.
    #[inline]
    pub fn term(&self, index: usize) -> Option<&'a [u8]> {
        self.entries.get(index).map(|entry| self.term_of(entry))
    }

    /// Number of records that have the term at `index`.
    ///
    /// Read from the entry, without decoding the bitmap, so that a query
    /// planner can start with the rarest term.
    #[inline]
    pub fn cardinality(&self, index: usize) -> Option<u64> {
        self.entry(index).map(|e| u64::from(e.cardinality))
    }

    /// Index of the first term `>= key`.
    fn lower_bound(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|e| self.term_of(e) < key)
    }

    /// Index of the first term `> key`.
    fn upper_bound(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|e| self.term_of(e) <= key)
    }

    /// Index of `term`, if present.
    pub fn find(&self, term: &[u8]) -> Option<usize> {
        let index = self.lower_bound(term);
        (self.term(index)? == term).then_some(index)
    }

    /// Indexes of the terms that start with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> Range<usize> {
        let start = self.lower_bound(prefix);
        let tail = self.entries.get(start..).unwrap_or_default();
        let matching = tail.partition_point(|e| self.term_of(e).starts_with(prefix));
        start..start + matching
    }

    /// Indexes of the terms between `lower` and `upper`.
    pub fn range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Range<usize> {
        let start = match lower {
            Bound::Included(key) => self.lower_bound(key),
            Bound::Excluded(key) => self.upper_bound(key),
            Bound::Unbounded => 0,
        };
        let end = match upper {
            Bound::Included(key) => self.upper_bound(key),
            Bound::Excluded(key) => self.lower_bound(key),
            Bound::Unbounded => self.len(),
        };
        start..end.max(start)
    }

    /// The serialized bitmap of the term at `index` (roaring portable
    /// format), as stored and unchecked; empty for a term stored inline.
    pub fn bitmap_bytes(&self, index: usize) -> Option<&'a [u8]> {
        let e = self.entry(index)?;
        if e.bitmap_len == 0 {
            return Some(&[]);
        }
        sub(
            self.bitmaps,
            u64::from(e.bitmap_offset),
            u64::from(e.bitmap_len),
        )
    }

    /// The only ordinal of the term at `index`, if the term has a single
    /// record (such terms are stored inline, without a bitmap).
    ///
    /// Unchecked: in a section that [`IndexReader::check_section`] has not
    /// passed, the ordinal may be past the segment.
    #[inline]
    pub fn inline_ordinal(&self, index: usize) -> Option<u32> {
        let e = self.entry(index)?;
        (e.bitmap_len == 0).then_some(e.bitmap_offset)
    }

    /// Decodes the bitmap of the term at `index`: the ordinals of the
    /// records that have the term.
    ///
    /// Fails if the bitmap is malformed, if its cardinality differs from
    /// the entry's, or if it holds an ordinal past the segment.
    pub fn bitmap(&self, index: usize) -> Result<RoaringBitmap, IndexError> {
        let field = self.field;
        let (Some(e), Some(bytes)) = (self.entry(index), self.bitmap_bytes(index)) else {
            return Err(IndexError::TermIndexOutOfRange {
                field,
                index,
                len: self.len(),
            });
        };
        let bad = |reason: String| IndexError::BadBitmap {
            field,
            term_index: index,
            reason,
        };
        let out_of_range = |ordinal: u64| IndexError::OrdinalOutOfRange {
            field,
            term_index: Some(index),
            ordinal,
            record_count: self.record_count,
        };
        if e.bitmap_len == 0 {
            if e.cardinality != 1 {
                return Err(bad(format!(
                    "the term is stored inline, which means one record, but its entry \
                     says {}",
                    e.cardinality
                )));
            }
            if u64::from(e.bitmap_offset) >= self.record_count {
                return Err(out_of_range(u64::from(e.bitmap_offset)));
            }
            let mut bitmap = RoaringBitmap::new();
            bitmap.insert(e.bitmap_offset);
            return Ok(bitmap);
        }
        if e.cardinality == 1 {
            return Err(bad(
                "a bitmap of one record is not canonical (it must be stored inline)".to_owned(),
            ));
        }
        let cardinality = u64::from(e.cardinality);
        // Walk the structure first, so that roaring only ever allocates
        // for containers whose bytes are really there.
        check_bitmap_shape(bytes, &e, field, index, self.record_count)?;
        let bitmap = RoaringBitmap::deserialize_from(bytes).map_err(|e| bad(e.to_string()))?;
        if bitmap.len() != cardinality {
            return Err(bad(format!(
                "it holds {} ordinals, the term entry says {cardinality}",
                bitmap.len()
            )));
        }
        if let Some(max) = bitmap.max()
            && u64::from(max) >= self.record_count
        {
            return Err(out_of_range(u64::from(max)));
        }
        Ok(bitmap)
    }

    /// The union of the bitmaps of the terms at `indexes` (for example a
    /// [`prefix`](Self::prefix) or [`range`](Self::range) result).
    pub fn union(&self, indexes: Range<usize>) -> Result<RoaringBitmap, IndexError> {
        let mut result = RoaringBitmap::new();
        for index in indexes {
            match self.entry(index) {
                // A valid inline entry: no bitmap to build.
                Some(e)
                    if e.bitmap_len == 0
                        && e.cardinality == 1
                        && u64::from(e.bitmap_offset) < self.record_count =>
                {
                    result.insert(e.bitmap_offset);
                }
                _ => result |= self.bitmap(index)?,
            }
        }
        Ok(result)
    }

    /// The terms, in order.
    pub fn iter(&self) -> Terms<'a> {
        self.iter_range(0..self.len())
    }

    /// The terms at `indexes`, in order.
    pub fn iter_range(&self, indexes: Range<usize>) -> Terms<'a> {
        let end = indexes.end.min(self.len());
        Terms {
            dict: *self,
            indexes: indexes.start.min(end)..end,
        }
    }
}

impl<'a> IntoIterator for &TermDict<'a> {
    type Item = TermEntry<'a>;
    type IntoIter = Terms<'a>;

    fn into_iter(self) -> Terms<'a> {
        self.iter()
    }
}

/// Iterator over the terms of a [`TermDict`].
#[derive(Debug, Clone)]
pub struct Terms<'a> {
    dict: TermDict<'a>,
    indexes: Range<usize>,
}

impl<'a> Terms<'a> {
    fn at(&self, index: usize) -> Option<TermEntry<'a>> {
        Some(TermEntry {
            index,
            term: self.dict.term(index)?,
            cardinality: self.dict.cardinality(index)?,
        })
    }
}

impl<'a> Iterator for Terms<'a> {
    type Item = TermEntry<'a>;

    fn next(&mut self) -> Option<TermEntry<'a>> {
        let index = self.indexes.next()?;
        self.at(index)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indexes.size_hint()
    }
}

impl DoubleEndedIterator for Terms<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let index = self.indexes.next_back()?;
        self.at(index)
    }
}

impl ExactSizeIterator for Terms<'_> {}

/// Checks the structure of a term's serialized bitmap against its entry,
/// without decoding its values: one well-formed roaring bitmap, as many
/// values as the entry says, no container past the segment.
fn check_bitmap_shape(
    bytes: &[u8],
    e: &RawTerm,
    field: IndexField,
    index: usize,
    record_count: u64,
) -> Result<(), IndexError> {
    let bad = |reason: String| IndexError::BadBitmap {
        field,
        term_index: index,
        reason,
    };
    let shape = check_roaring(bytes).map_err(|reason| bad(reason.to_owned()))?;
    let cardinality = u64::from(e.cardinality);
    if shape.cardinality != cardinality {
        return Err(bad(format!(
            "its containers hold {} ordinals, the term entry says {cardinality}",
            shape.cardinality
        )));
    }
    if shape.max >= record_count {
        return Err(IndexError::OrdinalOutOfRange {
            field,
            term_index: Some(index),
            ordinal: shape.max,
            record_count,
        });
    }
    Ok(())
}
// ---------------------------------------------------------------------------
// Hashed index
// ---------------------------------------------------------------------------

/// The hashed index of one field, read in place: an exact-match index for
/// fields with (nearly) one distinct term per record, such as request ids.
///
/// It stores, for each (term, record) pair, the term's 64-bit FNV-1a hash
/// ([`term_key`]) and the record's ordinal, sorted by (key, ordinal): 12
/// bytes per record, whatever the term's length. A lookup gives the
/// *candidate* records whose term has the same hash as the one looked up;
/// two different terms can share a hash, so the engine confirms each
/// candidate against its record.
#[derive(Debug, Clone, Copy)]
pub struct HashedIndex<'a> {
    field: IndexField,
    record_count: u64,
    keys: &'a [[u8; HASHED_KEY_LEN]],
    ordinals: &'a [[u8; ORDINAL_LEN]],
}

/// The header words and arrays of a hashed index section.
struct HashedParts<'a> {
    reserved: u32,
    keys: &'a [[u8; HASHED_KEY_LEN]],
    ordinals: &'a [[u8; ORDINAL_LEN]],
}

impl<'a> HashedIndex<'a> {
    /// Splits a hashed index section, checking only that its header adds up
    /// to its length.
    fn split(data: &'a [u8]) -> Result<HashedParts<'a>, String> {
        let Some((header, rest)) = data.split_first_chunk::<HASHED_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than its {HASHED_HEADER_LEN}-byte header",
                data.len()
            ));
        };
        let count = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let reserved = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let expected = to_u64(HASHED_HEADER_LEN) + u64::from(count) * to_u64(HASHED_ENTRY_LEN);
        if expected != to_u64(data.len()) {
            return Err(format!(
                "the section is {} bytes, but {count} entries need {expected}",
                data.len()
            ));
        }
        let Some((keys, ordinals)) = rest.split_at_checked(count as usize * HASHED_KEY_LEN) else {
            return Err("the section is shorter than its header says".to_owned());
        };
        let (keys, _) = keys.as_chunks::<HASHED_KEY_LEN>();
        let (ordinals, _) = ordinals.as_chunks::<ORDINAL_LEN>();
        Ok(HashedParts {
            reserved,
            keys,
            ordinals,
        })
    }

    /// A view of a hashed index section, without checking it. If the header
    /// does not add up to the section's length, the view is empty.
    fn view(data: &'a [u8], field: IndexField, record_count: u64) -> Self {
        let (keys, ordinals) = match Self::split(data) {
            Ok(parts) => (parts.keys, parts.ordinals),
            Err(_) => (&[][..], &[][..]),
        };
        HashedIndex {
            field,
            record_count,
            keys,
            ordinals,
        }
    }

    /// Checks a hashed index section (whose CRC has been checked).
    fn check(data: &'a [u8], field: IndexField, record_count: u64) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadHashedIndex { field, reason };
        let parts = Self::split(data).map_err(bad)?;
        if parts.reserved != 0 {
            return Err(bad(format!(
                "reserved header word is {:#x}, not 0",
                parts.reserved
            )));
        }
        let mut previous: Option<(u64, u32)> = None;
        for (i, (key, ordinal)) in parts.keys.iter().zip(parts.ordinals).enumerate() {
            let entry = (u64::from_le_bytes(*key), u32::from_le_bytes(*ordinal));
            if previous.is_some_and(|prev| entry <= prev) {
                return Err(bad(format!(
                    "entry #{i} does not sort strictly after entry #{} (entries must be \
                     unique and sorted by key, then ordinal)",
                    i.saturating_sub(1)
                )));
            }
            previous = Some(entry);
            if u64::from(entry.1) >= record_count {
                return Err(bad(format!(
                    "entry #{i} has ordinal {}, but the segment has {record_count} records",
                    entry.1
                )));
            }
        }
        Ok(())
    }

    /// The field this index covers.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of (key, ordinal) entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no record has the field.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Positions of the entries with key `key`.
    fn key_range(&self, key: u64) -> Range<usize> {
        let start = lower_bound_key(self.keys, key);
        let tail = self.keys.get(start..).unwrap_or_default();
        start..start + leading_at_most(tail, key)
    }

    /// The records that may have `term`: every record that has it, and
    /// perhaps some whose term has the same hash. Confirm each against the
    /// record.
    pub fn candidates(&self, term: &[u8]) -> RoaringBitmap {
        self.candidates_for_key(term_key(term))
    }

    /// The records whose term has the key `key` (see [`term_key`]).
    pub fn candidates_for_key(&self, key: u64) -> RoaringBitmap {
        let range = self.key_range(key);
        let ordinals = self.ordinals.get(range).unwrap_or_default();
        ordinal_set(&[ordinals], self.record_count)
    }

    /// Number of records [`candidates`](Self::candidates) would return
    /// (two binary searches, no allocation), for a query planner.
    pub fn candidate_count(&self, term: &[u8]) -> u64 {
        self.candidate_count_for_key(term_key(term))
    }

    /// Number of records [`candidates_for_key`](Self::candidates_for_key)
    /// would return.
    pub fn candidate_count_for_key(&self, key: u64) -> u64 {
        to_u64(self.key_range(key).len())
    }
}

/// Interpolation steps [`lower_bound_key`] takes before it bisects.
const INTERPOLATION_STEPS: usize = 4;

/// Position of the first key `>= key` in `keys`, which a checked section
/// keeps sorted.
///
/// Keys are 64-bit hashes, spread evenly, so the search first interpolates
/// (guesses the position from the key's value), which on a large index
/// touches two or three pages instead of the dozen a binary search does;
/// this matters when the index is mapped and not yet in memory. It then
/// bisects what is left. On unsorted (unchecked) bytes it still ends, with
/// some position.
fn lower_bound_key(keys: &[[u8; HASHED_KEY_LEN]], key: u64) -> usize {
    let at = |i: usize| keys.get(i).map_or(u64::MAX, |k| u64::from_le_bytes(*k));
    // Invariant (when sorted): keys[..lo] < key <= keys[hi..].
    let (mut lo, mut hi) = (0usize, keys.len());
    for _ in 0..INTERPOLATION_STEPS {
        if hi - lo <= 64 {
            break;
        }
        let (first, last) = (at(lo), at(hi - 1));
        if key <= first {
            return lo;
        }
        if key > last {
            return hi;
        }
        // first < key <= last, so last - first > 0.
        let span = u128::from(last - first);
        let offset = u128::from(key - first) * to_u128(hi - 1 - lo) / span;
        let probe = lo + usize::try_from(offset).unwrap_or(0).min(hi - 1 - lo);
        if at(probe) < key {
            lo = probe + 1;
        } else {
            hi = probe;
        }
    }
    let rest = keys.get(lo..hi).unwrap_or_default();
    lo + rest.partition_point(|k| u64::from_le_bytes(*k) < key)
}

/// Number of leading keys `<= key` in `keys` (sorted when checked), by
/// galloping: cheap when few keys are equal, logarithmic when many are.
fn leading_at_most(keys: &[[u8; HASHED_KEY_LEN]], key: u64) -> usize {
    let mut known = 0usize;
    let mut step = 1usize;
    // keys[..known] are <= key.
    while let Some(k) = keys.get(known + step - 1)
        && u64::from_le_bytes(*k) <= key
    {
        known += step;
        step *= 2;
    }
    let window = keys
        .get(known..keys.len().min(known + step))
        .unwrap_or_default();
    known + window.partition_point(|k| u64::from_le_bytes(*k) <= key)
}

fn to_u128(n: usize) -> u128 {
    u128::from(to_u64(n))
}

// ---------------------------------------------------------------------------
// IP index
// ---------------------------------------------------------------------------

/// The IP index of one field, read in place: (address, ordinal) pairs
/// sorted by address, IPv4 and IPv6 apart, for exact and CIDR queries.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are stored, and looked
/// up, as the IPv4 address `a.b.c.d`: this index does not tell the two
/// apart. So `10.0.0.0/8` matches a record from `::ffff:10.1.2.3`, and
/// `::ffff:10.0.0.0/104` matches one from `10.1.2.3`.
///
/// Results are exact (no candidates to confirm). Counts are numbers of
/// (address, ordinal) pairs: the number of records found, or more if a
/// record has several addresses in the field.
#[derive(Debug, Clone, Copy)]
pub struct IpIndex<'a> {
    field: IndexField,
    record_count: u64,
    v4: &'a [[u8; IP_V4_LEN]],
    v4_ordinals: &'a [[u8; ORDINAL_LEN]],
    v6: &'a [[u8; IP_V6_LEN]],
    v6_ordinals: &'a [[u8; ORDINAL_LEN]],
}

/// The arrays of an IP index section.
struct IpParts<'a> {
    v4: &'a [[u8; IP_V4_LEN]],
    v4_ordinals: &'a [[u8; ORDINAL_LEN]],
    v6: &'a [[u8; IP_V6_LEN]],
    v6_ordinals: &'a [[u8; ORDINAL_LEN]],
}

impl<'a> IpIndex<'a> {
    /// Splits an IP index section, checking only that its header adds up
    /// to its length.
    fn split(data: &'a [u8]) -> Result<IpParts<'a>, String> {
        let Some((header, rest)) = data.split_first_chunk::<IP_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than its {IP_HEADER_LEN}-byte header",
                data.len()
            ));
        };
        let count4 = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let count6 = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let expected = to_u64(IP_HEADER_LEN)
            + u64::from(count4) * to_u64(IP_V4_ENTRY_LEN)
            + u64::from(count6) * to_u64(IP_V6_ENTRY_LEN);
        if expected != to_u64(data.len()) {
            return Err(format!(
                "the section is {} bytes, but {count4} IPv4 and {count6} IPv6 entries need \
                 {expected}",
                data.len()
            ));
        }
        let (count4, count6) = (count4 as usize, count6 as usize);
        let mut cursor = Cursor::new(rest);
        let (Some(v4), Some(v4_ordinals), Some(v6), Some(v6_ordinals)) = (
            cursor.take(count4 * IP_V4_LEN),
            cursor.take(count4 * ORDINAL_LEN),
            cursor.take(count6 * IP_V6_LEN),
            cursor.take(count6 * ORDINAL_LEN),
        ) else {
            return Err("the section is shorter than its header says".to_owned());
        };
        Ok(IpParts {
            v4: v4.as_chunks().0,
            v4_ordinals: v4_ordinals.as_chunks().0,
            v6: v6.as_chunks().0,
            v6_ordinals: v6_ordinals.as_chunks().0,
        })
    }

    /// A view of an IP index section, without checking it. If the header
    /// does not add up to the section's length, the view is empty.
    fn view(data: &'a [u8], field: IndexField, record_count: u64) -> Self {
        let parts = Self::split(data).unwrap_or(IpParts {
            v4: &[],
            v4_ordinals: &[],
            v6: &[],
            v6_ordinals: &[],
        });
        IpIndex {
            field,
            record_count,
            v4: parts.v4,
            v4_ordinals: parts.v4_ordinals,
            v6: parts.v6,
            v6_ordinals: parts.v6_ordinals,
        }
    }

    /// Checks an IP index section (whose CRC has been checked).
    fn check(data: &'a [u8], field: IndexField, record_count: u64) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadIpIndex { field, reason };
        let parts = Self::split(data).map_err(bad)?;
        let out_of_range = |family: &str, i: usize, ordinal: u32| {
            bad(format!(
                "{family} entry #{i} has ordinal {ordinal}, but the segment has {record_count} \
                 records"
            ))
        };
        let unsorted = |family: &str, i: usize| {
            bad(format!(
                "{family} entry #{i} does not sort strictly after entry #{} (entries must be \
                 unique and sorted by address, then ordinal)",
                i.saturating_sub(1)
            ))
        };
        let mut previous: Option<(u32, u32)> = None;
        for (i, (addr, ordinal)) in parts.v4.iter().zip(parts.v4_ordinals).enumerate() {
            let entry = (u32::from_le_bytes(*addr), u32::from_le_bytes(*ordinal));
            if previous.is_some_and(|prev| entry <= prev) {
                return Err(unsorted("IPv4", i));
            }
            previous = Some(entry);
            if u64::from(entry.1) >= record_count {
                return Err(out_of_range("IPv4", i, entry.1));
            }
        }
        let mut previous: Option<(u128, u32)> = None;
        for (i, (addr, ordinal)) in parts.v6.iter().zip(parts.v6_ordinals).enumerate() {
            let entry = (u128::from_be_bytes(*addr), u32::from_le_bytes(*ordinal));
            if previous.is_some_and(|prev| entry <= prev) {
                return Err(unsorted("IPv6", i));
            }
            previous = Some(entry);
            if (MAPPED_V4_FIRST..=MAPPED_V4_LAST).contains(&entry.0) {
                return Err(bad(format!(
                    "IPv6 entry #{i} is the IPv4-mapped address {}, which must be stored as \
                     IPv4",
                    Ipv6Addr::from_bits(entry.0)
                )));
            }
            if u64::from(entry.1) >= record_count {
                return Err(out_of_range("IPv6", i, entry.1));
            }
        }
        Ok(())
    }

    /// The field this index covers.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of (address, ordinal) entries, IPv4 and IPv6.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether no record has the field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of IPv4 entries (including IPv4-mapped IPv6 addresses).
    pub fn len_v4(&self) -> usize {
        self.v4.len()
    }

    /// Number of IPv6 entries (other than IPv4-mapped ones).
    pub fn len_v6(&self) -> usize {
        self.v6.len()
    }

    /// Positions of the IPv4 entries with `lo <= address <= hi`.
    fn positions_v4(&self, lo: u32, hi: u32) -> Range<usize> {
        if lo > hi {
            return 0..0;
        }
        let start = self.v4.partition_point(|a| u32::from_le_bytes(*a) < lo);
        let tail = self.v4.get(start..).unwrap_or_default();
        start..start + tail.partition_point(|a| u32::from_le_bytes(*a) <= hi)
    }

    /// Positions of the IPv6 entries with `lo <= address <= hi`.
    fn positions_v6(&self, lo: u128, hi: u128) -> Range<usize> {
        if lo > hi {
            return 0..0;
        }
        let start = self.v6.partition_point(|a| u128::from_be_bytes(*a) < lo);
        let tail = self.v6.get(start..).unwrap_or_default();
        start..start + tail.partition_point(|a| u128::from_be_bytes(*a) <= hi)
    }

    /// The IPv4 range that `lo..=hi` covers through IPv4-mapped addresses.
    fn mapped_part(lo: u128, hi: u128) -> Option<(u32, u32)> {
        let lo = lo.max(MAPPED_V4_FIRST);
        let hi = hi.min(MAPPED_V4_LAST);
        if lo > hi {
            return None;
        }
        // Both are within the mapped /96, so their low 32 bits are the
        // IPv4 addresses.
        Some((
            u32::try_from(lo - MAPPED_V4_FIRST).unwrap_or(u32::MAX),
            u32::try_from(hi - MAPPED_V4_FIRST).unwrap_or(u32::MAX),
        ))
    }

    /// The records with an IPv4 address `lo <= a <= hi`, as numbers
    /// (`10.0.0.1` is `0x0a00_0001`; see [`Ipv4Addr::to_bits`](std::net::Ipv4Addr::to_bits)).
    pub fn range_v4(&self, lo: u32, hi: u32) -> RoaringBitmap {
        let range = self.positions_v4(lo, hi);
        let ordinals = self.v4_ordinals.get(range).unwrap_or_default();
        ordinal_set(&[ordinals], self.record_count)
    }

    /// Number of IPv4 entries with `lo <= address <= hi`.
    pub fn count_v4(&self, lo: u32, hi: u32) -> u64 {
        to_u64(self.positions_v4(lo, hi).len())
    }

    /// The records with an IPv6 address `lo <= a <= hi`, as numbers (see
    /// [`Ipv6Addr::to_bits`]), including the records with an IPv4 address
    /// whose IPv4-mapped form is in that range.
    pub fn range_v6(&self, lo: u128, hi: u128) -> RoaringBitmap {
        let range = self.positions_v6(lo, hi);
        let v6 = self.v6_ordinals.get(range).unwrap_or_default();
        let v4 = match Self::mapped_part(lo, hi) {
            Some((lo, hi)) => self
                .v4_ordinals
                .get(self.positions_v4(lo, hi))
                .unwrap_or_default(),
            None => &[],
        };
        ordinal_set(&[v6, v4], self.record_count)
    }

    /// Number of entries [`range_v6`](Self::range_v6) looks at.
    pub fn count_v6(&self, lo: u128, hi: u128) -> u64 {
        let v4 = Self::mapped_part(lo, hi).map_or(0, |(lo, hi)| self.count_v4(lo, hi));
        to_u64(self.positions_v6(lo, hi).len()) + v4
    }

    /// The records with the address `addr` (an IPv4-mapped IPv6 address is
    /// the same as its IPv4 address).
    pub fn exact(&self, addr: IpAddr) -> RoaringBitmap {
        match canonical_ip(addr) {
            IpAddr::V4(v4) => self.range_v4(v4.to_bits(), v4.to_bits()),
            IpAddr::V6(v6) => self.range_v6(v6.to_bits(), v6.to_bits()),
        }
    }

    /// Number of entries with the address `addr`.
    pub fn exact_count(&self, addr: IpAddr) -> u64 {
        match canonical_ip(addr) {
            IpAddr::V4(v4) => self.count_v4(v4.to_bits(), v4.to_bits()),
            IpAddr::V6(v6) => self.count_v6(v6.to_bits(), v6.to_bits()),
        }
    }

    /// The records with an address in the CIDR block `addr/prefix_len`:
    /// those whose first `prefix_len` bits equal `addr`'s (the other bits
    /// of `addr` are ignored).
    ///
    /// Fails if `prefix_len` is longer than 32 for IPv4 or 128 for IPv6. An
    /// IPv6 block covers IPv4 addresses through their IPv4-mapped form:
    /// `::ffff:10.0.0.0/104` is `10.0.0.0/8`, and `::/0` is everything.
    pub fn cidr(&self, addr: IpAddr, prefix_len: u8) -> Result<RoaringBitmap, IndexError> {
        Ok(match cidr_bounds(addr, prefix_len)? {
            IpBounds::V4(lo, hi) => self.range_v4(lo, hi),
            IpBounds::V6(lo, hi) => self.range_v6(lo, hi),
        })
    }

    /// Number of entries [`cidr`](Self::cidr) looks at.
    pub fn cidr_count(&self, addr: IpAddr, prefix_len: u8) -> Result<u64, IndexError> {
        Ok(match cidr_bounds(addr, prefix_len)? {
            IpBounds::V4(lo, hi) => self.count_v4(lo, hi),
            IpBounds::V6(lo, hi) => self.count_v6(lo, hi),
        })
    }
}

/// The first and last address of a CIDR block.
enum IpBounds {
    V4(u32, u32),
    V6(u128, u128),
}

fn cidr_bounds(addr: IpAddr, prefix_len: u8) -> Result<IpBounds, IndexError> {
    match addr {
        IpAddr::V4(v4) => {
            if prefix_len > 32 {
                return Err(IndexError::BadPrefixLength {
                    prefix_len,
                    family: "IPv4",
                    max: 32,
                });
            }
            // `checked_shr` is `None` for a shift of 32 (prefix /0).
            let host = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let lo = v4.to_bits() & !host;
            Ok(IpBounds::V4(lo, lo | host))
        }
        IpAddr::V6(v6) => {
            if prefix_len > 128 {
                return Err(IndexError::BadPrefixLength {
                    prefix_len,
                    family: "IPv6",
                    max: 128,
                });
            }
            let host = u128::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let lo = v6.to_bits() & !host;
            Ok(IpBounds::V6(lo, lo | host))
        }
    }
}

/// The set of the `parts`' ordinals (in any order) that are below
/// `record_count`; others can only come from a damaged section that was
/// not checked, and are dropped.
fn ordinal_set(parts: &[&[[u8; ORDINAL_LEN]]], record_count: u64) -> RoaringBitmap {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let ordinals = parts
        .iter()
        .flat_map(|part| part.iter())
        .map(|bytes| u32::from_le_bytes(*bytes))
        .filter(|&ordinal| u64::from(ordinal) < record_count);
    if total <= 1 {
        // The common case of an exact match: no sorting, no extra vector.
        return ordinals.collect();
    }
    // Many ordinals: set bits in a bitset of the whole segment, which costs
    // `record_count / 8` bytes, at most 4 bytes per ordinal found.
    if to_u64(total).saturating_mul(32) >= record_count && record_count <= 1 << 31 {
        let mut bits = vec![0u8; usize::try_from(record_count.div_ceil(8)).unwrap_or(0)];
        for ordinal in ordinals {
            if let Some(byte) = bits.get_mut((ordinal / 8) as usize) {
                *byte |= 1 << (ordinal % 8);
            }
        }
        return RoaringBitmap::from_lsb0_bytes(0, &bits);
    }
    let mut sorted: Vec<u32> = ordinals.collect();
    if !sorted.is_sorted() {
        sorted.sort_unstable();
    }
    sorted.dedup();
    // Sorted and unique, so this cannot fail.
    RoaringBitmap::from_sorted_iter(sorted).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Roaring structure check
// ---------------------------------------------------------------------------

/// What [`check_roaring`] learns from a serialized bitmap.
struct RoaringShape {
    /// Sum of the containers' declared cardinalities.
    cardinality: u64,
    /// The largest value in the last container (the bitmap's largest value
    /// if the bitmap is valid).
    max: u64,
}

/// The payload of a container, by kind.
#[derive(Clone, Copy)]
enum Payload<'b> {
    Array(&'b [u8]),
    Bitset(&'b [u8]),
    Runs(&'b [u8]),
}

impl Payload<'_> {
    /// The largest value in the container, whatever the order of its
    /// values (an unordered container is refused when it is decoded).
    fn max(self) -> u32 {
        match self {
            Payload::Array(bytes) => bytes
                .as_chunks::<2>()
                .0
                .iter()
                .map(|v| u32::from(u16::from_le_bytes(*v)))
                .max()
                .unwrap_or(0),
            Payload::Runs(bytes) => bytes
                .as_chunks::<4>()
                .0
                .iter()
                .map(|r| {
                    u32::from(u16::from_le_bytes([r[0], r[1]]))
                        + u32::from(u16::from_le_bytes([r[2], r[3]]))
                })
                .max()
                .unwrap_or(0),
            Payload::Bitset(bytes) => {
                let words = bytes.as_chunks::<8>().0;
                words
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, w)| u64::from_le_bytes(**w) != 0)
                    .map_or(0, |(i, w)| {
                        let top = 63 - u64::from_le_bytes(*w).leading_zeros();
                        u32::try_from(i * 64).unwrap_or(0) + top
                    })
            }
        }
    }
}

/// Checks that `bytes` is exactly one well-formed, non-empty roaring bitmap
/// in the portable format: known cookie, sorted container keys, offsets
/// that match, every container's payload present, nothing after the last;
/// and finds the largest value of the last container. Does not allocate;
/// the order of values inside containers, and bitset cardinalities, are
/// checked when roaring decodes the bitmap.
fn check_roaring(bytes: &[u8]) -> Result<RoaringShape, &'static str> {
    const SHORT: &str = "it ends inside its own structure";
    let mut r = Cursor::new(bytes);
    let cookie = r.u32().ok_or(SHORT)?;
    let (size, has_runs) = if cookie == ROARING_COOKIE_NO_RUNS {
        let size = r.u32().ok_or(SHORT)?;
        (
            usize::try_from(size).map_err(|_| "too many containers")?,
            false,
        )
    } else if cookie & 0xffff == ROARING_COOKIE_RUNS {
        ((cookie >> 16) as usize + 1, true)
    } else {
        return Err("unknown roaring cookie");
    };
    if size == 0 {
        return Err("it has no containers");
    }
    if size > ROARING_MAX_CONTAINERS {
        return Err("it declares more than 65536 containers");
    }
    let has_offsets = !has_runs || size >= ROARING_OFFSETS_THRESHOLD;
    let run_flags = if has_runs {
        let flags = r.take(size.div_ceil(8)).ok_or(SHORT)?;
        let spare_bits = flags.len() * 8 - size;
        if spare_bits > 0 && flags.last().is_some_and(|&b| b >> (8 - spare_bits) != 0) {
            return Err("run flags mark containers that do not exist");
        }
        flags
    } else {
        &[]
    };
    let descriptions = r.take(size * 4).ok_or(SHORT)?;
    let offsets = if has_offsets {
        r.take(size * 4).ok_or(SHORT)?
    } else {
        &[]
    };
    let (descriptions, _) = descriptions.as_chunks::<4>();
    let (offsets, _) = offsets.as_chunks::<4>();

    let mut cardinality = 0u64;
    let mut previous_key: Option<u16> = None;
    let mut last_key = 0u16;
    let mut last = Payload::Array(&[]);
    for (i, d) in descriptions.iter().enumerate() {
        let key = u16::from_le_bytes([d[0], d[1]]);
        let count = u64::from(u16::from_le_bytes([d[2], d[3]])) + 1;
        if previous_key.is_some_and(|prev| key <= prev) {
            return Err("container keys are not strictly increasing");
        }
        previous_key = Some(key);
        last_key = key;
        if has_offsets {
            let declared = offsets.get(i).map(|o| u32::from_le_bytes(*o));
            if declared.map(u64::from) != Some(to_u64(r.pos)) {
                return Err("a container offset does not match the layout");
            }
        }
        let is_run = run_flags
            .get(i / 8)
            .is_some_and(|flags| flags >> (i % 8) & 1 == 1);
        if is_run {
            let runs = r.u16().ok_or(SHORT)?;
            if runs == 0 {
                return Err("a run container has no runs");
            }
            last = Payload::Runs(r.take(usize::from(runs) * 4).ok_or(SHORT)?);
        } else if count <= ROARING_ARRAY_LIMIT {
            let len = usize::from(u16::try_from(count).unwrap_or(u16::MAX)) * 2;
            last = Payload::Array(r.take(len).ok_or(SHORT)?);
        } else {
            last = Payload::Bitset(r.take(ROARING_BITSET_BYTES).ok_or(SHORT)?);
        }
        cardinality += count;
    }
    if !r.rest.is_empty() {
        return Err("bytes follow its last container");
    }
    Ok(RoaringShape {
        cardinality,
        max: (u64::from(last_key) << 16) + u64::from(last.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::Ipv4Addr;

    // -- model --------------------------------------------------------------

    type Terms = BTreeMap<Vec<u8>, BTreeSet<u32>>;

    /// A naive model of a sidecar's content.
    #[derive(Debug, Clone)]
    struct Model {
        identity: SegmentIdentity,
        offsets: Vec<u32>,
        times: Vec<i64>,
        /// Term dictionaries.
        fields: BTreeMap<IndexField, Terms>,
        /// Hashed indexes, by term.
        hashed: BTreeMap<IndexField, Terms>,
        /// Keys of hashed terms are `fnv(term) & hash_mask`: a narrow mask
        /// forces collisions.
        hash_mask: u64,
        /// IP indexes: (address as given, ordinal), repeats allowed.
        ips: BTreeMap<IndexField, Vec<(IpAddr, u32)>>,
    }

    fn identity(record_count: u64) -> SegmentIdentity {
        SegmentIdentity {
            store_id: *b"sealog-store-id!",
            segment_no: 42,
            first_seq: 1_000,
            record_count,
            segment_footer_crc: 0xdead_beef,
        }
    }

    #[test]
    fn postings_added_at_once_encode_like_terms_added_one_by_one() {
        let terms: [&[u8]; 3] = [b"bob", b"alice", b"carol"];
        let pairs = [(1, 0), (0, 1), (1, 2), (2, 3), (1, 4)];
        let mut one_by_one = IndexBuilder::new(identity(5));
        let mut at_once = IndexBuilder::new(identity(5));
        for b in [&mut one_by_one, &mut at_once] {
            for o in 0..5 {
                b.push_record(128 + o * 10, i64::from(o));
            }
            b.add_field(IndexField::Actor);
        }
        for &(id, ordinal) in &pairs {
            one_by_one
                .add_term(IndexField::Actor, terms[id as usize], ordinal)
                .unwrap();
        }
        at_once
            .add_term_postings(IndexField::Actor, &terms, &pairs)
            .unwrap();
        assert_eq!(at_once.encode().unwrap(), one_by_one.encode().unwrap());
        assert!(matches!(
            at_once.add_term_postings(IndexField::Actor, &terms, &[(3, 0)]),
            Err(IndexError::TooLarge { .. })
        ));
        assert!(matches!(
            at_once.add_term_postings(IndexField::Actor, &terms, &[(0, 5)]),
            Err(IndexError::OrdinalOutOfRange { .. })
        ));
    }

    /// FNV-1a 64, written independently of `term_key`.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// An address in one space where IPv4 `a.b.c.d` is `::ffff:a.b.c.d`.
    fn unify(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(v4) => 0xffff_0000_0000 | u128::from(u32::from_be_bytes(v4.octets())),
            IpAddr::V6(v6) => u128::from_be_bytes(v6.octets()),
        }
    }

    fn is_mapped(a: u128) -> bool {
        a >> 32 == 0xffff
    }

    impl Model {
        fn new(times: Vec<i64>) -> Model {
            let offsets = (0..times.len() as u32).map(|i| 16 + i * 100).collect();
            Model {
                identity: identity(times.len() as u64),
                offsets,
                times,
                fields: BTreeMap::new(),
                hashed: BTreeMap::new(),
                hash_mask: u64::MAX,
                ips: BTreeMap::new(),
            }
        }

        fn add(&mut self, field: IndexField, term: &[u8], ordinals: impl IntoIterator<Item = u32>) {
            let terms = self.fields.entry(field).or_default();
            let set: BTreeSet<u32> = ordinals.into_iter().collect();
            if !set.is_empty() {
                terms.entry(term.to_vec()).or_default().extend(set);
            }
        }

        fn add_hashed(
            &mut self,
            field: IndexField,
            term: &[u8],
            ordinals: impl IntoIterator<Item = u32>,
        ) {
            let terms = self.hashed.entry(field).or_default();
            let set: BTreeSet<u32> = ordinals.into_iter().collect();
            if !set.is_empty() {
                terms.entry(term.to_vec()).or_default().extend(set);
            }
        }

        fn add_ip(&mut self, field: IndexField, addr: IpAddr, ordinal: u32) {
            self.ips.entry(field).or_default().push((addr, ordinal));
        }

        fn key(&self, term: &[u8]) -> u64 {
            fnv(term) & self.hash_mask
        }

        /// Distinct (key, ordinal) pairs of a hashed field.
        fn hashed_pairs(&self, field: IndexField) -> BTreeSet<(u64, u32)> {
            self.hashed[&field]
                .iter()
                .flat_map(|(t, o)| o.iter().map(move |&o| (self.key(t), o)))
                .collect()
        }

        /// Distinct (unified address, ordinal) pairs of an IP field.
        fn ip_pairs(&self, field: IndexField) -> BTreeSet<(u128, u32)> {
            self.ips[&field]
                .iter()
                .map(|&(a, o)| (unify(a), o))
                .collect()
        }

        fn add_hashed_to(&self, b: &mut IndexBuilder, field: IndexField, term: &[u8], o: u32) {
            if self.hash_mask == u64::MAX {
                b.add_hashed(field, term, o).unwrap();
            } else {
                b.add_hashed_key(field, self.key(term), o).unwrap();
            }
        }

        fn builder(&self) -> IndexBuilder {
            let mut b = IndexBuilder::new(self.identity);
            for (&o, &t) in self.offsets.iter().zip(&self.times) {
                b.push_record(o, t);
            }
            for (&field, terms) in &self.fields {
                b.add_field(field);
                for (term, ordinals) in terms {
                    for &o in ordinals {
                        b.add_term(field, term, o).unwrap();
                    }
                }
            }
            for (&field, terms) in &self.hashed {
                b.add_hashed_field(field);
                for (term, ordinals) in terms {
                    for &o in ordinals {
                        self.add_hashed_to(&mut b, field, term, o);
                    }
                }
            }
            for (&field, entries) in &self.ips {
                b.add_ip_field(field);
                for &(addr, o) in entries {
                    b.add_ip(field, addr, o).unwrap();
                }
            }
            b
        }

        fn encode(&self) -> Vec<u8> {
            self.builder().encode().unwrap()
        }
    }

    fn term_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => proptest::collection::vec(b'a'..=b'd', 0..5),
            3 => proptest::collection::vec(any::<u8>(), 0..6),
            1 => Just(Vec::new()),
            1 => proptest::collection::vec(prop_oneof![Just(0u8), Just(0xff)], 1..4),
            1 => proptest::collection::vec(b'a'..=b'b', MAX_TERM_LEN - 2..=MAX_TERM_LEN),
        ]
    }

    fn ordinals_strategy(n: usize) -> BoxedStrategy<BTreeSet<u32>> {
        if n == 0 {
            return Just(BTreeSet::new()).boxed();
        }
        let n = n as u32;
        prop_oneof![
            2 => (0..n).prop_map(|o| BTreeSet::from([o])),
            3 => proptest::collection::btree_set(0..n, 1..20),
            2 => (0..n, 0..n).prop_map(|(a, b)| (a.min(b)..=a.max(b)).collect()),
        ]
        .boxed()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(bits: u128) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(bits))
    }

    /// Addresses that share prefixes, sit at the edges of the IPv4-mapped
    /// block, or are anywhere.
    fn ip_strategy() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            4 => (0u8..3, 0u8..4, 0u8..4).prop_map(|(b, c, d)| v4(10, b, c, d)),
            2 => any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            1 => prop_oneof![Just(v4(0, 0, 0, 0)), Just(v4(255, 255, 255, 255))],
            3 => (0u8..3, 0u8..4, 0u8..4)
                .prop_map(|(b, c, d)| IpAddr::V6(Ipv4Addr::new(10, b, c, d).to_ipv6_mapped())),
            2 => any::<u128>().prop_map(v6),
            3 => (0u128..4, 0u128..4).prop_map(|(s, h)| v6(0x2001_0db8 << 96 | s << 64 | h)),
            2 => prop_oneof![
                Just(v6(0)),
                Just(v6(1)),
                Just(v6(u128::MAX)),
                Just(v6(0xffff_0000_0000)),
                Just(v6(0xffff_ffff_ffff)),
                Just(v6(0xfffe_ffff_ffff)),
                Just(v6(0x1_0000_0000_0000)),
                Just(v6(0xffff_0a00_0001)),
            ],
        ]
    }

    fn time_strategy() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => -100i64..100,
            2 => any::<i64>(),
            1 => Just(i64::MIN),
            1 => Just(i64::MAX),
        ]
    }

    prop_compose! {
        fn model_strategy()(n in 0usize..300)(
            start in 0u32..1000,
            gaps in proptest::collection::vec(1u32..2000, n),
            times in proptest::collection::vec(time_strategy(), n),
            fields in proptest::sample::subsequence(IndexField::ALL.to_vec(), 0..=9),
            terms in proptest::collection::vec(
                proptest::collection::vec((term_strategy(), ordinals_strategy(n)), 0..16),
                9,
            ),
            hashed_fields in proptest::sample::subsequence(
                vec![IndexField::Actor, IndexField::RequestId, IndexField::ResourceId],
                0..=3,
            ),
            hashed_terms in proptest::collection::vec(
                proptest::collection::vec((term_strategy(), ordinals_strategy(n)), 0..24),
                3,
            ),
            hash_mask in prop_oneof![4 => Just(u64::MAX), 1 => Just(0u64), 1 => Just(0x7u64)],
            ip_fields in proptest::sample::subsequence(
                vec![IndexField::SourceIp, IndexField::ResourceId],
                0..=2,
            ),
            ips in proptest::collection::vec(
                proptest::collection::vec((ip_strategy(), ordinals_strategy(n)), 0..24),
                2,
            ),
        ) -> Model {
            let mut model = Model::new(times);
            model.hash_mask = hash_mask;
            let mut offset = start;
            for (slot, gap) in model.offsets.iter_mut().zip(gaps) {
                *slot = offset;
                offset += gap;
            }
            for (field, terms) in fields.into_iter().zip(terms) {
                model.fields.entry(field).or_default();
                for (term, ordinals) in terms {
                    model.add(field, &term, ordinals);
                }
            }
            for (field, terms) in hashed_fields.into_iter().zip(hashed_terms) {
                model.hashed.entry(field).or_default();
                for (term, ordinals) in terms {
                    model.add_hashed(field, &term, ordinals);
                }
            }
            for (field, entries) in ip_fields.into_iter().zip(ips) {
                model.ips.entry(field).or_default();
                for (addr, ordinals) in entries {
                    for o in ordinals {
                        model.add_ip(field, addr, o);
                    }
                }
            }
            model
        }
    }
    // -- checks against the model -------------------------------------------

    fn in_bounds(key: &[u8], lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
        let above = match lower {
            Bound::Included(l) => key >= l,
            Bound::Excluded(l) => key > l,
            Bound::Unbounded => true,
        };
        let below = match upper {
            Bound::Included(u) => key <= u,
            Bound::Excluded(u) => key < u,
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Asserts that `got` selects exactly the indexes `want` (contiguous).
    fn assert_selects(got: Range<usize>, want: &[usize], what: &str) {
        match (want.first(), want.last()) {
            (Some(&first), Some(&last)) => assert_eq!(got, first..last + 1, "{what}"),
            _ => assert!(got.is_empty(), "{what}: expected nothing, got {got:?}"),
        }
    }

    fn check(bytes: &[u8], m: &Model) {
        let r = IndexReader::parse(bytes).unwrap();
        assert_eq!(r.identity(), &m.identity);
        r.check_identity(&m.identity).unwrap();
        let n = m.offsets.len();
        assert_eq!(r.record_count(), n as u64);

        // Columns.
        for i in 0..n {
            assert_eq!(r.offset(i as u32), Some(m.offsets[i]));
            assert_eq!(r.event_time(i as u32), Some(m.times[i]));
            assert_eq!(r.ordinal_at(m.offsets[i]), Some(i as u32));
            let between = m.offsets[i] + 1;
            if !m.offsets.contains(&between) {
                assert_eq!(r.ordinal_at(between), None);
            }
        }
        assert_eq!(r.offset(n as u32), None);
        assert_eq!(r.event_time(n as u32), None);
        assert_eq!(r.offset(u32::MAX), None);

        // Time filters.
        let mut bounds: Vec<i64> = m.times.iter().copied().take(5).collect();
        bounds.extend([i64::MIN, i64::MAX, -1, 0, 1, 50]);
        let candidates: RoaringBitmap = (0..n as u32).step_by(3).chain([n as u32 + 7]).collect();
        for &from in &bounds {
            for &to in &bounds {
                let want: RoaringBitmap = (0..n)
                    .filter(|&i| from <= m.times[i] && m.times[i] < to)
                    .map(|i| i as u32)
                    .collect();
                assert_eq!(r.time_filter(from, to), want, "time_filter({from}, {to})");
                let want_in: RoaringBitmap = want.iter().filter(|o| o % 3 == 0).collect();
                assert_eq!(r.time_filter_in(from, to, &candidates), want_in);
            }
        }

        // Dictionaries.
        let present: Vec<IndexField> = r.fields().map(|d| d.field()).collect();
        assert_eq!(present, m.fields.keys().copied().collect::<Vec<_>>());
        for &field in IndexField::ALL {
            assert_eq!(r.field(field).is_some(), m.fields.contains_key(&field));
        }
        for (&field, terms) in &m.fields {
            let d = r.field(field).unwrap();
            assert_eq!(d.field(), field);
            assert_eq!(d.len(), terms.len());
            assert_eq!(d.is_empty(), terms.is_empty());
            let keys: Vec<&[u8]> = terms.keys().map(Vec::as_slice).collect();
            assert_eq!(d.iter().map(|e| e.term).collect::<Vec<_>>(), keys);
            assert_eq!(d.iter().len(), keys.len());
            let mut reversed: Vec<&[u8]> = d.iter().rev().map(|e| e.term).collect();
            reversed.reverse();
            assert_eq!(reversed, keys);
            for (i, (term, ordinals)) in terms.iter().enumerate() {
                assert_eq!(d.term(i), Some(term.as_slice()));
                assert_eq!(d.find(term), Some(i));
                assert_eq!(d.cardinality(i), Some(ordinals.len() as u64));
                let bitmap = d.bitmap(i).unwrap();
                assert_eq!(bitmap.iter().collect::<BTreeSet<_>>(), *ordinals);
            }
            assert_eq!(d.term(terms.len()), None);
            assert_eq!(d.cardinality(terms.len()), None);
            assert!(matches!(
                d.bitmap(terms.len()),
                Err(IndexError::TermIndexOutOfRange { .. })
            ));

            let mut probes: Vec<Vec<u8>> = vec![
                vec![],
                vec![0],
                vec![0xff],
                b"b".to_vec(),
                b"bb".to_vec(),
                b"c".to_vec(),
            ];
            for t in terms.keys().take(6) {
                probes.push(t.clone());
                probes.push([t.as_slice(), &[0]].concat());
                if let Some((&last, init)) = t.split_last() {
                    probes.push(init.to_vec());
                    probes.push([init, &[last.wrapping_add(1)]].concat());
                }
            }
            for p in &probes {
                assert_eq!(d.find(p), keys.iter().position(|k| *k == p.as_slice()));
                let want: Vec<usize> = (0..keys.len())
                    .filter(|&i| keys[i].starts_with(p))
                    .collect();
                assert_selects(d.prefix(p), &want, "prefix");
            }
            let all: Vec<usize> = (0..keys.len()).collect();
            let prefix_union = d.union(d.prefix(b"a")).unwrap();
            let want_union: BTreeSet<u32> = terms
                .iter()
                .filter(|(k, _)| k.starts_with(b"a"))
                .flat_map(|(_, o)| o.iter().copied())
                .collect();
            assert_eq!(prefix_union.iter().collect::<BTreeSet<_>>(), want_union);
            let mut bounds: Vec<Bound<&[u8]>> = vec![Bound::Unbounded];
            for p in probes.iter().take(10) {
                bounds.push(Bound::Included(p));
                bounds.push(Bound::Excluded(p));
            }
            for &lower in &bounds {
                for &upper in &bounds {
                    let want: Vec<usize> = all
                        .iter()
                        .copied()
                        .filter(|&i| in_bounds(keys[i], lower, upper))
                        .collect();
                    assert_selects(d.range(lower, upper), &want, "range");
                }
            }
            assert_eq!(
                d.iter_range(d.range(Bound::Unbounded, Bound::Unbounded))
                    .len(),
                keys.len()
            );
        }

        // Inline singletons.
        for (&field, terms) in &m.fields {
            let d = r.field(field).unwrap();
            for (i, ordinals) in terms.values().enumerate() {
                let inline = d.inline_ordinal(i);
                if ordinals.len() == 1 {
                    assert_eq!(inline, ordinals.first().copied());
                    assert_eq!(d.bitmap_bytes(i), Some(&[][..]));
                } else {
                    assert_eq!(inline, None);
                    assert!(d.bitmap_bytes(i).unwrap().len() > 8);
                }
            }
        }

        check_hashed(&r, m);
        check_ips(&r, m);
        check_sections(bytes, &r);
    }

    fn check_hashed(r: &IndexReader<'_>, m: &Model) {
        assert_eq!(
            r.hashed_fields().map(|h| h.field()).collect::<Vec<_>>(),
            m.hashed.keys().copied().collect::<Vec<_>>()
        );
        for &field in IndexField::ALL {
            assert_eq!(r.hashed(field).is_some(), m.hashed.contains_key(&field));
        }
        for (&field, terms) in &m.hashed {
            let h = r.hashed(field).unwrap();
            assert_eq!(h.field(), field);
            let pairs = m.hashed_pairs(field);
            assert_eq!(h.len(), pairs.len());
            assert_eq!(h.is_empty(), pairs.is_empty());
            let mut probes: Vec<Vec<u8>> = terms.keys().cloned().collect();
            probes.extend([b"".to_vec(), b"zz".to_vec(), vec![0xff; 3]]);
            for term in &probes {
                let key = m.key(term);
                let want: RoaringBitmap = pairs
                    .iter()
                    .filter(|&&(k, _)| k == key)
                    .map(|&(_, o)| o)
                    .collect();
                let got = h.candidates_for_key(key);
                assert_eq!(got, want, "candidates of {term:?}");
                assert_eq!(h.candidate_count_for_key(key), want.len());
                if let Some(exact) = terms.get(term) {
                    assert!(exact.iter().all(|&o| got.contains(o)));
                }
                if m.hash_mask == u64::MAX {
                    assert_eq!(h.candidates(term), want);
                    assert_eq!(h.candidate_count(term), want.len());
                }
            }
        }
    }

    /// What an IP index must return for `lo..=hi` in the unified space.
    fn naive_ip_range(pairs: &BTreeSet<(u128, u32)>, lo: u128, hi: u128) -> (RoaringBitmap, u64) {
        let hits: Vec<u32> = pairs
            .iter()
            .filter(|&&(a, _)| lo <= a && a <= hi)
            .map(|&(_, o)| o)
            .collect();
        (hits.iter().copied().collect(), hits.len() as u64)
    }

    /// What a CIDR query must return, by comparing leading bits.
    fn naive_cidr(pairs: &BTreeSet<(u128, u32)>, addr: IpAddr, prefix: u8) -> (RoaringBitmap, u64) {
        let (q, p) = match addr {
            IpAddr::V4(_) => (unify(addr), u32::from(prefix) + 96),
            IpAddr::V6(_) => (unify(addr), u32::from(prefix)),
        };
        let hits: Vec<u32> = pairs
            .iter()
            .filter(|&&(a, _)| p == 0 || (a ^ q) >> (128 - p) == 0)
            .map(|&(_, o)| o)
            .collect();
        (hits.iter().copied().collect(), hits.len() as u64)
    }

    fn check_ip_queries(ip: &IpIndex<'_>, pairs: &BTreeSet<(u128, u32)>, probes: &[IpAddr]) {
        assert_eq!(ip.len(), pairs.len());
        assert_eq!(ip.is_empty(), pairs.is_empty());
        let mapped = pairs.iter().filter(|(a, _)| is_mapped(*a)).count();
        assert_eq!(ip.len_v4(), mapped);
        assert_eq!(ip.len_v6(), pairs.len() - mapped);
        for &addr in probes.iter().take(16) {
            let (want, count) = naive_ip_range(pairs, unify(addr), unify(addr));
            assert_eq!(ip.exact(addr), want, "exact {addr}");
            assert_eq!(ip.exact_count(addr), count);
            let prefixes: &[u8] = match addr {
                IpAddr::V4(_) => &[0, 1, 7, 8, 16, 24, 30, 31, 32],
                IpAddr::V6(_) => &[0, 1, 16, 64, 95, 96, 97, 104, 112, 120, 127, 128],
            };
            for &prefix in prefixes {
                let (want, count) = naive_cidr(pairs, addr, prefix);
                assert_eq!(ip.cidr(addr, prefix).unwrap(), want, "{addr}/{prefix}");
                assert_eq!(ip.cidr_count(addr, prefix).unwrap(), count);
            }
            let too_long = match addr {
                IpAddr::V4(_) => 33,
                IpAddr::V6(_) => 129,
            };
            assert!(matches!(
                ip.cidr(addr, too_long),
                Err(IndexError::BadPrefixLength { .. })
            ));
            assert!(ip.cidr_count(addr, u8::MAX).is_err());
        }
        // Ranges between probes, both ways round.
        for &a in probes.iter().take(8) {
            for &b in probes.iter().take(8) {
                let (lo, hi) = (unify(a), unify(b));
                let (want, count) = naive_ip_range(pairs, lo, hi);
                assert_eq!(ip.range_v6(lo, hi), want, "range_v6 {a}..={b}");
                assert_eq!(ip.count_v6(lo, hi), count);
                if let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) {
                    assert_eq!(ip.range_v4(a.to_bits(), b.to_bits()), want);
                    assert_eq!(ip.count_v4(a.to_bits(), b.to_bits()), count);
                }
            }
        }
    }

    fn check_ips(r: &IndexReader<'_>, m: &Model) {
        assert_eq!(
            r.ip_fields().map(|i| i.field()).collect::<Vec<_>>(),
            m.ips.keys().copied().collect::<Vec<_>>()
        );
        for &field in IndexField::ALL {
            assert_eq!(r.ip(field).is_some(), m.ips.contains_key(&field));
        }
        for (&field, entries) in &m.ips {
            let ip = r.ip(field).unwrap();
            assert_eq!(ip.field(), field);
            let mut probes: Vec<IpAddr> = entries.iter().map(|&(a, _)| a).take(12).collect();
            probes.extend([
                v4(10, 0, 0, 0),
                v4(0, 0, 0, 0),
                v4(255, 255, 255, 255),
                v6(0),
                v6(u128::MAX),
                v6(0xffff_0a00_0000),
                v6(0x2001_0db8 << 96),
            ]);
            check_ip_queries(&ip, &m.ip_pairs(field), &probes);
        }
    }

    /// `open` accepts what `parse` accepts, every section checks, and the
    /// section lookups agree with the table.
    fn check_sections(bytes: &[u8], parsed: &IndexReader<'_>) {
        let r = IndexReader::open(bytes).unwrap();
        assert_eq!(r.section_count(), parsed.section_count());
        for i in 0..r.section_count() {
            r.check_section(i).unwrap();
            let s = r.section(i).unwrap();
            assert_eq!(r.section_for(s.kind, s.field), Some(i));
            assert_eq!(r.sections().nth(i), Some(s));
        }
        assert!(r.section(r.section_count()).is_none());
        assert!(matches!(
            r.check_section(r.section_count()),
            Err(IndexError::SectionIndexOutOfRange { .. })
        ));
        let [offsets, times] = r.column_sections();
        assert_eq!(r.section(offsets).unwrap().kind, SectionKind::Offsets);
        assert_eq!(r.section(times).unwrap().kind, SectionKind::EventTimes);
        assert_eq!(r.section_for(SectionKind::Offsets, 0), Some(offsets));
        assert_eq!(r.section_for(SectionKind::Unknown(77), 0), None);
        for &field in IndexField::ALL {
            let id = field.id();
            assert_eq!(
                r.section_for(SectionKind::TermDict, id).is_some(),
                r.field(field).is_some()
            );
            assert_eq!(
                r.section_for(SectionKind::Hashed, id).is_some(),
                r.hashed(field).is_some()
            );
            assert_eq!(
                r.section_for(SectionKind::Ip, id).is_some(),
                r.ip(field).is_some()
            );
        }
    }

    /// Calls every lookup on a reader over untrusted bytes whose sections
    /// may not have been checked; none may panic, and no result may name
    /// an ordinal past the segment.
    fn exercise_unchecked(r: &IndexReader<'_>) {
        let n = r.record_count();
        let n32 = u32::try_from(n).unwrap();
        let in_segment = |b: &RoaringBitmap| assert!(b.max().is_none_or(|m| u64::from(m) < n));
        for o in 0..n32.min(300) {
            assert!(r.offset(o).is_some());
            assert!(r.event_time(o).is_some());
            let _ = r.ordinal_at(o);
        }
        assert!(r.offset(n32).is_none());
        in_segment(&r.time_filter(i64::MIN, i64::MAX));
        in_segment(&r.time_filter_in(-5, 5, &(0..n32.min(50)).collect()));
        let _ = r.check_identity(&SegmentIdentity::default());
        let _ = r.column_sections();
        for s in r.sections() {
            assert!(r.section_for(s.kind, s.field).is_some());
        }
        for d in r.fields() {
            let _ = (d.field(), d.len(), d.is_empty());
            for e in d.iter().take(64) {
                let _ = d.find(e.term);
                let _ = d.prefix(e.term);
                let _ = d.inline_ordinal(e.index);
                let _ = d.bitmap_bytes(e.index);
                if let Ok(bitmap) = d.bitmap(e.index) {
                    in_segment(&bitmap);
                }
            }
            for e in d.iter().rev().take(4) {
                let _ = d.cardinality(e.index);
            }
            let _ = d.find(b"a");
            let _ = d.range(Bound::Included(b"a"), Bound::Excluded(b"c"));
            let _ = d.range(Bound::Excluded(b"c"), Bound::Unbounded);
            if let Ok(u) = d.union(0..d.len().min(64)) {
                in_segment(&u);
            }
            assert!(d.bitmap(d.len()).is_err());
        }
        for h in r.hashed_fields() {
            let _ = (h.field(), h.len(), h.is_empty());
            for key in [0, 1, u64::MAX, fnv(b"r1")] {
                in_segment(&h.candidates_for_key(key));
                let _ = h.candidate_count_for_key(key);
            }
            in_segment(&h.candidates(b""));
            let _ = h.candidate_count(b"x");
        }
        for ip in r.ip_fields() {
            let _ = (
                ip.field(),
                ip.len(),
                ip.len_v4(),
                ip.len_v6(),
                ip.is_empty(),
            );
            for (addr, prefix) in [
                (v4(0, 0, 0, 0), 0),
                (v4(10, 0, 0, 0), 8),
                (v4(10, 0, 0, 1), 32),
                (v6(0), 0),
                (v6(0xffff_0a00_0000), 104),
                (v6(0x2001_0db8 << 96), 32),
                (v6(1), 128),
            ] {
                in_segment(&ip.cidr(addr, prefix).unwrap());
                let _ = ip.cidr_count(addr, prefix).unwrap();
                in_segment(&ip.exact(addr));
                let _ = ip.exact_count(addr);
            }
            in_segment(&ip.range_v4(0, u32::MAX));
            in_segment(&ip.range_v6(0, u128::MAX));
            let _ = (ip.count_v4(5, 1), ip.count_v6(u128::MAX, 0));
        }
    }

    /// Calls every lookup on a fully checked reader; none may panic, and
    /// whatever succeeds must be consistent.
    fn exercise(r: &IndexReader<'_>) {
        exercise_unchecked(r);
        let n = r.record_count();
        let n32 = u32::try_from(n).unwrap();
        let all = r.time_filter(i64::MIN, i64::MAX);
        for o in 0..n32.min(2_000) {
            assert_eq!(all.contains(o), r.event_time(o) != Some(i64::MAX));
        }
        for o in 1..n32.min(2_000) {
            assert!(r.offset(o) > r.offset(o - 1));
        }
        for d in r.fields() {
            for e in d.iter() {
                assert_eq!(d.find(e.term), Some(e.index));
                assert!(d.prefix(e.term).contains(&e.index));
                assert_eq!(d.inline_ordinal(e.index).is_some(), e.cardinality == 1);
                if let Some(o) = d.inline_ordinal(e.index) {
                    assert!(u64::from(o) < n);
                }
                if let Ok(bitmap) = d.bitmap(e.index) {
                    assert_eq!(bitmap.len(), e.cardinality);
                }
            }
        }
        for h in r.hashed_fields() {
            for key in [0, 1, u64::MAX, fnv(b"r1")] {
                assert_eq!(
                    h.candidates_for_key(key).len(),
                    h.candidate_count_for_key(key)
                );
            }
        }
        for ip in r.ip_fields() {
            let v4 = ip.cidr(v4(0, 0, 0, 0), 0).unwrap();
            let all = ip.cidr(v6(0), 0).unwrap();
            assert!(v4.is_subset(&all));
            assert_eq!(ip.count_v4(0, u32::MAX), ip.len_v4() as u64);
            assert_eq!(ip.count_v6(0, u128::MAX), ip.len() as u64);
        }
    }

    /// Every way in must either refuse `bytes` or handle it: `parse`,
    /// `open` with lookups on unchecked sections, and `check_section` of
    /// every section. Returns whether `parse` accepted it.
    fn probe(bytes: &[u8]) -> bool {
        let parsed = IndexReader::parse(bytes);
        if let Ok(r) = &parsed {
            exercise(r);
        }
        match IndexReader::open(bytes) {
            Ok(r) => {
                exercise_unchecked(&r);
                let all_pass = (0..r.section_count()).all(|i| r.check_section(i).is_ok());
                assert_eq!(all_pass, parsed.is_ok(), "parse and open + check disagree");
            }
            Err(_) => assert!(parsed.is_err(), "parse accepted what open refused"),
        }
        parsed.is_ok()
    }

    // -- independent writer for crafted files -------------------------------

    /// Lays out a sidecar from raw sections, following the documented
    /// layout rather than the encoder's code.
    fn assemble(id: SegmentIdentity, sections: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
        let table_len = 24 * sections.len();
        let mut out = vec![0u8; 72 + table_len];
        let mut table = Vec::new();
        for (kind, field, data) in sections {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            table.extend_from_slice(&kind.to_le_bytes());
            table.extend_from_slice(&field.to_le_bytes());
            table.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
            table.extend_from_slice(&(out.len() as u64).to_le_bytes());
            table.extend_from_slice(&(data.len() as u64).to_le_bytes());
            out.extend_from_slice(data);
        }
        out[72..72 + table_len].copy_from_slice(&table);
        let mut h = Vec::new();
        h.extend_from_slice(b"SEALOGIX");
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&72u16.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&id.store_id);
        h.extend_from_slice(&id.segment_no.to_le_bytes());
        h.extend_from_slice(&id.first_seq.to_le_bytes());
        h.extend_from_slice(&id.record_count.to_le_bytes());
        h.extend_from_slice(&id.segment_footer_crc.to_le_bytes());
        h.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        h.extend_from_slice(&crc32fast::hash(&table).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        out[..72].copy_from_slice(&h);
        out
    }

    /// How a crafted dictionary entry stores its records.
    #[derive(Debug, Clone)]
    enum Stored {
        /// `bitmap_offset` = the ordinal, `bitmap_len` = 0.
        Inline(u32),
        /// Serialized roaring bytes in the bitmap heap.
        Roaring(Vec<u8>),
    }

    /// A dictionary section from (term, cardinality, postings) triples,
    /// laid out as documented.
    fn raw_dict(terms: &[(&[u8], u32, Stored)]) -> Vec<u8> {
        let mut entries = Vec::new();
        let mut heap = Vec::new();
        let mut bitmaps = Vec::new();
        for (term, cardinality, stored) in terms {
            entries.extend_from_slice(&(heap.len() as u32).to_le_bytes());
            entries.extend_from_slice(&(term.len() as u32).to_le_bytes());
            entries.extend_from_slice(&cardinality.to_le_bytes());
            match stored {
                Stored::Inline(ordinal) => {
                    entries.extend_from_slice(&ordinal.to_le_bytes());
                    entries.extend_from_slice(&0u32.to_le_bytes());
                }
                Stored::Roaring(bitmap) => {
                    entries.extend_from_slice(&(bitmaps.len() as u32).to_le_bytes());
                    entries.extend_from_slice(&(bitmap.len() as u32).to_le_bytes());
                    bitmaps.extend_from_slice(bitmap);
                }
            }
            heap.extend_from_slice(term);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(terms.len() as u32).to_le_bytes());
        out.extend_from_slice(&(heap.len() as u32).to_le_bytes());
        out.extend_from_slice(&(bitmaps.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend(entries);
        out.extend(heap);
        out.extend(bitmaps);
        out
    }

    /// A hashed index section from (key, ordinal) pairs, in the given order.
    fn raw_hashed(pairs: &[(u64, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for (key, _) in pairs {
            out.extend_from_slice(&key.to_le_bytes());
        }
        for (_, ordinal) in pairs {
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        out
    }

    /// An IP index section from (address, ordinal) pairs, in the given order.
    fn raw_ip(v4s: &[(Ipv4Addr, u32)], v6s: &[(Ipv6Addr, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(v4s.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v6s.len() as u32).to_le_bytes());
        for (a, _) in v4s {
            // The address as a number, stored little-endian: the octets
            // reversed.
            let mut octets = a.octets();
            octets.reverse();
            out.extend_from_slice(&octets);
        }
        for (_, ordinal) in v4s {
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        for (a, _) in v6s {
            out.extend_from_slice(&a.octets());
        }
        for (_, ordinal) in v6s {
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        out
    }

    fn serialized(values: impl IntoIterator<Item = u32>) -> Vec<u8> {
        let bitmap: RoaringBitmap = values.into_iter().collect();
        let mut out = Vec::new();
        bitmap.serialize_into(&mut out).unwrap();
        out
    }

    fn columns(n: u32) -> [(u16, u16, Vec<u8>); 2] {
        let offsets = (0..n).flat_map(|i| (i * 10).to_le_bytes()).collect();
        let times = (0..n).flat_map(|i| i64::from(i).to_le_bytes()).collect();
        [(KIND_OFFSETS, 0, offsets), (KIND_EVENT_TIMES, 0, times)]
    }

    /// A file with `n` records and one Actor dictionary.
    fn file_with_dict(n: u32, dict: Vec<u8>) -> Vec<u8> {
        let mut sections = columns(n).to_vec();
        sections.push((KIND_TERM_DICT, IndexField::Actor.id(), dict));
        assemble(identity(u64::from(n)), &sections)
    }

    /// Recomputes every CRC of a (possibly mutated) file so that mutations
    /// reach the structural checks behind the checksums.
    fn reseal(bytes: &mut [u8]) {
        if bytes.len() < 72 {
            return;
        }
        let mut header_len = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
        if header_len < 72 || header_len % 8 != 0 || header_len > bytes.len() {
            header_len = 72;
        }
        let count = u32::from_le_bytes(bytes[60..64].try_into().unwrap()) as usize;
        let table_end = (header_len + count.saturating_mul(24)).min(bytes.len());
        let table_end = table_end - (table_end - header_len) % 24;
        for at in (header_len..table_end).step_by(24) {
            let offset = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
            let len = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
            if let Some(end) = offset.checked_add(len)
                && end <= bytes.len() as u64
            {
                let crc = crc32fast::hash(&bytes[offset as usize..end as usize]);
                bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let table_crc = crc32fast::hash(&bytes[header_len..table_end]);
        bytes[64..68].copy_from_slice(&table_crc.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..header_len - 4]);
        bytes[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
    }

    /// A file with `n` records and one section of `kind` for `field`.
    fn file_with(n: u32, kind: u16, field: IndexField, data: Vec<u8>) -> Vec<u8> {
        let mut sections = columns(n).to_vec();
        sections.push((kind, field.id(), data));
        assemble(identity(u64::from(n)), &sections)
    }

    /// A small but complete sidecar: padding, four dictionaries (one
    /// empty), run, array and inline postings, two hashed indexes (one
    /// empty, one with a shared term), an IP index with IPv4, IPv4-mapped
    /// and IPv6 addresses.
    fn small_model() -> Model {
        let mut m = Model::new(vec![30, -5, 12, 30, i64::MAX]);
        m.add(IndexField::Actor, b"alice", [0, 3]);
        m.add(IndexField::Actor, b"bob", [1, 4]);
        m.add(IndexField::Actor, b"carol", [2]);
        m.add(IndexField::Action, b"read", [3]);
        m.add(IndexField::Outcome, b"ok", [0, 1, 2, 3, 4]);
        m.fields.entry(IndexField::Tenant).or_default();
        for o in 0..5u32 {
            m.add_hashed(IndexField::RequestId, format!("r{o}").as_bytes(), [o]);
        }
        m.add_hashed(IndexField::RequestId, b"shared", [1, 3]);
        m.hashed.entry(IndexField::ResourceId).or_default();
        for (addr, o) in [
            (v4(10, 0, 0, 1), 0),
            (IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped()), 1),
            (v6(0x2001_0db8 << 96 | 1), 2),
            (v4(10, 0, 0, 1), 3),
            (v4(192, 168, 1, 1), 4),
        ] {
            m.add_ip(IndexField::SourceIp, addr, o);
        }
        m
    }

    /// Shuffles `items` deterministically from `seed` (xorshift).
    fn shuffle<T>(items: &mut [T], seed: u64) {
        let mut state = seed | 1;
        for i in (1..items.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            items.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }

    /// Sections of every kind with arbitrary contents, laid out correctly
    /// (sorted table, right offsets, CRCs that match), so that the bytes
    /// reach the structural checks.
    fn crafted_sections(n: u32) -> impl Strategy<Value = Vec<(u16, u16, Vec<u8>)>> {
        let ordinal = 0..n + 2;
        let stored = prop_oneof![
            ordinal.clone().prop_map(Stored::Inline),
            proptest::collection::btree_set(ordinal.clone(), 1..4)
                .prop_map(|set| Stored::Roaring(serialized(set))),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Stored::Roaring),
        ];
        let dict =
            proptest::collection::vec((term_strategy(), 0u32..4, stored), 0..5).prop_map(|terms| {
                let refs: Vec<(&[u8], u32, Stored)> = terms
                    .iter()
                    .map(|(t, c, s)| (t.as_slice(), *c, s.clone()))
                    .collect();
                raw_dict(&refs)
            });
        let hashed = proptest::collection::vec((0u64..4, ordinal.clone()), 0..8)
            .prop_map(|pairs| raw_hashed(&pairs));
        let ip = (
            proptest::collection::vec((any::<u32>(), ordinal.clone()), 0..6),
            proptest::collection::vec((ip_strategy(), ordinal), 0..6),
        )
            .prop_map(|(v4s, v6s)| {
                let v4s: Vec<(Ipv4Addr, u32)> = v4s
                    .into_iter()
                    .map(|(a, o)| (Ipv4Addr::from(a), o))
                    .collect();
                let v6s: Vec<(Ipv6Addr, u32)> = v6s
                    .into_iter()
                    .map(|(a, o)| match a {
                        IpAddr::V4(a) => (a.to_ipv6_mapped(), o),
                        IpAddr::V6(a) => (a, o),
                    })
                    .collect();
                raw_ip(&v4s, &v6s)
            });
        let garbage = proptest::collection::vec(any::<u8>(), 0..40);
        let section = prop_oneof![
            (1u16..=10, dict).prop_map(|(f, d)| (KIND_TERM_DICT, f, d)),
            (1u16..=10, hashed).prop_map(|(f, d)| (KIND_HASHED, f, d)),
            (1u16..=10, ip).prop_map(|(f, d)| (KIND_IP, f, d)),
            (3u16..=6, 0u16..=10, garbage).prop_map(|(k, f, d)| (k, f, d)),
        ];
        proptest::collection::vec(section, 0..6).prop_map(move |sections| {
            let mut sorted: BTreeMap<(u16, u16), Vec<u8>> = BTreeMap::new();
            for (kind, field, data) in sections {
                sorted.insert((kind, field), data);
            }
            let mut all = columns(n).to_vec();
            all.extend(sorted.into_iter().map(|((k, f), d)| (k, f, d)));
            all
        })
    }

    // -- tests ---------------------------------------------------------------

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn round_trip(m in model_strategy()) {
            let bytes = m.encode();
            check(&bytes, &m);
        }

        #[test]
        fn encoding_is_deterministic(m in model_strategy(), seed in any::<u64>()) {
            let bytes = m.encode();
            prop_assert_eq!(&m.builder().encode().unwrap(), &bytes);

            // Same content, terms and addresses added in a shuffled order,
            // some twice: adding a record to a term is idempotent.
            #[derive(Clone, Copy)]
            enum Add<'t> {
                Term(IndexField, &'t [u8], u32),
                Hashed(IndexField, &'t [u8], u32),
                Ip(IndexField, IpAddr, u32),
            }
            let mut adds: Vec<Add<'_>> = Vec::new();
            for (&f, terms) in &m.fields {
                for (t, o) in terms {
                    adds.extend(o.iter().map(|&o| Add::Term(f, t, o)));
                }
            }
            for (&f, terms) in &m.hashed {
                for (t, o) in terms {
                    adds.extend(o.iter().map(|&o| Add::Hashed(f, t, o)));
                }
            }
            for (&f, entries) in &m.ips {
                adds.extend(entries.iter().map(|&(a, o)| Add::Ip(f, a, o)));
            }
            let again: Vec<_> = adds.iter().step_by(2).copied().collect();
            adds.extend(again);
            shuffle(&mut adds, seed);
            let mut b = IndexBuilder::new(m.identity);
            b.set_columns(m.offsets.clone(), m.times.clone()).unwrap();
            for &field in m.fields.keys().rev() {
                b.add_field(field);
            }
            for &field in m.hashed.keys().rev() {
                b.add_hashed_field(field);
            }
            for &field in m.ips.keys().rev() {
                b.add_ip_field(field);
            }
            for add in adds {
                match add {
                    Add::Term(f, t, o) => b.add_term(f, t, o).unwrap(),
                    Add::Hashed(f, t, o) => m.add_hashed_to(&mut b, f, t, o),
                    Add::Ip(f, a, o) => {
                        // A mapped address and its IPv4 address are one.
                        let a = match a {
                            IpAddr::V4(v4) if seed % 2 == 0 => IpAddr::V6(v4.to_ipv6_mapped()),
                            other => other,
                        };
                        b.add_ip(f, a, o).unwrap();
                    }
                }
            }
            prop_assert_eq!(&b.encode().unwrap(), &bytes);

            // Same content, whole bitmaps built from ranges.
            let mut without_dicts = m.clone();
            without_dicts.fields.clear();
            let mut b = without_dicts.builder();
            for (&field, terms) in m.fields.iter().rev() {
                b.insert_bitmap(field, b"", &RoaringBitmap::new()).unwrap();
                for (term, ordinals) in terms.iter().rev() {
                    let mut bitmap = RoaringBitmap::new();
                    for &o in ordinals {
                        bitmap.insert_range(o..=o);
                    }
                    b.insert_bitmap(field, term, &bitmap).unwrap();
                }
            }
            prop_assert_eq!(&b.encode().unwrap(), &bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            probe(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
            count in 0u32..6,
        ) {
            let mut bytes = assemble(identity(3), &[]);
            bytes[60..64].copy_from_slice(&count.to_le_bytes());
            bytes.extend(tail);
            reseal(&mut bytes);
            probe(&bytes);
        }

        #[test]
        fn crafted_sections_never_panic(sections in (0u32..6).prop_flat_map(crafted_sections)) {
            // The offsets column decides the record count.
            let records = (sections[0].2.len() / 4) as u64;
            let bytes = assemble(identity(records), &sections);
            probe(&bytes);
        }

        #[test]
        fn mutated_files_never_panic(
            m in model_strategy(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            fix_checksums in any::<bool>(),
        ) {
            let mut bytes = m.encode();
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                let len = cut.index(bytes.len());
                bytes.truncate(len);
            }
            if fix_checksums {
                reseal(&mut bytes);
            }
            probe(&bytes);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn ip_queries_match_a_naive_model(
            entries in proptest::collection::vec((ip_strategy(), 0u32..64), 0..200),
            queries in proptest::collection::vec((ip_strategy(), 0u8..=130), 1..40),
        ) {
            let mut m = Model::new(vec![0; 64]);
            m.ips.entry(IndexField::SourceIp).or_default();
            for &(addr, o) in &entries {
                m.add_ip(IndexField::SourceIp, addr, o);
            }
            let bytes = m.encode();
            let r = IndexReader::parse(&bytes).unwrap();
            let ip = r.ip(IndexField::SourceIp).unwrap();
            let pairs = m.ip_pairs(IndexField::SourceIp);
            for &(addr, prefix) in &queries {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if prefix > max {
                    let too_long = matches!(
                        ip.cidr(addr, prefix),
                        Err(IndexError::BadPrefixLength { .. })
                    );
                    prop_assert!(too_long);
                    continue;
                }
                let (want, count) = naive_cidr(&pairs, addr, prefix);
                prop_assert_eq!(ip.cidr(addr, prefix).unwrap(), want);
                prop_assert_eq!(ip.cidr_count(addr, prefix).unwrap(), count);
            }
            let probes: Vec<IpAddr> = queries.iter().map(|&(a, _)| a).collect();
            check_ip_queries(&ip, &pairs, &probes);
        }

        #[test]
        fn hashed_candidates_cover_every_exact_match(
            terms in proptest::collection::vec((term_strategy(), 0u32..50), 0..120),
            hash_mask in prop_oneof![Just(0u64), Just(1), Just(0xf), Just(0xff), Just(u64::MAX)],
        ) {
            let mut m = Model::new(vec![0; 50]);
            m.hash_mask = hash_mask;
            m.hashed.entry(IndexField::RequestId).or_default();
            for (term, o) in &terms {
                m.add_hashed(IndexField::RequestId, term, [*o]);
            }
            let bytes = m.encode();
            let r = IndexReader::parse(&bytes).unwrap();
            let h = r.hashed(IndexField::RequestId).unwrap();
            let keyed: Vec<(u64, &BTreeSet<u32>)> = m.hashed[&IndexField::RequestId]
                .iter()
                .map(|(t, o)| (m.key(t), o))
                .collect();
            for &(key, ordinals) in &keyed {
                let candidates = h.candidates_for_key(key);
                prop_assert!(ordinals.iter().all(|&o| candidates.contains(o)));
                let want: RoaringBitmap = keyed
                    .iter()
                    .filter(|(k, _)| *k == key)
                    .flat_map(|(_, o)| o.iter().copied())
                    .collect();
                prop_assert_eq!(candidates, want);
            }
        }
    }

    #[test]
    fn small_file_round_trips() {
        let m = small_model();
        check(&m.encode(), &m);
        let empty = Model::new(Vec::new());
        check(&empty.encode(), &empty);
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        // `parse` fails; `open` fails, or one section fails its check.
        let bytes = small_model().encode();
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x10, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                assert!(
                    !probe(&damaged),
                    "flipping {mask:#04x} at byte {at} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_byte_flip_behind_valid_checksums_is_handled() {
        // With the CRCs recomputed, flips reach the structural checks and
        // the bitmap decoder; none may panic, and the damage must show.
        let mut m = small_model();
        m.add(IndexField::Tenant, b"t", 0..5);
        // Adjacent values: a flip can make them equal, which only the
        // decoder sees (the section check reads no array order).
        m.add(IndexField::Tenant, b"u", [2, 3]);
        let bytes = m.encode();
        let (mut parsed, mut refused, mut bad_bitmaps) = (0, 0, 0);
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x02, 0x40, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                reseal(&mut damaged);
                if !probe(&damaged) {
                    refused += 1;
                    continue;
                }
                parsed += 1;
                let r = IndexReader::parse(&damaged).unwrap();
                for d in r.fields() {
                    bad_bitmaps += (0..d.len()).filter(|&i| d.bitmap(i).is_err()).count();
                }
            }
        }
        assert!(
            parsed > 0 && refused > 0 && bad_bitmaps > 0,
            "parsed {parsed}, refused {refused}, bad bitmaps {bad_bitmaps}"
        );
    }

    #[test]
    fn every_byte_flip_in_a_section_fails_only_that_section() {
        let bytes = small_model().encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let sections: Vec<SectionInfo> = r.sections().collect();
        for (i, s) in sections.iter().enumerate() {
            for at in s.offset..s.offset + s.len {
                let mut damaged = bytes.clone();
                damaged[at as usize] ^= 0x04;
                assert!(matches!(
                    IndexReader::parse(&damaged),
                    Err(IndexError::ChecksumMismatch {
                        region: Region::Section { .. },
                        ..
                    })
                ));
                // `open` does not read sections; only section `i` fails.
                let opened = IndexReader::open(&damaged).unwrap();
                exercise_unchecked(&opened);
                for j in 0..sections.len() {
                    let result = opened.check_section(j);
                    if j == i {
                        assert!(matches!(
                            result,
                            Err(IndexError::ChecksumMismatch { region: Region::Section { index, .. }, .. })
                                if index as usize == i
                        ));
                    } else {
                        result.unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = small_model().encode();
        for len in 0..bytes.len() {
            assert!(
                IndexReader::parse(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
            // Truncation moves the end of the file: `open` itself refuses.
            assert!(
                IndexReader::open(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            IndexReader::parse(&longer),
            Err(IndexError::TrailingBytes { len: 1, .. })
        ));
        assert!(matches!(
            IndexReader::open(&longer),
            Err(IndexError::TrailingBytes { len: 1, .. })
        ));
    }

    #[test]
    fn layout_matches_the_documentation() {
        let mut m = Model::new(vec![10, -5]);
        m.offsets = vec![0, 50];
        m.identity.store_id = core::array::from_fn(|i| i as u8);
        m.identity.segment_no = 7;
        m.identity.first_seq = 1_000;
        m.identity.segment_footer_crc = 0xdead_beef;
        m.add(IndexField::Actor, b"a", [0, 1]);
        let bytes = m.encode();
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());

        // Header.
        assert_eq!(&bytes[0..8], b"SEALOGIX");
        assert_eq!(u16_at(8), 1);
        assert_eq!(u16_at(10), 72);
        assert_eq!(u32_at(12), 0);
        assert_eq!(&bytes[16..32], &m.identity.store_id);
        assert_eq!(u64_at(32), 7);
        assert_eq!(u64_at(40), 1_000);
        assert_eq!(u64_at(48), 2);
        assert_eq!(u32_at(56), 0xdead_beef);
        assert_eq!(u32_at(60), 3);
        assert_eq!(u32_at(64), crc32fast::hash(&bytes[72..72 + 3 * 24]));
        assert_eq!(u32_at(68), crc32fast::hash(&bytes[..68]));

        // Section table: (kind, field, crc, offset, len).
        let entry = |i: usize| {
            let at = 72 + 24 * i;
            (
                u16_at(at),
                u16_at(at + 2),
                u32_at(at + 4),
                u64_at(at + 8),
                u64_at(at + 16),
            )
        };
        let (kind, field, crc, offset, len) = entry(0);
        assert_eq!((kind, field, offset, len), (1, 0, 144, 8));
        assert_eq!(crc, crc32fast::hash(&bytes[144..152]));
        assert_eq!(u32_at(144), 0);
        assert_eq!(u32_at(148), 50);
        let (kind, field, _, offset, len) = entry(1);
        assert_eq!((kind, field, offset, len), (2, 0, 152, 16));
        assert_eq!(u64_at(152) as i64, 10);
        assert_eq!(u64_at(160) as i64, -5);
        let (kind, field, crc, offset, len) = entry(2);
        let bitmap = serialized([0, 1]);
        assert_eq!((kind, field, offset), (3, 1, 168));
        assert_eq!(len as usize, 16 + 20 + 1 + bitmap.len());
        assert_eq!(crc, crc32fast::hash(&bytes[168..]));

        // Dictionary: header, one entry, term heap, bitmap heap.
        assert_eq!(
            (u32_at(168), u32_at(172), u32_at(176), u32_at(180)),
            (1, 1, bitmap.len() as u32, 0)
        );
        assert_eq!(
            (
                u32_at(184),
                u32_at(188),
                u32_at(192),
                u32_at(196),
                u32_at(200)
            ),
            (0, 1, 2, 0, bitmap.len() as u32)
        );
        assert_eq!(bytes[204], b'a');
        assert_eq!(&bytes[205..], &bitmap[..]);
        assert_eq!(bytes.len(), 205 + bitmap.len());

        // The encoder and the documented layout agree byte for byte.
        let mut sections = columns(0).to_vec();
        sections[0].2 = [0u32, 50].iter().flat_map(|v| v.to_le_bytes()).collect();
        sections[1].2 = [10i64, -5].iter().flat_map(|v| v.to_le_bytes()).collect();
        sections.push((
            KIND_TERM_DICT,
            1,
            raw_dict(&[(b"a", 2, Stored::Roaring(bitmap))]),
        ));
        assert_eq!(assemble(m.identity, &sections), bytes);

        // With an inline term, a hashed index and an IP index.
        m.add(IndexField::Actor, b"b", [1]);
        m.add_hashed(IndexField::RequestId, b"x", [1]);
        m.add_hashed(IndexField::RequestId, b"y", [0, 1]);
        m.add_ip(IndexField::SourceIp, v4(10, 0, 0, 1), 1);
        m.add_ip(IndexField::SourceIp, v6(0xffff_0a00_0000), 0);
        m.add_ip(IndexField::SourceIp, v6(0x2001_0db8 << 96), 1);
        let bytes = m.encode();
        let mut pairs = vec![(fnv(b"x"), 1), (fnv(b"y"), 0), (fnv(b"y"), 1)];
        pairs.sort();
        sections[2].2 = raw_dict(&[
            (b"a", 2, Stored::Roaring(serialized([0, 1]))),
            (b"b", 1, Stored::Inline(1)),
        ]);
        sections.push((KIND_HASHED, 8, raw_hashed(&pairs)));
        sections.push((
            KIND_IP,
            7,
            raw_ip(
                &[
                    (Ipv4Addr::new(10, 0, 0, 0), 0),
                    (Ipv4Addr::new(10, 0, 0, 1), 1),
                ],
                &[(Ipv6Addr::from(0x2001_0db8u128 << 96), 1)],
            ),
        ));
        assert_eq!(assemble(m.identity, &sections), bytes);
    }

    #[test]
    fn documented_example_is_exact() {
        // The worked example of the format documentation, byte for byte.
        let documented: Vec<u8> = [
            "53 45 41 4c 4f 47 49 58",
            "01 00 48 00 00 00 00 00",
            "00 01 02 03 04 05 06 07",
            "08 09 0a 0b 0c 0d 0e 0f",
            "07 00 00 00 00 00 00 00",
            "e8 03 00 00 00 00 00 00",
            "03 00 00 00 00 00 00 00",
            "ef be ad de 05 00 00 00",
            "79 a1 9f 12 ef 3d 6b c8",
            "01 00 00 00 a1 95 eb 95",
            "c0 00 00 00 00 00 00 00",
            "0c 00 00 00 00 00 00 00",
            "02 00 00 00 d5 be 6f e4",
            "d0 00 00 00 00 00 00 00",
            "18 00 00 00 00 00 00 00",
            "03 00 01 00 1f 49 0f c1",
            "e8 00 00 00 00 00 00 00",
            "54 00 00 00 00 00 00 00",
            "04 00 08 00 b2 34 e8 c9",
            "40 01 00 00 00 00 00 00",
            "2c 00 00 00 00 00 00 00",
            "05 00 07 00 9f 3e c1 f1",
            "70 01 00 00 00 00 00 00",
            "2c 00 00 00 00 00 00 00",
            "00 00 00 00 b4 00 00 00",
            "90 01 00 00 00 00 00 00",
            "00 00 2a 36 fe 9c 97 17",
            "00 36 8f fa fd 9c 97 17",
            "00 ca c4 71 fe 9c 97 17",
            "02 00 00 00 08 00 00 00",
            "14 00 00 00 00 00 00 00",
            "00 00 00 00 05 00 00 00",
            "02 00 00 00 00 00 00 00",
            "14 00 00 00 05 00 00 00",
            "03 00 00 00 01 00 00 00",
            "01 00 00 00 00 00 00 00",
            "61 6c 69 63 65 62 6f 62",
            "3a 30 00 00 01 00 00 00",
            "00 00 01 00 10 00 00 00",
            "00 00 02 00 00 00 00 00",
            "03 00 00 00 00 00 00 00",
            "3b e2 c3 61 19 fb dd 8a",
            "ee e3 c3 61 19 fc dd 8a",
            "a1 e5 c3 61 19 fd dd 8a",
            "00 00 00 00 01 00 00 00",
            "02 00 00 00 00 00 00 00",
            "02 00 00 00 01 00 00 00",
            "01 00 00 0a 02 00 00 0a",
            "00 00 00 00 01 00 00 00",
            "20 01 0d b8 00 00 00 00",
            "00 00 00 00 00 00 00 01",
            "02 00 00 00",
        ]
        .iter()
        .flat_map(|line| line.split(' '))
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect();
        let mut m = Model::new(vec![
            1_700_000_000_000_000_000,
            1_699_999_999_000_000_000,
            1_700_000_001_000_000_000,
        ]);
        m.offsets = vec![0, 180, 400];
        m.identity.store_id = core::array::from_fn(|i| i as u8);
        m.identity.segment_no = 7;
        m.identity.first_seq = 1_000;
        m.identity.segment_footer_crc = 0xdead_beef;
        m.add(IndexField::Actor, b"alice", [0, 2]);
        m.add(IndexField::Actor, b"bob", [1]);
        for (ordinal, id) in [b"r-1", b"r-2", b"r-3"].into_iter().enumerate() {
            m.add_hashed(IndexField::RequestId, id, [ordinal as u32]);
        }
        m.add_ip(IndexField::SourceIp, v4(10, 0, 0, 1), 0);
        m.add_ip(IndexField::SourceIp, "::ffff:10.0.0.2".parse().unwrap(), 1);
        m.add_ip(IndexField::SourceIp, "2001:db8::1".parse().unwrap(), 2);
        assert_eq!(documented.len(), 412);
        assert_eq!(m.encode(), documented);
        check(&documented, &m);
        assert_eq!(fnv(b"r-1"), 0x8add_fb19_61c3_e23b);
        assert_eq!(fnv(b"r-3"), 0x8add_fd19_61c3_e5a1);
    }

    #[test]
    fn bitmaps_are_run_optimized_and_canonical() {
        // {5, 6, 7} is as small as an array as it is as one run: the
        // encoding must not depend on how the bitmap was built.
        let mut by_term = Model::new(vec![0; 10]);
        by_term.add(IndexField::Action, b"x", [5, 6, 7]);
        let mut b = IndexBuilder::new(by_term.identity);
        b.set_columns(by_term.offsets.clone(), by_term.times.clone())
            .unwrap();
        let mut ranged = RoaringBitmap::new();
        ranged.insert_range(5..=7);
        b.insert_bitmap(IndexField::Action, b"x", &ranged).unwrap();
        assert_eq!(b.encode().unwrap(), by_term.encode());

        // A long range is stored as a run container.
        let mut m = Model::new(vec![0; 1000]);
        m.add(IndexField::Outcome, b"ok", 0..1000);
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let raw = r
            .field(IndexField::Outcome)
            .unwrap()
            .bitmap_bytes(0)
            .unwrap();
        assert_eq!(u16::from_le_bytes([raw[0], raw[1]]), 12347, "run cookie");
        assert!(raw.len() < 20);
    }

    #[test]
    fn large_segment_with_all_container_kinds() {
        let n: u32 = 140_000;
        let times: Vec<i64> = (0..n)
            .map(|i| i64::from(i.wrapping_mul(2_654_435_761) % 1_000))
            .collect();
        let mut m = Model::new(times);
        m.add(
            IndexField::Outcome,
            b"ok",
            (0..n).filter(|i| i % 1000 != 999),
        );
        m.add(
            IndexField::Outcome,
            b"error",
            (0..n).filter(|i| i % 1000 == 999),
        );
        m.add(IndexField::Actor, b"even", (0..n).step_by(2));
        m.add(IndexField::Actor, b"odd", (1..n).step_by(2));
        m.add(
            IndexField::Tenant,
            b"t",
            [0, 65_535, 65_536, 131_071, n - 1],
        );
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        for (&field, terms) in &m.fields {
            let d = r.field(field).unwrap();
            for (term, ordinals) in terms {
                let i = d.find(term).unwrap();
                assert_eq!(
                    d.bitmap(i).unwrap().iter().collect::<BTreeSet<_>>(),
                    *ordinals
                );
            }
        }
        for (from, to) in [(0, 1_000), (100, 101), (-5, 3), (999, 1_000), (500, 200)] {
            let want: RoaringBitmap = (0..n)
                .filter(|&i| from <= m.times[i as usize] && m.times[i as usize] < to)
                .collect();
            assert_eq!(r.time_filter(from, to), want);
        }
    }

    #[test]
    fn unknown_fields_and_section_kinds_are_skipped() {
        let mut sections = columns(3).to_vec();
        sections.push((KIND_TERM_DICT, 3, raw_dict(&[(b"r", 1, Stored::Inline(2))])));
        sections.push((KIND_TERM_DICT, 40, b"a future dictionary layout".to_vec()));
        sections.push((KIND_HASHED, 9, raw_hashed(&[(fnv(b"id"), 1)])));
        sections.push((KIND_HASHED, 41, b"a future hashed index".to_vec()));
        sections.push((KIND_IP, 42, b"a future IP index".to_vec()));
        sections.push((9, 0, b"a future section".to_vec()));
        sections.push((9, 7, Vec::new()));
        let bytes = assemble(identity(3), &sections);
        let r = IndexReader::parse(&bytes).unwrap();
        assert_eq!(
            r.fields().map(|d| d.field()).collect::<Vec<_>>(),
            [IndexField::Resource]
        );
        assert_eq!(
            r.hashed_fields().map(|h| h.field()).collect::<Vec<_>>(),
            [IndexField::ResourceId]
        );
        assert_eq!(r.ip_fields().count(), 0);
        assert_eq!(r.sections().len(), 9);
        assert_eq!(r.sections().nth(7).unwrap().kind, SectionKind::Unknown(9));
        assert_eq!(r.section_for(SectionKind::Unknown(9), 7), Some(8));
        assert_eq!(r.section_for(SectionKind::Hashed, 41), Some(5));
        let ids = r.hashed(IndexField::ResourceId).unwrap();
        assert_eq!(ids.candidates(b"id").iter().collect::<Vec<_>>(), [1]);
        // Skipped sections still have their CRC checked.
        let mut damaged = bytes.clone();
        let future = r.section(5).unwrap();
        damaged[future.offset as usize] ^= 1;
        let opened = IndexReader::open(&damaged).unwrap();
        assert!(matches!(
            opened.check_section(5),
            Err(IndexError::ChecksumMismatch { .. })
        ));
        let d = r.field(IndexField::Resource).unwrap();
        assert_eq!(
            d.bitmap(d.find(b"r").unwrap())
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [2]
        );
    }

    #[test]
    fn section_table_rules() {
        let [offsets, times] = columns(2);
        let dict = (KIND_TERM_DICT, 1, raw_dict(&[]));
        let id = identity(2);
        // Out of order, duplicated.
        let swapped = assemble(id, &[times.clone(), offsets.clone()]);
        assert!(matches!(
            IndexReader::parse(&swapped),
            Err(IndexError::SectionOrder { .. })
        ));
        let twice = assemble(
            id,
            &[offsets.clone(), times.clone(), dict.clone(), dict.clone()],
        );
        assert!(matches!(
            IndexReader::parse(&twice),
            Err(IndexError::SectionOrder { .. })
        ));
        // Missing columns.
        let missing = assemble(id, std::slice::from_ref(&offsets));
        assert!(matches!(
            IndexReader::parse(&missing),
            Err(IndexError::MissingSection {
                kind: SectionKind::EventTimes
            })
        ));
        // Column of the wrong length, column with a field id.
        let short = assemble(identity(3), &[offsets.clone(), times.clone()]);
        assert!(matches!(
            IndexReader::parse(&short),
            Err(IndexError::BadColumnLength {
                column: SectionKind::Offsets,
                expected: 12,
                found: 8
            })
        ));
        let with_field = assemble(id, &[(KIND_OFFSETS, 1, offsets.2.clone()), times.clone()]);
        assert!(matches!(
            IndexReader::parse(&with_field),
            Err(IndexError::BadSectionField { .. })
        ));
        // Offsets must increase.
        let flat = (
            KIND_OFFSETS,
            0,
            [5u32, 5].iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        assert!(matches!(
            IndexReader::parse(&assemble(id, &[flat, times.clone()])),
            Err(IndexError::OffsetsNotIncreasing {
                ordinal: 1,
                previous: 5,
                offset: 5
            })
        ));
        // A gap between sections.
        let mut gapped = assemble(id, &[offsets.clone(), times.clone()]);
        let at = 72 + 24 + 8;
        let moved = u64::from_le_bytes(gapped[at..at + 8].try_into().unwrap()) + 8;
        gapped[at..at + 8].copy_from_slice(&moved.to_le_bytes());
        gapped.splice(moved as usize - 8..moved as usize - 8, [0u8; 8]);
        reseal(&mut gapped);
        assert!(matches!(
            IndexReader::parse(&gapped),
            Err(IndexError::SectionMisplaced {
                expected: 128,
                offset: 136,
                ..
            })
        ));
        // Non-zero padding (3 records: 12-byte offsets column, 4 padding bytes).
        let [offsets3, times3] = columns(3);
        let mut padded = assemble(identity(3), &[offsets3, times3]);
        padded[72 + 48 + 12 + 1] = 1;
        reseal(&mut padded);
        assert!(matches!(
            IndexReader::parse(&padded),
            Err(IndexError::NonZeroPadding { offset: 133 })
        ));
        // Unknown flags, newer version, bad header length, too many records.
        let good = assemble(id, &[offsets.clone(), times.clone()]);
        let mut flagged = good.clone();
        flagged[12] = 1;
        reseal(&mut flagged);
        assert!(matches!(
            IndexReader::parse(&flagged),
            Err(IndexError::UnsupportedFlags { flags: 1 })
        ));
        let mut newer = good.clone();
        newer[8] = 2;
        assert!(matches!(
            IndexReader::parse(&newer),
            Err(IndexError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
        let mut odd = good.clone();
        odd[10] = 73;
        assert!(matches!(
            IndexReader::parse(&odd),
            Err(IndexError::BadHeaderLength { found: 73 })
        ));
        let mut huge = assemble(identity(1 << 33), &[]);
        reseal(&mut huge);
        assert!(matches!(
            IndexReader::parse(&huge),
            Err(IndexError::TooLarge { .. })
        ));
        assert!(matches!(
            IndexReader::parse(b"SEALOGIY and more"),
            Err(IndexError::BadMagic { .. })
        ));
        assert!(matches!(
            IndexReader::parse(b"SEALOGIX"),
            Err(IndexError::Truncated { .. })
        ));
    }

    #[test]
    fn longer_headers_are_accepted() {
        let [offsets, times] = columns(2);
        let base = assemble(identity(2), &[offsets, times]);
        // Insert 8 bytes of header extension before the CRC and shift
        // the sections by 8.
        let mut bytes = base[..68].to_vec();
        bytes[10..12].copy_from_slice(&80u16.to_le_bytes());
        bytes.extend_from_slice(b"future!!");
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&base[72..]);
        for i in 0..2 {
            let at = 80 + 24 * i + 8;
            let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) + 8;
            bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        }
        reseal(&mut bytes);
        let r = IndexReader::parse(&bytes).unwrap();
        assert_eq!(r.offset(1), Some(10));
    }

    #[test]
    fn dictionary_rules() {
        let one = |o| Stored::Inline(o);
        let two = || Stored::Roaring(serialized([1, 2]));
        let check_dict = |dict: Vec<u8>| -> Result<(), IndexError> {
            let bytes = file_with_dict(4, dict);
            let r = IndexReader::open(&bytes)?;
            exercise_unchecked(&r);
            let checked = r.check_section(2);
            assert_eq!(checked.is_ok(), IndexReader::parse(&bytes).is_ok());
            checked
        };
        let unsorted = raw_dict(&[(b"b", 1, one(1)), (b"a", 1, one(1))]);
        assert!(matches!(
            check_dict(unsorted),
            Err(IndexError::UnsortedTerms { index: 1, .. })
        ));
        let duplicate = raw_dict(&[(b"a", 2, two()), (b"a", 1, one(0))]);
        assert!(matches!(
            check_dict(duplicate),
            Err(IndexError::UnsortedTerms { index: 1, .. })
        ));
        let zero = raw_dict(&[(b"a", 0, two())]);
        assert!(matches!(
            check_dict(zero),
            Err(IndexError::BadTermEntry { index: 0, .. })
        ));
        let too_many = raw_dict(&[(b"a", 5, two())]);
        assert!(matches!(
            check_dict(too_many),
            Err(IndexError::BadTermEntry { .. })
        ));
        let long = vec![b'x'; MAX_TERM_LEN + 1];
        assert!(matches!(
            check_dict(raw_dict(&[(&long, 1, one(0))])),
            Err(IndexError::BadTermEntry { .. })
        ));
        let mut reserved = raw_dict(&[]);
        reserved[12] = 1;
        assert!(matches!(
            check_dict(reserved),
            Err(IndexError::BadDictionary { .. })
        ));
        let mut longer = raw_dict(&[(b"a", 1, one(0))]);
        longer.push(0);
        assert!(matches!(
            check_dict(longer),
            Err(IndexError::BadDictionary { .. })
        ));
        assert!(matches!(
            check_dict(vec![0; 10]),
            Err(IndexError::BadDictionary { .. })
        ));
        // Entries that do not tile the bitmap heap.
        let mut overlapping = raw_dict(&[(b"a", 2, two()), (b"b", 2, two())]);
        overlapping[16 + 20 + 12..16 + 20 + 16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            check_dict(overlapping),
            Err(IndexError::BadTermEntry { index: 1, .. })
        ));
        // Inline entries take no heap bytes, wherever they are.
        check_dict(raw_dict(&[
            (b"a", 1, one(3)),
            (b"b", 2, two()),
            (b"c", 1, one(0)),
            (b"d", 2, Stored::Roaring(serialized([0, 3]))),
        ]))
        .unwrap();
    }

    #[test]
    fn section_checks_find_ordinals_past_the_segment_in_every_container_kind() {
        let n = 80_000u32;
        let bitmaps: [(RoaringBitmap, bool, bool); 3] = [
            // Array, bitset and run containers whose key is in the segment
            // but whose last value is not (with: is a bitset, has runs).
            ([0, 65_536, n].into_iter().collect(), false, false),
            (
                (0..3).chain((65_536..=n).filter(|v| v % 3 != 0)).collect(),
                true,
                false,
            ),
            ((0..3).chain(65_536..=n).collect(), false, true),
        ];
        assert_eq!(n % 3, 2);
        for (mut bitmap, bitset, runs) in bitmaps {
            bitmap.optimize();
            let mut bytes = Vec::new();
            bitmap.serialize_into(&mut bytes).unwrap();
            assert_eq!(bytes.len() > 8192, bitset);
            assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]) == 12347, runs);
            let card = bitmap.len() as u32;
            let file = file_with_dict(n, raw_dict(&[(b"t", card, Stored::Roaring(bytes))]));
            let r = IndexReader::open(&file).unwrap();
            assert!(matches!(
                r.check_section(2),
                Err(IndexError::OrdinalOutOfRange { ordinal, .. }) if ordinal == u64::from(n)
            ));
            bitmap.remove(n);
            let mut bytes = Vec::new();
            bitmap.serialize_into(&mut bytes).unwrap();
            let card = bitmap.len() as u32;
            let file = file_with_dict(n, raw_dict(&[(b"t", card, Stored::Roaring(bytes))]));
            IndexReader::parse(&file).unwrap();
        }
    }

    #[test]
    fn single_records_are_inline_and_only_inline() {
        // The encoder stores a one-record term inline, even if the record
        // was added twice.
        let mut m = Model::new(vec![0; 5]);
        m.add(IndexField::Actor, b"solo", [3]);
        m.add(IndexField::Actor, b"pair", [1, 4]);
        let mut b = m.builder();
        b.add_term(IndexField::Actor, b"solo", 3).unwrap();
        let bytes = b.encode().unwrap();
        assert_eq!(bytes, m.encode());
        let r = IndexReader::parse(&bytes).unwrap();
        let d = r.field(IndexField::Actor).unwrap();
        let solo = d.find(b"solo").unwrap();
        assert_eq!(d.inline_ordinal(solo), Some(3));
        assert_eq!(d.cardinality(solo), Some(1));
        assert_eq!(d.bitmap(solo).unwrap().iter().collect::<Vec<_>>(), [3]);
        assert_eq!(d.inline_ordinal(d.find(b"pair").unwrap()), None);

        let decode = |card: u32, stored: Stored| {
            let bytes = file_with_dict(4, raw_dict(&[(b"t", card, stored)]));
            let r = IndexReader::open(&bytes).unwrap();
            let check = r.check_section(2);
            let bitmap = r.field(IndexField::Actor).unwrap().bitmap(0);
            (check, bitmap)
        };
        // A one-record bitmap is not canonical: refused by the check and by
        // the decoder.
        let (check, bitmap) = decode(1, Stored::Roaring(serialized([2])));
        assert!(matches!(
            check,
            Err(IndexError::BadTermEntry { index: 0, .. })
        ));
        assert!(matches!(bitmap, Err(IndexError::BadBitmap { .. })));
        // An inline entry means one record.
        let (check, bitmap) = decode(2, Stored::Inline(2));
        assert!(matches!(
            check,
            Err(IndexError::BadTermEntry { index: 0, .. })
        ));
        assert!(matches!(bitmap, Err(IndexError::BadBitmap { .. })));
        // An inline ordinal past the segment.
        let (check, bitmap) = decode(1, Stored::Inline(4));
        assert!(matches!(
            check,
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 4,
                term_index: Some(0),
                ..
            })
        ));
        assert!(matches!(
            bitmap,
            Err(IndexError::OrdinalOutOfRange { ordinal: 4, .. })
        ));
        let (check, bitmap) = decode(1, Stored::Inline(3));
        check.unwrap();
        assert_eq!(bitmap.unwrap().iter().collect::<Vec<_>>(), [3]);
    }

    /// Decodes a crafted bitmap from an unchecked section; a full check of
    /// the section never accepts a bitmap that the decoder refuses.
    fn decode_crafted(
        n: u32,
        cardinality: u32,
        bitmap: Vec<u8>,
    ) -> Result<RoaringBitmap, IndexError> {
        let bytes = file_with_dict(n, raw_dict(&[(b"t", cardinality, Stored::Roaring(bitmap))]));
        let r = IndexReader::open(&bytes).unwrap();
        let decoded = r.field(IndexField::Actor).unwrap().bitmap(0);
        if r.check_section(2).is_ok() && decoded.is_err() {
            // Only the values inside containers are left to the decoder.
            assert!(matches!(
                decoded,
                Err(IndexError::BadBitmap { .. } | IndexError::OrdinalOutOfRange { .. })
            ));
        }
        if decoded.is_ok() {
            r.check_section(2).unwrap();
        }
        decoded
    }

    #[test]
    fn crafted_bitmaps_are_rejected() {
        let bad = |n, card, bytes| match decode_crafted(n, card, bytes) {
            Err(IndexError::BadBitmap { reason, .. }) => reason,
            other => panic!("expected BadBitmap, got {other:?}"),
        };
        assert_eq!(decode_crafted(10, 2, serialized([3, 9])).unwrap().len(), 2);
        // Past the segment.
        assert!(matches!(
            decode_crafted(10, 2, serialized([3, 10])),
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 10,
                term_index: Some(0),
                ..
            })
        ));
        assert!(matches!(
            decode_crafted(10, 2, serialized([1, 1 << 20])),
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 1_048_576,
                ..
            })
        ));
        // Cardinality disagrees with the entry.
        bad(10, 3, serialized([3, 9]));
        // One record, as a bitmap.
        bad(10, 1, serialized([3]));
        // Unknown cookie.
        bad(10, 2, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // 65536 run containers declared in a handful of bytes: refused
        // before roaring allocates anything.
        let mut many = 0xffff_0000u32.wrapping_add(12347).to_le_bytes().to_vec();
        many.extend_from_slice(&[0xff; 12]);
        bad(10, 2, many);
        // A no-run header claiming 4 billion containers.
        let mut huge = 12346u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        bad(10, 2, huge);
        // Trailing garbage after a valid bitmap.
        let mut trailing = serialized([3, 4]);
        trailing.push(0);
        bad(10, 2, trailing);
        // Array values out of order: structure fine, values not.
        let mut unsorted = serialized([3, 4]);
        let len = unsorted.len();
        unsorted[len - 4..].copy_from_slice(&[4, 0, 3, 0]);
        bad(10, 2, unsorted);
        // A container offset that lies.
        let mut lying = serialized([3, 4]);
        lying[12] ^= 1;
        bad(10, 2, lying);
        // Zero containers.
        let mut none = 12346u32.to_le_bytes().to_vec();
        none.extend_from_slice(&0u32.to_le_bytes());
        bad(10, 2, none);
    }

    #[test]
    fn builder_errors() {
        let mut b = IndexBuilder::new(identity(2));
        let long = vec![0u8; MAX_TERM_LEN + 1];
        assert!(matches!(
            b.add_term(IndexField::Actor, &long, 0),
            Err(IndexError::TermTooLong {
                len: 1025,
                max: 1024,
                ..
            })
        ));
        b.add_term(IndexField::Actor, &long[..MAX_TERM_LEN], 0)
            .unwrap();
        assert!(matches!(
            b.add_term(IndexField::Actor, b"x", 2),
            Err(IndexError::OrdinalOutOfRange {
                ordinal: 2,
                record_count: 2,
                term_index: None,
                ..
            })
        ));
        for result in [
            b.add_hashed(IndexField::RequestId, b"x", 2),
            b.add_hashed_key(IndexField::RequestId, 5, 9),
            b.add_ip(IndexField::SourceIp, v4(1, 2, 3, 4), 2),
        ] {
            assert!(matches!(
                result,
                Err(IndexError::OrdinalOutOfRange {
                    record_count: 2,
                    ..
                })
            ));
        }
        let far: RoaringBitmap = [1, 7].into_iter().collect();
        assert!(matches!(
            b.insert_bitmap(IndexField::Actor, b"x", &far),
            Err(IndexError::OrdinalOutOfRange { ordinal: 7, .. })
        ));
        b.push_record(10, 0);
        assert!(matches!(
            b.encode(),
            Err(IndexError::RecordCountMismatch {
                expected: 2,
                found: 1
            })
        ));
        b.push_record(10, 0);
        assert!(matches!(
            b.encode(),
            Err(IndexError::OffsetsNotIncreasing { ordinal: 1, .. })
        ));
        assert!(matches!(
            b.set_columns(vec![1], vec![]),
            Err(IndexError::ColumnLengthMismatch {
                offsets: 1,
                event_times: 0
            })
        ));
        b.set_columns(vec![1, 2], vec![0, 0]).unwrap();
        assert_eq!(b.pushed_records(), 2);
        let bytes = b.encode().unwrap();
        let r = IndexReader::parse(&bytes).unwrap();
        assert_eq!(
            r.field(IndexField::Actor).unwrap().term(0).unwrap().len(),
            MAX_TERM_LEN
        );
        let mut too_many = IndexBuilder::new(identity(MAX_RECORDS + 1));
        too_many.push_record(0, 0);
        assert!(matches!(
            too_many.encode(),
            Err(IndexError::TooLarge { .. })
        ));
    }

    #[test]
    fn identity_is_checked() {
        let m = small_model();
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let mut other = m.identity;
        other.segment_footer_crc ^= 1;
        let err = r.check_identity(&other).unwrap_err();
        assert!(matches!(
            err,
            IndexError::IdentityMismatch {
                what: "segment footer CRC",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "index sidecar belongs to another segment: its segment footer CRC is 0xdeadbeef, \
             the segment's is 0xdeadbeee; rebuild the sidecar"
        );
        other = m.identity;
        other.store_id[0] ^= 1;
        assert!(matches!(
            r.check_identity(&other),
            Err(IndexError::IdentityMismatch {
                what: "store id",
                ..
            })
        ));
    }

    #[test]
    fn errors_name_the_place() {
        let bytes = small_model().encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let actor = r.sections().nth(2).unwrap();
        let mut damaged = bytes.clone();
        damaged[actor.offset as usize] ^= 1;
        let message = IndexReader::parse(&damaged).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "index sidecar checksum mismatch in the section #2 (term dictionary, field actor) \
                 (bytes {}..+{}): stored",
                actor.offset, actor.len
            )),
            "{message}"
        );
        let message = IndexReader::parse(&bytes[..100]).unwrap_err().to_string();
        assert_eq!(
            message,
            "index sidecar is truncated: the section table needs 216 bytes at offset 72, but only \
             28 are there; rebuild the sidecar"
        );
        assert_eq!(
            Region::Section {
                index: 4,
                kind: 3,
                field: 99
            }
            .to_string(),
            "section #4 (term dictionary, field id 99)"
        );
    }

    #[test]
    fn field_ids() {
        for (i, &field) in IndexField::ALL.iter().enumerate() {
            assert_eq!(field.id() as usize, i + 1);
            assert_eq!(IndexField::from_u16(field.id()), Some(field));
        }
        assert_eq!(IndexField::ALL.len(), KNOWN_FIELDS);
        assert_eq!(IndexField::from_u16(0), None);
        assert_eq!(IndexField::from_u16(9), Some(IndexField::ResourceId));
        assert_eq!(IndexField::from_u16(10), None);
        assert_eq!(IndexField::ResourceId.name(), "resource_id");
        assert_eq!(IndexField::ResourceType.name(), "resource_type");
        assert_eq!(IndexField::SourceIp.to_string(), "source_ip");
    }

    #[test]
    fn usage_example() {
        let identity = SegmentIdentity {
            record_count: 2,
            ..SegmentIdentity::default()
        };
        let mut builder = IndexBuilder::new(identity);
        builder.push_record(0, 1_700_000_000_000_000_000);
        builder.push_record(120, 1_700_000_000_000_000_500);
        builder.add_term(IndexField::Actor, b"alice", 0).unwrap();
        builder.add_term(IndexField::Actor, b"bob", 1).unwrap();
        builder
            .add_hashed(IndexField::RequestId, b"req-7f3a", 1)
            .unwrap();
        builder
            .add_ip(IndexField::SourceIp, "10.1.2.3".parse().unwrap(), 0)
            .unwrap();
        let bytes = builder.encode().unwrap();

        // A query opens the sidecar cheaply and checks, once, the sections
        // it uses.
        let reader = IndexReader::open(&bytes).unwrap();
        reader.check_identity(&identity).unwrap();
        let ids = reader
            .section_for(SectionKind::Hashed, IndexField::RequestId.id())
            .unwrap();
        reader.check_section(ids).unwrap();
        let requests = reader.hashed(IndexField::RequestId).unwrap();
        assert_eq!(requests.candidate_count(b"req-7f3a"), 1);
        assert_eq!(
            requests.candidates(b"req-7f3a").iter().collect::<Vec<_>>(),
            [1]
        );
        let ips = reader.section_for(SectionKind::Ip, IndexField::SourceIp.id());
        reader.check_section(ips.unwrap()).unwrap();
        let source = reader.ip(IndexField::SourceIp).unwrap();
        let private = source.cidr("10.0.0.0".parse().unwrap(), 8).unwrap();
        assert_eq!(private.iter().collect::<Vec<_>>(), [0]);
        for column in reader.column_sections() {
            reader.check_section(column).unwrap();
        }

        // Verification checks everything.
        let reader = IndexReader::parse(&bytes).unwrap();
        let actors = reader.field(IndexField::Actor).unwrap();
        let bob = actors.find(b"bob").unwrap();
        assert_eq!(actors.cardinality(bob), Some(1));
        assert_eq!(actors.bitmap(bob).unwrap().iter().collect::<Vec<_>>(), [1]);
        assert_eq!(reader.offset(1), Some(120));
        assert_eq!(
            reader
                .time_filter(1_700_000_000_000_000_100, i64::MAX)
                .len(),
            1
        );
    }

    #[test]
    fn term_keys_are_fnv1a_64() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(term_key(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(term_key(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(term_key(b"foobar"), 0x8594_4171_f739_67e8);
        const AT_COMPILE_TIME: u64 = term_key(b"a");
        assert_eq!(AT_COMPILE_TIME, fnv(b"a"));
        for term in [&b"req-0001"[..], &[0xff; 40], b"customer-123456"] {
            assert_eq!(term_key(term), fnv(term));
        }
    }

    #[test]
    fn colliding_terms_share_candidates() {
        let mut b = IndexBuilder::new(identity(6));
        b.set_columns((0..6).collect(), vec![0; 6]).unwrap();
        // Two terms with one key (as if their hashes collided), and a term
        // that has the key of another.
        b.add_hashed_key(IndexField::RequestId, 7, 4).unwrap();
        b.add_hashed_key(IndexField::RequestId, 7, 1).unwrap();
        b.add_hashed_key(IndexField::RequestId, 7, 1).unwrap();
        b.add_hashed(IndexField::RequestId, b"b", 2).unwrap();
        b.add_hashed_key(IndexField::RequestId, term_key(b"b"), 5)
            .unwrap();
        b.add_hashed_key(IndexField::RequestId, 8, 0).unwrap();
        let bytes = b.encode().unwrap();
        let r = IndexReader::parse(&bytes).unwrap();
        let h = r.hashed(IndexField::RequestId).unwrap();
        assert_eq!(h.len(), 5);
        let at = |key| h.candidates_for_key(key).iter().collect::<Vec<_>>();
        assert_eq!(at(7), [1, 4]);
        assert_eq!(at(8), [0]);
        assert_eq!(at(6), Vec::<u32>::new());
        assert_eq!(h.candidate_count_for_key(7), 2);
        assert_eq!(h.candidates(b"b").iter().collect::<Vec<_>>(), [2, 5]);
        assert_eq!(h.candidate_count(b"c"), 0);
    }

    #[test]
    fn large_hashed_indexes_find_every_key() {
        // Big enough for the interpolation steps, with keys spread evenly
        // (hashes), clustered, repeated, and at both ends of the range.
        let n = 20_000u32;
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let key_sets: [Vec<(u64, u32)>; 3] = [
            (0..n).map(|o| (fnv(&o.to_le_bytes()), o)).collect(),
            (0..n)
                .map(|o| match o % 5 {
                    0 => (0, o),
                    1 => (u64::MAX, o),
                    2 => (u64::from(o) * 3, o),
                    3 => (u64::MAX - u64::from(o % 50), o),
                    _ => (1 << 63 | u64::from(o % 7), o),
                })
                .collect(),
            (0..n)
                .map(|o| ((random() % 1000) * (u64::MAX / 1000), o))
                .collect(),
        ];
        for pairs in key_sets {
            let mut b = IndexBuilder::new(identity(u64::from(n)));
            b.set_columns((0..n).collect(), vec![0; n as usize])
                .unwrap();
            let mut naive: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
            for &(key, o) in &pairs {
                b.add_hashed_key(IndexField::RequestId, key, o).unwrap();
                naive.entry(key).or_default().insert(o);
            }
            let bytes = b.encode().unwrap();
            let r = IndexReader::parse(&bytes).unwrap();
            let h = r.hashed(IndexField::RequestId).unwrap();
            for (&key, want) in &naive {
                assert_eq!(h.candidates_for_key(key), *want, "key {key:#x}");
                assert_eq!(h.candidate_count_for_key(key), want.len());
                for miss in [key.wrapping_add(1), key.wrapping_sub(1)] {
                    let want = naive.get(&miss).map_or(0, |b| b.len());
                    assert_eq!(h.candidate_count_for_key(miss), want);
                }
            }
            for _ in 0..2_000 {
                let key = random();
                let want = naive.get(&key).map_or(0, |b| b.len());
                assert_eq!(h.candidate_count_for_key(key), want);
            }
        }
    }

    #[test]
    fn hashed_index_rules() {
        let check = |pairs: &[(u64, u32)], n: u32| -> Result<(), IndexError> {
            let bytes = file_with(n, KIND_HASHED, IndexField::RequestId, raw_hashed(pairs));
            let r = IndexReader::open(&bytes)?;
            exercise_unchecked(&r);
            let checked = r.check_section(2);
            assert_eq!(checked.is_ok(), IndexReader::parse(&bytes).is_ok());
            checked
        };
        check(&[(1, 2), (1, 3), (2, 0)], 4).unwrap();
        check(&[], 0).unwrap();
        let refused = |pairs: &[(u64, u32)], n: u32| {
            assert!(matches!(
                check(pairs, n),
                Err(IndexError::BadHashedIndex { .. })
            ));
        };
        refused(&[(2, 0), (1, 0)], 4);
        refused(&[(1, 3), (1, 2)], 4);
        refused(&[(1, 2), (1, 2)], 4);
        refused(&[(1, 4)], 4);
        let mut reserved = raw_hashed(&[(1, 2)]);
        reserved[4] = 1;
        let mut longer = raw_hashed(&[(1, 2)]);
        longer.push(0);
        let shorter = raw_hashed(&[(1, 2)])[..19].to_vec();
        for data in [reserved, longer, shorter, vec![1, 0, 0]] {
            let bytes = file_with(4, KIND_HASHED, IndexField::RequestId, data);
            let r = IndexReader::open(&bytes).unwrap();
            assert!(matches!(
                r.check_section(2),
                Err(IndexError::BadHashedIndex { .. })
            ));
            exercise_unchecked(&r);
        }
        // Unchecked and unsorted: wrong answers, but only ordinals in the
        // segment.
        let bytes = file_with(
            4,
            KIND_HASHED,
            IndexField::RequestId,
            raw_hashed(&[(5, 9), (5, 1), (1, 2)]),
        );
        let r = IndexReader::open(&bytes).unwrap();
        let h = r.hashed(IndexField::RequestId).unwrap();
        assert!(h.candidates_for_key(5).iter().all(|o| o < 4));
        // Large and unsorted: the interpolating search still ends.
        let pairs: Vec<(u64, u32)> = (0..5_000u32)
            .map(|i| (fnv(&i.to_le_bytes()) >> (i % 64), i % 7))
            .collect();
        let bytes = file_with(4, KIND_HASHED, IndexField::RequestId, raw_hashed(&pairs));
        let r = IndexReader::open(&bytes).unwrap();
        assert!(r.check_section(2).is_err());
        let h = r.hashed(IndexField::RequestId).unwrap();
        for i in 0..5_000u32 {
            let key = fnv(&i.to_be_bytes()) >> (i % 61);
            assert!(h.candidates_for_key(key).iter().all(|o| o < 4));
            assert!(h.candidate_count_for_key(key) <= 5_000);
        }
    }

    #[test]
    fn ip_index_rules() {
        let a = Ipv4Addr::new;
        let check = |v4s: &[(Ipv4Addr, u32)], v6s: &[(Ipv6Addr, u32)]| {
            let bytes = file_with(4, KIND_IP, IndexField::SourceIp, raw_ip(v4s, v6s));
            let r = IndexReader::open(&bytes).unwrap();
            exercise_unchecked(&r);
            let checked = r.check_section(2);
            assert_eq!(checked.is_ok(), IndexReader::parse(&bytes).is_ok());
            checked
        };
        let six = |bits: u128| Ipv6Addr::from(bits);
        check(
            &[
                (a(9, 255, 255, 255), 3),
                (a(10, 0, 0, 0), 1),
                (a(10, 0, 0, 0), 2),
            ],
            &[(six(1), 0), (six(0x2001 << 112), 0)],
        )
        .unwrap();
        let refused = |v4s: &[(Ipv4Addr, u32)], v6s: &[(Ipv6Addr, u32)]| {
            assert!(matches!(
                check(v4s, v6s),
                Err(IndexError::BadIpIndex { .. })
            ));
        };
        // Sorted by the address as a number, not by its stored bytes.
        refused(&[(a(10, 0, 0, 0), 0), (a(9, 255, 255, 255), 0)], &[]);
        refused(&[(a(10, 0, 0, 0), 1), (a(10, 0, 0, 0), 1)], &[]);
        refused(&[(a(10, 0, 0, 0), 4)], &[]);
        refused(&[], &[(six(2), 0), (six(1), 0)]);
        refused(&[], &[(six(1), 0), (six(1 << 120), 4)]);
        // IPv4-mapped addresses belong in the IPv4 array.
        refused(&[], &[(a(10, 0, 0, 1).to_ipv6_mapped(), 0)]);
        refused(&[], &[(six(0xffff_ffff_ffff), 0)]);
        check(
            &[],
            &[(six(0xfffe_ffff_ffff), 0), (six(0x1_0000_0000_0000), 1)],
        )
        .unwrap();
        let mut longer = raw_ip(&[(a(1, 2, 3, 4), 0)], &[]);
        longer.push(0);
        let mut more = raw_ip(&[(a(1, 2, 3, 4), 0)], &[]);
        more[4] = 1;
        for data in [longer, more, vec![0; 7]] {
            let bytes = file_with(4, KIND_IP, IndexField::SourceIp, data);
            let r = IndexReader::open(&bytes).unwrap();
            assert!(matches!(
                r.check_section(2),
                Err(IndexError::BadIpIndex { .. })
            ));
            exercise_unchecked(&r);
        }
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mut m = Model::new(vec![0; 4]);
        let mapped = |a, b, c, d| IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_mapped());
        m.add_ip(IndexField::SourceIp, mapped(10, 1, 2, 3), 0);
        m.add_ip(IndexField::SourceIp, v4(10, 1, 2, 3), 1);
        m.add_ip(IndexField::SourceIp, v4(192, 168, 0, 1), 2);
        m.add_ip(IndexField::SourceIp, v6(0x2001_0db8 << 96 | 5), 3);
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let ip = r.ip(IndexField::SourceIp).unwrap();
        assert_eq!((ip.len_v4(), ip.len_v6()), (3, 1));
        let list = |b: RoaringBitmap| b.iter().collect::<Vec<_>>();
        assert_eq!(list(ip.cidr(v4(10, 0, 0, 0), 8).unwrap()), [0, 1]);
        assert_eq!(list(ip.exact(v4(10, 1, 2, 3))), [0, 1]);
        assert_eq!(list(ip.exact(mapped(10, 1, 2, 3))), [0, 1]);
        assert_eq!(list(ip.cidr(mapped(10, 0, 0, 0), 104).unwrap()), [0, 1]);
        assert_eq!(list(ip.cidr(mapped(0, 0, 0, 0), 96).unwrap()), [0, 1, 2]);
        assert_eq!(list(ip.cidr(v6(0), 0).unwrap()), [0, 1, 2, 3]);
        assert_eq!(list(ip.cidr(v4(0, 0, 0, 0), 0).unwrap()), [0, 1, 2]);
        assert_eq!(list(ip.cidr(v6(0x2001_0db8 << 96), 32).unwrap()), [3]);
        assert_eq!(list(ip.cidr(v6(0x2001_0db8 << 96 | 5), 128).unwrap()), [3]);
        assert_eq!(list(ip.cidr(v4(192, 168, 0, 1), 32).unwrap()), [2]);
        assert_eq!(
            list(ip.cidr(v4(192, 168, 0, 2), 32).unwrap()),
            Vec::<u32>::new()
        );
        assert_eq!(ip.cidr_count(v4(10, 0, 0, 0), 8).unwrap(), 2);
        assert_eq!(ip.exact_count(mapped(192, 168, 0, 1)), 1);
        // Host bits of the query address are ignored.
        assert_eq!(list(ip.cidr(v4(10, 99, 99, 99), 8).unwrap()), [0, 1]);
        assert!(matches!(
            ip.cidr(v4(10, 0, 0, 0), 33),
            Err(IndexError::BadPrefixLength {
                prefix_len: 33,
                max: 32,
                ..
            })
        ));
        let err = ip.cidr(v6(0), 129).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CIDR prefix /129 is too long for IPv6: the longest is /128"
        );
    }

    #[test]
    fn open_reads_no_section() {
        let m = small_model();
        let bytes = m.encode();
        let parsed = IndexReader::parse(&bytes).unwrap();
        // Break the structure of every section behind valid CRCs: `open`
        // does not notice, `check_section` does, one section at a time.
        let mut broken = bytes.clone();
        for s in parsed.sections() {
            let at = s.offset as usize;
            match s.kind {
                // Frame offsets no longer increase.
                SectionKind::Offsets => broken[at + 4..at + 8].copy_from_slice(&[0; 4]),
                // The first count no longer matches the length.
                _ if s.len > 0 => broken[at] ^= 0x40,
                _ => {}
            }
        }
        reseal(&mut broken);
        assert!(IndexReader::parse(&broken).is_err());
        let r = IndexReader::open(&broken).unwrap();
        exercise_unchecked(&r);
        for (i, s) in parsed.sections().enumerate() {
            let result = r.check_section(i);
            if s.kind == SectionKind::EventTimes || s.len == 0 {
                result.unwrap();
            } else {
                assert!(result.is_err(), "section {i} ({:?}) passed", s.kind);
            }
        }
        // Damaged sections read as empty or wrong, never out of bounds.
        assert!(r.field(IndexField::Actor).unwrap().is_empty());
        assert!(r.hashed(IndexField::RequestId).unwrap().is_empty());
        assert!(r.ip(IndexField::SourceIp).unwrap().is_empty());
        assert_eq!(r.column_sections(), [0, 1]);
    }

    #[test]
    fn reader_is_a_small_view() {
        // Re-created per query: it must stay cheap to make and to copy.
        assert!(std::mem::size_of::<IndexReader<'_>>() <= 640);
    }
}
