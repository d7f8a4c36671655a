//! A forwarder described by a configuration file: the `[[forward]]` tables
//! of the server's TOML config (docs/api.md, docs/siem.md).
//!
//! ```toml
//! [[forward]]
//! to = "syslog+tls://siem.example.com:6514"
//! ca = "/etc/sealog/siem-ca.pem"
//! format = "json"          # json | ocsf | cef
//! actions = ["auth.*", "*.export"]
//! outcome = "denied"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use sealog::query::{ActionPattern, ActorFilter, IpFilter, Query, ResourceFilter, TimeBound};

use super::{Destination, ForwardOptions, Payload, Start, default_dir, file_name};
use crate::error::ExportError;
use crate::syslog::{DEFAULT_SD_ID, SyslogOptions, local_hostname, parse_facility};

/// One `[[forward]]` table. Every key but `to` is optional; the filter keys
/// are those of `sealog query`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "each key is documented in docs/siem.md")]
pub struct ForwardConfig {
    pub to: String,
    pub format: Option<String>,
    pub name: Option<String>,
    pub cursor: Option<PathBuf>,
    pub start: Option<String>,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The environment variable holding the `Authorization` header's value.
    pub authorization_env: Option<String>,
    pub batch: Option<u64>,
    pub interval_ms: Option<u64>,
    pub resend_window: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub facility: Option<String>,
    pub hostname: Option<String>,
    pub sd_id: Option<String>,
    pub actor: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    pub resource: Option<String>,
    pub resource_type: Option<String>,
    pub outcome: Option<String>,
    pub tenant: Option<String>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
}

fn bad(key: &str, to: &str, why: impl std::fmt::Display, fix: &str) -> ExportError {
    ExportError::config(
        format!("[[forward]] to {to}: `{key}`: {why}"),
        format!("{fix} (see docs/siem.md, \"Forwarding from the server\")"),
    )
}

impl ForwardConfig {
    /// The filter these keys describe.
    pub fn query(&self) -> Result<Query, ExportError> {
        let to = &self.to;
        let mut q = Query::default();
        if let Some(actor) = &self.actor {
            q.actor = Some(ActorFilter::parse(actor));
        }
        for pattern in &self.actions {
            q.actions
                .push(ActionPattern::new(pattern.as_str()).map_err(|e| {
                    bad(
                        "actions",
                        to,
                        e,
                        "give action names or globs, e.g. [\"auth.*\"]",
                    )
                })?);
        }
        if let Some(resource) = &self.resource {
            q.resource = Some(ResourceFilter::parse(resource));
        }
        q.resource_type.clone_from(&self.resource_type);
        if let Some(outcome) = &self.outcome {
            q.outcome = Some(outcome.parse().map_err(|_| {
                bad(
                    "outcome",
                    to,
                    format!("`{outcome}` is not an outcome"),
                    "give success, failure or denied",
                )
            })?);
        }
        q.tenant.clone_from(&self.tenant);
        if let Some(ip) = &self.source_ip {
            q.source_ip =
                Some(IpFilter::parse(ip).map_err(|e| {
                    bad("source_ip", to, e, "give an IP address or a CIDR network")
                })?);
        }
        q.request_id.clone_from(&self.request_id);
        if let Some(from) = &self.from {
            q.from = Some(
                sealog::query::parse_time("from", from, TimeBound::Start)
                    .map_err(|e| bad("from", to, e, "give an RFC 3339 time or a date"))?,
            );
        }
        if let Some(until) = &self.until {
            q.to = Some(
                sealog::query::parse_time("to", until, TimeBound::End)
                    .map_err(|e| bad("until", to, e, "give an RFC 3339 time or a date"))?,
            );
        }
        q.validate()
            .map_err(|e| bad("filters", to, e, "fix the filter keys"))?;
        Ok(q)
    }

    /// The forwarder's options, with the cursor in `<data_dir>/forward/`
    /// unless `cursor` is set. Checks every value, and reads the TLS files,
    /// so that a mistake stops the server at start rather than later.
    pub fn to_options(&self, data_dir: &Path) -> Result<ForwardOptions, ExportError> {
        let to = &self.to;
        let destination = Destination::parse(to)?;
        let mut o = ForwardOptions::new(destination, data_dir);
        if let Some(format) = &self.format {
            o.payload = Payload::parse(format)?;
        }
        if let Some(name) = &self.name {
            o.cursor = default_dir(data_dir).join(file_name(name));
        }
        if let Some(cursor) = &self.cursor {
            o.cursor.clone_from(cursor);
        }
        if let Some(start) = &self.start {
            o.start = Start::parse(start)?;
        }
        o.tls.ca.clone_from(&self.ca);
        o.tls.client_cert.clone_from(&self.client_cert);
        o.tls.client_key.clone_from(&self.client_key);
        o.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(var) = &self.authorization_env {
            let value = std::env::var(var).map_err(|_| {
                bad(
                    "authorization_env",
                    to,
                    format!("the environment variable {var} is not set"),
                    "set it to the Authorization header's value (e.g. `Bearer …`) in the \
                     server's environment",
                )
            })?;
            o.headers.push(("Authorization".into(), value));
        }
        if let Some(n) = self.batch {
            if !(1..=100_000).contains(&n) {
                return Err(bad(
                    "batch",
                    to,
                    format!("{n} is outside 1..=100000"),
                    "give 1000",
                ));
            }
            o.batch_lines = usize::try_from(n).unwrap_or(1000);
        }
        if let Some(ms) = self.interval_ms {
            if !(50..=60_000).contains(&ms) {
                return Err(bad(
                    "interval_ms",
                    to,
                    format!("{ms} is outside 50..=60000"),
                    "give 500",
                ));
            }
            o.poll = Duration::from_millis(ms);
        }
        if let Some(n) = self.resend_window {
            o.resend_window = n;
        }
        if let Some(secs) = self.timeout_secs {
            if !(1..=600).contains(&secs) {
                return Err(bad(
                    "timeout_secs",
                    to,
                    format!("{secs} is outside 1..=600"),
                    "give 30",
                ));
            }
            o.timeout = Duration::from_secs(secs);
        }
        o.syslog = SyslogOptions {
            facility: match &self.facility {
                Some(f) => parse_facility(f).map_err(|e| {
                    bad("facility", to, e, "give audit, authpriv or local0 … local7")
                })?,
                None => crate::syslog::DEFAULT_FACILITY,
            },
            hostname: self.hostname.clone().unwrap_or_else(local_hostname),
            sd_id: self
                .sd_id
                .clone()
                .unwrap_or_else(|| DEFAULT_SD_ID.to_owned()),
        };
        o.filter = self.query()?;
        o.validate()?;
        let tls = match &o.destination {
            Destination::SyslogTls { .. } => true,
            Destination::Http { url } => url.starts_with("https://"),
            Destination::SyslogTcp { .. } => false,
        };
        if tls {
            // Reads the CA and client files now: a missing one is a
            // configuration error, reported at start.
            super::client_config(&o.tls)?;
        }
        Ok(o)
    }
}
