//! The record body: one event, as the bytes that are stored and hashed.
//!
//! Layout (version 1, little-endian; see `docs/format.md`):
//!
//! ```text
//! offset  size  field
//! 0       1     record version (1)
//! 1       1     outcome code: 1 success, 2 failure, 3 denied
//! 2       2     presence flags (bit per optional field, FLAG_*)
//! 4       ...   fields, in the order below; optional ones only if flagged
//! len-16  8     seq (u64)
//! len-8   8     recorded_at (i64, ns since the Unix epoch, UTC)
//! ```
//!
//! Fields in order: `time` (i64, if FLAG_TIME), `actor.type`, `actor.id`,
//! `actor.on_behalf_of.type` and `.id` (if FLAG_ON_BEHALF_OF),
//! `actor.session_id`, `action`, `resource.type`, `resource.id`, `tenant`,
//! `source.ip` (a family byte 4 or 6, then 4 or 16 address bytes),
//! `source.user_agent`, `request_id`, `reason` — strings as a u16 length and
//! UTF-8 bytes — then `metadata` as a u32 length and compact JSON text.
//!
//! The store-assigned fields come last so that everything before them can be
//! encoded, checksummed and hashed before the store assigns a sequence number;
//! only the final 16 bytes are added under the log's lock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::{
    Actor, Event, Metadata, Outcome, Principal, Record, Resource, Source, Timestamp,
};

/// The record format version this code writes.
pub const RECORD_VERSION: u8 = 1;
/// Bytes before the first field: version, outcome, flags.
pub const RECORD_FIXED_LEN: usize = 1 + 1 + 2;
/// Bytes of the trailer: seq and recorded_at.
pub const RECORD_TRAILER_LEN: usize = 8 + 8;
/// The largest record body this format version can describe (4 MiB).
pub const MAX_RECORD_LEN: usize = 4 << 20;

/// The event carries its own time.
pub const FLAG_TIME: u16 = 1 << 0;
/// The actor acts on behalf of another principal.
pub const FLAG_ON_BEHALF_OF: u16 = 1 << 1;
/// `actor.session_id` is present.
pub const FLAG_SESSION_ID: u16 = 1 << 2;
/// `resource.id` is present.
pub const FLAG_RESOURCE_ID: u16 = 1 << 3;
/// `tenant` is present.
pub const FLAG_TENANT: u16 = 1 << 4;
/// `source.ip` is present.
pub const FLAG_SOURCE_IP: u16 = 1 << 5;
/// `source.user_agent` is present.
pub const FLAG_USER_AGENT: u16 = 1 << 6;
/// `request_id` is present.
pub const FLAG_REQUEST_ID: u16 = 1 << 7;
/// `reason` is present.
pub const FLAG_REASON: u16 = 1 << 8;
/// `metadata` is present.
pub const FLAG_METADATA: u16 = 1 << 9;
/// Every flag version 1 defines; any other bit set is an error.
pub const KNOWN_FLAGS: u16 = (1 << 10) - 1;

/// Why a byte string is not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record ended before a field was complete.
    #[error(
        "record truncated: {field} needs {needed} bytes at offset {offset}, {available} remain"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field within the record body.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The record version is not one this code reads.
    #[error("record version {found} is not supported (this build reads version {RECORD_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// Unknown outcome code.
    #[error("unknown outcome code {code}")]
    BadOutcome {
        /// The code found.
        code: u8,
    },
    /// Flags outside those the version defines.
    #[error("unknown presence flags {flags:#06x}")]
    UnknownFlags {
        /// The flags found.
        flags: u16,
    },
    /// A string field is not UTF-8.
    #[error("{field} at offset {offset} is not valid UTF-8")]
    BadUtf8 {
        /// The field.
        field: &'static str,
        /// Offset of the field's bytes within the record body.
        offset: usize,
    },
    /// The IP family byte is neither 4 nor 6.
    #[error("source.ip family {family} at offset {offset} is neither 4 nor 6")]
    BadIpFamily {
        /// The family byte.
        family: u8,
        /// Its offset.
        offset: usize,
    },
    /// The metadata is not a JSON object.
    #[error("metadata at offset {offset} is not a JSON object: {reason}")]
    BadMetadata {
        /// Offset of the metadata text.
        offset: usize,
        /// What the JSON parser said.
        reason: String,
    },
    /// Bytes between the last field and the trailer.
    #[error("{extra} unexpected bytes after the last field at offset {offset}")]
    TrailingBytes {
        /// Offset of the first unexpected byte.
        offset: usize,
        /// How many.
        extra: usize,
    },
    /// A field is too long for the encoding (strings over 65535 bytes, records
    /// over [`MAX_RECORD_LEN`]).
    #[error("{field} is too long to encode ({len} bytes, limit {max})")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A decoded record that borrows its strings from the record bytes.
///
/// Decoding into a view checks the whole structure (lengths, UTF-8, flags,
/// the trailer position) but allocates nothing and leaves the metadata JSON
/// unparsed; [`RecordView::to_record`] makes an owned [`Record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Presence flags.
    pub flags: u16,
    /// Outcome.
    pub outcome: Outcome,
    /// Client-supplied event time, if any.
    pub time: Option<Timestamp>,
    /// `actor.type`.
    pub actor_type: &'a str,
    /// `actor.id`.
    pub actor_id: &'a str,
    /// `actor.on_behalf_of` as (type, id).
    pub on_behalf_of: Option<(&'a str, &'a str)>,
    /// `actor.session_id`.
    pub session_id: Option<&'a str>,
    /// `action`.
    pub action: &'a str,
    /// `resource.type`.
    pub resource_type: &'a str,
    /// `resource.id`.
    pub resource_id: Option<&'a str>,
    /// `tenant`.
    pub tenant: Option<&'a str>,
    /// `source.ip`.
    pub source_ip: Option<IpAddr>,
    /// `source.user_agent`.
    pub user_agent: Option<&'a str>,
    /// `request_id`.
    pub request_id: Option<&'a str>,
    /// `reason`.
    pub reason: Option<&'a str>,
    /// `metadata`, as compact JSON text (checked to be a JSON object).
    pub metadata: Option<&'a str>,
    /// The record's sequence number.
    pub seq: u64,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
}

impl RecordView<'_> {
    /// The event time: the client's, or the recorded time.
    pub fn event_time(&self) -> Timestamp {
        self.time.unwrap_or(self.recorded_at)
    }

    /// Appends the record's JSON to `out`: what `serde_json` writes for
    /// [`RecordView::to_record`]'s [`Record`] (the same fields in the same
    /// order, the same escapes), without making the owned record. The
    /// metadata is written as its stored text, which [`decode`] checked to
    /// be a JSON object: for a record this crate encoded (compact
    /// `serde_json` text of the event's metadata) that is the same text;
    /// stored text written otherwise keeps its own spacing and key order.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_as(out, self.time);
    }

    /// [`RecordView::write_json`] with the event time in `time`: the JSON
    /// of `to_record()?.with_event_time()`, as an export writes a record so
    /// that importing it elsewhere keeps when it happened.
    pub fn write_json_with_event_time(&self, out: &mut Vec<u8>) {
        self.write_json_as(out, Some(self.event_time()));
    }

    fn write_json_as(&self, out: &mut Vec<u8>, time: Option<Timestamp>) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let text = |out: &mut Vec<u8>, s: &str| {
            let _ = serde_json::to_writer(&mut *out, s);
        };
        let field = |out: &mut Vec<u8>, name: &str, value: Option<&str>| {
            if let Some(v) = value {
                out.push(b',');
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                text(out, v);
            }
        };
        let _ = write!(
            out,
            "{{\"seq\":{},\"recorded_at\":\"{}\"",
            self.seq,
            self.recorded_at.to_rfc3339()
        );
        if let Some(t) = time {
            let _ = write!(out, ",\"time\":\"{}\"", t.to_rfc3339());
        }
        out.extend_from_slice(b",\"actor\":{\"type\":");
        text(out, self.actor_type);
        out.extend_from_slice(b",\"id\":");
        text(out, self.actor_id);
        if let Some((kind, id)) = self.on_behalf_of {
            out.extend_from_slice(b",\"on_behalf_of\":{\"type\":");
            text(out, kind);
            out.extend_from_slice(b",\"id\":");
            text(out, id);
            out.push(b'}');
        }
        field(out, "session_id", self.session_id);
        out.extend_from_slice(b"},\"action\":");
        text(out, self.action);
        out.extend_from_slice(b",\"resource\":{\"type\":");
        text(out, self.resource_type);
        field(out, "id", self.resource_id);
        out.extend_from_slice(b"},\"outcome\":\"");
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        out.push(b'"');
        field(out, "tenant", self.tenant);
        if self.source_ip.is_some() || self.user_agent.is_some() {
            out.extend_from_slice(b",\"source\":{");
            if let Some(ip) = self.source_ip {
                let _ = write!(out, "\"ip\":\"{ip}\"");
            }
            if let Some(agent) = self.user_agent {
                if self.source_ip.is_some() {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"user_agent\":");
                text(out, agent);
            }
            out.push(b'}');
        }
        field(out, "request_id", self.request_id);
        field(out, "reason", self.reason);
        if let Some(metadata) = self.metadata {
            out.extend_from_slice(b",\"metadata\":");
            out.extend_from_slice(metadata.as_bytes());
        }
        out.push(b'}');
    }

    /// An owned copy.
    pub fn to_record(&self) -> Result<Record, RecordError> {
        let metadata = match self.metadata {
            None => None,
            Some(text) => Some(serde_json::from_str::<Metadata>(text).map_err(|e| {
                RecordError::BadMetadata {
                    offset: 0,
                    reason: e.to_string(),
                }
            })?),
        };
        let source = if self.source_ip.is_some() || self.user_agent.is_some() {
            Some(Source {
                ip: self.source_ip,
                user_agent: self.user_agent.map(str::to_owned),
            })
        } else {
            None
        };
        Ok(Record {
            seq: self.seq,
            recorded_at: self.recorded_at,
            event: Event {
                time: self.time,
                actor: Actor {
                    kind: self.actor_type.to_owned(),
                    id: self.actor_id.to_owned(),
                    on_behalf_of: self.on_behalf_of.map(|(k, id)| Principal::new(k, id)),
                    session_id: self.session_id.map(str::to_owned),
                },
                action: self.action.to_owned(),
                resource: Resource {
                    kind: self.resource_type.to_owned(),
                    id: self.resource_id.map(str::to_owned),
                },
                outcome: self.outcome,
                tenant: self.tenant.map(str::to_owned),
                source,
                request_id: self.request_id.map(str::to_owned),
                reason: self.reason.map(str::to_owned),
                metadata,
            },
        })
    }
}

/// Appends the record body of `event`, without the trailer, to `out`, and
/// returns the length of the metadata's JSON text (0 without metadata).
///
/// The caller completes the record with [`encode_trailer`]. The event should
/// have passed validation; this function only enforces what the encoding
/// itself cannot represent.
pub fn encode_prefix(event: &Event, out: &mut Vec<u8>) -> Result<usize, RecordError> {
    let mut metadata_len = 0;
    let start = out.len();
    let mut flags = 0u16;
    let source = event.source.as_ref();
    let set = |flags: &mut u16, flag: u16, present: bool| {
        if present {
            *flags |= flag;
        }
    };
    set(&mut flags, FLAG_TIME, event.time.is_some());
    set(
        &mut flags,
        FLAG_ON_BEHALF_OF,
        event.actor.on_behalf_of.is_some(),
    );
    set(
        &mut flags,
        FLAG_SESSION_ID,
        event.actor.session_id.is_some(),
    );
    set(&mut flags, FLAG_RESOURCE_ID, event.resource.id.is_some());
    set(&mut flags, FLAG_TENANT, event.tenant.is_some());
    set(
        &mut flags,
        FLAG_SOURCE_IP,
        source.is_some_and(|s| s.ip.is_some()),
    );
    set(
        &mut flags,
        FLAG_USER_AGENT,
        source.is_some_and(|s| s.user_agent.is_some()),
    );
    set(&mut flags, FLAG_REQUEST_ID, event.request_id.is_some());
    set(&mut flags, FLAG_REASON, event.reason.is_some());
    set(&mut flags, FLAG_METADATA, event.metadata.is_some());

    out.push(RECORD_VERSION);
    out.push(event.outcome.code());
    out.extend_from_slice(&flags.to_le_bytes());
    if let Some(t) = event.time {
        out.extend_from_slice(&t.as_nanos().to_le_bytes());
    }
    put_str(out, "actor.type", &event.actor.kind)?;
    put_str(out, "actor.id", &event.actor.id)?;
    if let Some(p) = &event.actor.on_behalf_of {
        put_str(out, "actor.on_behalf_of.type", &p.kind)?;
        put_str(out, "actor.on_behalf_of.id", &p.id)?;
    }
    if let Some(s) = &event.actor.session_id {
        put_str(out, "actor.session_id", s)?;
    }
    put_str(out, "action", &event.action)?;
    put_str(out, "resource.type", &event.resource.kind)?;
    if let Some(id) = &event.resource.id {
        put_str(out, "resource.id", id)?;
    }
    if let Some(t) = &event.tenant {
        put_str(out, "tenant", t)?;
    }
    if let Some(ip) = source.and_then(|s| s.ip) {
        match ip {
            IpAddr::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    if let Some(ua) = source.and_then(|s| s.user_agent.as_deref()) {
        put_str(out, "source.user_agent", ua)?;
    }
    if let Some(r) = &event.request_id {
        put_str(out, "request_id", r)?;
    }
    if let Some(r) = &event.reason {
        put_str(out, "reason", r)?;
    }
    if let Some(m) = &event.metadata {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        // Writing a Map of Values into a Vec cannot fail.
        serde_json::to_writer(&mut *out, m).map_err(|e| RecordError::BadMetadata {
            offset: len_at - start,
            reason: e.to_string(),
        })?;
        let len = out.len() - len_at - 4;
        metadata_len = len;
        let len32 = u32::try_from(len).map_err(|_| RecordError::TooLong {
            field: "metadata",
            len,
            max: MAX_RECORD_LEN,
        })?;
        if let Some(slot) = out.get_mut(len_at..len_at + 4) {
            slot.copy_from_slice(&len32.to_le_bytes());
        }
    }
    let total = out.len() - start + RECORD_TRAILER_LEN;
    if total > MAX_RECORD_LEN {
        out.truncate(start);
        return Err(RecordError::TooLong {
            field: "record",
            len: total,
            max: MAX_RECORD_LEN,
        });
    }
    Ok(metadata_len)
}

/// The final 16 bytes of a record: `seq` and `recorded_at`.
pub fn encode_trailer(seq: u64, recorded_at: Timestamp) -> [u8; RECORD_TRAILER_LEN] {
    let mut trailer = [0u8; RECORD_TRAILER_LEN];
    let (a, b) = trailer.split_at_mut(8);
    a.copy_from_slice(&seq.to_le_bytes());
    b.copy_from_slice(&recorded_at.as_nanos().to_le_bytes());
    trailer
}

/// The complete record body of `event` with the given store-assigned fields.
pub fn encode(event: &Event, seq: u64, recorded_at: Timestamp) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(256);
    encode_prefix(event, &mut out)?;
    out.extend_from_slice(&encode_trailer(seq, recorded_at));
    Ok(out)
}

/// The record body of `record` (its event, seq and recorded time).
pub fn encode_record(record: &Record) -> Result<Vec<u8>, RecordError> {
    encode(&record.event, record.seq, record.recorded_at)
}

/// Reads `seq` and `recorded_at` from the trailer without decoding the rest.
pub fn read_trailer(body: &[u8]) -> Result<(u64, Timestamp), RecordError> {
    let Some(at) = body.len().checked_sub(RECORD_TRAILER_LEN) else {
        return Err(RecordError::Truncated {
            field: "trailer",
            offset: 0,
            needed: RECORD_TRAILER_LEN,
            available: body.len(),
        });
    };
    let mut r = Reader {
        bytes: body,
        pos: at,
    };
    let seq = r.u64("seq")?;
    let recorded_at = Timestamp::from_nanos(r.i64("recorded_at")?);
    Ok((seq, recorded_at))
}

/// Decodes a record body, checking its whole structure.
pub fn decode(body: &[u8]) -> Result<RecordView<'_>, RecordError> {
    let p = parse::<&str>(body)?;
    Ok(RecordView {
        flags: p.flags,
        outcome: p.outcome,
        time: p.time,
        actor_type: p.actor_type,
        actor_id: p.actor_id,
        on_behalf_of: p.on_behalf_of,
        session_id: p.session_id,
        action: p.action,
        resource_type: p.resource_type,
        resource_id: p.resource_id,
        tenant: p.tenant,
        source_ip: p.source_ip,
        user_agent: p.user_agent,
        request_id: p.request_id,
        reason: p.reason,
        metadata: p.metadata,
        seq: p.seq,
        recorded_at: p.recorded_at,
    })
}

/// What [`check`] returns of a record whose structure holds: the fields a
/// verification of the log reads, and those a segment's index is built
/// from. Text is given as its bytes, checked to be UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The outcome.
    pub outcome: Outcome,
    /// Client-supplied event time, if any.
    pub time: Option<Timestamp>,
    /// `actor.type`.
    pub actor_type: &'a [u8],
    /// `actor.id`.
    pub actor_id: &'a [u8],
    /// `action`.
    pub action: &'a [u8],
    /// `resource.type`.
    pub resource_type: &'a [u8],
    /// `resource.id`, if any.
    pub resource_id: Option<&'a [u8]>,
    /// `tenant`, if any.
    pub tenant: Option<&'a [u8]>,
    /// The source address, if any.
    pub source_ip: Option<IpAddr>,
    /// `request_id`, if any.
    pub request_id: Option<&'a [u8]>,
    /// The record's sequence number.
    pub seq: u64,
    /// When the store recorded it.
    pub recorded_at: Timestamp,
}

impl<'a> From<&RecordView<'a>> for Checked<'a> {
    /// The same fields, from a record already decoded.
    fn from(v: &RecordView<'a>) -> Checked<'a> {
        Checked {
            outcome: v.outcome,
            time: v.time,
            actor_type: v.actor_type.as_bytes(),
            actor_id: v.actor_id.as_bytes(),
            action: v.action.as_bytes(),
            resource_type: v.resource_type.as_bytes(),
            resource_id: v.resource_id.map(str::as_bytes),
            tenant: v.tenant.map(str::as_bytes),
            source_ip: v.source_ip,
            request_id: v.request_id.map(str::as_bytes),
            seq: v.seq,
            recorded_at: v.recorded_at,
        }
    }
}

impl Checked<'_> {
    /// The event time: the client's, or the recorded time.
    pub fn event_time(&self) -> Timestamp {
        self.time.unwrap_or(self.recorded_at)
    }
}

/// Checks a record body exactly as [`decode`] does (it fails on the same
/// bodies, with the same error) without making a [`RecordView`]: text
/// fields are checked as UTF-8 but not turned into `&str`, which lets
/// ASCII text (nearly all of it) be checked 8 bytes at a time.
pub fn check(body: &[u8]) -> Result<Checked<'_>, RecordError> {
    let p = parse::<CheckedText<'_>>(body)?;
    Ok(Checked {
        outcome: p.outcome,
        time: p.time,
        actor_type: p.actor_type.0,
        actor_id: p.actor_id.0,
        action: p.action.0,
        resource_type: p.resource_type.0,
        resource_id: p.resource_id.map(|t| t.0),
        tenant: p.tenant.map(|t| t.0),
        source_ip: p.source_ip,
        request_id: p.request_id.map(|t| t.0),
        seq: p.seq,
        recorded_at: p.recorded_at,
    })
}

/// How a text field's bytes are kept once [`parse`] has checked them.
trait TextField<'a>: Sized {
    /// `bytes` as this kind of text; `None` if they are not UTF-8.
    fn text(bytes: &'a [u8]) -> Option<Self>;
    /// Text already checked (the metadata, which its JSON check reads as
    /// `&str`).
    fn from_str(text: &'a str) -> Self;
}

impl<'a> TextField<'a> for &'a str {
    fn text(bytes: &'a [u8]) -> Option<Self> {
        std::str::from_utf8(bytes).ok()
    }

    fn from_str(text: &'a str) -> Self {
        text
    }
}

/// Bytes checked to be UTF-8 and kept as bytes.
#[derive(Clone, Copy)]
struct CheckedText<'a>(&'a [u8]);

impl<'a> TextField<'a> for CheckedText<'a> {
    fn text(bytes: &'a [u8]) -> Option<Self> {
        (is_ascii(bytes) || std::str::from_utf8(bytes).is_ok()).then_some(CheckedText(bytes))
    }

    fn from_str(text: &'a str) -> Self {
        CheckedText(text.as_bytes())
    }
}

/// Whether every byte of `bytes` is below 0x80, 8 bytes at a time (the
/// last 8, or 4, read overlapping the ones before): about four times as
/// fast as `from_utf8` on the short fields of a record, whose start is
/// rarely aligned.
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = bytes.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes.get(at..at + 8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(w)
    };
    if n >= 8 {
        let mut any = word(n - 8);
        let mut at = 0;
        while at + 8 <= n {
            any |= word(at);
            at += 8;
        }
        any & HIGH == 0
    } else if n >= 4 {
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(bytes.get(at..at + 4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(w)
        };
        (half(0) | half(n - 4)) & 0x8080_8080 == 0
    } else {
        bytes.iter().all(|&b| b < 0x80)
    }
}

/// A record's fields as [`parse`] reads them, text kept as `T`.
struct Parsed<T> {
    flags: u16,
    outcome: Outcome,
    time: Option<Timestamp>,
    actor_type: T,
    actor_id: T,
    on_behalf_of: Option<(T, T)>,
    session_id: Option<T>,
    action: T,
    resource_type: T,
    resource_id: Option<T>,
    tenant: Option<T>,
    source_ip: Option<IpAddr>,
    user_agent: Option<T>,
    request_id: Option<T>,
    reason: Option<T>,
    metadata: Option<T>,
    seq: u64,
    recorded_at: Timestamp,
}

/// Reads a record body, checking its whole structure; what [`decode`] and
/// [`check`] share.
#[inline(always)]
fn parse<'a, T: TextField<'a>>(body: &'a [u8]) -> Result<Parsed<T>, RecordError> {
    let (seq, recorded_at) = read_trailer(body)?;
    let fields_end = body.len() - RECORD_TRAILER_LEN;
    let fields = body.get(..fields_end).unwrap_or_default();
    let mut r = Reader {
        bytes: fields,
        pos: 0,
    };
    let version = r.u8("version")?;
    if version != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion { found: version });
    }
    let code = r.u8("outcome")?;
    let outcome = Outcome::from_code(code).ok_or(RecordError::BadOutcome { code })?;
    let flags = r.u16("flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RecordError::UnknownFlags { flags });
    }
    let has = |flag: u16| flags & flag != 0;
    let time = if has(FLAG_TIME) {
        Some(Timestamp::from_nanos(r.i64("time")?))
    } else {
        None
    };
    let actor_type = r.str("actor.type")?;
    let actor_id = r.str("actor.id")?;
    let on_behalf_of = if has(FLAG_ON_BEHALF_OF) {
        Some((
            r.str("actor.on_behalf_of.type")?,
            r.str("actor.on_behalf_of.id")?,
        ))
    } else {
        None
    };
    let session_id = r.opt_str(has(FLAG_SESSION_ID), "actor.session_id")?;
    let action = r.str("action")?;
    let resource_type = r.str("resource.type")?;
    let resource_id = r.opt_str(has(FLAG_RESOURCE_ID), "resource.id")?;
    let tenant = r.opt_str(has(FLAG_TENANT), "tenant")?;
    let source_ip = if has(FLAG_SOURCE_IP) {
        let at = r.pos;
        match r.u8("source.ip")? {
            4 => Some(IpAddr::V4(Ipv4Addr::from(r.array::<4>("source.ip")?))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>("source.ip")?))),
            family => return Err(RecordError::BadIpFamily { family, offset: at }),
        }
    } else {
        None
    };
    let user_agent = r.opt_str(has(FLAG_USER_AGENT), "source.user_agent")?;
    let request_id = r.opt_str(has(FLAG_REQUEST_ID), "request_id")?;
    let reason = r.opt_str(has(FLAG_REASON), "reason")?;
    let metadata = if has(FLAG_METADATA) {
        let len = r.u32("metadata length")? as usize;
        let at = r.pos;
        let text = r.utf8(len, "metadata")?;
        check_json_object(text)
            .map_err(|reason| RecordError::BadMetadata { offset: at, reason })?;
        Some(T::from_str(text))
    } else {
        None
    };
    if r.pos != fields_end {
        return Err(RecordError::TrailingBytes {
            offset: r.pos,
            extra: fields_end - r.pos,
        });
    }
    Ok(Parsed {
        flags,
        outcome,
        time,
        actor_type,
        actor_id,
        on_behalf_of,
        session_id,
        action,
        resource_type,
        resource_id,
        tenant,
        source_ip,
        user_agent,
        request_id,
        reason,
        metadata,
        seq,
        recorded_at,
    })
}

/// Decodes a record body into an owned [`Record`].
pub fn decode_record(body: &[u8]) -> Result<Record, RecordError> {
    decode(body)?.to_record()
}

/// Checks that `text` is a JSON object that [`RecordView::to_record`] can
/// read: every number fits an `f64` (`1e400` does not) and every string
/// escape makes Unicode text (a lone surrogate such as `"\ud800"` does
/// not). A plain syntax check (serde_json's `RawValue`) accepts both, which
/// let a record pass decoding and verification and then fail every read.
/// The values are visited and dropped: nothing is allocated but the
/// scratch buffer of escaped strings.
fn check_json_object(text: &str) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_map(&mut de, JsonCheck).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// A JSON value that is parsed in full and not kept (see
/// [`check_json_object`]).
struct JsonCheck;

impl<'de> serde::Deserialize<'de> for JsonCheck {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonCheck)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonCheck {
    type Value = JsonCheck;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonCheck, E> {
        Ok(JsonCheck)
    }

    fn visit_i64<E>(self, _: i64) -> Result<JsonCheck, E> {
        Ok(JsonCheck)
    }

    fn visit_u64<E>(self, _: u64) -> Result<JsonCheck, E> {
        Ok(JsonCheck)
    }

    fn visit_f64<E>(self, _: f64) -> Result<JsonCheck, E> {
        Ok(JsonCheck)
    }

    fn visit_str<E>(self, _: &str) -> Result<JsonCheck, E> {
        Ok(JsonCheck)
    }

    fn visit_unit<E>(self) -> Result<JsonCheck, E> {
        Ok(JsonCheck)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonCheck, A::Error> {
        while seq.next_element::<JsonCheck>()?.is_some() {}
        Ok(JsonCheck)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonCheck, A::Error> {
        while map.next_entry::<JsonCheck, JsonCheck>()?.is_some() {}
        Ok(JsonCheck)
    }
}

fn put_str(out: &mut Vec<u8>, field: &'static str, value: &str) -> Result<(), RecordError> {
    let len = u16::try_from(value.len()).map_err(|_| RecordError::TooLong {
        field,
        len: value.len(),
        max: u16::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(RecordError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.bytes.len().saturating_sub(self.pos),
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    fn utf8(&mut self, len: usize, field: &'static str) -> Result<&'a str, RecordError> {
        let at = self.pos;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| RecordError::BadUtf8 { field, offset: at })
    }

    fn str<T: TextField<'a>>(&mut self, field: &'static str) -> Result<T, RecordError> {
        let len = self.u16(field)? as usize;
        let at = self.pos;
        let bytes = self.take(len, field)?;
        T::text(bytes).ok_or(RecordError::BadUtf8 { field, offset: at })
    }

    fn opt_str<T: TextField<'a>>(
        &mut self,
        present: bool,
        field: &'static str,
    ) -> Result<Option<T>, RecordError> {
        if present {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full_event() -> Event {
        let metadata = match serde_json::json!({"before": {"plan": "free"}, "after": {"plan": "pro"}, "n": 1.5})
        {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        Event::new(
            Actor::new("user", "alice"),
            "customer.delete",
            Resource::new("customer", "4471"),
            Outcome::Denied,
        )
        .with_time(Timestamp::from_nanos(1_700_000_000_000_000_123))
        .with_tenant("acme")
        .with_source_ip("2001:db8::1".parse().unwrap())
        .with_user_agent("curl/8.5")
        .with_request_id("req-1")
        .with_reason("ticket SEC-12")
        .with_session_id("s-1")
        .on_behalf_of(Principal::new("user", "support-7"))
        .with_metadata(metadata)
    }

    /// A record whose metadata is `replacement` (same length as the
    /// metadata text of an event with metadata `{"a": value}`).
    fn with_metadata_text(value: serde_json::Value, replacement: &str) -> Vec<u8> {
        let mut m = Metadata::new();
        m.insert("a".into(), value);
        let event = Event::new(
            Actor::new("user", "alice"),
            "doc.read",
            Resource::kind("doc"),
            Outcome::Success,
        )
        .with_metadata(m);
        let mut body = encode(&event, 0, Timestamp::from_nanos(1)).unwrap();
        let text = serde_json::to_string(event.metadata.as_ref().unwrap()).unwrap();
        assert_eq!(text.len(), replacement.len(), "{text}");
        let at = body
            .windows(text.len())
            .position(|w| w == text.as_bytes())
            .unwrap();
        body[at..at + text.len()].copy_from_slice(replacement.as_bytes());
        body
    }

    /// Repeated metadata keys are refused when an event is written, never
    /// when a record is read: a record stored before that rule stays
    /// readable.
    #[test]
    fn a_stored_record_with_a_repeated_metadata_key_still_reads() {
        let body = with_metadata_text(serde_json::json!("abcdefgh"), r#"{"a":10,"a":200}"#);
        let record = decode(&body).unwrap().to_record().unwrap();
        assert_eq!(record.event.metadata.unwrap()["a"], 200);
    }

    /// Found while writing the `frame_record` fuzz target's round-trip
    /// property: the metadata check only checked JSON syntax, so a record
    /// whose metadata held a number no `f64` holds, or a lone surrogate
    /// escape, decoded (and verified) but could never be read.
    #[test]
    fn metadata_no_reader_can_represent_is_refused_by_decode() {
        for (value, text) in [
            (serde_json::json!(123456), r#"{"a":1e4000}"#),
            (serde_json::json!(-123456), r#"{"a":-1e4000}"#),
            (serde_json::json!("abcdef"), r#"{"a":"\ud800"}"#),
        ] {
            let body = with_metadata_text(value, text);
            assert!(
                matches!(decode(&body), Err(RecordError::BadMetadata { .. })),
                "{text} was accepted"
            );
        }
        // What every reader represents still decodes, in whatever spacing.
        for (value, text) in [
            (serde_json::json!(123456), r#"{"a":1.5e30}"#),
            (serde_json::json!("abcdefg"), r#"{"a":"\u00e9x"}"#),
            (serde_json::json!("abcdef"), r#"{ "a" : [ ] } "#),
        ] {
            let body = with_metadata_text(value, text);
            let view = decode(&body).unwrap_or_else(|e| panic!("{text}: {e}"));
            view.to_record().unwrap();
        }
    }

    /// An event whose every text field is distinct, some of them with
    /// multi-byte characters, one longer than 127 bytes (its length prefix
    /// is not ASCII), and an IPv4 address whose bytes are not ASCII.
    fn event_of_texts() -> (Event, Vec<(&'static str, String)>) {
        let long_agent = format!("Mozilla/5.0 ({}) é", "x".repeat(140));
        let mut metadata = Metadata::new();
        metadata.insert("ключ".into(), serde_json::json!("värde"));
        let event = Event::new(
            Actor::new("üser", "ålice"),
            "cüstomer.delete",
            Resource::new("cüstomer", "44–71"),
            Outcome::Denied,
        )
        .with_tenant("acmé")
        .with_source_ip("192.168.200.250".parse().unwrap())
        .with_user_agent(&long_agent)
        .with_request_id("req-日本")
        .with_reason("ticket SEC-12 ✓")
        .with_session_id("s-ß")
        .on_behalf_of(Principal::new("süpport", "agent-7"))
        .with_metadata(metadata);
        let metadata_text = serde_json::to_string(event.metadata.as_ref().unwrap()).unwrap();
        let fields = vec![
            ("actor.type", "üser".to_owned()),
            ("actor.id", "ålice".to_owned()),
            ("actor.on_behalf_of.type", "süpport".to_owned()),
            ("actor.on_behalf_of.id", "agent-7".to_owned()),
            ("actor.session_id", "s-ß".to_owned()),
            ("action", "cüstomer.delete".to_owned()),
            ("resource.type", "cüstomer".to_owned()),
            ("resource.id", "44–71".to_owned()),
            ("tenant", "acmé".to_owned()),
            ("source.user_agent", long_agent),
            ("request_id", "req-日本".to_owned()),
            ("reason", "ticket SEC-12 ✓".to_owned()),
            ("metadata", metadata_text),
        ];
        (event, fields)
    }

    /// Where `text` is in `body` (after `from`).
    fn find(body: &[u8], text: &str, from: usize) -> usize {
        from + body[from..]
            .windows(text.len())
            .position(|w| w == text.as_bytes())
            .unwrap_or_else(|| panic!("{text} not in the record"))
    }

    /// Every text field reads back exactly, multi-byte characters and
    /// non-ASCII bytes between fields included, and a field that is not
    /// UTF-8 is named with its offset, whichever it is; of two, the first.
    #[test]
    fn a_text_field_that_is_not_utf8_is_named_whichever_it_is() {
        let (event, fields) = event_of_texts();
        let body = encode(&event, 7, Timestamp::from_nanos(9)).unwrap();
        assert_eq!(decode(&body).unwrap().to_record().unwrap().event, event);
        let mut from = 0;
        let mut offsets = Vec::new();
        for (field, text) in &fields {
            let at = find(&body, text, from);
            from = at + text.len();
            offsets.push(at);
            // Its last byte made 0xFF, or a lone continuation byte in place
            // of an ASCII one: not text.
            let last = *text.as_bytes().last().unwrap();
            for bad in [0xFF, 0x80]
                .into_iter()
                .filter(|&b| b == 0xFF || last < 0x80)
            {
                let mut damaged = body.clone();
                damaged[at + text.len() - 1] = bad;
                assert_eq!(
                    decode(&damaged).unwrap_err(),
                    RecordError::BadUtf8 { field, offset: at },
                    "{field} with byte {bad:#x}"
                );
            }
            // The first byte of a multi-byte character cut off.
            let mut damaged = body.clone();
            damaged[at] = 0xC3;
            if text.as_bytes()[1] < 0x80 {
                assert_eq!(
                    decode(&damaged).unwrap_err(),
                    RecordError::BadUtf8 { field, offset: at },
                    "{field} starting with a cut character"
                );
            }
        }
        // Two fields damaged: the first is named.
        for (i, j) in [(0, 1), (0, 12), (8, 9), (9, 12), (2, 7)] {
            let mut damaged = body.clone();
            damaged[offsets[i]] = 0xFF;
            damaged[offsets[j]] = 0xFF;
            assert_eq!(
                decode(&damaged).unwrap_err(),
                RecordError::BadUtf8 {
                    field: fields[i].0,
                    offset: offsets[i]
                }
            );
        }
        // A field that is not text before a damaged layout (an IP family
        // that does not exist) is what is reported, as field by field.
        let family_at = offsets[8] + fields[8].1.len();
        assert_eq!(body[family_at], 4);
        let mut damaged = body.clone();
        damaged[family_at] = 5;
        assert_eq!(
            decode(&damaged).unwrap_err(),
            RecordError::BadIpFamily {
                family: 5,
                offset: family_at
            }
        );
        damaged[offsets[3]] = 0xFF;
        assert_eq!(
            decode(&damaged).unwrap_err(),
            RecordError::BadUtf8 {
                field: "actor.on_behalf_of.id",
                offset: offsets[3]
            }
        );
    }

    #[test]
    fn a_full_record_round_trips() {
        let event = full_event();
        let body = encode(&event, 42, Timestamp::from_nanos(99)).unwrap();
        let view = decode(&body).unwrap();
        assert_eq!(view.seq, 42);
        assert_eq!(view.recorded_at, Timestamp::from_nanos(99));
        assert_eq!(
            view.event_time(),
            Timestamp::from_nanos(1_700_000_000_000_000_123)
        );
        let record = view.to_record().unwrap();
        assert_eq!(record.event, event);
        assert_eq!(encode_record(&record).unwrap(), body);
    }

    #[test]
    fn a_minimal_record_round_trips_and_defaults_its_time() {
        let event = Event::new(
            Actor::new("system", "cron"),
            "job.run",
            Resource::kind("job"),
            Outcome::Success,
        );
        let body = encode(&event, 0, Timestamp::from_nanos(5)).unwrap();
        // 4 fixed + (2+6) + (2+4) + (2+7) + (2+3) + 16 trailer
        assert_eq!(body.len(), 4 + 8 + 6 + 9 + 5 + 16);
        let view = decode(&body).unwrap();
        assert_eq!(view.time, None);
        assert_eq!(view.event_time(), Timestamp::from_nanos(5));
        assert_eq!(view.to_record().unwrap().event, event);
    }

    #[test]
    fn the_trailer_holds_seq_and_recorded_at() {
        let body = encode(
            &full_event(),
            0x0102_0304_0506_0708,
            Timestamp::from_nanos(-2),
        )
        .unwrap();
        let n = body.len();
        assert_eq!(&body[n - 16..n - 8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&body[n - 8..], &(-2i64).to_le_bytes());
        assert_eq!(
            read_trailer(&body).unwrap(),
            (0x0102_0304_0506_0708, Timestamp::from_nanos(-2))
        );
    }

    #[test]
    fn structural_damage_is_reported_with_its_location() {
        let body = encode(&full_event(), 1, Timestamp::from_nanos(1)).unwrap();
        let mut bad = body.clone();
        bad[0] = 9;
        assert_eq!(
            decode(&bad).unwrap_err(),
            RecordError::UnsupportedVersion { found: 9 }
        );
        let mut bad = body.clone();
        bad[1] = 0;
        assert_eq!(
            decode(&bad).unwrap_err(),
            RecordError::BadOutcome { code: 0 }
        );
        let mut bad = body.clone();
        bad[3] |= 0x80;
        assert!(matches!(
            decode(&bad).unwrap_err(),
            RecordError::UnknownFlags { .. }
        ));
        // Clearing the metadata flag leaves the metadata bytes unexplained.
        let mut bad = body.clone();
        bad[3] &= !((FLAG_METADATA >> 8) as u8);
        assert!(matches!(
            decode(&bad).unwrap_err(),
            RecordError::TrailingBytes { .. }
        ));
        assert!(matches!(
            decode(&body[..10]).unwrap_err(),
            RecordError::Truncated { .. }
        ));
    }

    #[test]
    fn overlong_strings_cannot_be_encoded() {
        let mut event = full_event();
        event.reason = Some("x".repeat(70_000));
        assert!(matches!(
            encode(&event, 0, Timestamp::UNIX_EPOCH),
            Err(RecordError::TooLong {
                field: "reason",
                ..
            })
        ));
    }

    #[test]
    fn the_word_at_a_time_ascii_check_agrees_with_std() {
        for len in 0..=40usize {
            let ascii: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(is_ascii(&ascii), "len {len}");
            for at in 0..len {
                for high in [0x80u8, 0xC3, 0xFF] {
                    let mut bytes = ascii.clone();
                    bytes[at] = high;
                    assert!(!is_ascii(&bytes), "len {len}, {high:#x} at {at}");
                }
            }
        }
    }

    /// What [`check`] returns, from either function, for comparing them.
    fn checked_of(body: &[u8]) -> Result<Checked<'_>, RecordError> {
        decode(body).map(|v| Checked::from(&v))
    }

    /// Records with ASCII and non-ASCII text, to be damaged.
    fn check_samples() -> Vec<Vec<u8>> {
        let unicode = Event::new(
            Actor::new("user", "zoë"),
            "dokument.lesen",
            Resource::new("dokument", "straße-7"),
            Outcome::Success,
        )
        .with_user_agent("агент/1.0 🚀")
        .with_reason("ünïcödé reason, longer than eight bytes");
        vec![
            encode(&full_event(), 3, Timestamp::from_nanos(7)).unwrap(),
            encode(&unicode, 9, Timestamp::from_nanos(11)).unwrap(),
        ]
    }

    #[test]
    fn check_reads_what_decode_reads() {
        for body in check_samples() {
            assert_eq!(check(&body).unwrap(), checked_of(&body).unwrap());
        }
    }

    /// Text for the JSON tests: empty, plain, escapes, control characters,
    /// non-ASCII, a lone-surrogate-free astral character.
    fn json_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9:._-]{1,20}",
            Just("quote \" backslash \\ slash / tab \t nl \n cr \r".to_owned()),
            Just("\u{0}\u{1}\u{1f}\u{7f}\u{80}\u{2028}".to_owned()),
            Just("zoë ключ 🚀 straße".to_owned()),
            any::<String>(),
        ]
    }

    fn json_metadata() -> impl Strategy<Value = Option<Metadata>> {
        let object = |v: serde_json::Value| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        };
        prop_oneof![
            Just(None),
            Just(object(serde_json::json!({}))),
            Just(object(serde_json::json!({
                "z": 1, "a": [1.5, -0.0, 1e30, 12345678901234567890u64, -9007199254740993i64],
                "nested": {"b": null, "c": true, "é": "\u{1}\"\\"}, "f": 0.1
            }))),
            (
                json_text(),
                json_text(),
                any::<f64>().prop_filter("finite", |f| f.is_finite())
            )
                .prop_map(move |(k, v, f)| object(serde_json::json!({ k: v, "n": f, "i": -3 }))),
        ]
    }

    prop_compose! {
        fn json_event()(
            (actor_type, actor_id, action, resource_type) in (json_text(), json_text(), json_text(), json_text()),
            (resource_id, tenant, request_id, reason, session) in (
                proptest::option::of(json_text()),
                proptest::option::of(json_text()),
                proptest::option::of(json_text()),
                proptest::option::of(json_text()),
                proptest::option::of(json_text()),
            ),
            on_behalf_of in proptest::option::of((json_text(), json_text())),
            user_agent in proptest::option::of(json_text()),
            ip in proptest::option::of(prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]),
            time in proptest::option::of(any::<i64>()),
            outcome in 0usize..3,
            metadata in json_metadata(),
        ) -> Event {
            let mut event = Event::new(
                Actor {
                    kind: actor_type,
                    id: actor_id,
                    on_behalf_of: on_behalf_of.map(|(k, id)| Principal::new(k, id)),
                    session_id: session,
                },
                action,
                Resource { kind: resource_type, id: resource_id },
                Outcome::ALL[outcome],
            );
            event.time = time.map(Timestamp::from_nanos);
            event.tenant = tenant;
            event.request_id = request_id;
            event.reason = reason;
            if ip.is_some() || user_agent.is_some() {
                event.source = Some(Source { ip, user_agent });
            }
            event.metadata = metadata;
            event
        }
    }

    #[test]
    fn write_json_writes_the_serde_json_of_the_record_for_the_fixed_events() {
        let (texts, _) = event_of_texts();
        for event in [full_event(), texts] {
            let body =
                encode(&event, 42, Timestamp::from_nanos(1_700_000_000_123_456_789)).unwrap();
            let view = decode(&body).unwrap();
            let mut out = Vec::new();
            view.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&view.to_record().unwrap()).unwrap()
            );
        }
    }

    /// Stored metadata text that is not compact keeps its own spacing: the
    /// output is still one JSON value, with the metadata's meaning.
    #[test]
    fn write_json_keeps_stored_metadata_text_as_stored() {
        let body = with_metadata_text(serde_json::json!("abcdef"), r#"{ "a" : [ ] } "#);
        let view = decode(&body).unwrap();
        let mut out = Vec::new();
        view.write_json(&mut out);
        let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let owned = serde_json::to_value(view.to_record().unwrap()).unwrap();
        assert_eq!(written, owned);
        assert!(out.ends_with(br#","metadata":{ "a" : [ ] } }"#));
    }

    proptest! {
        #[test]
        fn write_json_writes_the_serde_json_of_the_record(
            event in json_event(),
            seq in any::<u64>(),
            recorded_at in any::<i64>(),
        ) {
            let Ok(body) = encode(&event, seq, Timestamp::from_nanos(recorded_at)) else {
                // Text the encoding cannot hold (a field too long): nothing
                // to write.
                return Ok(());
            };
            let view = decode(&body).unwrap();
            let mut out = Vec::new();
            view.write_json(&mut out);
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&view.to_record().unwrap()).unwrap()
            );
            let mut out = Vec::new();
            view.write_json_with_event_time(&mut out);
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&view.to_record().unwrap().with_event_time()).unwrap()
            );
        }

        #[test]
        fn check_fails_exactly_where_decode_fails(
            sample in 0usize..2,
            changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut body = check_samples().swap_remove(sample);
            for (pos, val) in changes {
                let pos = pos % body.len();
                body[pos] = val;
            }
            prop_assert_eq!(check(&body), checked_of(&body));
        }

        #[test]
        fn check_agrees_with_decode_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(check(&bytes), checked_of(&bytes));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_single_byte_change_is_either_detected_or_changes_the_record(
            pos in 0usize..200, val in any::<u8>()
        ) {
            let body = encode(&full_event(), 3, Timestamp::from_nanos(7)).unwrap();
            let mut bad = body.clone();
            let pos = pos % bad.len();
            prop_assume!(bad[pos] != val);
            bad[pos] = val;
            if let Ok(record) = decode(&bad).and_then(|view| view.to_record()) {
                // Decoding accepted it: the change must be visible, never silent.
                let original = decode_record(&body).unwrap();
                prop_assert_ne!(record, original);
            }
        }
    }
}
