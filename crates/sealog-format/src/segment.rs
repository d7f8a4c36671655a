//! Segment files and the store manifest: fixed-size headers and footers.
//!
//! A segment file is a header, frames, and — once sealed — an end-of-frames
//! marker and a footer:
//!
//! ```text
//! 0                  SegmentHeader (128 bytes)
//! 128                frames ...
//! frames_end         end marker (12 bytes, see `frame::end_marker`)
//! frames_end + 12    SegmentFooter (176 bytes); the file ends here
//! ```
//!
//! An active (unsealed) segment has no footer; the bytes after its last frame
//! are zero (it is preallocated). Every offset in these structures derives
//! from the constants below, so the code and `docs/format.md` cannot drift.

use crate::Hash;
use crate::event::Timestamp;

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SEALOGSG";
/// Magic number near the end of a sealed segment's footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"SEALOGFT";
/// Magic number at the start of the store manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"SEALOGST";
/// Magic number at the start of the privacy-policy note.
pub const POLICY_NOTE_MAGIC: [u8; 8] = *b"SEALOGPN";
/// The segment format version this code writes.
pub const SEGMENT_VERSION: u16 = 1;
/// The oldest segment format version this code reads.
pub const MIN_SEGMENT_VERSION: u16 = 1;

/// Length of a segment header.
pub const HEADER_LEN: usize = 128;
/// Length of a segment footer.
pub const FOOTER_LEN: usize = 176;
/// Length of the end marker that precedes the footer.
pub const END_MARKER_LEN: usize = crate::frame::END_MARKER_LEN;
/// Length of the store manifest.
pub const MANIFEST_LEN: usize = 64;
/// Length of the privacy-policy note.
pub const POLICY_NOTE_LEN: usize = 64;

// Segment header field offsets.
const H_MAGIC: usize = 0;
const H_VERSION: usize = H_MAGIC + 8;
const H_LEN: usize = H_VERSION + 2;
const H_FLAGS: usize = H_LEN + 2;
const H_STORE_ID: usize = H_FLAGS + 4;
const H_SEGMENT_NO: usize = H_STORE_ID + 16;
const H_FIRST_SEQ: usize = H_SEGMENT_NO + 8;
const H_CHAIN_IN: usize = H_FIRST_SEQ + 8;
const H_CREATED_AT: usize = H_CHAIN_IN + 32;
const H_RESERVED: usize = H_CREATED_AT + 8;
const H_CRC: usize = HEADER_LEN - 4;
const _: () = assert!(H_RESERVED <= H_CRC);

// Segment footer field offsets.
const F_FIRST_SEQ: usize = 0;
const F_COUNT: usize = F_FIRST_SEQ + 8;
const F_SEGMENT_NO: usize = F_COUNT + 8;
const F_FRAMES_END: usize = F_SEGMENT_NO + 8;
const F_MIN_EVENT: usize = F_FRAMES_END + 8;
const F_MAX_EVENT: usize = F_MIN_EVENT + 8;
const F_MIN_RECORDED: usize = F_MAX_EVENT + 8;
const F_MAX_RECORDED: usize = F_MIN_RECORDED + 8;
const F_ROOT: usize = F_MAX_RECORDED + 8;
const F_CHAIN_HEAD: usize = F_ROOT + 32;
const F_STORE_ID: usize = F_CHAIN_HEAD + 32;
const F_SEALED_AT: usize = F_STORE_ID + 16;
const F_RESERVED: usize = F_SEALED_AT + 8;
const F_MAGIC: usize = F_RESERVED + 8;
const F_VERSION: usize = F_MAGIC + 8;
const F_LEN: usize = F_VERSION + 2;
const F_CRC: usize = F_LEN + 2;
const _: () = assert!(F_CRC + 4 == FOOTER_LEN);

// Manifest field offsets.
const M_MAGIC: usize = 0;
const M_VERSION: usize = M_MAGIC + 8;
const M_LEN: usize = M_VERSION + 2;
const M_FLAGS: usize = M_LEN + 2;
const M_STORE_ID: usize = M_FLAGS + 4;
const M_CREATED_AT: usize = M_STORE_ID + 16;
const M_CRC: usize = MANIFEST_LEN - 4;
const _: () = assert!(M_CREATED_AT + 8 <= M_CRC);

// Privacy-policy note field offsets.
const P_MAGIC: usize = 0;
const P_VERSION: usize = P_MAGIC + 8;
const P_LEN: usize = P_VERSION + 2;
const P_FLAGS: usize = P_LEN + 2;
const P_STORE_ID: usize = P_FLAGS + 4;
const P_COVERED: usize = P_STORE_ID + 16;
const P_NEWEST: usize = P_COVERED + 8;
const P_RESERVED: usize = P_NEWEST + 8;
const P_CRC: usize = POLICY_NOTE_LEN - 4;
const _: () = assert!(P_RESERVED <= P_CRC);

/// Why a header, footer or manifest could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StructureError {
    /// Fewer bytes than the structure needs.
    #[error("{what} is truncated: {available} of {needed} bytes")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The magic number is wrong: not a sealog file, or not this kind.
    #[error("{what} has magic {found:?}, expected {expected:?}")]
    BadMagic {
        /// Which structure.
        what: &'static str,
        /// Bytes found.
        found: [u8; 8],
        /// Bytes expected.
        expected: [u8; 8],
    },
    /// Written by a newer (or unknown) format version.
    #[error("{what} has format version {found}; this build reads versions {min}..={max}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        found: u16,
        /// Oldest supported.
        min: u16,
        /// Newest supported.
        max: u16,
    },
    /// The length field disagrees with the version's fixed length.
    #[error("{what} declares length {found}, expected {expected}")]
    BadLength {
        /// Which structure.
        what: &'static str,
        /// Declared.
        found: u64,
        /// Expected.
        expected: u64,
    },
    /// The CRC does not match.
    #[error("{what} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// Which structure.
        what: &'static str,
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// Flags or reserved bytes that this version does not define are set.
    #[error("{what} has unknown flags or non-zero reserved bytes")]
    Reserved {
        /// Which structure.
        what: &'static str,
    },
    /// Fields that cannot hold together.
    #[error("{what} is inconsistent: {reason}")]
    Inconsistent {
        /// Which structure.
        what: &'static str,
        /// Which fields disagree, and how.
        reason: &'static str,
    },
}

/// The fixed header at the start of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The store the segment belongs to.
    pub store_id: [u8; 16],
    /// The segment's position among the store's segments, from 0.
    pub segment_no: u64,
    /// The seq of the segment's first record.
    pub first_seq: u64,
    /// The chain value before the segment's first record: the store's genesis
    /// value for segment 0, otherwise the previous segment's chain head.
    pub chain_in: Hash,
    /// When the segment was created.
    pub created_at: Timestamp,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, H_MAGIC, &SEGMENT_MAGIC);
        put(&mut b, H_VERSION, &SEGMENT_VERSION.to_le_bytes());
        put(&mut b, H_LEN, &(HEADER_LEN as u16).to_le_bytes());
        put(&mut b, H_STORE_ID, &self.store_id);
        put(&mut b, H_SEGMENT_NO, &self.segment_no.to_le_bytes());
        put(&mut b, H_FIRST_SEQ, &self.first_seq.to_le_bytes());
        put(&mut b, H_CHAIN_IN, &self.chain_in);
        put(
            &mut b,
            H_CREATED_AT,
            &self.created_at.as_nanos().to_le_bytes(),
        );
        let crc = crc32fast::hash(b.get(..H_CRC).unwrap_or_default());
        put(&mut b, H_CRC, &crc.to_le_bytes());
        b
    }

    /// Reads a header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, StructureError> {
        const WHAT: &str = "segment header";
        let b = fixed::<HEADER_LEN>(bytes, WHAT)?;
        check_magic(&b, H_MAGIC, SEGMENT_MAGIC, WHAT)?;
        check_crc(&b, H_CRC, WHAT)?;
        check_version(u16_at(&b, H_VERSION), WHAT)?;
        check_len(u64::from(u16_at(&b, H_LEN)), HEADER_LEN, WHAT)?;
        if u32_at(&b, H_FLAGS) != 0
            || b.get(H_RESERVED..H_CRC)
                .is_some_and(|r| r.iter().any(|&x| x != 0))
        {
            return Err(StructureError::Reserved { what: WHAT });
        }
        Ok(SegmentHeader {
            store_id: arr(&b, H_STORE_ID),
            segment_no: u64_at(&b, H_SEGMENT_NO),
            first_seq: u64_at(&b, H_FIRST_SEQ),
            chain_in: arr(&b, H_CHAIN_IN),
            created_at: Timestamp::from_nanos(i64_at(&b, H_CREATED_AT)),
        })
    }
}

/// The footer that seals a segment: what it holds and what it commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFooter {
    /// The seq of the first record.
    pub first_seq: u64,
    /// How many records the segment holds (at least 1).
    pub record_count: u64,
    /// The segment's number (as in its header).
    pub segment_no: u64,
    /// Offset of the end-of-frames marker, i.e. the end of the last frame.
    pub frames_end: u64,
    /// Earliest event time among the records.
    pub min_event_time: Timestamp,
    /// Latest event time among the records.
    pub max_event_time: Timestamp,
    /// Recorded time of the first record.
    pub min_recorded_at: Timestamp,
    /// Recorded time of the last record.
    pub max_recorded_at: Timestamp,
    /// RFC 9162 Merkle root over the segment's records alone.
    pub merkle_root: Hash,
    /// The chain value after the segment's last record.
    pub chain_head: Hash,
    /// The store the segment belongs to.
    pub store_id: [u8; 16],
    /// When the segment was sealed.
    pub sealed_at: Timestamp,
}

impl SegmentFooter {
    /// The seq one past the segment's last record.
    pub fn end_seq(&self) -> u64 {
        self.first_seq.saturating_add(self.record_count)
    }

    /// The length of the sealed segment file.
    pub fn file_len(&self) -> u64 {
        self.frames_end + (END_MARKER_LEN + FOOTER_LEN) as u64
    }

    /// The footer's bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        put(&mut b, F_FIRST_SEQ, &self.first_seq.to_le_bytes());
        put(&mut b, F_COUNT, &self.record_count.to_le_bytes());
        put(&mut b, F_SEGMENT_NO, &self.segment_no.to_le_bytes());
        put(&mut b, F_FRAMES_END, &self.frames_end.to_le_bytes());
        put(
            &mut b,
            F_MIN_EVENT,
            &self.min_event_time.as_nanos().to_le_bytes(),
        );
        put(
            &mut b,
            F_MAX_EVENT,
            &self.max_event_time.as_nanos().to_le_bytes(),
        );
        put(
            &mut b,
            F_MIN_RECORDED,
            &self.min_recorded_at.as_nanos().to_le_bytes(),
        );
        put(
            &mut b,
            F_MAX_RECORDED,
            &self.max_recorded_at.as_nanos().to_le_bytes(),
        );
        put(&mut b, F_ROOT, &self.merkle_root);
        put(&mut b, F_CHAIN_HEAD, &self.chain_head);
        put(&mut b, F_STORE_ID, &self.store_id);
        put(
            &mut b,
            F_SEALED_AT,
            &self.sealed_at.as_nanos().to_le_bytes(),
        );
        put(&mut b, F_MAGIC, &FOOTER_MAGIC);
        put(&mut b, F_VERSION, &SEGMENT_VERSION.to_le_bytes());
        put(&mut b, F_LEN, &(FOOTER_LEN as u16).to_le_bytes());
        let crc = crc32fast::hash(b.get(..F_CRC).unwrap_or_default());
        put(&mut b, F_CRC, &crc.to_le_bytes());
        b
    }

    /// Reads the footer from the last [`FOOTER_LEN`] bytes of `file_tail`.
    pub fn decode(file_tail: &[u8]) -> Result<SegmentFooter, StructureError> {
        const WHAT: &str = "segment footer";
        let start = file_tail
            .len()
            .checked_sub(FOOTER_LEN)
            .ok_or(StructureError::Truncated {
                what: WHAT,
                needed: FOOTER_LEN,
                available: file_tail.len(),
            })?;
        let b = fixed::<FOOTER_LEN>(file_tail.get(start..).unwrap_or_default(), WHAT)?;
        check_magic(&b, F_MAGIC, FOOTER_MAGIC, WHAT)?;
        check_crc(&b, F_CRC, WHAT)?;
        check_version(u16_at(&b, F_VERSION), WHAT)?;
        check_len(u64::from(u16_at(&b, F_LEN)), FOOTER_LEN, WHAT)?;
        if u64_at(&b, F_RESERVED) != 0 {
            return Err(StructureError::Reserved { what: WHAT });
        }
        Ok(SegmentFooter {
            first_seq: u64_at(&b, F_FIRST_SEQ),
            record_count: u64_at(&b, F_COUNT),
            segment_no: u64_at(&b, F_SEGMENT_NO),
            frames_end: u64_at(&b, F_FRAMES_END),
            min_event_time: Timestamp::from_nanos(i64_at(&b, F_MIN_EVENT)),
            max_event_time: Timestamp::from_nanos(i64_at(&b, F_MAX_EVENT)),
            min_recorded_at: Timestamp::from_nanos(i64_at(&b, F_MIN_RECORDED)),
            max_recorded_at: Timestamp::from_nanos(i64_at(&b, F_MAX_RECORDED)),
            merkle_root: arr(&b, F_ROOT),
            chain_head: arr(&b, F_CHAIN_HEAD),
            store_id: arr(&b, F_STORE_ID),
            sealed_at: Timestamp::from_nanos(i64_at(&b, F_SEALED_AT)),
        })
    }

    /// The footer's CRC, which identifies this exact footer (index sidecars
    /// record it to prove which segment they describe).
    pub fn crc(&self) -> u32 {
        let b = self.encode();
        u32_at(&b, F_CRC)
    }
}

/// The store manifest (`STORE`): written once when the store is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// A random identifier unique to the store; it seeds the hash chain.
    pub store_id: [u8; 16],
    /// When the store was created.
    pub created_at: Timestamp,
}

impl Manifest {
    /// The manifest's bytes.
    pub fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        put(&mut b, M_MAGIC, &MANIFEST_MAGIC);
        put(&mut b, M_VERSION, &SEGMENT_VERSION.to_le_bytes());
        put(&mut b, M_LEN, &(MANIFEST_LEN as u16).to_le_bytes());
        put(&mut b, M_STORE_ID, &self.store_id);
        put(
            &mut b,
            M_CREATED_AT,
            &self.created_at.as_nanos().to_le_bytes(),
        );
        let crc = crc32fast::hash(b.get(..M_CRC).unwrap_or_default());
        put(&mut b, M_CRC, &crc.to_le_bytes());
        b
    }

    /// Reads a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, StructureError> {
        const WHAT: &str = "store manifest";
        if bytes.len() != MANIFEST_LEN {
            return Err(StructureError::BadLength {
                what: WHAT,
                found: bytes.len() as u64,
                expected: MANIFEST_LEN as u64,
            });
        }
        let b = fixed::<MANIFEST_LEN>(bytes, WHAT)?;
        check_magic(&b, M_MAGIC, MANIFEST_MAGIC, WHAT)?;
        check_crc(&b, M_CRC, WHAT)?;
        check_version(u16_at(&b, M_VERSION), WHAT)?;
        check_len(u64::from(u16_at(&b, M_LEN)), MANIFEST_LEN, WHAT)?;
        if u32_at(&b, M_FLAGS) != 0 {
            return Err(StructureError::Reserved { what: WHAT });
        }
        Ok(Manifest {
            store_id: arr(&b, M_STORE_ID),
            created_at: Timestamp::from_nanos(i64_at(&b, M_CREATED_AT)),
        })
    }

    /// The chain value before the store's first record.
    pub fn genesis(&self) -> Hash {
        crate::chain::genesis(&self.store_id)
    }
}

/// The privacy-policy note (`privacy-policy.note`): where the newest
/// `store.privacy_policy` record of the sealed log is, so that a reader
/// looks for a newer one only in the segments sealed since (and the open
/// ones) instead of in every segment's index. Derived data: the writer
/// rewrites it as it seals segments; a reader that cannot use it searches
/// the whole log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyNote {
    /// The store it describes (as in the manifest).
    pub store_id: [u8; 16],
    /// The records below this seq (the end of a sealed segment) were
    /// searched.
    pub covered: u64,
    /// The seq of the newest privacy-policy record below `covered`, if
    /// there is one.
    pub newest: Option<u64>,
}

impl PolicyNote {
    /// The note's bytes.
    pub fn encode(&self) -> [u8; POLICY_NOTE_LEN] {
        let mut b = [0u8; POLICY_NOTE_LEN];
        put(&mut b, P_MAGIC, &POLICY_NOTE_MAGIC);
        put(&mut b, P_VERSION, &SEGMENT_VERSION.to_le_bytes());
        put(&mut b, P_LEN, &(POLICY_NOTE_LEN as u16).to_le_bytes());
        put(&mut b, P_STORE_ID, &self.store_id);
        put(&mut b, P_COVERED, &self.covered.to_le_bytes());
        put(
            &mut b,
            P_NEWEST,
            &self.newest.unwrap_or(u64::MAX).to_le_bytes(),
        );
        let crc = crc32fast::hash(b.get(..P_CRC).unwrap_or_default());
        put(&mut b, P_CRC, &crc.to_le_bytes());
        b
    }

    /// Reads a note: magic, CRC, version, length, zero flags and reserved
    /// bytes, and a newest record below the seq it covers.
    pub fn decode(bytes: &[u8]) -> Result<PolicyNote, StructureError> {
        const WHAT: &str = "privacy-policy note";
        if bytes.len() != POLICY_NOTE_LEN {
            return Err(StructureError::BadLength {
                what: WHAT,
                found: bytes.len() as u64,
                expected: POLICY_NOTE_LEN as u64,
            });
        }
        let b = fixed::<POLICY_NOTE_LEN>(bytes, WHAT)?;
        check_magic(&b, P_MAGIC, POLICY_NOTE_MAGIC, WHAT)?;
        check_crc(&b, P_CRC, WHAT)?;
        check_version(u16_at(&b, P_VERSION), WHAT)?;
        check_len(u64::from(u16_at(&b, P_LEN)), POLICY_NOTE_LEN, WHAT)?;
        if u32_at(&b, P_FLAGS) != 0
            || b.get(P_RESERVED..P_CRC)
                .is_some_and(|r| r.iter().any(|&x| x != 0))
        {
            return Err(StructureError::Reserved { what: WHAT });
        }
        let covered = u64_at(&b, P_COVERED);
        let newest = match u64_at(&b, P_NEWEST) {
            u64::MAX => None,
            seq if seq < covered => Some(seq),
            _ => {
                return Err(StructureError::Inconsistent {
                    what: WHAT,
                    reason: "the newest record it names is not below the seq it covers",
                });
            }
        };
        Ok(PolicyNote {
            store_id: arr(&b, P_STORE_ID),
            covered,
            newest,
        })
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = buf.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

fn arr<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(arr(buf, at))
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(buf, at))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(buf, at))
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(arr(buf, at))
}

fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], StructureError> {
    match bytes.get(..N) {
        Some(b) => Ok(arr(b, 0)),
        None => Err(StructureError::Truncated {
            what,
            needed: N,
            available: bytes.len(),
        }),
    }
}

fn check_magic(
    b: &[u8],
    at: usize,
    expected: [u8; 8],
    what: &'static str,
) -> Result<(), StructureError> {
    let found: [u8; 8] = arr(b, at);
    if found != expected {
        return Err(StructureError::BadMagic {
            what,
            found,
            expected,
        });
    }
    Ok(())
}

fn check_crc(b: &[u8], crc_at: usize, what: &'static str) -> Result<(), StructureError> {
    let stored = u32_at(b, crc_at);
    let computed = crc32fast::hash(b.get(..crc_at).unwrap_or_default());
    if stored != computed {
        return Err(StructureError::ChecksumMismatch {
            what,
            stored,
            computed,
        });
    }
    Ok(())
}

fn check_version(found: u16, what: &'static str) -> Result<(), StructureError> {
    if !(MIN_SEGMENT_VERSION..=SEGMENT_VERSION).contains(&found) {
        return Err(StructureError::UnsupportedVersion {
            what,
            found,
            min: MIN_SEGMENT_VERSION,
            max: SEGMENT_VERSION,
        });
    }
    Ok(())
}

fn check_len(found: u64, expected: usize, what: &'static str) -> Result<(), StructureError> {
    if found != expected as u64 {
        return Err(StructureError::BadLength {
            what,
            found,
            expected: expected as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            store_id: [7; 16],
            segment_no: 3,
            first_seq: 1000,
            chain_in: [9; 32],
            created_at: Timestamp::from_nanos(123),
        }
    }

    fn footer() -> SegmentFooter {
        SegmentFooter {
            first_seq: 1000,
            record_count: 10,
            segment_no: 3,
            frames_end: 4000,
            min_event_time: Timestamp::from_nanos(-5),
            max_event_time: Timestamp::from_nanos(50),
            min_recorded_at: Timestamp::from_nanos(10),
            max_recorded_at: Timestamp::from_nanos(20),
            merkle_root: [1; 32],
            chain_head: [2; 32],
            store_id: [7; 16],
            sealed_at: Timestamp::from_nanos(30),
        }
    }

    #[test]
    fn headers_footers_and_manifests_round_trip() {
        let h = header();
        assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
        let f = footer();
        let mut file_tail = vec![0xAA; 40];
        file_tail.extend_from_slice(&f.encode());
        assert_eq!(SegmentFooter::decode(&file_tail).unwrap(), f);
        assert_eq!(f.file_len(), 4000 + 12 + 176);
        let m = Manifest {
            store_id: [5; 16],
            created_at: Timestamp::from_nanos(77),
        };
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn a_policy_note_round_trips_and_damage_is_refused() {
        for newest in [None, Some(0), Some(41)] {
            let note = PolicyNote {
                store_id: [9; 16],
                covered: 42,
                newest,
            };
            let bytes = note.encode();
            assert_eq!(PolicyNote::decode(&bytes).unwrap(), note);
            // Every byte is covered: by the CRC, or (the CRC itself) by it.
            for i in 0..POLICY_NOTE_LEN {
                let mut damaged = bytes;
                damaged[i] ^= 0x10;
                assert!(PolicyNote::decode(&damaged).is_err(), "byte {i}");
            }
        }
        let past = PolicyNote {
            store_id: [9; 16],
            covered: 42,
            newest: Some(42),
        };
        assert!(matches!(
            PolicyNote::decode(&past.encode()),
            Err(StructureError::Inconsistent { .. })
        ));
        let mut reserved = past.encode();
        reserved[P_NEWEST..P_NEWEST + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        reserved[P_RESERVED] = 1;
        let crc = crc32fast::hash(&reserved[..P_CRC]);
        reserved[P_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            PolicyNote::decode(&reserved),
            Err(StructureError::Reserved {
                what: "privacy-policy note"
            })
        );
        assert!(PolicyNote::decode(&past.encode()[..63]).is_err());
    }

    #[test]
    fn magic_sits_where_the_spec_says() {
        let h = header().encode();
        assert_eq!(&h[0..8], b"SEALOGSG");
        assert_eq!(&h[8..10], &[1, 0]);
        assert_eq!(&h[10..12], &[128, 0]);
        let f = footer().encode();
        assert_eq!(&f[160..168], b"SEALOGFT");
        assert_eq!(&f[170..172], &[176, 0]);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let h = header().encode();
        for i in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut bad = h;
                bad[i] ^= 1 << bit;
                assert!(
                    SegmentHeader::decode(&bad).is_err(),
                    "header flip at {i}.{bit}"
                );
            }
        }
        let f = footer().encode();
        for i in 0..FOOTER_LEN {
            for bit in 0..8 {
                let mut bad = f;
                bad[i] ^= 1 << bit;
                assert!(
                    SegmentFooter::decode(&bad).is_err(),
                    "footer flip at {i}.{bit}"
                );
            }
        }
    }

    #[test]
    fn newer_versions_are_refused_with_the_supported_range() {
        let mut h = header().encode();
        h[8] = 2;
        let crc = crc32fast::hash(&h[..124]);
        h[124..].copy_from_slice(&crc.to_le_bytes());
        let err = SegmentHeader::decode(&h).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }
}
