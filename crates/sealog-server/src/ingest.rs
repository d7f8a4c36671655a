//! Turning a request body into a batch of events, all or nothing.
//!
//! A body is one JSON event, a JSON array of events, or NDJSON (one event
//! per line, `Content-Type: application/x-ndjson`; blank lines are
//! skipped). Every event is parsed before anything is written; if any is
//! malformed or too large, the whole batch is refused with one entry per
//! bad event: its index in the batch, its line (NDJSON), the JSON path of
//! the field and the reason. Content rules (lengths, syntax, the secret
//! guard) are checked as well when the batch is refused, so one response
//! lists every problem; otherwise the engine checks them in
//! [`sealog::Store::append_batch`], which also refuses the batch as a whole.

use axum::http::StatusCode;
use sealog::format::validate::Validator;
use sealog::format::{Event, ValidationError};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::config::Limits;
use crate::error::ApiError;

/// How the body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One event or an array.
    Json,
    /// One event per line.
    Ndjson,
}

/// A parsed batch.
#[derive(Debug)]
pub struct Batch {
    /// The events, in order.
    pub events: Vec<Event>,
    /// For NDJSON, the 1-based line of each event.
    pub lines: Option<Vec<u64>>,
}

impl Batch {
    /// The line of event `index`, if known.
    pub fn line(&self, index: usize) -> Option<u64> {
        self.lines.as_ref().and_then(|l| l.get(index).copied())
    }
}

struct Problems {
    list: Vec<Value>,
}

impl Problems {
    fn push(&mut self, index: usize, line: Option<u64>, field: &str, reason: String) {
        let mut entry = json!({"index": index, "field": field, "reason": reason});
        if let (Some(line), Some(obj)) = (line, entry.as_object_mut()) {
            obj.insert("line".into(), line.into());
        }
        self.list.push(entry);
    }
}

/// The 400 for a batch with bad events.
pub fn invalid_events(list: Vec<Value>) -> ApiError {
    let n = list.len();
    ApiError::bad_request(
        "invalid_events",
        format!(
            "{n} invalid event(s) in the batch; nothing was written: fix the events listed in \
             `errors` (index from 0{}) and send the batch again",
            if list.iter().any(|e| e.get("line").is_some()) {
                ", line from 1"
            } else {
                ""
            }
        ),
    )
    .with("errors", list)
}

fn check_utf8(body: &[u8], framing: Framing) -> Result<(), ApiError> {
    if let Err(e) = std::str::from_utf8(body) {
        let offset = e.valid_up_to();
        let line = body
            .get(..offset)
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
            + 1;
        let mut err = ApiError::bad_request(
            "invalid_utf8",
            format!(
                "the body is not valid UTF-8: invalid byte at offset {offset}{}; JSON must be \
                 UTF-8 text, nothing was written",
                if framing == Framing::Ndjson {
                    format!(" (line {line})")
                } else {
                    String::new()
                }
            ),
        )
        .with("offset", offset);
        if framing == Framing::Ndjson {
            err = err.with("line", line);
        }
        return Err(err);
    }
    Ok(())
}

fn too_many(n: usize, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_events",
        format!(
            "the batch has {n} events, more than the limit of {max} per request; split it into \
             smaller batches, nothing was written"
        ),
    )
    .with("max_batch_events", max)
    .with("batch_events", n as u64)
}

/// Parses one event fast, and again with path tracking for a good error.
fn parse_event(bytes: &[u8]) -> Result<Event, ValidationError> {
    match serde_json::from_slice::<Event>(bytes) {
        Ok(e) => Ok(e),
        Err(_) => Event::from_json(bytes),
    }
}

fn reason_of(e: &ValidationError) -> (String, String) {
    use sealog::format::validate::ValidationErrorKind;
    match (e.field(), e.kind()) {
        ("" | "?", ValidationErrorKind::Json(_)) => (
            String::new(),
            format!("is not a JSON event: {}", e.reason()),
        ),
        (field, _) => (field.to_owned(), e.reason()),
    }
}

/// Parses a body into a batch, or the response refusing it.
pub fn parse(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    validator: &Validator,
) -> Result<Batch, ApiError> {
    // UTF-8 is checked by the JSON parser as it goes; only a refused body
    // is checked as a whole, to name the offset of a bad byte.
    let refuse = |e: ApiError| -> ApiError {
        match check_utf8(body, framing) {
            Err(utf8) => utf8,
            Ok(()) => e,
        }
    };
    parse_inner(body, framing, limits, validator).map_err(refuse)
}

fn parse_inner(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    validator: &Validator,
) -> Result<Batch, ApiError> {
    let max_event = usize::try_from(limits.max_event_bytes).unwrap_or(usize::MAX);
    let max_events = usize::try_from(limits.max_batch_events).unwrap_or(usize::MAX);
    let mut problems = Problems { list: Vec::new() };
    let mut events = Vec::new();
    let mut lines = Vec::new();
    // Events that parsed, by index, for the full list of problems.
    let mut parsed_at: Vec<usize> = Vec::new();
    let too_large = |len: usize| {
        format!("is {len} bytes of JSON, more than the limit of {max_event} bytes per event")
    };
    match framing {
        Framing::Ndjson => {
            let mut index = 0usize;
            for (n, raw_line) in body.split(|&b| b == b'\n').enumerate() {
                let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let line_no = n as u64 + 1;
                if index >= max_events {
                    // Count the rest without parsing it, so that the error
                    // says how many events the body holds.
                    let rest = body
                        .split(|&b| b == b'\n')
                        .skip(n)
                        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                        .count();
                    return Err(too_many(index + rest, limits.max_batch_events));
                }
                if line.len() > max_event {
                    problems.push(index, Some(line_no), "", too_large(line.len()));
                } else {
                    match parse_event(line) {
                        Ok(e) => {
                            events.push(e);
                            lines.push(line_no);
                            parsed_at.push(index);
                        }
                        Err(e) => {
                            let (field, reason) = reason_of(&e);
                            problems.push(index, Some(line_no), &field, reason);
                        }
                    }
                }
                index += 1;
            }
            if index == 0 {
                return Err(ApiError::bad_request(
                    "empty_batch",
                    "the body holds no event: send one JSON event per line",
                ));
            }
        }
        Framing::Json => {
            let start = body.iter().position(|b| !b.is_ascii_whitespace());
            match start.and_then(|i| body.get(i)) {
                Some(b'[') => {
                    let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
                        malformed(&e, "a JSON array of events (or NDJSON with Content-Type: application/x-ndjson)")
                    })?;
                    if raws.is_empty() {
                        return Err(ApiError::bad_request(
                            "empty_batch",
                            "the array holds no event",
                        ));
                    }
                    if raws.len() > max_events {
                        return Err(too_many(raws.len(), limits.max_batch_events));
                    }
                    events.reserve(raws.len());
                    for (index, raw) in raws.iter().enumerate() {
                        let text = raw.get().as_bytes();
                        if text.len() > max_event {
                            problems.push(index, None, "", too_large(text.len()));
                            continue;
                        }
                        match parse_event(text) {
                            Ok(e) => {
                                events.push(e);
                                parsed_at.push(index);
                            }
                            Err(e) => {
                                let (field, reason) = reason_of(&e);
                                problems.push(index, None, &field, reason);
                            }
                        }
                    }
                }
                Some(b'{') => {
                    // Check the syntax first so that a malformed body is
                    // reported with its line and column.
                    let raw: &RawValue = serde_json::from_slice(body)
                        .map_err(|e| malformed(&e, "one JSON event object"))?;
                    let text = raw.get().as_bytes();
                    if text.len() > max_event {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "event_too_large",
                            format!(
                                "the event is {} bytes of JSON, more than the limit of \
                                 {max_event} bytes per event; nothing was written",
                                text.len()
                            ),
                        ));
                    }
                    match parse_event(text) {
                        Ok(e) => {
                            events.push(e);
                            parsed_at.push(0);
                        }
                        Err(e) => {
                            let (field, reason) = reason_of(&e);
                            problems.push(0, None, &field, reason);
                        }
                    }
                }
                None => {
                    return Err(ApiError::bad_request(
                        "empty_body",
                        "the body is empty: send one JSON event, a JSON array of events, or \
                         NDJSON with Content-Type: application/x-ndjson",
                    ));
                }
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "malformed_json",
                        "the body is neither a JSON object nor a JSON array: send one JSON \
                         event, a JSON array of events, or NDJSON with Content-Type: \
                         application/x-ndjson",
                    ));
                }
            }
        }
    }
    if !problems.list.is_empty() {
        // List the content problems of the events that parsed too.
        for (k, (event, &index)) in events.iter().zip(&parsed_at).enumerate() {
            let mut copy = event.clone();
            if let Err(e) = validator.validate(&mut copy) {
                let (field, reason) = reason_of(&e);
                problems.push(index, lines.get(k).copied(), &field, reason);
            }
        }
        problems
            .list
            .sort_by_key(|e| e.get("index").and_then(Value::as_u64).unwrap_or(0));
        return Err(invalid_events(problems.list));
    }
    Ok(Batch {
        events,
        lines: (framing == Framing::Ndjson).then_some(lines),
    })
}

fn malformed(e: &serde_json::Error, expected: &str) -> ApiError {
    ApiError::bad_request(
        "malformed_json",
        format!("the body is not valid JSON: {e} (expected {expected}); nothing was written"),
    )
    .with("line", e.line())
    .with("column", e.column())
}

/// Adds NDJSON line numbers to the engine's list of invalid events.
pub fn with_lines(mut error: ApiError, batch: &Batch) -> ApiError {
    if batch.lines.is_none() {
        return error;
    }
    if let Some(Value::Array(list)) = error.details.get_mut("errors") {
        for entry in list.iter_mut() {
            let index = entry.get("index").and_then(Value::as_u64).unwrap_or(0);
            if let (Some(line), Some(obj)) = (
                batch.line(usize::try_from(index).unwrap_or(usize::MAX)),
                entry.as_object_mut(),
            ) {
                obj.insert("line".into(), line.into());
            }
        }
    }
    error
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const GOOD: &str = r#"{"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#;

    fn parse_ok(body: &str, framing: Framing) -> Batch {
        parse(
            body.as_bytes(),
            framing,
            &Limits::default(),
            &Validator::default(),
        )
        .unwrap()
    }

    fn parse_err(body: &[u8], framing: Framing) -> ApiError {
        parse(body, framing, &Limits::default(), &Validator::default()).unwrap_err()
    }

    #[test]
    fn the_three_framings_parse() {
        assert_eq!(parse_ok(GOOD, Framing::Json).events.len(), 1);
        assert_eq!(
            parse_ok(&format!("[{GOOD},{GOOD}]"), Framing::Json)
                .events
                .len(),
            2
        );
        let b = parse_ok(&format!("{GOOD}\n\n{GOOD}\r\n"), Framing::Ndjson);
        assert_eq!(b.lines, Some(vec![1, 3]));
    }

    #[test]
    fn every_bad_event_is_listed_with_index_line_and_field() {
        let bad_type = GOOD.replace(r#""id":"a""#, r#""id":5"#);
        let bad_action = GOOD.replace("x.y", "X Y");
        let body = format!("{GOOD}\n{bad_type}\n{{oops\n{bad_action}\n");
        let e = parse_err(body.as_bytes(), Framing::Ndjson);
        assert_eq!(e.code, "invalid_events");
        let list = e.details["errors"].as_array().unwrap().clone();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0]["index"], 1);
        assert_eq!(list[0]["line"], 2);
        assert_eq!(list[0]["field"], "actor.id");
        assert_eq!(list[1]["line"], 3);
        assert_eq!(list[2]["field"], "action");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = parse_err(b"[\n  {\"actor\": ,}\n]", Framing::Json);
        assert_eq!(e.code, "malformed_json");
        assert_eq!(e.details["line"], 2);
        assert!(e.details["column"].as_u64().unwrap() > 0);
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let mut body = GOOD.as_bytes().to_vec();
        body[30] = 0xff;
        let e = parse_err(&body, Framing::Json);
        assert_eq!(e.code, "invalid_utf8");
        assert_eq!(e.details["offset"], 30);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_batch_events: 2,
            max_event_bytes: 200,
            ..Limits::default()
        };
        let body = format!("[{GOOD},{GOOD},{GOOD}]");
        let e = parse(
            body.as_bytes(),
            Framing::Json,
            &limits,
            &Validator::default(),
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let big = GOOD.replace("\"r\"", &format!("\"{}\"", "r".repeat(300)));
        let e = parse(
            big.as_bytes(),
            Framing::Json,
            &limits,
            &Validator::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, "event_too_large");
        // NDJSON stops parsing at the limit but still counts every event.
        let body = format!("{GOOD}\n\n{GOOD}\n{GOOD}\n  \n{GOOD}\n");
        let e = parse(
            body.as_bytes(),
            Framing::Ndjson,
            &limits,
            &Validator::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, "too_many_events");
        assert_eq!(e.details["batch_events"], 4, "{e}");
        assert!(e.to_string().contains("has 4 events"), "{e}");
    }
}
