//! A batch of events encoded by the appending thread, outside any lock.
//!
//! [`EncodedBatch::encode`] validates the events and encodes them into one
//! buffer, frame after frame, as they will lie in the segment; it feeds
//! every byte of each frame but the last 16 of its record (seq and recorded
//! time, not known yet) to the frame's CRC-32 and the record's leaf hash.
//! Under the log lock, [`EncodedBatch::finish`] writes those 16 bytes and
//! the CRC into their places and completes the hashes.
//!
//! Invariant: once `encode` returns, the buffer's length never changes and
//! every record's slots (frame header, CRC, trailer) lie inside it, one
//! frame after the other up to the buffer's end. `finish` relies on it, and
//! panics rather than leave a slot unwritten if it is ever broken: a frame
//! whose CRC or trailer was not written must never be queued.

use std::borrow::{Borrow, Cow};

use sealog_format::frame::{self, FRAME_COMMIT, FRAME_CRC_OFFSET, FRAME_HEADER_LEN, FrameHasher};
use sealog_format::record::{self, RECORD_TRAILER_LEN, RecordError};
use sealog_format::validate::{ValidationError, ValidationErrorKind, Validator};
use sealog_format::{Event, Hash, Timestamp};

use crate::error::{BatchError, Error, Result};
use crate::privacy::PrivacyPolicy;

/// Events encoded into their frames, waiting for their seqs.
pub(crate) struct EncodedBatch {
    bytes: Vec<u8>,
    records: Vec<EncodedRecord>,
}

/// A record of the batch, hashed up to its trailer.
struct EncodedRecord {
    /// Offset of its frame in the buffer.
    frame_at: usize,
    /// Length of the record body, trailer included.
    body_len: usize,
    /// CRC and leaf hash of the frame up to the trailer.
    hasher: FrameHasher,
    /// The event's own time, if it has one.
    time: Option<i64>,
}

/// A record of the batch once its seq is known.
pub(crate) struct FinishedRecord {
    /// Offset of its frame in the batch.
    pub frame_at: usize,
    /// Length of the frame, header included.
    pub frame_len: usize,
    /// `SHA-256(0x00 ‖ record bytes)`.
    pub leaf: Hash,
    /// The event's own time, if it has one.
    pub time: Option<i64>,
}

/// The `len` bytes at `at` of `bytes`: a slot `encode` reserved.
fn slot(bytes: &mut [u8], at: usize, len: usize) -> &mut [u8] {
    at.checked_add(len)
        .and_then(|end| bytes.get_mut(at..end))
        .expect("a slot reserved by `EncodedBatch::encode` lies inside the batch buffer")
}

impl EncodedBatch {
    /// Validates and encodes `events` (redacting secret-looking metadata
    /// as `validator` says, then applying `privacy`: what is encoded, and
    /// so hashed and proven, is the transformed event). If any event is
    /// invalid, the error lists every invalid one; a batch over `max_bytes`
    /// is refused.
    pub(crate) fn encode<E: Borrow<Event>>(
        events: impl IntoIterator<Item = E>,
        validator: &Validator,
        privacy: &PrivacyPolicy,
        max_bytes: u64,
    ) -> Result<EncodedBatch> {
        struct Encoded {
            frame_at: usize,
            body_start: usize,
            body_len: usize,
            time: Option<i64>,
        }
        let events = events.into_iter();
        let hint = events.size_hint().0;
        let mut errors = Vec::new();
        let mut bytes = Vec::with_capacity(hint * 320);
        let mut encoded: Vec<Encoded> = Vec::with_capacity(hint);
        for (index, item) in events.enumerate() {
            let borrowed = item.borrow();
            let event = match validator.check_fields(borrowed) {
                Ok(false) if privacy.is_empty() => Cow::Borrowed(borrowed),
                Ok(redact) => {
                    let mut owned = borrowed.clone();
                    if redact {
                        validator.redact(&mut owned);
                    }
                    privacy.apply(&mut owned);
                    Cow::Owned(owned)
                }
                Err(error) => {
                    errors.push(BatchError { index, error });
                    continue;
                }
            };
            if !errors.is_empty() {
                continue;
            }
            let frame_at = bytes.len();
            bytes.resize(frame_at + FRAME_HEADER_LEN, 0);
            let body_start = bytes.len();
            match record::encode_prefix(&event, &mut bytes) {
                // The metadata was serialized once, here: check its size now.
                Ok(metadata_len) => {
                    if let Err(error) = validator.check_metadata_len(metadata_len) {
                        errors.push(BatchError { index, error });
                        bytes.truncate(frame_at);
                        continue;
                    }
                }
                Err(e) => {
                    errors.push(BatchError {
                        index,
                        error: encoding_error(e),
                    });
                    bytes.truncate(frame_at);
                    continue;
                }
            }
            let body_len = bytes.len() - body_start + RECORD_TRAILER_LEN;
            bytes.resize(bytes.len() + RECORD_TRAILER_LEN, 0);
            encoded.push(Encoded {
                frame_at,
                body_start,
                body_len,
                time: event.time.map(Timestamp::as_nanos),
            });
        }
        if !errors.is_empty() {
            return Err(Error::InvalidBatch(errors));
        }
        if bytes.len() as u64 > max_bytes {
            return Err(Error::BatchTooLarge {
                bytes: bytes.len() as u64,
                max: max_bytes,
            });
        }
        // The buffer is complete: its length is fixed from here on.
        let count = encoded.len();
        let mut records = Vec::with_capacity(count);
        for (i, r) in encoded.into_iter().enumerate() {
            // The last frame of the batch carries COMMIT: the batch is atomic.
            let flags = if i + 1 == count { FRAME_COMMIT } else { 0 };
            let body_len = u32::try_from(r.body_len)
                .expect("a record is shorter than the batch, which is at most 1 GiB");
            let prefix = frame::header_prefix(body_len, flags);
            slot(&mut bytes, r.frame_at, FRAME_CRC_OFFSET).copy_from_slice(&prefix);
            let mut hasher = FrameHasher::new(&prefix);
            hasher.update(slot(
                &mut bytes,
                r.body_start,
                r.body_len - RECORD_TRAILER_LEN,
            ));
            records.push(EncodedRecord {
                frame_at: r.frame_at,
                body_len: r.body_len,
                hasher,
                time: r.time,
            });
        }
        Ok(EncodedBatch { bytes, records })
    }

    /// Number of events.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// True if the batch holds no event.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encoded size in bytes (the frames, as they will be written).
    pub(crate) fn byte_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Gives record `i` seq `first_seq + i` and `recorded_at`: writes its
    /// trailer and its frame's CRC, and passes it to `each`, in order.
    /// Returns the frames, ready to be written.
    ///
    /// Touches nothing but the batch: if it panicked (a broken invariant),
    /// whatever state `each` feeds is the caller's to discard.
    pub(crate) fn finish(
        self,
        first_seq: u64,
        recorded_at: Timestamp,
        mut each: impl FnMut(FinishedRecord),
    ) -> Vec<u8> {
        let EncodedBatch { mut bytes, records } = self;
        for (seq, r) in (first_seq..).zip(records) {
            let trailer = record::encode_trailer(seq, recorded_at);
            let trailer_at = r.frame_at + FRAME_HEADER_LEN + r.body_len - RECORD_TRAILER_LEN;
            slot(&mut bytes, trailer_at, RECORD_TRAILER_LEN).copy_from_slice(&trailer);
            let mut hasher = r.hasher;
            hasher.update(&trailer);
            let (crc, leaf) = hasher.finish();
            slot(&mut bytes, r.frame_at + FRAME_CRC_OFFSET, 4).copy_from_slice(&crc.to_le_bytes());
            each(FinishedRecord {
                frame_at: r.frame_at,
                frame_len: FRAME_HEADER_LEN + r.body_len,
                leaf,
                time: r.time,
            });
        }
        bytes
    }
}

/// An encoding failure of one event, as a validation error of that event.
fn encoding_error(e: RecordError) -> ValidationError {
    match e {
        RecordError::TooLong { field, len, max } => {
            ValidationError::new(field, ValidationErrorKind::TooLong { len, max })
        }
        other => ValidationError::json("", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealog_format::{Actor, Metadata, Outcome, Resource};

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut metadata = Metadata::new();
                metadata.insert("n".into(), (i as u64).into());
                let event = Event::new(
                    Actor::new("user", format!("u{i}")),
                    "doc.read",
                    Resource::new("doc", format!("{i}")),
                    Outcome::Success,
                )
                .with_metadata(metadata);
                if i % 2 == 0 {
                    event.with_time(Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64))
                } else {
                    event
                }
            })
            .collect()
    }

    #[test]
    fn a_finished_batch_is_byte_for_byte_the_frames_of_its_records() {
        let events = events(5);
        let batch = EncodedBatch::encode(
            &events,
            &Validator::default(),
            &PrivacyPolicy::default(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(batch.len(), 5);
        let recorded_at = Timestamp::from_nanos(1_800_000_000_000_000_000);
        let mut finished = Vec::new();
        let bytes = batch.finish(40, recorded_at, |r| finished.push(r));
        let mut expected = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let at = expected.len();
            let body = record::encode(event, 40 + i as u64, recorded_at).unwrap();
            let flags = if i == 4 { FRAME_COMMIT } else { 0 };
            frame::encode_frame(&body, flags, &mut expected).unwrap();
            let r = &finished[i];
            assert_eq!(r.frame_at, at);
            assert_eq!(r.frame_len, expected.len() - at);
            assert_eq!(r.leaf, sealog_format::merkle::leaf_hash(&body));
            assert_eq!(r.time, event.time.map(Timestamp::as_nanos));
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_invalid_event_is_listed_and_nothing_is_encoded() {
        let mut events = events(4);
        events[1].action = String::new();
        events[3].action = String::new();
        match EncodedBatch::encode(
            &events,
            &Validator::default(),
            &PrivacyPolicy::default(),
            1 << 20,
        ) {
            Err(Error::InvalidBatch(errors)) => {
                let indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
                assert_eq!(indexes, [1, 3]);
            }
            other => panic!("expected InvalidBatch, got {:?}", other.map(|b| b.len())),
        }
    }

    #[test]
    fn a_batch_over_the_limit_is_refused_with_its_size() {
        let events = events(3);
        let size = EncodedBatch::encode(
            &events,
            &Validator::default(),
            &PrivacyPolicy::default(),
            1 << 20,
        )
        .unwrap()
        .byte_len();
        match EncodedBatch::encode(
            &events,
            &Validator::default(),
            &PrivacyPolicy::default(),
            size - 1,
        ) {
            Err(Error::BatchTooLarge { bytes, max }) => assert_eq!((bytes, max), (size, size - 1)),
            other => panic!("expected BatchTooLarge, got {:?}", other.map(|b| b.len())),
        }
    }
}
