//! Checked byte access shared by the encoder and the reader: CRCs, size
//! conversions, bounded slicing, a cursor that refuses to read past the
//! end, and a writer of fixed-size buffers.
//!
//! Nothing here panics: out-of-range reads give `None`, and writes past a
//! buffer are dropped (callers size their buffers exactly).

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

/// `bytes[start..start + len]` with all arithmetic checked.
pub(super) fn sub(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
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

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Writes consecutive byte strings into a fixed buffer.
pub(super) struct Writer<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub(super) fn new(out: &'b mut [u8]) -> Self {
        Writer { out, pos: 0 }
    }

    /// Copies `bytes` at the current position; callers size buffers exactly.
    pub(super) fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}

/// Overwrites `out[at..at + bytes.len()]`; the range is always in bounds.
pub(super) fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
