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

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, Request, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sealog::format::record;
use sealog::query::Query;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::app::{App, Peer};
use crate::handle::StoreHandle;
use crate::metrics;

/// Records read per wake-up, at most.
pub const CHUNK: u64 = 256;

/// The follower: publishes the number of visible records.
pub fn follow(handle: Arc<StoreHandle>, tx: watch::Sender<u64>, stopping: watch::Receiver<bool>) {
    let mut last = 0u64;
    while !*stopping.borrow() {
        let Ok(store) = handle.get() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let visible = store.wait_for_records(last, Duration::from_millis(250));
        drop(store);
        if visible != last {
            last = visible;
            tx.send_replace(visible);
        }
    }
}

struct TailState {
    app: Arc<App>,
    query: Query,
    next: u64,
    pending: VecDeque<SseEvent>,
    visible: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
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

/// Reads records `from..to` that match `query`.
fn read_matching(app: &App, query: &Query, from: u64, to: u64) -> Vec<SseEvent> {
    let Ok(store) = app.store.get() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for seq in from..to {
        let Ok(Some(bytes)) = store.get_raw(seq) else {
            continue;
        };
        let Ok(view) = record::decode(&bytes) else {
            continue;
        };
        if !query.matches(&view) {
            continue;
        }
        let Ok(r) = view.to_record() else { continue };
        if let Ok(json) = serde_json::to_string(&r) {
            out.push(SseEvent::default().id(seq.to_string()).data(json));
        }
    }
    out
}

async fn next_event(mut s: TailState) -> Option<(Result<SseEvent, Infallible>, TailState)> {
    loop {
        if let Some(e) = s.pending.pop_front() {
            return Some((Ok(e), s));
        }
        if *s.stopping.borrow() {
            return None;
        }
        let visible = *s.visible.borrow_and_update();
        if visible > s.next {
            let to = visible.min(s.next + CHUNK);
            let (app, query, from) = (s.app.clone(), s.query.clone(), s.next);
            let events = tokio::task::spawn_blocking(move || read_matching(&app, &query, from, to))
                .await
                .unwrap_or_default();
            s.next = to;
            s.pending.extend(events);
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

/// The handler.
pub async fn tail(State(app): State<Arc<App>>, RawQuery(raw): RawQuery, req: Request) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    let (query, permit, last_id) = match crate::app::open_tail(&app, req.headers(), peer, raw).await
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
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
        next: start,
        pending: VecDeque::new(),
        visible,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(state, next_event);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
