//! The audit event: who did what, to which resource, when, from where, and
//! with what outcome.
//!
//! [`Event`] is what a client submits; [`Record`] is an event as the store
//! keeps it, with the sequence number and the time the store recorded it.
//! Their JSON shape is the public wire format of sealog (the server and the
//! command line both speak it), so field names here are part of the API:
//!
//! ```json
//! {
//!   "time": "2026-11-23T17:25:00.123Z",
//!   "actor": {"type": "user", "id": "alice",
//!             "on_behalf_of": {"type": "user", "id": "support-7"},
//!             "session_id": "s-1"},
//!   "action": "customer.delete",
//!   "resource": {"type": "customer", "id": "4471"},
//!   "outcome": "success",
//!   "tenant": "acme",
//!   "source": {"ip": "203.0.113.9", "user_agent": "curl/8.5"},
//!   "request_id": "req-1",
//!   "reason": "erasure request, ticket SEC-12",
//!   "metadata": {"plan": "pro"}
//! }
//! ```
//!
//! Building an event does not validate it; [`crate::validate`] does, and the
//! store refuses an event that fails validation.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Free-form structured metadata: a JSON object.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A point in time: nanoseconds since the Unix epoch, UTC.
///
/// In JSON a timestamp is an RFC 3339 string (any offset is accepted on
/// input and converted to UTC; output is always UTC with a `Z`). The
/// representable range is roughly the years 1678 to 2262.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// The earliest representable instant.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// A timestamp from nanoseconds since the Unix epoch.
    pub const fn from_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// The current time from the system clock.
    ///
    /// A clock before 1970 reads as the epoch; a clock after 2262 as
    /// [`Timestamp::MAX`].
    pub fn now() -> Timestamp {
        let nanos = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        Timestamp(nanos)
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-23T17:25:00.123Z` or
    /// `2026-11-23T18:25:00+01:00`.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| TimestampError {
            input: truncate_for_display(text),
            reason: e.to_string(),
        })?;
        let nanos = i64::try_from(parsed.unix_timestamp_nanos()).map_err(|_| TimestampError {
            input: truncate_for_display(text),
            reason: "outside the representable range (years 1678 to 2262)".into(),
        })?;
        Ok(Timestamp(nanos))
    }

    /// Parses a calendar date alone, `YYYY-MM-DD` (ISO 8601), as the start
    /// of that day in UTC: `2026-11-27` is `2026-11-27T00:00:00Z`.
    pub fn parse_date(text: &str) -> Result<Timestamp, TimestampError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, &format).map_err(|e| TimestampError {
            input: truncate_for_display(text),
            reason: format!("not a date YYYY-MM-DD: {e}"),
        })?;
        let nanos = date.midnight().assume_utc().unix_timestamp_nanos();
        let nanos = i64::try_from(nanos).map_err(|_| TimestampError {
            input: truncate_for_display(text),
            reason: "outside the representable range (years 1678 to 2262)".into(),
        })?;
        Ok(Timestamp(nanos))
    }

    /// Formats as RFC 3339 in UTC, with as many fractional digits as needed.
    pub fn to_rfc3339(self) -> String {
        // Every i64 nanosecond count is within the range `time` supports, so
        // neither step can fail; the fallback only guards against that
        // assumption changing in a future version of the dependency.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("@{}ns", self.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// A string that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an RFC 3339 timestamp such as 2026-11-23T17:25:00Z: {reason}")]
pub struct TimestampError {
    input: String,
    reason: String,
}

fn truncate_for_display(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

/// The result of the action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action happened.
    Success,
    /// The action was attempted and failed (an error, not a refusal).
    Failure,
    /// The action was refused by an authorization decision.
    Denied,
}

impl Outcome {
    /// Every outcome, in code order.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];

    /// The lowercase name used in JSON and queries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    /// The one-byte code used in the record encoding.
    pub const fn code(self) -> u8 {
        match self {
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::Denied => 3,
        }
    }

    /// The outcome for a record-encoding code.
    pub const fn from_code(code: u8) -> Option<Outcome> {
        match code {
            1 => Some(Outcome::Success),
            2 => Some(Outcome::Failure),
            3 => Some(Outcome::Denied),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            "denied" => Ok(Outcome::Denied),
            other => Err(format!(
                "unknown outcome `{}`: expected success, failure or denied",
                truncate_for_display(other)
            )),
        }
    }
}

/// A principal: a typed identity such as `user:alice` or `service:billing`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// The kind of principal: `user`, `service`, `api_key`, `system`, or any
    /// other lowercase word.
    #[serde(rename = "type")]
    pub kind: String,
    /// The principal's identifier.
    pub id: String,
}

impl Principal {
    /// A principal of the given kind and id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Principal {
        Principal {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

/// Who performed the action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The kind of actor: `user`, `service`, `api_key`, `system`, or any other
    /// lowercase word.
    #[serde(rename = "type")]
    pub kind: String,
    /// The actor's identifier.
    pub id: String,
    /// The real principal when the actor acts on behalf of someone else
    /// (impersonation, support access, delegated tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<Principal>,
    /// The session the action happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl Actor {
    /// An actor of the given kind and id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Actor {
        Actor {
            kind: kind.into(),
            id: id.into(),
            on_behalf_of: None,
            session_id: None,
        }
    }
}

/// What the action was performed on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The kind of resource, such as `customer` or `s3.bucket`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's identifier, if the action concerned one resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Resource {
    /// A resource of the given kind and id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Resource {
        Resource {
            kind: kind.into(),
            id: Some(id.into()),
        }
    }

    /// A resource kind without a particular instance (e.g. a listing).
    pub fn kind(kind: impl Into<String>) -> Resource {
        Resource {
            kind: kind.into(),
            id: None,
        }
    }
}

/// Where the action came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The client's IP address (IPv4 or IPv6).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_ip"
    )]
    pub ip: Option<IpAddr>,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

fn deserialize_ip<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<IpAddr>, D::Error> {
    let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
    match text {
        None => Ok(None),
        Some(text) => text.parse::<IpAddr>().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{}` is not an IPv4 or IPv6 address",
                truncate_for_display(&text)
            ))
        }),
    }
}

impl Source {
    /// True when neither field is set.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.user_agent.is_none()
    }
}

/// One audit event, as submitted by a client.
///
/// Construct one with [`Event::new`] and the `with_*` methods, or
/// deserialize it from JSON with [`Event::from_json`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When the action happened, by the client's clock. Defaults to the time
    /// the store records the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// Who performed the action.
    pub actor: Actor,
    /// What was done: a stable, lowercase, dotted machine name such as
    /// `customer.delete` or `auth.login_failed`.
    pub action: String,
    /// What it was done to.
    pub resource: Resource,
    /// How it ended.
    pub outcome: Outcome,
    /// The tenant (customer, organisation, workspace) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where the action came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The request that carried the action, for correlation with other logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Why the action was taken (a justification, a ticket reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Small structured details, e.g. before/after values. Never secrets.
    ///
    /// From JSON, an object that repeats a key at any depth is refused
    /// (naming the key's path): which of two values would count is not
    /// something an audit record may leave to a parser.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_metadata"
    )]
    pub metadata: Option<Metadata>,
}

impl Event {
    /// An event with the four required parts; everything else unset.
    pub fn new(
        actor: Actor,
        action: impl Into<String>,
        resource: Resource,
        outcome: Outcome,
    ) -> Event {
        Event {
            time: None,
            actor,
            action: action.into(),
            resource,
            outcome,
            tenant: None,
            source: None,
            request_id: None,
            reason: None,
            metadata: None,
        }
    }

    /// Sets the event time.
    pub fn with_time(mut self, time: Timestamp) -> Event {
        self.time = Some(time);
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Event {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the source IP address.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Event {
        self.source.get_or_insert_with(Source::default).ip = Some(ip);
        self
    }

    /// Sets the user agent.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Event {
        self.source.get_or_insert_with(Source::default).user_agent = Some(user_agent.into());
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Event {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the metadata object.
    pub fn with_metadata(mut self, metadata: Metadata) -> Event {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the principal the actor acts on behalf of.
    pub fn on_behalf_of(mut self, principal: Principal) -> Event {
        self.actor.on_behalf_of = Some(principal);
        self
    }

    /// Sets the actor's session id.
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Event {
        self.actor.session_id = Some(session_id.into());
        self
    }

    /// Parses one event from JSON, reporting a structural problem with the
    /// path of the offending field (`actor.id`, `source.ip`, ...).
    ///
    /// This checks shape and types only; call [`crate::validate::validate`]
    /// (the store does) for the content rules.
    pub fn from_json(json: &[u8]) -> Result<Event, crate::validate::ValidationError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let event: Event = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
        de.end()
            .map_err(|e| crate::validate::ValidationError::json("", e.to_string()))?;
        Ok(event)
    }

    /// Parses one event from an already-parsed JSON value.
    ///
    /// A [`serde_json::Value`] has already merged repeated keys (the last
    /// wins), so this cannot refuse them: parse text with
    /// [`Event::from_json`] instead wherever the text is at hand.
    pub fn from_json_value(
        value: serde_json::Value,
    ) -> Result<Event, crate::validate::ValidationError> {
        serde_path_to_error::deserialize(value).map_err(json_error)
    }

    /// The time the event happened, defaulting to the given recorded time.
    pub fn effective_time(&self, recorded_at: Timestamp) -> Timestamp {
        self.time.unwrap_or(recorded_at)
    }

    /// Parses one event, or one exported record: the event plus `seq` and
    /// `recorded_at` (what [`Record`] serializes to). Returns the event and
    /// the two record fields, each `None` when absent. The event is checked
    /// as [`Event::from_json`] checks it: unknown fields, repeated fields and
    /// repeated metadata keys are refused, with the path of the field.
    pub fn from_record_json(
        json: &[u8],
    ) -> Result<(Event, Option<u64>, Option<Timestamp>), crate::validate::ValidationError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let record: RecordJson = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
        de.end()
            .map_err(|e| crate::validate::ValidationError::json("", e.to_string()))?;
        let RecordJson {
            seq,
            recorded_at,
            time,
            actor,
            action,
            resource,
            outcome,
            tenant,
            source,
            request_id,
            reason,
            metadata,
        } = record;
        let event = Event {
            time,
            actor,
            action,
            resource,
            outcome,
            tenant,
            source,
            request_id,
            reason,
            metadata,
        };
        Ok((event, seq, recorded_at))
    }
}

/// The JSON of an [`Event`] with the optional fields a [`Record`] adds, for
/// [`Event::from_record_json`]. (`Record` itself flattens its event, which
/// serde cannot combine with refusing unknown and repeated fields.) Its
/// fields are the event's: adding one to [`Event`] fails to compile there
/// until it is added here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordJson {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    recorded_at: Option<Timestamp>,
    #[serde(default)]
    time: Option<Timestamp>,
    actor: Actor,
    action: String,
    resource: Resource,
    outcome: Outcome,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, deserialize_with = "deserialize_metadata")]
    metadata: Option<Metadata>,
}

/// Parses a JSON object of metadata (such as a command-line `--metadata`
/// value), refusing a key repeated at any depth like [`Event::from_json`]
/// does. Errors name the path from `metadata`.
pub fn metadata_from_json(json: &[u8]) -> Result<Metadata, crate::validate::ValidationError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track);
    let value = serde::de::DeserializeSeed::deserialize(UniqueKeys, tracked).map_err(|e| {
        let path = track.path().to_string();
        let field = if path == "." {
            "metadata".to_owned()
        } else {
            format!("metadata.{path}")
        };
        crate::validate::ValidationError::json(&field, e.to_string())
    })?;
    de.end()
        .map_err(|e| crate::validate::ValidationError::json("metadata", e.to_string()))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(crate::validate::ValidationError::json(
            "metadata",
            format!("must be a JSON object, not {}", json_kind(&other)),
        )),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn deserialize_metadata<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Metadata>, D::Error> {
    match serde::de::DeserializeSeed::deserialize(UniqueKeys, deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Object(map) => Ok(Some(map)),
        other => Err(serde::de::Error::custom(format!(
            "invalid type: {}, expected a JSON object",
            json_kind(&other)
        ))),
    }
}

/// Deserializes any JSON value as a [`serde_json::Value`] does, except that
/// an object repeating a key is an error. The error is raised while reading
/// the repeated key's value, so a path-tracking deserializer names the key
/// (`metadata.user.role`).
#[derive(Clone, Copy)]
struct UniqueKeys;

/// Raised in place of the value of a repeated key.
struct RepeatedKey<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for RepeatedKey<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(serde::de::Error::custom(format!(
            "the key `{}` appears more than once in its object; give each key once \
             (which value would count is ambiguous)",
            truncate_for_display(self.0)
        )))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = Metadata::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                map.next_value_seed(RepeatedKey(&key))?;
                continue;
            }
            let value = map.next_value_seed(UniqueKeys)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

fn json_error<E: fmt::Display>(
    err: serde_path_to_error::Error<E>,
) -> crate::validate::ValidationError {
    let path = err.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let mut message = err.inner().to_string();
    if message.starts_with("invalid unicode code point") {
        message = format!("is not valid UTF-8 ({message})");
    }
    crate::validate::ValidationError::json(&path, message)
}

/// An event as stored: the submitted event plus what the store assigned.
///
/// Its JSON form is the event's JSON with two more fields, `seq` and
/// `recorded_at`, so an exported record can be imported again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The record's position in the log: dense, starting at 0, never reused.
    pub seq: u64,
    /// When the store recorded the event (non-decreasing in `seq` order).
    pub recorded_at: Timestamp,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    /// When the event happened: the client's time, or the recorded time when
    /// the client gave none.
    pub fn event_time(&self) -> Timestamp {
        self.event.effective_time(self.recorded_at)
    }

    /// The record with its event time written into the event's `time`
    /// (a no-op when the client gave one). An export carries the event
    /// time this way, so that importing the event elsewhere, where it gets
    /// another recorded time, keeps the time it happened.
    pub fn with_event_time(mut self) -> Record {
        self.event.time = Some(self.event_time());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        for nanos in [
            0,
            1,
            1_000_000,
            1_700_000_000_123_456_789,
            -1,
            i64::MAX,
            i64::MIN,
        ] {
            let ts = Timestamp::from_nanos(nanos);
            let text = ts.to_rfc3339();
            assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), ts, "{text}");
        }
        assert_eq!(
            Timestamp::from_nanos(1_700_000_000_120_000_000).to_rfc3339(),
            "2023-11-14T22:13:20.12Z"
        );
    }

    #[test]
    fn a_date_alone_is_the_start_of_that_day_in_utc() {
        assert_eq!(
            Timestamp::parse_date("2026-11-27").unwrap(),
            Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap()
        );
        for bad in [
            "2026-11-31",
            "2026-1-27",
            "27.11.2026",
            "2026-11-27T00:00:00Z",
            "9999-01-01",
        ] {
            assert!(Timestamp::parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let a = Timestamp::parse_rfc3339("2026-11-23T18:25:00+01:00").unwrap();
        let b = Timestamp::parse_rfc3339("2026-11-23T17:25:00Z").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_timestamps_say_what_was_expected() {
        let err = Timestamp::parse_rfc3339("yesterday")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`yesterday`") && err.contains("RFC 3339"),
            "{err}"
        );
        let err = Timestamp::parse_rfc3339("9999-01-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(err.contains("range"), "{err}");
    }

    #[test]
    fn json_structure_errors_name_the_field() {
        let err = Event::from_json(br#"{"actor":{"type":"user"},"action":"a","resource":{"type":"r"},"outcome":"success"}"#)
            .unwrap_err();
        assert_eq!(err.field(), "actor");
        assert!(err.to_string().contains("missing field `id`"), "{err}");

        let err = Event::from_json(br#"{"actor":{"type":"user","id":5},"action":"a","resource":{"type":"r"},"outcome":"success"}"#)
            .unwrap_err();
        assert_eq!(err.field(), "actor.id");

        let err = Event::from_json(br#"{"actor":{"type":"user","id":"x"},"action":"a","resource":{"type":"r"},"outcome":"maybe"}"#)
            .unwrap_err();
        assert_eq!(err.field(), "outcome");

        let err = Event::from_json(br#"{"actor":{"type":"user","id":"x"},"action":"a","resource":{"type":"r"},"outcome":"success","source":{"ip":"300.1.1.1"}}"#)
            .unwrap_err();
        assert_eq!(err.field(), "source.ip");
        assert!(err.to_string().contains("300.1.1.1"), "{err}");

        let err = Event::from_json(br#"{"time":"yesterday","actor":{"type":"user","id":"x"},"action":"a","resource":{"type":"r"},"outcome":"success"}"#)
            .unwrap_err();
        assert_eq!(err.field(), "time");
        assert!(err.to_string().contains("RFC 3339"), "{err}");

        let mut bad_utf8 = br#"{"actor":{"type":"user","id":"ab"},"action":"a","resource":{"type":"r"},"outcome":"success"}"#.to_vec();
        let at = bad_utf8.windows(2).position(|w| w == b"ab").unwrap();
        bad_utf8[at] = 0xff;
        let err = Event::from_json(&bad_utf8).unwrap_err();
        assert_eq!(err.field(), "actor.id");
        assert!(err.to_string().contains("UTF-8"), "{err}");

        let err = Event::from_json(br#"{"actr":{"type":"user","id":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `actr`"), "{err}");

        let err = Event::from_json(br#"{"actor":{"type":"user","id":"x"},"action":"a","resource":{"type":"r"},"outcome":"success"} trailing"#)
            .unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn repeated_metadata_keys_are_refused_at_any_depth_naming_the_path() {
        let event = |metadata: &str| {
            format!(
                r#"{{"actor":{{"type":"user","id":"x"}},"action":"a","resource":{{"type":"r"}},"outcome":"success","metadata":{metadata}}}"#
            )
        };
        for (metadata, path) in [
            (r#"{"role":"user","role":"admin"}"#, "metadata.role"),
            (
                r#"{"user":{"name":"a","role":"user","role":"admin"}}"#,
                "metadata.user.role",
            ),
            (r#"{"list":[{"k":1},{"k":1,"k":2}]}"#, "metadata.list[1].k"),
        ] {
            let json = event(metadata);
            let err = Event::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(err.field(), path, "{metadata}");
            assert!(err.to_string().contains("more than once"), "{err}");
            // The fast path without path tracking refuses it too.
            assert!(serde_json::from_str::<Event>(&json).is_err(), "{metadata}");
        }
        // Repeated top-level and nested fields stay refused.
        let err = Event::from_json(br#"{"action":"a","action":"b","actor":{"type":"user","id":"x"},"resource":{"type":"r"},"outcome":"success"}"#).unwrap_err();
        assert!(
            err.to_string().contains("duplicate field `action`"),
            "{err}"
        );
        // The same key in different objects is fine, and so is null.
        let ok =
            Event::from_json(event(r#"{"a":{"k":1},"b":{"k":1},"k":[1,1]}"#).as_bytes()).unwrap();
        assert_eq!(ok.metadata.map(|m| m.len()), Some(3));
        let none = Event::from_json(event("null").as_bytes()).unwrap();
        assert_eq!(none.metadata, None);
        let err = Event::from_json(event("[1]").as_bytes()).unwrap_err();
        assert_eq!(err.field(), "metadata");
    }

    #[test]
    fn metadata_text_refuses_repeated_keys_and_non_objects() {
        let m = metadata_from_json(br#"{"plan":"pro","n":[1,2.5,{"x":null}]}"#).unwrap();
        assert_eq!(m["n"][1], 2.5);
        let err = metadata_from_json(br#"{"a":{"role":1,"role":2}}"#).unwrap_err();
        assert_eq!(err.field(), "metadata.a.role");
        let err = metadata_from_json(br#"{"role":1,"role":2}"#).unwrap_err();
        assert_eq!(err.field(), "metadata.role");
        let err = metadata_from_json(b"[1]").unwrap_err();
        assert_eq!(err.field(), "metadata");
        assert!(err.to_string().contains("an array"), "{err}");
        assert!(metadata_from_json(br#"{"a":1} x"#).is_err());
    }

    #[test]
    fn exported_records_parse_with_their_seq_and_recorded_at() {
        let line = br#"{"seq":7,"recorded_at":"2026-01-01T00:00:00Z","actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success","metadata":{"k":1}}"#;
        let (event, seq, recorded_at) = Event::from_record_json(line).unwrap();
        assert_eq!(seq, Some(7));
        assert_eq!(
            recorded_at.map(Timestamp::to_rfc3339).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(event.time, None);
        assert_eq!(event.metadata.map(|m| m.len()), Some(1));
        let plain = br#"{"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#;
        assert_eq!(Event::from_record_json(plain).unwrap().1, None);
        for (bad, field) in [
            (&br#"{"seq":7,"seq":8,"recorded_at":"2026-01-01T00:00:00Z","actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#[..], ""),
            (br#"{"seq":7,"actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success","metadata":{"k":1,"k":2}}"#, "metadata.k"),
            (br#"{"seq":7,"actr":1}"#, "actr"),
            (br#"{"seq":"x","actor":{"type":"user","id":"a"},"action":"x.y","resource":{"type":"r"},"outcome":"success"}"#, "seq"),
        ] {
            let err = Event::from_record_json(bad).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn a_record_carries_its_event_time_when_asked() {
        let event = Event::new(
            Actor::new("system", "sealog-server"),
            "log.query",
            Resource::kind("log"),
            Outcome::Success,
        );
        let record = Record {
            seq: 1,
            recorded_at: Timestamp::from_nanos(5),
            event: event.clone(),
        };
        assert_eq!(
            record.clone().with_event_time().event.time,
            Some(Timestamp::from_nanos(5))
        );
        let timed = Record {
            event: event.with_time(Timestamp::from_nanos(3)),
            ..record
        };
        assert_eq!(
            timed.with_event_time().event.time,
            Some(Timestamp::from_nanos(3))
        );
    }

    #[test]
    fn records_serialize_as_the_event_plus_seq_and_recorded_at() {
        let event = Event::new(
            Actor::new("user", "alice"),
            "customer.delete",
            Resource::new("customer", "4471"),
            Outcome::Success,
        );
        let record = Record {
            seq: 7,
            recorded_at: Timestamp::from_nanos(1_000_000_000),
            event: event.clone(),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["recorded_at"], "1970-01-01T00:00:01Z");
        assert_eq!(json["actor"]["id"], "alice");
        assert!(json.get("time").is_none());
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
