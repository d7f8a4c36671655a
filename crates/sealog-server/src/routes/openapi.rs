//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the API.
//!
//! The document is built here from the same constants the router and the
//! handlers use: the paths, the query parameters each endpoint accepts
//! ([`crate::params`]), the scopes of each endpoint's extractor
//! ([`ScopeMarker::NEEDS`]) and every [`ErrorCode`] with its status. What
//! cannot be taken from the code (the descriptions, the body schemas) is
//! written here, and the tests below hold the document to the router: the
//! same paths, the same methods, the same parameters (as the server's own
//! `unknown_parameter` answer lists them), the same scopes, and every
//! error code sent by some operation. The property-based test
//! (`tests/openapi.rs`) holds the bodies and statuses to what the server
//! answers.
//!
//! It is public, like `/healthz`: it describes the API, not the log.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;
use sealog::aggregate::{CountField, DEFAULT_TOP, MAX_TOP};
use sealog::query::MAX_LIMIT;
use serde_json::{Map, Value, json};

use super::{
    ALERTS, CHECKPOINT, CONSISTENCY, EVENT, EVENTS, HEALTHZ, INCLUSION, METRICS, OPENAPI, READYZ,
    STATS, TAIL, VERIFY, json_bytes,
};
use crate::auth::{AdminScope, IngestScope, OperatorScope, QueryScope, ScopeMarker};
use crate::error::ErrorCode;
use crate::params;
use crate::tokens::Scope;

/// One operation (a method on a path) as the document describes it.
pub(super) struct Operation {
    /// `get` or `post`.
    pub(super) method: &'static str,
    /// The route, as the router has it (`/v1/events/{seq}`).
    pub(super) path: &'static str,
    id: &'static str,
    summary: &'static str,
    /// The scopes of which the token needs one; `None`: no token.
    pub(super) scopes: Option<&'static [Scope]>,
    /// A tenant-bound token is refused.
    all_tenants: bool,
    /// The query parameters the handler accepts.
    pub(super) params: &'static [&'static str],
    /// The refusals it may answer with, beyond those of every
    /// authenticated operation ([`AUTHENTICATED`], [`PARAMETERS`]).
    codes: &'static [ErrorCode],
    /// It records the read in the log ([`RECORDED`]).
    recorded: bool,
    /// The `200` (and other non-error) responses.
    ok: fn() -> Value,
    /// Header parameters.
    headers: fn() -> Vec<Value>,
    /// The request body.
    body: Option<fn() -> Value>,
}

/// Refusals every authenticated operation may answer with.
const AUTHENTICATED: &[ErrorCode] = &[
    ErrorCode::MissingToken,
    ErrorCode::MalformedToken,
    ErrorCode::InvalidToken,
    ErrorCode::RevokedToken,
    ErrorCode::TokensUnavailable,
    ErrorCode::InsufficientScope,
    ErrorCode::Internal,
    ErrorCode::Unavailable,
    ErrorCode::RequestTimeout,
];

/// Refusals of an operation that reads its query string.
const PARAMETERS: &[ErrorCode] = &[ErrorCode::UnknownParameter, ErrorCode::InvalidParameter];

/// Refusals of an operation that records its read in the log (an audit
/// event that cannot be written refuses the read).
const RECORDED: &[ErrorCode] = &[ErrorCode::StorageFull, ErrorCode::StoreDamaged];

/// The refusals only the router itself answers with, for a path or method
/// no operation has: described in the document's text, not under an
/// operation.
#[cfg(test)]
const ROUTER: &[ErrorCode] = &[ErrorCode::NotFound, ErrorCode::MethodNotAllowed];

fn no_headers() -> Vec<Value> {
    Vec::new()
}

/// Every operation of the API.
pub(super) fn operations() -> Vec<Operation> {
    vec![
        Operation {
            method: "post",
            path: EVENTS,
            id: "ingest",
            summary: "Append one event, a JSON array of events, or NDJSON; durable before the \
                      answer, all or nothing",
            scopes: Some(IngestScope::NEEDS),
            all_tenants: IngestScope::ALL_TENANTS,
            params: &[],
            codes: &[
                ErrorCode::MalformedJson,
                ErrorCode::InvalidUtf8,
                ErrorCode::InvalidEvents,
                ErrorCode::EmptyBody,
                ErrorCode::EmptyBatch,
                ErrorCode::InvalidEncoding,
                ErrorCode::InvalidIdempotencyKey,
                ErrorCode::BodyReadFailed,
                ErrorCode::UnknownParameter,
                ErrorCode::TenantForbidden,
                ErrorCode::BodyTimeout,
                ErrorCode::BodyTooLarge,
                ErrorCode::EventTooLarge,
                ErrorCode::TooManyEvents,
                ErrorCode::BatchTooLarge,
                ErrorCode::UnsupportedMediaType,
                ErrorCode::UnsupportedEncoding,
                ErrorCode::IdempotencyKeyReused,
                ErrorCode::StoreDamaged,
                ErrorCode::IngestSaturated,
                ErrorCode::StorageFull,
            ],
            recorded: false,
            ok: || {
                json!({"200": {
                    "description": "Every event is durable; one receipt per event, in order.",
                    "headers": {"Idempotent-Replayed": {
                        "description": "`true` when these are the receipts of an earlier \
                                        request with the same Idempotency-Key.",
                        "schema": {"type": "string", "enum": ["true"]}}},
                    "content": {"application/json": {"schema": schema_ref("IngestResponse")}}}})
            },
            headers: || {
                vec![
                    json!({"name": "Idempotency-Key", "in": "header", "required": false,
                       "description": "1 to 255 printable ASCII characters: a retry with the \
                                       same key and body gets the original receipts.",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                  "pattern": "^[!-~]+$"}}),
                    json!({"name": "Content-Encoding", "in": "header", "required": false,
                       "description": "The body's compression.",
                       "schema": {"type": "string", "enum": ["gzip", "x-gzip", "zstd", "identity"]}}),
                ]
            },
            body: Some(|| {
                json!({"required": true,
                   "description": "One event, an array of events, or NDJSON (one event per \
                                   line; also `application/ndjson`, `application/jsonl`).",
                   "content": {
                       "application/json": {"schema": {"oneOf": [
                           schema_ref("Event"),
                           {"type": "array", "items": schema_ref("Event"), "minItems": 1}]}},
                       "application/x-ndjson": {"schema": {"type": "string"}}}})
            }),
        },
        Operation {
            method: "get",
            path: EVENTS,
            id: "query",
            summary: "One page of the matching records, their count (`count=true`), their \
                      counts by group (`count_by`), or with `Accept: application/x-ndjson` \
                      every match streamed",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::QUERY_PARAMS,
            codes: &[ErrorCode::TenantForbidden],
            recorded: true,
            ok: || {
                json!({"200": {
                    "description": "A page, a count, or counts by group; NDJSON: every \
                                    matching record, one per line.",
                    "content": {
                        "application/json": {"schema": {"oneOf": [
                            schema_ref("Page"), schema_ref("Count"), schema_ref("Counts")]}},
                        "application/x-ndjson": {"schema": {"type": "string"}}}}})
            },
            headers: || {
                vec![json!({"name": "Accept", "in": "header", "required": false,
                   "description": "`application/x-ndjson` streams every match instead of a \
                                   page.",
                   "schema": {"type": "string", "enum": ["application/json",
                                                         "application/x-ndjson"]}})]
            },
            body: None,
        },
        Operation {
            method: "get",
            path: EVENT,
            id: "record",
            summary: "One record, or with `proof=true` its offline-verifiable receipt",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::RECORD_PARAMS,
            codes: &[
                ErrorCode::InvalidSeq,
                ErrorCode::NotFound,
                ErrorCode::NoSigningKey,
            ],
            recorded: true,
            ok: || {
                json!({"200": {
                    "description": "The record; with `proof=true` its C2SP tlog-proof@v1 \
                                    receipt.",
                    "content": {
                        "application/json": {"schema": schema_ref("Record")},
                        "text/plain": {"schema": {"type": "string"}}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: TAIL,
            id: "tail",
            summary: "Server-Sent Events of the matching records committed from now on (or \
                      after Last-Event-ID); `since` is refused here",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::FILTERS,
            codes: &[ErrorCode::InvalidLastEventId, ErrorCode::TenantForbidden],
            recorded: true,
            ok: || {
                json!({"200": {
                    "description": "An endless stream: each event's `id` is a seq and its \
                                    `data` the record as JSON.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
            },
            headers: last_event_id,
            body: None,
        },
        Operation {
            method: "get",
            path: ALERTS,
            id: "alerts",
            summary: "Server-Sent Events of the alerts the server raises (with `alerts_rules`)",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::ALERTS_PARAMS,
            codes: &[ErrorCode::InvalidLastEventId, ErrorCode::TenantForbidden],
            recorded: true,
            ok: || {
                json!({"200": {
                    "description": "An endless stream of `alert` events: `id` is the seq of \
                                    the `alert.raised` event, `data` the alert as JSON.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
            },
            headers: last_event_id,
            body: None,
        },
        Operation {
            method: "get",
            path: CHECKPOINT,
            id: "checkpoint",
            summary: "The newest signed checkpoint (C2SP signed note), or with `fresh=true` \
                      one signed now",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::CHECKPOINT_PARAMS,
            codes: &[ErrorCode::NoSigningKey],
            recorded: true,
            ok: || {
                json!({"200": {"description": "The signed note.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: INCLUSION,
            id: "inclusion_proof",
            summary: "RFC 9162 inclusion proof of a record in a tree of the log",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::INCLUSION_PARAMS,
            codes: &[ErrorCode::NotFound, ErrorCode::InvalidProofRequest],
            recorded: true,
            ok: || {
                json!({"200": {"description": "The proof, hashes in base64.",
                    "content": {"application/json": {"schema": schema_ref("InclusionProof")}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: CONSISTENCY,
            id: "consistency_proof",
            summary: "RFC 9162 consistency proof between two tree sizes",
            scopes: Some(QueryScope::NEEDS),
            all_tenants: QueryScope::ALL_TENANTS,
            params: params::CONSISTENCY_PARAMS,
            codes: &[ErrorCode::InvalidProofRequest],
            recorded: true,
            ok: || {
                json!({"200": {"description": "The proof, hashes in base64.",
                    "content": {"application/json": {"schema": schema_ref("ConsistencyProof")}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "post",
            path: VERIFY,
            id: "verify",
            summary: "Full verification of the log: every checksum and hash recomputed",
            scopes: Some(AdminScope::NEEDS),
            all_tenants: AdminScope::ALL_TENANTS,
            params: params::VERIFY_PARAMS,
            codes: &[ErrorCode::VerifyRunning],
            recorded: true,
            ok: || {
                json!({"200": {"description": "Intact, or where the damage is.",
                    "content": {"application/json": {"schema": {"oneOf": [
                        schema_ref("VerifyIntact"), schema_ref("VerifyDamaged")]}}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: STATS,
            id: "stats",
            summary: "The engine's and the server's counters (every tenant: not for a \
                      tenant-bound token)",
            scopes: Some(OperatorScope::NEEDS),
            all_tenants: OperatorScope::ALL_TENANTS,
            params: &[],
            codes: &[ErrorCode::TenantForbidden, ErrorCode::StoreDamaged],
            recorded: false,
            ok: || {
                json!({"200": {"description": "The counters.",
                    "content": {"application/json": {"schema": schema_ref("Stats")}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: METRICS,
            id: "metrics",
            summary: "Prometheus text format 0.0.4 (every tenant: not for a tenant-bound \
                      token)",
            scopes: Some(OperatorScope::NEEDS),
            all_tenants: OperatorScope::ALL_TENANTS,
            params: &[],
            codes: &[ErrorCode::TenantForbidden],
            recorded: false,
            ok: || {
                json!({"200": {"description": "The series.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: HEALTHZ,
            id: "healthz",
            summary: "Liveness: 200 while the process serves",
            scopes: None,
            all_tenants: false,
            params: &[],
            codes: &[],
            recorded: false,
            ok: || {
                json!({"200": {"description": "Serving.",
                    "content": {"application/json": {"schema": schema_ref("Health")}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: READYZ,
            id: "readyz",
            summary: "Readiness: 200 when the store accepts writes, else 503",
            scopes: None,
            all_tenants: false,
            params: &[],
            codes: &[],
            recorded: false,
            ok: || {
                json!({
                    "200": {"description": "The store accepts writes.",
                        "content": {"application/json": {"schema": schema_ref("Ready")}}},
                    "503": {"description": "The store refuses writes (a full disk, say) until \
                                            the server has reopened it.",
                        "content": {"application/json": {"schema": schema_ref("NotReady")}}}})
            },
            headers: no_headers,
            body: None,
        },
        Operation {
            method: "get",
            path: OPENAPI,
            id: "openapi",
            summary: "This document",
            scopes: None,
            all_tenants: false,
            params: &[],
            codes: &[],
            recorded: false,
            ok: || {
                json!({"200": {"description": "The OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}})
            },
            headers: no_headers,
            body: None,
        },
    ]
}

impl Operation {
    /// Every refusal the operation may answer with, in [`ErrorCode::ALL`]
    /// order.
    pub(super) fn refusals(&self) -> Vec<ErrorCode> {
        let mut all: Vec<&[ErrorCode]> = vec![self.codes];
        if self.recorded {
            all.push(RECORDED);
        }
        if self.scopes.is_some() {
            all.push(AUTHENTICATED);
            all.push(PARAMETERS);
        }
        ErrorCode::ALL
            .iter()
            .copied()
            .filter(|c| all.iter().any(|list| list.contains(c)))
            .collect()
    }
}

fn last_event_id() -> Vec<Value> {
    vec![
        json!({"name": "Last-Event-ID", "in": "header", "required": false,
           "description": "Resume after this seq (the `id` of the last event received).",
           "schema": {"type": "string", "pattern": "^\\s*[0-9]+\\s*$"}}),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The description and schema of a query parameter, by operation (the
/// same name may mean different things: `from` is a time in a query, a
/// tree size in a consistency proof).
fn parameter(operation: &str, name: &str) -> Option<(&'static str, Value)> {
    let text = json!({"type": "string", "minLength": 1});
    let flag = json!({"type": "boolean"});
    let size = json!({"type": "integer", "format": "int64", "minimum": 0});
    let time = json!({"type": "string", "minLength": 1,
                      "description": "RFC 3339, or a date (`2026-11-27`)"});
    Some(match (operation, name) {
        ("consistency_proof", "from") => ("The smaller tree size.", size),
        ("consistency_proof", "to") => ("The larger tree size, at most the durable log.", size),
        ("inclusion_proof", "seq") => ("The record's seq.", size),
        ("inclusion_proof", "tree_size") => (
            "The tree the proof is for (default: the durable log).",
            size,
        ),
        ("record", "proof") => ("`true`: the record's receipt (text/plain).", flag),
        ("checkpoint", "fresh") => ("`true`: sign a checkpoint of the log now.", flag),
        ("verify", "log_only") => (
            "`true`: check the log only, not the index sidecars and key filters derived from \
             it (about a third less work; `indexes_checked` is then `false`).",
            flag,
        ),
        (_, "actor") => ("The actor: `TYPE:ID`, or `ID` of any type.", text),
        (_, "action") => (
            "The action, exact or a glob (`customer.*`); repeat it to match any of several.",
            json!({"type": "array", "items": {"type": "string", "minLength": 1}}),
        ),
        (_, "resource") => ("The resource: `TYPE:ID`, `TYPE:` or `ID`.", text),
        (_, "resource_type") => ("The resource type.", text),
        (_, "outcome") => (
            "The outcome.",
            json!({"type": "string", "enum": ["success", "failure", "denied"]}),
        ),
        (_, "tenant") => ("The tenant.", text),
        (_, "source_ip") => (
            "The source address, exact or a CIDR network (IPv4 or IPv6).",
            text,
        ),
        (_, "request_id") => ("The request id.", text),
        ("tail", "since") => (
            "Refused here (400 `invalid_parameter`): a tail streams what arrives; use `from`.",
            text,
        ),
        (_, "since") => (
            "Event time within this long before now (`30s`, `15m`, `1h`, `7d`, `2w`), and \
             not after now; not with `from`.",
            text,
        ),
        (_, "from") => ("Event time at or after this.", time),
        (_, "to") => ("Event time before this (a date: its end).", time),
        (_, "order") => (
            "`newest` (default) or `oldest` by seq; `time` (`time_newest`) or `time_oldest` \
             by event time.",
            json!({"type": "string",
                   "enum": ["newest", "oldest", "time", "time_newest", "time_oldest"]}),
        ),
        (_, "limit") => (
            "Records per page (default 100).",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        ),
        (_, "cursor") => ("The previous page's `next_cursor`.", text),
        (_, "count") => ("`true`: `{\"count\": N}` instead of a page.", flag),
        (_, "count_by") => (
            "Count the matches by this field instead of a page.",
            json!({"type": "string", "enum": count_by_names()}),
        ),
        (_, "top") => (
            "How many groups `count_by` lists.",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": DEFAULT_TOP}),
        ),
        _ => return None,
    })
}

/// The names `count_by` takes: each field, and its `_` spelling.
fn count_by_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for f in CountField::ALL {
        let name = f.as_str().to_owned();
        let underscored = name.replace('-', "_");
        names.push(name);
        if !names.contains(&underscored) {
            names.push(underscored);
        }
    }
    names
}

fn error_response(status: StatusCode, codes: &[ErrorCode]) -> Value {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let listed = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = json!({
        "description": format!("{}: {listed}.", status.canonical_reason().unwrap_or("Refused")),
        "content": {"application/json": {"schema": schema_ref("Error")}},
    });
    let mut headers = Map::new();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            "WWW-Authenticate".into(),
            json!({"description": "`Bearer realm=\"sealog\"`.", "schema": {"type": "string"}}),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::INSUFFICIENT_STORAGE {
        headers.insert(
            "Retry-After".into(),
            json!({"description": "Seconds to wait before retrying.",
                   "schema": {"type": "string", "pattern": "^[0-9]+$"}}),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

fn operation_object(op: &Operation) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    if op.path == EVENT {
        parameters.push(json!({"name": "seq", "in": "path", "required": true,
            "description": "The record's seq.",
            "schema": {"type": "integer", "format": "int64", "minimum": 0}}));
    }
    for name in op.params {
        let (description, schema) = parameter(op.id, name).unwrap_or(("", json!({})));
        let required = matches!(
            (op.id, *name),
            ("inclusion_proof", "seq") | ("consistency_proof", "from" | "to")
        );
        let mut p = json!({"name": name, "in": "query", "required": required,
                           "description": description, "schema": schema});
        if params::REPEATABLE.contains(name) {
            p["style"] = "form".into();
            p["explode"] = true.into();
        }
        parameters.push(p);
    }
    parameters.extend((op.headers)());
    let mut responses = match (op.ok)() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let refusals = op.refusals();
    let mut statuses: Vec<StatusCode> = refusals.iter().map(|c| c.status()).collect();
    statuses.dedup();
    for status in statuses {
        let codes: Vec<ErrorCode> = refusals
            .iter()
            .copied()
            .filter(|c| c.status() == status)
            .collect();
        responses.insert(status.as_u16().to_string(), error_response(status, &codes));
    }
    let mut o = json!({
        "operationId": op.id,
        "summary": op.summary,
        "responses": responses,
    });
    if !parameters.is_empty() {
        o["parameters"] = parameters.into();
    }
    if let Some(body) = op.body {
        o["requestBody"] = body();
    }
    o["security"] = match op.scopes {
        None => json!([]),
        Some(scopes) => scopes
            .iter()
            .map(|s| json!({"bearer": [s.as_str()]}))
            .collect(),
    };
    if op.all_tenants {
        o["x-sealog-all-tenants"] = true.into();
    }
    o
}

/// The document.
pub(super) fn document() -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = operation_object(&op);
    }
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sealog",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of `sealog serve`, an append-only audit log with \
                            RFC 9162 proofs. The reference with examples is docs/api.md. \
                            A path that is not here is 404 `not_found`, a method that is not \
                            here 405 `method_not_allowed`. A code is always sent with the \
                            same status (`ErrorCode`). Query strings are strict: an unknown \
                            parameter is 400 `unknown_parameter`, a repeated one (but \
                            `action`) or an empty one 400 `invalid_parameter`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token from `sealog token create`; the scopes of each \
                                operation are listed in its `security` (one of them is \
                                needed). A server without a tokens file (loopback only) \
                                needs none."}},
            "schemas": schemas(&codes),
        },
    })
}

fn schemas(codes: &[&str]) -> Value {
    let text = json!({"type": "string"});
    let u64 = json!({"type": "integer", "format": "int64", "minimum": 0});
    let time = json!({"type": "string", "format": "date-time"});
    let hex = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let b64 = json!({"type": "string", "contentEncoding": "base64"});
    let principal = json!({"type": "object", "additionalProperties": false,
        "required": ["type", "id"],
        "properties": {"type": {"type": "string", "minLength": 1},
                       "id": {"type": "string", "minLength": 1}}});
    let event_properties = json!({
        "time": {"type": "string", "format": "date-time",
                 "description": "When it happened (the client's clock); default: when recorded."},
        "actor": schema_ref("Actor"),
        "action": {"type": "string", "minLength": 1,
                   "description": "A lowercase dotted machine name (`customer.delete`)."},
        "resource": schema_ref("Resource"),
        "outcome": {"type": "string", "enum": ["success", "failure", "denied"]},
        "tenant": {"type": "string", "minLength": 1},
        "source": schema_ref("Source"),
        "request_id": {"type": "string", "minLength": 1},
        "reason": {"type": "string"},
        "metadata": {"type": "object"},
    });
    let mut record_properties = event_properties.clone();
    record_properties["seq"] = u64.clone();
    record_properties["recorded_at"] = time.clone();
    let histogram = json!({"type": "object", "additionalProperties": false,
        "required": ["bounds", "counts"],
        "properties": {"bounds": {"type": "array", "items": u64},
                       "counts": {"type": "array", "items": u64}}});
    let counters = |names: &[&str]| -> Value {
        let props: Map<String, Value> = names
            .iter()
            .map(|n| ((*n).to_owned(), u64.clone()))
            .collect();
        json!({"type": "object", "additionalProperties": false, "required": names,
               "properties": props})
    };
    let mut engine = counters(&[
        "records",
        "segments",
        "sealed_segments",
        "appends",
        "appended_events",
        "written_bytes",
        "commit_groups",
        "segment_rolls",
        "index_rebuilds",
        "fsyncs",
    ]);
    engine["properties"]["fsync_mean_us"] = json!({"type": ["number", "null"]});
    engine["properties"]["sync_latency_us"] = histogram.clone();
    engine["properties"]["group_events"] = histogram;
    for extra in ["fsync_mean_us", "sync_latency_us", "group_events"] {
        if let Some(required) = engine["required"].as_array_mut() {
            required.push(extra.into());
        }
    }
    json!({
        "Event": {"type": "object", "additionalProperties": false,
            "required": ["actor", "action", "resource", "outcome"],
            "description": "An event as a client sends it (docs/format.md: the field rules).",
            "properties": event_properties},
        "Record": {"type": "object", "additionalProperties": false,
            "required": ["seq", "recorded_at", "actor", "action", "resource", "outcome"],
            "description": "A stored event: the event plus `seq` and `recorded_at`.",
            "properties": record_properties},
        "Actor": {"type": "object", "additionalProperties": false,
            "required": ["type", "id"],
            "properties": {"type": {"type": "string", "minLength": 1},
                           "id": {"type": "string", "minLength": 1},
                           "on_behalf_of": principal,
                           "session_id": {"type": "string", "minLength": 1}}},
        "Resource": {"type": "object", "additionalProperties": false,
            "required": ["type"],
            "properties": {"type": {"type": "string", "minLength": 1},
                           "id": {"type": "string", "minLength": 1}}},
        "Source": {"type": "object", "additionalProperties": false,
            "properties": {"ip": {"type": "string", "anyOf": [{"format": "ipv4"},
                                                              {"format": "ipv6"}]},
                           "user_agent": text}},
        "Receipt": {"type": "object", "additionalProperties": false,
            "required": ["seq", "recorded_at", "leaf_hash", "chain_hash"],
            "properties": {"seq": u64, "recorded_at": time, "leaf_hash": hex,
                           "chain_hash": hex}},
        "IngestResponse": {"type": "object", "additionalProperties": false,
            "required": ["count", "receipts"],
            "properties": {"count": u64,
                           "receipts": {"type": "array", "items": schema_ref("Receipt")}}},
        "Page": {"type": "object", "additionalProperties": false,
            "required": ["records", "next_cursor"],
            "properties": {"records": {"type": "array", "items": schema_ref("Record")},
                           "next_cursor": {"type": ["string", "null"]}}},
        "Count": {"type": "object", "additionalProperties": false, "required": ["count"],
            "properties": {"count": u64}},
        "Counts": {"type": "object", "additionalProperties": false,
            "required": ["count_by", "groups", "total", "other_groups", "other_count",
                         "missing"],
            "properties": {
                "count_by": text,
                "groups": {"type": "array", "items": {"type": "object",
                    "additionalProperties": false, "required": ["key", "count"],
                    "properties": {"key": text, "count": u64}}},
                "total": u64, "other_groups": u64, "other_count": u64, "missing": u64}},
        "InclusionProof": {"type": "object", "additionalProperties": false,
            "required": ["seq", "tree_size", "leaf_hash", "proof"],
            "properties": {"seq": u64, "tree_size": u64,
                           "leaf_hash": {"type": ["string", "null"]},
                           "proof": {"type": "array", "items": b64}}},
        "ConsistencyProof": {"type": "object", "additionalProperties": false,
            "required": ["old_size", "new_size", "proof"],
            "properties": {"old_size": u64, "new_size": u64,
                           "proof": {"type": "array", "items": b64}}},
        "VerifyIntact": {"type": "object", "additionalProperties": false,
            "required": ["intact", "segments", "sealed_segments", "records", "bytes", "root",
                         "chain_head", "checkpoints", "checkpoints_authenticated",
                         "unacknowledged_tail_bytes", "indexes_checked", "elapsed_secs"],
            "properties": {"intact": {"const": true}, "segments": u64,
                           "sealed_segments": u64, "records": u64, "bytes": u64,
                           "root": b64, "chain_head": hex, "checkpoints": u64,
                           "checkpoints_authenticated": {"type": "boolean"},
                           "unacknowledged_tail_bytes": u64,
                           "indexes_checked": {"type": "boolean"},
                           "elapsed_secs": {"type": "number", "minimum": 0}}},
        "VerifyDamaged": {"type": "object", "additionalProperties": false,
            "required": ["intact", "problem", "file", "offset", "seq"],
            "properties": {"intact": {"const": false}, "problem": text, "file": text,
                           "offset": {"type": ["integer", "null"], "minimum": 0},
                           "seq": {"type": ["integer", "null"], "minimum": 0}}},
        "Stats": {"type": "object", "additionalProperties": false,
            "required": ["ready", "store", "server"],
            "properties": {"ready": {"type": "boolean"},
                           "store": {"oneOf": [engine, {"type": "null"}]},
                           "server": counters(&[
                               "ingest_requests", "ingest_events", "ingest_bytes",
                               "auth_failures", "auth_denials", "unavailable", "storage_full",
                               "idempotent_replays", "idempotency_keys",
                               "refusals_suppressed", "connections", "tail_streams",
                               "store_reopens"])}},
        "Health": {"type": "object", "additionalProperties": false, "required": ["status"],
            "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "additionalProperties": false, "required": ["ready"],
            "properties": {"ready": {"const": true}}},
        "NotReady": {"type": "object", "additionalProperties": false,
            "required": ["ready", "reason"],
            "properties": {"ready": {"const": false}, "reason": text}},
        "Error": {"type": "object", "additionalProperties": false, "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"],
                "description": "`code` is stable and always sent with the same status; \
                                further fields detail some codes (`errors`, `parameter`, \
                                `unknown`, `allowed`, `indices`, `file`, ...).",
                "properties": {"code": {"type": "string", "enum": codes},
                               "message": text}}}},
    })
}

/// The document as served, serialized once.
static DOCUMENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&document()).unwrap_or_default());

/// `GET /v1/openapi.json`.
pub(super) async fn serve() -> Response {
    json_bytes(StatusCode::OK, DOCUMENT.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    #![allow(clippy::indexing_slicing, reason = "tests fail loudly")]

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, header};
    use sealog::format::validate::Validator;
    use tokio::sync::watch;
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::Limits;
    use crate::handle::StoreHandle;
    use crate::state::App;
    use crate::tokens::{self, TokenStore};

    /// A router over a new store, and the secrets of its tokens: `root`
    /// (every scope), one per scope, and `bound` (every scope, tenant
    /// `acme`).
    struct Fixture {
        router: Router,
        paths: Vec<&'static str>,
        secrets: std::collections::HashMap<&'static str, String>,
        _channels: (watch::Sender<u64>, watch::Sender<bool>),
        _dir: tempfile::TempDir,
    }

    const ALL_SCOPES: [Scope; 3] = [Scope::Ingest, Scope::Query, Scope::Admin];

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tokens_path = dir.path().join("tokens.json");
        let mut secrets = std::collections::HashMap::new();
        let mut add = |name: &'static str, scopes: Vec<Scope>, tenant: Option<&str>| {
            let secret = tokens::create(&tokens_path, name, scopes, tenant.map(str::to_owned))
                .unwrap()
                .1;
            secrets.insert(name, secret);
        };
        add("root", ALL_SCOPES.to_vec(), None);
        add("bound", ALL_SCOPES.to_vec(), Some("acme"));
        for scope in ALL_SCOPES {
            add(scope.as_str(), vec![scope], None);
        }
        let store =
            StoreHandle::open(dir.path().join("data"), sealog::StoreOptions::default()).unwrap();
        let (visible_tx, visible_rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = Arc::new(App::new(
            Arc::new(store),
            Some(TokenStore::open(&tokens_path).unwrap()),
            Limits::default(),
            Validator::default(),
            visible_rx,
            stop_rx,
        ));
        let (router, paths) = super::super::router_and_paths(app);
        Fixture {
            router,
            paths,
            secrets,
            _channels: (visible_tx, stop_tx),
            _dir: dir,
        }
    }

    struct Answer {
        status: u16,
        body: Value,
    }

    impl Fixture {
        /// `method path` with the token `token` (none: `None`), the body
        /// read unless it is a stream.
        async fn call(&self, method: &Method, path: &str, token: Option<&str>) -> Answer {
            let mut req = Request::builder().method(method).uri(path);
            if let Some(name) = token {
                req = req.header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", self.secrets[name]),
                );
            }
            let r = self
                .router
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = r.status().as_u16();
            let stream = r
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = if stream {
                Value::Null
            } else {
                let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            Answer { status, body }
        }
    }

    /// A concrete path for a route (`{seq}` → `0`).
    fn concrete(path: &str) -> String {
        path.replace("{seq}", "0")
    }

    fn documented_paths() -> BTreeSet<String> {
        document()["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn the_document_has_every_routed_path_and_no_other() {
        let f = fixture();
        let routed: BTreeSet<String> = f.paths.iter().map(|p| (*p).to_owned()).collect();
        assert_eq!(routed.len(), f.paths.len(), "a path routed twice");
        assert_eq!(routed, documented_paths());
    }

    #[tokio::test]
    async fn each_path_serves_exactly_the_documented_methods() {
        let f = fixture();
        let doc = document();
        // HEAD is served wherever GET is (axum's rule) and not described.
        let methods = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ];
        for path in f.paths.iter().copied() {
            for method in &methods {
                let key = method.as_str().to_ascii_lowercase();
                let documented = doc["paths"][path].get(&key).is_some();
                let a = f.call(method, &concrete(path), Some("root")).await;
                assert_eq!(
                    a.status != 405,
                    documented,
                    "{method} {path}: answered {}, documented: {documented}",
                    a.status
                );
                if !documented {
                    assert_eq!(a.body["error"]["code"], "method_not_allowed");
                }
            }
        }
    }

    #[tokio::test]
    async fn each_operation_documents_the_parameters_it_accepts() {
        let f = fixture();
        let doc = document();
        for op in operations() {
            let described = &doc["paths"][op.path][op.method];
            let query: BTreeSet<String> = described["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    let name = p["name"].as_str().unwrap();
                    assert!(
                        p["description"].as_str().is_some_and(|d| !d.is_empty()),
                        "{} {}: `{name}` has no description in `parameter`",
                        op.method,
                        op.path
                    );
                    name.to_owned()
                })
                .collect();
            let method = Method::from_bytes(op.method.to_ascii_uppercase().as_bytes()).unwrap();
            let probe = format!("{}?zz_undocumented=1", concrete(op.path));
            let a = f.call(&method, &probe, Some("root")).await;
            if op.scopes.is_none() {
                // The public endpoints read no query string.
                assert_eq!(a.status, 200, "{} {}", op.method, op.path);
                assert!(query.is_empty(), "{} {}", op.method, op.path);
                continue;
            }
            assert_eq!(
                a.body["error"]["code"], "unknown_parameter",
                "{} {}: {}",
                op.method, op.path, a.body
            );
            let accepted: BTreeSet<String> = a.body["error"]["allowed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                query, accepted,
                "{} {}: documented and accepted query parameters differ",
                op.method, op.path
            );
        }
    }

    #[tokio::test]
    async fn each_operation_needs_the_documented_scopes() {
        let f = fixture();
        let doc = document();
        for op in operations() {
            let method = Method::from_bytes(op.method.to_ascii_uppercase().as_bytes()).unwrap();
            let path = concrete(op.path);
            let security = doc["paths"][op.path][op.method]["security"]
                .as_array()
                .unwrap();
            let Some(scopes) = op.scopes else {
                assert!(security.is_empty(), "{} {}", op.method, op.path);
                let a = f.call(&method, &path, None).await;
                assert_eq!(a.status, 200, "{} {} without a token", op.method, op.path);
                continue;
            };
            let documented: Vec<&str> = security
                .iter()
                .flat_map(|s| s["bearer"].as_array().unwrap())
                .map(|s| s.as_str().unwrap())
                .collect();
            assert_eq!(
                documented,
                scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>()
            );
            let a = f.call(&method, &path, None).await;
            assert_eq!(a.body["error"]["code"], "missing_token", "{path}");
            for scope in ALL_SCOPES {
                let a = f.call(&method, &path, Some(scope.as_str())).await;
                let refused = a.body["error"]["code"] == "insufficient_scope";
                assert_eq!(
                    refused,
                    !scopes.contains(&scope),
                    "{} {} with a `{}` token: {} {}",
                    op.method,
                    op.path,
                    scope.as_str(),
                    a.status,
                    a.body
                );
            }
            let a = f.call(&method, &path, Some("bound")).await;
            let refused = a.body["error"]["code"] == "tenant_forbidden";
            assert_eq!(
                refused, op.all_tenants,
                "{} {} with a tenant-bound token: {} {}",
                op.method, op.path, a.status, a.body
            );
        }
    }

    #[test]
    fn every_error_code_is_documented_with_its_status() {
        let doc = document();
        let listed: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        let mut answered: BTreeSet<ErrorCode> = ROUTER.iter().copied().collect();
        for op in operations() {
            let responses = &doc["paths"][op.path][op.method]["responses"];
            for code in op.refusals() {
                answered.insert(code);
                let status = code.status().as_u16().to_string();
                let text = responses[&status]["description"].as_str().unwrap_or("");
                assert!(
                    text.contains(&format!("`{code}`")),
                    "{} {}: {status} does not name `{code}`",
                    op.method,
                    op.path
                );
            }
        }
        let missing: Vec<&ErrorCode> = ErrorCode::ALL
            .iter()
            .filter(|c| !answered.contains(c))
            .collect();
        assert!(
            missing.is_empty(),
            "error codes no operation answers with: {missing:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_unique_operation_ids() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let ids: Vec<&str> = operations().iter().map(|o| o.id).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "{ids:?}");
        // Every reference resolves.
        let text = doc.to_string();
        for (i, _) in text.match_indices("#/components/schemas/") {
            let rest = &text[i + "#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "unresolved $ref {name}"
            );
        }
    }

    #[tokio::test]
    async fn the_document_is_served_without_a_token() {
        let f = fixture();
        let a = f.call(&Method::GET, OPENAPI, None).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, document());
    }
}
