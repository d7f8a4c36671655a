//! The operator's endpoints: `POST /v1/verify`, `GET /v1/stats`,
//! `GET /metrics`, `GET /healthz` and `GET /readyz`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealog::Outcome;
use sealog::format::{Metadata, Resource};
use sealog::stats::HistogramSnapshot;
use serde::Serialize;

use super::{Json, b64, blocking, flag, json_bytes, store_error};
use crate::audit;
use crate::auth::{AdminScope, Authed, OperatorScope, record};
use crate::error::ApiError;
use crate::metrics;
use crate::params;
use crate::state::App;

/// The body of `POST /v1/verify`.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Verified {
    /// Every checksum and hash holds.
    Intact {
        intact: bool,
        segments: u64,
        sealed_segments: u64,
        records: u64,
        bytes: u64,
        root: String,
        chain_head: String,
        checkpoints: u64,
        checkpoints_authenticated: bool,
        unacknowledged_tail_bytes: u64,
        /// Whether the index sidecars and key filters were compared with
        /// the records (not with `log_only=true`).
        indexes_checked: bool,
        elapsed_secs: f64,
    },
    /// Tampering or corruption, and where.
    Damaged {
        intact: bool,
        problem: String,
        file: String,
        offset: Option<u64>,
        seq: Option<u64>,
    },
}

/// The body of `GET /v1/stats`.
#[derive(Serialize)]
pub(super) struct StatsBody {
    ready: bool,
    /// The engine's figures (`null` while the store is being reopened).
    store: Option<EngineStats>,
    server: ServerStats,
}

/// The engine's figures since the store was last opened.
#[derive(Serialize)]
pub(super) struct EngineStats {
    records: u64,
    segments: u64,
    sealed_segments: u64,
    appends: u64,
    appended_events: u64,
    written_bytes: u64,
    commit_groups: u64,
    segment_rolls: u64,
    index_rebuilds: u64,
    fsyncs: u64,
    fsync_mean_us: Option<f64>,
    sync_latency_us: Histogram,
    group_events: Histogram,
}

/// A histogram's buckets: inclusive upper bounds and counts.
#[derive(Serialize)]
pub(super) struct Histogram {
    bounds: Vec<u64>,
    counts: Vec<u64>,
}

impl From<HistogramSnapshot> for Histogram {
    fn from(h: HistogramSnapshot) -> Self {
        Histogram {
            bounds: h.bounds,
            counts: h.counts,
        }
    }
}

/// The server's own counters.
#[derive(Serialize)]
pub(super) struct ServerStats {
    ingest_requests: u64,
    ingest_events: u64,
    ingest_bytes: u64,
    auth_failures: u64,
    auth_denials: u64,
    unavailable: u64,
    storage_full: u64,
    idempotent_replays: u64,
    idempotency_keys: usize,
    refusals_suppressed: u64,
    connections: u64,
    tail_streams: u64,
    store_reopens: u64,
}

/// The body of `GET /readyz` when not ready.
#[derive(Serialize)]
struct NotReady {
    ready: bool,
    reason: String,
}

/// `POST /v1/verify`: recomputes every checksum and hash of the log.
pub(super) async fn verify(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<AdminScope>,
) -> Result<Json<Verified>, ApiError> {
    let params = params::parse(raw.as_deref(), params::VERIFY_PARAMS, &[])?;
    let log_only = flag(&params, "log_only")?;
    let _permit = app.gates.verification()?;
    let store = app.store.get()?;
    let s = store.clone();
    let limit = app.limits.verify_timeout;
    let run = move || {
        if log_only {
            s.verify_log_only()
        } else {
            s.verify()
        }
    };
    let result = tokio::time::timeout(limit, blocking(run))
        .await
        .map_err(|_| {
            ApiError::unavailable(format!(
                "verification did not finish within {} s (verify_timeout_secs); run `sealog \
                 verify` on the host instead",
                limit.as_secs()
            ))
        })??;
    let (body, outcome, reason) = match result {
        Ok(report) => (
            Verified::Intact {
                intact: true,
                segments: report.segments,
                sealed_segments: report.sealed_segments,
                records: report.records,
                bytes: report.bytes,
                root: b64(&report.root),
                chain_head: hex::encode(report.chain_head),
                checkpoints: report.checkpoints,
                checkpoints_authenticated: report.checkpoints_authenticated,
                unacknowledged_tail_bytes: report.unacknowledged_tail_bytes,
                indexes_checked: report.indexes_checked,
                elapsed_secs: report.elapsed.as_secs_f64(),
            },
            Outcome::Success,
            None,
        ),
        Err(sealog::Error::Corruption(c)) => (
            Verified::Damaged {
                intact: false,
                problem: c.to_string(),
                file: c.location.file.clone(),
                offset: c.location.offset,
                seq: c.location.seq,
            },
            Outcome::Failure,
            Some(c.to_string()),
        ),
        Err(e) => return Err(store_error(&app, &e)),
    };
    let mut metadata = Metadata::new();
    metadata.insert("intact".into(), reason.is_none().into());
    metadata.insert("log_only".into(), log_only.into());
    let mut event = audit::event(
        "log.verify",
        auth.principal.actor(),
        Resource::kind("log"),
        outcome,
        &auth.origin,
        metadata,
    );
    if let Some(r) = reason {
        event = event.with_reason(audit::clean(&r, 2048));
    }
    record(&app, &store, event).await?;
    Ok(Json(body))
}

/// `GET /v1/stats`: the engine's and the server's figures.
pub(super) async fn stats(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    _auth: Authed<OperatorScope>,
) -> Result<Json<StatsBody>, ApiError> {
    params::parse(raw.as_deref(), &[], &[])?;
    // While the store is being reopened the server's own figures are still
    // served, without the store's.
    let store = app.store.get().ok();
    if let Some(store) = store.clone() {
        // Figures of a store whose sealed files changed under it would
        // describe a log that the next open refuses: say so instead.
        blocking(move || store.check_segment_files())
            .await?
            .map_err(|e| store_error(&app, &e))?;
    }
    let engine = store.map(|s| s.stats()).map(|s| EngineStats {
        records: s.records,
        segments: s.segments,
        sealed_segments: s.sealed_segments,
        appends: s.appends,
        appended_events: s.appended_events,
        written_bytes: s.written_bytes,
        commit_groups: s.commit_groups,
        segment_rolls: s.segment_rolls,
        index_rebuilds: s.index_rebuilds,
        fsyncs: s.sync_latency_us.count(),
        fsync_mean_us: s.sync_latency_us.mean(),
        sync_latency_us: s.sync_latency_us.into(),
        group_events: s.group_events.into(),
    });
    let m = &app.metrics;
    Ok(Json(StatsBody {
        ready: app.store.is_ready(),
        store: engine,
        server: ServerStats {
            ingest_requests: metrics::get(&m.ingest_requests),
            ingest_events: metrics::get(&m.ingest_events),
            ingest_bytes: metrics::get(&m.ingest_bytes),
            auth_failures: metrics::get(&m.auth_failures),
            auth_denials: metrics::get(&m.auth_denials),
            unavailable: metrics::get(&m.unavailable),
            storage_full: metrics::get(&m.storage_full),
            idempotent_replays: metrics::get(&m.idempotent_replays),
            idempotency_keys: app.idempotency.len(),
            refusals_suppressed: metrics::get(&m.refusals_suppressed),
            connections: metrics::get(&m.connections),
            tail_streams: metrics::get(&m.tail_streams),
            store_reopens: app.store.reopens(),
        },
    }))
}

/// `GET /metrics`: the Prometheus text exposition.
pub(super) async fn prometheus(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    _auth: Authed<OperatorScope>,
) -> Result<Response, ApiError> {
    params::parse(raw.as_deref(), &[], &[])?;
    let stats = app.store.get().ok().map(|s| s.stats());
    let dir = app.store.dir().to_path_buf();
    let ready = app.store.is_ready();
    let a = app.clone();
    let text = blocking(move || a.metrics.render(stats.as_ref(), &dir, ready)).await?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

/// `GET /healthz`: the process serves.
pub(super) async fn healthz() -> Response {
    json_bytes(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// `GET /readyz`: the store accepts writes.
pub(super) async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.store.not_ready_reason() {
        None => json_bytes(StatusCode::OK, br#"{"ready":true}"#.to_vec()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                ready: false,
                reason,
            }),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use serde_json::json;

    use super::*;

    /// The typed bodies serialize to the bytes the `json!` objects they
    /// replaced did (keys in the same order, the same nulls).
    #[test]
    fn the_status_bodies_keep_their_json() {
        let intact = Verified::Intact {
            intact: true,
            segments: 2,
            sealed_segments: 1,
            records: 10,
            bytes: 4096,
            root: "cm9vdA==".into(),
            chain_head: "ab".into(),
            checkpoints: 3,
            checkpoints_authenticated: true,
            unacknowledged_tail_bytes: 0,
            indexes_checked: true,
            elapsed_secs: 0.25,
        };
        let was = json!({
            "intact": true, "segments": 2, "sealed_segments": 1, "records": 10, "bytes": 4096,
            "root": "cm9vdA==", "chain_head": "ab", "checkpoints": 3,
            "checkpoints_authenticated": true, "unacknowledged_tail_bytes": 0,
            "indexes_checked": true, "elapsed_secs": 0.25,
        });
        assert_eq!(serde_json::to_string(&intact).unwrap(), was.to_string());
        let damaged = Verified::Damaged {
            intact: false,
            problem: "frame checksum mismatch".into(),
            file: "segments/0.seg".into(),
            offset: Some(12),
            seq: None,
        };
        let was = json!({"intact": false, "problem": "frame checksum mismatch",
            "file": "segments/0.seg", "offset": 12, "seq": null});
        assert_eq!(serde_json::to_string(&damaged).unwrap(), was.to_string());

        let histogram = || HistogramSnapshot {
            bounds: vec![1, u64::MAX],
            counts: vec![2, 0],
            sum: 2,
        };
        let body = StatsBody {
            ready: true,
            store: Some(EngineStats {
                records: 1,
                segments: 2,
                sealed_segments: 3,
                appends: 4,
                appended_events: 5,
                written_bytes: 6,
                commit_groups: 7,
                segment_rolls: 8,
                index_rebuilds: 9,
                fsyncs: 2,
                fsync_mean_us: None,
                sync_latency_us: histogram().into(),
                group_events: histogram().into(),
            }),
            server: ServerStats {
                ingest_requests: 1,
                ingest_events: 2,
                ingest_bytes: 3,
                auth_failures: 4,
                auth_denials: 5,
                unavailable: 6,
                storage_full: 7,
                idempotent_replays: 8,
                idempotency_keys: 9,
                refusals_suppressed: 10,
                connections: 11,
                tail_streams: 12,
                store_reopens: 13,
            },
        };
        let h = json!({"bounds": [1, u64::MAX], "counts": [2, 0]});
        let was = json!({
            "ready": true,
            "store": {
                "records": 1, "segments": 2, "sealed_segments": 3, "appends": 4,
                "appended_events": 5, "written_bytes": 6, "commit_groups": 7,
                "segment_rolls": 8, "index_rebuilds": 9, "fsyncs": 2, "fsync_mean_us": null,
                "sync_latency_us": h, "group_events": h,
            },
            "server": {
                "ingest_requests": 1, "ingest_events": 2, "ingest_bytes": 3,
                "auth_failures": 4, "auth_denials": 5, "unavailable": 6, "storage_full": 7,
                "idempotent_replays": 8, "idempotency_keys": 9, "refusals_suppressed": 10,
                "connections": 11, "tail_streams": 12, "store_reopens": 13,
            },
        });
        assert_eq!(serde_json::to_string(&body).unwrap(), was.to_string());
        let reopening = StatsBody {
            ready: false,
            store: None,
            ..body
        };
        let text = serde_json::to_string(&reopening).unwrap();
        assert!(
            text.starts_with(r#"{"ready":false,"store":null,"server":{"#),
            "{text}"
        );

        let not_ready = NotReady {
            ready: false,
            reason: "the disk is full".into(),
        };
        assert_eq!(
            serde_json::to_string(&not_ready).unwrap(),
            json!({"ready": false, "reason": "the disk is full"}).to_string()
        );
    }
}
