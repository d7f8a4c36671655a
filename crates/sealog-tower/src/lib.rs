//! A [tower] layer that records one audit event per request, for axum,
//! tonic and plain hyper services, into an embedded [sealog] store or a
//! sealog server.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::delete};
//! use sealog_tower::{AuditConfig, AuditLayer, FailurePolicy, StoreSink};
//!
//! let store = sealog::Store::open("./audit", sealog::StoreOptions::default())?;
//! let app: Router = Router::new()
//!     .route("/customers/{id}", delete(|| async { "deleted" }))
//!     .layer(AuditLayer::new(StoreSink::new(store)?, AuditConfig::new(FailurePolicy::FailClosed)));
//! # let _ = app; Ok(()) }
//! ```
//!
//! ## What each event holds
//!
//! | field | from |
//! |---|---|
//! | `time` | when the request arrived |
//! | `actor` | [`AuditConfig::actor`], the [`capture layer`](AuditLayer::capture_layer), or [`AuditContext::set_actor`]; else `anonymous:anonymous` |
//! | `action` | [`AuditContext::set_action`], else [`AuditConfig::action`], else `http.<method>` (`http.delete`) |
//! | `resource` | [`AuditContext::set_resource`], else [`AuditConfig::resource`], else `http.route:<route>` |
//! | `outcome` | the status: 2xx/3xx `success`, 401/403 `denied`, else `failure`; gRPC: `OK` success, `PERMISSION_DENIED`/`UNAUTHENTICATED` denied, else failure ([`AuditConfig::outcome`], [`AuditContext::set_outcome`]) |
//! | `tenant` | [`AuditConfig::tenant`] or [`AuditContext::set_tenant`] |
//! | `source.ip` | the peer (axum's `ConnectInfo`, [`PeerAddr`] or [`AuditConfig::peer_addr`]); behind [trusted proxies](TrustedProxies), the client they forwarded for |
//! | `source.user_agent` | the `User-Agent` header, cleaned of the characters the store refuses, cut to 512 bytes |
//! | `request_id` | the `x-request-id` header if it is a safe id, else a generated UUID; set on the request and the response |
//! | `reason` | [`AuditContext::set_reason`] |
//! | `metadata.http` | `method`, `route` (axum's `MatchedPath`, e.g. `/customers/{id}`, never the query string), `status`, `grpc_status`, `duration_ms`, `forwarded_by` (the proxy), and `cancelled`, `panicked`, `service_error`, `body_error`, `grpc_status_missing` when they apply |
//!
//! Everything taken from the request is made valid for the store (a
//! request id that is not a safe id is replaced; a path or user agent is
//! cleaned and cut), so that a client cannot make its own request
//! unrecordable. What the extractors and the service set is theirs to get
//! right: an invalid actor type fails the event (and, under `FailClosed`,
//! the response), which tests catch early.
//!
//! ## Placement
//!
//! Put the layer outermost (in axum: the last `.layer`, or `Router::layer`
//! so that `MatchedPath` is known) so that it records every request,
//! including those an inner middleware refuses. An auth middleware inside it
//! makes its user known with the [capture layer](AuditLayer::capture_layer)
//! or [`AuditContext::set_actor`].
//!
//! ## Failure policy
//!
//! Chosen explicitly with [`AuditConfig::new`], per request with
//! [`AuditConfig::failure_policy_for`]; see [`FailurePolicy`] for the
//! trade-off.
//!
//! ## Sinks
//!
//! - [`StoreSink`] (feature `store`): an embedded [`sealog::Store`], written
//!   from a thread of its own in batches; the runtime never waits on
//!   `fdatasync`.
//! - `sealog_client::Batcher` (feature `client`): a sealog server, with a
//!   bounded queue, batches, retries with idempotency keys and the server's
//!   receipts.
//!
//! [tower]: https://docs.rs/tower

mod body;
#[cfg(feature = "client")]
mod client_sink;
mod config;
mod context;
mod layer;
mod proxy;
mod sink;
#[cfg(feature = "store")]
mod store_sink;

pub use body::AuditBody;
pub use config::{
    AuditConfig, AuditMetrics, FailurePolicy, ResponseInfo, UnmatchedRoute, default_outcome,
};
pub use context::{AuditContext, RequestId};
pub use layer::{AuditLayer, AuditService, CaptureLayer, CaptureService, PeerAddr};
pub use proxy::{ForwardedHeader, ProxyListError, TrustedProxies};
pub use sink::{AuditSink, BoxFuture, Durable, Receipt, SinkError, SinkErrorKind, Unrecorded};
#[cfg(feature = "store")]
pub use store_sink::{StoreSink, StoreSinkMetrics, StoreSinkOptions};
