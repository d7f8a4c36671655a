//! A sealed segment's index sidecar checked against its records where it
//! lies, without encoding the sidecar the records give.
//!
//! The encoding is canonical (docs/format.md, "Canonical encoding"): one
//! content has one encoding. So a file that passes every check a reader
//! makes ([`IndexReader::parse`]), whose header, identity, sections and
//! derived sections are the writer's ([`IndexReader::check_derived`]),
//! whose bitmaps are in the writer's form, and whose content equals what
//! the records give, is byte for byte the file the records give. Checking
//! that costs a pass over the file and a few loads per record; encoding
//! the file again cost a hash-table lookup per field of every record, a
//! sort of every hashed index, the bitmaps built and serialized, and about
//! 40% of a full verification.
//!
//! The content is compared through the ordinals. Before the walk, each
//! dictionary, hashed and IP index is inverted into a column: for each
//! ordinal, the entry (term, key or address) that names it, an ordinal
//! named twice being a difference. During the walk, each record's terms,
//! keys and address are compared with the entries its ordinal names, and
//! its frame offset and event time with the columns. At the end, every
//! entry must have been named by a record. Nothing is probabilistic.
//!
//! The check only answers "the same" or "not the same". When it says "not
//! the same", the caller encodes the sidecar from the records and compares
//! bytes, which says where the file first differs.

use std::net::IpAddr;

use sealog_format::index::{
    DerivedKinds, HashedIndex, IndexField, IndexReader, IpIndex, SectionKind, SegmentIdentity,
    TermDict, term_key,
};
use sealog_format::record::Checked;

use super::hashes::VecPool;
use crate::index::{DictField, ExactField, IndexKey, for_each_key};
use crate::sidecar::{SidecarLayout, dict_field, exact_field};

/// An ordinal no entry names.
const NONE: u32 = u32::MAX;
/// The inverted columns: the five dictionaries, the two hashed indexes,
/// the IP index.
const COLUMNS: usize = DictField::ALL.len() + ExactField::ALL.len() + 1;
const IP_COLUMN: usize = COLUMNS - 1;
/// The value columns: the two hashed indexes' keys, the IPv4 addresses.
const VALUE_COLUMNS: usize = ExactField::ALL.len() + 1;

/// The columns of sidecars' checks, kept from one segment to the next.
#[derive(Default)]
pub(super) struct ColumnPools {
    entries: VecPool<u32>,
    values: VecPool<u64>,
}

/// A sidecar being checked against the records of its segment, fed one
/// record at a time in ordinal order.
pub(super) struct ContentCheck<'a, 'p> {
    reader: IndexReader<'a>,
    dicts: [TermDict<'a>; DictField::ALL.len()],
    hashed: [HashedIndex<'a>; ExactField::ALL.len()],
    ip: IpIndex<'a>,
    records: usize,
    /// `COLUMNS` columns of `records` entry positions each, column-major.
    inverted: Vec<u32>,
    /// The hashed indexes' keys and the IPv4 addresses (`VALUE_COLUMNS`
    /// columns), by ordinal: read in order by the walk, where looking them
    /// up by entry position was a cache miss per record and field (three
    /// quarters of the check's time).
    values: Vec<u64>,
    pools: &'p ColumnPools,
    /// Entries per column, and how many of them records named.
    stored: [u64; COLUMNS],
    named: [u64; COLUMNS],
    /// The first difference found, in words (for tests and debugging: the
    /// caller's byte comparison says where the file differs).
    differs: Option<String>,
    scratch: Vec<u8>,
}

impl<'a, 'p> ContentCheck<'a, 'p> {
    /// Checks the file `bytes` as far as it can be checked without the
    /// records, and inverts its indexes. `Err`: the file is not the one the
    /// records give (or not one any reader accepts), in words.
    /// `most_records` bounds the records the segment can hold (its size
    /// over the smallest frame): a damaged footer's count, which the walk
    /// will refuse, sizes no column.
    pub(super) fn new(
        bytes: &'a [u8],
        identity: &SegmentIdentity,
        most_records: usize,
        pools: &'p ColumnPools,
    ) -> Result<Self, String> {
        if usize::try_from(identity.record_count).map_or(true, |n| n > most_records) {
            return Err(format!(
                "the segment cannot hold the {} records its footer counts",
                identity.record_count
            ));
        }
        let reader = IndexReader::parse(bytes).map_err(|e| e.to_string())?;
        reader.check_identity(identity).map_err(|e| e.to_string())?;
        let layout = SidecarLayout::of(bytes);
        reader.check_derived(DerivedKinds {
            column_blocks: layout.column_blocks,
            hashed_blocks: layout.hashed_blocks,
            term_filters: layout.term_filters,
            dict_blocks: layout.dict_blocks,
        })?;
        // The indexes the writer writes, and no other: a missing one would
        // make queries on its field scan (not wrong, but not what the
        // records give either).
        let mut want: Vec<(u16, u16)> = vec![
            (SectionKind::Offsets.to_u16(), 0),
            (SectionKind::EventTimes.to_u16(), 0),
            (SectionKind::Ip.to_u16(), IndexField::SourceIp.id()),
        ];
        want.extend(
            DictField::ALL
                .iter()
                .map(|&f| (SectionKind::TermDict.to_u16(), dict_field(f).id())),
        );
        want.extend(
            ExactField::ALL
                .iter()
                .map(|&f| (SectionKind::Hashed.to_u16(), exact_field(f).id())),
        );
        want.sort_unstable();
        let have: Vec<(u16, u16)> = reader
            .sections()
            .filter(|s| {
                matches!(
                    s.kind,
                    SectionKind::Offsets
                        | SectionKind::EventTimes
                        | SectionKind::TermDict
                        | SectionKind::Hashed
                        | SectionKind::Ip
                )
            })
            .map(|s| (s.kind.to_u16(), s.field))
            .collect();
        if have != want {
            return Err(format!(
                "its sections {have:?} are not the writer's {want:?} (kind, field)"
            ));
        }
        let missing = || "an index the table lists cannot be read".to_owned();
        let dict = |f: DictField| reader.field(dict_field(f)).ok_or_else(missing);
        let dicts = [
            dict(DictField::Actor)?,
            dict(DictField::Action)?,
            dict(DictField::ResourceType)?,
            dict(DictField::Outcome)?,
            dict(DictField::Tenant)?,
        ];
        let hashed_of = |f: ExactField| reader.hashed(exact_field(f)).ok_or_else(missing);
        let hashed = [
            hashed_of(ExactField::RequestId)?,
            hashed_of(ExactField::ResourceId)?,
        ];
        let ip = reader.ip(IndexField::SourceIp).ok_or_else(missing)?;
        let records = usize::try_from(identity.record_count).map_err(|_| missing())?;
        let mut check = ContentCheck {
            reader,
            dicts,
            hashed,
            ip,
            records,
            inverted: pools.entries.take(COLUMNS * records),
            values: pools.values.take(VALUE_COLUMNS * records),
            pools,
            stored: [0; COLUMNS],
            named: [0; COLUMNS],
            differs: None,
            scratch: Vec::new(),
        };
        check.invert()?;
        Ok(check)
    }

    /// Fills the inverted columns from the indexes, checking each
    /// dictionary's bitmaps for the writer's form as it walks them.
    fn invert(&mut self) -> Result<(), String> {
        let records = self.records;
        self.inverted.resize(COLUMNS * records, NONE);
        self.values.resize(VALUE_COLUMNS * records, 0);
        let mut columns = self.inverted.chunks_exact_mut(records.max(1));
        let mut values = self.values.chunks_exact_mut(records.max(1));
        let mut twice: Option<(usize, u32)> = None;
        let mut name = |column: &mut [u32], c: usize, ordinal: u32, entry: u32| match column
            .get_mut(ordinal as usize)
        {
            Some(slot) if *slot == NONE => *slot = entry,
            _ => {
                twice.get_or_insert((c, ordinal));
            }
        };
        for (c, dict) in self.dicts.iter().enumerate() {
            let column = columns.next().unwrap_or_default();
            for term in 0..dict.len() {
                let entry = u32::try_from(term).unwrap_or(NONE);
                dict.for_each_ordinal_canonical(term, |ordinal| {
                    self.stored[c] += 1;
                    name(column, c, ordinal, entry);
                })
                .map_err(|e| e.to_string())?;
            }
        }
        for (i, hashed) in self.hashed.iter().enumerate() {
            let c = DictField::ALL.len() + i;
            let column = columns.next().unwrap_or_default();
            let keys = values.next().unwrap_or_default();
            for (entry, (key, ordinal)) in hashed.entries().enumerate() {
                self.stored[c] += 1;
                name(column, c, ordinal, u32::try_from(entry).unwrap_or(NONE));
                if let Some(slot) = keys.get_mut(ordinal as usize) {
                    *slot = key;
                }
            }
        }
        let column = columns.next().unwrap_or_default();
        let addresses = values.next().unwrap_or_default();
        for (address, ordinal) in self.ip.entries_v4() {
            if let Some(slot) = addresses.get_mut(ordinal as usize) {
                *slot = u64::from(u32::from(address));
            }
        }
        let v4 = self.ip.entries_v4().map(|(_, ordinal)| ordinal);
        let v6 = self.ip.entries_v6().map(|(_, ordinal)| ordinal);
        for (entry, ordinal) in v4.chain(v6).enumerate() {
            self.stored[IP_COLUMN] += 1;
            name(
                column,
                IP_COLUMN,
                ordinal,
                u32::try_from(entry).unwrap_or(NONE),
            );
        }
        match twice {
            Some((c, ordinal)) => Err(format!(
                "two entries of index {c} name ordinal {ordinal} (or one past the segment)"
            )),
            None => Ok(()),
        }
    }

    /// Compares the next record (ordinal order) with what the file says of
    /// it: its frame `offset`, its event time, its terms, keys and address.
    pub(super) fn record(&mut self, ordinal: u32, offset: u64, record: &Checked<'_>) {
        if self.differs.is_some() {
            return;
        }
        let o = ordinal as usize;
        let offset_ok =
            u32::try_from(offset).is_ok_and(|at| self.reader.offset(ordinal) == Some(at));
        if !offset_ok {
            self.differs = Some(format!("the frame offset of ordinal {ordinal}"));
            return;
        }
        if self.reader.event_time(ordinal) != Some(record.event_time().as_nanos()) {
            self.differs = Some(format!("the event time of ordinal {ordinal}"));
            return;
        }
        let ContentCheck {
            dicts,
            ip,
            records,
            inverted,
            values,
            named,
            differs,
            scratch,
            ..
        } = self;
        let at = |c: usize| {
            inverted
                .get(c * *records + o)
                .copied()
                .filter(|&e| e != NONE)
                .map(|e| e as usize)
        };
        let value = |v: usize| values.get(v * *records + o).copied();
        let mut same = true;
        for_each_key(record, scratch, |key| {
            let (c, equal) = match key {
                IndexKey::Dict(field, term) => {
                    let c = field as usize;
                    let equal = match (dicts.get(c), at(c)) {
                        (Some(dict), Some(entry)) => dict.term(entry) == Some(term),
                        _ => false,
                    };
                    (c, equal)
                }
                IndexKey::Exact(field, term) => {
                    let c = DictField::ALL.len() + field as usize;
                    let key = at(c).and_then(|_| value(field as usize));
                    let equal = key == Some(term_key(term));
                    (c, equal)
                }
                IndexKey::Ip(address) => {
                    let equal = at(IP_COLUMN).is_some_and(|entry| match address {
                        IpAddr::V4(a) => {
                            entry < ip.len_v4()
                                && value(ExactField::ALL.len()) == Some(u64::from(u32::from(a)))
                        }
                        IpAddr::V6(a) => entry
                            .checked_sub(ip.len_v4())
                            .is_some_and(|entry| ip.v6_at(entry) == Some(a)),
                    });
                    (IP_COLUMN, equal)
                }
            };
            same &= equal;
            if let Some(n) = named.get_mut(c) {
                *n += 1;
            }
        });
        if !same {
            *differs = Some(format!("an indexed field of ordinal {ordinal}"));
        }
    }

    /// Whether the file is the one the records fed give: every record
    /// matched, and every entry was named by one.
    pub(super) fn finish(self) -> Result<(), String> {
        if let Some(differs) = &self.differs {
            return Err(format!("it differs in {differs}"));
        }
        match (0..COLUMNS).find(|&c| self.stored.get(c) != self.named.get(c)) {
            Some(c) => Err(format!(
                "index {c} has {} entries, the records give {}",
                self.stored.get(c).copied().unwrap_or(0),
                self.named.get(c).copied().unwrap_or(0)
            )),
            None => Ok(()),
        }
    }
}

impl Drop for ContentCheck<'_, '_> {
    fn drop(&mut self) {
        self.pools.entries.give(std::mem::take(&mut self.inverted));
        self.pools.values.give(std::mem::take(&mut self.values));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::path::Path;

    use sealog_format::index::{IndexBuilder, IndexField, SegmentIdentity};
    use sealog_format::record::Checked;

    use super::*;
    use crate::image::{SealedImage, SealedSegmentInfo, check_sealed};
    use crate::index::{IndexKey, for_each_key};
    use crate::sidecar::{SidecarLayout, encode_in_layout, identity};
    use crate::{Store, StoreOptions};

    /// A closed store in `dir` of generated events varied so that every
    /// kind of index entry occurs: records without a tenant, a request id,
    /// a resource id or an address, IPv6 and IPv4-mapped addresses; every
    /// segment sealed.
    fn varied_store(dir: &Path) -> Vec<SealedSegmentInfo> {
        let store = Store::open(
            dir,
            StoreOptions {
                segment_size: 1 << 20,
                preallocation: crate::Preallocation::None,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let mut events = crate::workload::Workload::new(5).generate(6_000);
        for (i, event) in events.iter_mut().enumerate() {
            let i = i as u32;
            if i.is_multiple_of(3) {
                event.tenant = None;
            }
            if i.is_multiple_of(4) {
                event.request_id = None;
            }
            if i.is_multiple_of(13) {
                event.resource.id = None;
            }
            if let Some(source) = &mut event.source {
                source.ip = match i % 11 {
                    0 => None,
                    1 => Some(IpAddr::V6(Ipv6Addr::new(
                        0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16,
                    ))),
                    2 => Some(IpAddr::V6(
                        Ipv4Addr::new(10, 9, 8, i as u8).to_ipv6_mapped(),
                    )),
                    _ => source.ip,
                };
            }
        }
        for chunk in events.chunks(400) {
            store.append_batch(chunk.to_vec()).unwrap();
        }
        store.roll().unwrap();
        store.wait_sealed().unwrap();
        let sealed = crate::image::sealed_segments(&store);
        store.close().unwrap();
        assert!(sealed.len() >= 2, "{} sealed segments", sealed.len());
        sealed
    }

    /// A sealed segment's bytes, checked image and identity.
    fn segment(seg: &SealedSegmentInfo) -> (Vec<u8>, SealedImage, SegmentIdentity) {
        let bytes = std::fs::read(&seg.path).unwrap();
        let image = check_sealed(&seg.name, &bytes).unwrap();
        let id = identity(&image.header, &image.footer);
        (bytes, image, id)
    }

    /// The body of each record of a segment, with its frame offset.
    fn bodies<'b>(bytes: &'b [u8], image: &SealedImage) -> Vec<(u32, &'b [u8])> {
        image
            .offsets
            .iter()
            .map(
                |&offset| match sealog_format::frame::read_frame(&bytes[offset as usize..]) {
                    Ok(sealog_format::frame::FrameRead::Frame(f)) => (offset, f.body),
                    other => panic!("no frame at {offset}: {other:?}"),
                },
            )
            .collect()
    }

    /// What the check says of `sidecar` against the segment's records.
    fn check(
        bytes: &[u8],
        image: &SealedImage,
        id: &SegmentIdentity,
        sidecar: &[u8],
    ) -> Result<(), String> {
        let pools = ColumnPools::default();
        let mut check = ContentCheck::new(sidecar, id, image.offsets.len(), &pools)?;
        for (ordinal, (offset, body)) in (0u32..).zip(bodies(bytes, image)) {
            let record = sealog_format::record::check(body).unwrap();
            check.record(ordinal, u64::from(offset), &record);
        }
        check.finish()
    }

    /// One index entry of a record, as the test's encoder adds it.
    #[derive(Clone, Debug, PartialEq)]
    enum Entry {
        Term(IndexField, Vec<u8>),
        Hashed(IndexField, Vec<u8>),
        Ip(IpAddr),
    }

    /// The sidecar of the segment's records with `tweak` applied to each
    /// record's ordinal, frame offset, event time and entries: the writer's
    /// encoding of a content that differs from the records' only where the
    /// tweak says.
    fn forged(
        bytes: &[u8],
        image: &SealedImage,
        id: SegmentIdentity,
        mut tweak: impl FnMut(u32, &mut u32, &mut i64, &mut Vec<Entry>),
    ) -> Vec<u8> {
        let mut builder = IndexBuilder::new(id);
        for f in DictField::ALL {
            builder.add_field(dict_field(f));
        }
        for f in ExactField::ALL {
            builder.add_hashed_field(exact_field(f));
        }
        builder.add_ip_field(IndexField::SourceIp);
        let mut scratch = Vec::new();
        for (ordinal, (offset, body)) in (0u32..).zip(bodies(bytes, image)) {
            let record: Checked<'_> = sealog_format::record::check(body).unwrap();
            let mut entries = Vec::new();
            for_each_key(&record, &mut scratch, |key| {
                entries.push(match key {
                    IndexKey::Dict(f, term) => Entry::Term(dict_field(f), term.to_vec()),
                    IndexKey::Exact(f, value) => Entry::Hashed(exact_field(f), value.to_vec()),
                    IndexKey::Ip(ip) => Entry::Ip(ip),
                });
            });
            let (mut offset, mut time) = (offset, record.event_time().as_nanos());
            tweak(ordinal, &mut offset, &mut time, &mut entries);
            builder.push_record(offset, time);
            for entry in entries {
                match entry {
                    Entry::Term(f, term) => builder.add_term(f, &term, ordinal).unwrap(),
                    Entry::Hashed(f, value) => builder.add_hashed(f, &value, ordinal).unwrap(),
                    Entry::Ip(ip) => builder.add_ip(IndexField::SourceIp, ip, ordinal).unwrap(),
                }
            }
        }
        builder.encode().unwrap()
    }

    #[test]
    fn the_sidecar_a_segment_was_sealed_with_is_the_one_its_records_give_in_every_layout() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = varied_store(dir.path());
        for seg in &sealed {
            let (bytes, image, id) = segment(seg);
            let stored = std::fs::read(seg.path.with_extension("idx")).unwrap();
            check(&bytes, &image, &id, &stored).unwrap();
            // The test's encoder gives the writer's bytes.
            assert_eq!(forged(&bytes, &image, id, |_, _, _, _| {}), stored);
            for layout in [
                SidecarLayout::ORIGINAL,
                SidecarLayout {
                    column_blocks: true,
                    ..SidecarLayout::ORIGINAL
                },
                SidecarLayout {
                    dict_blocks: false,
                    ..SidecarLayout::CURRENT
                },
            ] {
                let old = encode_in_layout(&seg.name, &bytes, layout);
                check(&bytes, &image, &id, &old).unwrap();
            }
        }
    }

    #[test]
    fn a_sidecar_whose_content_differs_anywhere_is_not_the_one_its_records_give() {
        let dir = tempfile::tempdir().unwrap();
        let seg = varied_store(dir.path()).swap_remove(0);
        let (bytes, image, id) = segment(&seg);
        let n = image.offsets.len() as u32;
        assert!(n > 200);
        // Another record's actor term, for ordinal 17.
        let actor_of = |entries: &[Entry]| {
            entries
                .iter()
                .find(|e| matches!(e, Entry::Term(IndexField::Actor, _)))
                .cloned()
                .unwrap()
        };
        let mut actors = Vec::new();
        forged(&bytes, &image, id, |_, _, _, entries| {
            actors.push(actor_of(entries))
        });
        let other = actors.iter().find(|a| **a != actors[17]).unwrap().clone();
        let swap_with = (0..n as usize).find(|&o| actors[o] != actors[40]).unwrap() as u32;
        let set = |entries: &mut Vec<Entry>, field: IndexField, to: Option<Entry>| {
            entries.retain(|e| match e {
                Entry::Term(f, _) | Entry::Hashed(f, _) => *f != field,
                Entry::Ip(_) => field != IndexField::SourceIp,
            });
            entries.extend(to);
        };
        type Tweak<'t> = Box<dyn FnMut(u32, &mut u32, &mut i64, &mut Vec<Entry>) + 't>;
        let cases: Vec<(&str, Tweak<'_>)> = vec![
            (
                "another actor",
                Box::new(|o, _, _, e| {
                    if o == 17 {
                        set(e, IndexField::Actor, Some(other.clone()))
                    }
                }),
            ),
            (
                "two records' actors swapped",
                Box::new(|o, _, _, e| {
                    if o == 40 {
                        set(
                            e,
                            IndexField::Actor,
                            Some(actors[swap_with as usize].clone()),
                        )
                    }
                    if o == swap_with {
                        set(e, IndexField::Actor, Some(actors[40].clone()))
                    }
                }),
            ),
            (
                "an ordinal under two actors",
                Box::new(|o, _, _, e| {
                    if o == 17 {
                        e.push(other.clone())
                    }
                }),
            ),
            (
                "another outcome",
                Box::new(|o, _, _, e| {
                    if o == 5 {
                        set(
                            e,
                            IndexField::Outcome,
                            Some(Entry::Term(IndexField::Outcome, b"denied!".to_vec())),
                        )
                    }
                }),
            ),
            (
                "a tenant removed",
                Box::new(|o, _, _, e| {
                    if o == 1 {
                        set(e, IndexField::Tenant, None)
                    }
                }),
            ),
            (
                "a tenant added",
                Box::new(|o, _, _, e| {
                    if o == 0 {
                        set(
                            e,
                            IndexField::Tenant,
                            Some(Entry::Term(IndexField::Tenant, b"tenant-001".to_vec())),
                        )
                    }
                }),
            ),
            (
                "another request id",
                Box::new(|o, _, _, e| {
                    if o == 1 {
                        set(
                            e,
                            IndexField::RequestId,
                            Some(Entry::Hashed(IndexField::RequestId, b"forged".to_vec())),
                        )
                    }
                }),
            ),
            (
                "a request id removed",
                Box::new(|o, _, _, e| {
                    if o == 1 {
                        set(e, IndexField::RequestId, None)
                    }
                }),
            ),
            (
                "a request id added",
                Box::new(|o, _, _, e| {
                    if o == 0 {
                        set(
                            e,
                            IndexField::RequestId,
                            Some(Entry::Hashed(IndexField::RequestId, b"forged".to_vec())),
                        )
                    }
                }),
            ),
            (
                "another resource id",
                Box::new(|o, _, _, e| {
                    if o == 2 {
                        set(
                            e,
                            IndexField::ResourceId,
                            Some(Entry::Hashed(IndexField::ResourceId, b"x".to_vec())),
                        )
                    }
                }),
            ),
            (
                "another IPv4 address",
                Box::new(|o, _, _, e| {
                    if o == 3 {
                        set(
                            e,
                            IndexField::SourceIp,
                            Some(Entry::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
                        )
                    }
                }),
            ),
            (
                "an IPv6 address for an IPv4 one",
                Box::new(|o, _, _, e| {
                    if o == 3 {
                        set(
                            e,
                            IndexField::SourceIp,
                            Some(Entry::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
                        )
                    }
                }),
            ),
            (
                "another IPv6 address",
                Box::new(|o, _, _, e| {
                    if o == 12 {
                        set(
                            e,
                            IndexField::SourceIp,
                            Some(Entry::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
                        )
                    }
                }),
            ),
            (
                "an address removed",
                Box::new(|o, _, _, e| {
                    if o == 3 {
                        set(e, IndexField::SourceIp, None)
                    }
                }),
            ),
            (
                "an address added",
                Box::new(|o, _, _, e| {
                    if o == 11 {
                        set(
                            e,
                            IndexField::SourceIp,
                            Some(Entry::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
                        )
                    }
                }),
            ),
            (
                "another event time",
                Box::new(|o, _, t, _| {
                    if o == 9 {
                        *t += 1
                    }
                }),
            ),
            (
                "another frame offset",
                Box::new(|o, at, _, _| {
                    if o == n - 1 {
                        *at += 1
                    }
                }),
            ),
        ];
        for (what, tweak) in cases {
            let sidecar = forged(&bytes, &image, id, tweak);
            assert!(
                check(&bytes, &image, &id, &sidecar).is_err(),
                "{what}: taken for the records' sidecar"
            );
        }
    }

    #[test]
    fn a_sidecar_with_derived_sections_the_writer_does_not_give_is_not_the_one_its_records_give() {
        let dir = tempfile::tempdir().unwrap();
        let seg = varied_store(dir.path()).swap_remove(0);
        let (bytes, image, id) = segment(&seg);
        let stored = std::fs::read(seg.path.with_extension("idx")).unwrap();
        let reader = IndexReader::parse(&stored).unwrap();
        // A term filter's hash or a block checksum altered, every CRC
        // fixed: the file passes a reader's checks, but is not the writer's.
        for kind in [
            SectionKind::TermFilter,
            SectionKind::DictBlocks,
            SectionKind::ColumnBlocks,
        ] {
            let (index, s) = reader
                .sections()
                .enumerate()
                .find(|(_, s)| s.kind == kind)
                .unwrap_or_else(|| panic!("no {kind} section"));
            let mut forged = stored.clone();
            // The low byte of the last value: a filter stays sorted.
            let at = s.offset as usize + s.len as usize - 4;
            forged[at] = forged[at].checked_add(1).unwrap_or(0xfe);
            reseal(&mut forged, index);
            IndexReader::parse(&forged).unwrap();
            let err = check(&bytes, &image, &id, &forged).unwrap_err();
            assert!(err.contains(&kind.to_string()), "{kind}: {err}");
        }
    }

    /// Recomputes a sidecar's section, table and header CRCs after an
    /// edit of section `index`, as a forger would.
    fn reseal(bytes: &mut [u8], index: usize) {
        use sealog_format::index::{HEADER_LEN, SECTION_ENTRY_LEN};
        let reader = IndexReader::open(bytes).unwrap();
        let s = reader.section(index).unwrap();
        let count = reader.section_count();
        let crc = crc32fast::hash(&bytes[s.offset as usize..(s.offset + s.len) as usize]);
        let entry = HEADER_LEN + SECTION_ENTRY_LEN * index;
        bytes[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
        let table = crc32fast::hash(&bytes[HEADER_LEN..HEADER_LEN + SECTION_ENTRY_LEN * count]);
        bytes[64..68].copy_from_slice(&table.to_le_bytes());
        let header = crc32fast::hash(&bytes[..68]);
        bytes[68..72].copy_from_slice(&header.to_le_bytes());
    }
}
