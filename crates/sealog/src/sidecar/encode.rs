//! Encoding sidecars: from an open segment's in-memory index, from a
//! segment's records, in the current layout or an older one; and where an
//! existing sidecar differs from the encoding its records give.

use std::path::PathBuf;

use sealog_format::index::{
    IndexBuilder, IndexError, IndexField, IndexReader, SectionKind, SegmentIdentity,
};

use super::{COLUMNS, IndexEnv, dict_field, exact_field, sidecar_name};
use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::index::{DictField, ExactField, MemIndex};

/// Encodes the sidecar of a segment from the in-memory index it kept while
/// open (covering every record) and its columns. The builder orders terms,
/// keys and ordinals itself, so the bytes equal [`encode_records`]'s.
pub(crate) fn encode_mem(
    identity: SegmentIdentity,
    offsets: Vec<u32>,
    event_times: Vec<i64>,
    mem: &MemIndex,
) -> Result<Vec<u8>> {
    encode_mem_as(identity, offsets, event_times, mem, SidecarLayout::CURRENT)
}

/// Which optional sections a sidecar's encoding has. Sidecars written by
/// earlier versions lack some; a sidecar is compared (by verification, by
/// the archive) with the encoding in its own layout, and read as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SidecarLayout {
    /// Block checksums of the columns longer than one block (section kind
    /// 6 in `docs/format.md`).
    pub column_blocks: bool,
    /// Block checksums of the hashed indexes longer than one block (kind 7).
    pub hashed_blocks: bool,
    /// Term filters of the term dictionaries longer than 4,096 bytes (kind
    /// 8).
    pub term_filters: bool,
    /// Block checksums of the term dictionaries longer than one block
    /// (kind 9).
    pub dict_blocks: bool,
}

impl SidecarLayout {
    /// The layout the sealer writes now.
    pub const CURRENT: SidecarLayout = SidecarLayout {
        column_blocks: true,
        hashed_blocks: true,
        term_filters: true,
        dict_blocks: true,
    };

    /// The layout of the first sidecars, before any optional section
    /// (block checksums, term filters) existed.
    pub const ORIGINAL: SidecarLayout = SidecarLayout {
        column_blocks: false,
        hashed_blocks: false,
        term_filters: false,
        dict_blocks: false,
    };

    /// The layout of the sidecar `bytes`: the optional sections it has. A
    /// sidecar whose columns (hashed indexes, dictionaries) are all too
    /// short to get one has none of that kind in any layout, so either
    /// answer encodes it alike; a file that cannot be opened counts as the
    /// current layout.
    pub fn of(bytes: &[u8]) -> SidecarLayout {
        IndexReader::open(bytes).map_or(SidecarLayout::CURRENT, |r| SidecarLayout {
            column_blocks: COLUMNS
                .iter()
                .any(|&c| r.column_blocks_section(c).is_some()),
            hashed_blocks: ExactField::ALL
                .iter()
                .any(|&f| r.hashed_blocks_section(exact_field(f)).is_some()),
            term_filters: DictField::ALL
                .iter()
                .any(|&f| r.term_filter_section(dict_field(f)).is_some()),
            dict_blocks: DictField::ALL
                .iter()
                .any(|&f| r.dict_blocks_section(dict_field(f)).is_some()),
        })
    }
}

/// [`encode_mem`] in a given layout (an older one is what verification
/// compares a sidecar written before some block checksums existed with).
pub(crate) fn encode_mem_as(
    identity: SegmentIdentity,
    offsets: Vec<u32>,
    event_times: Vec<i64>,
    mem: &MemIndex,
    layout: SidecarLayout,
) -> Result<Vec<u8>> {
    let damaged = |e: IndexError| Error::IndexDamaged {
        file: sidecar_name(identity.first_seq),
        reason: format!("building: {e}"),
    };
    let mut builder = IndexBuilder::new(identity);
    builder.set_column_blocks(layout.column_blocks);
    builder.set_hashed_blocks(layout.hashed_blocks);
    builder.set_term_filters(layout.term_filters);
    builder.set_dict_blocks(layout.dict_blocks);
    builder.set_columns(offsets, event_times).map_err(damaged)?;
    for f in DictField::ALL {
        let field = dict_field(f);
        builder.add_field(field);
        let (terms, pairs) = mem.dict_postings(f);
        builder
            .add_term_postings(field, &terms, &pairs)
            .map_err(damaged)?;
    }
    for f in ExactField::ALL {
        let field = exact_field(f);
        builder.add_hashed_field(field);
        builder
            .add_hashed_keys(field, mem.exact_postings(f))
            .map_err(damaged)?;
    }
    builder.add_ip_field(IndexField::SourceIp);
    for (ip, ordinal) in mem.ip_entries() {
        builder
            .add_ip(IndexField::SourceIp, ip, ordinal)
            .map_err(damaged)?;
    }
    builder.encode().map_err(damaged)
}

/// Encodes the sidecar of a segment from its records (ordinal order), each
/// given with its frame offset. Sealing and rebuilding both use this, so a
/// rebuilt sidecar is byte-identical to the original.
pub(crate) fn encode_records<'a>(
    identity: SegmentIdentity,
    records: impl Iterator<Item = Result<(u32, &'a [u8])>>,
    segment_name: &str,
) -> Result<Vec<u8>> {
    encode_records_as(identity, records, segment_name, SidecarLayout::CURRENT)
}

/// [`encode_records`] in a given layout.
pub(crate) fn encode_records_as<'a>(
    identity: SegmentIdentity,
    records: impl Iterator<Item = Result<(u32, &'a [u8])>>,
    segment_name: &str,
    layout: SidecarLayout,
) -> Result<Vec<u8>> {
    // The columnar in-memory index of an open segment, encoded as the
    // sealer encodes it: the same bytes as building term by term
    // (`RecordIndexer`), for a fraction of the work.
    let mut mem = MemIndex::encode_only();
    // Room for the records up front when their number is known (a sealed
    // segment's): the columns then do not grow by copying themselves.
    let known = records.size_hint().0;
    mem.reserve(known);
    let (mut offsets, mut event_times) = (Vec::with_capacity(known), Vec::with_capacity(known));
    for (ordinal, item) in (0u32..).zip(records) {
        let (offset, body) = item?;
        let view = sealog_format::record::decode(body).map_err(|e| {
            Corruption::new(
                Location::file(segment_name).seq(identity.first_seq + u64::from(ordinal)),
                CorruptionKind::Record(e),
            )
        })?;
        mem.push(&view);
        offsets.push(offset);
        event_times.push(view.event_time().as_nanos());
    }
    encode_mem_as(identity, offsets, event_times, &mem, layout)
}

/// The sidecar of a sealed segment file's bytes in an older layout.
#[cfg(test)]
pub(crate) fn encode_in_layout(name: &str, bytes: &[u8], layout: SidecarLayout) -> Vec<u8> {
    let image = crate::image::check_sealed(name, bytes).unwrap();
    crate::image::sidecar_of_as(name, bytes, &image, layout).unwrap()
}

/// Builds a segment's sidecar record by record, from decoded records, term
/// by term: the reference [`encode_records`] and [`encode_mem`] are
/// checked against (they must give the same bytes, for less work).
#[cfg(test)]
pub(crate) struct RecordIndexer {
    builder: IndexBuilder,
    identity: SegmentIdentity,
    next: u32,
    scratch: Vec<u8>,
}

#[cfg(test)]
impl RecordIndexer {
    pub(crate) fn new(identity: SegmentIdentity) -> RecordIndexer {
        let mut builder = IndexBuilder::new(identity);
        for f in DictField::ALL {
            builder.add_field(dict_field(f));
        }
        for f in ExactField::ALL {
            builder.add_hashed_field(exact_field(f));
        }
        builder.add_ip_field(IndexField::SourceIp);
        RecordIndexer {
            builder,
            identity,
            next: 0,
            scratch: Vec::new(),
        }
    }

    fn damaged(&self, e: IndexError) -> Error {
        Error::IndexDamaged {
            file: sidecar_name(self.identity.first_seq),
            reason: format!("building: {e}"),
        }
    }

    /// Adds the next record (ordinal order), whose frame is at `offset`.
    pub(crate) fn push(
        &mut self,
        offset: u32,
        view: &sealog_format::record::RecordView<'_>,
    ) -> Result<()> {
        let ordinal = self.next;
        self.next += 1;
        let builder = &mut self.builder;
        builder.push_record(offset, view.event_time().as_nanos());
        let mut failure = None;
        crate::index::for_each_key(&view.into(), &mut self.scratch, |key| {
            let added = match key {
                crate::index::IndexKey::Dict(field, term) => {
                    builder.add_term(dict_field(field), term, ordinal)
                }
                crate::index::IndexKey::Exact(field, value) => {
                    builder.add_hashed(exact_field(field), value, ordinal)
                }
                crate::index::IndexKey::Ip(ip) => builder.add_ip(IndexField::SourceIp, ip, ordinal),
            };
            if let Err(e) = added {
                failure.get_or_insert(e);
            }
        });
        match failure {
            Some(e) => Err(self.damaged(e)),
            None => Ok(()),
        }
    }

    /// The sidecar's bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        self.builder.encode().map_err(|e| self.damaged(e))
    }
}

/// Where a sidecar first differs from the one its records give, in words:
/// the header, the section table, or which section.
pub(crate) fn describe_difference(expected: &[u8], actual: &[u8]) -> Option<(u64, String)> {
    use sealog_format::index::{HEADER_LEN, SECTION_ENTRY_LEN};
    // The usual answer (verification of a whole store asks for every
    // segment), with one vectorised comparison rather than byte by byte.
    if expected == actual {
        return None;
    }
    let first_difference = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
    };
    let mut at = first_difference(expected, actual)? as u64;
    let reader = IndexReader::open(expected).ok();
    // With the same sections in the same places, the first section whose
    // bytes differ says more than the checksums that changed with it.
    if let (Some(want), Ok(have)) = (&reader, IndexReader::open(actual)) {
        let layout = |r: &IndexReader<'_>| -> Vec<(u64, u64, u16)> {
            r.sections().map(|s| (s.offset, s.len, s.field)).collect()
        };
        if layout(want) == layout(&have) {
            let content = want.sections().find_map(|s| {
                let range =
                    usize::try_from(s.offset).ok()?..usize::try_from(s.offset + s.len).ok()?;
                let d = first_difference(expected.get(range.clone())?, actual.get(range)?)?;
                Some(s.offset + d as u64)
            });
            if let Some(content) = content {
                at = content;
            }
        }
    }
    let sections = reader.as_ref().map_or(0, IndexReader::section_count) as u64;
    let table_end = (HEADER_LEN + SECTION_ENTRY_LEN * sections as usize) as u64;
    let place = if at < HEADER_LEN as u64 {
        "its header".to_owned()
    } else if at < table_end {
        "its section table".to_owned()
    } else {
        reader
            .and_then(|r| {
                r.sections()
                    .find(|s| s.offset <= at && at < s.offset + s.len.max(1))
            })
            .map_or_else(
                || "its length".to_owned(),
                |s| match IndexField::from_u16(s.field) {
                    _ if s.kind == SectionKind::ColumnBlocks => {
                        format!(
                            "the block checksums of the {}",
                            SectionKind::from_u16(s.field)
                        )
                    }
                    Some(field) if s.field != 0 => format!("the {} of field `{field}`", s.kind),
                    _ => format!("the {}", s.kind),
                },
            )
    };
    // What a reader makes of the file as it is.
    let checks = match IndexReader::parse(actual) {
        Ok(_) => "its checksums hold, so the content was altered or written wrongly".to_owned(),
        Err(e) => format!("it fails its own checks ({e})"),
    };
    Some((
        at,
        format!("differs from the index its records give, first in {place}; {checks}"),
    ))
}

/// Writes sidecar bytes atomically (temporary file, sync, rename, directory
/// sync).
pub(crate) fn write(env: &IndexEnv, first_seq: u64, bytes: &[u8]) -> Result<PathBuf> {
    let path = env.dir.join(sidecar_name(first_seq));
    crate::fs::write_atomic(&*env.fs, &path, bytes)?;
    Ok(path)
}
