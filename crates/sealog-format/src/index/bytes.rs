//! Checked byte access shared by the encoder and the reader: CRCs, size
//! conversions, bounded slicing, a cursor that refuses to read past the
//! end, and little-endian fields of fixed-width records.
//!
//! Nothing here panics: out-of-range reads give `None`, or zeros where the
//! caller reads a fixed-width record at an offset from the layout (which
//! always fits).

use super::error::IndexError;
use super::layout::SECTION_ALIGN;

/// CRC-32 (IEEE, as computed by `crc32fast`).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Rounds `n` up to a multiple of [`SECTION_ALIGN`], or `None` on overflow.
pub(super) fn align_up(n: u64) -> Option<u64> {
    Some(n.checked_add(SECTION_ALIGN - 1)? & !(SECTION_ALIGN - 1))
}

pub(super) fn to_u64(n: usize) -> u64 {
    // usize is at most 64 bits on every supported target.
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub(super) fn to_u128(n: usize) -> u128 {
    u128::from(to_u64(n))
}

/// `value` as a `u32` dictionary size, or [`IndexError::TooLarge`].
pub(super) fn fit_u32(what: &'static str, value: usize) -> Result<u32, IndexError> {
    u32::try_from(value).map_err(|_| IndexError::TooLarge {
        what,
        value: to_u64(value),
        limit: u64::from(u32::MAX),
    })
}

/// `bytes[start..start + len]` with all arithmetic checked.
pub(super) fn sub(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// The `N` bytes at `at` of a fixed-width record, or zeros if `bytes` ends
/// before them (the offsets callers pass come from the layout and fit).
#[inline]
pub(super) fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    match bytes.get(at..).and_then(|rest| rest.first_chunk::<N>()) {
        Some(field) => *field,
        None => [0; N],
    }
}

/// The little-endian `u16` at `at` of a fixed-width record.
#[inline]
pub(super) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array_at(bytes, at))
}

/// The little-endian `u32` at `at` of a fixed-width record.
#[inline]
pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(bytes, at))
}

/// The little-endian `u64` at `at` of a fixed-width record.
#[inline]
pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array_at(bytes, at))
}

/// Overwrites `out[at..at + bytes.len()]`; the range is always in bounds.
pub(super) fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// A cursor over bytes that refuses to read past the end.
pub(super) struct Cursor<'b> {
    pub(super) rest: &'b [u8],
    pub(super) pos: usize,
}

impl<'b> Cursor<'b> {
    pub(super) fn new(bytes: &'b [u8]) -> Self {
        Cursor {
            rest: bytes,
            pos: 0,
        }
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.pos += n;
        Some(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        self.pos += N;
        Some(*head)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_in_order_and_refuses_to_read_past_the_end() {
        let bytes = [1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut r = Cursor::new(&bytes);
        assert_eq!(r.u16(), Some(1));
        assert_eq!(r.u32(), Some(2));
        assert_eq!(r.array::<8>(), Some(3u64.to_le_bytes()));
        assert_eq!(r.pos, 14);
        // A failed read consumes nothing.
        assert_eq!(r.u16(), None);
        assert_eq!(r.take(2), None);
        assert_eq!(r.pos, 14);
        assert_eq!(r.take(1), Some(&[9][..]));
        assert_eq!(r.take(0), Some(&[][..]));
        assert!(r.rest.is_empty());
        assert_eq!(r.array::<1>(), None);
    }

    #[test]
    fn sub_refuses_ranges_that_leave_the_bytes_or_overflow() {
        let bytes = [0u8, 1, 2, 3];
        assert_eq!(sub(&bytes, 1, 2), Some(&[1, 2][..]));
        assert_eq!(sub(&bytes, 4, 0), Some(&[][..]));
        assert_eq!(sub(&bytes, 3, 2), None);
        assert_eq!(sub(&bytes, 5, 0), None);
        assert_eq!(sub(&bytes, u64::MAX, 2), None);
        assert_eq!(sub(&bytes, 2, u64::MAX), None);
    }

    #[test]
    fn fields_of_fixed_records_read_little_endian_and_never_past_the_end() {
        let record = [0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&record, 0), 0x1234);
        assert_eq!(u32_at(&record, 2), 0x1234_5678);
        assert_eq!(u64_at(&record, 6), 0x0807_0605_0403_0201);
        assert_eq!(array_at::<2>(&record, 12), [7, 8]);
        assert_eq!(u32_at(&record, 12), 0);
        assert_eq!(u16_at(&record, usize::MAX), 0);
    }

    #[test]
    fn align_up_rounds_to_a_section_boundary_and_reports_overflow() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(8));
        assert_eq!(align_up(8), Some(8));
        assert_eq!(align_up(133), Some(136));
        assert_eq!(align_up(u64::MAX - 7), Some(u64::MAX - 7));
        assert_eq!(align_up(u64::MAX - 6), None);
        let mut out = [0u8; 4];
        patch(&mut out, 1, &[7, 7]);
        patch(&mut out, 3, &[9, 9]);
        assert_eq!(out, [0, 7, 7, 0]);
        assert!(fit_u32("x", u32::MAX as usize).is_ok());
        assert!(matches!(
            fit_u32("x", u32::MAX as usize + 1),
            Err(IndexError::TooLarge { what: "x", .. })
        ));
    }
}
