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

use sealog::format::validate::Validator;
use sealog::format::{Event, ValidationError};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::config::Limits;
use crate::error::{ApiError, ErrorCode};

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
pub(crate) fn invalid_events(list: Vec<Value>) -> ApiError {
    let n = list.len();
    ApiError::new(
        ErrorCode::InvalidEvents,
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
        ErrorCode::TooManyEvents,
        format!(
            "the batch has {n} events, more than the limit of {max} per request; split it into \
             smaller batches, nothing was written"
        ),
    )
    .with("max_batch_events", max)
    .with("batch_events", n as u64)
}

/// Whether `actor` is one sealog's own records are written as: type
/// `system` or `service` with the id `sealog` or `sealog-…` (the alert
/// runner's `service:sealog-alerts`, the server's `system:sealog-server`,
/// the store's `system:sealog`). Events from clients may not carry them,
/// or an ingest token could forge an alert (and, with an alert's id,
/// suppress the real one) or an operation of the store.
pub fn reserved_actor(actor: &sealog::format::Actor) -> bool {
    matches!(actor.kind.as_str(), "system" | "service")
        && (actor.id == "sealog" || actor.id.starts_with("sealog-"))
}

/// Why a client may not send `event`, if it is one only sealog writes:
/// in sealog's own name ([`reserved_actor`]), or the record of a privacy
/// policy (readers take the newest one as the rules records are stored
/// under; `sealog::privacy::POLICY_ACTION`).
fn reserved(event: &Event) -> Option<(&'static str, String)> {
    if reserved_actor(&event.actor) {
        return Some((
            "actor",
            format!(
                "is `{}:{}`, an actor only sealog itself writes as (its alerts, its own \
                 operations): clients may not send events in its name",
                event.actor.kind, event.actor.id
            ),
        ));
    }
    if event.action == sealog::privacy::POLICY_ACTION {
        return Some((
            "action",
            format!(
                "is `{}`, the record sealog writes when its privacy rules change: clients may \
                 not send it",
                event.action
            ),
        ));
    }
    None
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

/// Parses a body into a batch, or the response refusing it, without
/// metering its memory (see [`parse_within`]).
pub fn parse(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    validator: &Validator,
) -> Result<Batch, ApiError> {
    parse_within(body, framing, limits, validator, &mut |_| Ok(()))
}

/// Parses a body into a batch, or the response refusing it.
///
/// The body is read element by element (a JSON array through a streaming
/// visitor, NDJSON line by line), so nothing is allocated for elements
/// beyond `max_batch_events`: they are only counted, for the error. After
/// each element, `memory` is told the bytes the parsed events (and the
/// problems found) take so far, as [`event_heap_bytes`] estimates them;
/// an error from it stops the parse and is returned (the server's 503
/// when the in-flight budget cannot grow).
pub fn parse_within(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    validator: &Validator,
    memory: &mut dyn FnMut(usize) -> Result<(), ApiError>,
) -> Result<Batch, ApiError> {
    // UTF-8 is checked by the JSON parser as it goes; only a refused body
    // is checked as a whole, to name the offset of a bad byte.
    let refuse = |e: ApiError| -> ApiError {
        if e.status.is_server_error() {
            return e;
        }
        match check_utf8(body, framing) {
            Err(utf8) => utf8,
            Ok(()) => e,
        }
    };
    parse_inner(body, framing, limits, validator, memory).map_err(refuse)
}

/// The events parsed so far, and the problems found.
#[derive(Default)]
struct Parsed {
    events: Vec<Event>,
    /// For NDJSON, the line of each event.
    lines: Vec<u64>,
    /// The index of each event in the batch (for the full list of
    /// problems).
    parsed_at: Vec<usize>,
    problems: Vec<Value>,
    /// Heap bytes of the events and problems, besides the vectors.
    heap: usize,
}

impl Parsed {
    /// The memory the parse holds.
    fn bytes(&self) -> usize {
        self.heap
            + self.events.capacity() * std::mem::size_of::<Event>()
            + self.lines.capacity() * std::mem::size_of::<u64>()
            + self.parsed_at.capacity() * std::mem::size_of::<usize>()
            + self.problems.capacity() * std::mem::size_of::<Value>()
    }

    fn problem(&mut self, index: usize, line: Option<u64>, field: &str, reason: String) {
        let mut entry = json!({"index": index, "field": field, "reason": reason});
        if let (Some(line), Some(obj)) = (line, entry.as_object_mut()) {
            obj.insert("line".into(), line.into());
        }
        self.heap += value_heap_bytes(&entry);
        self.problems.push(entry);
    }

    /// Parses element `index` of the batch.
    fn element(&mut self, index: usize, line: Option<u64>, text: &[u8], max_event: usize) {
        if text.len() > max_event {
            self.problem(
                index,
                line,
                "",
                format!(
                    "is {} bytes of JSON, more than the limit of {max_event} bytes per event",
                    text.len()
                ),
            );
            return;
        }
        match parse_event(text) {
            Ok(e) => {
                if let Some((field, reason)) = reserved(&e) {
                    self.problem(index, line, field, reason);
                    return;
                }
                self.heap += event_heap_bytes(&e);
                self.events.push(e);
                if let Some(line) = line {
                    self.lines.push(line);
                }
                self.parsed_at.push(index);
            }
            Err(e) => {
                let (field, reason) = reason_of(&e);
                self.problem(index, line, &field, reason);
            }
        }
    }
}

/// The elements of a JSON array, parsed as they are read; beyond
/// `max_events` only counted.
struct Elements<'a> {
    parsed: &'a mut Parsed,
    max_events: usize,
    max_event: usize,
    memory: &'a mut dyn FnMut(usize) -> Result<(), ApiError>,
    /// Why the parse stopped early, when `memory` refused.
    stopped: &'a mut Option<ApiError>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Elements<'_> {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Elements<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0usize;
        while n < self.max_events {
            let Some(raw) = seq.next_element::<&'de RawValue>()? else {
                return Ok(n);
            };
            self.parsed
                .element(n, None, raw.get().as_bytes(), self.max_event);
            n += 1;
            if let Err(e) = (self.memory)(self.parsed.bytes()) {
                *self.stopped = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        // At the limit: anything more is over it. Then free what was
        // parsed, and count the rest without keeping anything, so that the
        // error says how many the body holds.
        if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
            return Ok(n);
        }
        n += 1;
        *self.parsed = Parsed::default();
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

fn parse_inner(
    body: &[u8],
    framing: Framing,
    limits: &Limits,
    validator: &Validator,
    memory: &mut dyn FnMut(usize) -> Result<(), ApiError>,
) -> Result<Batch, ApiError> {
    let max_event = usize::try_from(limits.max_event_bytes).unwrap_or(usize::MAX);
    let max_events = usize::try_from(limits.max_batch_events).unwrap_or(usize::MAX);
    let mut parsed = Parsed::default();
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
                    drop(parsed);
                    let rest = body
                        .split(|&b| b == b'\n')
                        .skip(n)
                        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                        .count();
                    return Err(too_many(index + rest, limits.max_batch_events));
                }
                parsed.element(index, Some(line_no), line, max_event);
                memory(parsed.bytes())?;
                index += 1;
            }
            if index == 0 {
                return Err(ApiError::new(
                    ErrorCode::EmptyBatch,
                    "the body holds no event: send one JSON event per line",
                ));
            }
        }
        Framing::Json => {
            let start = body.iter().position(|b| !b.is_ascii_whitespace());
            match start.and_then(|i| body.get(i)) {
                Some(b'[') => {
                    let mut stopped = None;
                    let mut de = serde_json::Deserializer::from_slice(body);
                    let seed = Elements {
                        parsed: &mut parsed,
                        max_events,
                        max_event,
                        memory,
                        stopped: &mut stopped,
                    };
                    let counted = serde::de::DeserializeSeed::deserialize(seed, &mut de)
                        .and_then(|n| de.end().map(|()| n));
                    let n = match (counted, stopped) {
                        (_, Some(e)) => return Err(e),
                        (Err(e), None) => {
                            return Err(malformed(
                                &e,
                                "a JSON array of events (or NDJSON with Content-Type: \
                                 application/x-ndjson)",
                            ));
                        }
                        (Ok(n), None) => n,
                    };
                    if n == 0 {
                        return Err(ApiError::new(
                            ErrorCode::EmptyBatch,
                            "the array holds no event",
                        ));
                    }
                    if n > max_events {
                        return Err(too_many(n, limits.max_batch_events));
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
                            ErrorCode::EventTooLarge,
                            format!(
                                "the event is {} bytes of JSON, more than the limit of \
                                 {max_event} bytes per event; nothing was written",
                                text.len()
                            ),
                        ));
                    }
                    parsed.element(0, None, text, max_event);
                    memory(parsed.bytes())?;
                }
                None => {
                    return Err(ApiError::new(
                        ErrorCode::EmptyBody,
                        "the body is empty: send one JSON event, a JSON array of events, or \
                         NDJSON with Content-Type: application/x-ndjson",
                    ));
                }
                Some(_) => {
                    return Err(ApiError::new(
                        ErrorCode::MalformedJson,
                        "the body is neither a JSON object nor a JSON array: send one JSON \
                         event, a JSON array of events, or NDJSON with Content-Type: \
                         application/x-ndjson",
                    ));
                }
            }
        }
    }
    let Parsed {
        events,
        lines,
        parsed_at,
        problems,
        ..
    } = parsed;
    if !problems.is_empty() {
        let mut problems = Problems { list: problems };
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

/// The bytes the allocator is asked for by an allocation of `n` bytes, with
/// its bookkeeping: glibc's malloc takes 16 bytes more, rounded up to 16,
/// and at least 32.
fn allocation(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (n + 16).div_ceil(16).saturating_mul(16).max(32)
}

/// The capacity of a vector grown one push at a time to `len` elements.
fn grown(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.next_power_of_two().max(4)
    }
}

fn string_heap(s: &str) -> usize {
    allocation(s.len())
}

fn option_heap(s: Option<&String>) -> usize {
    s.map_or(0, |s| string_heap(s))
}

/// The heap memory of a JSON value (not counting the value itself), an
/// upper estimate for serde_json with `preserve_order`: vectors grown by
/// doubling, a map's entries and its hash index.
pub(crate) fn value_heap_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => string_heap(s),
        Value::Array(list) => {
            allocation(grown(list.len()) * std::mem::size_of::<Value>())
                + list.iter().map(value_heap_bytes).sum::<usize>()
        }
        Value::Object(map) => map_heap_bytes(map),
    }
}

fn map_heap_bytes(map: &serde_json::Map<String, Value>) -> usize {
    let n = map.len();
    if n == 0 {
        return 0;
    }
    // An index map: a hash table of positions (buckets a power of two,
    // at most 7/8 full, one control byte each plus a group of 16), and the
    // entries (hash, key, value), reserved to the table's capacity.
    let mut buckets = 4usize;
    let capacity = |b: usize| if b < 8 { b - 1 } else { b / 8 * 7 };
    while capacity(buckets) < n {
        buckets *= 2;
    }
    let entry = std::mem::size_of::<String>() + std::mem::size_of::<Value>() + 8;
    allocation(capacity(buckets) * entry)
        + allocation(buckets * 9 + 16)
        + map
            .iter()
            .map(|(k, v)| string_heap(k) + value_heap_bytes(v))
            .sum::<usize>()
}

/// The heap memory of a parsed event (not counting the `Event` itself):
/// what the in-flight budget holds for it while it waits to be written.
pub fn event_heap_bytes(e: &Event) -> usize {
    let actor = string_heap(&e.actor.kind)
        + string_heap(&e.actor.id)
        + option_heap(e.actor.session_id.as_ref())
        + e.actor
            .on_behalf_of
            .as_ref()
            .map_or(0, |p| string_heap(&p.kind) + string_heap(&p.id));
    let source = e
        .source
        .as_ref()
        .map_or(0, |s| option_heap(s.user_agent.as_ref()));
    actor
        + string_heap(&e.action)
        + string_heap(&e.resource.kind)
        + option_heap(e.resource.id.as_ref())
        + option_heap(e.tenant.as_ref())
        + source
        + option_heap(e.request_id.as_ref())
        + option_heap(e.reason.as_ref())
        + e.metadata.as_ref().map_or(0, map_heap_bytes)
}

fn malformed(e: &serde_json::Error, expected: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MalformedJson,
        format!("the body is not valid JSON: {e} (expected {expected}); nothing was written"),
    )
    .with("line", e.line())
    .with("column", e.column())
}

/// Adds NDJSON line numbers to the engine's list of invalid events.
pub(crate) fn with_lines(mut error: ApiError, batch: &Batch) -> ApiError {
    if batch.lines.is_none() {
        return error;
    }
    if let Some(Value::Array(list)) = error.details_mut().get_mut("errors") {
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
    fn events_in_sealogs_own_name_are_refused_in_every_framing() {
        let forged = [
            GOOD.replace(
                r#"{"type":"user","id":"a"}"#,
                r#"{"type":"service","id":"sealog-alerts"}"#,
            ),
            GOOD.replace(
                r#"{"type":"user","id":"a"}"#,
                r#"{"type":"system","id":"sealog"}"#,
            ),
            GOOD.replace(
                r#"{"type":"user","id":"a"}"#,
                r#"{"type":"system","id":"sealog-server"}"#,
            ),
        ];
        for f in &forged {
            for (body, framing) in [
                (f.clone(), Framing::Json),
                (format!("[{GOOD},{f}]"), Framing::Json),
                (format!("{GOOD}\n{f}\n"), Framing::Ndjson),
            ] {
                let e = parse_err(body.as_bytes(), framing);
                assert_eq!(e.code, "invalid_events", "{body}");
                let list = e.details["errors"].as_array().unwrap();
                assert_eq!(list.len(), 1, "{list:?}");
                assert_eq!(list[0]["field"], "actor");
                assert!(
                    list[0]["reason"]
                        .as_str()
                        .unwrap()
                        .contains("only sealog itself"),
                    "{list:?}"
                );
            }
        }
        let policy = GOOD.replace("x.y", "store.privacy_policy");
        let e = parse_err(policy.as_bytes(), Framing::Json);
        let list = e.details["errors"].as_array().unwrap();
        assert_eq!(list[0]["field"], "action", "{list:?}");
        // Lookalikes that are not sealog's own stay allowed.
        for ok in [
            r#"{"type":"user","id":"sealog-alerts"}"#,
            r#"{"type":"service","id":"sealogger"}"#,
            r#"{"type":"service","id":"billing-sealog"}"#,
        ] {
            let body = GOOD.replace(r#"{"type":"user","id":"a"}"#, ok);
            assert_eq!(parse_ok(&body, Framing::Json).events.len(), 1, "{body}");
        }
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
        assert_eq!(e.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
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

    #[test]
    fn a_json_array_over_the_limit_is_counted_but_not_parsed() {
        let limits = Limits {
            max_batch_events: 3,
            ..Limits::default()
        };
        let body = format!("[{GOOD},{GOOD},{GOOD},{GOOD},[1,{{\"a\":2}}],\"x\"]");
        let mut largest = 0usize;
        let e = parse_within(
            body.as_bytes(),
            Framing::Json,
            &limits,
            &Validator::default(),
            &mut |bytes| {
                largest = largest.max(bytes);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(e.code, "too_many_events");
        assert_eq!(e.details["batch_events"], 6, "{e}");
        // Only the first three were parsed (and metered).
        assert!(largest > 0 && largest < 4096, "{largest}");
        // Exactly at the limit, every event is kept.
        let body = format!("[{GOOD},{GOOD},{GOOD}]");
        let batch = parse(
            body.as_bytes(),
            Framing::Json,
            &limits,
            &Validator::default(),
        );
        assert_eq!(batch.unwrap().events.len(), 3);
        // A syntax error after the limit is still a syntax error.
        let e = parse_err(
            format!("[{GOOD},{GOOD},{GOOD},{GOOD},]").as_bytes(),
            Framing::Json,
        );
        assert_eq!(e.code, "malformed_json");
    }

    #[test]
    fn the_meter_can_stop_a_parse() {
        let body = format!("{GOOD}\n{GOOD}\n{GOOD}\n");
        for framing in [Framing::Ndjson, Framing::Json] {
            let body = match framing {
                Framing::Ndjson => body.clone(),
                Framing::Json => format!("[{GOOD},{GOOD},{GOOD}]"),
            };
            let mut calls = 0;
            let e = parse_within(
                body.as_bytes(),
                framing,
                &Limits::default(),
                &Validator::default(),
                &mut |_| {
                    calls += 1;
                    if calls == 2 {
                        Err(ApiError::unavailable("full"))
                    } else {
                        Ok(())
                    }
                },
            )
            .unwrap_err();
            assert_eq!(e.code, "unavailable", "{framing:?}");
            assert_eq!(calls, 2);
        }
    }
}
