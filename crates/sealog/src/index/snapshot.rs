//! The index columns of an open segment's snapshot (`crate::open_index`),
//! answered in place from the snapshot's map.
//!
//! A read-only open used to decode every chunk's columns into a
//! [`MemIndex`](super::MemIndex): a dictionary entry (a hash-map insert and
//! an allocation) per distinct term and a copy of every column, ~47 MiB of
//! fresh memory and ~10 ms of a command-line query on a full open segment,
//! for the one or two lookups the query then makes. Here each chunk is
//! checked once for what a lookup relies on and kept as byte ranges of the
//! map; a lookup passes over the terms and the one column it needs, as a
//! lookup without postings passed over the decoded column before.
//!
//! What is checked when a chunk is taken: every length and count lies in
//! the chunk, every term id is `NO_TERM` or below the number of terms the
//! chunks so far define, every exact-match and address pair names a record
//! of its chunk, in order, and the columns end the chunk's body. What is
//! not: that a chunk's new terms are new. A term defined twice (which the
//! writer never does) is still found whole, because a lookup takes every
//! id whose term is selected and counts are merged by term.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::{ByteReader, DictField, ExactField, NO_TERM, TermSelect, le_u32, le_u64, raw_ids};
use crate::mmap::Mapped;
use crate::query::IpRange;

/// The snapshot's index of the records `[0, records)`, as ranges of its
/// map.
pub(crate) struct SnapshotColumns {
    map: Arc<Mapped>,
    records: u32,
    /// The ordinal of each chunk's first record.
    firsts: Vec<u32>,
    dicts: [SnapshotDict; 5],
    /// Per chunk, its `(key, ordinal)` pairs: 8 and 4 bytes.
    exact: [Vec<Range<usize>>; 2],
    /// Per chunk, its `(address, ordinal)` pairs: 4 and 4 bytes.
    v4: Vec<Range<usize>>,
    /// Per chunk, its `(address (big-endian), ordinal)` pairs: 16 and 4.
    v6: Vec<Range<usize>>,
}

/// One dictionary field's part of the snapshot.
#[derive(Clone, Debug, Default)]
struct SnapshotDict {
    /// Per chunk, the terms it adds (a 4-byte length, then the bytes);
    /// ids continue from chunk to chunk.
    terms: Vec<Range<usize>>,
    /// The terms all chunks define.
    term_count: u32,
    /// Per chunk, the term id of each of its records (4 bytes each,
    /// [`NO_TERM`] for a record without the field).
    ids: Vec<Range<usize>>,
}

/// What one chunk adds, checked, before it is taken.
struct ChunkParts {
    dicts: [(Range<usize>, u32, Range<usize>); 5],
    exact: [Range<usize>; 2],
    v4: Range<usize>,
    v6: Range<usize>,
}

impl std::fmt::Debug for SnapshotColumns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotColumns")
            .field("records", &self.records)
            .field("chunks", &self.firsts.len())
            .finish()
    }
}

impl SnapshotColumns {
    /// No records yet; chunks are taken from `map`.
    pub(crate) fn new(map: Arc<Mapped>) -> SnapshotColumns {
        SnapshotColumns {
            map,
            records: 0,
            firsts: Vec::new(),
            dicts: Default::default(),
            exact: Default::default(),
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }

    /// The records covered.
    pub(crate) fn records(&self) -> u32 {
        self.records
    }

    /// Whether chunks are taken from `map`.
    pub(crate) fn maps(&self, map: &Arc<Mapped>) -> bool {
        Arc::ptr_eq(&self.map, map)
    }

    /// Takes the columns of the next `count` records from `r`, which reads
    /// a chunk's body inside the map (docs/format.md, "Open-segment index
    /// snapshot"); `None`, leaving the columns as they were, if they do not
    /// extend them consistently (module docs) or do not lie in the map.
    pub(crate) fn take_chunk(&mut self, count: u32, r: &mut ByteReader<'_>) -> Option<()> {
        let from = self.records;
        let end = from.checked_add(count).filter(|&e| e < NO_TERM)?;
        let parts = self.parts(from..end, r)?;
        for (dict, (terms, known, ids)) in self.dicts.iter_mut().zip(parts.dicts) {
            dict.terms.push(terms);
            dict.term_count = known;
            dict.ids.push(ids);
        }
        for (pairs, range) in self.exact.iter_mut().zip(parts.exact) {
            pairs.push(range);
        }
        self.v4.push(parts.v4);
        self.v6.push(parts.v6);
        self.firsts.push(from);
        self.records = end;
        Some(())
    }

    /// Reads and checks one chunk's columns for the records `ordinals`.
    fn parts(&self, ordinals: Range<u32>, r: &mut ByteReader<'_>) -> Option<ChunkParts> {
        let n = ordinals.len();
        let mut dicts: [(Range<usize>, u32, Range<usize>); 5] = Default::default();
        for (dict, part) in self.dicts.iter().zip(&mut dicts) {
            // Each term takes at least its 4-byte length.
            let new_count = r.count(4)?;
            let start = r.bytes;
            for _ in 0..new_count {
                let len = r.count(1)?;
                r.take(len)?;
            }
            let terms = start.get(..start.len() - r.bytes.len())?;
            // At most NO_TERM terms: ids stay below it.
            let known = dict
                .term_count
                .checked_add(u32::try_from(new_count).ok()?)?;
            let raw = r.take(n.checked_mul(4)?)?;
            // Every id checked, with no early exit: the loop vectorises.
            let unknown = raw_ids(raw).fold(false, |bad, id| bad | (id != NO_TERM && id >= known));
            if unknown {
                return None;
            }
            *part = (self.range_of(terms)?, known, self.range_of(raw)?);
        }
        let mut pairs = |size: usize, ordinal_at: usize| -> Option<Range<usize>> {
            let m = r.count(size)?;
            let raw = r.take(m.checked_mul(size)?)?;
            let mut previous = None;
            for pair in raw.chunks_exact(size) {
                let o = le_u32(pair.get(ordinal_at..ordinal_at + 4)?);
                if !ordinals.contains(&o) || previous.is_some_and(|p| p > o) {
                    return None;
                }
                previous = Some(o);
            }
            self.range_of(raw)
        };
        let exact = [pairs(12, 8)?, pairs(12, 8)?];
        let v4 = pairs(8, 4)?;
        let v6 = pairs(20, 16)?;
        // The columns end the chunk's body.
        r.bytes.is_empty().then_some(ChunkParts {
            dicts,
            exact,
            v4,
            v6,
        })
    }

    /// Where `part`, a slice of the map, lies in it.
    fn range_of(&self, part: &[u8]) -> Option<Range<usize>> {
        let at = (part.as_ptr() as usize).checked_sub(self.map.as_ptr() as usize)?;
        let end = at.checked_add(part.len())?;
        (end <= self.map.len()).then_some(at..end)
    }

    fn bytes(&self, range: &Range<usize>) -> &[u8] {
        // Ranges are made by `range_of`, inside the map.
        self.map.get(range.clone()).unwrap_or_default()
    }

    /// A dictionary field's terms with their ids, in id order.
    fn terms(&self, field: DictField) -> impl Iterator<Item = (u32, &[u8])> {
        let dict = self.dict(field);
        dict.terms
            .iter()
            .flat_map(|range| {
                let mut r = ByteReader {
                    bytes: self.bytes(range),
                };
                // Checked when the chunk was taken.
                std::iter::from_fn(move || {
                    let len = r.u32()?;
                    r.take(usize::try_from(len).ok()?)
                })
            })
            .enumerate()
            .map(|(id, term)| (u32::try_from(id).unwrap_or(NO_TERM), term))
    }

    fn dict(&self, field: DictField) -> &SnapshotDict {
        self.dicts
            .get(field as usize)
            .expect(super::ONE_COLUMN_PER_FIELD)
    }

    /// The ordinals carrying a selected term of `field`.
    pub(crate) fn select(&self, field: DictField, select: &TermSelect<'_>) -> RoaringBitmap {
        let keep = |t: &[u8]| match select {
            TermSelect::Exact(term) => t == *term,
            TermSelect::Prefix(prefix) => t.starts_with(prefix),
            TermSelect::Matching { prefix, matches } => t.starts_with(prefix) && matches(t),
        };
        let chosen: Vec<u32> = self
            .terms(field)
            .filter(|(_, t)| keep(t))
            .map(|(id, _)| id)
            .collect();
        match chosen.as_slice() {
            [] => RoaringBitmap::new(),
            &[one] => self.ordinals(field, |id| id == one),
            many => {
                let mut wanted = vec![false; self.dict(field).term_count as usize];
                for &id in many {
                    if let Some(slot) = wanted.get_mut(id as usize) {
                        *slot = true;
                    }
                }
                self.ordinals(field, |id| {
                    wanted.get(id as usize).copied().unwrap_or(false)
                })
            }
        }
    }

    /// The ordinals whose term id of `field` satisfies `wanted`.
    fn ordinals(&self, field: DictField, wanted: impl Fn(u32) -> bool) -> RoaringBitmap {
        let mut bits = vec![0u8; (self.records as usize).div_ceil(8)];
        let mut any = 0u8;
        let dict = self.dict(field);
        for (range, &first) in dict.ids.iter().zip(&self.firsts) {
            for (ordinal, id) in (first as usize..).zip(raw_ids(self.bytes(range))) {
                let bit = u8::from(wanted(id)) << (ordinal % 8);
                if let Some(byte) = bits.get_mut(ordinal / 8) {
                    *byte |= bit;
                }
                any |= bit;
            }
        }
        if any == 0 {
            return RoaringBitmap::new();
        }
        RoaringBitmap::from_lsb0_bytes(0, &bits)
    }

    /// Adds the ordinals whose `field` value has the key `key` to `out`.
    pub(crate) fn exact(&self, field: ExactField, key: u64, out: &mut RoaringBitmap) {
        let chunks = self
            .exact
            .get(field as usize)
            .expect(super::ONE_COLUMN_PER_FIELD);
        for range in chunks {
            out.extend(
                self.bytes(range)
                    .as_chunks::<12>()
                    .0
                    .iter()
                    .filter(|pair| le_u64(&pair[..8]) == key)
                    .map(|pair| le_u32(&pair[8..])),
            );
        }
    }

    /// Every `(address, ordinal)` pair, in ordinal order per family.
    fn addresses(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        let v4 = self.v4.iter().flat_map(|range| {
            self.bytes(range)
                .as_chunks::<8>()
                .0
                .iter()
                .map(|pair| (IpAddr::V4(le_u32(&pair[..4]).into()), le_u32(&pair[4..])))
        });
        let v6 = self.v6.iter().flat_map(|range| {
            self.bytes(range).as_chunks::<20>().0.iter().map(|pair| {
                let mut address = [0u8; 16];
                address.copy_from_slice(&pair[..16]);
                (
                    IpAddr::V6(u128::from_be_bytes(address).into()),
                    le_u32(&pair[16..]),
                )
            })
        });
        v4.chain(v6)
    }

    /// Adds the ordinals whose source address lies in `range` to `out`
    /// (one family matches: its ordinals come in order).
    pub(crate) fn ip(&self, range: IpRange, out: &mut RoaringBitmap) {
        let inside = |address: IpAddr| match (range, address) {
            (IpRange::V4(lo, hi), IpAddr::V4(a)) => (lo..=hi).contains(&u32::from(a)),
            (IpRange::V6(lo, hi), IpAddr::V6(a)) => (lo..=hi).contains(&u128::from(a)),
            _ => false,
        };
        out.extend(
            self.addresses()
                .filter(|&(address, _)| inside(address))
                .map(|(_, ordinal)| ordinal),
        );
    }

    /// Adds to `counts` how many of the records `within` (those below
    /// [`Self::records`]) carry each term of `field`.
    pub(crate) fn dict_counts<'a>(
        &'a self,
        field: DictField,
        within: &RoaringBitmap,
        counts: &mut HashMap<&'a [u8], u64, foldhash::fast::FixedState>,
    ) {
        let dict = self.dict(field);
        let mut by_id = vec![0u64; dict.term_count as usize];
        for ordinal in within.iter().take_while(|&o| o < self.records) {
            let Some(chunk) = self
                .firsts
                .partition_point(|&f| f <= ordinal)
                .checked_sub(1)
            else {
                continue;
            };
            let (Some(&first), Some(range)) = (self.firsts.get(chunk), dict.ids.get(chunk)) else {
                continue;
            };
            let at = range.start + (ordinal - first) as usize * 4;
            let id = le_u32(self.map.get(at..at + 4).unwrap_or_default());
            if let Some(n) = by_id.get_mut(id as usize) {
                *n += 1;
            }
        }
        for (id, term) in self.terms(field) {
            if let Some(&n) = by_id.get(id as usize).filter(|&&n| n > 0) {
                *counts.entry(term).or_insert(0) += n;
            }
        }
    }

    /// Adds to `counts` how many of the records `within` come from each
    /// source address.
    pub(crate) fn ip_counts(
        &self,
        within: &RoaringBitmap,
        counts: &mut HashMap<IpAddr, u64, foldhash::fast::FixedState>,
    ) {
        for (address, ordinal) in self.addresses() {
            if within.contains(ordinal) {
                *counts.entry(address).or_insert(0) += 1;
            }
        }
    }
}
