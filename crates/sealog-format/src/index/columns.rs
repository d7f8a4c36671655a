//! The two columns every sidecar has, indexed by ordinal: the offsets
//! column (kind 1), the byte offset of each record's frame in the segment,
//! and the event-time column (kind 2), each record's event time in UTC
//! nanoseconds.
//!
//! Frame offsets strictly increase, so a frame offset also maps back to
//! its ordinal. Event times come from clients and are not sorted: a time
//! range is one pass over the column.

use roaring::RoaringBitmap;

use super::bytes::{crc32, to_u64, u32_at};
use super::error::IndexError;
use super::layout::{
    BLOCKS_HEADER_LEN, BLOCKS_RESERVED_AT, EVENT_TIME_WIDTH, MAX_COLUMN_BLOCK_LEN,
    MIN_COLUMN_BLOCK_LEN, OFFSET_WIDTH, SectionKind,
};

/// Appends the offsets column holding `offsets` to `out`.
pub(super) fn encode_offsets(out: &mut Vec<u8>, offsets: &[u32]) {
    out.reserve(offsets.len() * OFFSET_WIDTH);
    for offset in offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
}

/// Appends the event-time column holding `event_times` to `out`.
pub(super) fn encode_event_times(out: &mut Vec<u8>, event_times: &[i64]) {
    out.reserve(event_times.len() * EVENT_TIME_WIDTH);
    for time in event_times {
        out.extend_from_slice(&time.to_le_bytes());
    }
}

/// The length in bytes the `column` (offsets or event times) of a segment
/// of `record_count` records must have.
pub(super) fn column_len(column: SectionKind, record_count: u64) -> u64 {
    record_count * to_u64(width(column))
}

/// Width in bytes of one value of `column` (offsets or event times).
pub(super) fn width(column: SectionKind) -> usize {
    if column == SectionKind::Offsets {
        OFFSET_WIDTH
    } else {
        EVENT_TIME_WIDTH
    }
}

/// Appends the block checksums of a column's bytes to `out`: the block
/// length, a reserved word, then the CRC-32 of each `block_len` bytes of
/// the column (the last block may be shorter).
pub(super) fn encode_block_crcs(out: &mut Vec<u8>, column: &[u8], block_len: u32) {
    out.extend_from_slice(&block_len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for block in column.chunks(block_len as usize) {
        out.extend_from_slice(&crc32(block).to_le_bytes());
    }
}

/// Whether a reader accepts `block_len`: a power of two from 512 bytes to
/// 1 MiB.
fn block_len_allowed(block_len: u32) -> bool {
    block_len.is_power_of_two()
        && (MIN_COLUMN_BLOCK_LEN..=MAX_COLUMN_BLOCK_LEN).contains(&block_len)
}

/// The block checksums of a column, read in place from their section.
///
/// Memory-safe on any bytes: a section too short for its header, or whose
/// block length is not one a reader accepts, has no blocks.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockCrcs<'a> {
    block_len: u64,
    crcs: &'a [[u8; 4]],
}

impl<'a> BlockCrcs<'a> {
    pub(super) fn view(data: &'a [u8]) -> Self {
        let block_len = u32_at(data, 0);
        let valid = block_len_allowed(block_len);
        let crcs = data.get(BLOCKS_HEADER_LEN..).unwrap_or_default();
        BlockCrcs {
            block_len: if valid { u64::from(block_len) } else { 0 },
            crcs: if valid { crcs.as_chunks().0 } else { &[] },
        }
    }

    /// The length of a block, `None` if the section's header is unusable.
    pub(super) fn block_len(&self) -> Option<u64> {
        (self.block_len > 0).then_some(self.block_len)
    }

    /// The stored CRC of block `block`.
    pub(super) fn crc(&self, block: u64) -> Option<u32> {
        let bytes = self.crcs.get(usize::try_from(block).ok()?)?;
        Some(u32::from_le_bytes(*bytes))
    }

    /// Number of checksums stored.
    pub(super) fn count(&self) -> u64 {
        to_u64(self.crcs.len())
    }
}

/// Checks a block-checksum section (whose CRC has been checked) against
/// the length of the section it describes (a column, a hashed index): a
/// block length that is a power of two from 512 bytes to 1 MiB, a zero
/// reserved word, and one checksum per block. `bad` makes the error.
pub(super) fn check_block_crcs(
    data: &[u8],
    column_len: u64,
    bad: impl Fn(String) -> IndexError,
) -> Result<(), IndexError> {
    if data.len() < BLOCKS_HEADER_LEN {
        return Err(bad(format!(
            "the section is {} bytes, shorter than its {BLOCKS_HEADER_LEN}-byte header",
            data.len()
        )));
    }
    let block_len = u32_at(data, 0);
    if !block_len_allowed(block_len) {
        return Err(bad(format!(
            "block length {block_len} is not a power of two from {MIN_COLUMN_BLOCK_LEN} to \
             {MAX_COLUMN_BLOCK_LEN}"
        )));
    }
    let reserved = u32_at(data, BLOCKS_RESERVED_AT);
    if reserved != 0 {
        return Err(bad(format!("reserved word is {reserved:#x}, not 0")));
    }
    let blocks = column_len.div_ceil(u64::from(block_len));
    let expected = to_u64(BLOCKS_HEADER_LEN) + 4 * blocks;
    if to_u64(data.len()) != expected {
        return Err(bad(format!(
            "the section is {} bytes; a section of {column_len} bytes in blocks of {block_len} \
             needs {expected}",
            data.len()
        )));
    }
    Ok(())
}

/// Checks an offsets column section (whose CRC has been checked): frame
/// offsets strictly increase.
pub(super) fn check_offsets(data: &[u8]) -> Result<(), IndexError> {
    let (offsets, _) = data.as_chunks::<OFFSET_WIDTH>();
    check_offsets_increasing(offsets.iter().map(|b| u32::from_le_bytes(*b)))
}

/// Checks that frame offsets, in ordinal order, strictly increase.
pub(super) fn check_offsets_increasing(
    offsets: impl Iterator<Item = u32>,
) -> Result<(), IndexError> {
    check_offsets_from(0, offsets)
}

/// Checks that frame offsets strictly increase, the first being that of
/// ordinal `first` (a block of the column).
pub(super) fn check_offsets_from(
    first: u64,
    offsets: impl Iterator<Item = u32>,
) -> Result<(), IndexError> {
    let mut previous: Option<u32> = None;
    for (i, offset) in offsets.enumerate() {
        if let Some(previous) = previous
            && offset <= previous
        {
            return Err(IndexError::OffsetsNotIncreasing {
                ordinal: first + to_u64(i),
                previous,
                offset,
            });
        }
        previous = Some(offset);
    }
    Ok(())
}

/// Both columns of a sidecar, read in place.
///
/// Reads never panic and never leave the columns: an ordinal past the
/// segment has no offset and no event time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Columns<'a> {
    offsets: &'a [[u8; OFFSET_WIDTH]],
    event_times: &'a [[u8; EVENT_TIME_WIDTH]],
}

impl<'a> Columns<'a> {
    /// A view of the two column sections (bytes past the last whole value
    /// are ignored; `IndexReader::open` has checked both lengths).
    pub(super) fn view(offsets: &'a [u8], event_times: &'a [u8]) -> Self {
        Columns {
            offsets: offsets.as_chunks().0,
            event_times: event_times.as_chunks().0,
        }
    }

    /// Byte offset of record `ordinal`'s frame in the segment file.
    #[inline]
    pub(super) fn offset(&self, ordinal: u32) -> Option<u32> {
        let bytes = self.offsets.get(usize::try_from(ordinal).ok()?)?;
        Some(u32::from_le_bytes(*bytes))
    }

    /// The ordinal of the record whose frame starts at `frame_offset`.
    pub(super) fn ordinal_at(&self, frame_offset: u32) -> Option<u32> {
        let index = self
            .offsets
            .binary_search_by_key(&frame_offset, |b| u32::from_le_bytes(*b))
            .ok()?;
        u32::try_from(index).ok()
    }

    /// Event time (UTC nanoseconds) of record `ordinal`.
    #[inline]
    pub(super) fn event_time(&self, ordinal: u32) -> Option<i64> {
        let bytes = self.event_times.get(usize::try_from(ordinal).ok()?)?;
        Some(i64::from_le_bytes(*bytes))
    }

    /// Ordinals of the records whose event time `t` is in `from <= t < to`.
    ///
    /// One branch-free pass over the event-time column.
    pub(super) fn time_filter(&self, from: i64, to: i64) -> RoaringBitmap {
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
    pub(super) fn time_filter_in(
        &self,
        from: i64,
        to: i64,
        candidates: &RoaringBitmap,
    ) -> RoaringBitmap {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns_of(offsets: &[u32], times: &[i64]) -> (Vec<u8>, Vec<u8>) {
        let (mut o, mut t) = (Vec::new(), Vec::new());
        encode_offsets(&mut o, offsets);
        encode_event_times(&mut t, times);
        (o, t)
    }

    #[test]
    fn encoded_columns_read_back_by_ordinal() {
        let (o, t) = columns_of(&[0, 180, 400], &[5, i64::MIN, i64::MAX]);
        assert_eq!(o.len() as u64, column_len(SectionKind::Offsets, 3));
        assert_eq!(t.len() as u64, column_len(SectionKind::EventTimes, 3));
        let c = Columns::view(&o, &t);
        assert_eq!(
            [c.offset(0), c.offset(1), c.offset(2)],
            [Some(0), Some(180), Some(400)]
        );
        assert_eq!(c.event_time(1), Some(i64::MIN));
        assert_eq!(c.event_time(2), Some(i64::MAX));
        assert_eq!((c.offset(3), c.event_time(3)), (None, None));
        assert_eq!((c.offset(u32::MAX), c.event_time(u32::MAX)), (None, None));
        assert_eq!(c.ordinal_at(180), Some(1));
        assert_eq!(c.ordinal_at(181), None);
        assert_eq!(c.ordinal_at(u32::MAX), None);
    }

    #[test]
    fn time_filter_matches_a_scan_at_every_column_length() {
        // Lengths around the 8-value steps of the scan, with times at the
        // edges of the i64 range.
        let pattern = [3, i64::MIN, -1, 0, i64::MAX, 7, 3, -8, 1, i64::MAX - 1];
        let bounds = [i64::MIN, -8, -1, 0, 1, 3, 4, 7, i64::MAX - 1, i64::MAX];
        for n in 0..=26usize {
            let times: Vec<i64> = pattern.iter().copied().cycle().take(n).collect();
            let offsets: Vec<u32> = (0..n as u32).collect();
            let (o, t) = columns_of(&offsets, &times);
            let c = Columns::view(&o, &t);
            for from in bounds {
                for to in bounds {
                    let want: RoaringBitmap = (0..n as u32)
                        .filter(|&i| from <= times[i as usize] && times[i as usize] < to)
                        .collect();
                    assert_eq!(c.time_filter(from, to), want, "n {n}, {from}..{to}");
                    let odd: RoaringBitmap = (0..n as u32 + 3).filter(|i| i % 2 == 1).collect();
                    let want_odd: RoaringBitmap = want.iter().filter(|i| i % 2 == 1).collect();
                    assert_eq!(c.time_filter_in(from, to, &odd), want_odd);
                }
            }
        }
    }

    #[test]
    fn offsets_must_strictly_increase() {
        let (o, _) = columns_of(&[0, 10, 20], &[]);
        check_offsets(&o).unwrap();
        check_offsets(&[]).unwrap();
        for (offsets, at, previous) in [(&[0, 10, 10][..], 2, 10), (&[5, 4][..], 1, 5)] {
            let (o, _) = columns_of(offsets, &[]);
            assert!(matches!(
                check_offsets(&o),
                Err(IndexError::OffsetsNotIncreasing { ordinal, previous: p, .. })
                    if ordinal == at && p == previous
            ));
        }
    }
}
