//! Privacy policies: per-field transforms applied to every event before it
//! is encoded, hashed and written, and to the values of a query so that a
//! clear value still finds the transformed records.
//!
//! A [`PrivacyPolicy`] is a list of [`Rule`]s, `FIELD=TRANSFORM`:
//!
//! | transform | effect on the stored value | fields |
//! | --- | --- | --- |
//! | `mask` | IPv4: last octet zeroed (`203.0.113.9` → `203.0.113.0`); IPv6: last 80 bits zeroed (a /48 is kept) | `source.ip` |
//! | `hash` | `hmac:` and the 64 lowercase hex digits of HMAC-SHA-256(key, value) | every string field but the types and the action, and metadata |
//! | `drop` | removed | every optional field and metadata |
//!
//! The fields are `actor.id`, `actor.on_behalf_of.id`, `actor.session_id`,
//! `resource.id`, `tenant`, `source.ip`, `source.user_agent`,
//! `request_id`, `reason` and `metadata.KEY` (`metadata.a.b` for the key
//! `b` of the object at `a`). A hashed metadata value that is not a string
//! is hashed as its compact JSON text.
//!
//! The hash is keyed by a [`PrivacyKey`] kept off the store; the same
//! value gives the same hash in every field, so equal values still match,
//! and a value can be looked up by hashing it again with the key. Without
//! the key the hashes cannot be reversed by trying likely values.
//!
//! See docs/privacy.md for which fields hold personal data and how a query
//! is transformed.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sealog_format::Event;
use sealog_format::event::Metadata;
use sha2::Sha256;

use crate::query::{IpFilter, Query};

/// The prefix of a hashed value.
pub const HASH_PREFIX: &str = "hmac:";
/// The fewest bytes a privacy key may have.
pub const MIN_KEY_LEN: usize = 32;
/// Bits of an IPv4 address kept by `mask`.
pub const MASK_V4_PREFIX: u8 = 24;
/// Bits of an IPv6 address kept by `mask`.
pub const MASK_V6_PREFIX: u8 = 48;

/// A privacy problem: a rule that does not parse or does not apply to its
/// field, a missing or short key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PrivacyError {
    message: String,
}

impl PrivacyError {
    fn new(message: impl Into<String>) -> PrivacyError {
        PrivacyError {
            message: message.into(),
        }
    }
}

/// The secret key of the keyed hash. It is never written to the store;
/// [`fmt::Debug`] shows only its [`PrivacyKey::id`].
#[derive(Clone)]
pub struct PrivacyKey {
    bytes: Arc<[u8]>,
}

impl PrivacyKey {
    /// A key from its bytes: at least [`MIN_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PrivacyKey, PrivacyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(PrivacyError::new(format!(
                "the privacy key has {} bytes; it needs at least {MIN_KEY_LEN} \
                 (make one with `head -c 32 /dev/urandom > privacy.key`)",
                bytes.len()
            )));
        }
        Ok(PrivacyKey {
            bytes: Arc::from(bytes),
        })
    }

    /// Reads a key file: its bytes are the key, less one trailing newline
    /// (`\n` or `\r\n`, as an editor or `echo` leaves it).
    pub fn from_file(path: &Path) -> Result<PrivacyKey, PrivacyError> {
        let bytes = std::fs::read(path).map_err(|e| {
            PrivacyError::new(format!(
                "cannot read the privacy key file `{}`: {e} (check the path, and that the \
                 user running sealog may read it; make a key with \
                 `head -c 32 /dev/urandom > privacy.key`)",
                path.display()
            ))
        })?;
        let trimmed = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(&bytes);
        PrivacyKey::from_bytes(trimmed)
            .map_err(|e| PrivacyError::new(format!("privacy key file `{}`: {e}", path.display())))
    }

    /// The keyed hash of `value`: [`HASH_PREFIX`] and the 64 lowercase hex
    /// digits of HMAC-SHA-256(key, value).
    pub fn hash(&self, value: &[u8]) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
        out.push_str(HASH_PREFIX);
        for b in self.mac(value) {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// A name for the key that does not reveal it: the first 8 bytes, in
    /// hex, of HMAC-SHA-256(key, "sealog privacy key id"). Two processes
    /// with the same key show the same id.
    pub fn id(&self) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(16);
        for b in self.mac(b"sealog privacy key id").iter().take(8) {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    fn mac(&self, value: &[u8]) -> [u8; 32] {
        // HMAC takes a key of any length: the constructor cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.bytes) else {
            return [0; 32];
        };
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for PrivacyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivacyKey({})", self.id())
    }
}

/// The action of the record that says which privacy policy the writer
/// applies from then on ([`Store::open`](crate::Store::open) appends one
/// whenever the policy differs from the newest recorded one).
pub const POLICY_ACTION: &str = "store.privacy_policy";
/// The resource type of that record (the resource id is `current`).
pub const POLICY_RESOURCE_TYPE: &str = "privacy_policy";

/// A privacy policy as the log records it: its rules (sorted, as
/// `FIELD=TRANSFORM`) and the id of its key ([`PrivacyKey::id`]), never the
/// key itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDescription {
    /// The rules, sorted.
    pub rules: Vec<String>,
    /// The key's id, if the policy has a key.
    pub key_id: Option<String>,
}

impl PolicyDescription {
    /// Whether it has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The event that records it.
    pub fn event(&self) -> Event {
        use sealog_format::{Actor, Outcome, Resource};
        let mut metadata = Metadata::new();
        metadata.insert("privacy_rules".into(), self.rules.join(",").into());
        if let Some(id) = &self.key_id {
            metadata.insert("privacy_key_id".into(), id.clone().into());
        }
        Event::new(
            Actor::new("system", "sealog"),
            POLICY_ACTION,
            Resource::new(POLICY_RESOURCE_TYPE, "current"),
            Outcome::Success,
        )
        .with_reason(format!(
            "records from here on are written under {self}; earlier ones under the policy \
             recorded before"
        ))
        .with_metadata(metadata)
    }

    /// The description an event of [`PolicyDescription::event`]'s form
    /// holds; `None` for any other event. Only the record's action,
    /// resource type and actor type are relied on (the policy may hash the
    /// actor's id).
    pub fn from_event(event: &Event) -> Option<PolicyDescription> {
        if event.action != POLICY_ACTION
            || event.resource.kind != POLICY_RESOURCE_TYPE
            || event.actor.kind != "system"
        {
            return None;
        }
        let metadata = event.metadata.as_ref()?;
        let rules = metadata.get("privacy_rules")?.as_str()?;
        let key_id = match metadata.get("privacy_key_id") {
            None => None,
            Some(v) => Some(v.as_str()?.to_owned()),
        };
        Some(PolicyDescription {
            rules: rules
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            key_id,
        })
    }
}

impl fmt::Display for PolicyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rules.is_empty() {
            return f.write_str("no privacy rules");
        }
        write!(f, "the privacy rules `{}`", self.rules.join(", "))?;
        if let Some(id) = &self.key_id {
            write!(f, " with the key of id {id}")?;
        }
        Ok(())
    }
}

/// True if `value` has the form of a hashed value (`hmac:` and 64
/// lowercase hex digits).
pub fn is_hash(value: &str) -> bool {
    value.strip_prefix(HASH_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The address with its host part zeroed: an IPv4 address (or an
/// IPv4-mapped IPv6 one) keeps its first 24 bits, an IPv6 address its
/// first 48.
pub fn mask_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & (u32::MAX << 8)).into()),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            IpAddr::V6((u128::from(v6) & (u128::MAX << 8)).into())
        }
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 80)).into()),
    }
}

/// A field a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `actor.id`.
    ActorId,
    /// `actor.on_behalf_of.id`.
    OnBehalfOfId,
    /// `actor.session_id`.
    SessionId,
    /// `resource.id`.
    ResourceId,
    /// `tenant`.
    Tenant,
    /// `source.ip`.
    SourceIp,
    /// `source.user_agent`.
    UserAgent,
    /// `request_id`.
    RequestId,
    /// `reason`.
    Reason,
    /// `metadata.KEY[.KEY...]`: a key of the metadata object, or of an
    /// object nested in it.
    Metadata(Vec<String>),
}

impl Field {
    const NAMED: [(&'static str, Field); 9] = [
        ("actor.id", Field::ActorId),
        ("actor.on_behalf_of.id", Field::OnBehalfOfId),
        ("actor.session_id", Field::SessionId),
        ("resource.id", Field::ResourceId),
        ("tenant", Field::Tenant),
        ("source.ip", Field::SourceIp),
        ("source.user_agent", Field::UserAgent),
        ("request_id", Field::RequestId),
        ("reason", Field::Reason),
    ];

    fn parse(text: &str) -> Result<Field, PrivacyError> {
        if let Some((_, field)) = Field::NAMED.iter().find(|(name, _)| *name == text) {
            return Ok(field.clone());
        }
        if let Some(path) = text.strip_prefix("metadata.") {
            let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
            if keys.iter().all(|k| !k.is_empty()) {
                return Ok(Field::Metadata(keys));
            }
        }
        Err(PrivacyError::new(format!(
            "`{text}` is not a field a privacy rule applies to: use actor.id, \
             actor.on_behalf_of.id, actor.session_id, resource.id, tenant, source.ip, \
             source.user_agent, request_id, reason or metadata.KEY"
        )))
    }

    fn transforms(&self) -> &'static [Transform] {
        match self {
            Field::ActorId | Field::OnBehalfOfId => &[Transform::Hash],
            Field::SourceIp => &[Transform::Mask, Transform::Drop],
            _ => &[Transform::Hash, Transform::Drop],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Metadata(keys) => write!(f, "metadata.{}", keys.join(".")),
            named => {
                let name = Field::NAMED
                    .iter()
                    .find(|(_, field)| field == named)
                    .map_or("?", |(name, _)| name);
                f.write_str(name)
            }
        }
    }
}

/// What a rule does to its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transform {
    /// Zero the host part of an address.
    Mask,
    /// Replace the value by its keyed hash.
    Hash,
    /// Remove the value.
    Drop,
}

impl Transform {
    fn as_str(self) -> &'static str {
        match self {
            Transform::Mask => "mask",
            Transform::Hash => "hash",
            Transform::Drop => "drop",
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: a field and its transform, written `FIELD=TRANSFORM`
/// (`source.ip=mask`, `actor.id=hash`, `metadata.email=drop`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The field.
    pub field: Field,
    /// The transform.
    pub transform: Transform,
}

impl FromStr for Rule {
    type Err = PrivacyError;
    fn from_str(text: &str) -> Result<Rule, PrivacyError> {
        let Some((field, transform)) = text.split_once('=') else {
            return Err(PrivacyError::new(format!(
                "privacy rule `{text}` is not FIELD=TRANSFORM, e.g. source.ip=mask, \
                 actor.id=hash or metadata.email=drop"
            )));
        };
        let field = Field::parse(field.trim())?;
        let transform = match transform.trim() {
            "mask" => Transform::Mask,
            "hash" => Transform::Hash,
            "drop" => Transform::Drop,
            other => {
                return Err(PrivacyError::new(format!(
                    "privacy rule `{text}`: `{other}` is not a transform: use mask, hash or drop"
                )));
            }
        };
        let allowed = field.transforms();
        if !allowed.contains(&transform) {
            let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
            return Err(PrivacyError::new(format!(
                "privacy rule `{text}`: {field} cannot be {}ed; it takes {}",
                match transform {
                    Transform::Mask => "mask",
                    Transform::Hash => "hash",
                    Transform::Drop => "dropp",
                },
                names.join(" or ")
            )));
        }
        Ok(Rule { field, transform })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field, self.transform)
    }
}

/// The transforms applied to every event before it is written, and to
/// query values (default: none).
#[derive(Clone, Debug, Default)]
pub struct PrivacyPolicy {
    rules: Vec<Rule>,
    key: Option<PrivacyKey>,
}

impl PrivacyPolicy {
    /// A policy of `rules`; `key` is required when a rule hashes. A field
    /// given twice is refused.
    pub fn new(rules: Vec<Rule>, key: Option<PrivacyKey>) -> Result<PrivacyPolicy, PrivacyError> {
        for (i, rule) in rules.iter().enumerate() {
            if rules
                .get(..i)
                .is_some_and(|before| before.iter().any(|r| r.field == rule.field))
            {
                return Err(PrivacyError::new(format!(
                    "privacy rules: {} is given twice; keep one rule per field",
                    rule.field
                )));
            }
        }
        if key.is_none()
            && let Some(rule) = rules.iter().find(|r| r.transform == Transform::Hash)
        {
            return Err(PrivacyError::new(format!(
                "privacy rule `{rule}` hashes, but no privacy key is given: pass the key file \
                 (privacy_key in the server config, --privacy-key on the command line)"
            )));
        }
        Ok(PrivacyPolicy { rules, key })
    }

    /// Parses each rule of `rules` (`FIELD=TRANSFORM`) into a policy.
    pub fn parse<S: AsRef<str>>(
        rules: &[S],
        key: Option<PrivacyKey>,
    ) -> Result<PrivacyPolicy, PrivacyError> {
        let rules = rules
            .iter()
            .map(|r| r.as_ref().parse())
            .collect::<Result<Vec<Rule>, _>>()?;
        PrivacyPolicy::new(rules, key)
    }

    /// The policy as the log records it (rules sorted, the key's id).
    /// The key is only named when a rule hashes.
    pub fn describe(&self) -> PolicyDescription {
        let mut rules: Vec<String> = self.rules.iter().map(ToString::to_string).collect();
        rules.sort();
        let hashes = self.rules.iter().any(|r| r.transform == Transform::Hash);
        PolicyDescription {
            rules,
            key_id: self.key.as_ref().filter(|_| hashes).map(PrivacyKey::id),
        }
    }

    /// True when the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&PrivacyKey> {
        self.key.as_ref()
    }

    /// The transform of `field`, if a rule names it.
    pub fn transform(&self, field: &Field) -> Option<Transform> {
        self.rules
            .iter()
            .find(|r| &r.field == field)
            .map(|r| r.transform)
    }

    fn hash_str(&self, value: &str) -> String {
        match &self.key {
            Some(key) => key.hash(value.as_bytes()),
            // `new` refuses a hash rule without a key.
            None => String::new(),
        }
    }

    /// Applies every rule to `event`.
    pub fn apply(&self, event: &mut Event) {
        for rule in &self.rules {
            self.apply_rule(rule, event);
        }
        if event.source.as_ref().is_some_and(|s| s.is_empty()) {
            event.source = None;
        }
    }

    fn apply_rule(&self, rule: &Rule, event: &mut Event) {
        let optional = |value: &mut Option<String>| match rule.transform {
            Transform::Hash => {
                if let Some(v) = value.as_mut() {
                    *v = self.hash_str(v);
                }
            }
            Transform::Drop => *value = None,
            Transform::Mask => {}
        };
        match &rule.field {
            Field::ActorId => event.actor.id = self.hash_str(&event.actor.id),
            Field::OnBehalfOfId => {
                if let Some(p) = event.actor.on_behalf_of.as_mut() {
                    p.id = self.hash_str(&p.id);
                }
            }
            Field::SessionId => optional(&mut event.actor.session_id),
            Field::ResourceId => optional(&mut event.resource.id),
            Field::Tenant => optional(&mut event.tenant),
            Field::RequestId => optional(&mut event.request_id),
            Field::Reason => optional(&mut event.reason),
            Field::UserAgent => {
                if let Some(s) = event.source.as_mut() {
                    optional(&mut s.user_agent);
                }
            }
            Field::SourceIp => {
                if let Some(s) = event.source.as_mut() {
                    match rule.transform {
                        Transform::Mask => s.ip = s.ip.map(mask_ip),
                        Transform::Drop => s.ip = None,
                        Transform::Hash => {}
                    }
                }
            }
            Field::Metadata(keys) => {
                if let Some(m) = event.metadata.as_mut() {
                    self.apply_metadata(m, keys, rule.transform);
                }
            }
        }
    }

    fn apply_metadata(&self, object: &mut Metadata, keys: &[String], transform: Transform) {
        let Some((first, rest)) = keys.split_first() else {
            return;
        };
        if rest.is_empty() {
            match transform {
                Transform::Drop => {
                    object.remove(first);
                }
                Transform::Hash => {
                    if let Some(value) = object.get_mut(first) {
                        let hashed = match &*value {
                            serde_json::Value::String(s) => self.hash_str(s),
                            other => self.hash_str(&other.to_string()),
                        };
                        *value = serde_json::Value::String(hashed);
                    }
                }
                Transform::Mask => {}
            }
        } else if let Some(serde_json::Value::Object(inner)) = object.get_mut(first) {
            self.apply_metadata(inner, rest, transform);
        }
    }

    /// `query` with its values transformed as the records' are, so that a
    /// clear value finds the records it was transformed into:
    ///
    /// - a hashed actor id, resource id, tenant or request id is replaced
    ///   by its hash (a value that already has the form of a hash is taken
    ///   as it is, so a value copied from a record finds it too);
    /// - under `source.ip=mask`, an address is masked, and a network longer
    ///   than the mask's prefix (/24 for IPv4, /48 for IPv6) is widened to
    ///   it: it then matches every record whose address lay in the same
    ///   /24 or /48, a superset of what it asked for; a shorter network is
    ///   unchanged (a masked address lies in it exactly when the clear one
    ///   did).
    ///
    /// Dropped fields are not in the records: a query on one finds only
    /// records written before the rule.
    pub fn query(&self, query: &Query) -> Query {
        let mut q = query.clone();
        if self.is_empty() {
            return q;
        }
        let hashes = |field: &Field| self.transform(field) == Some(Transform::Hash);
        let hash = |value: &mut String| {
            if !is_hash(value) {
                *value = self.hash_str(value);
            }
        };
        // `hmac:<hex>` alone parses as the type `hmac` and the id `<hex>`:
        // it is the stored form of an id, of any type.
        let rejoin = |kind: &mut Option<String>, id: &mut String| {
            if kind.as_deref() == Some("hmac") {
                let whole = format!("{HASH_PREFIX}{id}");
                if is_hash(&whole) {
                    *kind = None;
                    *id = whole;
                }
            }
        };
        if hashes(&Field::ActorId)
            && let Some(a) = q.actor.as_mut()
        {
            rejoin(&mut a.kind, &mut a.id);
            hash(&mut a.id);
        }
        if hashes(&Field::ResourceId)
            && let Some(r) = q.resource.as_mut()
            && let Some(id) = r.id.as_mut()
        {
            rejoin(&mut r.kind, id);
            hash(id);
        }
        if hashes(&Field::Tenant)
            && let Some(t) = q.tenant.as_mut()
        {
            hash(t);
        }
        if hashes(&Field::RequestId)
            && let Some(r) = q.request_id.as_mut()
        {
            hash(r);
        }
        if self.transform(&Field::SourceIp) == Some(Transform::Mask)
            && let Some(f) = q.source_ip.as_mut()
        {
            *f = mask_filter(*f);
        }
        q
    }
}

/// An address filter as it applies to masked addresses.
fn mask_filter(filter: IpFilter) -> IpFilter {
    match filter {
        IpFilter::Exact(ip) => IpFilter::Exact(mask_ip(ip)),
        IpFilter::Cidr { network, prefix } => {
            let (network, prefix) = match network {
                // An IPv4-mapped network of /96 or longer is an IPv4 one.
                IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                    Some(v4) => (IpAddr::V4(v4), prefix - 96),
                    None => (network, prefix),
                },
                _ => (network, prefix),
            };
            let keep = if network.is_ipv4() {
                MASK_V4_PREFIX
            } else {
                MASK_V6_PREFIX
            };
            if prefix <= keep {
                IpFilter::Cidr { network, prefix }
            } else {
                IpFilter::Cidr {
                    network: mask_ip(network),
                    prefix: keep,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{ActorFilter, ResourceFilter};
    use sealog_format::{Actor, Outcome, Resource};

    fn key() -> PrivacyKey {
        PrivacyKey::from_bytes(&[7u8; 32]).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn masks_ipv4_last_octet_and_ipv6_last_80_bits() {
        assert_eq!(mask_ip(ip("203.0.113.9")), ip("203.0.113.0"));
        assert_eq!(mask_ip(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1::"));
        assert_eq!(mask_ip(ip("::ffff:10.1.2.3")), ip("::ffff:10.1.2.0"));
    }

    #[test]
    fn hash_is_hmac_sha256_in_hex_and_recognised() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut padded = b"Jefe".to_vec();
        padded.resize(MIN_KEY_LEN, 0);
        // HMAC pads a short key with zeros: the same MAC as the bare key.
        let k = PrivacyKey::from_bytes(&padded).unwrap();
        let h = k.hash(b"what do ya want for nothing?");
        assert_eq!(
            h,
            "hmac:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(is_hash(&h));
        assert!(!is_hash("hmac:xyz"));
        assert!(!is_hash("alice"));
    }

    #[test]
    fn short_key_and_hash_without_key_are_refused() {
        let e = PrivacyKey::from_bytes(&[1u8; 31]).unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        let e = PrivacyPolicy::parse(&["actor.id=hash"], None).unwrap_err();
        assert!(e.to_string().contains("no privacy key"), "{e}");
    }

    #[test]
    fn rules_parse_and_refuse_what_does_not_apply() {
        let r: Rule = "metadata.user.email=drop".parse().unwrap();
        assert_eq!(
            r.field,
            Field::Metadata(vec!["user".into(), "email".into()])
        );
        assert_eq!(r.to_string(), "metadata.user.email=drop");
        for bad in [
            "actor.id=drop",
            "source.ip=hash",
            "tenant=mask",
            "action=hash",
            "actor.id",
            "metadata.=drop",
            "tenant=scramble",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
        let e = PrivacyPolicy::parse(&["tenant=hash", "tenant=drop"], Some(key())).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn apply_transforms_each_field() {
        let policy = PrivacyPolicy::parse(
            &[
                "actor.id=hash",
                "source.ip=mask",
                "source.user_agent=drop",
                "metadata.email=hash",
                "metadata.profile.phone=drop",
            ],
            Some(key()),
        )
        .unwrap();
        let mut metadata = Metadata::new();
        metadata.insert("email".into(), "a@example.com".into());
        metadata.insert("plan".into(), "pro".into());
        metadata.insert(
            "profile".into(),
            serde_json::json!({"phone": "555", "x": 1}),
        );
        let mut event = Event::new(
            Actor::new("user", "alice"),
            "customer.delete",
            Resource::new("customer", "4471"),
            Outcome::Success,
        )
        .with_source_ip(ip("10.1.2.3"))
        .with_user_agent("curl/8")
        .with_metadata(metadata);
        policy.apply(&mut event);
        assert_eq!(event.actor.id, key().hash(b"alice"));
        let source = event.source.as_ref().unwrap();
        assert_eq!(source.ip, Some(ip("10.1.2.0")));
        assert_eq!(source.user_agent, None);
        let m = event.metadata.as_ref().unwrap();
        assert_eq!(m["email"], key().hash(b"a@example.com").as_str());
        assert_eq!(m["plan"], "pro");
        assert_eq!(m["profile"], serde_json::json!({"x": 1}));
    }

    #[test]
    fn query_values_are_transformed_like_records() {
        let policy = PrivacyPolicy::parse(
            &["actor.id=hash", "resource.id=hash", "source.ip=mask"],
            Some(key()),
        )
        .unwrap();
        let hashed = key().hash(b"alice");
        let q = Query {
            actor: Some(ActorFilter::parse("user:alice")),
            resource: Some(ResourceFilter::parse("customer:")),
            source_ip: Some(IpFilter::parse("10.1.2.3").unwrap()),
            ..Query::default()
        };
        let t = policy.query(&q);
        assert_eq!(t.actor.as_ref().unwrap().id, hashed);
        assert_eq!(t.actor.as_ref().unwrap().kind.as_deref(), Some("user"));
        assert_eq!(t.resource.as_ref().unwrap().id, None);
        assert_eq!(t.source_ip, Some(IpFilter::Exact(ip("10.1.2.0"))));
        // A stored hash is taken as it is.
        let q = Query {
            actor: Some(ActorFilter::parse(&hashed)),
            ..Query::default()
        };
        let actor = policy.query(&q).actor.unwrap();
        assert_eq!(actor.id, hashed);
        assert_eq!(actor.kind, None);
        let q = Query {
            actor: Some(ActorFilter::parse(&format!("user:{hashed}"))),
            ..Query::default()
        };
        let actor = policy.query(&q).actor.unwrap();
        assert_eq!(actor.id, hashed);
        assert_eq!(actor.kind.as_deref(), Some("user"));
    }

    #[test]
    fn cidr_queries_widen_to_the_mask_only_when_longer() {
        let policy = PrivacyPolicy::parse(&["source.ip=mask"], None).unwrap();
        let cidr = |text: &str| {
            policy
                .query(&Query {
                    source_ip: Some(IpFilter::parse(text).unwrap()),
                    ..Query::default()
                })
                .source_ip
                .unwrap()
        };
        assert_eq!(cidr("10.0.0.0/8"), IpFilter::parse("10.0.0.0/8").unwrap());
        assert_eq!(
            cidr("10.1.2.128/25"),
            IpFilter::parse("10.1.2.0/24").unwrap()
        );
        assert!(cidr("10.1.2.128/25").matches(mask_ip(ip("10.1.2.200"))));
        assert_eq!(
            cidr("::ffff:10.1.2.3/128"),
            IpFilter::parse("10.1.2.0/24").unwrap()
        );
        assert_eq!(
            cidr("2001:db8:1:2::/64"),
            IpFilter::parse("2001:db8:1::/48").unwrap()
        );
        assert_eq!(
            cidr("2001:db8::/32"),
            IpFilter::parse("2001:db8::/32").unwrap()
        );
    }
}
