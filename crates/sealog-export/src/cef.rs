//! ArcSight Common Event Format (CEF) lines.
//!
//! ```text
//! CEF:0|sealog|sealog|0.1.0|customer.delete|customer.delete|3|rt=… act=… …
//! ```
//!
//! Header fields escape `\` and `|`; extension values escape `\`, `=`, and
//! line breaks (`\n`, `\r`), as the CEF specification requires. The
//! extension keys used, and which event field each carries, are listed in
//! docs/siem.md.

use sealog::format::Outcome;

use crate::entry::Entry;

/// The CEF severity (0–10) of an outcome: success 3, failure 5, denied 7.
pub const fn severity(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => 3,
        Outcome::Failure => 5,
        Outcome::Denied => 7,
    }
}

/// Escapes a header field: `\` and `|` get a backslash; a line break
/// becomes a space (a header cannot hold one).
pub fn escape_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes an extension value: `\` and `=` get a backslash, line breaks
/// become `\n` and `\r`.
pub fn escape_extension(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

/// The CEF line of an entry (no trailing newline).
pub fn line(entry: &Entry) -> String {
    let record = &entry.record;
    let event = &record.event;
    let mut line = format!(
        "CEF:0|sealog|sealog|{}|{}|{}|{}|",
        escape_header(env!("CARGO_PKG_VERSION")),
        escape_header(&event.action),
        escape_header(&event.action),
        severity(event.outcome),
    );
    let mut ext: Vec<(&str, String)> = vec![
        (
            "rt",
            (record.event_time().as_nanos().div_euclid(1_000_000)).to_string(),
        ),
        ("act", event.action.clone()),
        ("outcome", event.outcome.as_str().to_owned()),
        ("suser", event.actor.id.clone()),
        ("flexString1Label", "actorType".into()),
        ("flexString1", event.actor.kind.clone()),
    ];
    if let Some(session) = &event.actor.session_id {
        ext.push(("flexString2Label", "sessionId".into()));
        ext.push(("flexString2", session.clone()));
    }
    if let Some(tenant) = &event.tenant {
        ext.push(("cs1Label", "tenant".into()));
        ext.push(("cs1", tenant.clone()));
    }
    ext.push(("cs2Label", "resource".into()));
    ext.push((
        "cs2",
        match &event.resource.id {
            Some(id) => format!("{}:{id}", event.resource.kind),
            None => event.resource.kind.clone(),
        },
    ));
    ext.push(("cs3Label", "leafHash".into()));
    ext.push(("cs3", entry.leaf_hex()));
    if let Some(request) = &event.request_id {
        ext.push(("cs4Label", "requestId".into()));
        ext.push(("cs4", request.clone()));
    }
    if let Some(p) = &event.actor.on_behalf_of {
        ext.push(("cs5Label", "onBehalfOf".into()));
        ext.push(("cs5", format!("{}:{}", p.kind, p.id)));
    }
    if let Some(metadata) = &event.metadata {
        ext.push(("cs6Label", "metadata".into()));
        ext.push((
            "cs6",
            serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into()),
        ));
    }
    if let Some(source) = &event.source {
        match source.ip {
            Some(std::net::IpAddr::V4(ip)) => ext.push(("src", ip.to_string())),
            Some(std::net::IpAddr::V6(ip)) => ext.push(("c6a2", ip.to_string())),
            None => {}
        }
        if let Some(ua) = &source.user_agent {
            ext.push(("requestClientApplication", ua.clone()));
        }
    }
    if let Some(reason) = &event.reason {
        ext.push(("reason", reason.clone()));
    }
    ext.push(("externalId", record.seq.to_string()));
    ext.push(("deviceCustomDate1Label", "recordedAt".into()));
    ext.push((
        "deviceCustomDate1",
        record
            .recorded_at
            .as_nanos()
            .div_euclid(1_000_000)
            .to_string(),
    ));
    for (i, (key, value)) in ext.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(key);
        line.push('=');
        line.push_str(&escape_extension(value));
    }
    line
}
