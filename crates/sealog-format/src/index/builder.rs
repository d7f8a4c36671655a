//! [`IndexBuilder`]: collects a segment's columns, terms, hashes and
//! addresses, then encodes its sidecar.
//!
//! The builder checks what it is given as it is given (term lengths,
//! ordinals below the record count) and lays the file out: header, section
//! table, then each section at the next multiple of [`SECTION_ALIGN`], in
//! (kind, field) order. Each section kind encodes itself: the columns in
//! [`super::columns`], dictionaries in [`super::postings`], hashed indexes
//! in [`super::hashed`], IP indexes in [`super::ip`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use roaring::RoaringBitmap;

use super::bytes::{crc32, patch, to_u64};
use super::columns::{
    check_offsets_increasing, encode_block_crcs, encode_event_times, encode_offsets,
};
use super::dictionary::TermDict;
use super::error::IndexError;
use super::field::IndexField;
use super::filter::encode_filter;
use super::hashed::{encode_sorted_hashed, hashed_section_len, sorted_pairs, term_key};
use super::header::{RawHeader, RawSection, SegmentIdentity};
use super::ip::IpPostings;
use super::layout::{
    COLUMN_BLOCK_LEN, EVENT_TIME_WIDTH, FILTER_HASH_LEN, FILTER_HEADER_LEN, HEADER_LEN,
    KIND_COLUMN_BLOCKS, KIND_DICT_BLOCKS, KIND_EVENT_TIMES, KIND_HASHED, KIND_HASHED_BLOCKS,
    KIND_IP, KIND_OFFSETS, KIND_TERM_DICT, KIND_TERM_FILTER, MAX_RECORDS, OFFSET_WIDTH,
    SECTION_ALIGN, SECTION_ENTRY_LEN, TERM_FILTER_FROM,
};
use super::postings::{Postings, check_term};

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
    column_blocks: bool,
    hashed_blocks: bool,
    term_filters: bool,
    dict_blocks: bool,
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
            column_blocks: true,
            hashed_blocks: true,
            term_filters: true,
            dict_blocks: true,
        }
    }

    /// Whether to write block checksums for the columns longer than one
    /// block ([`COLUMN_BLOCK_LEN`]); on by default. Off gives the layout of
    /// sidecars written before block checksums existed, which verification
    /// needs to compare such a file byte for byte.
    pub fn set_column_blocks(&mut self, write: bool) {
        self.column_blocks = write;
    }

    /// Whether to write block checksums for the hashed indexes longer than
    /// one block ([`COLUMN_BLOCK_LEN`]); on by default. Off gives the
    /// layout of sidecars written before they existed.
    pub fn set_hashed_blocks(&mut self, write: bool) {
        self.hashed_blocks = write;
    }

    /// Whether to write a term filter for each term dictionary longer than
    /// [`TERM_FILTER_FROM`] bytes; on by default. Off gives the layout of
    /// sidecars written before term filters existed.
    pub fn set_term_filters(&mut self, write: bool) {
        self.term_filters = write;
    }

    /// Whether to write block checksums for the term dictionaries longer
    /// than one block ([`COLUMN_BLOCK_LEN`]); on by default. Off gives the
    /// layout of sidecars written before they existed.
    pub fn set_dict_blocks(&mut self, write: bool) {
        self.dict_blocks = write;
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
        self.fields.entry(field).or_default().add(term, ordinal)
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
        self.fields
            .entry(field)
            .or_default()
            .add_bitmap(term, ordinals)
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
        self.fields
            .entry(field)
            .or_default()
            .add_pairs(terms, pairs)
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

    /// [`IndexBuilder::add_hashed_key`] for every (`key`, `ordinal`) pair
    /// of `pairs`, with room for them made once. Nothing is added if an
    /// ordinal is out of range.
    pub fn add_hashed_keys(
        &mut self,
        field: IndexField,
        pairs: &[(u64, u32)],
    ) -> Result<(), IndexError> {
        for &(_, ordinal) in pairs {
            self.check_ordinal(field, ordinal)?;
        }
        self.hashed
            .entry(field)
            .or_default()
            .extend_from_slice(pairs);
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
        self.ips.entry(field).or_default().add(addr, ordinal);
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

        let offsets_len = self.offsets.len() * OFFSET_WIDTH;
        let times_len = self.event_times.len() * EVENT_TIME_WIDTH;
        let block_len = COLUMN_BLOCK_LEN as usize;
        let blocked = [
            (KIND_OFFSETS, self.column_blocks && offsets_len > block_len),
            (
                KIND_EVENT_TIMES,
                self.column_blocks && times_len > block_len,
            ),
        ];
        // Hashed indexes sorted first: their lengths decide which get block
        // checksums, and so the number of sections.
        let hashed: Vec<SortedHashed> = self
            .hashed
            .iter()
            .map(|(&field, pairs)| {
                let sorted = sorted_pairs(pairs);
                let blocked = self.hashed_blocks && hashed_section_len(sorted.len()) > block_len;
                (field, sorted, blocked)
            })
            .collect();
        // Dictionaries encoded first: their lengths decide which get a
        // term filter, and so the number of sections.
        let mut dicts = Vec::with_capacity(self.fields.len());
        for (&field, postings) in &self.fields {
            let mut bytes = Vec::new();
            postings.encode(&mut bytes, field)?;
            let filtered = self.term_filters && bytes.len() > TERM_FILTER_FROM;
            let blocked = self.dict_blocks && bytes.len() > block_len;
            dicts.push((field, bytes, filtered, blocked));
        }
        let section_count = 2
            + dicts.iter().filter(|(_, _, f, _)| *f).count()
            + dicts.iter().filter(|(_, _, _, b)| *b).count()
            + self.fields.len()
            + self.hashed.len()
            + self.ips.len()
            + blocked.iter().filter(|(_, b)| *b).count()
            + hashed.iter().filter(|(_, _, b)| *b).count();
        let table_start = HEADER_LEN;
        let table_end = table_start + section_count * SECTION_ENTRY_LEN;
        // The whole file's room first: a file of ~12 MB grown by doubling
        // is copied to fresh pages (which the kernel zeroes) several times
        // over (9.6% of a full verification's CPU went to growing vectors).
        let crcs = |len: usize| 8 + len.div_ceil(block_len) * 4;
        let filters: usize = dicts
            .iter()
            .filter(|(_, _, filtered, _)| *filtered)
            .map(|(field, bytes, ..)| {
                FILTER_HEADER_LEN
                    + TermDict::view(bytes, *field, record_count).len() * FILTER_HASH_LEN
            })
            .sum();
        let room = table_end
            + section_count * SECTION_ALIGN as usize
            + offsets_len
            + times_len
            + 2 * crcs(offsets_len.max(times_len))
            + dicts
                .iter()
                .map(|(_, bytes, ..)| bytes.len() + crcs(bytes.len()))
                .sum::<usize>()
            + filters
            + hashed
                .iter()
                .map(|(_, sorted, _)| {
                    let len = hashed_section_len(sorted.len());
                    len + crcs(len)
                })
                .sum::<usize>()
            + self
                .ips
                .values()
                .map(IpPostings::len_at_most)
                .sum::<usize>();
        let mut out = Vec::with_capacity(room);
        out.resize(table_end, 0);
        let mut table = Vec::with_capacity(section_count);

        // Offsets column.
        let offsets_at = begin_section(&mut out);
        encode_offsets(&mut out, &self.offsets);
        table.push(end_section(&out, KIND_OFFSETS, 0, offsets_at));

        // Event-time column.
        let times_at = begin_section(&mut out);
        encode_event_times(&mut out, &self.event_times);
        table.push(end_section(&out, KIND_EVENT_TIMES, 0, times_at));

        // Term dictionaries, in field id order (the BTreeMap's order).
        let mut dicts_at = Vec::with_capacity(dicts.len());
        for (field, bytes, _, _) in &dicts {
            let start = begin_section(&mut out);
            out.extend_from_slice(bytes);
            table.push(end_section(&out, KIND_TERM_DICT, field.id(), start));
            dicts_at.push(start);
        }

        // Hashed indexes, then IP indexes: kinds 4 and 5 sort after 3.
        let mut hashed_at = Vec::with_capacity(hashed.len());
        for (field, sorted, blocked) in &hashed {
            let start = begin_section(&mut out);
            encode_sorted_hashed(&mut out, sorted)?;
            table.push(end_section(&out, KIND_HASHED, field.id(), start));
            hashed_at.push((*field, *blocked, start, out.len() - start));
        }
        for (&field, postings) in &self.ips {
            let start = begin_section(&mut out);
            postings.encode(&mut out)?;
            table.push(end_section(&out, KIND_IP, field.id(), start));
        }

        // Block checksums of the columns: kind 6, after the indexes.
        for ((kind, write), (at, len)) in blocked
            .into_iter()
            .zip([(offsets_at, offsets_len), (times_at, times_len)])
        {
            if write {
                // The checksums first (a few hundred bytes), from the column
                // in place, then appended: no copy of the column.
                let mut crcs = Vec::new();
                let column = out.get(at..at + len).unwrap_or_default();
                encode_block_crcs(&mut crcs, column, COLUMN_BLOCK_LEN);
                let start = begin_section(&mut out);
                out.extend_from_slice(&crcs);
                table.push(end_section(&out, KIND_COLUMN_BLOCKS, kind, start));
            }
        }

        // Block checksums of the hashed indexes: kind 7, in field order.
        for (field, blocked, at, len) in hashed_at {
            if blocked {
                let mut crcs = Vec::new();
                let section = out.get(at..at + len).unwrap_or_default();
                encode_block_crcs(&mut crcs, section, COLUMN_BLOCK_LEN);
                let start = begin_section(&mut out);
                out.extend_from_slice(&crcs);
                table.push(end_section(&out, KIND_HASHED_BLOCKS, field.id(), start));
            }
        }

        // Term filters: kind 8, in field order.
        for (field, bytes, filtered, _) in &dicts {
            if *filtered {
                let dict = TermDict::view(bytes, *field, record_count);
                let start = begin_section(&mut out);
                encode_filter(&mut out, dict.iter().map(|entry| entry.term));
                table.push(end_section(&out, KIND_TERM_FILTER, field.id(), start));
            }
        }

        // Block checksums of the term dictionaries: kind 9, in field order.
        for ((field, bytes, _, blocked), at) in dicts.iter().zip(dicts_at) {
            if *blocked {
                let mut crcs = Vec::new();
                let section = out.get(at..at + bytes.len()).unwrap_or_default();
                encode_block_crcs(&mut crcs, section, COLUMN_BLOCK_LEN);
                let start = begin_section(&mut out);
                out.extend_from_slice(&crcs);
                table.push(end_section(&out, KIND_DICT_BLOCKS, field.id(), start));
            }
        }

        let mut table_bytes = Vec::with_capacity(section_count * SECTION_ENTRY_LEN);
        for entry in &table {
            table_bytes.extend_from_slice(&entry.encode());
        }
        patch(&mut out, table_start, &table_bytes);

        let header = RawHeader::new(
            self.identity,
            u32::try_from(section_count).unwrap_or(u32::MAX),
            crc32(&table_bytes),
        );
        patch(&mut out, 0, &header.encode());
        debug_assert!(
            out.len() <= room,
            "the room reserved, {room} bytes, is short of the file's {}",
            out.len()
        );
        Ok(out)
    }
}

/// A hashed index ready to encode: its field, its sorted unique (key,
/// ordinal) pairs, and whether it gets block checksums.
type SortedHashed = (IndexField, Vec<(u64, u32)>, bool);

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

#[cfg(test)]
mod tests {
    use crate::index::testing::*;
    use crate::index::*;
    use roaring::RoaringBitmap;

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
}
