//! Walking a segment's frames in order, and telling a torn tail from
//! corruption where a walk stops.
//!
//! ## Torn tail or corruption?
//!
//! Recovery must drop bytes that were never acknowledged and must refuse to
//! drop anything that was. The write path guarantees that at most the bytes
//! written since the last successful sync can be incomplete, and that those
//! are the last bytes of the last segment with data. An interrupted write
//! leaves a recognisable signature: segment files are zero-filled ahead of
//! use, so a sector the write never reached reads as zeros. The first frame
//! that fails to read is therefore classified as:
//!
//! - **torn** if it runs past the end of the file, if the data ends inside
//!   it (only zeros follow a point before its end), or if a 512-byte sector
//!   it touches is zero from the frame's start (or the sector's start) to
//!   the sector's end — the write did not reach that sector;
//! - **corruption** otherwise: a complete frame whose checksum fails, a
//!   zeroed length followed by data in the same sector, or a frame whose
//!   checksum holds but whose record is malformed or out of sequence.
//!
//! Only the last frames after the last COMMIT flag can be dropped; a torn
//! tail never takes an acknowledged record with it because acknowledged
//! records end at a COMMIT frame that was synced before any later write.

use sealog_format::Hash;
use sealog_format::event::Timestamp;
use sealog_format::frame::{self, FRAME_HEADER_LEN, FrameError, FrameRead};
use sealog_format::merkle::leaf_hash;
use sealog_format::record::{self, Checked, RecordError, RecordView};
use sealog_format::segment::HEADER_LEN;

use crate::error::CorruptionKind;

/// Sector size assumed for torn-write detection (the smallest in use).
pub(crate) const SECTOR: usize = 512;

/// A record found by [`FrameWalker`], decoded as a `V`.
pub(crate) struct WalkedRecord<'a, V = RecordView<'a>> {
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Bytes of the whole frame.
    pub frame_len: usize,
    /// The frame ends an atomic batch.
    pub commit: bool,
    /// The decoded record.
    pub view: V,
    /// The record's bytes (the frame's body).
    pub body: &'a [u8],
    /// Its Merkle leaf hash (zero from a walker made
    /// [`FrameWalker::without_leaves`]).
    pub leaf: Hash,
}

/// What a walk decodes each record into: a [`RecordView`], or only what
/// [`record::check`] returns (the same checks, for less work).
pub(crate) trait Decoded<'a>: Sized {
    fn decode(body: &'a [u8]) -> Result<Self, RecordError>;
    fn seq(&self) -> u64;
    fn recorded_at(&self) -> Timestamp;
    fn event_time(&self) -> Timestamp;
}

impl<'a> Decoded<'a> for RecordView<'a> {
    fn decode(body: &'a [u8]) -> Result<Self, RecordError> {
        record::decode(body)
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn recorded_at(&self) -> Timestamp {
        self.recorded_at
    }
    fn event_time(&self) -> Timestamp {
        RecordView::event_time(self)
    }
}

impl<'a> Decoded<'a> for Checked<'a> {
    fn decode(body: &'a [u8]) -> Result<Self, RecordError> {
        record::check(body)
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn recorded_at(&self) -> Timestamp {
        self.recorded_at
    }
    fn event_time(&self) -> Timestamp {
        Checked::event_time(self)
    }
}

/// Where and why a walk stopped.
pub(crate) enum Stop {
    /// A zero length field (or the end of the bytes): the end of frames.
    End { at: u64 },
    /// A frame that cannot be read (checksum, length, truncation).
    BadFrame { at: u64, error: FrameError },
    /// A frame whose checksum holds but whose content is wrong.
    BadRecord { at: u64, kind: CorruptionKind },
}

impl Stop {
    pub(crate) fn at(&self) -> u64 {
        match self {
            Stop::End { at } | Stop::BadFrame { at, .. } | Stop::BadRecord { at, .. } => *at,
        }
    }
}

/// Walks the frames of a segment image, checking each frame's checksum, the
/// record's structure, seq continuity and the order of recorded times.
pub(crate) struct FrameWalker<'a> {
    bytes: &'a [u8],
    pos: usize,
    next_seq: u64,
    last_recorded_at: Option<i64>,
    stop: Option<Stop>,
    /// Whether each record's leaf hash is computed.
    leaves: bool,
}

impl<'a> FrameWalker<'a> {
    /// Starts after the header; the first record must carry `first_seq`.
    /// (Bytes shorter than a header hold no frame: the walk ends at their
    /// end.)
    pub(crate) fn new(bytes: &'a [u8], first_seq: u64, last_recorded_at: Option<i64>) -> Self {
        FrameWalker {
            bytes,
            pos: HEADER_LEN.min(bytes.len()),
            next_seq: first_seq,
            last_recorded_at,
            stop: None,
            leaves: true,
        }
    }

    /// Starts at byte `pos` of `bytes`, where the record `next_seq` must
    /// begin (the end of records known from elsewhere).
    pub(crate) fn resume(
        bytes: &'a [u8],
        pos: usize,
        next_seq: u64,
        last_recorded_at: Option<i64>,
    ) -> Self {
        FrameWalker {
            bytes,
            pos: pos.clamp(HEADER_LEN.min(bytes.len()), bytes.len()),
            next_seq,
            last_recorded_at,
            stop: None,
            leaves: true,
        }
    }

    /// A walker that leaves [`WalkedRecord::leaf`] zero, for a caller that
    /// hashes the records' bodies itself, many at once
    /// ([`sealog_format::merkle::leaf_hashes`]).
    pub(crate) fn without_leaves(mut self) -> Self {
        self.leaves = false;
        self
    }

    /// The leaf hashes of the next `count` records, fewer if the walk
    /// stops first (see [`FrameWalker::stop`]).
    pub(crate) fn leaves(&mut self, count: u64) -> Vec<Hash> {
        let mut leaves = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20));
        while (leaves.len() as u64) < count {
            let Some(r) = self.next_record() else {
                break;
            };
            leaves.push(r.leaf);
        }
        leaves
    }

    /// The next record, or `None` once stopped (see [`FrameWalker::stop`]).
    pub(crate) fn next_record(&mut self) -> Option<WalkedRecord<'a>> {
        self.next_as()
    }

    /// The next record decoded as a `V`, or `None` once stopped.
    pub(crate) fn next_as<V: Decoded<'a>>(&mut self) -> Option<WalkedRecord<'a, V>> {
        if self.stop.is_some() {
            return None;
        }
        let at = self.pos as u64;
        let rest = self
            .bytes
            .get(self.pos..)
            .expect("the walk starts inside the bytes and moves by whole frames read from them");
        let frame = match frame::read_frame(rest) {
            Ok(FrameRead::End) => {
                self.stop = Some(Stop::End { at });
                return None;
            }
            Err(error) => {
                self.stop = Some(Stop::BadFrame { at, error });
                return None;
            }
            Ok(FrameRead::Frame(f)) => f,
        };
        let view = match V::decode(frame.body) {
            Ok(v) => v,
            Err(e) => {
                self.stop = Some(Stop::BadRecord {
                    at,
                    kind: CorruptionKind::Record(e),
                });
                return None;
            }
        };
        if view.seq() != self.next_seq {
            self.stop = Some(Stop::BadRecord {
                at,
                kind: CorruptionKind::SeqMismatch {
                    expected: self.next_seq,
                    found: view.seq(),
                },
            });
            return None;
        }
        let recorded = view.recorded_at().as_nanos();
        if let Some(previous) = self.last_recorded_at
            && recorded < previous
        {
            self.stop = Some(Stop::BadRecord {
                at,
                kind: CorruptionKind::RecordedAtDecreased {
                    previous,
                    found: recorded,
                },
            });
            return None;
        }
        self.last_recorded_at = Some(recorded);
        self.next_seq += 1;
        self.pos += frame.len;
        Some(WalkedRecord {
            offset: at,
            frame_len: frame.len,
            commit: frame.is_commit(),
            body: frame.body,
            leaf: if self.leaves {
                leaf_hash(frame.body)
            } else {
                Hash::default()
            },
            view,
        })
    }

    /// Why the walk stopped (after `next_record` returned `None`).
    pub(crate) fn into_stop(self) -> Stop {
        self.stop.unwrap_or(Stop::End {
            at: self.pos as u64,
        })
    }
}

/// What the bytes after the last readable frame are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Nothing but zeros, or the remains of an interrupted seal (an end
    /// marker followed by part of a footer).
    Clean,
    /// The signature of an interrupted write.
    Torn,
    /// Damage that an interrupted write cannot explain.
    Corrupt(CorruptionKind),
}

/// Whether every byte of `bytes` is zero. The unused, zero-filled space
/// of an open segment (tens of MiB) is checked at every open: 64 bytes at a
/// time, OR-ed without branching so that the compiler vectorises it, where
/// a byte-by-byte `all` would not.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    let (blocks, rest) = bytes.as_chunks::<64>();
    blocks.iter().all(|block| or_of(block) == 0) && rest.iter().all(|&b| b == 0)
}

/// The OR of a block's bytes, without branches (vectorised).
fn or_of(block: &[u8; 64]) -> u8 {
    block.iter().fold(0u8, |acc, &b| acc | b)
}

/// One past the last non-zero byte of `bytes` (0 if all are zero), found
/// from the end 64 bytes at a time (see [`all_zero`]).
pub(crate) fn data_end(bytes: &[u8]) -> usize {
    let (head, blocks) = bytes.as_rchunks::<64>();
    for (i, block) in blocks.iter().enumerate().rev() {
        if or_of(block) != 0 {
            let last = block.iter().rposition(|&b| b != 0).unwrap_or(0);
            return head.len() + i * 64 + last + 1;
        }
    }
    head.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

/// Whether `rest` — the bytes of a segment from `at`, the end of its last
/// complete batch — can be what an interrupted seal left, in a segment
/// that is followed by another. Such a segment was synced whole before
/// the next one was created, so nothing but the seal's end marker and
/// footer was ever written after `at`: every non-zero byte lies where
/// they go, and each sector of the end marker's place holds the marker's
/// bytes or zeros (a sector is written whole or not at all).
pub(crate) fn interrupted_seal(rest: &[u8], at: u64) -> bool {
    use sealog_format::segment::{END_MARKER_LEN, FOOTER_LEN};
    let data_end = data_end(rest);
    if data_end > END_MARKER_LEN + FOOTER_LEN {
        return false;
    }
    let marker = sealog_format::frame::end_marker();
    // Where `at` lies in its sector: all that sector boundaries depend on.
    let phase = (at % SECTOR as u64) as usize;
    let mut from = 0usize;
    while from < END_MARKER_LEN {
        // The end of the sector holding byte `at + from`, relative to `at`.
        let sector_end = ((phase + from) / SECTOR + 1) * SECTOR - phase;
        let to = sector_end.min(END_MARKER_LEN);
        let want = marker
            .get(from..to)
            .expect("from < to <= END_MARKER_LEN, the marker's length");
        // Bytes past the end of the file were never written: zeros.
        let mut got = rest
            .get(from..to.min(rest.len()))
            .unwrap_or_default()
            .to_vec();
        got.resize(to - from, 0);
        let written = got == want;
        let unwritten = got.iter().all(|&b| b == 0);
        if !written && !unwritten {
            return false;
        }
        from = to;
    }
    true
}

/// Classifies the bytes of `image` from the point where a walk of `image`
/// stopped.
pub(crate) fn classify_tail(image: &[u8], stop: &Stop) -> Tail {
    let at = stop.at() as usize;
    match stop {
        Stop::BadRecord { kind, .. } => Tail::Corrupt(kind.clone()),
        Stop::End { .. } => {
            let rest = image.get(at..).expect("a walk of `image` stops inside it");
            if all_zero(rest) {
                return Tail::Clean;
            }
            if sealog_format::frame::is_end_marker(rest) {
                // The end marker of a seal that did not finish (the footer
                // after it may be partial): the frames before it are whole.
                return Tail::Clean;
            }
            if sector_rest_is_zero(image, at) {
                Tail::Torn
            } else {
                let sector_end = (at / SECTOR + 1) * SECTOR;
                // Only counted for the error message.
                let nonzero = image
                    .get(at..sector_end.min(image.len()))
                    .unwrap_or_default()
                    .iter()
                    .filter(|&&b| b != 0)
                    .count();
                Tail::Corrupt(CorruptionKind::ZeroedFrame {
                    nonzero: nonzero as u64,
                })
            }
        }
        Stop::BadFrame { error, .. } => {
            if matches!(error, FrameError::Incomplete { .. }) {
                return Tail::Torn;
            }
            let declared = match error {
                FrameError::BadLength { .. } => FRAME_HEADER_LEN,
                _ => frame_extent(image, at),
            };
            // The data ends inside this frame: nothing but zeros follows a
            // point before the frame's end, so no later record can be lost.
            let data_end = data_end(image);
            if data_end < at.saturating_add(declared) {
                return Tail::Torn;
            }
            let end = at.saturating_add(declared).min(image.len());
            let mut sector_start = at / SECTOR * SECTOR;
            while sector_start < end.max(at + 1) {
                if sector_rest_is_zero(image, sector_start.max(at)) {
                    return Tail::Torn;
                }
                sector_start += SECTOR;
            }
            Tail::Corrupt(CorruptionKind::Frame(error.clone()))
        }
    }
}

/// The length a frame at `at` declares (header and body), from its length field.
fn frame_extent(image: &[u8], at: usize) -> usize {
    let mut len = [0u8; 4];
    if let Some(b) = image.get(at..at + 4) {
        len.copy_from_slice(b);
    }
    FRAME_HEADER_LEN + u32::from_le_bytes(len) as usize
}

/// True if every byte from `from` to the end of its sector (or of the image)
/// is zero.
fn sector_rest_is_zero(image: &[u8], from: usize) -> bool {
    let sector_end = (from / SECTOR + 1) * SECTOR;
    image
        .get(from..sector_end.min(image.len()))
        .is_some_and(|s| s.iter().all(|&b| b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealog_format::Timestamp;

    proptest::proptest! {
        /// The block-wise zero checks answer as the byte-by-byte ones, for
        /// any length and any single non-zero byte (or none).
        #[test]
        fn zero_checks_answer_as_a_byte_by_byte_scan(
            len in 0usize..600,
            at in proptest::option::of(0usize..600),
            value in 1u8..=255,
        ) {
            let mut bytes = vec![0u8; len];
            if let Some(at) = at.filter(|&a| a < len) {
                bytes[at] = value;
            }
            proptest::prop_assert_eq!(all_zero(&bytes), bytes.iter().all(|&b| b == 0));
            proptest::prop_assert_eq!(
                data_end(&bytes),
                bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
            );
        }
    }

    fn image_with_frames(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut image = vec![0u8; HEADER_LEN];
        let mut ends = Vec::new();
        for i in 0..n {
            let event = sealog_format::Event::new(
                sealog_format::Actor::new("user", format!("u{i}")),
                "doc.read",
                sealog_format::Resource::new("doc", "1"),
                sealog_format::Outcome::Success,
            );
            let body = record::encode(
                &event,
                i as u64,
                Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64),
            )
            .unwrap();
            frame::encode_frame(&body, frame::FRAME_COMMIT, &mut image).unwrap();
            ends.push(image.len());
        }
        image.resize(image.len() + 4096, 0);
        (image, ends)
    }

    fn walk(image: &[u8]) -> (usize, Stop) {
        let mut w = FrameWalker::new(image, 0, None);
        let mut n = 0;
        while w.next_record().is_some() {
            n += 1;
        }
        (n, w.into_stop())
    }

    #[test]
    fn a_clean_segment_ends_cleanly() {
        let (image, ends) = image_with_frames(5);
        let (n, stop) = walk(&image);
        assert_eq!(n, 5);
        assert_eq!(stop.at() as usize, ends[4]);
        assert_eq!(classify_tail(&image, &stop), Tail::Clean);
    }

    #[test]
    fn a_truncated_file_is_a_torn_tail() {
        let (image, ends) = image_with_frames(5);
        for cut in ends[3] + 1..ends[4] {
            let (n, stop) = walk(&image[..cut]);
            assert_eq!(n, 4);
            assert_eq!(classify_tail(&image[..cut], &stop), Tail::Torn, "cut {cut}");
        }
    }

    #[test]
    fn an_unwritten_sector_is_a_torn_tail() {
        let (mut image, ends) = image_with_frames(60);
        // Zero from the start of frame 15 to the end of its sector: the write
        // of that sector never reached the disk.
        let start = ends[14];
        let sector_end = (start / SECTOR + 1) * SECTOR;
        image[start..sector_end].fill(0);
        let (n, stop) = walk(&image);
        assert_eq!(n, 15);
        assert!(
            image[sector_end..].iter().any(|&b| b != 0),
            "later frames remain"
        );
        assert_eq!(classify_tail(&image, &stop), Tail::Torn);
    }

    #[test]
    fn a_bit_flip_in_a_complete_frame_is_corruption() {
        let (mut image, ends) = image_with_frames(5);
        image[ends[1] + 20] ^= 0x04;
        let (n, stop) = walk(&image);
        assert_eq!(n, 2);
        assert!(matches!(
            classify_tail(&image, &stop),
            Tail::Corrupt(CorruptionKind::Frame(_))
        ));
    }

    #[test]
    fn data_that_ends_inside_the_last_frame_is_a_torn_tail() {
        let (mut image, ends) = image_with_frames(5);
        for cut in ends[3] + 13..ends[4] - 16 {
            let mut torn = image.clone();
            torn[cut..].fill(0);
            let (n, stop) = walk(&torn);
            assert_eq!(n, 4);
            assert_eq!(classify_tail(&torn, &stop), Tail::Torn, "cut {cut}");
        }
        // A complete last frame with a flipped bit is not.
        image[ends[3] + 20] ^= 1;
        let (_, stop) = walk(&image);
        assert!(matches!(classify_tail(&image, &stop), Tail::Corrupt(_)));
    }

    #[test]
    fn a_zeroed_length_before_data_is_corruption() {
        let (mut image, ends) = image_with_frames(5);
        image[ends[1]..ends[1] + 4].fill(0);
        let (n, stop) = walk(&image);
        assert_eq!(n, 2);
        assert!(matches!(
            classify_tail(&image, &stop),
            Tail::Corrupt(CorruptionKind::ZeroedFrame { .. })
        ));
    }

    #[test]
    fn the_remains_of_an_interrupted_seal_are_clean() {
        let (mut image, ends) = image_with_frames(3);
        let at = ends[2];
        image[at..at + 12].copy_from_slice(&sealog_format::frame::end_marker());
        image[at + 12..at + 100].fill(0xAB);
        let (_, stop) = walk(&image);
        assert_eq!(classify_tail(&image, &stop), Tail::Clean);
    }

    #[test]
    fn an_out_of_sequence_record_is_corruption() {
        let (image, _) = image_with_frames(3);
        let mut w = FrameWalker::new(&image, 1, None);
        assert!(w.next_record().is_none());
        assert!(matches!(
            classify_tail(&image, &w.into_stop()),
            Tail::Corrupt(CorruptionKind::SeqMismatch {
                expected: 1,
                found: 0
            })
        ));
    }
}
