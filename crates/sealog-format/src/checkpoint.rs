//! Checkpoints (C2SP `tlog-checkpoint`): signed statements of a log's tree
//! size and root hash.
//!
//! A checkpoint is the text of a signed note (see [`crate::note`]) made of
//! at least three non-empty lines, each ending in a newline:
//!
//! ```text
//! <origin>
//! <tree size, ASCII decimal without leading zeros>
//! <base64 of the 32-byte RFC 9162 root hash>
//! <zero or more extension lines>
//! ```
//!
//! sealog names its signing key after its origin, so [`open`] requires the
//! checkpoint's origin to equal the key name; [`open_with_origin`] verifies
//! checkpoints of logs whose key name differs from their origin.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::merkle::Hash;
use crate::note::{self, Note, NoteError, SigningKey, VerifierKey};

/// Why a checkpoint could not be built, parsed, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The checkpoint text is empty or does not end with a newline.
    #[error("checkpoint text must end with a newline")]
    MissingFinalNewline,
    /// The checkpoint has fewer than the three mandatory lines.
    #[error("checkpoint has {lines} lines but needs at least 3 (origin, tree size, root hash)")]
    TooFewLines {
        /// The number of lines found.
        lines: usize,
    },
    /// The origin line is empty.
    #[error("checkpoint origin (line 1) is empty")]
    EmptyOrigin,
    /// The tree size line is not a canonical decimal number.
    #[error("checkpoint tree size (line 2) {reason}")]
    InvalidSize {
        /// What is wrong with the line.
        reason: &'static str,
    },
    /// The root hash line is not the base64 encoding of 32 bytes.
    #[error("checkpoint root hash (line 3) {reason}")]
    InvalidRootHash {
        /// What is wrong with the line.
        reason: &'static str,
    },
    /// An extension line is empty.
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtensionLine {
        /// The 1-based line number.
        line: usize,
    },
    /// A line contains a control character (including a newline inside a
    /// field of a [`Checkpoint`] being serialised).
    #[error("checkpoint line {line} contains a control character")]
    ControlCharacter {
        /// The 1-based line number.
        line: usize,
    },
    /// The checkpoint's origin is not the expected one (for [`open`] and
    /// [`sign`]: the key name).
    #[error("checkpoint origin {found:?} is not the expected origin {expected:?}")]
    OriginMismatch {
        /// The expected origin.
        expected: String,
        /// The origin found in the checkpoint.
        found: String,
    },
    /// The signed note carrying the checkpoint is malformed, or its
    /// signature does not verify.
    #[error("checkpoint signature: {0}")]
    Note(#[from] NoteError),
}

/// A log checkpoint: the log's origin, its tree size and root hash, and
/// optional extension lines (sealog uses extension lines; see its format
/// documentation for their content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The unique identifier of the log (for sealog also its key name).
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 9162 Merkle Tree Hash of the tree.
    pub root: Hash,
    /// Extension lines, without their newlines; each must be non-empty.
    pub extensions: Vec<String>,
}

/// Parses an ASCII decimal number without sign or leading zeros ("0" is
/// allowed) that fits in 64 bits.
pub(crate) fn parse_decimal(text: &str) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("is empty");
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not an unsigned decimal number");
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err("has a leading zero");
    }
    text.parse::<u64>()
        .map_err(|_| "does not fit in 64 bits (at most 18446744073709551615)")
}

/// Decodes the canonical standard base64 encoding of a 32-byte hash.
pub(crate) fn decode_hash(text: &str) -> Result<Hash, &'static str> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| "is not canonical standard base64")?;
    Hash::try_from(bytes.as_slice()).map_err(|_| "does not decode to exactly 32 bytes")
}

/// Encodes a hash in standard base64.
pub(crate) fn encode_hash(hash: &Hash) -> String {
    BASE64.encode(hash)
}

fn has_control(line: &str) -> bool {
    line.chars().any(char::is_control)
}

impl Checkpoint {
    /// Checks that the fields serialise to a valid checkpoint: a non-empty
    /// origin, non-empty extension lines, and no control characters
    /// (newlines included) in either.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::EmptyOrigin`],
    /// [`CheckpointError::EmptyExtensionLine`] or
    /// [`CheckpointError::ControlCharacter`], with line numbers as in the
    /// serialised text.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        if has_control(&self.origin) {
            return Err(CheckpointError::ControlCharacter { line: 1 });
        }
        for (line, extension) in (4..).zip(&self.extensions) {
            if extension.is_empty() {
                return Err(CheckpointError::EmptyExtensionLine { line });
            }
            if has_control(extension) {
                return Err(CheckpointError::ControlCharacter { line });
            }
        }
        Ok(())
    }

    /// The checkpoint text: origin, size, base64 root and extension lines,
    /// each followed by a newline. The result is only a valid checkpoint if
    /// [`Checkpoint::validate`] succeeds.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            encode_hash(&self.root)
        );
        for extension in &self.extensions {
            text.push_str(extension);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint text (the text of a signed note, not the signed
    /// note itself). Parsing is strict: the text ends with a newline, the
    /// origin is non-empty, the size is decimal without sign or leading
    /// zeros, the root is canonical standard base64 of exactly 32 bytes,
    /// extension lines are non-empty, and no line holds a control character.
    ///
    /// # Errors
    ///
    /// The [`CheckpointError`] variant naming the first problem found.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        if let Some(line) = (1..)
            .zip(&lines)
            .find_map(|(n, l)| has_control(l).then_some(n))
        {
            return Err(CheckpointError::ControlCharacter { line });
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_decimal(size).map_err(|reason| CheckpointError::InvalidSize { reason })?;
        let root =
            decode_hash(root).map_err(|reason| CheckpointError::InvalidRootHash { reason })?;
        if let Some(line) = (4..)
            .zip(extensions)
            .find_map(|(n, l)| l.is_empty().then_some(n))
        {
            return Err(CheckpointError::EmptyExtensionLine { line });
        }
        Ok(Self {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|l| (*l).to_owned()).collect(),
        })
    }
}

/// Signs a checkpoint and returns the signed note.
///
/// # Errors
///
/// The errors of [`Checkpoint::validate`],
/// [`CheckpointError::OriginMismatch`] if the key name is not the
/// checkpoint's origin, and [`CheckpointError::Note`] if the note would be
/// too large.
pub fn sign(checkpoint: &Checkpoint, key: &SigningKey) -> Result<String, CheckpointError> {
    checkpoint.validate()?;
    if checkpoint.origin != key.name() {
        return Err(CheckpointError::OriginMismatch {
            expected: key.name().to_owned(),
            found: checkpoint.origin.clone(),
        });
    }
    Ok(note::sign(&checkpoint.to_text(), key)?)
}

/// Verifies a signed checkpoint against the log's key and parses it; the
/// checkpoint's origin must equal the key name.
///
/// # Errors
///
/// [`CheckpointError::Note`] if the signed note is malformed or not validly
/// signed by `key`, the errors of [`Checkpoint::parse`], and
/// [`CheckpointError::OriginMismatch`] if the origin is not the key name.
pub fn open(signed: &str, key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
    open_with_origin(signed, key, key.name())
}

/// Verifies a signed checkpoint against the log's key and parses it,
/// requiring the given origin (for logs whose key name is not their origin).
///
/// # Errors
///
/// As [`open`], with `origin` as the expected origin.
pub fn open_with_origin(
    signed: &str,
    key: &VerifierKey,
    origin: &str,
) -> Result<Checkpoint, CheckpointError> {
    let note = Note::parse(signed)?;
    let verified = note::open(&note, std::slice::from_ref(key))?;
    let checkpoint = Checkpoint::parse(verified.text())?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::OriginMismatch {
            expected: origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::empty_root;
    use proptest::prelude::*;

    // The verifier key of sum.golang.org pinned in the Go toolchain
    // (cmd/go/internal/modfetch/key.go). Its base64 holds '+' characters.
    const SUMDB_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

    // Signed tree heads served by sum.golang.org (their origin line is
    // "go.sum database tree", not the key name). The first is quoted in
    // transparency-dev/trillian-tessera's internal/parse/checkpoint_test.go
    // (without its final newline there), the second in a public Go sumdb
    // client test. Only the holder of the sumdb key can have produced them.
    const SUMDB_CHECKPOINTS: [(&str, u64, &str); 2] = [
        (
            "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n\u{2014} sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n",
            31700353,
            "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=",
        ),
        (
            "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n\u{2014} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
            65209736,
            "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
        ),
    ];

    // The example of the C2SP tlog-checkpoint specification (its key is not
    // published: parsing only).
    const C2SP_EXAMPLE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    fn test_key(name: &str) -> SigningKey {
        SigningKey::from_seed(name, &[0x5e; 32]).unwrap()
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "example.com/sealog".to_owned(),
            size: 42,
            root: [0xab; 32],
            extensions: vec!["sealog-ext 1".to_owned()],
        }
    }

    #[test]
    fn sumdb_known_answers() {
        let key = VerifierKey::parse(SUMDB_KEY).unwrap();
        assert_eq!(key.name(), "sum.golang.org");
        assert_eq!(key.key_id(), 0x033de0ae);
        for (signed, size, root) in SUMDB_CHECKPOINTS {
            let checkpoint = open_with_origin(signed, &key, "go.sum database tree").unwrap();
            assert_eq!(checkpoint.origin, "go.sum database tree");
            assert_eq!(checkpoint.size, size);
            assert_eq!(encode_hash(&checkpoint.root), root);
            assert!(checkpoint.extensions.is_empty());
            // The key name is not the origin.
            assert_eq!(
                open(signed, &key),
                Err(CheckpointError::OriginMismatch {
                    expected: "sum.golang.org".to_owned(),
                    found: "go.sum database tree".to_owned()
                })
            );
            // Any other size breaks the signature.
            let forged = signed.replace(&size.to_string(), &(size + 1).to_string());
            assert!(matches!(
                open_with_origin(&forged, &key, "go.sum database tree"),
                Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
            ));
        }
    }

    #[test]
    fn c2sp_example_parses() {
        let note = Note::parse(C2SP_EXAMPLE).unwrap();
        let checkpoint = Checkpoint::parse(note.text()).unwrap();
        assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size, 20852163);
        assert_eq!(
            encode_hash(&checkpoint.root),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        assert_eq!(checkpoint.to_text(), note.text());
    }

    #[test]
    fn sign_and_open() {
        let key = test_key("example.com/sealog");
        let checkpoint = sample();
        let signed = sign(&checkpoint, &key).unwrap();
        assert!(signed.starts_with(
            "example.com/sealog\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\nsealog-ext 1\n\n\u{2014} example.com/sealog "
        ));
        assert_eq!(open(&signed, &key.verifier()).unwrap(), checkpoint);

        let other = test_key("example.com/other");
        assert_eq!(
            sign(&checkpoint, &other),
            Err(CheckpointError::OriginMismatch {
                expected: "example.com/other".to_owned(),
                found: "example.com/sealog".to_owned()
            })
        );
        assert_eq!(
            open(&signed, &other.verifier()),
            Err(CheckpointError::Note(NoteError::NoTrustedSignature))
        );
        let tampered = signed.replace("sealog-ext 1", "sealog-ext 2");
        assert!(matches!(
            open(&tampered, &key.verifier()),
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        ));

        // The empty tree.
        let empty = Checkpoint {
            origin: "example.com/sealog".to_owned(),
            size: 0,
            root: empty_root(),
            extensions: Vec::new(),
        };
        let signed = sign(&empty, &key).unwrap();
        assert!(signed.starts_with(
            "example.com/sealog\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
        ));
        assert_eq!(open(&signed, &key.verifier()).unwrap(), empty);
    }

    #[test]
    fn a_validly_signed_malformed_checkpoint_is_rejected() {
        let key = test_key("example.com/sealog");
        let signed = note::sign("example.com/sealog\n042\nAAAA\n", &key).unwrap();
        assert_eq!(
            open(&signed, &key.verifier()),
            Err(CheckpointError::InvalidSize {
                reason: "has a leading zero"
            })
        );
    }

    #[test]
    fn validate_rejects_unserialisable_fields() {
        let key = test_key("example.com/sealog");
        let mut c = sample();
        c.origin = String::new();
        assert_eq!(sign(&c, &key), Err(CheckpointError::EmptyOrigin));
        c.origin = "example.com/sealog\n7".to_owned();
        assert_eq!(
            sign(&c, &key),
            Err(CheckpointError::ControlCharacter { line: 1 })
        );
        let mut c = sample();
        c.extensions.push(String::new());
        assert_eq!(
            sign(&c, &key),
            Err(CheckpointError::EmptyExtensionLine { line: 5 })
        );
        let mut c = sample();
        c.extensions = vec!["a\nb".to_owned()];
        assert_eq!(
            sign(&c, &key),
            Err(CheckpointError::ControlCharacter { line: 4 })
        );
        let mut c = sample();
        c.extensions = vec!["tab\there".to_owned()];
        assert_eq!(
            c.validate(),
            Err(CheckpointError::ControlCharacter { line: 4 })
        );
    }

    #[test]
    fn parsing_is_strict() {
        let root = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
        let ok = |text: &str| Checkpoint::parse(text).unwrap();
        assert_eq!(ok(&format!("o\n0\n{root}\n")).size, 0);
        assert_eq!(
            ok(&format!("o\n18446744073709551615\n{root}\n")).size,
            u64::MAX
        );
        assert_eq!(
            ok(&format!("o r i g i n\n7\n{root}\ne 1\ne+2\n")).extensions,
            vec!["e 1", "e+2"]
        );
        let size = |reason| Err(CheckpointError::InvalidSize { reason });
        let hash = |reason| Err(CheckpointError::InvalidRootHash { reason });
        let cases: Vec<(String, Result<Checkpoint, CheckpointError>)> = vec![
            (String::new(), Err(CheckpointError::MissingFinalNewline)),
            (
                format!("o\n1\n{root}"),
                Err(CheckpointError::MissingFinalNewline),
            ),
            (
                "o\n1\n".to_owned(),
                Err(CheckpointError::TooFewLines { lines: 2 }),
            ),
            (
                "\n".to_owned(),
                Err(CheckpointError::TooFewLines { lines: 1 }),
            ),
            (format!("\n1\n{root}\n"), Err(CheckpointError::EmptyOrigin)),
            (format!("o\n\n{root}\n"), size("is empty")),
            (format!("o\n01\n{root}\n"), size("has a leading zero")),
            (format!("o\n00\n{root}\n"), size("has a leading zero")),
            (
                format!("o\n+1\n{root}\n"),
                size("is not an unsigned decimal number"),
            ),
            (
                format!("o\n-1\n{root}\n"),
                size("is not an unsigned decimal number"),
            ),
            (
                format!("o\n 1\n{root}\n"),
                size("is not an unsigned decimal number"),
            ),
            (
                format!("o\n1 \n{root}\n"),
                size("is not an unsigned decimal number"),
            ),
            (
                format!("o\n0x1\n{root}\n"),
                size("is not an unsigned decimal number"),
            ),
            (
                format!("o\n\u{661}\n{root}\n"),
                size("is not an unsigned decimal number"),
            ),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                size("does not fit in 64 bits (at most 18446744073709551615)"),
            ),
            (
                "o\n1\n\n".to_owned(),
                hash("does not decode to exactly 32 bytes"),
            ),
            (
                "o\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s\n".to_owned(),
                hash("is not canonical standard base64"),
            ),
            (
                "o\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6t=\n".to_owned(),
                hash("is not canonical standard base64"),
            ),
            (
                "o\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6-=\n".to_owned(),
                hash("is not canonical standard base64"),
            ),
            (
                "o\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urqw==\n".to_owned(),
                hash("does not decode to exactly 32 bytes"),
            ),
            (
                "o\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urqw==\n".to_owned(),
                hash("does not decode to exactly 32 bytes"),
            ),
            (
                format!("o\n1\n {root}\n"),
                hash("is not canonical standard base64"),
            ),
            (
                format!("o\n1\n{root}\n\n"),
                Err(CheckpointError::EmptyExtensionLine { line: 4 }),
            ),
            (
                format!("o\n1\n{root}\ne\n\nf\n"),
                Err(CheckpointError::EmptyExtensionLine { line: 5 }),
            ),
            (
                format!("o\n1\n{root}\ne\u{7f}\n"),
                Err(CheckpointError::ControlCharacter { line: 4 }),
            ),
            (
                format!("o\r\n1\n{root}\n"),
                Err(CheckpointError::ControlCharacter { line: 1 }),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Checkpoint::parse(&text), expected, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn text_round_trip(
            origin in "[^\\p{Cc}]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in proptest::collection::vec("[^\\p{Cc}]{1,20}", 0..4),
        ) {
            let checkpoint = Checkpoint { origin, size, root, extensions };
            checkpoint.validate().unwrap();
            prop_assert_eq!(Checkpoint::parse(&checkpoint.to_text()).unwrap(), checkpoint);
        }

        #[test]
        fn parse_never_panics(text in "\\PC*", lines in "([0-9a-zA-Z+/=]{0,8}\n){0,6}") {
            let _ = Checkpoint::parse(&text);
            let _ = Checkpoint::parse(&lines);
        }
    }
}
