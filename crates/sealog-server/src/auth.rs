//! Who is calling, and whether they may: the [`Authed`] extractor.
//!
//! Every endpoint but `/healthz`, `/readyz` and `/v1/openapi.json` takes
//! an `Authed<S>` before anything it parses itself. Extracting it authenticates the bearer
//! token, checks that the principal has a scope `S` allows (and, for
//! [`OperatorScope`], that it is bound to no tenant), and records every
//! refusal in the log ([`crate::audit`]) before answering it. The
//! request's [`Origin`] (peer address, user agent, `METHOD /route`) is
//! taken from the route the router matched ([`MatchedPath`]), so a route's
//! path is written once, in the router.
//!
//! Later refusals of an authenticated request (another tenant's data) go
//! through [`Authed::deny`], which records them the same way.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use sealog::format::{Actor, Metadata, Resource};
use sealog::{Outcome, Store};

use crate::audit::{self, Origin, Principal, Refusal};
use crate::error::{ApiError, ErrorCode};
use crate::metrics;
use crate::state::App;
use crate::tokens::{Check, Scope};

/// The peer address of a connection, added to each request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// What an [`Authed`] requires of the principal.
pub(crate) trait ScopeMarker: Send + Sync + 'static {
    /// The principal needs one of these scopes.
    const NEEDS: &'static [Scope];
    /// The endpoint covers every tenant: a tenant-bound token is refused.
    const ALL_TENANTS: bool = false;
}

/// `POST /v1/events`.
pub(crate) enum IngestScope {}

impl ScopeMarker for IngestScope {
    const NEEDS: &'static [Scope] = &[Scope::Ingest];
}

/// Reads of the log: queries, records, tail, checkpoints, proofs.
pub(crate) enum QueryScope {}

impl ScopeMarker for QueryScope {
    const NEEDS: &'static [Scope] = &[Scope::Query];
}

/// `POST /v1/verify`.
pub(crate) enum AdminScope {}

impl ScopeMarker for AdminScope {
    const NEEDS: &'static [Scope] = &[Scope::Admin];
}

/// Statistics and metrics: they cover every tenant.
pub(crate) enum OperatorScope {}

impl ScopeMarker for OperatorScope {
    const NEEDS: &'static [Scope] = &[Scope::Query, Scope::Admin];
    const ALL_TENANTS: bool = true;
}

/// An authenticated, authorized request: who, and from where.
#[derive(Debug)]
pub(crate) struct Authed<S> {
    /// Who is calling.
    pub(crate) principal: Principal,
    /// From where, and which endpoint.
    pub(crate) origin: Origin,
    scope: PhantomData<fn() -> S>,
}

impl<S: ScopeMarker> FromRequestParts<Arc<App>> for Authed<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let origin = origin_of(parts);
        let principal = authenticate(app, &parts.headers, &origin).await?;
        require(app, &principal, &origin, S::NEEDS).await?;
        let authed = Authed {
            principal,
            origin,
            scope: PhantomData,
        };
        if S::ALL_TENANTS && authed.principal.tenant.is_some() {
            let e = ApiError::new(
                ErrorCode::TenantForbidden,
                format!(
                    "the token `{}` is bound to a tenant; statistics cover every tenant and need \
                     a token without a tenant binding",
                    authed.principal.name
                ),
            );
            return Err(authed
                .deny(app, "is bound to a tenant and asked for statistics", e)
                .await);
        }
        Ok(authed)
    }
}

impl<S> Authed<S> {
    /// Records a refusal of this principal (a 403, or the 404 that hides
    /// another tenant's record) and returns its error.
    pub(crate) async fn deny(&self, app: &App, reason: &str, error: ApiError) -> ApiError {
        deny(app, &self.principal, &self.origin, reason, error).await
    }

    /// Applies the token's tenant binding to a query: a bound token reads
    /// its tenant only, and asking for another is refused.
    pub(crate) async fn bind_tenant(
        &self,
        app: &App,
        query: &mut sealog::query::Query,
    ) -> Result<(), ApiError> {
        let Some(bound) = &self.principal.tenant else {
            return Ok(());
        };
        if let Some(asked) = &query.tenant
            && asked != bound
        {
            let reason = format!("is bound to tenant `{bound}` and asked for tenant `{asked}`");
            let e = ApiError::new(
                ErrorCode::TenantForbidden,
                format!(
                    "the token `{}` is bound to tenant `{bound}` and cannot read tenant `{}`",
                    self.principal.name,
                    audit::clean(asked, 128)
                ),
            );
            return Err(self.deny(app, &reason, e).await);
        }
        query.tenant = Some(bound.clone());
        Ok(())
    }

    /// The server's audit event of a successful read by this principal.
    pub(crate) fn read_event(
        &self,
        action: &str,
        resource: Resource,
        mut metadata: Metadata,
    ) -> sealog::Event {
        if let Some(t) = &self.principal.tenant {
            metadata.insert("principal_tenant".into(), t.clone().into());
        }
        audit::event(
            action,
            self.principal.actor(),
            resource,
            Outcome::Success,
            &self.origin,
            metadata,
        )
    }

    /// Records a successful read durably; a read that cannot be recorded
    /// is not served.
    pub(crate) async fn record(
        &self,
        app: &App,
        store: &Store,
        action: &str,
        resource: Resource,
        metadata: Metadata,
    ) -> Result<(), ApiError> {
        record(app, store, self.read_event(action, resource, metadata)).await
    }

    /// Queues the record of a successful read now and returns the wait for
    /// it to be durable: the caller prepares its answer meanwhile, and
    /// sends it only once the wait has succeeded (a read that cannot be
    /// recorded is not served).
    pub(crate) fn record_queued<'a>(
        &self,
        app: &'a App,
        store: &Store,
        action: &str,
        resource: Resource,
        metadata: Metadata,
    ) -> impl Future<Output = Result<(), ApiError>> + Send + 'a {
        let appending = store.append_batch_async([self.read_event(action, resource, metadata)]);
        async move { appending.await.map(|_| ()).map_err(|e| unrecorded(app, &e)) }
    }
}

/// Appends one of the server's audit events, durably; a failure is the
/// error to answer (the request is then not served).
pub(crate) async fn record(app: &App, store: &Store, event: sealog::Event) -> Result<(), ApiError> {
    audit::append(store.clone(), vec![event])
        .await
        .map_err(|e| unrecorded(app, &e))
}

/// The answer to a request whose audit event could not be written.
fn unrecorded(app: &App, e: &sealog::Error) -> ApiError {
    app.store.report(e);
    ApiError::from_store(e).map_message(|m| {
        format!("the request could not be recorded in the log, so it was not served: {m}")
    })
}

/// Where a request came from, and the endpoint as `METHOD /route` (a
/// `HEAD` is the `GET` it is answered by).
fn origin_of(parts: &Parts) -> Origin {
    let method = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
    Origin {
        ip: parts
            .extensions
            .get::<Peer>()
            .map(|p| sealog::query::canonical(p.0.ip())),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        endpoint: format!("{method} {route}"),
    }
}

/// Records a refusal (or counts it, in a flood) and returns its error.
async fn refuse(app: &App, mut refusal: Refusal, error: ApiError) -> ApiError {
    if refusal.code.is_empty() {
        refusal.code = error.code.as_str();
    }
    if app.refusals.admit(&refusal) {
        if let Ok(store) = app.store.get()
            && let Err(e) = audit::append(store, vec![refusal.to_event()]).await
        {
            app.store.report(&e);
            tracing::error!(
                error = %e,
                endpoint = %refusal.origin.endpoint,
                "could not record a refused request in the log"
            );
        }
    } else {
        metrics::add(&app.metrics.refusals_suppressed, 1);
    }
    error
}

/// Checks that the principal has one of `scopes`.
async fn require(
    app: &App,
    principal: &Principal,
    origin: &Origin,
    scopes: &[Scope],
) -> Result<(), ApiError> {
    if scopes.iter().any(|s| principal.has(*s)) {
        return Ok(());
    }
    let have: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
    let need: Vec<String> = scopes.iter().map(|s| format!("`{}`", s.as_str())).collect();
    let need = need.join(" or ");
    let e = ApiError::new(
        ErrorCode::InsufficientScope,
        format!(
            "the token `{}` has the scopes [{}] but this endpoint needs {need}",
            principal.name,
            have.join(", "),
        ),
    )
    .with(
        "needed",
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    Err(deny(
        app,
        principal,
        origin,
        &format!("lacks the {need} scope"),
        e,
    )
    .await)
}

/// Identifies the caller from its bearer token.
async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    origin: &Origin,
) -> Result<Principal, ApiError> {
    let Some(tokens) = &app.tokens else {
        return Ok(Principal::local());
    };
    let anonymous = Actor::new("anonymous", "anonymous");
    let refusal = |actor, reason: &str| Refusal {
        action: "auth.failed",
        actor,
        reason: reason.to_owned(),
        code: "",
        origin: origin.clone(),
        status: 401,
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let e = ApiError::new(
            ErrorCode::MissingToken,
            "this endpoint needs a bearer token: send `Authorization: Bearer slg_...` (create \
             one with `sealog token create`)",
        );
        return Err(refuse(app, refusal(anonymous, "no Authorization header"), e).await);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let secret = match text.split_once(' ') {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() =>
        {
            rest.trim().to_owned()
        }
        _ => {
            let e = ApiError::new(
                ErrorCode::MalformedToken,
                "the Authorization header is not `Bearer <token>`",
            );
            return Err(refuse(
                app,
                refusal(anonymous, "Authorization header is not a bearer token"),
                e,
            )
            .await);
        }
    };
    let entry = match tokens.check(&secret) {
        Check::Valid(entry) => entry,
        Check::Revoked(entry) => {
            let e = ApiError::new(
                ErrorCode::RevokedToken,
                format!(
                    "the token `{}` was revoked at {}; ask for a new one",
                    entry.name,
                    entry.revoked_at.clone().unwrap_or_default()
                ),
            );
            let actor = Actor::new("token", audit::clean(&entry.name, 256));
            return Err(refuse(app, refusal(actor, "the token is revoked"), e).await);
        }
        Check::Unknown => {
            let e = ApiError::new(
                ErrorCode::InvalidToken,
                "the bearer token is not valid (unknown to this server); check that it was \
                 copied whole",
            );
            return Err(refuse(app, refusal(anonymous, "unknown token"), e).await);
        }
        Check::FileUnreadable(reason) => {
            tracing::error!(%reason, "refusing every request: the tokens file is unusable");
            let e = ApiError::new(
                ErrorCode::TokensUnavailable,
                "the server cannot read its tokens file, so it lets nobody in; the operator \
                 must fix the file",
            );
            return Err(refuse(app, refusal(anonymous, "the tokens file is unreadable"), e).await);
        }
    };
    Ok(Principal {
        kind: "token",
        name: entry.name.clone(),
        scopes: entry.scopes.clone(),
        tenant: entry.tenant.clone(),
    })
}

/// Records a 403 (or a 404 hiding another tenant's record).
async fn deny(
    app: &App,
    principal: &Principal,
    origin: &Origin,
    reason: &str,
    error: ApiError,
) -> ApiError {
    let status = error.status.as_u16();
    let refusal = Refusal {
        action: "auth.denied",
        actor: principal.actor(),
        reason: format!("token `{}` {reason}", principal.name),
        // The 404 hides another tenant's record from the caller, not from
        // the trail.
        code: if status == 404 {
            "other_tenant_record"
        } else {
            ""
        },
        origin: origin.clone(),
        status,
    };
    refuse(app, refusal, error).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use axum::http::Request;

    use super::*;

    fn parts(method: Method, uri: &str, route: Option<&str>) -> Parts {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::USER_AGENT, "probe/1")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(Peer("[::ffff:10.1.2.3]:5000".parse().unwrap()));
        let (mut parts, ()) = req.into_parts();
        if let Some(route) = route {
            parts.extensions.insert(matched(route));
        }
        parts
    }

    /// The `MatchedPath` axum's router gives a handler of `route`.
    fn matched(route: &str) -> MatchedPath {
        let found = std::sync::Arc::new(std::sync::Mutex::new(None));
        let f = found.clone();
        let router: axum::Router = axum::Router::new().route(
            route,
            axum::routing::get(move |p: MatchedPath| {
                let f = f.clone();
                async move {
                    *f.lock().unwrap() = Some(p);
                }
            }),
        );
        let uri = route.replace("{seq}", "7");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use tower::ServiceExt as _;
            let _ = router
                .oneshot(
                    Request::builder()
                        .uri(uri)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await;
        });
        found.lock().unwrap().take().unwrap()
    }

    #[test]
    fn the_origin_names_the_route_matched_not_the_path_asked() {
        let o = origin_of(&parts(
            Method::GET,
            "/v1/events/42?proof=true",
            Some("/v1/events/{seq}"),
        ));
        assert_eq!(o.endpoint, "GET /v1/events/{seq}");
        assert_eq!(o.ip, Some("10.1.2.3".parse().unwrap()), "canonical IPv4");
        assert_eq!(o.user_agent.as_deref(), Some("probe/1"));
        let o = origin_of(&parts(Method::HEAD, "/v1/events", Some("/v1/events")));
        assert_eq!(
            o.endpoint, "GET /v1/events",
            "a HEAD is answered by the GET"
        );
        let o = origin_of(&parts(Method::POST, "/v1/verify", Some("/v1/verify")));
        assert_eq!(o.endpoint, "POST /v1/verify");
        let o = origin_of(&parts(Method::GET, "/elsewhere", None));
        assert_eq!(o.endpoint, "GET /elsewhere");
    }
}
