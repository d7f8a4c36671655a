//! [`AuditContext`]: the request's audit event while it is being served,
//! for the code inside the layer (an auth middleware, a handler) to
//! complete; and [`RequestId`].

use std::sync::Arc;

use parking_lot::Mutex;
use sealog_format::{Actor, Metadata, Outcome, Resource};

/// The request id the layer chose for a request (propagated from the
/// request header, or generated), in the request's extensions. The same
/// value is in the request header given to the service, in the response
/// header and in the audit event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    pub(crate) fn new(id: &str) -> RequestId {
        RequestId(Arc::from(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The audit event of the current request, in the request's extensions
/// (`Extension<AuditContext>` in axum). What is set here overrides what the
/// layer's extractors found: an auth middleware inside the layer sets the
/// actor it authenticated, a handler the resource it acted on, the domain
/// action (`customer.delete`), a reason or metadata.
///
/// ```
/// # fn handler(audit: sealog_tower::AuditContext) {
/// use sealog_format::Resource;
/// audit.set_action("customer.delete");
/// audit.set_resource(Resource::new("customer", "4471"));
/// audit.set_reason("erasure request, ticket SEC-12");
/// # }
/// ```
///
/// The layer's own `metadata.http` (method, route, status, duration) cannot
/// be overridden.
#[derive(Clone, Debug)]
pub struct AuditContext {
    inner: Arc<Mutex<Fields>>,
    request_id: RequestId,
}

/// How a value was found: later sources win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    /// An extractor of the layer, on the request as it arrived.
    Layer,
    /// An extractor run again by the capture layer, further in.
    Capture,
    /// Set through [`AuditContext`] by the service.
    Explicit,
}

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    source: Source,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: None,
            source: Source::Layer,
        }
    }
}

impl<T> Slot<T> {
    fn offer(&mut self, value: Option<T>, source: Source) {
        if let Some(v) = value
            && source >= self.source
        {
            self.value = Some(v);
            self.source = source;
        }
    }
}

#[derive(Debug, Default)]
struct Fields {
    actor: Slot<Actor>,
    resource: Slot<Resource>,
    tenant: Slot<String>,
    action: Option<String>,
    outcome: Option<Outcome>,
    reason: Option<String>,
    metadata: Metadata,
}

/// What the service and the extractors set, taken when the event is built.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub actor: Option<Actor>,
    pub resource: Option<Resource>,
    pub tenant: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub metadata: Metadata,
}

impl AuditContext {
    pub(crate) fn new(request_id: RequestId) -> AuditContext {
        AuditContext {
            inner: Arc::new(Mutex::new(Fields::default())),
            request_id,
        }
    }

    /// The request's id.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// Who acted (the authenticated principal; `on_behalf_of` for
    /// impersonation or support access).
    pub fn set_actor(&self, actor: Actor) {
        self.inner.lock().actor.offer(Some(actor), Source::Explicit);
    }

    /// The action, a lowercase dotted machine name such as
    /// `customer.delete` (instead of the layer's mapping, `http.<method>` by
    /// default).
    pub fn set_action(&self, action: impl Into<String>) {
        self.inner.lock().action = Some(action.into());
    }

    /// What was acted on (instead of the route).
    pub fn set_resource(&self, resource: Resource) {
        self.inner
            .lock()
            .resource
            .offer(Some(resource), Source::Explicit);
    }

    /// The tenant the request belongs to.
    pub fn set_tenant(&self, tenant: impl Into<String>) {
        self.inner
            .lock()
            .tenant
            .offer(Some(tenant.into()), Source::Explicit);
    }

    /// The outcome, when the status code alone does not tell it (a `200`
    /// whose body reports a refusal, say).
    pub fn set_outcome(&self, outcome: Outcome) {
        self.inner.lock().outcome = Some(outcome);
    }

    /// Why the action was taken (a justification, a ticket reference).
    pub fn set_reason(&self, reason: impl Into<String>) {
        self.inner.lock().reason = Some(reason.into());
    }

    /// Adds a metadata entry (never a secret: the store's secret guard
    /// refuses keys such as `password` or `token`). The key `http` is the
    /// layer's.
    pub fn insert_metadata(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.inner.lock().metadata.insert(key.into(), value.into());
    }

    pub(crate) fn offer(
        &self,
        source: Source,
        actor: Option<Actor>,
        resource: Option<Resource>,
        tenant: Option<String>,
    ) {
        let mut f = self.inner.lock();
        f.actor.offer(actor, source);
        f.resource.offer(resource, source);
        f.tenant.offer(tenant, source);
    }

    pub(crate) fn take(&self) -> Overrides {
        let mut f = self.inner.lock();
        Overrides {
            actor: f.actor.value.take(),
            resource: f.resource.value.take(),
            tenant: f.tenant.value.take(),
            action: f.action.take(),
            outcome: f.outcome.take(),
            reason: f.reason.take(),
            metadata: std::mem::take(&mut f.metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_win_over_extracted_ones_whatever_the_order() {
        let ctx = AuditContext::new(RequestId::new("r"));
        ctx.offer(
            Source::Layer,
            Some(Actor::new("anonymous", "a")),
            None,
            None,
        );
        ctx.set_actor(Actor::new("user", "alice"));
        ctx.offer(
            Source::Capture,
            Some(Actor::new("user", "mallory")),
            None,
            Some("t".into()),
        );
        let o = ctx.take();
        assert_eq!(o.actor.map(|a| a.id), Some("alice".into()));
        assert_eq!(o.tenant.as_deref(), Some("t"));
    }

    #[test]
    fn capture_overrides_the_layer_and_nothing_overrides_with_none() {
        let ctx = AuditContext::new(RequestId::new("r"));
        ctx.offer(
            Source::Layer,
            Some(Actor::new("anonymous", "a")),
            None,
            None,
        );
        ctx.offer(Source::Capture, Some(Actor::new("user", "bob")), None, None);
        ctx.offer(Source::Capture, None, None, None);
        assert_eq!(ctx.take().actor.map(|a| a.id), Some("bob".into()));
    }
}
