//! Frames: how record bodies are laid end to end inside a segment.
//!
//! ```text
//! offset  size  field
//! 0       4     body length (u32, 1..=MAX_RECORD_LEN; 0 marks the end of frames)
//! 4       1     flags: bit 0 COMMIT = last record of an atomic batch
//! 5       3     reserved, zero
//! 8       4     CRC-32 (ISO-HDLC, as crc32fast) of bytes 0..8 and the body
//! 12      len   record body
//! ```
//!
//! A sealed segment ends its frames with an *end marker*: a frame header
//! with length 0, flags `END` (0x80) and the CRC of its first 8 bytes. It
//! tells the end of a sealed segment apart from zeroed or unwritten bytes.
//!
//! The CRC detects torn and damaged writes; it is not a security measure
//! (tamper evidence comes from the hash chain and the Merkle tree). The COMMIT
//! flag makes batches atomic: recovery keeps frames only up to the last
//! complete frame that has it.

use sha2::{Digest, Sha256};

use crate::Hash;
use crate::merkle::LEAF_PREFIX;
use crate::record::MAX_RECORD_LEN;

/// Bytes of the frame header.
pub const FRAME_HEADER_LEN: usize = 12;
/// Offset of the CRC within the frame header.
pub const FRAME_CRC_OFFSET: usize = 8;
/// The frame ends an atomic batch.
pub const FRAME_COMMIT: u8 = 1;
/// Every frame flag a record frame may carry.
pub const KNOWN_FRAME_FLAGS: u8 = FRAME_COMMIT;
/// The flag of the end marker (a frame header of length 0).
pub const FRAME_END: u8 = 0x80;
/// Length of the end marker.
pub const END_MARKER_LEN: usize = FRAME_HEADER_LEN;

/// The end marker that closes the frames of a sealed segment.
pub fn end_marker() -> [u8; END_MARKER_LEN] {
    let prefix = header_prefix(0, FRAME_END);
    let mut marker = [0u8; END_MARKER_LEN];
    let (head, crc) = marker.split_at_mut(FRAME_CRC_OFFSET);
    head.copy_from_slice(&prefix);
    crc.copy_from_slice(&crc32fast::hash(&prefix).to_le_bytes());
    marker
}

/// True if `bytes` starts with the end marker.
pub fn is_end_marker(bytes: &[u8]) -> bool {
    bytes.get(..END_MARKER_LEN) == Some(&end_marker()[..])
}

/// The first 8 bytes of a frame header, which the CRC covers.
pub fn header_prefix(body_len: u32, flags: u8) -> [u8; FRAME_CRC_OFFSET] {
    let mut h = [0u8; FRAME_CRC_OFFSET];
    let (len, rest) = h.split_at_mut(4);
    len.copy_from_slice(&body_len.to_le_bytes());
    if let Some(f) = rest.first_mut() {
        *f = flags;
    }
    h
}

/// The CRC of a frame with the given header prefix and body.
pub fn frame_crc(prefix: &[u8; FRAME_CRC_OFFSET], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix);
    h.update(body);
    h.finalize()
}

/// Appends a complete frame for `body` to `out`.
///
/// Panics never; a body outside `1..=MAX_RECORD_LEN` is the caller's bug and
/// is reported as an error.
pub fn encode_frame(body: &[u8], flags: u8, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = checked_len(body.len())?;
    let prefix = header_prefix(len, flags);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&frame_crc(&prefix, body).to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn checked_len(len: usize) -> Result<u32, FrameError> {
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(FrameError::BadLength { len: len as u64 });
    }
    u32::try_from(len).map_err(|_| FrameError::BadLength { len: len as u64 })
}

/// Computes a frame's CRC and its record's Merkle leaf hash in one pass,
/// fed in pieces: the writer hashes the body it has encoded, then finishes
/// with the 16-byte trailer once the store has assigned seq and time.
#[derive(Clone, Debug)]
pub struct FrameHasher {
    crc: crc32fast::Hasher,
    leaf: Sha256,
}

impl FrameHasher {
    /// Starts a frame whose header prefix (length and flags) is `prefix`.
    pub fn new(prefix: &[u8; FRAME_CRC_OFFSET]) -> FrameHasher {
        let mut crc = crc32fast::Hasher::new();
        crc.update(prefix);
        let mut leaf = Sha256::new();
        leaf.update([LEAF_PREFIX]);
        FrameHasher { crc, leaf }
    }

    /// Feeds the next bytes of the record body.
    pub fn update(&mut self, body_part: &[u8]) {
        self.crc.update(body_part);
        self.leaf.update(body_part);
    }

    /// The frame CRC and the record's leaf hash (`SHA-256(0x00 ‖ body)`).
    pub fn finish(self) -> (u32, Hash) {
        (self.crc.finalize(), self.leaf.finalize().into())
    }
}

/// A frame that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field is out of range.
    #[error("frame length {len} is outside 1..={MAX_RECORD_LEN}")]
    BadLength {
        /// The length read.
        len: u64,
    },
    /// The frame runs past the end of the available bytes.
    #[error("frame needs {needed} bytes but only {available} remain")]
    Incomplete {
        /// Bytes the frame needs (header and body).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Reserved bits or bytes are set.
    #[error("frame flags {flags:#04x} or reserved bytes {reserved:?} are not valid")]
    BadFlags {
        /// The flags byte.
        flags: u8,
        /// The reserved bytes.
        reserved: [u8; 3],
    },
    /// The CRC does not match.
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
}

/// One frame, read from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's flags.
    pub flags: u8,
    /// The record body.
    pub body: &'a [u8],
    /// Bytes the whole frame occupies (header and body).
    pub len: usize,
}

impl Frame<'_> {
    /// True when the frame ends an atomic batch.
    pub fn is_commit(&self) -> bool {
        self.flags & FRAME_COMMIT != 0
    }
}

/// What is found at a position where a frame may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A complete, checksummed frame.
    Frame(Frame<'a>),
    /// A zero length field (an end marker, or zeros), or the end of the
    /// bytes: no more frames.
    End,
}

/// Reads the frame at the start of `bytes`.
pub fn read_frame(bytes: &[u8]) -> Result<FrameRead<'_>, FrameError> {
    let Some(len_bytes) = bytes.get(..4) else {
        // Fewer than 4 bytes left: the end, unless a length was being written.
        if bytes.iter().all(|&b| b == 0) {
            return Ok(FrameRead::End);
        }
        return Err(FrameError::Incomplete {
            needed: 4,
            available: bytes.len(),
        });
    };
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(len_bytes);
    let body_len = u32::from_le_bytes(len4);
    if body_len == 0 {
        return Ok(FrameRead::End);
    }
    if body_len as usize > MAX_RECORD_LEN {
        return Err(FrameError::BadLength {
            len: u64::from(body_len),
        });
    }
    let total = FRAME_HEADER_LEN + body_len as usize;
    let Some(frame) = bytes.get(..total) else {
        return Err(FrameError::Incomplete {
            needed: total,
            available: bytes.len(),
        });
    };
    let (header, body) = frame.split_at(FRAME_HEADER_LEN);
    let mut prefix = [0u8; FRAME_CRC_OFFSET];
    prefix.copy_from_slice(header.get(..FRAME_CRC_OFFSET).unwrap_or_default());
    let mut crc4 = [0u8; 4];
    crc4.copy_from_slice(header.get(FRAME_CRC_OFFSET..).unwrap_or_default());
    let stored = u32::from_le_bytes(crc4);
    let computed = frame_crc(&prefix, body);
    if stored != computed {
        return Err(FrameError::ChecksumMismatch { stored, computed });
    }
    let [_, _, _, _, flags, r0, r1, r2] = prefix;
    if flags & !KNOWN_FRAME_FLAGS != 0 || [r0, r1, r2] != [0, 0, 0] {
        return Err(FrameError::BadFlags {
            flags,
            reserved: [r0, r1, r2],
        });
    }
    Ok(FrameRead::Frame(Frame {
        flags,
        body,
        len: total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_frame(b"hello", 0, &mut buf).unwrap();
        encode_frame(b"world!", FRAME_COMMIT, &mut buf).unwrap();
        let FrameRead::Frame(a) = read_frame(&buf).unwrap() else {
            panic!()
        };
        assert_eq!((a.body, a.flags, a.len), (&b"hello"[..], 0, 17));
        let FrameRead::Frame(b) = read_frame(&buf[a.len..]).unwrap() else {
            panic!()
        };
        assert_eq!(b.body, b"world!");
        assert!(b.is_commit());
        assert_eq!(read_frame(&buf[a.len + b.len..]).unwrap(), FrameRead::End);
        assert_eq!(read_frame(&[0, 0, 0, 0, 9, 9]).unwrap(), FrameRead::End);
        assert_eq!(read_frame(&end_marker()).unwrap(), FrameRead::End);
        assert_eq!(read_frame(&[0, 0]).unwrap(), FrameRead::End);
        assert!(matches!(
            read_frame(&[7, 0]),
            Err(FrameError::Incomplete { .. })
        ));
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode_frame(b"hello", FRAME_COMMIT, &mut buf).unwrap();
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                match read_frame(&bad) {
                    Err(_) => {}
                    // Clearing length bits to zero reads as the end of frames, which
                    // recovery treats as a torn tail; never as a valid frame.
                    Ok(FrameRead::End) => assert!(i < 4),
                    Ok(FrameRead::Frame(f)) => panic!("flip at {i}.{bit} accepted: {f:?}"),
                }
            }
        }
        assert!(matches!(
            read_frame(&buf[..10]),
            Err(FrameError::Incomplete { .. })
        ));
    }

    #[test]
    fn empty_and_oversized_bodies_are_refused() {
        let mut buf = Vec::new();
        assert!(encode_frame(b"", 0, &mut buf).is_err());
        let big = vec![0u8; MAX_RECORD_LEN + 1];
        assert!(encode_frame(&big, 0, &mut buf).is_err());
        assert!(buf.is_empty());
        let header = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            read_frame(&header),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn the_end_marker_is_a_checksummed_empty_frame_header() {
        let m = end_marker();
        assert_eq!(&m[..8], &[0, 0, 0, 0, 0x80, 0, 0, 0]);
        assert_eq!(&m[8..], &crc32fast::hash(&m[..8]).to_le_bytes());
        assert!(is_end_marker(&m));
        assert!(!is_end_marker(&[0u8; 12]));
    }

    #[test]
    fn the_frame_hasher_matches_the_one_shot_functions() {
        let body = b"some record body bytes";
        let prefix = header_prefix(body.len() as u32, FRAME_COMMIT);
        let mut h = FrameHasher::new(&prefix);
        h.update(&body[..5]);
        h.update(&body[5..]);
        let (crc, leaf) = h.finish();
        assert_eq!(crc, frame_crc(&prefix, body));
        assert_eq!(leaf, crate::merkle::leaf_hash(body));
    }

    proptest! {
        #[test]
        fn read_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_frame(&bytes);
        }
    }
}
