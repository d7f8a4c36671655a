//! `server_ingest`: request bodies of `POST /v1/events`, parsed by
//! `sealog_server::ingest::parse`.
//!
//! The input is a framing byte (low bit: JSON, one event or an array, or
//! NDJSON), a byte giving the most events a batch may hold (1 to 16), two
//! bytes (little-endian, plus one) giving the largest event in bytes, then
//! the body. A model splits the body as the server documents it (the
//! array's elements, the one object, or the non-blank lines) and parses
//! every piece with [`Event::from_json`].
//!
//! Properties, beyond no panic:
//!
//! - a body that is not UTF-8 is refused as `invalid_utf8`, naming the
//!   offset of the first bad byte (and its line, for NDJSON);
//! - a batch is accepted exactly when every piece parses, fits the event
//!   limit and there are between one and the batch limit of them; it holds
//!   the pieces' events in order (as `Event::from_json` reads them: the
//!   server's fast path agrees with it), with their NDJSON lines;
//! - a batch of well-formed events is never refused for their content:
//!   those rules (lengths, syntax, the secret guard) are the engine's to
//!   apply in `append_batch`, as the module documents; when a batch is
//!   refused, `invalid_events` lists every piece that did not parse or is
//!   too large and every parsed event the validator refuses, one entry per
//!   event, in index order, each with the field the parser or validator
//!   named and a reason (and the line, for NDJSON);
//! - every other refusal has the code the model predicts (`empty_body`,
//!   `empty_batch`, `malformed_json`, `too_many_events`, `event_too_large`);
//! - the valid events of a batch, serialised again as one object, an array
//!   and NDJSON, parse back to the same events, under generous limits and
//!   under the input's limits whenever they fit.

use sealog::format::validate::Validator;
use sealog::format::{Event, ValidationError};
use sealog_server::ingest::{self, Framing};
use sealog_server::{ApiError, Limits};
use serde_json::Value;
use serde_json::value::RawValue;

/// One event's text in a body, as the server documents the framings.
struct Piece<'a> {
    text: &'a [u8],
    line: Option<u64>,
}

/// What the model expects of a body.
enum Expect<'a> {
    /// These pieces, checked one by one.
    Pieces(Vec<Piece<'a>>),
    /// Refused outright with this code.
    Refused(&'static str),
    /// Refused as `too_many_events`, saying it holds this many.
    TooMany(usize),
}

fn model<'a>(body: &'a [u8], framing: Framing, limits: &Limits) -> Expect<'a> {
    let max_events = usize::try_from(limits.max_batch_events).unwrap_or(usize::MAX);
    let max_event = usize::try_from(limits.max_event_bytes).unwrap_or(usize::MAX);
    let pieces: Vec<Piece<'a>> = match framing {
        Framing::Ndjson => body
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(n, line)| Piece {
                text: line.strip_suffix(b"\r").unwrap_or(line),
                line: Some(n as u64 + 1),
            })
            .filter(|p| !p.text.iter().all(u8::is_ascii_whitespace))
            .collect(),
        Framing::Json => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Expect::Refused("empty_body"),
            Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(body) {
                Ok(raws) => raws
                    .into_iter()
                    .map(|raw| Piece {
                        text: raw.get().as_bytes(),
                        line: None,
                    })
                    .collect(),
                Err(_) => return Expect::Refused("malformed_json"),
            },
            Some(b'{') => match serde_json::from_slice::<&RawValue>(body) {
                Ok(raw) if raw.get().len() > max_event => {
                    return Expect::Refused("event_too_large");
                }
                Ok(raw) => vec![Piece {
                    text: raw.get().as_bytes(),
                    line: None,
                }],
                Err(_) => return Expect::Refused("malformed_json"),
            },
            Some(_) => return Expect::Refused("malformed_json"),
        },
    };
    if pieces.is_empty() {
        return Expect::Refused("empty_batch");
    }
    if pieces.len() > max_events {
        return Expect::TooMany(pieces.len());
    }
    Expect::Pieces(pieces)
}

/// The field an `invalid_events` entry must name for `e`.
fn field_of(e: &ValidationError) -> &str {
    match e.field() {
        "?" => "",
        f => f,
    }
}

fn limits_of(max_events: u64, max_event_bytes: u64) -> Limits {
    Limits {
        max_batch_events: max_events,
        max_event_bytes,
        ..Limits::default()
    }
}

fn check_refusal(e: &ApiError, code: &str, limits: &Limits) {
    assert_eq!(e.code, code, "{e}");
    let _ = e.body().to_string();
    match code {
        "too_many_events" => {
            assert_eq!(e.status.as_u16(), 413);
            assert_eq!(e.details["max_batch_events"], limits.max_batch_events);
        }
        "event_too_large" => assert_eq!(e.status.as_u16(), 413),
        "malformed_json" if e.details.contains_key("line") => {
            assert!(e.details["line"].as_u64().is_some_and(|l| l > 0), "{e}");
        }
        _ => assert_eq!(e.status.as_u16(), 400, "{e}"),
    }
}

/// Checks the `invalid_events` list against the pieces.
fn check_invalid_events(e: &ApiError, pieces: &[Piece<'_>], max_event: usize) {
    let validator = Validator::default();
    // The entry each piece must have, if any: (field, from the parser).
    let expected: Vec<Option<String>> = pieces
        .iter()
        .map(|p| {
            if p.text.len() > max_event {
                return Some(String::new());
            }
            match Event::from_json(p.text) {
                Err(err) => Some(field_of(&err).to_owned()),
                Ok(mut event) => validator
                    .validate(&mut event)
                    .err()
                    .map(|err| field_of(&err).to_owned()),
            }
        })
        .collect();
    let Some(Value::Array(list)) = e.details.get("errors") else {
        panic!("invalid_events without a list: {e}");
    };
    let mut listed = Vec::new();
    for entry in list {
        let index = entry["index"]
            .as_u64()
            .and_then(|i| usize::try_from(i).ok());
        let Some(index) = index else {
            panic!("an entry without an index: {entry}");
        };
        let Some(piece) = pieces.get(index) else {
            panic!("an entry for event {index} of {}: {entry}", pieces.len());
        };
        assert_eq!(
            entry.get("line").and_then(Value::as_u64),
            piece.line,
            "an entry's line is wrong: {entry}"
        );
        assert!(
            entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "an entry without a reason: {entry}"
        );
        let Some(want) = expected.get(index).cloned().flatten() else {
            panic!("event {index} is listed but is valid: {entry}");
        };
        assert_eq!(entry["field"].as_str(), Some(want.as_str()), "{entry}");
        listed.push(index);
    }
    let want: Vec<usize> = (0..pieces.len())
        .filter(|&i| expected.get(i).is_some_and(Option::is_some))
        .collect();
    assert_eq!(listed, want, "the list of bad events is wrong: {e}");
}

fn check_batch(batch: &ingest::Batch, pieces: &[Piece<'_>], max_event: usize) {
    assert_eq!(batch.events.len(), pieces.len(), "events were dropped");
    for (k, (event, piece)) in batch.events.iter().zip(pieces).enumerate() {
        assert!(piece.text.len() <= max_event, "an event over the limit");
        match Event::from_json(piece.text) {
            Ok(e) => assert_eq!(&e, event, "the fast path reads another event"),
            Err(e) => panic!("accepted an event Event::from_json refuses: {e}"),
        }
        assert_eq!(batch.line(k), piece.line);
    }
    assert_eq!(
        batch.lines.is_some(),
        pieces.first().is_some_and(|p| p.line.is_some())
    );
}

/// Serialises valid events three ways and parses them back.
fn round_trip(events: &[Event], limits: &Limits) {
    let validator = Validator::default();
    let valid: Vec<&Event> = events
        .iter()
        .filter(|e| validator.check_fields(e).ok() == Some(false))
        .filter(|e| validator.validate(&mut (*e).clone()).is_ok())
        .collect();
    if valid.is_empty() {
        return;
    }
    let texts: Vec<Vec<u8>> = valid
        .iter()
        .map(|e| match serde_json::to_vec(e) {
            Ok(t) => t,
            Err(err) => panic!("a valid event has no JSON form: {err}"),
        })
        .collect();
    let mut bodies = vec![(Framing::Ndjson, texts.join(&b'\n'))];
    let mut array = b"[".to_vec();
    array.extend(texts.join(&b','));
    array.push(b']');
    bodies.push((Framing::Json, array));
    if let [one] = texts.as_slice() {
        bodies.push((Framing::Json, one.clone()));
    }
    let fits = u64::try_from(texts.len()).is_ok_and(|n| n <= limits.max_batch_events)
        && texts
            .iter()
            .all(|t| u64::try_from(t.len()).is_ok_and(|n| n <= limits.max_event_bytes));
    let generous = limits_of(1 << 20, 1 << 30);
    for (framing, body) in &bodies {
        for (limits, must) in [(&generous, true), (limits, fits)] {
            match ingest::parse(body, *framing, limits, &validator) {
                Ok(batch) => {
                    let back: Vec<&Event> = batch.events.iter().collect();
                    assert_eq!(back, valid, "events change through {framing:?}");
                }
                Err(e) => assert!(!must, "serialised valid events are refused: {e}"),
            }
        }
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let [flags, events, lo, hi, body @ ..] = data else {
        return;
    };
    let framing = if flags & 1 == 0 {
        Framing::Json
    } else {
        Framing::Ndjson
    };
    let max_event = usize::from(u16::from_le_bytes([*lo, *hi])) + 1;
    let limits = limits_of(u64::from(events % 16) + 1, max_event as u64);
    let validator = Validator::default();
    let result = ingest::parse(body, framing, &limits, &validator);
    if let Err(utf8) = std::str::from_utf8(body) {
        let Err(e) = result else {
            panic!("a body that is not UTF-8 was accepted");
        };
        assert_eq!(e.code, "invalid_utf8", "{e}");
        assert_eq!(e.details["offset"], utf8.valid_up_to());
        assert_eq!(e.details.contains_key("line"), framing == Framing::Ndjson);
        return;
    }
    match (model(body, framing, &limits), result) {
        (Expect::Refused(code), Err(e)) => check_refusal(&e, code, &limits),
        (Expect::TooMany(n), Err(e)) => {
            check_refusal(&e, "too_many_events", &limits);
            assert_eq!(e.details["batch_events"], n as u64, "{e}");
        }
        (Expect::Refused(code), Ok(b)) => {
            panic!(
                "accepted {} event(s) the model refuses as {code}",
                b.events.len()
            )
        }
        (Expect::TooMany(n), Ok(b)) => {
            panic!(
                "accepted {} event(s) of a body of {n}, over the limit",
                b.events.len()
            )
        }
        (Expect::Pieces(pieces), Ok(batch)) => {
            check_batch(&batch, &pieces, max_event);
            round_trip(&batch.events, &limits);
        }
        (Expect::Pieces(pieces), Err(e)) => {
            assert_eq!(
                (e.status.as_u16(), e.code.as_str()),
                (400, "invalid_events"),
                "{e}"
            );
            let _ = e.body().to_string();
            assert!(
                pieces
                    .iter()
                    .any(|p| p.text.len() > max_event || Event::from_json(p.text).is_err()),
                "refused a batch of well-formed events: {e}"
            );
            check_invalid_events(&e, &pieces, max_event);
        }
    }
}
