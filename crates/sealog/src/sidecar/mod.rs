//! Index sidecars: the index of a sealed segment, in `segments/<seq>.idx`.
//!
//! The sealer writes a segment's sidecar right after its footer, from the
//! in-memory index the segment built while open. A query maps the file and
//! checks each section (checksum and structure) once, the first time it
//! needs it, so the first query over hundreds of segments touches only what
//! it uses. A sidecar that is missing, damaged, or describes another segment
//! (it records the store id, segment number, first seq, record count and the
//! footer's CRC) is rebuilt from the records and the rebuild is logged;
//! nothing is ever lost with an index. Verification never trusts one: it
//! checks that the file is the sidecar each segment's records give (by its
//! content, `verify::content`; where that finds a difference, by encoding
//! the records' sidecar, [`encode_records`], and comparing bytes,
//! [`describe_difference`]). Encoding lives in [`encode`]; reading,
//! checking and rebuilding a mapped sidecar here.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use roaring::RoaringBitmap;
use sealog_format::index::{IndexError, IndexField, IndexReader, SectionKind, SegmentIdentity};
use sealog_format::segment::{SegmentFooter, SegmentHeader};

use crate::error::{Error, Result};
use crate::fs::{OpenMode, Vfs};
use crate::index::{DictField, ExactField, IndexView, TermSelect};
use crate::mmap::Mapped;
use crate::query::IpRange;

mod encode;

pub use encode::SidecarLayout;
#[cfg(test)]
pub(crate) use encode::{RecordIndexer, encode_in_layout};
pub(crate) use encode::{
    describe_difference, encode_mem, encode_records, encode_records_as, write,
};

/// How much smaller than the set a term's bitmap must be for a count to
/// look its ordinals up in the set one by one instead of intersecting. A
/// lookup costs tens of times a step of the intersection's merge: at 100M
/// events, 7 ordinals against 6,500 (an actor's denied events in a
/// segment) count 3x faster by lookup, 2,200 against 43,000 (a tenant's
/// exports) 1.5x slower.
const SPARSE_TERM_FACTOR: u64 = 64;

/// Where sidecars live and whether they may be (re)written.
#[derive(Debug)]
pub(crate) struct IndexEnv {
    pub fs: Arc<dyn Vfs>,
    pub dir: PathBuf,
    pub writable: bool,
    pub rebuilds: std::sync::atomic::AtomicU64,
    /// The store, to latch when a rebuilt sidecar cannot be written (set
    /// once the store exists; a weak link, the store owns this).
    pub store: OnceLock<std::sync::Weak<crate::store::Inner>>,
    /// The store's key filters (`key-filters`), which a search asks
    /// before it opens a sealed segment's sidecar.
    pub key_filters: crate::key_filter::KeyFilters,
    /// Blocks of compressed segments decompressed lately, shared by the
    /// store's segments.
    pub blocks: crate::compressed::BlockCache,
}

/// The sidecar file name of the segment starting at `first_seq`.
pub(crate) fn sidecar_name(first_seq: u64) -> String {
    format!("{}/{first_seq:020}.idx", crate::layout::SEGMENTS)
}

pub(crate) fn identity(header: &SegmentHeader, footer: &SegmentFooter) -> SegmentIdentity {
    SegmentIdentity {
        store_id: header.store_id,
        segment_no: header.segment_no,
        first_seq: header.first_seq,
        record_count: footer.record_count,
        segment_footer_crc: footer.crc(),
    }
}

pub(crate) fn dict_field(f: DictField) -> IndexField {
    match f {
        DictField::Actor => IndexField::Actor,
        DictField::Action => IndexField::Action,
        DictField::ResourceType => IndexField::ResourceType,
        DictField::Outcome => IndexField::Outcome,
        DictField::Tenant => IndexField::Tenant,
    }
}

pub(crate) fn exact_field(f: ExactField) -> IndexField {
    match f {
        ExactField::RequestId => IndexField::RequestId,
        ExactField::ResourceId => IndexField::ResourceId,
    }
}

/// A mapped sidecar whose sections are checked on first use.
#[derive(Debug)]
pub(crate) struct Sidecar {
    name: String,
    map: Mapped,
    /// Per section, once checked for lookups (a term dictionary's bitmaps
    /// are checked one by one as they are decoded).
    checked: Vec<OnceLock<std::result::Result<(), IndexError>>>,
    /// Per section, once every bitmap of a term dictionary is checked
    /// against its entry: before counts are taken from the entries alone.
    bitmaps_checked: Vec<OnceLock<std::result::Result<(), IndexError>>>,
    /// Whether the column sections were advised already (once is enough).
    columns_advised: std::sync::atomic::AtomicBool,
    /// Per column (offsets, event times), once its block checksums are
    /// checked: one bit per block, set when the block has been checked.
    /// `None` when the file has no block checksums for the column (written
    /// before they existed, or a column of one block) or they are damaged:
    /// then the whole column is checked at first use, as it always was.
    blocks: [OnceLock<Option<Vec<AtomicU64>>>; 2],
    /// The same for the hashed indexes (`ExactField::ALL` order), with
    /// block checksums (kind 7) or not.
    hashed_blocks: [OnceLock<Option<Vec<AtomicU64>>>; 2],
    /// The same for the term dictionaries (`DictField::ALL` order), with
    /// block checksums (kind 9) or not.
    dict_blocks: [OnceLock<Option<Vec<AtomicU64>>>; 5],
    /// One bit per field id: whether the search advice found that
    /// dictionary in memory already (see [`Sidecar::advise_sections`]).
    dicts_advised: std::sync::atomic::AtomicU32,
    /// For each dictionary whose directory alone the search advice asks
    /// for, and whose lookups' bitmaps are asked for next: one bit per
    /// field id in each of three lanes ([`LOOKUP_DUE`], [`LOOKUP_WANTED`]
    /// shift the pending bit). See [`Sidecar::advise_lookups`].
    lookups: std::sync::atomic::AtomicU32,
    /// One bit per section (the first 64): the search advice asked for
    /// the section, whole, at least once.
    sections_asked: AtomicU64,
    /// One bit per section (the first 64): the search advice, asking
    /// again, found the section in memory, and does not look at it again
    /// ([`Sidecar::should_ask`]).
    sections_settled: AtomicU64,
}

/// Whether the kernel was asked for the column blocks
/// [`Sidecar::ensure_values`] checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Not yet: it asks for them.
    No,
    /// Already (by the search's read-ahead): it does not again.
    Already,
}

/// The byte ranges of a hashed index (at `offset`, `len` bytes long) that
/// a lookup of `key` most likely reads: the header and first keys, the
/// last keys (an interpolation search compares both ends first), and a
/// page either side of the key's and its ordinal's expected position
/// (keys are spread evenly over the 64-bit range: a search lands within a
/// few hundred entries of `count × key / 2^64`). A guess for the kernel
/// only: the lookup reads and checks whatever blocks it needs.
fn hashed_probe_ranges(offset: u64, len: u64, key: u64) -> Vec<(u64, u64)> {
    const PAGE: u64 = 4096;
    let end = offset.saturating_add(len);
    let count = len.saturating_sub(8) / 12;
    if count == 0 {
        return vec![(offset, end)];
    }
    // Below `end`: 8 + 12 × count ≤ len.
    let key_at = |i: u64| offset + 8 + 8 * i;
    let ordinal_at = |i: u64| offset + 8 + 8 * count + 4 * i;
    let expected = u64::try_from((u128::from(key) * u128::from(count)) >> 64).unwrap_or(0);
    let around = |at: u64| {
        (
            at.saturating_sub(PAGE).max(offset),
            at.saturating_add(PAGE).min(end),
        )
    };
    vec![
        (offset, offset.saturating_add(PAGE).min(end)),
        around(key_at(count - 1)),
        around(key_at(expected)),
        around(ordinal_at(expected)),
    ]
}

/// Pages of a dictionary looked at to tell whether it is in memory.
const RESIDENT_SAMPLES: u64 = 8;

/// Bytes [`crate::mmap::Mapped::resident`] looks at page by page, at most
/// (64 pages); a larger section is sampled ([`RESIDENT_SAMPLES`] pages).
const MAX_RESIDENT_ASKED: u64 = 64 * 4096;

/// The first bytes of a dictionary not in memory that a search asks for
/// before reading its header, when the file has no term filter to size
/// the directory by (sidecars written before filters): the directory
/// (header, term entries, term heap) of a dictionary of up to ~2,000 terms.
const DIRECTORY_ASKED: u64 = 64 * 1024;

/// Bytes of term heap assumed per term when a dictionary's directory is
/// sized from its term filter ([`directory_asked`]): an actor, action or
/// tenant of up to 24 bytes on average.
const TERM_BYTES_ASSUMED: u64 = 24;

/// Bytes of bitmaps past a directory longer than was asked for, up to
/// which they are asked for with the rest of it (the lookups' bitmaps
/// cannot be found before the directory is read).
const BITMAPS_WITH_DIRECTORY: u64 = 256 * 1024;

/// The lanes of [`Sidecar`]'s `lookups` state, each one bit per field id
/// (ids are below 10): pending (the lane at 0: the directory is being
/// asked for), due (it was asked for: the lookups may be), wanted (a
/// lookup came while it was still pending).
const LOOKUP_PENDING: u32 = (1 << 10) - 1;
const LOOKUP_DUE: u32 = 10;
const LOOKUP_WANTED: u32 = 20;

/// The bit of `field` in each lane of the lookups state.
fn field_bit(field: IndexField) -> u32 {
    1 << (field as u32 % 10)
}

/// The bits of `field_bit` in all three lanes.
fn lookup_lanes(bit: u32) -> u32 {
    bit | bit << LOOKUP_DUE | bit << LOOKUP_WANTED
}

/// The set bits of `mask`, each on its own.
fn bits(mask: u32) -> impl Iterator<Item = u32> {
    (0..32).map(|i| 1u32 << i).filter(move |b| mask & b != 0)
}

/// How many of the first bytes of the dictionary of `field` (`dict_len`
/// bytes long) a search asks for before reading its header: its directory
/// as sized by the term filter, which holds one 4-byte hash per term
/// (16 header bytes, a 20-byte entry and [`TERM_BYTES_ASSUMED`] heap
/// bytes a term), or [`DIRECTORY_ASKED`] without a filter. A fixed
/// 64 KiB asked for the 3 KB directory of a 100-term dictionary read 20
/// times the bytes, and a cold search's disk waited for them.
fn directory_asked(reader: &IndexReader<'_>, field: IndexField, dict_len: u64) -> u64 {
    let sized = reader
        .term_filter_section(field)
        .and_then(|i| reader.section(i))
        .map(|filter| {
            let terms = filter.len.saturating_sub(8) / 4;
            terms
                .saturating_mul(20 + TERM_BYTES_ASSUMED)
                .saturating_add(16)
        });
    sized.unwrap_or(DIRECTORY_ASKED).min(dict_len)
}

/// The word of a set of block bits that holds `block`, and its bit there.
fn block_bit(bits: &[AtomicU64], block: u64) -> Option<(&AtomicU64, u64)> {
    Some((
        bits.get(usize::try_from(block / 64).ok()?)?,
        1 << (block % 64),
    ))
}

/// The two columns, in the order of [`IndexReader::column_sections`].
const COLUMNS: [SectionKind; 2] = [SectionKind::Offsets, SectionKind::EventTimes];
/// Index of the offsets column in [`COLUMNS`].
const OFFSETS: usize = 0;
/// Index of the event-time column in [`COLUMNS`].
const EVENT_TIMES: usize = 1;

/// `ranges` (start, end) sorted, with those at most `gap` bytes apart
/// (or overlapping) joined.
fn merge_ranges(mut ranges: Vec<(u64, u64)>, gap: u64) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(gap) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Bytes between two advised ranges of a sidecar below which they are
/// asked for in one call (a few pages: cheaper to read than a system call
/// is to make, when they are not in the page cache already).
const ADVISE_GAP: u64 = 16 << 10;

impl Sidecar {
    /// Whether every page of the sidecar's file is in memory now.
    pub(crate) fn in_memory(&self) -> bool {
        self.map.resident_whole()
    }

    /// Opens a sidecar and checks it describes `identity` (cheap: header and
    /// section table only).
    pub(crate) fn open(
        name: String,
        map: Mapped,
        identity: &SegmentIdentity,
    ) -> std::result::Result<Sidecar, IndexError> {
        let reader = IndexReader::open(&map)?;
        reader.check_identity(identity)?;
        let sections = reader.section_count();
        Ok(Sidecar {
            name,
            checked: (0..sections).map(|_| OnceLock::new()).collect(),
            bitmaps_checked: (0..sections).map(|_| OnceLock::new()).collect(),
            columns_advised: std::sync::atomic::AtomicBool::new(false),
            blocks: [OnceLock::new(), OnceLock::new()],
            hashed_blocks: [OnceLock::new(), OnceLock::new()],
            dict_blocks: std::array::from_fn(|_| OnceLock::new()),
            dicts_advised: std::sync::atomic::AtomicU32::new(0),
            lookups: std::sync::atomic::AtomicU32::new(0),
            sections_asked: AtomicU64::new(0),
            sections_settled: AtomicU64::new(0),
            map,
        })
    }

    /// The key-filter entry of the segment `identity` from this sidecar,
    /// checked whole first (every CRC): a damaged dictionary would leave
    /// terms out of the filter.
    pub(crate) fn key_filter_entry(&self, identity: &SegmentIdentity) -> Result<Vec<u8>> {
        let reader = IndexReader::parse(&self.map).map_err(|e| self.damaged(e))?;
        let builder = sealog_format::keyfilter::KeyFilterBuilder::from_sidecar(&reader)
            .map_err(|e| self.damaged(e))?;
        Ok(builder.encode(identity))
    }

    fn reader(&self) -> Result<IndexReader<'_>> {
        IndexReader::open(&self.map).map_err(|e| self.damaged(e))
    }

    fn damaged(&self, e: IndexError) -> Error {
        Error::IndexDamaged {
            file: self.name.clone(),
            reason: e.to_string(),
        }
    }

    /// Checks a section once, for lookups: its CRC and structure, but not
    /// each bitmap of a term dictionary, which is checked when decoded (a
    /// lookup of a term a segment lacks, the common case of a search over
    /// many segments, then costs no walk of the dictionary's bitmaps).
    fn ensure(&self, reader: &IndexReader<'_>, section: Option<usize>) -> Result<()> {
        let Some(i) = section else {
            return Ok(());
        };
        let Some(cell) = self.checked.get(i) else {
            return Ok(());
        };
        match cell.get_or_init(|| {
            // The check reads the whole section: ask for all of it at once
            // rather than fault it in a read-ahead window at a time.
            if let Some(section) = reader.section(i) {
                self.map.will_need(
                    usize::try_from(section.offset).unwrap_or(usize::MAX),
                    usize::try_from(section.len).unwrap_or(usize::MAX),
                );
            }
            reader.check_section_for_lookup(i)
        }) {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::IndexDamaged {
                file: self.name.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Checks every bitmap of a term dictionary section (once), after
    /// [`Sidecar::ensure`]: the entries' cardinalities then hold.
    fn ensure_bitmaps(&self, reader: &IndexReader<'_>, section: Option<usize>) -> Result<()> {
        self.ensure(reader, section)?;
        let Some((i, cell)) = section.and_then(|i| Some((i, self.bitmaps_checked.get(i)?))) else {
            return Ok(());
        };
        match cell.get_or_init(|| reader.check_section_bitmaps(i)) {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::IndexDamaged {
                file: self.name.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Asks the kernel to read the column sections (frame offsets, event
    /// times) not checked yet, without waiting or checking: a page about
    /// to read several segments' columns has them read together instead
    /// of one segment after the other. A column with block checksums is
    /// left alone: a page reads only the blocks it needs, and asks for
    /// them together then. Only advice: nothing fails.
    pub(crate) fn advise_columns(&self) {
        if self
            .columns_advised
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let Ok(reader) = self.reader() else {
            return;
        };
        for (column, i) in COLUMNS.into_iter().zip(reader.column_sections()) {
            let unchecked = self.unchecked(i);
            let blocked = reader.column_blocks_section(column).is_some();
            if unchecked
                && !blocked
                && let Some(section) = reader.section(i)
            {
                self.map.will_need(
                    usize::try_from(section.offset).unwrap_or(usize::MAX),
                    usize::try_from(section.len).unwrap_or(usize::MAX),
                );
            }
        }
    }

    /// Asks the kernel to read the blocks of the offsets column that hold
    /// the values of `ordinals` and are not checked yet, without waiting or
    /// checking (a column without block checksums is left to
    /// [`Sidecar::advise_columns`]). Only advice: nothing fails.
    pub(crate) fn advise_offsets(&self, ordinals: &[u32]) {
        let Ok(reader) = self.reader() else {
            return;
        };
        let section = reader.column_sections()[OFFSETS];
        if self.checked.get(section).is_some_and(|c| c.get().is_some()) {
            return;
        }
        self.advise_block_checksums(&reader);
        let mut last = None;
        for &ordinal in ordinals {
            if let Some((block, start, len)) = reader.column_block_of(SectionKind::Offsets, ordinal)
                && last != Some(block)
            {
                last = Some(block);
                if !self.block_done(OFFSETS, block) {
                    self.advise(start, len);
                }
            }
        }
    }

    /// Asks the kernel to read the index sections `sections` (those the
    /// file has and that are not checked yet), without waiting or
    /// checking: a search about to plan several segments has their
    /// sections read together. Only advice: nothing fails.
    pub(crate) fn advise_sections(&self, sections: &[crate::search::SectionUse]) {
        let (ranges, lookups) = self.advice_ranges(sections);
        self.advise_merged(ranges);
        // Only now are those dictionaries' lookups due: their advice reads
        // the directory, and a read of it before it is asked for faults
        // the page in at once, with the kernel's read-around of the pages
        // about it (4 MiB of a 12 MB sidecar on a disk whose read-ahead is
        // 8 MiB). A search planning on both cores may ask for one
        // segment's lookups while the other core is still here: that
        // lookup left its bit wanted, and they are asked for now.
        let wanted = self.publish_due(lookups);
        if wanted != 0 {
            self.ask_lookups(sections, wanted);
        }
    }

    /// Marks due the lookups of the dictionaries `lookups` (one bit per
    /// field id), whose directories were just asked for, and returns those
    /// a lookup wanted already (their state cleared: the caller asks for
    /// them). A dictionary no longer pending is left as it is: another
    /// advice of the same sections, on another thread, came first and its
    /// lookups were asked for since, and a "due" left behind would let a
    /// later lookup read the directory before a later advice asks for it.
    fn publish_due(&self, lookups: u32) -> u32 {
        let mut wanted = 0;
        for bit in bits(lookups) {
            let Ok(before) =
                self.lookups
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                        (state & bit != 0).then_some(state | bit << LOOKUP_DUE)
                    })
            else {
                continue;
            };
            if before & (bit << LOOKUP_WANTED) != 0 {
                self.lookups.fetch_and(!lookup_lanes(bit), Ordering::AcqRel);
                wanted |= bit;
            }
        }
        wanted
    }

    /// Whether section `i` is one of the file's and was not checked yet.
    fn unchecked(&self, i: usize) -> bool {
        self.checked.get(i).is_some_and(|c| c.get().is_none())
    }

    /// The byte ranges [`Sidecar::advise_sections`] asks for, unmerged,
    /// and the dictionaries (one bit per field id) whose directories alone
    /// they ask for, whose lookups [`Sidecar::advise_lookups`] asks for
    /// once these ranges are.
    fn advice_ranges(&self, sections: &[crate::search::SectionUse]) -> (Vec<(u64, u64)>, u32) {
        use crate::search::SectionUse;
        let Ok(reader) = self.reader() else {
            return (Vec::new(), 0);
        };
        let mut lookups = 0;
        // Gathered, then asked for in as few calls as they allow: the
        // small sections a lookup reads first (term filters, block
        // checksums) lie together at the end of the file, and a search
        // advises every segment it plans.
        let mut ranges = Vec::new();
        for used in sections {
            let (kind, field, terms, exact) = match used {
                SectionUse::Dict(f, terms) => {
                    (SectionKind::TermDict, dict_field(*f), terms.as_ref(), None)
                }
                SectionUse::Exact(f, term) => {
                    (SectionKind::Hashed, exact_field(*f), None, Some(term))
                }
                SectionUse::Ip => (SectionKind::Ip, IndexField::SourceIp, None, None),
            };
            // A hashed index with block checksums is read a few blocks at a
            // time: ask for its checksums, not for the whole index; the same
            // for a dictionary looked up for exact terms.
            let by_blocks = match kind {
                SectionKind::Hashed => reader.hashed_blocks_section(field),
                SectionKind::TermDict if terms.is_some() => reader.dict_blocks_section(field),
                _ => None,
            };
            // A dictionary's term filter is read first (a lookup of a term
            // the segment lacks reads nothing else).
            if kind == SectionKind::TermDict
                && let Some(filter) = reader.term_filter_section(field)
            {
                // A filter in memory already (checked, or in the page
                // cache) is asked now: a dictionary it rules out is not
                // asked for (advice over a large dictionary costs the
                // kernel a page-cache lookup per page even when every page
                // is there). A filter still on disk is asked for with the
                // dictionary, both read at once.
                let at_hand = self.checked.get(filter).is_some_and(|c| c.get().is_some())
                    || reader
                        .section(filter)
                        .is_some_and(|s| self.map.resident(s.offset, s.len));
                if at_hand
                    && terms.is_some_and(|terms| {
                        terms.iter().all(|t| self.filter_lacks(&reader, field, t))
                    })
                {
                    continue;
                }
                // Only a lookup of exact terms reads the filter.
                if !at_hand
                    && terms.is_some()
                    && self.unchecked(filter)
                    && let Some(section) = reader.section(filter)
                    && self.should_ask(filter, section.offset, section.len)
                {
                    ranges.push((section.offset, section.offset + section.len));
                }
            }
            let whole = reader.section_for(kind, field as u16);
            // A hashed index read by blocks: the blocks its search will
            // most likely read, asked for together (one at a time, each a
            // wait for the disk when the index is not in memory).
            if let Some(term) = exact
                && by_blocks.is_some()
                && let Some(index) = whole
                    .filter(|&i| self.unchecked(i))
                    .and_then(|i| reader.section(i))
            {
                let key = sealog_format::index::term_key(term);
                let probes = hashed_probe_ranges(index.offset, index.len, key);
                // In memory (by the page the key most likely is in), there
                // is nothing to ask for.
                if probes
                    .get(2)
                    .is_none_or(|&(start, end)| !self.map.resident(start, end - start))
                {
                    ranges.extend(probes);
                }
            }
            // A dictionary read by blocks that is not all in memory (by a
            // sample of its pages): its first bytes, the directory (header,
            // entries and terms) as [`directory_asked`] sizes it, are
            // asked for, with its checksums, and the bitmaps its lookups
            // find are asked for by `advise_lookups` once the directory is
            // read (or the rest of a longer one): a lookup's binary search reads a dozen
            // blocks spread over the directory, which the disk serves
            // together far sooner than one fault at a time, and the
            // bitmaps of other terms (most of a dictionary's bytes) are
            // not read at all. In memory, only the checksums are asked
            // for. Until it is found in memory: after that it is not
            // looked at again (pages evicted since are faulted in as they
            // are read). One asked for and read is looked at again by the
            // next lookup: pages read ahead but never touched are dropped
            // first.
            let bit = field_bit(field);
            if kind == SectionKind::TermDict
                && by_blocks.is_some()
                && self.dicts_advised.load(Ordering::Relaxed) & bit == 0
                && let Some(dict) = whole
                    .filter(|&i| self.unchecked(i))
                    .and_then(|i| reader.section(i))
            {
                if self
                    .map
                    .resident_sampled(dict.offset, dict.len, RESIDENT_SAMPLES)
                {
                    self.dicts_advised.fetch_or(bit, Ordering::Relaxed);
                } else {
                    // Where the directory ends is in the dictionary's
                    // header, not read yet: its first bytes are asked for.
                    let asked = directory_asked(&reader, field, dict.len);
                    ranges.push((dict.offset, dict.offset + asked));
                    lookups |= bit;
                    self.lookups.fetch_or(bit, Ordering::AcqRel);
                }
            }
            let Some(i) = by_blocks.or(whole) else {
                continue;
            };
            if self.unchecked(i)
                && let Some(section) = reader.section(i)
                && self.should_ask(i, section.offset, section.len)
            {
                ranges.push((section.offset, section.offset + section.len));
            }
        }
        self.block_checksum_ranges(&reader, &mut ranges);
        (ranges, lookups)
    }

    /// Whether the search advice asks for section `i` (`len` bytes at
    /// `offset`), not checked yet, whole. The first time it does. After that
    /// only while the section is not in memory: found there once, it is not
    /// looked at again (pages evicted since are faulted in as they are
    /// read). A search plans a few segments beyond those it reads, and a
    /// server's page that the newest segments fill never reads theirs: they
    /// stay unchecked, and each query used to ask for them again (nine
    /// system calls a query in the one-actor row with 4 MiB segments).
    fn should_ask(&self, i: usize, offset: u64, len: u64) -> bool {
        let Some(bit) = u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i)) else {
            return true;
        };
        if self.sections_settled.load(Ordering::Relaxed) & bit != 0 {
            return false;
        }
        if self.sections_asked.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            return true;
        }
        let resident = self.map.resident(offset, len)
            || (len > MAX_RESIDENT_ASKED
                && self.map.resident_sampled(offset, len, RESIDENT_SAMPLES));
        if resident {
            self.sections_settled.fetch_or(bit, Ordering::Relaxed);
        }
        !resident
    }

    /// After [`Sidecar::advise_sections`] asked for a dictionary's
    /// directory alone: finds, in the directory (waiting for it to be
    /// read), the bitmaps of the terms `sections` look up, and asks for
    /// them, without waiting or checking (a damaged directory gives wrong
    /// advice; the lookup that follows checks what it reads). Asks for
    /// each dictionary once. Only advice: nothing fails.
    ///
    /// A dictionary's lookups are asked for once its directory has been
    /// asked for: if that advice is still being given (on another
    /// thread), this marks them wanted and returns, and
    /// [`Sidecar::advise_sections`] asks for them when it is done. Of the
    /// two, the one that comes second asks.
    pub(crate) fn advise_lookups(&self, sections: &[crate::search::SectionUse]) {
        use crate::search::SectionUse;
        let state = self.lookups.load(Ordering::Acquire);
        if state & LOOKUP_PENDING == 0 {
            return;
        }
        let mut due = 0;
        for used in sections {
            let SectionUse::Dict(f, Some(_)) = used else {
                continue;
            };
            let bit = field_bit(dict_field(*f));
            if state & bit == 0 {
                continue;
            }
            let before = self
                .lookups
                .fetch_or(bit << LOOKUP_WANTED, Ordering::AcqRel);
            if before & (bit << LOOKUP_DUE) != 0 {
                self.lookups.fetch_and(!lookup_lanes(bit), Ordering::AcqRel);
                due |= bit;
            }
        }
        if due != 0 {
            self.ask_lookups(sections, due);
        }
    }

    /// Asks for the lookups of the dictionaries `due` (one bit per field
    /// id) of `sections`: see [`Sidecar::advise_lookups`].
    fn ask_lookups(&self, sections: &[crate::search::SectionUse], due: u32) {
        use crate::search::SectionUse;
        let Ok(reader) = self.reader() else {
            return;
        };
        let mut ranges = Vec::new();
        for used in sections {
            let SectionUse::Dict(f, Some(terms)) = used else {
                continue;
            };
            let field = dict_field(*f);
            if due & field_bit(field) == 0 {
                continue;
            }
            let (Some((start, directory_end)), Some(dict)) = (
                reader.dict_directory(field),
                reader
                    .section_for(SectionKind::TermDict, field as u16)
                    .and_then(|i| reader.section(i)),
            ) else {
                continue;
            };
            // A directory longer than what was asked for (terms longer
            // than assumed): the rest of it, and the bitmaps after it when
            // they are few (its lookups would wait for the directory
            // before finding them).
            // (A damaged header may say the directory ends past the
            // dictionary: this is only advice, kept inside it.)
            let end = dict.offset + dict.len;
            let directory_end = directory_end.min(end);
            let asked = start + directory_asked(&reader, field, dict.len);
            if directory_end > asked {
                let end = if end - directory_end <= BITMAPS_WITH_DIRECTORY {
                    end
                } else {
                    directory_end
                };
                ranges.push((asked, end));
                continue;
            }
            let mut read = Vec::new();
            for term in terms {
                reader.dict_lookup_ranges(field, term, &mut read);
            }
            // The directory was asked for already.
            ranges.extend(read.into_iter().filter(|&(_, end)| end > directory_end));
        }
        self.advise_merged(ranges);
    }

    /// Advises `ranges` (start, end), one call per run of ranges less than
    /// [`ADVISE_GAP`] apart (the pages between them are asked for too).
    fn advise_merged(&self, ranges: Vec<(u64, u64)>) {
        for (start, end) in merge_ranges(ranges, ADVISE_GAP) {
            self.advise(start, end - start);
        }
    }

    /// Asks for the columns' block-checksum sections not checked yet (a
    /// few hundred bytes each, at the end of the file), which the first
    /// block read of each column checks before the block.
    fn advise_block_checksums(&self, reader: &IndexReader<'_>) {
        let mut ranges = Vec::new();
        self.block_checksum_ranges(reader, &mut ranges);
        self.advise_merged(ranges);
    }

    /// The byte ranges of [`Sidecar::advise_block_checksums`].
    fn block_checksum_ranges(&self, reader: &IndexReader<'_>, ranges: &mut Vec<(u64, u64)>) {
        for column in COLUMNS {
            if let Some(i) = reader.column_blocks_section(column)
                && self.unchecked(i)
                && let Some(section) = reader.section(i)
                && self.should_ask(i, section.offset, section.len)
            {
                ranges.push((section.offset, section.offset + section.len));
            }
        }
    }

    /// Whether [`Sidecar::advise_columns`] ran already.
    pub(crate) fn columns_advised(&self) -> bool {
        self.columns_advised
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the values of `COLUMNS[column]` at `ordinals` safe to read:
    /// checks the blocks that hold them and were not checked yet, asking
    /// the kernel for all of them at once (unless `asked` says that was
    /// done); or the whole column, the first time, when it has no block
    /// checksums or the blocks wanted are more than half of them. A
    /// damaged block is an error, as a damaged column is (the caller
    /// rebuilds the index).
    fn ensure_values(
        &self,
        reader: &IndexReader<'_>,
        column: usize,
        ordinals: impl Iterator<Item = u32>,
        asked: Asked,
    ) -> Result<()> {
        let (Some(&kind), Some(&section)) =
            (COLUMNS.get(column), reader.column_sections().get(column))
        else {
            return Ok(());
        };
        if self.checked.get(section).is_some_and(|c| c.get().is_some()) {
            return self.ensure(reader, Some(section)); // the remembered result
        }
        let bits = self.blocks.get(column).and_then(|cell| {
            cell.get_or_init(|| {
                let crcs = reader.column_blocks_section(kind)?;
                self.ensure(reader, Some(crcs)).ok()?;
                let n = reader.column_block_count(kind);
                Some((0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
            })
            .as_ref()
        });
        let Some(bits) = bits else {
            return self.ensure(reader, Some(section));
        };
        let mut wanted: Vec<(u64, u64, u64)> = Vec::new();
        for ordinal in ordinals {
            if let Some(block) = reader.column_block_of(kind, ordinal)
                && !self.block_done(column, block.0)
                && wanted.last().is_none_or(|last| last.0 != block.0)
            {
                wanted.push(block);
            }
        }
        wanted.sort_unstable();
        wanted.dedup_by_key(|b| b.0);
        if wanted.is_empty() {
            return Ok(());
        }
        if (wanted.len() as u64).saturating_mul(2) > reader.column_block_count(kind) {
            return self.ensure(reader, Some(section));
        }
        // One request per run of adjacent blocks, all before the first
        // check waits for the disk; blocks asked for already are not asked
        // for again. (One block is asked for too: a fault on a page not in
        // memory would have the kernel read around it, as much as the
        // device's read-ahead, 8 MiB on some.)
        if asked == Asked::No {
            let ranges = wanted.iter().map(|&(_, start, len)| (start, start + len));
            for (start, end) in merge_ranges(ranges.collect(), 0) {
                self.advise(start, end - start);
            }
        }
        for (block, ..) in wanted {
            reader
                .check_column_block(kind, block)
                .map_err(|e| self.damaged(e))?;
            if let Some((word, bit)) = block_bit(bits, block) {
                word.fetch_or(bit, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Whether the term filter of `field`'s dictionary says the segment
    /// lacks `term`: then a lookup needs neither the dictionary nor its
    /// check. `false` when there is no filter, its check fails (the
    /// dictionary answers, as without one), or it may have the term.
    fn filter_lacks(&self, reader: &IndexReader<'_>, field: IndexField, term: &[u8]) -> bool {
        let Some(section) = reader.term_filter_section(field) else {
            return false;
        };
        // Only an absence is trusted, so only an absence needs the filter
        // checked: "may have it" sends the lookup to the dictionary, which
        // is checked on its own, whatever the filter's bytes. (Checking
        // first cost a 36 KB CRC per segment in a count of one actor
        // present in every segment.)
        if reader
            .term_filter(field)
            .is_none_or(|filter| filter.may_contain(term))
        {
            return false;
        }
        self.ensure(reader, Some(section)).is_ok()
    }

    /// The candidates of `value` from a hashed index with block checksums,
    /// checking only the blocks the lookup reads (each once): a search for
    /// a request id in a large segment reads a few 4 KiB blocks of its
    /// index instead of checking all of it. `None` when the index has no
    /// usable block checksums (none written, their section damaged) or was
    /// checked whole already: the caller checks and reads the whole
    /// section. A damaged block is an error (the caller rebuilds).
    fn exact_by_blocks(
        &self,
        reader: &IndexReader<'_>,
        field: ExactField,
        value: &[u8],
    ) -> Result<Option<RoaringBitmap>> {
        let f = exact_field(field);
        let slot = ExactField::ALL.iter().position(|&x| x == field);
        self.by_blocks(
            reader,
            reader.section_for(SectionKind::Hashed, f as u16),
            slot.and_then(|slot| self.hashed_blocks.get(slot)),
            || {
                Some((
                    reader.hashed_blocks_section(f)?,
                    reader.hashed_block_count(f),
                ))
            },
            &|block| reader.check_hashed_block(f, block),
            |check| reader.hashed_candidates_checked(f, value, check),
        )
    }

    /// The records with `term` in the dictionary of `field`, checking only
    /// the blocks the lookup reads (each once), as
    /// [`Sidecar::exact_by_blocks`] does for a hashed index.
    fn dict_by_blocks(
        &self,
        reader: &IndexReader<'_>,
        field: DictField,
        term: &[u8],
    ) -> Result<Option<RoaringBitmap>> {
        let f = dict_field(field);
        let slot = DictField::ALL.iter().position(|&x| x == field);
        self.by_blocks(
            reader,
            reader.section_for(SectionKind::TermDict, f as u16),
            slot.and_then(|slot| self.dict_blocks.get(slot)),
            || Some((reader.dict_blocks_section(f)?, reader.dict_block_count(f))),
            &|block| reader.check_dict_block(f, block),
            |check| reader.dict_term_checked(f, term, check),
        )
    }

    /// A lookup in section `whole` by its blocks: `bits` remembers the
    /// blocks checked (made at first use from `crcs`, the block-checksum
    /// section and its block count, once that section passes its check),
    /// `check_block` checks one, and `lookup` runs with a check that calls
    /// it once per block. `None` when the section was checked whole
    /// already or has no usable block checksums.
    fn by_blocks(
        &self,
        reader: &IndexReader<'_>,
        whole: Option<usize>,
        bits: Option<&OnceLock<Option<Vec<AtomicU64>>>>,
        crcs: impl FnOnce() -> Option<(usize, u64)>,
        check_block: &dyn Fn(u64) -> std::result::Result<(), IndexError>,
        lookup: impl FnOnce(
            &mut dyn FnMut(u64) -> std::result::Result<(), IndexError>,
        ) -> std::result::Result<Option<RoaringBitmap>, IndexError>,
    ) -> Result<Option<RoaringBitmap>> {
        if whole.is_some_and(|i| self.checked.get(i).is_some_and(|c| c.get().is_some())) {
            return Ok(None);
        }
        let Some(bits) = bits.and_then(|cell| {
            cell.get_or_init(|| {
                let (section, n) = crcs()?;
                self.ensure(reader, Some(section)).ok()?;
                Some((0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
            })
            .as_ref()
        }) else {
            return Ok(None);
        };
        let mut check = |block: u64| -> std::result::Result<(), IndexError> {
            let Some((word, bit)) = block_bit(bits, block) else {
                return check_block(block);
            };
            if word.load(Ordering::Relaxed) & bit == 0 {
                check_block(block)?;
                word.fetch_or(bit, Ordering::Relaxed);
            }
            Ok(())
        };
        lookup(&mut check).map_err(|e| self.damaged(e))
    }

    /// Whether block `block` of `COLUMNS[column]` has been checked.
    fn block_done(&self, column: usize, block: u64) -> bool {
        self.blocks
            .get(column)
            .and_then(OnceLock::get)
            .and_then(Option::as_ref)
            .and_then(|bits| block_bit(bits, block))
            .is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
    }

    fn advise(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.map.will_need(
            usize::try_from(offset).unwrap_or(usize::MAX),
            usize::try_from(len).unwrap_or(usize::MAX),
        );
    }

    /// The frame offset of record `ordinal`.
    pub(crate) fn offset(&self, ordinal: u32) -> Result<Option<u32>> {
        let reader = self.reader()?;
        self.ensure_values(&reader, OFFSETS, std::iter::once(ordinal), Asked::No)?;
        Ok(reader.offset(ordinal))
    }

    /// The frame offsets of `ordinals` (those the column has), with one
    /// reader and the blocks they need checked together. The blocks are
    /// not asked for: a search asks for them ([`Sidecar::advise_offsets`])
    /// as it takes the ordinals ahead, moments before.
    pub(crate) fn offsets(&self, ordinals: &[u32]) -> Result<Vec<u32>> {
        let reader = self.reader()?;
        self.ensure_values(&reader, OFFSETS, ordinals.iter().copied(), Asked::Already)?;
        Ok(ordinals.iter().filter_map(|&o| reader.offset(o)).collect())
    }
}

impl IndexView for Sidecar {
    fn len(&self) -> u64 {
        self.reader().map_or(0, |r| r.record_count())
    }

    fn dict(&self, field: DictField, select: &TermSelect<'_>) -> Result<RoaringBitmap> {
        let reader = self.reader()?;
        let which = field;
        let field = dict_field(field);
        if let TermSelect::Exact(term) = select {
            if self.filter_lacks(&reader, field, term) {
                return Ok(RoaringBitmap::new());
            }
            if let Some(found) = self.dict_by_blocks(&reader, which, term)? {
                return Ok(found);
            }
        }
        self.ensure(
            &reader,
            reader.section_for(SectionKind::TermDict, field as u16),
        )?;
        let Some(dict) = reader.field(field) else {
            return Ok(everything(&reader)); // not indexed: no narrowing
        };
        let damaged = |e| self.damaged(e);
        match select {
            TermSelect::Exact(term) => match dict.find(term) {
                Some(i) => dict.bitmap(i).map_err(damaged),
                None => Ok(RoaringBitmap::new()),
            },
            TermSelect::Prefix(prefix) => dict.union(dict.prefix(prefix)).map_err(damaged),
            TermSelect::Matching { prefix, matches } => {
                let mut out = RoaringBitmap::new();
                for entry in dict.iter_range(dict.prefix(prefix)) {
                    if matches(entry.term) {
                        out |= dict.bitmap(entry.index).map_err(damaged)?;
                    }
                }
                Ok(out)
            }
        }
    }

    fn exact(&self, field: ExactField, value: &[u8]) -> Result<RoaringBitmap> {
        let reader = self.reader()?;
        if let Some(found) = self.exact_by_blocks(&reader, field, value)? {
            return Ok(found);
        }
        let field = exact_field(field);
        self.ensure(
            &reader,
            reader.section_for(SectionKind::Hashed, field as u16),
        )?;
        Ok(reader
            .hashed(field)
            .map_or_else(|| everything(&reader), |h| h.candidates(value)))
    }

    fn ip(&self, range: IpRange) -> Result<RoaringBitmap> {
        let reader = self.reader()?;
        self.ensure(
            &reader,
            reader.section_for(SectionKind::Ip, IndexField::SourceIp as u16),
        )?;
        let Some(ip) = reader.ip(IndexField::SourceIp) else {
            return Ok(everything(&reader));
        };
        Ok(match range {
            IpRange::V4(lo, hi) => ip.range_v4(lo, hi),
            IpRange::V6(lo, hi) => ip.range_v6(lo, hi),
        })
    }

    fn event_time(&self, ordinal: u32) -> Result<Option<i64>> {
        let reader = self.reader()?;
        self.ensure_values(&reader, EVENT_TIMES, std::iter::once(ordinal), Asked::No)?;
        Ok(reader.event_time(ordinal))
    }

    fn dict_counts(&self, field: DictField, within: &RoaringBitmap) -> Result<Vec<(Vec<u8>, u64)>> {
        let reader = self.reader()?;
        let index_field = dict_field(field);
        // Counts of the whole segment are the entries' cardinalities.
        self.ensure_bitmaps(
            &reader,
            reader.section_for(SectionKind::TermDict, index_field as u16),
        )?;
        let Some(dict) = reader.field(index_field) else {
            // Counting needs the field's terms: rebuilding gives them.
            return Err(Error::IndexDamaged {
                file: self.name.clone(),
                reason: format!("it has no dictionary of field `{index_field}`"),
            });
        };
        let damaged = |e| self.damaged(e);
        // Every record of the segment: the term entries' cardinalities are
        // the counts, no bitmap need be decoded.
        let whole = within.len() == reader.record_count();
        let mut out = Vec::new();
        for entry in dict.iter() {
            let n = if whole {
                entry.cardinality
            } else if let Some(ordinal) = dict.inline_ordinal(entry.index) {
                u64::from(within.contains(ordinal))
            } else {
                let bitmap = dict.bitmap(entry.index).map_err(damaged)?;
                // A term far rarer than the set: a lookup of each of its
                // ordinals beats walking the set (roaring's intersection
                // merges sorted arrays, linear in the larger one).
                if bitmap.len().saturating_mul(SPARSE_TERM_FACTOR) < within.len() {
                    bitmap.iter().filter(|o| within.contains(*o)).count() as u64
                } else {
                    bitmap.intersection_len(within)
                }
            };
            if n > 0 {
                out.push((entry.term.to_vec(), n));
            }
        }
        Ok(out)
    }

    fn ip_counts(&self, within: &RoaringBitmap) -> Result<Vec<(IpAddr, u64)>> {
        let reader = self.reader()?;
        self.ensure(
            &reader,
            reader.section_for(SectionKind::Ip, IndexField::SourceIp as u16),
        )?;
        let Some(ip) = reader.ip(IndexField::SourceIp) else {
            return Err(Error::IndexDamaged {
                file: self.name.clone(),
                reason: "it has no index of field `source_ip`".into(),
            });
        };
        // Entries come in address order: equal addresses are neighbours.
        let mut out: Vec<(IpAddr, u64)> = Vec::new();
        let v4 = ip.entries_v4().map(|(a, o)| (IpAddr::V4(a), o));
        let v6 = ip.entries_v6().map(|(a, o)| (IpAddr::V6(a), o));
        for (addr, ordinal) in v4.chain(v6) {
            if !within.contains(ordinal) {
                continue;
            }
            match out.last_mut() {
                Some((last, n)) if *last == addr => *n += 1,
                _ => out.push((addr, 1)),
            }
        }
        Ok(out)
    }

    fn event_times(&self, set: &RoaringBitmap) -> Result<Vec<(i64, u32)>> {
        // One reader and one check of the blocks the set needs.
        let reader = self.reader()?;
        self.ensure_values(&reader, EVENT_TIMES, set.iter(), Asked::No)?;
        let mut out = Vec::with_capacity(usize::try_from(set.len()).unwrap_or(0));
        for ordinal in set {
            let time = reader
                .event_time(ordinal)
                .ok_or_else(|| Error::IndexDamaged {
                    file: self.name.clone(),
                    reason: format!(
                        "the event-time column has no entry for ordinal {ordinal} of {}",
                        reader.record_count()
                    ),
                })?;
            out.push((time, ordinal));
        }
        Ok(out)
    }

    fn time_filter(
        &self,
        from: i64,
        to: i64,
        within: Option<&RoaringBitmap>,
    ) -> Result<RoaringBitmap> {
        // A damaged column is an error, so that the caller rebuilds the
        // index: an empty set here would silently drop the segment's
        // matches.
        let reader = self.reader()?;
        Ok(match within {
            Some(set) => {
                self.ensure_values(&reader, EVENT_TIMES, set.iter(), Asked::No)?;
                reader.time_filter_in(from, to, set)
            }
            None => {
                let column = reader.column_sections()[EVENT_TIMES];
                self.ensure(&reader, Some(column))?;
                reader.time_filter(from, to)
            }
        })
    }
}

/// Every ordinal: the candidates for a field the sidecar does not index
/// (the executor then checks each record).
fn everything(reader: &IndexReader<'_>) -> RoaringBitmap {
    let mut all = RoaringBitmap::new();
    all.insert_range(0..u32::try_from(reader.record_count()).unwrap_or(u32::MAX));
    all
}

/// The key-filter entry of the segment `identity` from `bytes`, a sidecar
/// just encoded (read in place, not checked again); `None` if they do not
/// read as one (not reached: then the sidecar's own install fails too).
pub(crate) fn key_filter_entry_of(identity: &SegmentIdentity, bytes: &[u8]) -> Option<Vec<u8>> {
    let reader = IndexReader::open(bytes).ok()?;
    let builder = sealog_format::keyfilter::KeyFilterBuilder::from_sidecar(&reader).ok()?;
    Some(builder.encode(identity))
}

/// Maps an existing sidecar if it is sound and describes the segment.
pub(crate) fn load(
    env: &IndexEnv,
    first_seq: u64,
    identity: &SegmentIdentity,
) -> std::result::Result<Sidecar, String> {
    load_mapped(first_seq, map_file(env, first_seq)?, identity)
}

/// [`load`] of a sidecar file mapped already (by [`map_file`]).
pub(crate) fn load_mapped(
    first_seq: u64,
    map: Mapped,
    identity: &SegmentIdentity,
) -> std::result::Result<Sidecar, String> {
    Sidecar::open(sidecar_name(first_seq), map, identity).map_err(|e| e.to_string())
}

/// The sidecar file of the segment starting at `first_seq`, mapped and
/// not read yet.
pub(crate) fn map_file(env: &IndexEnv, first_seq: u64) -> std::result::Result<Mapped, String> {
    let path = env.dir.join(sidecar_name(first_seq));
    let file = env.fs.open(&path, OpenMode::Read).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the index file is missing".to_owned()
        } else {
            e.to_string()
        }
    })?;
    file.map().map_err(|e| e.to_string())
}

/// Bytes at the start of a sidecar asked for before its open reads them:
/// the header and the section table (32 bytes a section) of every sidecar
/// sealog writes.
pub(crate) const HEAD_ASKED: usize = 16 << 10;

/// Builds a sidecar from the segment's records, writes it if the store is
/// writable, and maps it.
///
/// A query is what asks for a rebuild, and its answer must not depend on
/// whether derived data could be written: if writing the sidecar fails,
/// the rebuilt index is used from memory and the failure latches the store
/// (a failed write or sync refuses later writes, whatever the file).
pub(crate) fn rebuild<'a>(
    env: &IndexEnv,
    header: &SegmentHeader,
    footer: &SegmentFooter,
    records: impl Iterator<Item = Result<(u32, &'a [u8])>>,
    segment_name: &str,
) -> Result<Sidecar> {
    let identity = identity(header, footer);
    let bytes = encode_records(identity, records, segment_name)?;
    if !env.writable {
        return install(env, header.first_seq, &identity, bytes);
    }
    match write(env, header.first_seq, &bytes) {
        Ok(_) => install_mapped(env, header.first_seq, &identity),
        Err(e) => {
            tracing::error!(segment = %segment_name, error = %e, "could not write a rebuilt index; using it from memory");
            if let Some(inner) = env.store.get().and_then(std::sync::Weak::upgrade) {
                inner.latch(crate::progress::Failure::of(
                    &format!("rebuilding the index of {segment_name}"),
                    &e,
                ));
            }
            let name = sidecar_name(header.first_seq);
            Sidecar::open(name.clone(), Mapped::from_vec(bytes), &identity).map_err(|e| {
                Error::IndexDamaged {
                    file: name,
                    reason: e.to_string(),
                }
            })
        }
    }
}

/// Writes sidecar bytes (if the store is writable) and maps them.
pub(crate) fn install(
    env: &IndexEnv,
    first_seq: u64,
    identity: &SegmentIdentity,
    bytes: Vec<u8>,
) -> Result<Sidecar> {
    let name = sidecar_name(first_seq);
    if env.writable {
        write(env, first_seq, &bytes)?;
        return install_mapped(env, first_seq, identity);
    }
    Sidecar::open(name.clone(), Mapped::from_vec(bytes), identity).map_err(|e| {
        Error::IndexDamaged {
            file: name,
            reason: e.to_string(),
        }
    })
}

/// Maps the sidecar just written.
fn install_mapped(env: &IndexEnv, first_seq: u64, identity: &SegmentIdentity) -> Result<Sidecar> {
    let name = sidecar_name(first_seq);
    let path: PathBuf = env.dir.join(&name);
    let file = env
        .fs
        .open(Path::new(&path), OpenMode::Read)
        .map_err(|e| Error::io("open", &path, e))?;
    let map = file.map().map_err(|e| Error::io("map", &path, e))?;
    Sidecar::open(name.clone(), map, identity).map_err(|e| Error::IndexDamaged {
        file: name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
