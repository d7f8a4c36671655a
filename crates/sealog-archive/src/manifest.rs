//! The manifest of an upload round: what the round added to the archive and
//! the proofs that tie it to the log and to the round before.
//!
//! A manifest is one JSON object (UTF-8, no insignificant white space,
//! fields in the order of [`Manifest`], hashes in lowercase hex, one `\n`
//! at the end). Readers refuse unknown fields, and refuse a manifest whose
//! bytes are not the canonical encoding of what they parse to, so each
//! manifest has exactly one byte form and its SHA-256 names it. The
//! field-by-field specification is `docs/archive.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The value of the `format` field.
pub const FORMAT: &str = "sealog-archive-manifest";
/// The manifest version this crate writes and reads.
pub const VERSION: u64 = 1;

/// A manifest (version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u64,
    /// The round number: 1 for the first manifest, then +1 each round.
    pub round: u64,
    /// The store id (32 hex digits) from the segments' headers.
    pub store_id: String,
    /// The log's origin (the signing key's name).
    pub origin: String,
    /// The manifest of the round before (absent in round 1).
    pub previous: Option<ObjectRef>,
    /// Records archived before this round (the previous `tree_size`).
    pub from_size: u64,
    /// Records archived after this round: every record `0 .. tree_size`.
    pub tree_size: u64,
    /// RFC 9162 root of the first `tree_size` records (hex).
    pub root: String,
    /// Chain value after record `tree_size - 1` (hex).
    pub chain_head: String,
    /// The objects this round uploaded, in upload order.
    pub objects: Vec<ObjectEntry>,
    /// The signed checkpoint that covers `tree_size`.
    pub checkpoint: CheckpointRef,
    /// RFC 9162 consistency proof from `tree_size` to the checkpoint's
    /// size (hex hashes; empty when they are equal).
    pub checkpoint_proof: Vec<String>,
    /// RFC 9162 consistency proof from the previous manifest's checkpoint
    /// to this one's (empty in round 1 or when the sizes are equal).
    pub previous_checkpoint_proof: Vec<String>,
    /// When the manifest was written (RFC 3339, UTC); informational.
    pub written_at: String,
    /// The Object Lock retention requested for this round's objects, if any.
    pub lock: Option<LockRecord>,
}

/// A reference to another object by name and content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// Object name relative to the archive prefix.
    pub name: String,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
}

/// An object uploaded by a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEntry {
    /// Object name relative to the archive prefix.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
}

/// The checkpoint a manifest relies on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// `checkpoints/<size>`.
    pub name: String,
    /// SHA-256 of the object's bytes (hex).
    pub sha256: String,
    /// The tree size it commits to.
    pub size: u64,
    /// The signed note, verbatim (the object's bytes as UTF-8).
    pub text: String,
}

/// Object Lock retention requested for a round's objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRecord {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// Retain-until date sent with each object (RFC 3339, UTC).
    pub retain_until: String,
}

/// Why manifest bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the manifest's shape.
    #[error("is not a version-1 manifest: {0}")]
    Shape(String),
    /// Another format or version.
    #[error(
        "has format `{format}` version {version}; this reader knows `{FORMAT}` version {VERSION}"
    )]
    Version {
        /// The format field found.
        format: String,
        /// The version found.
        version: u64,
    },
    /// Valid JSON, but not its canonical encoding.
    #[error("is not in canonical form (re-encoding it gives other bytes)")]
    NotCanonical,
}

impl Manifest {
    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs of strings, numbers and vectors cannot
        // fail; an empty document would be refused by every reader.
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses canonical manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let body = bytes
            .strip_suffix(b"\n")
            .ok_or_else(|| ManifestError::Shape("does not end with a newline".into()))?;
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ManifestError::Shape(e.to_string()))?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if format != FORMAT || version != VERSION {
            return Err(ManifestError::Version {
                format: format.to_owned(),
                version,
            });
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| ManifestError::Shape(e.to_string()))?;
        if manifest.to_bytes() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(manifest)
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex of a hash.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

/// A hash from lowercase hex.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            round: 1,
            store_id: "00".repeat(16),
            origin: "example.com/log".into(),
            previous: None,
            from_size: 0,
            tree_size: 3,
            root: "11".repeat(32),
            chain_head: "22".repeat(32),
            objects: vec![ObjectEntry {
                name: "segments/00000000000000000000.seg".into(),
                size: 10,
                sha256: "33".repeat(32),
            }],
            checkpoint: CheckpointRef {
                name: "checkpoints/00000000000000000003".into(),
                sha256: "44".repeat(32),
                size: 3,
                text: "example.com/log\n3\n...\n".into(),
            },
            checkpoint_proof: vec![],
            previous_checkpoint_proof: vec![],
            written_at: "2026-12-03T08:00:00Z".into(),
            lock: None,
        }
    }

    #[test]
    fn a_manifest_round_trips_through_its_canonical_bytes() {
        let m = sample();
        let bytes = m.to_bytes();
        assert!(bytes.starts_with(b"{\"format\":\"sealog-archive-manifest\",\"version\":1,"));
        assert_eq!(Manifest::parse(&bytes).ok(), Some(m));
    }

    #[test]
    fn a_reformatted_or_extended_manifest_is_refused() {
        let bytes = sample().to_bytes();
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let mut pretty = serde_json::to_vec_pretty(&value).unwrap_or_default();
        pretty.push(b'\n');
        assert!(matches!(
            Manifest::parse(&pretty),
            Err(ManifestError::NotCanonical)
        ));
        let extended = String::from_utf8_lossy(&bytes).replacen('{', "{\"extra\":1,", 1);
        assert!(matches!(
            Manifest::parse(extended.as_bytes()),
            Err(ManifestError::Shape(_))
        ));
        let newer = String::from_utf8_lossy(&bytes).replacen("\"version\":1", "\"version\":2", 1);
        assert!(matches!(
            Manifest::parse(newer.as_bytes()),
            Err(ManifestError::Version { version: 2, .. })
        ));
    }
}
