//! An alert, and the `alert.raised` event that records it in the log.
//!
//! An alert names its rule, its group, the event-time window it covers and
//! the seqs of the records that made it fire (at most
//! [`Limits::max_alert_seqs`](crate::rules::Limits), with their total), so
//! anyone can fetch those records with their receipts and check that the
//! rule did fire. Its [`Alert::id`] is derived from the rule, the group, the
//! window start and the last triggering seq: evaluating the same records
//! again gives the same alerts with the same ids, which is what
//! deduplicates them after a restart.

use sealog::Timestamp;
use sealog::format::{Actor, Event, Metadata, Outcome, Resource};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rules::Severity;

/// The action of the event that records an alert.
pub const ALERT_ACTION: &str = "alert.raised";
/// The actor type of alert events.
pub const ALERT_ACTOR_TYPE: &str = "service";
/// The actor id of alert events.
pub const ALERT_ACTOR_ID: &str = "sealog-alerts";
/// The resource type of alert events (the id is the rule's name).
pub const ALERT_RESOURCE_TYPE: &str = "rule";
/// Alert events carry `request_id = "alert-<id>"`: the exact-match index
/// finds an alert's event by its id.
pub const ALERT_REQUEST_PREFIX: &str = "alert-";

/// An alert (see the module docs). Its JSON form is the body of a webhook
/// delivery and a line of `sealog alerts test --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// 32 hex digits, the same each time the same records raise it.
    pub id: String,
    /// The rule's name.
    pub rule: String,
    /// The rule's kind (`threshold`, `baseline`, `schedule`, `first_seen`,
    /// `match`).
    pub kind: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the rule groups by (`actor`, `source_ip`, ...).
    pub group_by: String,
    /// The group (`user:alice`, `203.0.113.9`, ...; empty for `none`).
    pub group: String,
    /// The event time the window starts at (the first triggering event's;
    /// the bucket's start for a baseline rule).
    pub window_start: Timestamp,
    /// The event time of the event that made it fire.
    pub window_end: Timestamp,
    /// Events counted (the window's, the bucket's; 1 for the per-event
    /// kinds).
    pub count: u64,
    /// Seqs of the triggering records, ascending, at most the limit.
    pub seqs: Vec<u64>,
    /// How many triggering records there were (`seqs` may list fewer).
    pub seqs_total: u64,
    /// The tenant all the triggering events share, if they share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What the kind adds: the threshold and window, the baseline and
    /// factor, the local time and zone, the new value.
    pub detail: Metadata,
}

impl Alert {
    /// The deterministic id of an alert (see the module docs).
    pub fn make_id(rule: &str, group: &str, window_start: Timestamp, last_seq: u64) -> String {
        let mut h = Sha256::new();
        h.update(rule.as_bytes());
        h.update([0]);
        h.update(group.as_bytes());
        h.update([0]);
        h.update(window_start.as_nanos().to_be_bytes());
        h.update(last_seq.to_be_bytes());
        let digest = h.finalize();
        hex::encode(digest.get(..16).unwrap_or_default())
    }

    /// The `request_id` of this alert's event.
    pub fn request_id(&self) -> String {
        format!("{ALERT_REQUEST_PREFIX}{}", self.id)
    }

    /// The event that records the alert in the log: actor
    /// `service:sealog-alerts`, action `alert.raised`, resource
    /// `rule:<name>`, outcome `success`, time the triggering event's time,
    /// the shared tenant if any, `request_id` `alert-<id>`, and in
    /// metadata everything the alert says.
    pub fn to_event(&self) -> Event {
        let mut metadata = Metadata::new();
        let mut put = |k: &str, v: serde_json::Value| {
            metadata.insert(k.to_owned(), v);
        };
        put("alert_id", self.id.clone().into());
        put("rule", self.rule.clone().into());
        put("kind", self.kind.clone().into());
        put("severity", self.severity.as_str().into());
        put("group_by", self.group_by.clone().into());
        put("group", self.group.clone().into());
        put("count", self.count.into());
        put("window_start", self.window_start.to_rfc3339().into());
        put("window_end", self.window_end.to_rfc3339().into());
        put("seqs", self.seqs.clone().into());
        put("seqs_total", self.seqs_total.into());
        put("detail", serde_json::Value::Object(self.detail.clone()));
        let mut event = Event::new(
            Actor::new(ALERT_ACTOR_TYPE, ALERT_ACTOR_ID),
            ALERT_ACTION,
            Resource::new(ALERT_RESOURCE_TYPE, self.rule.clone()),
            Outcome::Success,
        )
        .with_time(self.window_end)
        .with_request_id(self.request_id())
        .with_metadata(metadata);
        if !self.description.is_empty() {
            event = event.with_reason(self.description.clone());
        }
        if let Some(t) = &self.tenant {
            event = event.with_tenant(t.clone());
        }
        event
    }
}

impl Alert {
    /// The alert an `alert.raised` event records (the inverse of
    /// [`Alert::to_event`]); `None` for any other event, or one whose
    /// metadata does not hold an alert.
    pub fn from_event(event: &Event) -> Option<Alert> {
        if !is_alert_event(&event.actor.kind, &event.actor.id, &event.action) {
            return None;
        }
        let m = event.metadata.as_ref()?;
        let mut fields = serde_json::Map::new();
        fields.insert("id".into(), m.get("alert_id")?.clone());
        for key in [
            "rule",
            "kind",
            "severity",
            "group_by",
            "group",
            "window_start",
            "window_end",
            "count",
            "seqs",
            "seqs_total",
            "detail",
        ] {
            fields.insert(key.into(), m.get(key)?.clone());
        }
        if let Some(reason) = &event.reason {
            fields.insert("description".into(), reason.clone().into());
        }
        if let Some(tenant) = &event.tenant {
            fields.insert("tenant".into(), tenant.clone().into());
        }
        let alert: Alert = serde_json::from_value(serde_json::Value::Object(fields)).ok()?;
        (event.request_id.as_deref() == Some(alert.request_id().as_str())).then_some(alert)
    }
}

/// Whether a record is an alert event of this crate: alert events are
/// never evaluated by rules, so an alert cannot raise alerts about itself.
pub fn is_alert_event(actor_type: &str, actor_id: &str, action: &str) -> bool {
    action == ALERT_ACTION && actor_type == ALERT_ACTOR_TYPE && actor_id == ALERT_ACTOR_ID
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// An alert of a brute-force rule, for tests.
    pub(crate) fn alert() -> Alert {
        let mut detail = Metadata::new();
        detail.insert("threshold".into(), 5.into());
        Alert {
            id: Alert::make_id("brute-force", "203.0.113.9", Timestamp::from_nanos(7), 12),
            rule: "brute-force".into(),
            kind: "threshold".into(),
            severity: Severity::High,
            description: "Five failed logins".into(),
            group_by: "source_ip".into(),
            group: "203.0.113.9".into(),
            window_start: Timestamp::from_nanos(1_700_000_000_000_000_000),
            window_end: Timestamp::from_nanos(1_700_000_040_000_000_000),
            count: 5,
            seqs: vec![3, 5, 8, 9, 12],
            seqs_total: 5,
            tenant: Some("acme".into()),
            detail,
        }
    }

    #[test]
    fn an_alert_event_gives_back_its_alert() {
        let a = alert();
        assert_eq!(Alert::from_event(&a.to_event()), Some(a.clone()));
        let bare = Alert {
            description: String::new(),
            tenant: None,
            ..a
        };
        assert_eq!(Alert::from_event(&bare.to_event()), Some(bare));
    }

    #[test]
    fn other_events_and_altered_alert_events_give_none() {
        let a = alert();
        let mut other = a.to_event();
        other.action = "auth.login".into();
        assert_eq!(Alert::from_event(&other), None);
        let mut wrong_id = a.to_event();
        wrong_id.request_id = Some("alert-0".into());
        assert_eq!(Alert::from_event(&wrong_id), None);
        let mut no_seqs = a.to_event();
        if let Some(m) = no_seqs.metadata.as_mut() {
            m.remove("seqs");
        }
        assert_eq!(Alert::from_event(&no_seqs), None);
    }
}
