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

/// An error response (boxed: it travels in many `Result`s).
#[derive(Debug, Clone)]
pub struct ApiError(Box<ApiErrorParts>);

/// The parts of an [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiErrorParts {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`invalid_events`, `unauthorized`, ...).
    pub code: &'static str,
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
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ApiErrorParts {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
            challenge: false,
            headers: Vec::new(),
        }))
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    /// A query parameter is wrong.
    pub fn bad_param(param: &str, reason: impl Into<String>) -> ApiError {
        let reason = reason.into();
        ApiError::bad_request("invalid_parameter", format!("`{param}`: {reason}"))
            .with("parameter", param)
            .with("reason", reason)
    }

    /// The store is busy or refusing writes for a reason other than space.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(1)
    }

    /// Maps an engine error.
    pub fn from_store(e: &sealog::Error) -> ApiError {
        use sealog::Error as E;
        match e {
            E::InvalidEvent(v) => ApiError::bad_request(
                "invalid_events",
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
                ApiError::bad_request(
                    "invalid_events",
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
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!(
                    "the batch encodes to {bytes} bytes, more than the store's limit of {max} \
                     bytes per batch; split it into smaller batches"
                ),
            ),
            E::WritesRefused { .. } if e.io_kind() == Some(io::ErrorKind::StorageFull) => {
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
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
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
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
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                format!("the disk is full; free space and retry ({e})"),
            )
            .retry_after(5),
            E::WritesRefused { .. } => ApiError::unavailable(format!(
                "the store refuses writes after a failed write or sync; nothing of this request \
                 was written and the server is reopening the store: retry shortly ({e})"
            )),
            E::Closed => ApiError::unavailable("the store is closed (the server is shutting down)"),
            E::Corruption(c) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_damaged",
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
            E::Proof(p) => ApiError::bad_request("invalid_proof_request", p.to_string()),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the store failed: {other}"),
            ),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
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

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorParts {
        &mut self.0
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
