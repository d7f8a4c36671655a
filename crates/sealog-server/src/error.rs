//! The server's errors, as HTTP responses.
//!
//! Every refusal is a JSON body `{"error": {"code", "message", ...}}` whose
//! `code` is stable (clients branch on it) and whose `message` says what
//! was wrong and what to do about it. [`ApiError::from_store`] maps the
//! engine's errors to statuses: invalid input → 400, too large → 413, a
//! full disk → 507, other write refusals → 503, damage (corruption) → 500
//! `store_damaged` with the file, byte offset and seq.

use std::io;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Declares [`ErrorCode`]: each variant with its HTTP status and its name
/// on the wire, so that the three cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = ($status:ident, $name:literal),)*) => {
        /// The stable `code` of an error response, with its HTTP status.
        ///
        /// Clients branch on the code; `docs/api.md` lists every one (a
        /// test holds the two together, both ways).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as sent: `invalid_events`, `missing_token`, ...
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// The HTTP status the code is always sent with.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            /// The code named `name` on the wire.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name {
                    $($name => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The body is not JSON, or neither an object nor an array.
    MalformedJson = (BAD_REQUEST, "malformed_json"),
    /// The body is not UTF-8.
    InvalidUtf8 = (BAD_REQUEST, "invalid_utf8"),
    /// Events are malformed, too large or break a rule (listed).
    InvalidEvents = (BAD_REQUEST, "invalid_events"),
    /// The body is empty.
    EmptyBody = (BAD_REQUEST, "empty_body"),
    /// The body holds no event.
    EmptyBatch = (BAD_REQUEST, "empty_batch"),
    /// The body is not what its `Content-Encoding` says.
    InvalidEncoding = (BAD_REQUEST, "invalid_encoding"),
    /// The `Idempotency-Key` header is not 1 to 255 printable characters.
    InvalidIdempotencyKey = (BAD_REQUEST, "invalid_idempotency_key"),
    /// The body could not be read from the connection.
    BodyReadFailed = (BAD_REQUEST, "body_read_failed"),
    /// A query parameter the endpoint does not take.
    UnknownParameter = (BAD_REQUEST, "unknown_parameter"),
    /// A query parameter's value is wrong (named in `parameter`).
    InvalidParameter = (BAD_REQUEST, "invalid_parameter"),
    /// A seq in the path is not a number.
    InvalidSeq = (BAD_REQUEST, "invalid_seq"),
    /// `Last-Event-ID` is not a seq.
    InvalidLastEventId = (BAD_REQUEST, "invalid_last_event_id"),
    /// The engine refused a proof request.
    InvalidProofRequest = (BAD_REQUEST, "invalid_proof_request"),
    /// No `Authorization` header.
    MissingToken = (UNAUTHORIZED, "missing_token"),
    /// The `Authorization` header is not `Bearer <token>`.
    MalformedToken = (UNAUTHORIZED, "malformed_token"),
    /// No token has this secret.
    InvalidToken = (UNAUTHORIZED, "invalid_token"),
    /// The token was revoked.
    RevokedToken = (UNAUTHORIZED, "revoked_token"),
    /// The tokens file cannot be read: nobody is let in.
    TokensUnavailable = (UNAUTHORIZED, "tokens_unavailable"),
    /// The token lacks the endpoint's scope.
    InsufficientScope = (FORBIDDEN, "insufficient_scope"),
    /// A tenant-bound token reached beyond its tenant.
    TenantForbidden = (FORBIDDEN, "tenant_forbidden"),
    /// No such endpoint, or no such record (visible to the token).
    NotFound = (NOT_FOUND, "not_found"),
    /// The endpoint does not take this method.
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "method_not_allowed"),
    /// The body did not arrive in time.
    BodyTimeout = (REQUEST_TIMEOUT, "body_timeout"),
    /// Checkpoints and receipts need a signing key.
    NoSigningKey = (CONFLICT, "no_signing_key"),
    /// A verification is already running.
    VerifyRunning = (CONFLICT, "verify_running"),
    /// The body is larger than `max_body_bytes`.
    BodyTooLarge = (PAYLOAD_TOO_LARGE, "body_too_large"),
    /// The single event is larger than `max_event_bytes`.
    EventTooLarge = (PAYLOAD_TOO_LARGE, "event_too_large"),
    /// More events than `max_batch_events`.
    TooManyEvents = (PAYLOAD_TOO_LARGE, "too_many_events"),
    /// The batch is larger than the store or the ingest budget holds.
    BatchTooLarge = (PAYLOAD_TOO_LARGE, "batch_too_large"),
    /// A `Content-Type` other than JSON or NDJSON.
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    /// A `Content-Encoding` other than gzip, zstd or identity.
    UnsupportedEncoding = (UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
    /// The `Idempotency-Key` was used with another body.
    IdempotencyKeyReused = (UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    /// A bug or a failed worker thread.
    Internal = (INTERNAL_SERVER_ERROR, "internal"),
    /// The store is damaged: the answer would be incomplete.
    StoreDamaged = (INTERNAL_SERVER_ERROR, "store_damaged"),
    /// The ingest budget is used up.
    IngestSaturated = (SERVICE_UNAVAILABLE, "ingest_saturated"),
    /// The store is being reopened, the server is shutting down, or a
    /// limit on streams, exports or verification is reached.
    Unavailable = (SERVICE_UNAVAILABLE, "unavailable"),
    /// The request took longer than `request_timeout_secs`.
    RequestTimeout = (SERVICE_UNAVAILABLE, "request_timeout"),
    /// The disk is full.
    StorageFull = (INSUFFICIENT_STORAGE, "storage_full"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error response (boxed: it travels in many `Result`s).
#[derive(Debug, Clone)]
pub struct ApiError(Box<ApiErrorParts>);

/// The parts of an [`ApiError`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiErrorParts {
    /// The HTTP status: always `code.status()`.
    pub status: StatusCode,
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong and how to fix it.
    pub message: String,
    /// Further fields of the `error` object (`errors`, `field`, `line`, ...).
    pub details: Map<String, Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// Set on 401 responses: the `WWW-Authenticate` challenge.
    pub challenge: bool,
    /// Further response headers (`Accept-Encoding` on a 415, say).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with its code (which gives the status) and message. A 401
    /// carries the `WWW-Authenticate` challenge.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let status = code.status();
        ApiError(Box::new(ApiErrorParts {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
            challenge: status == StatusCode::UNAUTHORIZED,
            headers: Vec::new(),
        }))
    }

    /// A 400 named by its code's text, for code that names codes as text
    /// (the query-string parser). A name that is not a 400 code is a bug
    /// (a test checks every name given in the crate's sources); it is
    /// answered as `invalid_parameter`, still a 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        let code = ErrorCode::from_name(code)
            .filter(|c| c.status() == StatusCode::BAD_REQUEST)
            .unwrap_or(ErrorCode::InvalidParameter);
        ApiError::new(code, message)
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.0.details.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.0.headers.push((name, value));
        self
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.0.retry_after = Some(secs);
        self
    }

    /// Replaces the message by `f` of it.
    pub(crate) fn map_message(mut self, f: impl FnOnce(&str) -> String) -> ApiError {
        self.0.message = f(&self.0.message);
        self
    }

    /// The detail fields, to amend.
    pub(crate) fn details_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0.details
    }

    /// A query parameter is wrong.
    pub fn bad_param(param: &str, reason: impl Into<String>) -> ApiError {
        let reason = reason.into();
        ApiError::new(ErrorCode::InvalidParameter, format!("`{param}`: {reason}"))
            .with("parameter", param)
            .with("reason", reason)
    }

    /// The store is busy or refusing writes for a reason other than space.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unavailable, message).retry_after(1)
    }

    /// Maps an engine error.
    pub fn from_store(e: &sealog::Error) -> ApiError {
        use sealog::Error as E;
        match e {
            E::InvalidEvent(v) => ApiError::new(
                ErrorCode::InvalidEvents,
                format!("1 invalid event; nothing was written: {v}"),
            )
            .with(
                "errors",
                json!([{"index": 0, "field": v.field(), "reason": v.reason()}]),
            ),
            E::InvalidBatch(errors) => {
                let list: Vec<Value> = errors
                    .iter()
                    .map(|b| {
                        json!({"index": b.index, "field": b.error.field(), "reason": b.error.reason()})
                    })
                    .collect();
                ApiError::new(
                    ErrorCode::InvalidEvents,
                    format!(
                        "{} invalid event(s) in the batch; nothing was written: fix the events \
                         listed in `errors` and send the batch again",
                        errors.len()
                    ),
                )
                .with("errors", list)
            }
            E::InvalidQuery { field, reason } => ApiError::bad_param(field, reason.clone()),
            E::BatchTooLarge { bytes, max } => ApiError::new(
                ErrorCode::BatchTooLarge,
                format!(
                    "the batch encodes to {bytes} bytes, more than the store's limit of {max} \
                     bytes per batch; split it into smaller batches"
                ),
            ),
            E::WritesRefused { .. } if e.io_kind() == Some(io::ErrorKind::StorageFull) => {
                ApiError::new(
                    ErrorCode::StorageFull,
                    format!(
                        "the disk is full; nothing of this request was written. Events \
                         acknowledged before are safe. The server reopens the store by itself \
                         once space is freed; retry then ({e})"
                    ),
                )
                .retry_after(5)
            }
            E::Unacknowledged { .. } if e.io_kind() == Some(io::ErrorKind::StorageFull) => {
                ApiError::new(
                    ErrorCode::StorageFull,
                    format!(
                        "the disk filled up while this batch was being written: it was NOT \
                         acknowledged, and whether it is in the log is known only once the \
                         store is reopened (all of it or none). Events acknowledged before are \
                         safe. The server reopens the store by itself once space is freed; \
                         then look for the batch (e.g. by request_id) before sending it again \
                         ({e})"
                    ),
                )
                .retry_after(5)
            }
            E::Unacknowledged { .. } => ApiError::unavailable(format!(
                "writing this batch failed: it was NOT acknowledged, and whether it is in the \
                 log is known only once the store is reopened (all of it or none); the server \
                 is reopening the store: then look for the batch (e.g. by request_id) before \
                 sending it again ({e})"
            )),
            E::Io { .. } if e.io_kind() == Some(io::ErrorKind::StorageFull) => ApiError::new(
                ErrorCode::StorageFull,
                format!("the disk is full; free space and retry ({e})"),
            )
            .retry_after(5),
            E::WritesRefused { .. } => ApiError::unavailable(format!(
                "the store refuses writes after a failed write or sync; nothing of this request \
                 was written and the server is reopening the store: retry shortly ({e})"
            )),
            E::Closed => ApiError::unavailable("the store is closed (the server is shutting down)"),
            E::Corruption(c) => ApiError::new(
                ErrorCode::StoreDamaged,
                format!(
                    "the store is damaged, so this answer would be incomplete: {}. The operator \
                     should keep the data directory as it is (it is evidence), run `sealog \
                     verify` on it, and restore {} from a backup or the archive",
                    c, c.location.file
                ),
            )
            .with("file", c.location.file.clone())
            .with("offset", c.location.offset)
            .with("seq", c.location.seq)
            .with("problem", c.kind.to_string()),
            E::Proof(p) => ApiError::new(ErrorCode::InvalidProofRequest, p.to_string()),
            other => ApiError::new(ErrorCode::Internal, format!("the store failed: {other}")),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.as_str().into());
        error.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.details {
            error.insert(k.clone(), v.clone());
        }
        json!({ "error": error })
    }
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorParts;
    fn deref(&self) -> &ApiErrorParts {
        &self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let retry_after = self.retry_after;
        let challenge = self.challenge;
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        if challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sealog\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::collections::BTreeMap;

    use super::*;

    /// `(code, status, section)` of every row of every `| status | code |
    /// when |` table in docs/api.md whose code cell names codes.
    fn documented() -> Vec<(String, u16, String)> {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"))
                .unwrap();
        let mut rows = Vec::new();
        let mut section = String::new();
        let mut in_table = false;
        for line in text.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading.trim().to_owned();
            }
            if !line.starts_with('|') {
                in_table = false;
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.first() == Some(&"status") && cells.get(1) == Some(&"code") {
                in_table = true;
                continue;
            }
            let (Some(status), Some(codes)) = (cells.first(), cells.get(1)) else {
                continue;
            };
            if !in_table || status.starts_with("---") {
                continue;
            }
            let names: Vec<&str> = codes.split('`').skip(1).step_by(2).collect();
            if names.is_empty() {
                continue;
            }
            let status: u16 = status
                .parse()
                .unwrap_or_else(|_| panic!("api.md: status `{status}` of {codes} is not one"));
            for name in names {
                rows.push((name.to_owned(), status, section.clone()));
            }
        }
        rows
    }

    #[test]
    fn every_error_code_is_documented_in_api_md_with_its_status_and_nothing_else_is() {
        let rows = documented();
        let mut problems = Vec::new();
        for (name, status, section) in &rows {
            match ErrorCode::from_name(name) {
                None => problems.push(format!(
                    "api.md ({section}) documents `{name}`, which the server never sends"
                )),
                Some(code) if code.status().as_u16() != *status => problems.push(format!(
                    "api.md ({section}) gives `{name}` status {status}, the server sends {}",
                    code.status().as_u16()
                )),
                Some(_) => {}
            }
        }
        let mut reference: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, _, section) in &rows {
            if section == "Error codes" {
                *reference.entry(name.as_str()).or_insert(0) += 1;
            }
        }
        for code in ErrorCode::ALL {
            match reference.get(code.as_str()) {
                None => problems.push(format!(
                    "`{code}` ({}) is missing from api.md's table under `## Error codes`",
                    code.status().as_u16()
                )),
                Some(1) => {}
                Some(n) => problems.push(format!("`{code}` is listed {n} times under Error codes")),
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(
            rows.len() > ErrorCode::ALL.len(),
            "the endpoint tables were read too"
        );
    }

    #[test]
    fn a_code_and_its_name_are_one_to_one() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "`{code}` twice");
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
            let e = ApiError::new(code, "m");
            assert_eq!((e.status, e.code), (code.status(), code));
            assert_eq!(e.body()["error"]["code"], code.as_str());
            assert_eq!(e.challenge, code.status() == StatusCode::UNAUTHORIZED);
        }
        assert_eq!(ErrorCode::from_name("no_such_code"), None);
    }

    /// Every code named by text to `ApiError::bad_request` in the crate's
    /// sources (this file aside) is a 400 code, so that none falls back to
    /// `invalid_parameter`.
    #[test]
    fn every_code_named_by_text_is_a_400_code() {
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut named = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.ends_with("error.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("bad_request(").skip(1) {
                    let piece = piece.trim_start();
                    let Some(rest) = piece.strip_prefix('"') else {
                        continue;
                    };
                    let name = rest.split('"').next().unwrap();
                    let code = ErrorCode::from_name(name);
                    assert!(
                        code.is_some_and(|c| c.status() == StatusCode::BAD_REQUEST),
                        "{}: `{name}` is not a 400 code",
                        path.display()
                    );
                    named += 1;
                }
            }
        }
        assert!(named > 0, "the scan found the parser's codes");
    }
}
