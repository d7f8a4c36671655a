//! The errors of the sidecar module, and the regions of a file they name.
//!
//! One enum, [`IndexError`], covers encoding, parsing and reading. Every
//! variant about damage says where it is (header, section table, or which
//! section, with byte offsets) and that the cure is to rebuild the sidecar
//! from its segment: a sidecar holds derived data only.

use std::fmt;

use super::field::IndexField;
use super::layout::{HEADER_LEN, MAX_HEADER_LEN, SectionKind};

/// The part of a sidecar an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Region {
    /// The fixed header.
    Header,
    /// The section table.
    SectionTable,
    /// Block `block` (0-based) of a column whose section has block
    /// checksums.
    ColumnBlock {
        /// The column's section kind (1 or 2).
        kind: u16,
        /// The block's number.
        block: u64,
    },
    /// Block `block` (0-based) of a hashed index whose section has block
    /// checksums.
    HashedBlock {
        /// The hashed index's field id.
        field: u16,
        /// The block's number.
        block: u64,
    },
    /// Block `block` (0-based) of a term dictionary whose section has
    /// block checksums.
    DictBlock {
        /// The dictionary's field id.
        field: u16,
        /// The block's number.
        block: u64,
    },
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
            Region::ColumnBlock { kind, block } => {
                write!(f, "block #{block} of the {}", SectionKind::from_u16(kind))
            }
            Region::HashedBlock { field, block } => {
                write!(f, "block #{block} of the hashed index of ")?;
                match IndexField::from_u16(field) {
                    Some(known) => write!(f, "field {known}"),
                    None => write!(f, "field id {field}"),
                }
            }
            Region::DictBlock { field, block } => {
                write!(f, "block #{block} of the term dictionary of ")?;
                match IndexField::from_u16(field) {
                    Some(known) => write!(f, "field {known}"),
                    None => write!(f, "field id {field}"),
                }
            }
            Region::Section { index, kind, field } => {
                let kind = SectionKind::from_u16(kind);
                write!(f, "section #{index} ({kind}")?;
                let per_field = matches!(
                    kind,
                    SectionKind::TermDict | SectionKind::Hashed | SectionKind::Ip
                );
                let per_field = per_field
                    || kind == SectionKind::HashedBlocks
                    || kind == SectionKind::TermFilter
                    || kind == SectionKind::DictBlocks;
                if kind == SectionKind::ColumnBlocks {
                    write!(f, " of the {}", SectionKind::from_u16(field))?;
                } else if per_field || field != 0 {
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
    /// The file does not start with [`MAGIC`](super::MAGIC).
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

    /// A column's block checksums do not describe the column.
    #[error(
        "index sidecar block checksums of the {column} are malformed: {reason}; rebuild the sidecar"
    )]
    BadColumnBlocks {
        /// Which column.
        column: SectionKind,
        /// What is wrong.
        reason: String,
    },

    /// The block checksums of a hashed index are malformed, or a checked
    /// block of it is not what its index needs.
    #[error(
        "index sidecar block checksums of the hashed index of field {field} are malformed: \
         {reason}; rebuild the sidecar"
    )]
    BadHashedBlocks {
        /// The hashed index's field.
        field: IndexField,
        /// What is wrong.
        reason: String,
    },

    /// The block checksums of a term dictionary are malformed, or a checked
    /// block of it is not what its index needs.
    #[error(
        "index sidecar block checksums of the term dictionary of field {field} are malformed: \
         {reason}; rebuild the sidecar"
    )]
    BadDictBlocks {
        /// The term dictionary's field.
        field: IndexField,
        /// What is wrong.
        reason: String,
    },

    /// A term filter is malformed.
    #[error(
        "index sidecar term filter of field {field} is malformed: {reason}; rebuild the sidecar"
    )]
    BadTermFilter {
        /// The filter's dictionary field.
        field: IndexField,
        /// What is wrong.
        reason: String,
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

    /// A term is longer than [`MAX_TERM_LEN`](super::MAX_TERM_LEN).
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

#[cfg(test)]
mod tests {
    use crate::index::testing::*;
    use crate::index::*;

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
}
