//! `frame_record`: frame decoding and record decoding, and the round trip.
//!
//! The input is read twice: as a run of frames (as a segment holds them
//! after its header), and as one bare record body. Properties:
//!
//! - a frame that reads re-encodes (same body, same flags) to exactly the
//!   bytes it was read from;
//! - a record that decodes converts to an owned [`sealog_format::Record`],
//!   and that record encodes to a body that decodes to the same record;
//!   when the metadata text is in the compact form the encoder writes (the
//!   only form sealog ever writes), the re-encoded body equals the input
//!   byte for byte.

use sealog_format::frame::{self, FrameRead};
use sealog_format::record;

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let mut rest = data;
    while let Ok(FrameRead::Frame(f)) = frame::read_frame(rest) {
        let mut again = Vec::with_capacity(f.len);
        if let Err(e) = frame::encode_frame(f.body, f.flags, &mut again) {
            panic!("a frame that reads does not re-encode: {e}");
        }
        assert_eq!(
            again.as_slice(),
            rest.get(..f.len).unwrap_or_default(),
            "a frame re-encodes to other bytes"
        );
        record_round_trip(f.body);
        rest = rest.get(f.len..).unwrap_or_default();
    }
    record_round_trip(data);
}

/// Checks the record properties for one body.
pub fn record_round_trip(body: &[u8]) {
    let Ok(view) = record::decode(body) else {
        return;
    };
    let _ = view.event_time();
    let owned = match view.to_record() {
        Ok(r) => r,
        Err(e) => panic!("a record that decodes has no owned form: {e}"),
    };
    let encoded = match record::encode_record(&owned) {
        Ok(b) => b,
        Err(e) => panic!("a decoded record does not re-encode: {e}"),
    };
    let again = match record::decode_record(&encoded) {
        Ok(r) => r,
        Err(e) => panic!("a re-encoded record does not decode: {e}"),
    };
    assert_eq!(again, owned, "a record changes through encode/decode");
    let canonical_metadata = match (view.metadata, &owned.event.metadata) {
        (Some(text), Some(map)) => serde_json::to_string(map).ok().as_deref() == Some(text),
        _ => true,
    };
    if canonical_metadata {
        assert_eq!(encoded, body, "a record re-encodes to other bytes");
    }
}
