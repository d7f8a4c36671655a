//! `GET /v1/tail`: newly committed matching events as Server-Sent Events.
//!
//! One follower thread per server waits on the store
//! ([`sealog::Store::wait_for_records`]) and publishes the number of
//! visible records on a `watch` channel; each stream is an async task that
//! wakes on it, reads the new records in chunks of at most
//! [`CHUNK`] on a blocking thread, keeps those matching its filters, and
//! yields them as events whose `id:` is the seq. A stream is only read as
//! fast as the client takes the bytes (hyper polls it when the socket can
//! accept more), so a slow consumer holds at most one chunk in memory. A
//! client that reconnects with `Last-Event-ID: N` resumes after seq N.
//!
//! `GET /v1/alerts` is the same stream over the `alert.raised` events of
//! the alert evaluator ([`crate::alerts`]), each sent as its alert (the
//! webhook body, [`sealog_alerts::Alert`]) in an `alert` event: an alert is
//! streamed once its event is durable in the log, and a reconnecting
//! client resumes by the event's seq like any tail.
//!
//! No record is skipped: while the store is being reopened a stream waits
//! and reads again from where it was; a record that cannot be read (a
//! damaged store) is sent as an `event: error` whose data is the error
//! body, and the stream is then aborted, so that a client cannot take the
//! end for a quiet log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sealog::format::record;
use sealog::query::Query;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::error::{ApiError, ErrorCode};
use crate::handle::StoreHandle;
use crate::metrics;
use crate::state::App;

/// Records read per wake-up, at most.
pub(crate) const CHUNK: u64 = 256;

/// How long a stream that met damage waits, after its last line or event,
/// before it aborts the body: hyper discards what it has not yet written
/// when a body fails, and the client should get the error as well as the
/// abort.
pub(crate) const ABORT_GRACE: Duration = Duration::from_millis(250);

/// How often the follower looks for records while no stream listens.
const IDLE_LOOK: Duration = Duration::from_millis(50);

/// The follower: publishes the number of visible records.
///
/// While no stream listens (the only receiver is the one the server keeps
/// to clone for each stream), it does not wait on the store, which would
/// wake it at every commit group, but looks every [`IDLE_LOOK`]: a new
/// stream starts at the log's end it reads itself, and is told of records
/// after it within that time.
pub(crate) fn follow(
    handle: Arc<StoreHandle>,
    tx: watch::Sender<u64>,
    stopping: watch::Receiver<bool>,
) {
    let mut last = 0u64;
    while !*stopping.borrow() {
        let Ok(store) = handle.get() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let visible = if tx.receiver_count() > 1 {
            store.wait_for_records(last, Duration::from_millis(250))
        } else {
            drop(store);
            std::thread::sleep(IDLE_LOOK);
            match handle.get() {
                Ok(store) => store.wait_for_records(last, Duration::ZERO),
                Err(_) => continue,
            }
        };
        if visible != last {
            last = visible;
            tx.send_replace(visible);
        }
    }
}

/// What a stream sends for each matching record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Render {
    /// The record as JSON (`GET /v1/tail`).
    Records,
    /// The alert an `alert.raised` record holds, as an `alert` event
    /// (`GET /v1/alerts`); a record that holds none is not sent.
    Alerts,
}

struct TailState {
    app: Arc<App>,
    query: Query,
    render: Render,
    next: u64,
    pending: VecDeque<SseEvent>,
    visible: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
    /// A record could not be read: abort once the error event is out.
    failed: Option<ApiError>,
    /// The stream was aborted.
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for TailState {
    fn drop(&mut self) {
        self.app
            .metrics
            .tail_streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a read of new records found.
struct Read {
    events: Vec<SseEvent>,
    /// The seq after the last record read.
    reached: u64,
    stop: Option<ReadStop>,
}

/// Why a read of new records stopped before its end.
enum ReadStop {
    /// The store is being reopened (or shows fewer records than the
    /// follower saw): read again from `reached` shortly.
    Unavailable,
    /// A record cannot be read: the stream says so and ends.
    Failed(ApiError),
}

/// Reads records `from..to` that match `query`. Never skips a record: a
/// record that cannot be read stops the read with the error.
fn read_matching(app: &App, query: &Query, render: Render, from: u64, to: u64) -> Read {
    let mut read = Read {
        events: Vec::new(),
        reached: from,
        stop: None,
    };
    let Ok(store) = app.store.get() else {
        read.stop = Some(ReadStop::Unavailable);
        return read;
    };
    // The values of the query as the privacy policy stores them.
    let query = &store.private_query(query);
    // A record whose checksum holds but that does not decode: `get` names
    // its file and offset.
    let malformed = |seq: u64| match store.get(seq) {
        Err(e) => ApiError::from_store(&e),
        Ok(_) => ApiError::new(
            ErrorCode::Internal,
            format!("record {seq} could not be decoded"),
        ),
    };
    for seq in from..to {
        let bytes = match store.get_raw(seq) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                read.stop = Some(ReadStop::Unavailable);
                return read;
            }
            Err(e) => {
                read.stop = Some(ReadStop::Failed(ApiError::from_store(&e)));
                return read;
            }
        };
        let matched = match record::decode(&bytes) {
            Ok(view) if !query.matches(&view) => None,
            Ok(view) => match view.to_record() {
                Ok(r) => Some(r),
                Err(_) => {
                    read.stop = Some(ReadStop::Failed(malformed(seq)));
                    return read;
                }
            },
            Err(_) => {
                read.stop = Some(ReadStop::Failed(malformed(seq)));
                return read;
            }
        };
        let rendered = match (matched, render) {
            (None, _) => None,
            (Some(r), Render::Records) => Some(serde_json::to_string(&r).map(|j| (None, j))),
            (Some(r), Render::Alerts) => sealog_alerts::Alert::from_event(&r.event)
                .map(|a| serde_json::to_string(&a).map(|j| (Some("alert"), j))),
        };
        if let Some(rendered) = rendered {
            match rendered {
                Ok((kind, json)) => {
                    let mut e = SseEvent::default().id(seq.to_string());
                    if let Some(kind) = kind {
                        e = e.event(kind);
                    }
                    read.events.push(e.data(json));
                }
                Err(e) => {
                    read.stop = Some(ReadStop::Failed(ApiError::new(
                        ErrorCode::Internal,
                        format!("serializing record {seq} failed: {e}"),
                    )));
                    return read;
                }
            }
        }
        read.reached = seq + 1;
    }
    read
}

/// The item that aborts a stream: hyper then closes the connection without
/// ending the body, which a client sees as a failed stream, not an end.
fn abort(error: &ApiError) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

async fn next_event(mut s: TailState) -> Option<(Result<SseEvent, std::io::Error>, TailState)> {
    loop {
        if let Some(e) = s.pending.pop_front() {
            return Some((Ok(e), s));
        }
        if let Some(error) = s.failed.take() {
            s.ended = true;
            tokio::time::sleep(ABORT_GRACE).await;
            return Some((Err(abort(&error)), s));
        }
        if s.ended || *s.stopping.borrow() {
            return None;
        }
        let visible = *s.visible.borrow_and_update();
        if visible > s.next {
            let to = visible.min(s.next + CHUNK);
            let (app, query, render, from) = (s.app.clone(), s.query.clone(), s.render, s.next);
            let read = match tokio::task::spawn_blocking(move || {
                read_matching(&app, &query, render, from, to)
            })
            .await
            {
                Ok(read) => read,
                Err(_) => Read {
                    events: Vec::new(),
                    reached: from,
                    stop: Some(ReadStop::Failed(ApiError::new(
                        ErrorCode::Internal,
                        "a worker thread failed while reading new records",
                    ))),
                },
            };
            s.next = read.reached;
            s.pending.extend(read.events);
            match read.stop {
                None => {}
                Some(ReadStop::Unavailable) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(ReadStop::Failed(error)) => {
                    // Said in the stream itself (the status is sent), then
                    // the stream is aborted.
                    let data = error.body().to_string();
                    s.pending
                        .push_back(SseEvent::default().event("error").data(data));
                    s.failed = Some(error);
                }
            }
            continue;
        }
        tokio::select! {
            changed = s.visible.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = s.stopping.changed() => {}
        }
    }
}

/// The stream of a tail request that was authorized, parsed and
/// recorded: from after `last_id`, or from the log's end.
pub(crate) fn stream(
    app: Arc<App>,
    query: Query,
    render: Render,
    permit: OwnedSemaphorePermit,
    last_id: Option<u64>,
) -> Response {
    let visible = app.visible.clone();
    let start = match last_id {
        Some(id) => id.saturating_add(1),
        None => app.store.get().map(|s| s.len()).unwrap_or(0),
    };
    metrics::add(&app.metrics.tail_streams, 1);
    let state = TailState {
        stopping: app.stopping.clone(),
        app,
        query,
        render,
        next: start,
        pending: VecDeque::new(),
        visible,
        failed: None,
        ended: false,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(state, next_event);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
