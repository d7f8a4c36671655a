//! Events as OCSF 1.1 JSON objects.
//!
//! The class follows the action:
//!
//! - `auth.*` → Authentication (3002, Identity & Access Management);
//! - an account change → Account Change (3001): the action's first dotted
//!   word or the resource type is one of [`ACCOUNT_WORDS`] (`user.create`,
//!   `role.attach`, a `permission` resource, …);
//! - everything else → API Activity (6003, Application Activity).
//!
//! The activity comes from the action's last dotted word (`…delete` →
//! Delete), the status from the outcome (success → Success, failure and
//! denied → Failure, `status_detail` saying which), the severity from the
//! outcome (success 1 Informational, failure 2 Low, denied 3 Medium).
//! `metadata.uid` is the seq, so receivers can deduplicate; the fields with
//! no OCSF attribute go to `unmapped`. docs/siem.md is the spec, field by
//! field.

use serde_json::{Map, Value, json};

use sealog::format::Outcome;

use crate::entry::Entry;

/// The OCSF schema version the events claim.
pub const OCSF_VERSION: &str = "1.1.0";

/// Resource types and action prefixes that make an event an Account
/// Change.
pub const ACCOUNT_WORDS: [&str; 12] = [
    "account",
    "user",
    "role",
    "group",
    "permission",
    "policy",
    "api_key",
    "service_account",
    "membership",
    "credential",
    "password",
    "mfa",
];

/// An OCSF class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Authentication, 3002.
    Authentication,
    /// Account Change, 3001.
    AccountChange,
    /// API Activity, 6003.
    ApiActivity,
}

impl Class {
    /// The class an event with this action and resource type maps to.
    pub fn of(action: &str, resource_type: &str) -> Class {
        let first = action.split('.').next().unwrap_or(action);
        if first == "auth" {
            Class::Authentication
        } else if ACCOUNT_WORDS.contains(&first) || ACCOUNT_WORDS.contains(&resource_type) {
            Class::AccountChange
        } else {
            Class::ApiActivity
        }
    }

    /// `class_uid`.
    pub const fn uid(self) -> u32 {
        match self {
            Class::Authentication => 3002,
            Class::AccountChange => 3001,
            Class::ApiActivity => 6003,
        }
    }

    /// `class_name`.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Authentication => "Authentication",
            Class::AccountChange => "Account Change",
            Class::ApiActivity => "API Activity",
        }
    }

    /// `category_uid` and `category_name`.
    pub const fn category(self) -> (u32, &'static str) {
        match self {
            Class::Authentication | Class::AccountChange => (3, "Identity & Access Management"),
            Class::ApiActivity => (6, "Application Activity"),
        }
    }

    /// `activity_id` and `activity_name` for an action.
    pub fn activity(self, action: &str) -> (u32, &'static str) {
        let verb = action.rsplit('.').next().unwrap_or(action);
        let has = |words: &[&str]| words.iter().any(|w| verb.contains(w));
        match self {
            Class::Authentication => {
                if has(&["logout", "logoff", "signout", "sign_out", "log_out"]) {
                    (2, "Logoff")
                } else if has(&[
                    "login",
                    "logon",
                    "signin",
                    "sign_in",
                    "log_in",
                    "authenticate",
                ]) {
                    (1, "Logon")
                } else {
                    (99, "Other")
                }
            }
            Class::AccountChange => {
                if has(&["password_reset"]) {
                    (4, "Password Reset")
                } else if has(&["password"]) {
                    (3, "Password Change")
                } else if has(&["mfa_enable", "mfa_add"]) {
                    (10, "MFA Factor Enable")
                } else if has(&["mfa_disable", "mfa_remove"]) {
                    (11, "MFA Factor Disable")
                } else if has(&["unlock", "enable", "activate", "reactivate"]) {
                    (2, "Enable")
                } else if has(&["disable", "deactivate", "suspend"]) {
                    (5, "Disable")
                } else if has(&["lock"]) {
                    (9, "Lock")
                } else if has(&["create", "add", "invite", "register", "signup"]) {
                    (1, "Create")
                } else if has(&["delete", "remove", "destroy"]) {
                    (6, "Delete")
                } else if has(&["detach", "revoke", "unassign"]) {
                    (8, "Detach Policy")
                } else if has(&["attach", "grant", "assign"]) {
                    (7, "Attach Policy")
                } else {
                    (99, "Other")
                }
            }
            Class::ApiActivity => {
                if has(&["create", "add", "insert", "upload", "import"]) {
                    (1, "Create")
                } else if has(&[
                    "read", "get", "list", "view", "search", "export", "download",
                ]) {
                    (2, "Read")
                } else if has(&["update", "edit", "modify", "patch", "set", "rename"]) {
                    (3, "Update")
                } else if has(&["delete", "remove", "destroy", "purge"]) {
                    (4, "Delete")
                } else {
                    (99, "Other")
                }
            }
        }
    }
}

/// `severity_id` and `severity` of an outcome.
pub const fn severity(outcome: Outcome) -> (u8, &'static str) {
    match outcome {
        Outcome::Success => (1, "Informational"),
        Outcome::Failure => (2, "Low"),
        Outcome::Denied => (3, "Medium"),
    }
}

/// `status_id` and `status` of an outcome.
pub const fn status(outcome: Outcome) -> (u8, &'static str) {
    match outcome {
        Outcome::Success => (1, "Success"),
        Outcome::Failure | Outcome::Denied => (2, "Failure"),
    }
}

fn millis(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000)
}

/// The OCSF object of an entry.
pub fn event(entry: &Entry) -> Value {
    let record = &entry.record;
    let e = &record.event;
    let class = Class::of(&e.action, &e.resource.kind);
    let (category_uid, category_name) = class.category();
    let (activity_id, activity_name) = class.activity(&e.action);
    let (severity_id, severity_name) = severity(e.outcome);
    let (status_id, status_name) = status(e.outcome);
    let time = millis(record.event_time().as_nanos());

    let mut user = Map::new();
    user.insert("uid".into(), json!(e.actor.id));
    user.insert("name".into(), json!(e.actor.id));
    user.insert("type".into(), json!(e.actor.kind));
    let mut actor = Map::new();
    actor.insert("user".into(), Value::Object(user.clone()));
    if let Some(session) = &e.actor.session_id {
        actor.insert("session".into(), json!({ "uid": session }));
    }
    if let Some(p) = &e.actor.on_behalf_of {
        // OCSF has no "on behalf of" principal; `invoked_by` names what
        // invoked the action, which is the real principal here.
        actor.insert("invoked_by".into(), json!(format!("{}:{}", p.kind, p.id)));
    }

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "sealog", "vendor_name": "sealog", "version": env!("CARGO_PKG_VERSION")}),
    );
    metadata.insert("uid".into(), json!(record.seq.to_string()));
    metadata.insert(
        "logged_time".into(),
        json!(millis(record.recorded_at.as_nanos())),
    );
    if let Some(request) = &e.request_id {
        metadata.insert("correlation_uid".into(), json!(request));
    }
    if let Some(tenant) = &e.tenant {
        metadata.insert("tenant_uid".into(), json!(tenant));
    }

    let mut out = Map::new();
    out.insert("class_uid".into(), json!(class.uid()));
    out.insert("class_name".into(), json!(class.name()));
    out.insert("category_uid".into(), json!(category_uid));
    out.insert("category_name".into(), json!(category_name));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity_name));
    out.insert(
        "type_uid".into(),
        json!(u64::from(class.uid()) * 100 + u64::from(activity_id)),
    );
    out.insert(
        "type_name".into(),
        json!(format!("{}: {activity_name}", class.name())),
    );
    out.insert("time".into(), json!(time));
    out.insert("severity_id".into(), json!(severity_id));
    out.insert("severity".into(), json!(severity_name));
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status_name));
    let detail = match (e.outcome, &e.reason) {
        (Outcome::Denied, Some(r)) => Some(format!("denied: {r}")),
        (Outcome::Denied, None) => Some("denied".to_owned()),
        (_, Some(r)) => Some(r.clone()),
        (_, None) => None,
    };
    if let Some(detail) = detail {
        out.insert("status_detail".into(), json!(detail));
    }
    out.insert(
        "message".into(),
        json!(format!("{} {}", e.action, e.outcome.as_str())),
    );
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert("actor".into(), Value::Object(actor));

    let resource = {
        let mut r = Map::new();
        r.insert("type".into(), json!(e.resource.kind));
        if let Some(id) = &e.resource.id {
            r.insert("uid".into(), json!(id));
        }
        r
    };
    match class {
        Class::Authentication => {
            // The user who authenticates: the actor.
            out.insert("user".into(), Value::Object(user));
            out.insert(
                "service".into(),
                json!({"name": e.resource.kind, "uid": e.resource.id}),
            );
        }
        Class::AccountChange => {
            // The account changed: the resource when it is an account, else
            // the actor's own.
            let target = if ACCOUNT_WORDS.contains(&e.resource.kind.as_str()) {
                let mut t = Map::new();
                if let Some(id) = &e.resource.id {
                    t.insert("uid".into(), json!(id));
                    t.insert("name".into(), json!(id));
                }
                t.insert("type".into(), json!(e.resource.kind));
                t
            } else {
                user
            };
            out.insert("user".into(), Value::Object(target));
        }
        Class::ApiActivity => {
            let mut api = Map::new();
            api.insert("operation".into(), json!(e.action));
            if let Some(request) = &e.request_id {
                api.insert("request".into(), json!({ "uid": request }));
            }
            out.insert("api".into(), Value::Object(api));
            out.insert("resources".into(), json!([Value::Object(resource)]));
        }
    }
    if let Some(source) = &e.source {
        if let Some(ip) = source.ip {
            out.insert("src_endpoint".into(), json!({ "ip": ip.to_string() }));
        }
        if let Some(ua) = &source.user_agent {
            out.insert("http_request".into(), json!({ "user_agent": ua }));
        }
    }

    let mut unmapped = Map::new();
    unmapped.insert("leaf_hash".into(), json!(entry.leaf_hex()));
    unmapped.insert("action".into(), json!(e.action));
    unmapped.insert("outcome".into(), json!(e.outcome.as_str()));
    unmapped.insert(
        "resource".into(),
        json!({"type": e.resource.kind, "id": e.resource.id}),
    );
    if let Some(tenant) = &e.tenant {
        unmapped.insert("tenant".into(), json!(tenant));
    }
    if let Some(p) = &e.actor.on_behalf_of {
        unmapped.insert("on_behalf_of".into(), json!({"type": p.kind, "id": p.id}));
    }
    if let Some(reason) = &e.reason {
        unmapped.insert("reason".into(), json!(reason));
    }
    if let Some(metadata) = &e.metadata {
        unmapped.insert("metadata".into(), Value::Object(metadata.clone()));
    }
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// The OCSF object of an entry as one line of JSON.
pub fn line(entry: &Entry) -> String {
    event(entry).to_string()
}
