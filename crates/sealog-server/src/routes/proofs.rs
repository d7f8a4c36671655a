//! Checkpoints and proofs: `GET /v1/checkpoint` (the C2SP signed note),
//! `GET /v1/proof/inclusion` and `GET /v1/proof/consistency` (RFC 9162
//! proofs, hashes in base64). A receipt (`GET /v1/events/{seq}?proof=true`)
//! is in [`super::events`].

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use sealog::format::{Metadata, Resource};
use serde::Serialize;

use super::{Json, b64, blocking, flag, no_key, plain_text, store_error, visible_record};
use crate::auth::{Authed, QueryScope};
use crate::error::ApiError;
use crate::params;
use crate::state::App;

/// The body of `GET /v1/proof/inclusion`.
#[derive(Serialize)]
pub(super) struct InclusionProof {
    seq: u64,
    tree_size: u64,
    /// The record's RFC 9162 leaf hash (`null` if it cannot be read).
    leaf_hash: Option<String>,
    proof: Vec<String>,
}

/// The body of `GET /v1/proof/consistency`, as `sealog proof
/// --consistency --json` prints it.
#[derive(Serialize)]
pub(super) struct ConsistencyProof {
    old_size: u64,
    new_size: u64,
    proof: Vec<String>,
}

/// `GET /v1/checkpoint`: the newest checkpoint, or with `fresh=true` one
/// signed now.
pub(super) async fn checkpoint(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
) -> Result<Response, ApiError> {
    let params = params::parse(raw.as_deref(), params::CHECKPOINT_PARAMS, &[])?;
    let fresh = flag(&params, "fresh")?;
    if !app.store.signs() {
        return Err(no_key());
    }
    let store = app.store.get()?;
    let s = store.clone();
    let signed = blocking(move || -> Result<sealog::SignedCheckpoint, sealog::Error> {
        if !fresh && let Some(c) = s.latest_checkpoint()? {
            return Ok(c);
        }
        s.checkpoint()
    })
    .await?
    .map_err(|e| store_error(&app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("tree_size".into(), signed.size.into());
    metadata.insert("fresh".into(), fresh.into());
    auth.record(
        &app,
        &store,
        "log.checkpoint",
        Resource::kind("checkpoint"),
        metadata,
    )
    .await?;
    Ok(plain_text(signed.text))
}

/// `GET /v1/proof/inclusion?seq=&tree_size=`.
pub(super) async fn inclusion(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
) -> Result<Json<InclusionProof>, ApiError> {
    let store = app.store.get()?;
    let (seq, tree_size) = params::inclusion(raw.as_deref(), store.tree_size())?;
    // The tenant check: another tenant's record is "not found".
    visible_record(&app, &store, &auth, seq).await?;
    let s = store.clone();
    let proof = blocking(move || s.inclusion_proof(seq, tree_size))
        .await?
        .map_err(|e| store_error(&app, &e))?;
    let leaf = {
        let s = store.clone();
        blocking(move || s.get_raw(seq))
            .await?
            .map_err(|e| store_error(&app, &e))?
    }
    .map(|bytes| b64(&sealog::format::merkle::leaf_hash(&bytes)));
    let mut metadata = Metadata::new();
    metadata.insert("kind".into(), "inclusion".into());
    metadata.insert("tree_size".into(), tree_size.into());
    auth.record(
        &app,
        &store,
        "log.proof",
        Resource::new("record", seq.to_string()),
        metadata,
    )
    .await?;
    Ok(Json(InclusionProof {
        seq,
        tree_size,
        leaf_hash: leaf,
        proof: proof.iter().map(|h| b64(h)).collect(),
    }))
}

/// `GET /v1/proof/consistency?from=&to=`.
pub(super) async fn consistency(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
    auth: Authed<QueryScope>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let store = app.store.get()?;
    let (from, to) = params::consistency(raw.as_deref(), store.tree_size())?;
    let s = store.clone();
    let proof = blocking(move || s.consistency_proof(from, to))
        .await?
        .map_err(|e| store_error(&app, &e))?;
    let mut metadata = Metadata::new();
    metadata.insert("kind".into(), "consistency".into());
    metadata.insert("from".into(), from.into());
    metadata.insert("to".into(), to.into());
    auth.record(&app, &store, "log.proof", Resource::kind("log"), metadata)
        .await?;
    Ok(Json(ConsistencyProof {
        old_size: from,
        new_size: to,
        proof: proof.iter().map(|h| b64(h)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn the_proof_bodies_keep_their_documented_json() {
        let inclusion = InclusionProof {
            seq: 3,
            tree_size: 10,
            leaf_hash: Some("bGVhZg==".into()),
            proof: vec!["YQ==".into(), "Yg==".into()],
        };
        assert_eq!(
            serde_json::to_string(&inclusion).unwrap(),
            r#"{"seq":3,"tree_size":10,"leaf_hash":"bGVhZg==","proof":["YQ==","Yg=="]}"#
        );
        let unreadable = InclusionProof {
            leaf_hash: None,
            proof: Vec::new(),
            ..inclusion
        };
        assert_eq!(
            serde_json::to_string(&unreadable).unwrap(),
            r#"{"seq":3,"tree_size":10,"leaf_hash":null,"proof":[]}"#
        );
        let consistency = ConsistencyProof {
            old_size: 1,
            new_size: 5,
            proof: vec!["YQ==".into()],
        };
        assert_eq!(
            serde_json::to_string(&consistency).unwrap(),
            r#"{"old_size":1,"new_size":5,"proof":["YQ=="]}"#
        );
    }
}
