//! The content rules an event must satisfy before the store accepts it.
//!
//! Every rule failure is a [`ValidationError`] that names the offending field
//! by its JSON path (`actor.id`, `source.ip`, `metadata.password`), so a
//! client can fix the event without guessing. Limits are configurable through
//! [`EventLimits`]; the defaults are documented on each field.
//!
//! The secret guard ([`SecretGuard`]) keeps credentials out of the log: a
//! metadata key that looks like a secret is rejected by default, or its value
//! replaced with `"[REDACTED]"` when configured to redact.
//!
//! **Characters.** An identifier (`actor.id`, `resource.id`, the
//! principal's id, `actor.session_id`, `tenant`, `request_id`; the types and
//! the action are ASCII words anyway) and a metadata key must look like
//! what they are: they refuse every control and format character (Unicode
//! general categories Cc and Cf: the bidirectional controls U+202A–U+202E,
//! U+2066–U+2069, U+200E, U+200F, U+061C, the zero-width U+200B–U+200D,
//! U+2060, U+FEFF, the soft hyphen, ...), the line and paragraph
//! separators (Zl, Zp) and the other default-ignorable code points (fillers
//! and variation selectors), any of which can make two different values
//! look the same, or one value look like another, on a screen. Free text
//! (`reason`, `source.user_agent`) is written by people in every script, so
//! it keeps the joiners and direction marks that scripts need, and refuses
//! only what rearranges or hides text: control characters (C0 but tab, and
//! newline in `reason`; DEL; C1) and the bidirectional embeddings,
//! overrides and isolates (U+202A–U+202E, U+2066–U+2069), plus the line
//! and paragraph separators in the one-line `source.user_agent`. Metadata
//! values are not restricted: they may be evidence of exactly such text.
//! These are write-time rules: records already stored stay readable.

use std::fmt;

use crate::event::{Event, Metadata};

/// The replacement value for a redacted secret.
pub const REDACTED: &str = "[REDACTED]";

/// Why an event was refused, and which field caused it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ValidationError {
    field: String,
    kind: ValidationErrorKind,
}

/// What was wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// The JSON did not have the event's shape (missing field, wrong type).
    Json(String),
    /// A required field, or an optional one that was given, is empty.
    Empty,
    /// The field is longer than its limit.
    TooLong {
        /// Length of the value in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The value contains an ASCII control character.
    ControlCharacter {
        /// Byte offset of the character in the value.
        offset: usize,
    },
    /// The value contains a character that is invisible, or changes how
    /// the text around it is displayed: a non-ASCII control, format
    /// (bidirectional controls, zero-width characters), separator or
    /// default-ignorable character.
    InvisibleCharacter {
        /// Byte offset of the character in the value.
        offset: usize,
        /// The character.
        character: char,
    },
    /// The value does not follow the field's syntax.
    Syntax(&'static str),
    /// The metadata object nests deeper than allowed.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A metadata key looks like it holds a secret.
    SecretKey {
        /// The guard pattern it matched.
        pattern: String,
    },
}

impl ValidationError {
    /// A field-level error.
    pub fn new(field: impl Into<String>, kind: ValidationErrorKind) -> ValidationError {
        ValidationError {
            field: field.into(),
            kind,
        }
    }

    /// A JSON structure error at `path` (empty for the whole document).
    pub fn json(path: &str, message: impl Into<String>) -> ValidationError {
        ValidationError::new(path, ValidationErrorKind::Json(message.into()))
    }

    /// The JSON path of the offending field (empty when the whole document
    /// is at fault).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What was wrong.
    pub fn kind(&self) -> &ValidationErrorKind {
        &self.kind
    }

    /// The reason, without the field name.
    pub fn reason(&self) -> String {
        match &self.kind {
            ValidationErrorKind::Json(message) => message.clone(),
            ValidationErrorKind::Empty => {
                "must not be empty (omit an optional field instead)".into()
            }
            ValidationErrorKind::TooLong { len, max } => {
                format!("is {len} bytes long; the limit is {max} bytes")
            }
            ValidationErrorKind::ControlCharacter { offset } => {
                format!("contains a control character at byte {offset}")
            }
            ValidationErrorKind::InvisibleCharacter { offset, character } => format!(
                "contains U+{:04X} ({}) at byte {offset}: a character that is invisible or \
                 changes how the text is displayed, so the value would not look like what it \
                 is; remove it",
                u32::from(*character),
                describe_char(*character)
            ),
            ValidationErrorKind::Syntax(rule) => format!("must be {rule}"),
            ValidationErrorKind::TooDeep { max } => {
                format!("nests deeper than {max} levels")
            }
            ValidationErrorKind::SecretKey { pattern } => format!(
                "looks like a secret (matches `{pattern}`); audit events must not carry \
                 credentials: remove it, or configure the secret guard to redact"
            ),
        }
    }

    fn describe(&self) -> String {
        if self.field.is_empty() {
            format!("invalid event: {}", self.reason())
        } else {
            format!("invalid event: `{}` {}", self.field, self.reason())
        }
    }
}

/// Size limits for each field. All lengths are in bytes of UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLimits {
    /// `actor.type`, `actor.on_behalf_of.type`, `resource.type` (default 64).
    pub max_type_len: usize,
    /// `actor.id`, `actor.on_behalf_of.id`, `resource.id` (default 256).
    pub max_id_len: usize,
    /// `action` (default 128).
    pub max_action_len: usize,
    /// `tenant`, `request_id`, `actor.session_id` (default 128).
    pub max_token_len: usize,
    /// `source.user_agent` (default 512).
    pub max_user_agent_len: usize,
    /// `reason` (default 2048).
    pub max_reason_len: usize,
    /// `metadata`, measured as compact JSON (default 16 KiB).
    pub max_metadata_len: usize,
    /// Nesting depth of `metadata` (default 16).
    pub max_metadata_depth: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_type_len: 64,
            max_id_len: 256,
            max_action_len: 128,
            max_token_len: 128,
            max_user_agent_len: 512,
            max_reason_len: 2048,
            max_metadata_len: 16 * 1024,
            max_metadata_depth: 16,
        }
    }
}

/// What the secret guard does with a metadata key that looks like a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecretPolicy {
    /// Refuse the event, naming the key (the default).
    #[default]
    Reject,
    /// Replace the value with `"[REDACTED]"` and accept the event.
    Redact,
    /// Accept the event unchanged.
    Allow,
}

/// Detects metadata keys that look like they hold secrets.
///
/// A key matches a pattern when the key, lowercased and with every character
/// that is not a letter or digit removed, *contains* the pattern normalised
/// the same way: `password` matches `old_password`, `Password` and
/// `user-password`; `api_key` matches `apiKey` and `X-API-KEY`. Keys are
/// checked at every depth of the metadata object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretGuard {
    policy: SecretPolicy,
    patterns: Vec<(String, String)>,
}

impl SecretGuard {
    /// The patterns guarded by default.
    pub const DEFAULT_PATTERNS: &'static [&'static str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "authorization",
        "cookie",
        "card_number",
        "cvv",
        "ssn",
    ];

    /// A guard with the given policy and patterns.
    pub fn new<I, S>(policy: SecretPolicy, patterns: I) -> SecretGuard
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| (p.as_ref().to_owned(), normalize_key(p.as_ref())))
            .filter(|(_, normalized)| !normalized.is_empty())
            .collect();
        SecretGuard { policy, patterns }
    }

    /// The default patterns with the given policy.
    pub fn with_policy(policy: SecretPolicy) -> SecretGuard {
        SecretGuard::new(policy, Self::DEFAULT_PATTERNS)
    }

    /// The policy in force.
    pub fn policy(&self) -> SecretPolicy {
        self.policy
    }

    /// The patterns, as configured.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|(raw, _)| raw.as_str())
    }

    /// The pattern `key` matches, if any.
    pub fn matches(&self, key: &str) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        // Keys are almost always short ASCII: normalise on the stack.
        let mut buf = [0u8; 64];
        let mut len = 0;
        let mut fits = true;
        for b in key.bytes() {
            if !b.is_ascii() {
                fits = false;
                break;
            }
            if b.is_ascii_alphanumeric() {
                match buf.get_mut(len) {
                    Some(slot) => *slot = b.to_ascii_lowercase(),
                    None => {
                        fits = false;
                        break;
                    }
                }
                len += 1;
            }
        }
        let find = |normalized: &[u8]| {
            self.patterns
                .iter()
                .find(|(_, p)| contains(normalized, p.as_bytes()))
                .map(|(raw, _)| raw.as_str())
        };
        if fits {
            find(buf.get(..len).unwrap_or_default())
        } else {
            find(normalize_key(key).as_bytes())
        }
    }
}

impl Default for SecretGuard {
    fn default() -> Self {
        SecretGuard::with_policy(SecretPolicy::Reject)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| {
            haystack
                .get(i + 1..i + 1 + rest.len())
                .is_some_and(|w| w == rest)
        })
}

fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The rules an event is checked against: limits and the secret guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validator {
    /// Field size limits.
    pub limits: EventLimits,
    /// The secret guard.
    pub secrets: SecretGuard,
}

impl Validator {
    /// Checks `event` against every rule, applying redaction if the secret
    /// guard is configured to redact. Returns the first problem found, in
    /// field order.
    pub fn validate(&self, event: &mut Event) -> Result<(), ValidationError> {
        self.validate_fields(event)?;
        if let Some(m) = &event.metadata {
            self.check_metadata_len(serialized_len(m))?;
        }
        Ok(())
    }

    /// Everything [`Validator::validate`] checks except the serialized size
    /// of `metadata`, for a caller that serializes the metadata anyway and
    /// checks the size with [`Validator::check_metadata_len`] (as the store
    /// does, to serialize it once). Applies redaction if configured.
    pub fn validate_fields(&self, event: &mut Event) -> Result<(), ValidationError> {
        if self.check_fields(event)? {
            self.redact(event);
        }
        Ok(())
    }

    /// [`Validator::validate_fields`] without modifying the event: returns
    /// `true` if the secret guard would redact something (the caller then
    /// redacts a copy with [`Validator::redact`]).
    pub fn check_fields(&self, event: &Event) -> Result<bool, ValidationError> {
        let l = &self.limits;
        check_type("actor.type", &event.actor.kind, l.max_type_len)?;
        check_id("actor.id", &event.actor.id, l.max_id_len)?;
        if let Some(p) = &event.actor.on_behalf_of {
            check_type("actor.on_behalf_of.type", &p.kind, l.max_type_len)?;
            check_id("actor.on_behalf_of.id", &p.id, l.max_id_len)?;
        }
        if let Some(s) = &event.actor.session_id {
            check_id("actor.session_id", s, l.max_token_len)?;
        }
        check_action("action", &event.action, l.max_action_len)?;
        check_type("resource.type", &event.resource.kind, l.max_type_len)?;
        if let Some(id) = &event.resource.id {
            check_id("resource.id", id, l.max_id_len)?;
        }
        if let Some(t) = &event.tenant {
            check_id("tenant", t, l.max_token_len)?;
        }
        if let Some(ua) = event.source.as_ref().and_then(|s| s.user_agent.as_ref()) {
            check_text("source.user_agent", ua, l.max_user_agent_len, false)?;
        }
        if let Some(r) = &event.request_id {
            check_id("request_id", r, l.max_token_len)?;
        }
        if let Some(r) = &event.reason {
            check_text("reason", r, l.max_reason_len, true)?;
        }
        match &event.metadata {
            Some(m) => guard_object(
                &self.secrets,
                m,
                &Path::Root,
                1,
                self.limits.max_metadata_depth,
            ),
            None => Ok(false),
        }
    }

    /// Replaces the value of every secret-looking metadata key with
    /// `"[REDACTED]"` (whatever the policy).
    pub fn redact(&self, event: &mut Event) {
        if let Some(m) = &mut event.metadata {
            redact_object(&self.secrets, m);
        }
    }

    /// Checks the length of the compact JSON serialization of `metadata`.
    pub fn check_metadata_len(&self, len: usize) -> Result<(), ValidationError> {
        if len > self.limits.max_metadata_len {
            return Err(ValidationError::new(
                "metadata",
                ValidationErrorKind::TooLong {
                    len,
                    max: self.limits.max_metadata_len,
                },
            ));
        }
        Ok(())
    }
}

/// Checks `event` with the default limits and secret guard.
pub fn validate(event: &mut Event) -> Result<(), ValidationError> {
    Validator::default().validate(event)
}

fn serialized_len(metadata: &Metadata) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing a Map of Values cannot fail (keys are strings, no I/O).
    match serde_json::to_writer(&mut counter, metadata) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// A JSON path inside `metadata`, built on the stack as the guard descends
/// and turned into a string only for an error.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => "metadata".to_owned(),
            Path::Key(parent, key) => format!("{}.{key}", parent.render()),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// Walks `object` for secret-looking keys and excess depth; returns whether
/// a key must be redacted (under [`SecretPolicy::Redact`]).
fn guard_object(
    guard: &SecretGuard,
    object: &Metadata,
    path: &Path<'_>,
    depth: usize,
    max_depth: usize,
) -> Result<bool, ValidationError> {
    if depth > max_depth {
        return Err(ValidationError::new(
            path.render(),
            ValidationErrorKind::TooDeep { max: max_depth },
        ));
    }
    let mut redact = false;
    for (key, value) in object {
        let here = Path::Key(path, key);
        if let Some((offset, character)) = find_invisible(key, Invisible::Identifier) {
            // The path shows the key with the character escaped: printed
            // as it is, it would be invisible in the error too.
            return Err(ValidationError::new(
                format!("{}.{}", path.render(), key.escape_debug()),
                ValidationErrorKind::InvisibleCharacter { offset, character },
            ));
        }
        if let Some(pattern) = guard.matches(key) {
            match guard.policy {
                SecretPolicy::Reject => {
                    return Err(ValidationError::new(
                        here.render(),
                        ValidationErrorKind::SecretKey {
                            pattern: pattern.to_owned(),
                        },
                    ));
                }
                SecretPolicy::Redact => redact = true,
                SecretPolicy::Allow => {}
            }
        }
        redact |= guard_value(guard, value, &here, depth, max_depth)?;
    }
    Ok(redact)
}

fn guard_value(
    guard: &SecretGuard,
    value: &serde_json::Value,
    path: &Path<'_>,
    depth: usize,
    max_depth: usize,
) -> Result<bool, ValidationError> {
    match value {
        serde_json::Value::Object(inner) => guard_object(guard, inner, path, depth + 1, max_depth),
        serde_json::Value::Array(items) => {
            if depth + 1 > max_depth {
                return Err(ValidationError::new(
                    path.render(),
                    ValidationErrorKind::TooDeep { max: max_depth },
                ));
            }
            let mut redact = false;
            for (i, item) in items.iter().enumerate() {
                redact |= guard_value(guard, item, &Path::Index(path, i), depth + 1, max_depth)?;
            }
            Ok(redact)
        }
        _ => Ok(false),
    }
}

fn redact_object(guard: &SecretGuard, object: &mut Metadata) {
    for (key, value) in object.iter_mut() {
        if guard.matches(key).is_some() {
            *value = serde_json::Value::String(REDACTED.to_owned());
        } else {
            redact_value(guard, value);
        }
    }
}

fn redact_value(guard: &SecretGuard, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(inner) => redact_object(guard, inner),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_value(guard, v)),
        _ => {}
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, ValidationErrorKind::Empty));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::TooLong {
                len: value.len(),
                max,
            },
        ));
    }
    Ok(())
}

/// Identifiers: any printable text, no control characters, nothing
/// invisible.
fn check_id(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    check_len(field, value, max)?;
    // A branch-free scan the compiler vectorises; locate only on failure.
    let bad = |b: &u8| *b < 0x20 || *b == 0x7f;
    if value.as_bytes().iter().fold(false, |acc, b| acc | bad(b))
        && let Some(offset) = value.bytes().position(|b| bad(&b))
    {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::ControlCharacter { offset },
        ));
    }
    if let Some((offset, character)) = find_invisible(value, Invisible::Identifier) {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::InvisibleCharacter { offset, character },
        ));
    }
    Ok(())
}

/// Which characters a kind of field refuses beyond ASCII controls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Invisible {
    /// Identifiers and metadata keys: every invisible character.
    Identifier,
    /// Free text on several lines: what rearranges text.
    Text,
    /// Free text on one line: also the line and paragraph separators.
    Line,
}

/// The first non-ASCII character of `value` the field refuses, with its
/// byte offset. ASCII text (nearly every value) costs one vectorised scan.
fn find_invisible(value: &str, kind: Invisible) -> Option<(usize, char)> {
    if value.is_ascii() {
        return None;
    }
    value
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() && refused(c, kind))
}

fn refused(c: char, kind: Invisible) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let category = c.general_category();
    match kind {
        Invisible::Identifier => {
            matches!(
                category,
                GeneralCategory::Control
                    | GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            ) || default_ignorable(c)
        }
        Invisible::Text | Invisible::Line => {
            category == GeneralCategory::Control
                || bidi_embedding(c)
                || (kind == Invisible::Line
                    && matches!(
                        category,
                        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
                    ))
        }
    }
}

/// The bidirectional embeddings, overrides and isolates: they reorder the
/// display of the text after them (the "Trojan Source" characters).
fn bidi_embedding(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The default-ignorable code points (Unicode's
/// `Default_Ignorable_Code_Point`, DerivedCoreProperties.txt) that are not
/// already of category Cf: fillers, the combining grapheme joiner, the
/// variation selectors and the reserved ranges kept for more of them.
/// Renderers show none of them.
fn default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{2065}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// A short description of a refused character for an error message.
fn describe_char(c: char) -> &'static str {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    match c {
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING, a bidirectional control",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING, a bidirectional control",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING, a bidirectional control",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE, a bidirectional control",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE, a bidirectional control",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE, a bidirectional control",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE, a bidirectional control",
        '\u{2068}' => "FIRST STRONG ISOLATE, a bidirectional control",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE, a bidirectional control",
        '\u{200E}' => "LEFT-TO-RIGHT MARK, a bidirectional control",
        '\u{200F}' => "RIGHT-TO-LEFT MARK, a bidirectional control",
        '\u{061C}' => "ARABIC LETTER MARK, a bidirectional control",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{2060}' => "WORD JOINER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE, the byte order mark",
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{2028}' => "LINE SEPARATOR",
        '\u{2029}' => "PARAGRAPH SEPARATOR",
        _ => match c.general_category() {
            GeneralCategory::Control => "a control character",
            GeneralCategory::Format => "an invisible format character",
            _ => "a character rendered as nothing",
        },
    }
}

/// Free text: tabs allowed, and newlines where `multiline`; nothing that
/// rearranges the display of the text.
fn check_text(
    field: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), ValidationError> {
    check_len(field, value, max)?;
    let bad = |b: u8| (b < 0x20 && b != b'\t' && !(multiline && b == b'\n')) || b == 0x7f;
    if value
        .as_bytes()
        .iter()
        .fold(false, |acc, &b| acc | (b < 0x20 || b == 0x7f))
        && let Some(offset) = value.bytes().position(bad)
    {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::ControlCharacter { offset },
        ));
    }
    let kind = if multiline {
        Invisible::Text
    } else {
        Invisible::Line
    };
    if let Some((offset, character)) = find_invisible(value, kind) {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::InvisibleCharacter { offset, character },
        ));
    }
    Ok(())
}

/// Types: a lowercase word, `[a-z][a-z0-9_.-]*`.
fn check_type(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    check_len(field, value, max)?;
    let mut bytes = value.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !ok {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::Syntax(
                "a lowercase word: a letter a-z, then letters, digits, `_`, `.` or `-` \
                 (e.g. `user`, `api_key`, `s3.bucket`)",
            ),
        ));
    }
    Ok(())
}

/// Actions: lowercase dotted names, each part `[a-z0-9_-]+`, starting with a
/// letter.
fn check_action(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    check_len(field, value, max)?;
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
    };
    let starts_with_letter = value.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if !starts_with_letter || !value.split('.').all(part_ok) {
        return Err(ValidationError::new(
            field,
            ValidationErrorKind::Syntax(
                "a lowercase dotted machine name such as `customer.delete` or \
                 `auth.login_failed` (parts of a-z, 0-9, `_`, `-`, starting with a letter)",
            ),
        ));
    }
    Ok(())
}

impl fmt::Display for SecretPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretPolicy::Reject => "reject",
            SecretPolicy::Redact => "redact",
            SecretPolicy::Allow => "allow",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Outcome, Principal, Resource};
    use serde_json::json;

    fn event() -> Event {
        Event::new(
            Actor::new("user", "alice"),
            "customer.delete",
            Resource::new("customer", "4471"),
            Outcome::Success,
        )
    }

    fn field_of(mut e: Event) -> String {
        validate(&mut e).unwrap_err().field().to_owned()
    }

    fn metadata(value: serde_json::Value) -> Metadata {
        match value {
            serde_json::Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_complete_event_is_valid() {
        let mut e = event()
            .with_tenant("acme")
            .with_source_ip("203.0.113.9".parse().unwrap())
            .with_user_agent("curl/8.5\tx")
            .with_request_id("req-1")
            .with_reason("ticket SEC-12\nsecond line")
            .with_session_id("s-1")
            .on_behalf_of(Principal::new("user", "support-7"))
            .with_metadata(metadata(
                json!({"before": {"plan": "free"}, "after": {"plan": "pro"}}),
            ));
        validate(&mut e).unwrap();
    }

    #[test]
    fn empty_required_fields_are_named() {
        let mut e = event();
        e.actor.id.clear();
        assert_eq!(field_of(e), "actor.id");
        let mut e = event();
        e.actor.kind.clear();
        assert_eq!(field_of(e), "actor.type");
        let mut e = event();
        e.action.clear();
        assert_eq!(field_of(e), "action");
        let mut e = event();
        e.resource.kind.clear();
        assert_eq!(field_of(e), "resource.type");
    }

    #[test]
    fn empty_optional_fields_are_named() {
        assert_eq!(field_of(event().with_tenant("")), "tenant");
        assert_eq!(field_of(event().with_request_id("")), "request_id");
        assert_eq!(field_of(event().with_reason("")), "reason");
        assert_eq!(field_of(event().with_user_agent("")), "source.user_agent");
        assert_eq!(field_of(event().with_session_id("")), "actor.session_id");
        let mut e = event();
        e.resource.id = Some(String::new());
        assert_eq!(field_of(e), "resource.id");
        assert_eq!(
            field_of(event().on_behalf_of(Principal::new("user", ""))),
            "actor.on_behalf_of.id"
        );
        assert_eq!(
            field_of(event().on_behalf_of(Principal::new("", "x"))),
            "actor.on_behalf_of.type"
        );
    }

    #[test]
    fn length_limits_are_enforced_per_field() {
        let long = |n| "x".repeat(n);
        let mut e = event();
        e.actor.id = long(257);
        let err = validate(&mut e).unwrap_err();
        assert_eq!(err.field(), "actor.id");
        assert!(
            err.to_string().contains("257 bytes") && err.to_string().contains("256"),
            "{err}"
        );
        let mut e = event();
        e.actor.kind = "u".repeat(65);
        assert_eq!(field_of(e), "actor.type");
        let mut e = event();
        e.action = "a".repeat(129);
        assert_eq!(field_of(e), "action");
        assert_eq!(field_of(event().with_tenant(long(129))), "tenant");
        assert_eq!(field_of(event().with_request_id(long(129))), "request_id");
        assert_eq!(
            field_of(event().with_user_agent(long(513))),
            "source.user_agent"
        );
        assert_eq!(field_of(event().with_reason(long(2049))), "reason");
        let mut e = event();
        e.resource.id = Some(long(257));
        assert_eq!(field_of(e), "resource.id");
    }

    #[test]
    fn syntax_rules_name_the_field() {
        let mut e = event();
        e.actor.kind = "User".into();
        assert_eq!(field_of(e), "actor.type");
        let mut e = event();
        e.resource.kind = "9lives".into();
        assert_eq!(field_of(e), "resource.type");
        for bad in [
            "Customer.Delete",
            "customer..delete",
            ".delete",
            "customer.",
            "customer delete",
            "1x",
            "*.export",
        ] {
            let mut e = event();
            e.action = bad.into();
            let err = validate(&mut e).unwrap_err();
            assert_eq!(err.field(), "action", "{bad}");
            assert!(err.to_string().contains("dotted"), "{err}");
        }
        for good in [
            "customer.delete",
            "auth.login_failed",
            "login",
            "v2.export-csv",
            "a.b.c",
        ] {
            let mut e = event();
            e.action = good.into();
            validate(&mut e).unwrap();
        }
    }

    #[test]
    fn control_characters_are_refused_with_their_offset() {
        let mut e = event();
        e.actor.id = "al\u{0}ice".into();
        let err = validate(&mut e).unwrap_err();
        assert_eq!(err.field(), "actor.id");
        assert_eq!(
            err.kind(),
            &ValidationErrorKind::ControlCharacter { offset: 2 }
        );
        assert_eq!(field_of(event().with_tenant("a\nb")), "tenant");
        assert_eq!(
            field_of(event().with_user_agent("a\nb")),
            "source.user_agent"
        );
        assert_eq!(field_of(event().with_reason("a\u{1b}[31m")), "reason");
    }

    #[test]
    fn invisible_and_bidi_characters_in_identifiers_are_refused_naming_field_and_code_point() {
        let refused = [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{0085}',
            '\u{009B}',
            '\u{2028}',
            '\u{2029}',
            '\u{180E}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{E0041}',
            '\u{1D173}',
        ];
        type Setter = fn(Event, String) -> Event;
        let fields: [(&str, Setter); 6] = [
            ("actor.id", |mut e, v| {
                e.actor.id = v;
                e
            }),
            ("resource.id", |mut e, v| {
                e.resource.id = Some(v);
                e
            }),
            ("actor.on_behalf_of.id", |e, v| {
                e.on_behalf_of(Principal::new("user", v))
            }),
            ("actor.session_id", |e, v| e.with_session_id(v)),
            ("tenant", |e, v| e.with_tenant(v)),
            ("request_id", |e, v| e.with_request_id(v)),
        ];
        for c in refused {
            for (field, set) in &fields {
                let mut e = set(event(), format!("ad{c}min"));
                let err = validate(&mut e).unwrap_err();
                assert_eq!(err.field(), *field, "U+{:04X}", u32::from(c));
                assert_eq!(
                    err.kind(),
                    &ValidationErrorKind::InvisibleCharacter {
                        offset: 2,
                        character: c
                    }
                );
                let text = err.to_string();
                assert!(text.contains(&format!("U+{:04X}", u32::from(c))), "{text}");
            }
        }
        let mut e = event();
        e.actor.id = "\u{202E}nimda".into();
        let text = validate(&mut e).unwrap_err().to_string();
        assert!(
            text.contains("`actor.id`") && text.contains("U+202E (RIGHT-TO-LEFT OVERRIDE"),
            "{text}"
        );
        // Letters of every script, combining marks and emoji stay valid.
        for good in [
            "José",
            "Zoë",
            "محمد",
            "שרה",
            "田中",
            "क्षत्रिय",
            "🦀",
            "e\u{301}",
        ] {
            let mut e = event().with_tenant(good);
            e.actor.id = good.into();
            validate(&mut e).unwrap_or_else(|err| panic!("{good}: {err}"));
        }
    }

    #[test]
    fn free_text_refuses_what_reorders_text_but_keeps_what_scripts_need() {
        for c in ['\u{202E}', '\u{2066}', '\u{0085}'] {
            let err = validate(&mut event().with_reason(format!("ok{c}x"))).unwrap_err();
            assert_eq!(err.field(), "reason");
            assert!(matches!(
                err.kind(),
                ValidationErrorKind::InvisibleCharacter { offset: 2, .. }
            ));
            let err = validate(&mut event().with_user_agent(format!("ok{c}x"))).unwrap_err();
            assert_eq!(err.field(), "source.user_agent");
        }
        assert_eq!(
            field_of(event().with_user_agent("a\u{2028}b")),
            "source.user_agent"
        );
        // Joiners and direction marks belong to scripts and emoji.
        for good in [
            "می\u{200C}خواهم",
            "👩\u{200D}💻 asked",
            "ticket \u{200F}שרה\u{200E} 12",
            "line\u{2028}break",
        ] {
            validate(&mut event().with_reason(good)).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn invisible_characters_in_metadata_keys_are_refused_but_values_are_kept() {
        let m = metadata(json!({"user": {"ro\u{200B}le": "admin"}}));
        let err = validate(&mut event().with_metadata(m)).unwrap_err();
        assert_eq!(err.field(), "metadata.user.ro\\u{200b}le");
        assert!(matches!(
            err.kind(),
            ValidationErrorKind::InvisibleCharacter {
                offset: 2,
                character: '\u{200B}'
            }
        ));
        let m = metadata(json!({"display_name": {"before": "bob", "after": "\u{202E}bob"}}));
        validate(&mut event().with_metadata(m)).unwrap();
    }

    #[test]
    fn oversized_metadata_is_refused() {
        let big = "x".repeat(16 * 1024);
        let err = validate(&mut event().with_metadata(metadata(json!({"blob": big})))).unwrap_err();
        assert_eq!(err.field(), "metadata");
        assert!(matches!(
            err.kind(),
            ValidationErrorKind::TooLong { max: 16384, .. }
        ));
    }

    #[test]
    fn deep_metadata_is_refused() {
        let mut v = json!(1);
        for _ in 0..20 {
            v = json!({ "a": v });
        }
        let err = validate(&mut event().with_metadata(metadata(v))).unwrap_err();
        assert!(err.field().starts_with("metadata"), "{err}");
        assert!(matches!(
            err.kind(),
            ValidationErrorKind::TooDeep { max: 16 }
        ));
    }

    #[test]
    fn secret_looking_keys_are_rejected_by_name() {
        for key in [
            "password",
            "old_password",
            "Password",
            "apiKey",
            "X-API-KEY",
            "session_token",
            "Authorization",
            "card_number",
            "cvv",
            "ssn",
            "client_secret",
            "set-cookie",
            "passwd",
        ] {
            let m = metadata(json!({ key: "hunter2" }));
            let err = validate(&mut event().with_metadata(m)).unwrap_err();
            assert_eq!(err.field(), format!("metadata.{key}"));
            assert!(
                matches!(err.kind(), ValidationErrorKind::SecretKey { .. }),
                "{key}"
            );
        }
        let m = metadata(json!({"user": {"profile": [{"plain": 1}, {"token": "abc"}]}}));
        let err = validate(&mut event().with_metadata(m)).unwrap_err();
        assert_eq!(err.field(), "metadata.user.profile[1].token");
        let m = metadata(json!({"plan": "pro", "session": "s", "lesson": 1}));
        validate(&mut event().with_metadata(m)).unwrap();
    }

    #[test]
    fn the_guard_can_redact_instead() {
        let v = Validator {
            secrets: SecretGuard::with_policy(SecretPolicy::Redact),
            ..Validator::default()
        };
        let mut e = event().with_metadata(metadata(
            json!({"password": "hunter2", "nested": {"api_key": 7}, "plan": "pro"}),
        ));
        v.validate(&mut e).unwrap();
        let m = e.metadata.unwrap();
        assert_eq!(m["password"], REDACTED);
        assert_eq!(m["nested"]["api_key"], REDACTED);
        assert_eq!(m["plan"], "pro");
    }

    #[test]
    fn the_guard_patterns_are_configurable() {
        let v = Validator {
            secrets: SecretGuard::new(SecretPolicy::Reject, ["pin"]),
            ..Validator::default()
        };
        let mut e = event().with_metadata(metadata(json!({"password": "x"})));
        v.validate(&mut e).unwrap();
        let mut e = event().with_metadata(metadata(json!({"card_pin": "1234"})));
        assert_eq!(v.validate(&mut e).unwrap_err().field(), "metadata.card_pin");
    }
}
