//! Receipts: offline-verifiable proofs that a record is in the log, in the
//! C2SP `tlog-proof@v1` format.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the record bytes>          (optional)
//! index <leaf index, decimal without leading zeros>
//! <base64 inclusion proof hash, one per line, from the leaf's sibling up>
//! <empty line>
//! <the signed checkpoint, verbatim>
//! ```
//!
//! In sealog the log entry (the Merkle leaf) is the exact bytes of a record,
//! and a receipt may carry those bytes in its `extra` line. The extra data is
//! not authenticated by itself: it only becomes trustworthy once it has been
//! verified as the entry ([`Receipt::verify_extra_as_entry`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{
    self, Checkpoint, CheckpointError, decode_hash, encode_hash, parse_decimal,
};
use crate::merkle::{self, Hash, ProofError};
use crate::note::{Note, NoteError, VerifierKey};

/// The first line of every receipt.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The largest receipt accepted by [`Receipt::parse`], in bytes (16 MiB),
/// which bounds the size of the `extra` data as well.
pub const MAX_RECEIPT_SIZE: usize = 16 << 20;

/// The largest number of inclusion proof hashes accepted by
/// [`Receipt::parse`]: no tree of at most `u64::MAX` leaves needs more.
pub const MAX_PROOF_HASHES: usize = 64;

/// Why a receipt could not be parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The receipt is larger than [`MAX_RECEIPT_SIZE`].
    #[error("receipt is {size} bytes long, more than the limit of {max} bytes")]
    TooLarge {
        /// The size of the receipt in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The receipt is not valid UTF-8.
    #[error("receipt is not valid UTF-8")]
    InvalidUtf8,
    /// The first line is not `c2sp.org/tlog-proof@v1`.
    #[error("line 1 is not the receipt header {HEADER:?}")]
    BadHeader,
    /// The `extra` line does not hold canonical standard base64.
    #[error("line {line}: the extra data is not canonical standard base64")]
    BadExtra {
        /// The 1-based line number.
        line: usize,
    },
    /// The index line is missing or malformed.
    #[error("line {line} must be \"index <decimal>\": it {reason}")]
    BadIndexLine {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: &'static str,
    },
    /// An inclusion proof line is not the base64 encoding of a 32-byte hash.
    #[error("line {line}: the inclusion proof hash {reason}")]
    BadProofHash {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: &'static str,
    },
    /// The receipt has more than [`MAX_PROOF_HASHES`] proof hashes.
    #[error("receipt holds more than {max} inclusion proof hashes")]
    TooManyProofHashes {
        /// The limit.
        max: usize,
    },
    /// No empty line followed by a signed checkpoint ends the receipt.
    #[error("receipt has no empty line followed by a signed checkpoint after the proof hashes")]
    MissingCheckpoint,
    /// The signed note carrying the checkpoint is malformed, or its
    /// signature does not verify against the log's key. Line numbers count
    /// from the first line of the checkpoint.
    #[error("checkpoint signature: {0}")]
    Signature(NoteError),
    /// The checkpoint text is malformed or its origin is not the log's.
    /// Line numbers count from the first line of the checkpoint.
    #[error("{0}")]
    Checkpoint(CheckpointError),
    /// The inclusion proof does not prove the entry at the index in the
    /// checkpoint's tree.
    #[error("inclusion proof does not verify: {0}")]
    Proof(#[from] ProofError),
    /// The receipt carries no extra data to verify as the entry.
    #[error("receipt has no extra line holding the entry")]
    MissingExtra,
}

impl From<CheckpointError> for ReceiptError {
    fn from(error: CheckpointError) -> Self {
        match error {
            CheckpointError::Note(error) => Self::Signature(error),
            other => Self::Checkpoint(other),
        }
    }
}

/// A parsed receipt. Nothing in it is trusted before one of the `verify`
/// methods succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Optional opaque data; in sealog the exact bytes of the record.
    pub extra: Option<Vec<u8>>,
    /// The 0-based index of the entry in the log.
    pub index: u64,
    /// The RFC 9162 inclusion proof of the entry in the checkpoint's tree,
    /// from the leaf's sibling up to a child of the root.
    pub proof: Vec<Hash>,
    /// The signed checkpoint (a signed note), verbatim, ending in a newline.
    pub checkpoint: String,
}

/// Splits the next line off `rest`, or returns `None` when `rest` has no
/// newline.
fn next_line<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (line, tail) = rest.split_once('\n')?;
    *rest = tail;
    Some(line)
}

impl Receipt {
    /// The receipt's text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.checkpoint.len() + 64 + 45 * self.proof.len());
        text.push_str(HEADER);
        text.push('\n');
        if let Some(extra) = &self.extra {
            text.push_str("extra ");
            text.push_str(&BASE64.encode(extra));
            text.push('\n');
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            text.push_str(&encode_hash(hash));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a receipt strictly: the header line, an optional
    /// `extra <base64>` line (canonical standard base64, possibly empty), an
    /// `index <decimal>` line (no sign, no leading zeros), at most
    /// [`MAX_PROOF_HASHES`] lines each holding the canonical standard base64
    /// of a 32-byte hash, an empty line, and a syntactically valid signed
    /// checkpoint. The whole receipt is at most [`MAX_RECEIPT_SIZE`] bytes.
    ///
    /// Signatures and the proof are not verified here.
    ///
    /// # Errors
    ///
    /// The [`ReceiptError`] variant naming the first problem and its line.
    pub fn parse(text: &str) -> Result<Self, ReceiptError> {
        if text.len() > MAX_RECEIPT_SIZE {
            return Err(ReceiptError::TooLarge {
                size: text.len(),
                max: MAX_RECEIPT_SIZE,
            });
        }
        let mut rest = text;
        if next_line(&mut rest) != Some(HEADER) {
            return Err(ReceiptError::BadHeader);
        }
        let mut line_number = 2;
        let mut line = next_line(&mut rest);
        let mut extra = None;
        if let Some(encoded) = line.and_then(|l| l.strip_prefix("extra ")) {
            extra = Some(
                BASE64
                    .decode(encoded)
                    .map_err(|_| ReceiptError::BadExtra { line: line_number })?,
            );
            line_number += 1;
            line = next_line(&mut rest);
        }
        let bad_index = |reason| ReceiptError::BadIndexLine {
            line: line_number,
            reason,
        };
        let index_text = line
            .ok_or(bad_index("is missing"))?
            .strip_prefix("index ")
            .ok_or(bad_index("does not start with \"index \""))?;
        let index = parse_decimal(index_text).map_err(bad_index)?;

        let mut proof = Vec::new();
        loop {
            line_number += 1;
            let line = next_line(&mut rest).ok_or(ReceiptError::MissingCheckpoint)?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_HASHES {
                return Err(ReceiptError::TooManyProofHashes {
                    max: MAX_PROOF_HASHES,
                });
            }
            proof.push(
                decode_hash(line).map_err(|reason| ReceiptError::BadProofHash {
                    line: line_number,
                    reason,
                })?,
            );
        }
        if rest.is_empty() {
            return Err(ReceiptError::MissingCheckpoint);
        }
        let note = Note::parse(rest).map_err(ReceiptError::Signature)?;
        Checkpoint::parse(note.text()).map_err(ReceiptError::Checkpoint)?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint: rest.to_owned(),
        })
    }

    /// Parses a receipt given as bytes (see [`Receipt::parse`]).
    ///
    /// # Errors
    ///
    /// [`ReceiptError::TooLarge`], [`ReceiptError::InvalidUtf8`], and the
    /// errors of [`Receipt::parse`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > MAX_RECEIPT_SIZE {
            return Err(ReceiptError::TooLarge {
                size: bytes.len(),
                max: MAX_RECEIPT_SIZE,
            });
        }
        Self::parse(std::str::from_utf8(bytes).map_err(|_| ReceiptError::InvalidUtf8)?)
    }

    /// Verifies that `entry` is the log entry at [`Receipt::index`]: first
    /// the checkpoint's signature by the log's key (whose name must be the
    /// checkpoint's origin), then the inclusion of `leaf_hash(entry)` at the
    /// index in the checkpoint's tree. Returns the verified checkpoint.
    ///
    /// # Errors
    ///
    /// [`ReceiptError::Signature`] if the checkpoint is not validly signed by
    /// `key`, [`ReceiptError::Checkpoint`] if its text is malformed or its
    /// origin is not the key name, and [`ReceiptError::Proof`] if the proof
    /// does not place the entry at the index in that tree.
    pub fn verify_entry(
        &self,
        entry: &[u8],
        key: &VerifierKey,
    ) -> Result<Checkpoint, ReceiptError> {
        let checkpoint = checkpoint::open(&self.checkpoint, key)?;
        merkle::verify_inclusion(
            &merkle::leaf_hash(entry),
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(checkpoint)
    }

    /// Verifies the receipt's extra data as the entry (see
    /// [`Receipt::verify_entry`]) and returns the verified checkpoint and the
    /// now authenticated record bytes.
    ///
    /// # Errors
    ///
    /// [`ReceiptError::MissingExtra`] if the receipt has no extra line, and
    /// the errors of [`Receipt::verify_entry`].
    pub fn verify_extra_as_entry(
        &self,
        key: &VerifierKey,
    ) -> Result<(Checkpoint, Vec<u8>), ReceiptError> {
        let entry = self.extra.as_deref().ok_or(ReceiptError::MissingExtra)?;
        let checkpoint = self.verify_entry(entry, key)?;
        Ok((checkpoint, entry.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{inclusion_proof, leaf_hash, root};
    use crate::note::{self, SigningKey};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    const ORIGIN: &str = "example.com/sealog";

    fn key() -> SigningKey {
        SigningKey::from_seed(ORIGIN, &[0x11; 32]).unwrap()
    }

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    /// A log of `n` records with its signed checkpoint.
    fn log(n: usize) -> (Vec<Vec<u8>>, Vec<Hash>, String) {
        let records = records(n);
        let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size: n as u64,
            root: root(&leaves),
            extensions: vec!["sealog test".to_owned()],
        };
        let signed = checkpoint::sign(&checkpoint, &key()).unwrap();
        (records, leaves, signed)
    }

    fn receipt_for(index: u64, records: &[Vec<u8>], leaves: &[Hash], signed: &str) -> Receipt {
        Receipt {
            extra: Some(records[index as usize].clone()),
            index,
            proof: inclusion_proof(leaves, index, leaves.len() as u64).unwrap(),
            checkpoint: signed.to_owned(),
        }
    }

    // The header of the example of the C2SP tlog-proof specification; its
    // checkpoint signatures are elided there ("hI2DJw[...]1roloI=").
    const C2SP_EXAMPLE_HEAD: &str = "c2sp.org/tlog-proof@v1\n\
        extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n\
        index 73894\n\
        gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n\
        B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\
        EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n\
        RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n\
        AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\
        \n";
    const C2SP_EXAMPLE_CHECKPOINT: &str = "example.com/fancylog\n\
        109482\n\
        sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\
        \n\
        \u{2014} example.com/fancylog hI2DJw[...]1roloI=\n";

    #[test]
    fn c2sp_example_layout() {
        let elided = format!("{C2SP_EXAMPLE_HEAD}{C2SP_EXAMPLE_CHECKPOINT}");
        assert_eq!(
            Receipt::parse(&elided),
            Err(ReceiptError::Signature(NoteError::MalformedSignatureLine {
                line: 5,
                reason: "has a signature that is not canonical standard base64"
            }))
        );
        // The same receipt with a checkpoint that carries a real signature.
        let fancy = SigningKey::from_seed("example.com/fancylog", &[3; 32]).unwrap();
        let text = C2SP_EXAMPLE_CHECKPOINT.split("\n\n").next().unwrap();
        let signed = note::sign(&format!("{text}\n"), &fancy).unwrap();
        let full = format!("{C2SP_EXAMPLE_HEAD}{signed}");
        let receipt = Receipt::parse(&full).unwrap();
        assert_eq!(receipt.index, 73894);
        assert_eq!(
            receipt.extra.as_deref().unwrap()[..30],
            *b"age-v1.2.1-darwin-arm64.tar.gz"
        );
        assert_eq!(receipt.proof.len(), 5);
        assert_eq!(
            encode_hash(&receipt.proof[0]),
            "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ="
        );
        assert_eq!(receipt.checkpoint, signed);
        assert_eq!(receipt.to_text(), full);
        // Signature and checkpoint verify; the (made-up) proof does not.
        assert!(matches!(
            receipt.verify_extra_as_entry(&fancy.verifier()),
            Err(ReceiptError::Proof(ProofError::MalformedProof { .. }))
        ));
    }

    // The worked example of sealog's format documentation: three records
    // "record 0".."record 2", key seed 32 bytes of 0x11 named
    // "example.com/sealog", an illustrative extension line, and the receipt
    // of record 1. A regression vector produced by this implementation.
    const SEALOG_EXAMPLE_KEY: &str =
        "example.com/sealog+f2bf3cab+AdBKsjJ0K7SrOhNovUYV5ObQIkq3GgFrr4UgozLJd4c3";
    const SEALOG_EXAMPLE: &str = "c2sp.org/tlog-proof@v1\n\
        extra cmVjb3JkIDE=\n\
        index 1\n\
        OzZ9bbe8UXJtkYsY6aeeD85T+Gf744Zx9gnmu1nUYDU=\n\
        eQtCVVwoF8KPO6ujvYzB2nR8wC1umQQeZPjGJ0bPBTs=\n\
        \n\
        example.com/sealog\n\
        3\n\
        EROfCuN4nLInq4w+V9ZuiSXjrblsJNVzEYMhUNaskFs=\n\
        example-extension\n\
        \n\
        \u{2014} example.com/sealog 8r88q3X6NvSUoVcFjPUGG09Ld3AC84aALKPgxuvJI7jkBaMfGDkoBYh+9K0X8J1k7nQ9NS0mnNd80D4+HI04dywDpQ0=\n";

    #[test]
    fn sealog_example() {
        let key = SigningKey::from_seed(ORIGIN, &[0x11; 32]).unwrap();
        assert_eq!(
            key.to_text(),
            "PRIVATE+KEY+example.com/sealog+f2bf3cab+ARERERERERERERERERERERERERERERERERERERERERER"
        );
        assert_eq!(key.verifier().to_text(), SEALOG_EXAMPLE_KEY);
        let vkey = VerifierKey::parse(SEALOG_EXAMPLE_KEY).unwrap();
        let receipt = Receipt::parse(SEALOG_EXAMPLE).unwrap();
        let (checkpoint, record) = receipt.verify_extra_as_entry(&vkey).unwrap();
        assert_eq!(record, b"record 1");
        assert_eq!(checkpoint.size, 3);
        assert_eq!(checkpoint.extensions, vec!["example-extension"]);
        let leaves: Vec<Hash> = [b"record 0", b"record 1", b"record 2"]
            .iter()
            .map(|r| leaf_hash(*r))
            .collect();
        assert_eq!(checkpoint.root, root(&leaves));
        assert_eq!(
            checkpoint::sign(&checkpoint, &key).unwrap(),
            receipt.checkpoint
        );
        assert_eq!(receipt.to_text(), SEALOG_EXAMPLE);
    }

    /// The serialisations expected by transparency-dev/merkle's
    /// proof/tlog_proof_test.go (whose checkpoints are placeholders).
    #[test]
    fn serialisation_matches_other_implementations() {
        let h1: Hash = Sha256::digest(b"hash1").into();
        let h2: Hash = Sha256::digest(b"hash2").into();
        let (b1, b2) = (BASE64.encode(h1), BASE64.encode(h2));
        let receipt = Receipt {
            extra: None,
            index: 5,
            proof: vec![h1, h2],
            checkpoint: "test checkpoint\n".to_owned(),
        };
        assert_eq!(
            receipt.to_text(),
            format!("c2sp.org/tlog-proof@v1\nindex 5\n{b1}\n{b2}\n\ntest checkpoint\n")
        );
        let receipt = Receipt {
            extra: Some(b"extra information".to_vec()),
            index: 10,
            proof: vec![h1],
            checkpoint: "checkpoint data\n".to_owned(),
        };
        assert_eq!(
            receipt.to_text(),
            format!(
                "c2sp.org/tlog-proof@v1\nextra ZXh0cmEgaW5mb3JtYXRpb24=\nindex 10\n{b1}\n\ncheckpoint data\n"
            )
        );
        let receipt = Receipt {
            extra: None,
            index: 0,
            proof: vec![],
            checkpoint: "checkpoint\n".to_owned(),
        };
        assert_eq!(
            receipt.to_text(),
            "c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n"
        );
    }

    #[test]
    fn every_record_of_a_log_verifies() {
        let (records, leaves, signed) = log(37);
        let vkey = key().verifier();
        for index in 0..37u64 {
            let receipt = receipt_for(index, &records, &leaves, &signed);
            let text = receipt.to_text();
            let parsed = Receipt::parse(&text).unwrap();
            assert_eq!(parsed, receipt);
            assert_eq!(Receipt::from_bytes(text.as_bytes()).unwrap(), receipt);
            let (checkpoint, record) = parsed.verify_extra_as_entry(&vkey).unwrap();
            assert_eq!(record, records[index as usize]);
            assert_eq!(checkpoint.size, 37);
            assert_eq!(checkpoint.extensions, vec!["sealog test"]);
            assert_eq!(
                parsed
                    .verify_entry(&records[index as usize], &vkey)
                    .unwrap(),
                checkpoint
            );
            let other = &records[(index as usize + 1) % 37];
            assert_eq!(
                parsed.verify_entry(other, &vkey),
                Err(ReceiptError::Proof(ProofError::RootMismatch))
            );
        }
    }

    #[test]
    fn a_single_record_log_has_an_empty_proof() {
        let (records, leaves, signed) = log(1);
        let receipt = receipt_for(0, &records, &leaves, &signed);
        assert!(receipt.proof.is_empty());
        let text = receipt.to_text();
        assert!(text.starts_with(
            "c2sp.org/tlog-proof@v1\nextra cmVjb3JkIDA=\nindex 0\n\nexample.com/sealog\n1\n"
        ));
        let parsed = Receipt::parse(&text).unwrap();
        parsed.verify_extra_as_entry(&key().verifier()).unwrap();
    }

    #[test]
    fn forgeries_are_rejected() {
        let (records, leaves, signed) = log(10);
        let vkey = key().verifier();
        let good = receipt_for(3, &records, &leaves, &signed);

        let mut r = good.clone();
        r.index = 4;
        assert_eq!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::Proof(ProofError::RootMismatch))
        );
        r.index = 10;
        assert_eq!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::Proof(ProofError::IndexOutOfRange {
                index: 10,
                size: 10
            }))
        );
        let mut r = good.clone();
        r.proof[1][0] ^= 1;
        assert_eq!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::Proof(ProofError::RootMismatch))
        );
        let mut r = good.clone();
        r.proof.pop();
        assert!(matches!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::Proof(ProofError::MalformedProof { .. }))
        ));
        let mut r = good.clone();
        r.extra = Some(b"record 4".to_vec());
        assert_eq!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::Proof(ProofError::RootMismatch))
        );
        let mut r = good.clone();
        r.extra = None;
        assert_eq!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::MissingExtra)
        );
        r.verify_entry(b"record 3", &vkey).unwrap();

        // A checkpoint claiming a larger tree.
        let mut r = good.clone();
        r.checkpoint = signed.replacen("\n10\n", "\n11\n", 1);
        assert!(matches!(
            r.verify_extra_as_entry(&vkey),
            Err(ReceiptError::Signature(NoteError::InvalidSignature { .. }))
        ));
        // Another key.
        let stranger = SigningKey::from_seed(ORIGIN, &[0x22; 32]).unwrap();
        assert_eq!(
            good.verify_extra_as_entry(&stranger.verifier()),
            Err(ReceiptError::Signature(NoteError::NoTrustedSignature))
        );
        // A checkpoint validly signed by a key named after another origin.
        let other = SigningKey::from_seed("example.com/other", &[0x33; 32]).unwrap();
        let note_text = Note::parse(&signed).unwrap().text().to_owned();
        let mut r = good.clone();
        r.checkpoint = note::sign(&note_text, &other).unwrap();
        assert_eq!(
            r.verify_extra_as_entry(&other.verifier()),
            Err(ReceiptError::Checkpoint(CheckpointError::OriginMismatch {
                expected: "example.com/other".to_owned(),
                found: ORIGIN.to_owned()
            }))
        );
    }

    #[test]
    fn parsing_is_strict() {
        let (records, leaves, signed) = log(5);
        let good = receipt_for(2, &records, &leaves, &signed).to_text();
        let hash = BASE64.encode([7u8; 32]);
        let index = |line, reason| Err(ReceiptError::BadIndexLine { line, reason });
        let bad_hash = |line, reason| Err(ReceiptError::BadProofHash { line, reason });
        let cases: Vec<(String, Result<Receipt, ReceiptError>)> = vec![
            (String::new(), Err(ReceiptError::BadHeader)),
            (
                "c2sp.org/tlog-proof@v1".to_owned(),
                Err(ReceiptError::BadHeader),
            ),
            (good.replacen("@v1", "@v2", 1), Err(ReceiptError::BadHeader)),
            (good.replacen("\n", "\r\n", 1), Err(ReceiptError::BadHeader)),
            (format!(" {good}"), Err(ReceiptError::BadHeader)),
            (
                "c2sp.org/tlog-proof@v1\n".to_owned(),
                index(2, "is missing"),
            ),
            (
                good.replacen("extra cmVjb3JkIDI=", "extra cmVjb3JkIDI", 1),
                Err(ReceiptError::BadExtra { line: 2 }),
            ),
            (
                good.replacen("extra cmVjb3JkIDI=", "extra cmVjb3JkIDJ=", 1),
                Err(ReceiptError::BadExtra { line: 2 }),
            ),
            (
                good.replacen("extra ", "extra  ", 1),
                Err(ReceiptError::BadExtra { line: 2 }),
            ),
            (
                good.replacen("extra ", "extra:", 1),
                index(2, "does not start with \"index \""),
            ),
            (
                good.replacen("index 2", "index 02", 1),
                index(3, "has a leading zero"),
            ),
            (
                good.replacen("index 2", "index -2", 1),
                index(3, "is not an unsigned decimal number"),
            ),
            (
                good.replacen("index 2", "index  2", 1),
                index(3, "is not an unsigned decimal number"),
            ),
            (
                good.replacen("index 2", "index", 1),
                index(3, "does not start with \"index \""),
            ),
            (good.replacen("index 2", "index ", 1), index(3, "is empty")),
            (
                good.replacen("index 2", "index 18446744073709551616", 1),
                index(3, "does not fit in 64 bits (at most 18446744073709551615)"),
            ),
            (
                good.replacen("index 2\n", &format!("index 2\n{}\n", &hash[..43]), 1),
                bad_hash(4, "is not canonical standard base64"),
            ),
            (
                good.replacen("index 2\n", &format!("index 2\n{hash} \n"), 1),
                bad_hash(4, "is not canonical standard base64"),
            ),
            (
                good.replacen(
                    "index 2\n",
                    &format!("index 2\n{hash}\n{}\n", BASE64.encode([7u8; 31])),
                    1,
                ),
                bad_hash(5, "does not decode to exactly 32 bytes"),
            ),
            (
                good.replacen(
                    "index 2\n",
                    &format!("index 2\n{}", format!("{hash}\n").repeat(62)),
                    1,
                ),
                Err(ReceiptError::TooManyProofHashes {
                    max: MAX_PROOF_HASHES,
                }),
            ),
            (
                "c2sp.org/tlog-proof@v1\nindex 2\n".to_owned(),
                Err(ReceiptError::MissingCheckpoint),
            ),
            (
                format!("c2sp.org/tlog-proof@v1\nindex 2\n{hash}\n"),
                Err(ReceiptError::MissingCheckpoint),
            ),
            (
                "c2sp.org/tlog-proof@v1\nindex 2\n\n".to_owned(),
                Err(ReceiptError::MissingCheckpoint),
            ),
            (
                format!("c2sp.org/tlog-proof@v1\nindex 2\n\n\n{signed}"),
                // A second empty line makes the checkpoint start with an empty origin.
                Err(ReceiptError::Checkpoint(CheckpointError::EmptyOrigin)),
            ),
            (
                "c2sp.org/tlog-proof@v1\nindex 2\n\nexample.com/sealog\n1\n".to_owned(),
                Err(ReceiptError::Signature(NoteError::MissingSignatures)),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Receipt::parse(&text), expected, "{text:?}");
        }
        // The limit on proof hashes is exactly 64.
        let sixty_four = good.replacen(
            "index 2\n",
            &format!("index 2\n{}", format!("{hash}\n").repeat(61)),
            1,
        );
        assert_eq!(Receipt::parse(&sixty_four).unwrap().proof.len(), 64);

        let huge = format!("{good}{}", " ".repeat(MAX_RECEIPT_SIZE));
        assert_eq!(
            Receipt::parse(&huge),
            Err(ReceiptError::TooLarge {
                size: huge.len(),
                max: MAX_RECEIPT_SIZE
            })
        );
        let mut bad_utf8 = good.clone().into_bytes();
        bad_utf8[0] = 0xc0;
        assert_eq!(
            Receipt::from_bytes(&bad_utf8),
            Err(ReceiptError::InvalidUtf8)
        );

        // An empty extra line is allowed and distinct from no extra line.
        let empty_extra = good.replacen("extra cmVjb3JkIDI=", "extra ", 1);
        assert_eq!(
            Receipt::parse(&empty_extra).unwrap().extra,
            Some(Vec::new())
        );
        assert_eq!(Receipt::parse(&empty_extra).unwrap().to_text(), empty_extra);
    }

    proptest! {
        #[test]
        fn round_trip(
            extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            index in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF_HASHES),
        ) {
            let (_, _, signed) = log(3);
            let receipt = Receipt { extra, index, proof, checkpoint: signed };
            prop_assert_eq!(Receipt::parse(&receipt.to_text()).unwrap(), receipt);
        }

        #[test]
        fn parse_never_panics(
            text in "\\PC*",
            lines in "(c2sp.org/tlog-proof@v1|extra [A-Za-z0-9+/=]{0,8}|index [0-9]{0,3}|[A-Za-z0-9+/=]{0,44}|\u{2014} a [A-Za-z0-9+/=]{0,8}|)(\n([A-Za-z0-9+/= ]{0,44}|index 1|))*",
        ) {
            let _ = Receipt::parse(&text);
            let _ = Receipt::from_bytes(text.as_bytes());
            let _ = Receipt::parse(&lines);
            let _ = Receipt::parse(&format!("{HEADER}\n{lines}"));
        }
    }
}
