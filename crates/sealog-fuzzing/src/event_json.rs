//! `event_json`: events from JSON and NDJSON, validation, and the record
//! round trip.
//!
//! The input is parsed as one JSON event ([`Event::from_json`], as
//! `sealog append --json` does) and, line by line, as NDJSON the way
//! `sealog import` does ([`Event::from_record_json`]: an exported record's
//! `seq` and `recorded_at` are dropped, the recorded time becoming the
//! `time` of an event without one).
//! Every event that parses is checked by the default [`Validator`] (secret
//! guard included). Properties of an event that passes:
//!
//! - its record body (any seq, any recorded time) decodes to the same
//!   event, seq and time;
//! - the store's own path agrees: `check_fields` accepts it, and its
//!   metadata fits the limit that `check_metadata_len` enforces;
//! - its JSON form parses back to the same event.

use sealog_format::{Event, Timestamp, Validator, record};

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let validator = Validator::default();
    if let Ok(event) = Event::from_json(data) {
        check(&validator, event, 0);
    }
    for (n, line) in data.split(|&b| b == b'\n').take(64).enumerate() {
        if let Some(event) = import_line(line) {
            check(&validator, event, n as u64);
        }
    }
}

/// Parses one NDJSON line as `sealog import` does.
fn import_line(line: &[u8]) -> Option<Event> {
    let (mut event, seq, recorded_at) = Event::from_record_json(line).ok()?;
    match (seq, recorded_at) {
        (None, None) => Some(event),
        (Some(_), Some(recorded_at)) => {
            event.time.get_or_insert(recorded_at);
            Some(event)
        }
        _ => None,
    }
}

fn check(validator: &Validator, mut event: Event, seq: u64) {
    let redacts = validator.check_fields(&event).ok();
    if validator.validate(&mut event).is_err() {
        return;
    }
    let Some(redacts) = redacts else {
        panic!("validate accepts an event check_fields refuses: {event:?}");
    };
    if redacts {
        // validate() redacted it; the redacted event must now be clean.
        assert_eq!(
            validator.check_fields(&event).ok(),
            Some(false),
            "a redacted event still needs redaction"
        );
    }
    let recorded_at = Timestamp::from_nanos(1_700_000_000_000_000_000 + seq as i64);
    let body = match record::encode(&event, seq, recorded_at) {
        Ok(b) => b,
        Err(e) => panic!("a valid event does not encode: {e}: {event:?}"),
    };
    let mut prefix = Vec::new();
    match record::encode_prefix(&event, &mut prefix) {
        Ok(len) => assert!(
            validator.check_metadata_len(len).is_ok(),
            "validate and the store disagree on the metadata size"
        ),
        Err(e) => panic!("a valid event has no record prefix: {e}"),
    }
    let decoded = match record::decode_record(&body) {
        Ok(r) => r,
        Err(e) => panic!("a valid event's record does not decode: {e}"),
    };
    assert_eq!(decoded.event, event, "an event changes through its record");
    assert_eq!((decoded.seq, decoded.recorded_at), (seq, recorded_at));
    let json = match serde_json::to_vec(&event) {
        Ok(j) => j,
        Err(e) => panic!("a valid event has no JSON form: {e}"),
    };
    match Event::from_json(&json) {
        Ok(back) => assert_eq!(back, event, "an event changes through JSON"),
        Err(e) => panic!("an event's JSON does not parse back: {e}"),
    }
}
