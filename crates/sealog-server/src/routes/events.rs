//! Reading events: `GET /v1/events` (a page, a count, or an NDJSON
//! export of every match), `GET /v1/events/{seq}` (a record or its
//! receipt), `GET /v1/tail` (Server-Sent Events of new records; the
//! stream itself is [`crate::tail`]) and `GET /v1/alerts` (the same, of
//! the alerts the server raises).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealog::Store;
use sealog::format::record::RecordView;
use sealog::format::{Metadata, Resource};
use sealog::query::{Page, Query};
use serde::Serialize;

use super::{
    Json, NDJSON, blocking, blocking_read, flag, json_bytes, no_key, plain_text, store_error,
    visible_record, wants_ndjson,
};
use crate::audit;
use crate::auth::{Authed, QueryScope};
use crate::error::{ApiError, ErrorCode};
use crate::metrics;
use crate::params::{self, FILTERS, Params, QUERY_PARAMS};
use crate::state::App;
use crate::tail::{ABORT_GRACE, Render};

/// `count=true`: the number of matches.
#[derive(Serialize)]
struct Count {
    count: u64,
}

/// The largest page answered on the request's own task when what is in
/// memory holds it ([`sealog::Store::query_in_memory_with`]).
const INLINE_PAGE_LIMIT: usize = 100;

/// `GET /v1/events`: a page, a count, or an NDJSON export.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = params::parse(raw.as_deref(), QUERY_PARAMS, params::REPEATABLE)?;
    let mut query = params::query(&params)?;
    let count = params::count(&params)?;
    auth.bind_tenant(&app, &mut query).await?;
    let store = app.store.get()?;
    let ndjson = wants_ndjson(&headers);
    if let Some(grouping) = params::count_by(&params)? {
        return count_groups(&app, store, &auth, &params, query, grouping, ndjson).await;
    }
    if count {
        return count_matches(&app, store, &auth, &params, query, ndjson).await;
    }
    if ndjson {
        return export(&app, store, &auth, &params, query).await;
    }
    // A small page that what is in memory holds whole (the newest events
    // of an actor, say, in the open segments and the segments sealed
    // lately) waits for no disk: it is answered here, without the hand-off
    // to a blocking thread and back that a read of other sealed segments
    // (page faults, index checks, the archive) needs.
    //
    // Each record is written as JSON straight from its checked stored
    // bytes (no owned record to build, serialize and drop).
    let in_memory = if query.limit <= INLINE_PAGE_LIMIT {
        store
            .query_in_memory_with(&query, record_json)
            .map_err(|e| store_error(&app, &e))?
    } else {
        None
    };
    let page = match in_memory {
        Some(page) => {
            metrics::add(&app.metrics.query_pages_in_memory, 1);
            page
        }
        None => {
            metrics::add(&app.metrics.query_pages_searched, 1);
            let q = query.clone();
            let s = store.clone();
            blocking_read(&app, move || s.query_with(&q, record_json))
                .await?
                .map_err(|e| store_error(&app, &e))?
        }
    };
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(&params));
    metadata.insert("returned".into(), page.records.len().into());
    // The page is serialized while its record is being made durable; it is
    // sent only once the record is.
    let recorded = auth.record_queued(&app, &store, "log.query", Resource::kind("log"), metadata);
    let response = json_bytes(StatusCode::OK, page_json(&page));
    recorded.await?;
    Ok(response)
}

/// A record's JSON ([`sealog::Record`]'s serialization), written from its
/// view.
fn record_json(view: &RecordView<'_>) -> Vec<u8> {
    let mut json = Vec::with_capacity(512);
    view.write_json(&mut json);
    json
}

/// A page of records already written as JSON: the body of
/// [`crate::wire::PageJson`], `{"records":[...],"next_cursor":...}`.
fn page_json(page: &Page<Vec<u8>>) -> Vec<u8> {
    let records: usize = page.records.iter().map(Vec::len).sum();
    let mut body = Vec::with_capacity(records + page.records.len() + 96);
    body.extend_from_slice(b"{\"records\":[");
    for (i, record) in page.records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record);
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    match &page.next_cursor {
        // Writing to a Vec cannot fail.
        Some(cursor) => drop(serde_json::to_writer(&mut body, cursor)),
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    body
}

/// `count=true`: the number of matches, `{"count": N}`.
async fn count_matches(
    app: &App,
    store: Store,
    auth: &Authed<QueryScope>,
    params: &Params,
    query: Query,
    ndjson: bool,
) -> Result<Response, ApiError> {
    for paging in ["limit", "cursor"] {
        if params::get(params, paging).is_some() {
            // A count has no pages: refuse rather than ignore.
            return Err(ApiError::bad_param(
                paging,
                "pages a listing; `count=true` counts every match: drop it",
            ));
        }
    }
    if ndjson {
        return Err(ApiError::bad_param(
            "count",
            "answers JSON, `{\"count\": N}`; drop `Accept: application/x-ndjson` or `count`",
        ));
    }
    // A count of what is in memory (the last hour's segments, say) is
    // answered here, as a page is; another goes to a blocking thread.
    let n = match store
        .count_in_memory(&query)
        .map_err(|e| store_error(app, &e))?
    {
        Some(n) => {
            metrics::add(&app.metrics.counts_in_memory, 1);
            n
        }
        None => {
            metrics::add(&app.metrics.counts_searched, 1);
            let s = store.clone();
            blocking_read(app, move || s.count(&query))
                .await?
                .map_err(|e| store_error(app, &e))?
        }
    };
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(params));
    metadata.insert("count".into(), n.into());
    auth.record(app, &store, "log.query", Resource::kind("log"), metadata)
        .await?;
    Ok(Json(Count { count: n }).into_response())
}

/// `count_by=FIELD&top=N`: the matches counted by group
/// ([`sealog::Store::count_by`]), as [`crate::wire::CountsJson`].
async fn count_groups(
    app: &App,
    store: Store,
    auth: &Authed<QueryScope>,
    params: &Params,
    query: Query,
    (field, top): (sealog::aggregate::CountField, usize),
    ndjson: bool,
) -> Result<Response, ApiError> {
    for paging in ["limit", "cursor"] {
        if params::get(params, paging).is_some() {
            return Err(ApiError::bad_param(
                paging,
                "pages a listing; `count_by` counts every match: drop it",
            ));
        }
    }
    if ndjson {
        return Err(ApiError::bad_param(
            "count_by",
            "answers JSON; drop `Accept: application/x-ndjson` or `count_by`",
        ));
    }
    let s = store.clone();
    let counted = blocking_read(app, move || s.count_by(&query, field, top))
        .await?
        .map_err(|e| store_error(app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(params));
    metadata.insert("total".into(), counted.total.into());
    auth.record(app, &store, "log.query", Resource::kind("log"), metadata)
        .await?;
    Ok(Json(crate::wire::CountsJson::from(&counted)).into_response())
}

/// Every match as NDJSON, streamed as the client reads it.
async fn export(
    app: &App,
    store: Store,
    auth: &Authed<QueryScope>,
    params: &Params,
    mut query: Query,
) -> Result<Response, ApiError> {
    if params::get(params, "limit").is_some() || params::get(params, "cursor").is_some() {
        // A stream has no pages: refuse rather than ignore.
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "`limit` and `cursor` page a JSON listing; an NDJSON export streams every match. \
             Drop them, or ask for JSON (Accept: application/json)",
        ));
    }
    query.limit = sealog::query::MAX_LIMIT;
    let permit = app.gates.export()?;
    let matches = {
        let s = store.clone();
        blocking(move || s.matches(&query))
            .await?
            .map_err(|e| store_error(app, &e))?
    };
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(params));
    auth.record(app, &store, "log.export", Resource::kind("log"), metadata)
        .await?;
    // A record that cannot be read mid-way cannot change the status, which
    // is sent: the stream then carries a last line `{"error": {...}}` and is
    // aborted (the chunked body never gets its terminating chunk), so that
    // no client can take it for a complete export.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut matches = matches;
        let mut buf = Vec::with_capacity(64 << 10);
        // Each record is written from its checked stored bytes, with its
        // event time in `time`, as `sealog export` writes it, so that an
        // import keeps it.
        while let Some(item) = matches.next_with(|view| {
            view.write_json_with_event_time(&mut buf);
            buf.push(b'\n');
        }) {
            if let Err(e) = item {
                let error = ApiError::from_store(&e);
                tracing::error!(%error, "an export stream was cut short");
                let line = error.body().to_string();
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                let _ = tx.blocking_send(Ok(Bytes::from(std::mem::take(&mut buf))));
                let _ = tx.blocking_send(Err(std::io::Error::other(error.to_string())));
                return;
            }
            if buf.len() >= 60 << 10
                && tx
                    .blocking_send(Ok(Bytes::from(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(64 << 10),
                    ))))
                    .is_err()
            {
                return;
            }
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(Ok(Bytes::from(buf)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        if item.is_err() {
            // hyper drops what it has not yet written when a body fails:
            // give it the time to send the error line first.
            tokio::time::sleep(ABORT_GRACE).await;
        }
        Some((item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(r)
}

fn parse_seq(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidSeq,
            format!(
                "`{}` is not a sequence number (a non-negative integer)",
                audit::clean(text, 64)
            ),
        )
    })
}

/// `GET /v1/events/{seq}`: the record, or with `proof=true` its receipt.
pub(super) async fn one(
    State(app): State<Arc<App>>,
    Path(seq): Path<String>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
) -> Result<Response, ApiError> {
    let params = params::parse(raw.as_deref(), params::RECORD_PARAMS, &[])?;
    let proof = flag(&params, "proof")?;
    let seq = parse_seq(&seq)?;
    let store = app.store.get()?;
    if proof && !app.store.signs() {
        return Err(no_key());
    }
    let record = visible_record(&app, &store, &auth, seq).await?;
    let resource = Resource::new("record", seq.to_string());
    if proof {
        let s = store.clone();
        let text = blocking(move || s.receipt(seq))
            .await?
            .map_err(|e| store_error(&app, &e))?;
        let mut metadata = Metadata::new();
        metadata.insert("kind".into(), "receipt".into());
        auth.record(&app, &store, "log.proof", resource, metadata)
            .await?;
        return Ok(plain_text(text));
    }
    auth.record(&app, &store, "log.read", resource, Metadata::new())
        .await?;
    Ok(Json(record).into_response())
}

/// `GET /v1/tail`.
pub(super) async fn tail(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = params::parse(raw.as_deref(), FILTERS, params::REPEATABLE)?;
    if params::get(&params, "since").is_some() {
        return Err(ApiError::bad_param(
            "since",
            "looks back from now, and a tail streams what arrives from now on: use `from` \
             (a time or a date) to filter the streamed events by event time",
        ));
    }
    let mut query = params::query(&params)?;
    auth.bind_tenant(&app, &mut query).await?;
    query.order = sealog::query::Order::OldestFirst;
    let last_id = last_event_id(&headers)?;
    open_stream(app, &auth, &params, query, Render::Records, last_id).await
}

/// The `Last-Event-ID` of a reconnecting stream: the seq of the last event
/// the client received.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidLastEventId,
                        "Last-Event-ID must be the seq of the last event received (an integer)",
                    )
                })?,
        )),
    }
}

/// Takes a stream's place, records the `log.tail` event, and starts it.
async fn open_stream(
    app: Arc<App>,
    auth: &Authed<QueryScope>,
    params: &Params,
    query: Query,
    render: Render,
    last_id: Option<u64>,
) -> Result<Response, ApiError> {
    let permit = app.gates.tail()?;
    let store = app.store.get()?;
    let mut metadata = Metadata::new();
    metadata.insert("params".into(), audit::params_metadata(params));
    if let Some(id) = last_id {
        metadata.insert("last_event_id".into(), id.into());
    }
    auth.record(&app, &store, "log.tail", Resource::kind("log"), metadata)
        .await?;
    drop(store);
    Ok(crate::tail::stream(app, query, render, permit, last_id))
}

/// `GET /v1/alerts`: the alerts raised from now on (or after
/// `Last-Event-ID`), those of the token's tenant only for a tenant-bound
/// token.
pub(super) async fn alerts(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = params::parse(raw.as_deref(), params::ALERTS_PARAMS, &[])?;
    let mut query = params::query(&params)?;
    auth.bind_tenant(&app, &mut query).await?;
    query.order = sealog::query::Order::OldestFirst;
    query.actor = Some(sealog::query::ActorFilter {
        kind: Some(sealog_alerts::alert::ALERT_ACTOR_TYPE.to_owned()),
        id: sealog_alerts::alert::ALERT_ACTOR_ID.to_owned(),
    });
    query.actions = vec![
        sealog::query::ActionPattern::new(sealog_alerts::ALERT_ACTION)
            .map_err(|e| ApiError::from_store(&e))?,
    ];
    let last_id = last_event_id(&headers)?;
    open_stream(app, &auth, &params, query, Render::Alerts, last_id).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn a_count_is_one_field() {
        assert_eq!(
            serde_json::to_string(&Count { count: 42 }).unwrap(),
            r#"{"count":42}"#
        );
    }
}
