//! The two columns every sidecar has, indexed by ordinal: the offsets
//! column (kind 1), the byte offset of each record's frame in the segment,
//! and the event-time column (kind 2), each record's event time in UTC
//! nanoseconds.

use super::bytes::to_u64;
use super::error::IndexError;

/// Checks that frame offsets, in ordinal order, strictly increase.
pub(super) fn check_offsets_increasing(
    offsets: impl Iterator<Item = u32>,
) -> Result<(), IndexError> {
    let mut previous: Option<u32> = None;
    for (ordinal, offset) in offsets.enumerate() {
        if let Some(previous) = previous
            && offset <= previous
        {
            return Err(IndexError::OffsetsNotIncreasing {
                ordinal: to_u64(ordinal),
                previous,
                offset,
            });
        }
        previous = Some(offset);
    }
    Ok(())
}
