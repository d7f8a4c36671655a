//! RFC 5424 syslog lines, and the RFC 5425 / RFC 6587 octet-counting frame
//! that carries them over TCP and TLS.
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME sealog - MSGID [sealog@32473 seq="…" leaf="…" …] MSG
//! ```
//!
//! PRI is `facility × 8 + severity`, the severity following the outcome
//! (success 6 informational, failure 5 notice, denied 4 warning). TIMESTAMP
//! is the event time in UTC with microseconds (RFC 5424 allows six
//! fractional digits at most). MSGID is the action. The structured data
//! element carries the seq (for deduplication and `sealog proof --seq`), the
//! leaf hash, the outcome, the tenant and the actor. MSG is the record as
//! JSON, the same line `sealog export` writes. docs/siem.md is the spec.

use std::fmt::Write as _;

use sealog::format::Outcome;

use crate::entry::Entry;

/// The structured-data ID used when none is configured. 32473 is the
/// Private Enterprise Number IANA reserves for documentation (RFC 5612); a
/// deployment with its own PEN sets [`SyslogOptions::sd_id`].
pub const DEFAULT_SD_ID: &str = "sealog@32473";

/// The facility used when none is configured: 13, "log audit".
pub const DEFAULT_FACILITY: u8 = 13;

/// How syslog lines are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogOptions {
    /// The facility, 0 to 23.
    pub facility: u8,
    /// The HOSTNAME field: printable ASCII, at most 255 characters; `-` if
    /// empty.
    pub hostname: String,
    /// The SD-ID of the structured data element (`name@PEN`).
    pub sd_id: String,
}

impl Default for SyslogOptions {
    fn default() -> Self {
        SyslogOptions {
            facility: DEFAULT_FACILITY,
            hostname: local_hostname(),
            sd_id: DEFAULT_SD_ID.to_owned(),
        }
    }
}

/// This machine's host name (the kernel's node name), `-` if unknown.
pub fn local_hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() { "-".into() } else { name }
}

/// The RFC 5424 severity of an outcome.
pub const fn severity(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => 6,
        Outcome::Failure => 5,
        Outcome::Denied => 4,
    }
}

/// Parses a facility: a number 0 to 23, or a name (`kern`, `user`, `mail`,
/// `daemon`, `auth`, `syslog`, `lpr`, `news`, `uucp`, `cron`, `authpriv`,
/// `ftp`, `ntp`, `audit`, `alert`, `clock`, `local0` … `local7`).
pub fn parse_facility(text: &str) -> Result<u8, String> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    if let Ok(n) = text.parse::<u8>() {
        return if n <= 23 {
            Ok(n)
        } else {
            Err(format!("facility {n} is outside 0..=23"))
        };
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| {
            format!(
                "`{text}` is not a syslog facility: give 0 to 23 or a name ({})",
                NAMES.join(", ")
            )
        })
}

/// Keeps printable US-ASCII (33..=126) only, at most `max` characters; `-`
/// when nothing is left (RFC 5424 §6: HOSTNAME, APP-NAME, MSGID).
fn header_field(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if kept.is_empty() { "-".into() } else { kept }
}

/// Escapes a PARAM-VALUE: `"`, `\` and `]` get a backslash (RFC 5424
/// §6.3.3).
pub fn escape_param_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The event time as an RFC 5424 TIMESTAMP: UTC, microseconds.
fn timestamp(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let micros = nanos.rem_euclid(1_000_000_000) / 1_000;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "-".into(),
    }
}

/// The RFC 5424 line of an entry (no trailing newline, no frame), with
/// `message` as MSG.
pub fn line_with_message(entry: &Entry, options: &SyslogOptions, message: &str) -> String {
    let record = &entry.record;
    let event = &record.event;
    let pri = u16::from(options.facility.min(23)) * 8 + u16::from(severity(event.outcome));
    let mut line = String::with_capacity(256 + message.len());
    let _ = write!(
        line,
        "<{pri}>1 {} {} sealog - {} [",
        timestamp(record.event_time().as_nanos()),
        header_field(&options.hostname, 255),
        header_field(&event.action, 32),
    );
    // SD-NAME: printable ASCII except `=`, space, `]` and `"`, at most 32.
    let sd_id: String = options
        .sd_id
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect();
    line.push_str(if sd_id.is_empty() {
        DEFAULT_SD_ID
    } else {
        &sd_id
    });
    let mut param = |name: &str, value: &str| {
        let _ = write!(line, " {name}=\"");
        escape_param_value(value, &mut line);
        line.push('"');
    };
    param("seq", &record.seq.to_string());
    param("leaf", &entry.leaf_hex());
    param("outcome", event.outcome.as_str());
    param("actor", &format!("{}:{}", event.actor.kind, event.actor.id));
    if let Some(tenant) = &event.tenant {
        param("tenant", tenant);
    }
    line.push_str("] ");
    line.push_str(message);
    line
}

/// The RFC 5424 line of an entry with the record's JSON as MSG.
pub fn line(entry: &Entry, options: &SyslogOptions) -> String {
    line_with_message(entry, options, &crate::record_json(&entry.record))
}

/// Appends `line` framed by octet counting, `MSG-LEN SP SYSLOG-MSG` (RFC
/// 5425 §4.3, RFC 6587 §3.4.1): the count is of bytes, so any byte may
/// appear in the message, line breaks included.
pub fn frame(line: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(line.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.as_bytes());
}
