//! Signed notes (C2SP `signed-note`) with Ed25519 keys.
//!
//! A signed note is a UTF-8 text ending in a newline, followed by a blank
//! line and one or more signature lines:
//!
//! ```text
//! <text, one or more lines, each ending in "\n">
//! <empty line>
//! — <key name> <base64(key ID ‖ signature)>
//! ```
//!
//! sealog signs its checkpoints as signed notes. It uses Ed25519 keys only
//! (signature type `0x01` of the C2SP `signed-note` specification), whose
//! 32-bit key ID is the first four bytes, read big-endian, of
//! `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)`.
//!
//! Keys have a one-line text form:
//!
//! * verifier key: `<name>+<8 lowercase hex digits of the key ID>+<base64(0x01 ‖ public key)>`;
//! * signing key: `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 ‖ 32-byte seed)>`.
//!
//! Opening a note ([`open`]) follows the specification: signatures by keys
//! the caller does not know (by the pair of name and key ID) are ignored, a
//! signature by a known key that does not verify rejects the whole note, and
//! a note without any verified signature is rejected.
//!
//! This module does no I/O and draws no randomness: callers provide key
//! seeds. Parsing is bounded ([`MAX_NOTE_SIZE`], [`MAX_SIGNATURES`]) and never
//! panics.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

/// The signature type identifier of Ed25519 in the C2SP `signed-note`
/// specification; it is also the first byte of an encoded key.
pub const ALG_ED25519: u8 = 0x01;

/// The largest signed note accepted by [`Note::parse`], in bytes (1 MiB).
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// The largest number of signature lines accepted by [`Note::parse`]
/// (the specification requires accepting at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The length of an Ed25519 public key or seed, in bytes.
pub const ED25519_KEY_SIZE: usize = 32;

/// The length of an Ed25519 signature, in bytes.
pub const ED25519_SIGNATURE_SIZE: usize = 64;

/// The prefix of a signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The prefix of the text form of a signing key.
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key or a note could not be parsed, created, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// A key name breaks the rules of the specification.
    #[error("invalid key name: it {reason}")]
    InvalidKeyName {
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// The text form of a key is not of the expected shape.
    #[error("malformed key: {reason}")]
    MalformedKey {
        /// What is wrong with the key text.
        reason: &'static str,
    },
    /// The encoded key is of a signature type other than Ed25519 (`0x01`).
    #[error("unsupported key type 0x{algorithm:02x}: only Ed25519 (0x01) keys are supported")]
    UnsupportedAlgorithm {
        /// The signature type byte found.
        algorithm: u8,
    },
    /// The encoded key material has the wrong length.
    #[error("key material is {actual} bytes long but an Ed25519 key is {expected} bytes")]
    InvalidKeyLength {
        /// The required length.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// The key ID written in a key's text form is not the one computed from
    /// its name and public key.
    #[error(
        "key ID {stated:08x} does not match the name and public key, whose key ID is {computed:08x}"
    )]
    KeyIdMismatch {
        /// The key ID written in the text.
        stated: u32,
        /// The key ID computed from the name and public key.
        computed: u32,
    },
    /// The public key is not a valid Ed25519 point, or is a point of small
    /// order that cannot verify any signature safely.
    #[error("the public key is not a usable Ed25519 public key")]
    InvalidPublicKey,
    /// The note, or the note a signature would produce, is larger than
    /// [`MAX_NOTE_SIZE`].
    #[error("signed note is {size} bytes long, more than the limit of {max} bytes")]
    NoteTooLarge {
        /// The size of the note in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The note is not valid UTF-8.
    #[error("signed note is not valid UTF-8")]
    InvalidUtf8,
    /// The note contains an ASCII control character other than a newline.
    #[error("control character U+{code:04X} at byte {offset}: only newlines are allowed")]
    ControlCharacter {
        /// The byte offset of the character.
        offset: usize,
        /// The character's code point.
        code: u32,
    },
    /// The text to sign is empty or does not end with a newline.
    #[error("note text must be non-empty and end with a newline")]
    TextNotNewlineTerminated,
    /// No blank line separates the text from signature lines, or there are no
    /// signature lines.
    #[error(
        "signed note has no signature block: expected the text, an empty line, then signature lines"
    )]
    MissingSignatures,
    /// A signature line is not of the form `— <key name> <base64>` or its
    /// signature is unusable.
    #[error("signature line {line} {reason}")]
    MalformedSignatureLine {
        /// The 1-based line number within the signed note.
        line: usize,
        /// What is wrong with the line.
        reason: &'static str,
    },
    /// The note carries more than [`MAX_SIGNATURES`] signature lines.
    #[error("signed note carries more than {max} signatures")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// Two different keys with the same name and key ID were given as
    /// trusted keys, so a signature cannot be attributed.
    #[error("two different trusted keys share the name {name:?} and key ID {key_id:08x}")]
    AmbiguousKey {
        /// The shared key name.
        name: String,
        /// The shared key ID.
        key_id: u32,
    },
    /// A signature by a trusted key (matching name and key ID) does not
    /// verify: the note was altered or forged.
    #[error("the signature by trusted key {name}+{key_id:08x} does not verify")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key ID.
        key_id: u32,
    },
    /// None of the note's signatures is by a trusted key.
    #[error("signed note carries no signature by any of the trusted keys")]
    NoTrustedSignature,
}

/// Checks a key name: non-empty, without `+`, without Unicode white space
/// and without control characters.
///
/// # Errors
///
/// [`NoteError::InvalidKeyName`] saying which rule is broken.
pub fn validate_key_name(name: &str) -> Result<(), NoteError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.contains('+') {
        "contains '+'"
    } else if name.chars().any(char::is_whitespace) {
        "contains white space"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(NoteError::InvalidKeyName { reason })
}

/// Computes the key ID of an Ed25519 key: the first four bytes, read
/// big-endian, of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
#[must_use]
pub fn ed25519_key_id(name: &str, public_key: &[u8; ED25519_KEY_SIZE]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALG_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    for (dst, src) in id.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    u32::from_be_bytes(id)
}

/// Parses 8 lowercase hexadecimal digits.
fn parse_key_id(text: &str) -> Result<u32, NoteError> {
    let well_formed = text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(NoteError::MalformedKey {
            reason: "the key ID is not 8 lowercase hexadecimal digits",
        });
    }
    u32::from_str_radix(text, 16).map_err(|_| NoteError::MalformedKey {
        reason: "the key ID is not 8 lowercase hexadecimal digits",
    })
}

/// Splits `<name>+<hex key ID>+<base64 key>` and decodes an Ed25519 key:
/// returns the name, the stated key ID and the 32 key bytes.
fn split_key_text(text: &str) -> Result<(&str, u32, [u8; ED25519_KEY_SIZE]), NoteError> {
    let missing = NoteError::MalformedKey {
        reason: "expected <name>+<key ID>+<base64 key>",
    };
    let (name, rest) = text.split_once('+').ok_or(missing.clone())?;
    let (id_text, key_text) = rest.split_once('+').ok_or(missing)?;
    validate_key_name(name)?;
    let stated = parse_key_id(id_text)?;
    let material = BASE64
        .decode(key_text)
        .map_err(|_| NoteError::MalformedKey {
            reason: "the key material is not canonical standard base64",
        })?;
    let (&algorithm, key) = material.split_first().ok_or(NoteError::MalformedKey {
        reason: "the key material is empty",
    })?;
    if algorithm != ALG_ED25519 {
        return Err(NoteError::UnsupportedAlgorithm { algorithm });
    }
    let key: [u8; ED25519_KEY_SIZE] = key.try_into().map_err(|_| NoteError::InvalidKeyLength {
        expected: ED25519_KEY_SIZE,
        actual: key.len(),
    })?;
    Ok((name, stated, key))
}

/// Encodes `0x01 ‖ key` in base64.
fn encode_key(key: &[u8; ED25519_KEY_SIZE]) -> String {
    let mut material = Vec::with_capacity(1 + ED25519_KEY_SIZE);
    material.push(ALG_ED25519);
    material.extend_from_slice(key);
    BASE64.encode(material)
}

/// A trusted Ed25519 public key with its name: verifies note signatures.
#[derive(Clone)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    public_key: [u8; ED25519_KEY_SIZE],
    verifying_key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Builds the verifier key named `name` for an Ed25519 public key.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] for an invalid name and
    /// [`NoteError::InvalidPublicKey`] if the bytes are not a usable Ed25519
    /// public key.
    pub fn new(name: &str, public_key: &[u8; ED25519_KEY_SIZE]) -> Result<Self, NoteError> {
        validate_key_name(name)?;
        let verifying_key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::InvalidPublicKey)?;
        if verifying_key.is_weak() {
            return Err(NoteError::InvalidPublicKey);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, public_key),
            public_key: *public_key,
            verifying_key,
        })
    }

    /// Parses the text form `<name>+<key ID>+<base64(0x01 ‖ public key)>`,
    /// checking that the key ID matches the name and key.
    ///
    /// The key ID must be 8 lowercase hexadecimal digits and the base64 must
    /// be canonical (padded, no stray bits); no surrounding white space is
    /// allowed.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedKey`], [`NoteError::InvalidKeyName`],
    /// [`NoteError::UnsupportedAlgorithm`], [`NoteError::InvalidKeyLength`],
    /// [`NoteError::KeyIdMismatch`] or [`NoteError::InvalidPublicKey`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, stated, public_key) = split_key_text(text)?;
        let computed = ed25519_key_id(name, &public_key);
        if stated != computed {
            return Err(NoteError::KeyIdMismatch { stated, computed });
        }
        Self::new(name, &public_key)
    }

    /// The text form `<name>+<key ID>+<base64(0x01 ‖ public key)>`.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key(&self.public_key)
        )
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    #[must_use]
    pub fn public_key(&self) -> &[u8; ED25519_KEY_SIZE] {
        &self.public_key
    }

    /// Reports whether `signature` (the bytes after the key ID) is a valid
    /// Ed25519 signature of `message` by this key. Verification is strict:
    /// non-canonical and small-order signature components are rejected.
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; ED25519_SIGNATURE_SIZE]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.verifying_key
            .verify_strict(message, &signature)
            .is_ok()
    }
}

impl PartialEq for VerifierKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.public_key == other.public_key
    }
}

impl Eq for VerifierKey {}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifierKey").field(&self.to_text()).finish()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A named Ed25519 signing key. Its [`fmt::Debug`] output shows the name and
/// key ID only, never the seed.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    key_id: u32,
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// Builds the signing key named `name` from a 32-byte Ed25519 seed. The
    /// caller provides the seed (from a cryptographically secure random
    /// source); this crate draws no randomness.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] for an invalid name.
    pub fn from_seed(name: &str, seed: &[u8; ED25519_KEY_SIZE]) -> Result<Self, NoteError> {
        validate_key_name(name)?;
        let inner = ed25519_dalek::SigningKey::from_bytes(seed);
        let key_id = ed25519_key_id(name, inner.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key_id,
            inner,
        })
    }

    /// Parses the private text form
    /// `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 ‖ seed)>`, checking that the
    /// key ID matches the name and the public key derived from the seed.
    ///
    /// # Errors
    ///
    /// As [`VerifierKey::parse`], plus [`NoteError::MalformedKey`] when the
    /// `PRIVATE+KEY+` prefix is missing.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or(NoteError::MalformedKey {
                reason: "a signing key must start with PRIVATE+KEY+",
            })?;
        let (name, stated, seed) = split_key_text(rest)?;
        let key = Self::from_seed(name, &seed)?;
        if key.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: key.key_id,
            });
        }
        Ok(key)
    }

    /// The private text form `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 ‖ seed)>`.
    /// It holds the secret seed: store it with care.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key(self.inner.as_bytes())
        )
    }

    /// The verifier key matching this signing key.
    #[must_use]
    pub fn verifier(&self) -> VerifierKey {
        let verifying_key = self.inner.verifying_key();
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: verifying_key.to_bytes(),
            verifying_key,
        }
    }

    /// The key ID.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `message` with Ed25519 (deterministic, RFC 8032).
    fn sign_bytes(&self, message: &[u8]) -> [u8; ED25519_SIGNATURE_SIZE] {
        self.inner.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// Rejects ASCII control characters other than newline.
fn check_characters(text: &str) -> Result<(), NoteError> {
    match text.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((offset, c)) => Err(NoteError::ControlCharacter {
            offset,
            code: u32::from(c),
        }),
        None => Ok(()),
    }
}

/// Signs `text` with `key` and returns the signed note: the text, an empty
/// line and the signature line `— <name> <base64(key ID ‖ signature)>`.
///
/// # Errors
///
/// [`NoteError::TextNotNewlineTerminated`] if the text is empty or does not
/// end with a newline, [`NoteError::ControlCharacter`] if it contains a
/// control character other than newline, and [`NoteError::NoteTooLarge`] if
/// the signed note would exceed [`MAX_NOTE_SIZE`].
pub fn sign(text: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    check_characters(text)?;
    let mut blob = Vec::with_capacity(4 + ED25519_SIGNATURE_SIZE);
    blob.extend_from_slice(&key.key_id.to_be_bytes());
    blob.extend_from_slice(&key.sign_bytes(text.as_bytes()));
    let signed = format!(
        "{text}\n{SIGNATURE_PREFIX}{} {}\n",
        key.name,
        BASE64.encode(blob)
    );
    if signed.len() > MAX_NOTE_SIZE {
        return Err(NoteError::NoteTooLarge {
            size: signed.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    Ok(signed)
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// The key name on the signature line.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID (the first four bytes of the decoded signature).
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes following the key ID.
    #[must_use]
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The signature line, without its final newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut blob = Vec::with_capacity(4 + self.signature.len());
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}", self.name, BASE64.encode(blob))
    }
}

/// A syntactically valid signed note whose signatures have not been
/// verified. Its text MUST NOT be trusted before [`open`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note.
    ///
    /// The note must be at most [`MAX_NOTE_SIZE`] bytes, contain no ASCII
    /// control character other than newline, and end with a block of 1 to
    /// [`MAX_SIGNATURES`] signature lines preceded by an empty line (the last
    /// empty line of the note). Each signature line is
    /// `— <key name> <base64>` where the name is valid and the canonical
    /// standard base64 decodes to at least 5 bytes (a key ID and a signature).
    ///
    /// # Errors
    ///
    /// [`NoteError::NoteTooLarge`], [`NoteError::ControlCharacter`],
    /// [`NoteError::MissingSignatures`], [`NoteError::MalformedSignatureLine`]
    /// or [`NoteError::TooManySignatures`].
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_SIZE {
            return Err(NoteError::NoteTooLarge {
                size: note.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        check_characters(note)?;
        let split = note.rfind("\n\n").ok_or(NoteError::MissingSignatures)?;
        let (text, block) = note
            .get(..=split)
            .zip(note.get(split + 2..))
            .ok_or(NoteError::MissingSignatures)?;
        if block.is_empty() {
            return Err(NoteError::MissingSignatures);
        }
        // Lines of the text, then the empty line, then the signatures.
        let first_line = text.bytes().filter(|&b| b == b'\n').count() + 2;
        let mut signatures = Vec::new();
        let mut rest = block;
        let mut line_number = first_line;
        while !rest.is_empty() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            let malformed = |reason| NoteError::MalformedSignatureLine {
                line: line_number,
                reason,
            };
            let (line, tail) = rest
                .split_once('\n')
                .ok_or(malformed("does not end with a newline"))?;
            signatures.push(parse_signature_line(line).map_err(malformed)?);
            rest = tail;
            line_number += 1;
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Parses a signed note given as bytes (see [`Note::parse`]).
    ///
    /// # Errors
    ///
    /// [`NoteError::NoteTooLarge`], [`NoteError::InvalidUtf8`], and the
    /// errors of [`Note::parse`].
    pub fn from_bytes(note: &[u8]) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_SIZE {
            return Err(NoteError::NoteTooLarge {
                size: note.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        Self::parse(std::str::from_utf8(note).map_err(|_| NoteError::InvalidUtf8)?)
    }

    /// The note text, ending with a newline (unverified).
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    #[must_use]
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The signed note's text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
            out.push('\n');
        }
        out
    }
}

/// Parses one signature line (without its newline).
fn parse_signature_line(line: &str) -> Result<NoteSignature, &'static str> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or("does not start with an em dash (U+2014) and a space")?;
    let (name, encoded) = rest
        .split_once(' ')
        .ok_or("has no space between the key name and the signature")?;
    validate_key_name(name).map_err(|_| "has an invalid key name")?;
    let blob = BASE64
        .decode(encoded)
        .map_err(|_| "has a signature that is not canonical standard base64")?;
    let (id, signature) = blob
        .split_first_chunk::<4>()
        .filter(|(_, signature)| !signature.is_empty())
        .ok_or("has a signature shorter than 5 bytes (a 4-byte key ID and a signature)")?;
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes(*id),
        signature: signature.to_vec(),
    })
}

/// A note whose signatures were checked against trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    text: String,
    verified_by: Vec<VerifierKey>,
}

impl VerifiedNote {
    /// The authenticated text, ending with a newline.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Consumes the note and returns its text.
    #[must_use]
    pub fn into_text(self) -> String {
        self.text
    }

    /// The trusted keys whose signatures verified, each listed once, in the
    /// order of their first signature line.
    #[must_use]
    pub fn verified_by(&self) -> &[VerifierKey] {
        &self.verified_by
    }
}

/// Verifies a note against trusted keys.
///
/// A signature line belongs to a trusted key when both its name and key ID
/// match the key. Every such signature must verify; signatures by other keys
/// are ignored (even if they share the name or the key ID of a trusted key).
/// At least one signature must be by a trusted key.
///
/// # Errors
///
/// [`NoteError::AmbiguousKey`] if two different trusted keys share the name
/// and key ID of a signature, [`NoteError::InvalidSignature`] if a signature
/// by a trusted key does not verify, and [`NoteError::NoTrustedSignature`]
/// if no signature is by a trusted key.
pub fn open(note: &Note, keys: &[VerifierKey]) -> Result<VerifiedNote, NoteError> {
    let mut verified_by: Vec<VerifierKey> = Vec::new();
    for signature in &note.signatures {
        let mut matching = keys
            .iter()
            .filter(|k| k.key_id == signature.key_id && k.name == signature.name);
        let Some(key) = matching.next() else {
            continue;
        };
        if matching.any(|other| other != key) {
            return Err(NoteError::AmbiguousKey {
                name: key.name.clone(),
                key_id: key.key_id,
            });
        }
        if !key.verify(note.text.as_bytes(), &signature.signature) {
            return Err(NoteError::InvalidSignature {
                name: key.name.clone(),
                key_id: key.key_id,
            });
        }
        if !verified_by.contains(key) {
            verified_by.push(key.clone());
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok(VerifiedNote {
        text: note.text.clone(),
        verified_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Known-answer vectors of Go's golang.org/x/mod/sumdb/note package
    // (package documentation and note_test.go): the PeterNeumann key pair,
    // the EnochRoot verifier key, and a note they both signed.
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // The example of the C2SP signed-note specification (its key is not
    // published, so it only exercises parsing: the text holds an empty line).
    const C2SP_EXAMPLE: &str = "Ognuno sta solo sul cuor della terra\n\
        trafitto da un raggio di sole:\n\
        \n\
        ed è subito sera.\n\
        \n\
        — quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

    fn peter() -> VerifierKey {
        VerifierKey::parse(PETER_VKEY).unwrap()
    }

    fn enoch() -> VerifierKey {
        VerifierKey::parse(ENOCH_VKEY).unwrap()
    }

    #[test]
    fn peter_neumann_known_answers() {
        let vkey = peter();
        assert_eq!(vkey.name(), "PeterNeumann");
        assert_eq!(vkey.key_id(), 0xc74f20a3);
        assert_eq!(
            ed25519_key_id("PeterNeumann", vkey.public_key()),
            0xc74f20a3
        );
        assert_eq!(vkey.to_text(), PETER_VKEY);
        assert_eq!(vkey.to_string(), PETER_VKEY);

        let skey = SigningKey::parse(PETER_SKEY).unwrap();
        assert_eq!(skey.name(), "PeterNeumann");
        assert_eq!(skey.key_id(), 0xc74f20a3);
        assert_eq!(skey.to_text(), PETER_SKEY);
        assert_eq!(skey.verifier(), vkey);
        assert_eq!(skey.verifier().to_text(), PETER_VKEY);

        // Ed25519 is deterministic: signing reproduces the published note.
        let signed = sign(TEXT, &skey).unwrap();
        assert_eq!(signed, format!("{TEXT}\n{PETER_SIG}"));

        let note = Note::parse(&signed).unwrap();
        assert_eq!(note.text(), TEXT);
        assert_eq!(note.signatures().len(), 1);
        assert_eq!(note.signatures()[0].name(), "PeterNeumann");
        assert_eq!(note.signatures()[0].key_id(), 0xc74f20a3);
        assert_eq!(note.signatures()[0].signature().len(), 64);
        assert_eq!(note.to_text(), signed);
        let verified = open(&note, std::slice::from_ref(&vkey)).unwrap();
        assert_eq!(verified.text(), TEXT);
        assert_eq!(verified.verified_by(), &[vkey]);
        assert_eq!(verified.into_text(), TEXT);
    }

    #[test]
    fn enoch_root_cosignature_known_answers() {
        let signed = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let note = Note::parse(&signed).unwrap();
        assert_eq!(note.signatures()[1].key_id(), 0xaf0cfe78);

        let only_peter = open(&note, &[peter()]).unwrap();
        assert_eq!(only_peter.verified_by(), &[peter()]);
        let both = open(&note, &[enoch(), peter()]).unwrap();
        assert_eq!(both.verified_by(), &[peter(), enoch()]);
        // Listing the same key twice is harmless.
        open(&note, &[enoch(), peter(), enoch()]).unwrap();
        assert_eq!(open(&note, &[]), Err(NoteError::NoTrustedSignature));

        // Two different trusted keys claiming the same name and key ID.
        let mut impostor = peter();
        impostor.name = "EnochRoot".to_owned();
        impostor.key_id = 0xaf0cfe78;
        assert_eq!(
            open(&note, &[enoch(), impostor.clone()]),
            Err(NoteError::AmbiguousKey {
                name: "EnochRoot".to_owned(),
                key_id: 0xaf0cfe78
            })
        );
        // Unused ambiguity does not matter.
        let peter_only = Note::parse(&format!("{TEXT}\n{PETER_SIG}")).unwrap();
        open(&peter_only, &[enoch(), impostor, peter()]).unwrap();
    }

    #[test]
    fn c2sp_example_parses() {
        let note = Note::parse(C2SP_EXAMPLE).unwrap();
        assert_eq!(
            note.text(),
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
        );
        assert_eq!(note.signatures().len(), 1);
        assert_eq!(note.signatures()[0].name(), "quasimodo.example/salvatore");
        assert_eq!(note.signatures()[0].key_id(), 0x367ba04b);
        assert_eq!(note.signatures()[0].signature().len(), 64);
        assert_eq!(note.to_text(), C2SP_EXAMPLE);
        assert_eq!(open(&note, &[peter()]), Err(NoteError::NoTrustedSignature));
    }

    #[test]
    fn tampering_is_detected() {
        let signed = format!("{TEXT}\n{PETER_SIG}");
        let altered = signed.replace("cryptography", "cryptographY");
        let note = Note::parse(&altered).unwrap();
        let invalid = Err(NoteError::InvalidSignature {
            name: "PeterNeumann".to_owned(),
            key_id: 0xc74f20a3,
        });
        assert_eq!(open(&note, &[peter()]), invalid);

        // A longer signature (4 more base64 characters) by a known key.
        let (head, tail) = PETER_SIG.split_at(60);
        let longer = Note::parse(&format!("{TEXT}\n{head}ABCD{tail}")).unwrap();
        assert_eq!(open(&longer, &[peter()]), invalid);

        // A flipped signature bit.
        let mut sig = note.signatures()[0].clone();
        sig.signature[10] ^= 1;
        let flipped = Note::parse(&format!("{TEXT}\n{}\n", sig.to_line())).unwrap();
        assert_eq!(open(&flipped, &[peter()]), invalid);

        // A bad signature by a known key rejects the note even when another
        // trusted signature verifies.
        let mixed = format!("{TEXT}\n{PETER_SIG}{}\n", sig.to_line());
        assert_eq!(open(&Note::parse(&mixed).unwrap(), &[peter()]), invalid);

        // Signatures with the right name but another key ID (or the reverse)
        // are by unknown keys and are ignored.
        let renamed = format!(
            "{TEXT}\n{}",
            PETER_SIG.replace("PeterNeumann", "PeterNeuman")
        );
        assert_eq!(
            open(&Note::parse(&renamed).unwrap(), &[peter()]),
            Err(NoteError::NoTrustedSignature)
        );
        let mut other_id = note.signatures()[0].clone();
        other_id.key_id ^= 1;
        let reid = format!("{TEXT}\n{}\n{PETER_SIG}", other_id.to_line());
        open(&Note::parse(&reid).unwrap(), &[peter()]).unwrap();
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let line = |line, reason| Err(NoteError::MalformedSignatureLine { line, reason });
        let cases: Vec<(String, Result<Note, NoteError>)> = vec![
            (TEXT.to_owned(), Err(NoteError::MissingSignatures)),
            (format!("{TEXT}\n"), Err(NoteError::MissingSignatures)),
            (
                format!("{TEXT}\n{}", PETER_SIG.trim_end_matches('\n')),
                line(4, "does not end with a newline"),
            ),
            (
                format!("\u{1}{TEXT}\n{PETER_SIG}"),
                Err(NoteError::ControlCharacter { offset: 0, code: 1 }),
            ),
            (
                format!("{TEXT}\n{}", PETER_SIG.replace('\n', "\r\n")),
                Err(NoteError::ControlCharacter {
                    offset: TEXT.len() + 1 + PETER_SIG.len() - 1,
                    code: 13,
                }),
            ),
            (
                format!(
                    "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
                ),
                // The name ends at the first space.
                line(4, "has a signature that is not canonical standard base64"),
            ),
            (
                format!(
                    "{TEXT}\n— Bad+Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
                ),
                line(4, "has an invalid key name"),
            ),
            (
                format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
                line(5, "does not start with an em dash (U+2014) and a space"),
            ),
            (
                format!("{TEXT}\n- PeterNeumann AAAAAAA=\n"),
                line(4, "does not start with an em dash (U+2014) and a space"),
            ),
            (
                format!("{TEXT}\n— PeterNeumann\n"),
                line(4, "has no space between the key name and the signature"),
            ),
            (
                format!("{TEXT}\n— PeterNeumann x08go/ZJ!\n"),
                line(4, "has a signature that is not canonical standard base64"),
            ),
            (
                // Non-zero unused bits before the padding.
                format!(
                    "{TEXT}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAN=\n"
                ),
                line(4, "has a signature that is not canonical standard base64"),
            ),
            (
                format!("{TEXT}\n— PeterNeumann AAAAAA==\n"),
                line(
                    4,
                    "has a signature shorter than 5 bytes (a 4-byte key ID and a signature)",
                ),
            ),
            (
                format!(
                    "{TEXT}\n— PeterNeumann  x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
                ),
                line(4, "has a signature that is not canonical standard base64"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Note::parse(&text), expected, "{text:?}");
        }
        // Only the last empty line separates the signatures: anything before
        // it, even a line that looks like a signature, is text.
        let nested = Note::parse(&format!("{TEXT}\n{PETER_SIG}\n{PETER_SIG}")).unwrap();
        assert_eq!(nested.text(), format!("{TEXT}\n{PETER_SIG}"));
        assert_eq!(nested.signatures().len(), 1);
        assert!(matches!(
            open(&nested, &[peter()]),
            Err(NoteError::InvalidSignature { .. })
        ));
        assert_eq!(
            Note::from_bytes(format!("\u{ff}{TEXT}\n{PETER_SIG}").as_bytes()).map(|_| ()),
            Ok(())
        );
        let mut bad_utf8 = format!("{TEXT}\n{PETER_SIG}").into_bytes();
        bad_utf8[0] = 0xff;
        assert_eq!(Note::from_bytes(&bad_utf8), Err(NoteError::InvalidUtf8));
    }

    #[test]
    fn limits_are_enforced() {
        let hundred = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
        let note = Note::parse(&hundred).unwrap();
        assert_eq!(open(&note, &[peter()]).unwrap().verified_by().len(), 1);
        let too_many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
        assert_eq!(
            Note::parse(&too_many),
            Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
        let filler = "x".repeat(MAX_NOTE_SIZE);
        let huge = format!("{filler}\n\n{PETER_SIG}");
        assert_eq!(
            Note::parse(&huge),
            Err(NoteError::NoteTooLarge {
                size: huge.len(),
                max: MAX_NOTE_SIZE
            })
        );
        assert!(matches!(
            Note::from_bytes(huge.as_bytes()),
            Err(NoteError::NoteTooLarge { .. })
        ));
        let skey = SigningKey::parse(PETER_SKEY).unwrap();
        assert!(matches!(
            sign(&format!("{filler}\n"), &skey),
            Err(NoteError::NoteTooLarge { .. })
        ));
    }

    #[test]
    fn sign_checks_the_text() {
        let skey = SigningKey::parse(PETER_SKEY).unwrap();
        assert_eq!(sign("", &skey), Err(NoteError::TextNotNewlineTerminated));
        assert_eq!(sign("abc", &skey), Err(NoteError::TextNotNewlineTerminated));
        assert_eq!(
            sign("a\tb\n", &skey),
            Err(NoteError::ControlCharacter { offset: 1, code: 9 })
        );
        // Empty lines, including a final one, survive a round trip: the
        // signatures follow the note's last empty line.
        for text in ["\n", "\n\n", "a\n\nb\n", "a\n\n", "— x y\n\n— z\n"] {
            let signed = sign(text, &skey).unwrap();
            let verified = open(&Note::parse(&signed).unwrap(), &[peter()]).unwrap();
            assert_eq!(verified.text(), text);
        }
    }

    #[test]
    fn key_parsing_is_strict() {
        // Go's note_test.go manglings: every proper substring and every
        // single-byte increment of a valid key must be rejected.
        for key in [PETER_VKEY, ENOCH_VKEY] {
            let bytes = key.as_bytes();
            for i in 0..=bytes.len() {
                for j in i + 1..=bytes.len() {
                    if (i, j) != (0, bytes.len()) {
                        let part = String::from_utf8_lossy(&bytes[i..j]);
                        assert!(VerifierKey::parse(&part).is_err(), "{part}");
                    }
                }
            }
            for i in 0..bytes.len() {
                let mut mangled = bytes.to_vec();
                mangled[i] = mangled[i].wrapping_add(1);
                let mangled = String::from_utf8_lossy(&mangled);
                assert!(VerifierKey::parse(&mangled).is_err(), "{mangled}");
            }
        }
        let bytes = PETER_SKEY.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    let part = String::from_utf8_lossy(&bytes[i..j]);
                    assert!(SigningKey::parse(&part).is_err(), "{part}");
                }
            }
        }
        for i in 0..bytes.len() {
            let mut mangled = bytes.to_vec();
            mangled[i] = mangled[i].wrapping_add(1);
            let mangled = String::from_utf8_lossy(&mangled);
            assert!(SigningKey::parse(&mangled).is_err(), "{mangled}");
        }

        // Precise errors.
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            ),
            Err(NoteError::MalformedKey {
                reason: "the key material is not canonical standard base64"
            })
        );
        let mut long_key = vec![ALG_ED25519];
        long_key.extend_from_slice(&[9; 33]);
        assert_eq!(
            VerifierKey::parse(&format!(
                "PeterNeumann+c74f20a3+{}",
                BASE64.encode(long_key)
            )),
            Err(NoteError::InvalidKeyLength {
                expected: 32,
                actual: 33
            })
        );
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::UnsupportedAlgorithm { algorithm: 0x65 })
        );
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::KeyIdMismatch {
                stated: 0xc74f20a4,
                computed: 0xc74f20a3
            })
        );
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::MalformedKey {
                reason: "the key ID is not 8 lowercase hexadecimal digits"
            })
        );
        assert_eq!(
            VerifierKey::parse("PeterNeumann+c74f20a3"),
            Err(NoteError::MalformedKey {
                reason: "expected <name>+<key ID>+<base64 key>"
            })
        );
        assert_eq!(
            VerifierKey::parse("PeterNeumann+c74f20a3+"),
            Err(NoteError::MalformedKey {
                reason: "the key material is empty"
            })
        );
        assert_eq!(
            SigningKey::parse(PETER_VKEY).map(|_| ()),
            Err(NoteError::MalformedKey {
                reason: "a signing key must start with PRIVATE+KEY+"
            })
        );
        assert_eq!(
            SigningKey::parse(
                "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
            )
            .map(|_| ()),
            Err(NoteError::KeyIdMismatch {
                stated: 0xc74f20a4,
                computed: 0xc74f20a3
            })
        );
        // The identity point (small order) cannot be a verifier key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerifierKey::new("weak", &identity),
            Err(NoteError::InvalidPublicKey)
        );
    }

    #[test]
    fn key_names() {
        for good in ["a", "example.com/log", "sum.golang.org", "ünïcødé"] {
            validate_key_name(good).unwrap();
            SigningKey::from_seed(good, &[7; 32]).unwrap();
        }
        for (bad, reason) in [
            ("", "is empty"),
            ("a+b", "contains '+'"),
            ("a b", "contains white space"),
            ("a\u{a0}b", "contains white space"),
            ("a\u{2003}b", "contains white space"),
            ("a\nb", "contains white space"),
            ("a\u{0}b", "contains a control character"),
            ("a\u{7f}b", "contains a control character"),
        ] {
            assert_eq!(
                validate_key_name(bad),
                Err(NoteError::InvalidKeyName { reason }),
                "{bad:?}"
            );
            assert!(SigningKey::from_seed(bad, &[7; 32]).is_err());
        }
    }

    #[test]
    fn signing_key_debug_hides_the_seed() {
        let skey = SigningKey::from_seed("example.com/log", &[0x42; 32]).unwrap();
        let debug = format!("{skey:?}");
        assert!(debug.contains("example.com/log"));
        assert!(debug.contains(&format!("{:08x}", skey.key_id())));
        let seed_b64 = BASE64.encode([0x42u8; 32]);
        assert!(!debug.contains(&seed_b64[..10]));
        assert!(!debug.contains("4242"));
        assert!(!debug.contains("66, 66"));
    }

    proptest! {
        // Ed25519 is slow in unoptimised test builds: keep the case count low.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn sign_open_round_trip(
            name in "[a-z0-9./_-]{1,30}",
            seed in any::<[u8; 32]>(),
            lines in proptest::collection::vec("[^\\x00-\\x1f]{0,40}", 1..6),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let skey = SigningKey::from_seed(&name, &seed).unwrap();
            let reparsed = SigningKey::parse(&skey.to_text()).unwrap();
            prop_assert_eq!(reparsed.verifier(), skey.verifier());
            let vkey = VerifierKey::parse(&skey.verifier().to_text()).unwrap();
            prop_assert_eq!(&vkey, &skey.verifier());
            let signed = sign(&text, &skey).unwrap();
            let note = Note::parse(&signed).unwrap();
            prop_assert_eq!(note.text(), text.as_str());
            prop_assert_eq!(note.to_text(), signed.clone());
            let verified = open(&note, std::slice::from_ref(&vkey)).unwrap();
            prop_assert_eq!(verified.text(), text.as_str());
            // Any change to the text breaks the signature.
            let altered = signed.replacen('\n', " \n", 1);
            let altered = Note::parse(&altered).unwrap();
            prop_assert!(
                matches!(open(&altered, &[vkey]), Err(NoteError::InvalidSignature { .. })),
                "altered text verified"
            );
        }

    }

    proptest! {
        #[test]
        fn parsers_never_panic(input in "\\PC*") {
            let _ = Note::parse(&input);
            let _ = Note::from_bytes(input.as_bytes());
            let _ = VerifierKey::parse(&input);
            let _ = SigningKey::parse(&input);
        }

        #[test]
        fn note_parser_never_panics_on_note_like_input(
            input in "([a-zA-Z0-9+/= ]{0,12}|\u{2014} |\n|\n\n){0,40}",
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            if let Ok(note) = Note::parse(&input) {
                let _ = open(&note, &[peter()]);
                prop_assert_eq!(Note::parse(&note.to_text()).unwrap(), note);
            }
            let _ = Note::from_bytes(&bytes);
        }
    }
}
