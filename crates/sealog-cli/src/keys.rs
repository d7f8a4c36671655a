//! `sealog keygen` and `sealog verify-receipt`: signing keys and offline
//! verification of receipts.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use sealog::format::note::{ED25519_KEY_SIZE, SigningKey, VerifierKey};
use sealog::format::receipt::{Receipt, ReceiptError};
use sealog::format::record;

use crate::common::Out;
use crate::error::CliError;

const KEYGEN_AFTER_HELP: &str = "\
Writes two files:
  PREFIX.key  the private signing key (PRIVATE+KEY+<name>+<key id>+<base64>),
              readable by its owner only (mode 0600). Keep it secret.
  PREFIX.pub  the verifier key (<name>+<key id>+<base64>): give it to anyone
              who verifies checkpoints and receipts.
Existing files are never overwritten. The key is an Ed25519 key whose seed
comes from the operating system's random source.

Examples:
  sealog keygen --name audit.example.com/prod --out /etc/sealog/log
  sealog keygen --name example.com/sealog --out ./example";

/// Generate a log signing key (Ed25519, C2SP signed-note format).
#[derive(Args, Debug)]
#[command(after_help = KEYGEN_AFTER_HELP)]
pub struct KeygenArgs {
    /// The key name, which is also the log's origin in its checkpoints:
    /// conventionally a schema-less URL (no spaces, no `+`).
    ///
    /// Example: --name audit.example.com/prod
    #[arg(long, value_name = "ORIGIN")]
    name: String,

    /// Path prefix of the files to write: PREFIX.key and PREFIX.pub.
    ///
    /// Example: --out /etc/sealog/log   (writes /etc/sealog/log.key and /etc/sealog/log.pub)
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn keygen(args: KeygenArgs) -> Result<(), CliError> {
    let key_path = with_suffix(&args.out, ".key");
    let pub_path = with_suffix(&args.out, ".pub");
    for path in [&key_path, &pub_path] {
        if path.exists() {
            return Err(CliError::usage(
                format!(
                    "`{}` already exists; refusing to overwrite it",
                    path.display()
                ),
                "choose another --out prefix, or move the existing key away first",
            ));
        }
    }
    let mut seed = [0u8; ED25519_KEY_SIZE];
    getrandom::fill(&mut seed).map_err(|e| {
        CliError::failed(
            format!("the operating system's random source failed: {e}"),
            "try again; check that /dev/urandom or getrandom(2) is available",
        )
    })?;
    let key = SigningKey::from_seed(&args.name, &seed).map_err(|e| {
        CliError::usage(
            format!("--name `{}`: {e}", args.name),
            "use a name without spaces or `+`, e.g. audit.example.com/prod",
        )
    })?;
    write_new(&key_path, &format!("{}\n", key.to_text()), 0o600)?;
    if let Err(e) = write_new(&pub_path, &format!("{}\n", key.verifier().to_text()), 0o644) {
        // Leave no half-made pair behind.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    let mut out = Out::new();
    out.line(&format!(
        "private key: {} (mode 0600; keep it secret)",
        key_path.display()
    ))?;
    out.line(&format!("public key:  {}", pub_path.display()))?;
    out.line(&key.verifier().to_text())?;
    out.flush()
}

/// Creates `path` (failing if it exists) with `mode` and writes `text`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    let err = |op, source| CliError::Write {
        op,
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| err("create", e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| err("write", e))
}

const VERIFY_AFTER_HELP: &str = "\
Checks a receipt (C2SP tlog-proof@v1) offline: the checkpoint's signature by
the log's key (whose name must be the checkpoint's origin), then the
inclusion proof of the record carried in the receipt's `extra` line at its
index in the checkpoint's tree. Prints the record, authenticated, as JSON
with the checkpoint's origin and tree size.

Exit status: 0 the receipt is valid; 1 it is not (the reason is printed);
2 usage error (a file cannot be read, the public key is malformed).

Examples:
  sealog verify-receipt receipt.tlog-proof --public-key log.pub
  sealog verify-receipt - --public-key log.pub < receipt.tlog-proof";

/// Verify a receipt offline against the log's public key.
#[derive(Args, Debug)]
#[command(after_help = VERIFY_AFTER_HELP)]
pub struct VerifyReceiptArgs {
    /// The receipt file; `-` reads standard input.
    ///
    /// Example: sealog verify-receipt receipt.tlog-proof --public-key log.pub
    #[arg(value_name = "FILE|-")]
    receipt: PathBuf,

    /// The log's verifier key file, as written by `sealog keygen`
    /// (PREFIX.pub).
    ///
    /// Example: --public-key /etc/sealog/log.pub
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
}

pub fn verify_receipt(args: VerifyReceiptArgs) -> Result<(), CliError> {
    let key_text = std::fs::read(&args.public_key).map_err(|source| CliError::ReadInput {
        what: "public key",
        path: args.public_key.clone(),
        source,
    })?;
    let key_text = String::from_utf8(key_text).map_err(|_| {
        CliError::usage(
            format!(
                "public key `{}` is not UTF-8 text",
                args.public_key.display()
            ),
            "give the PREFIX.pub file written by `sealog keygen`",
        )
    })?;
    let key = VerifierKey::parse(key_text.trim_end_matches(['\n', '\r'])).map_err(|e| {
        let private = key_text.starts_with("PRIVATE+KEY+");
        CliError::usage(
            format!(
                "public key `{}` is malformed: {e}",
                args.public_key.display()
            ),
            if private {
                "this is a private key: give the matching PREFIX.pub instead, and keep the .key \
                 file secret"
            } else {
                "give the PREFIX.pub file written by `sealog keygen` (one line: \
                 <name>+<key id>+<base64>)"
            },
        )
    })?;
    let bytes = if args.receipt.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|source| {
            CliError::ReadInput {
                what: "receipt",
                path: "stdin".into(),
                source,
            }
        })?;
        buf
    } else {
        std::fs::read(&args.receipt).map_err(|source| CliError::ReadInput {
            what: "receipt",
            path: args.receipt.clone(),
            source,
        })?
    };
    let invalid = |reason: String, hint: &str| CliError::InvalidReceipt {
        path: args.receipt.clone(),
        reason,
        hint: hint.to_owned(),
    };
    let receipt = Receipt::from_bytes(&bytes).map_err(|e| {
        invalid(
            format!("it is not a well-formed tlog-proof@v1 receipt: {e}"),
            "the file is damaged or not a receipt; obtain the receipt again from the log",
        )
    })?;
    let (checkpoint, entry) = receipt.verify_extra_as_entry(&key).map_err(|e| {
        let hint = match &e {
            ReceiptError::Signature(_) => {
                "the checkpoint is not signed by this key: check that --public-key is the key of \
                 the log that issued the receipt; otherwise the receipt was forged or altered"
            }
            ReceiptError::Checkpoint(_) => {
                "the checkpoint's origin does not match the key's name, or it is malformed"
            }
            ReceiptError::Proof(_) => {
                "the record or the proof was altered: the record is not at this index in the \
                 signed tree"
            }
            ReceiptError::MissingExtra => {
                "this receipt carries no record: ask the log for a receipt with the record bytes"
            }
            _ => "the receipt does not verify",
        };
        invalid(e.to_string(), hint)
    })?;
    let record = record::decode_record(&entry).map_err(|e| {
        invalid(
            format!(
                "the proof holds, but the entry at index {} is not a sealog record: {e}",
                receipt.index
            ),
            "the receipt was issued by a log that is not sealog",
        )
    })?;
    if record.seq != receipt.index {
        return Err(invalid(
            format!(
                "the record says seq {} but the receipt places it at index {}",
                record.seq, receipt.index
            ),
            "a sealog record's seq is its index in the log: this log is not consistent",
        ));
    }
    let mut out = Out::new();
    out.json_pretty(&serde_json::json!({
        "valid": true,
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "index": receipt.index,
        "record": record,
    }))?;
    out.flush()?;
    eprintln!(
        "OK: record {} is in the log {} of {} records, signed by {} ({:08x})",
        receipt.index,
        checkpoint.origin,
        checkpoint.size,
        key.name(),
        key.key_id()
    );
    Ok(())
}
