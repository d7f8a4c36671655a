//! An axum service whose every request is recorded in a sealog audit log
//! by `sealog-tower`: the router, the toy authentication in front of it,
//! and the audit configuration. `main.rs` chooses the sink (an embedded
//! store or a sealog server) and serves it.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Extension, Path, Request};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sealog::format::{Actor, Resource};
use sealog_tower::{
    AuditConfig, AuditContext, AuditLayer, AuditSink, FailurePolicy, ProxyListError, TrustedProxies,
};

/// The authenticated caller, put into the request by [`authenticate`].
#[derive(Clone, Debug)]
pub struct User {
    /// The user's id.
    pub id: String,
}

/// Toy authentication: `Authorization: Bearer <user>-token` is the user
/// `<user>`; anything else is refused with `401` (and recorded as denied).
/// A real service checks a session or a signed token here.
pub async fn authenticate(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| t.strip_suffix("-token"))
        .filter(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned);
    match user {
        Some(id) => {
            request.extensions_mut().insert(User { id });
            next.run(request).await
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// The audit configuration: the user from [`authenticate`] as the actor,
/// the given trusted proxies, deletions fail closed (no `200` without a
/// durable record), everything else fails open, `/healthz` not recorded.
pub fn audit_config(trusted_proxies: &[String]) -> Result<AuditConfig, ProxyListError> {
    Ok(AuditConfig::new(FailurePolicy::FailOpen)
        .trusted_proxies(TrustedProxies::new(trusted_proxies)?)
        .actor(|parts| {
            parts
                .extensions
                .get::<User>()
                .map(|u| Actor::new("user", &u.id))
        })
        .failure_policy_for(|parts| {
            if parts.method == axum::http::Method::DELETE {
                FailurePolicy::FailClosed
            } else {
                FailurePolicy::FailOpen
            }
        })
        .skip(|parts| parts.uri.path() == "/healthz"))
}

async fn show_customer(Path(id): Path<String>) -> String {
    format!("customer {id}\n")
}

/// The handler names the domain action and resource itself.
async fn delete_customer(
    Path(id): Path<String>,
    Extension(audit): Extension<AuditContext>,
) -> StatusCode {
    audit.set_action("customer.delete");
    audit.set_resource(Resource::new("customer", &id));
    StatusCode::NO_CONTENT
}

/// The service: `/customers/{id}` (GET, DELETE) behind authentication,
/// `/healthz` open. The audit layer is outermost, so that it records the
/// `401`s of the authentication too; its capture layer, inside the
/// authentication, sees the user.
pub fn app(audit: AuditLayer) -> Router {
    Router::new()
        .route(
            "/customers/{id}",
            get(show_customer).delete(delete_customer),
        )
        .layer(audit.capture_layer())
        .layer(from_fn(authenticate))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(audit)
}

/// The audit layer over `sink` with [`audit_config`].
pub fn audit_layer(
    sink: impl AuditSink,
    trusted_proxies: &[String],
) -> Result<AuditLayer, ProxyListError> {
    Ok(AuditLayer::new(sink, audit_config(trusted_proxies)?))
}

/// Serves `app` on `listener` (with the peers' addresses, which the audit
/// layer records) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
