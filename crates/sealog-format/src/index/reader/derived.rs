//! The sections a sidecar derives from its other sections (block checksums
//! and term filters), checked against what those sections give.
//!
//! A sidecar's content (its columns, dictionaries, hashed and IP indexes)
//! has exactly one encoding (docs/format.md, "Canonical encoding"). What
//! [`IndexReader::parse`] leaves open, beyond that content itself and the
//! form of each term's bitmap, is here: the header length, sections of
//! kinds this version never writes, and which derived sections the file
//! has and what they hold. A verifier that has checked the content against
//! the segment's records, the bitmaps' form, and this, knows the file is
//! byte for byte the one the records give, without encoding it again.

use super::IndexReader;
use crate::index::bytes::sub;
use crate::index::columns::encode_block_crcs;
use crate::index::dictionary::TermDict;
use crate::index::field::IndexField;
use crate::index::filter::encode_filter;
use crate::index::layout::{
    COLUMN_BLOCK_LEN, HEADER_LEN, HEADER_LEN_AT, KIND_COLUMN_BLOCKS, KIND_DICT_BLOCKS,
    KIND_HASHED_BLOCKS, KIND_TERM_FILTER, SectionKind, TERM_FILTER_FROM,
};

/// Which kinds of derived section an encoding has: sidecars written by
/// earlier versions lack some (docs/format.md, "Canonical encoding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DerivedKinds {
    /// Block checksums of the columns longer than one block (kind 6).
    pub column_blocks: bool,
    /// Block checksums of the hashed indexes longer than one block (kind 7).
    pub hashed_blocks: bool,
    /// Term filters of the dictionaries longer than
    /// [`TERM_FILTER_FROM`] bytes (kind 8).
    pub term_filters: bool,
    /// Block checksums of the dictionaries longer than one block (kind 9).
    pub dict_blocks: bool,
}

impl IndexReader<'_> {
    /// Checks that the file's header is as long as the writer makes it, that
    /// it has no section of a kind this version does not write, and that
    /// its derived sections are exactly those that its columns, hashed
    /// indexes and dictionaries give in the layout `kinds`: the same
    /// sections, with the same bytes. The sections it reads are assumed
    /// checked ([`parse`](Self::parse)); the error says, in words, what
    /// differs.
    pub fn check_derived(&self, kinds: DerivedKinds) -> Result<(), String> {
        let header_len = self
            .bytes
            .get(HEADER_LEN_AT..)
            .and_then(|rest| rest.first_chunk::<2>())
            .map_or(0, |b| u16::from_le_bytes(*b));
        if usize::from(header_len) != HEADER_LEN {
            return Err(format!(
                "its header is {header_len} bytes long, where the writer's is {HEADER_LEN}"
            ));
        }
        let block_len = COLUMN_BLOCK_LEN as usize;
        let record_count = self.identity.record_count;
        let crcs = |data: &[u8]| {
            let mut out = Vec::with_capacity(8 + data.len().div_ceil(block_len) * 4);
            encode_block_crcs(&mut out, data, COLUMN_BLOCK_LEN);
            out
        };
        // (kind, field, bytes) of every derived section the others give.
        let mut expected: Vec<(u16, u16, Vec<u8>)> = Vec::new();
        for s in self.sections() {
            let data = sub(self.bytes, s.offset, s.len).unwrap_or_default();
            let long = data.len() > block_len;
            match s.kind {
                SectionKind::Offsets | SectionKind::EventTimes if kinds.column_blocks && long => {
                    expected.push((KIND_COLUMN_BLOCKS, s.kind.to_u16(), crcs(data)));
                }
                SectionKind::Hashed if kinds.hashed_blocks && long => {
                    expected.push((KIND_HASHED_BLOCKS, s.field, crcs(data)));
                }
                SectionKind::TermDict => {
                    if kinds.term_filters && data.len() > TERM_FILTER_FROM {
                        let Some(field) = IndexField::from_u16(s.field) else {
                            return Err(format!(
                                "it has a dictionary of field id {}, which no writer of this \
                                 version writes",
                                s.field
                            ));
                        };
                        let dict = TermDict::view(data, field, record_count);
                        let mut filter = Vec::new();
                        encode_filter(&mut filter, dict.iter().map(|entry| entry.term));
                        expected.push((KIND_TERM_FILTER, s.field, filter));
                    }
                    if kinds.dict_blocks && long {
                        expected.push((KIND_DICT_BLOCKS, s.field, crcs(data)));
                    }
                }
                SectionKind::Unknown(kind) => {
                    return Err(format!(
                        "it has a section of kind {kind}, which no writer of this version writes"
                    ));
                }
                _ => {}
            }
        }
        expected.sort_by_key(|(kind, field, _)| (*kind, *field));
        let mut actual = self.sections().filter(|s| {
            matches!(
                s.kind,
                SectionKind::ColumnBlocks
                    | SectionKind::HashedBlocks
                    | SectionKind::TermFilter
                    | SectionKind::DictBlocks
            )
        });
        for (kind, field, bytes) in &expected {
            let name = SectionKind::from_u16(*kind);
            let Some(s) = actual.next() else {
                return Err(format!("it lacks the {name} of field id {field}"));
            };
            if (s.kind.to_u16(), s.field) != (*kind, *field) {
                return Err(format!(
                    "it has the {} of field id {} where the {name} of field id {field} belongs",
                    s.kind, s.field
                ));
            }
            if sub(self.bytes, s.offset, s.len) != Some(bytes.as_slice()) {
                return Err(format!(
                    "its {name} of field id {field} (offset {}) differs from what the section \
                     it describes gives",
                    s.offset
                ));
            }
        }
        if let Some(s) = actual.next() {
            return Err(format!(
                "it has a {} of field id {} that the layout does not give",
                s.kind, s.field
            ));
        }
        Ok(())
    }
}
