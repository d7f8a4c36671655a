//! `sealog checkpoint` and `sealog proof`: signed checkpoints, receipts and
//! consistency proofs.

use base64::Engine as _;
use clap::Args;
use sealog::{SignedCheckpoint, Store};

use crate::common::{DamageArgs, DamageWarnings, Global, Out, open_read_only};
use crate::error::CliError;

const CHECKPOINT_AFTER_HELP: &str = "\\
Signs a checkpoint of the durable log now (C2SP tlog-checkpoint: origin,
tree size, RFC 9162 root, and a sealog-chain line with the BLAKE3 chain
value), appends it to the store's history and prints it. Publish it, or
give it to a witness: anyone with the public key can later prove that the
log still holds exactly what it covered (`sealog verify --public-key ...
--checkpoint FILE`).

Needs --signing-key (or SEALOG_SIGNING_KEY). If another process (a server)
has the store open, the newest checkpoint it signed is printed instead.
With --latest, the newest checkpoint in the history is printed without
signing.

Examples:
  sealog checkpoint --signing-key /etc/sealog/log.key > checkpoint.txt
  sealog checkpoint --latest";

/// Sign (or print) a checkpoint of the log.
#[derive(Args, Debug)]
#[command(after_help = CHECKPOINT_AFTER_HELP)]
pub struct CheckpointArgs {
    /// Print the newest checkpoint in the history instead of signing one.
    ///
    /// Example: --latest
    #[arg(long)]
    latest: bool,

    #[command(flatten)]
    damaged: DamageArgs,
}

fn no_checkpoint(dir: &std::path::Path) -> CliError {
    CliError::failed(
        format!(
            "the store at {} has no signed checkpoint yet",
            dir.display()
        ),
        "sign one: sealog checkpoint --signing-key PREFIX.key (make a key with sealog keygen)",
    )
}

fn newest(store: &Store, dir: &std::path::Path) -> Result<SignedCheckpoint, CliError> {
    store
        .latest_checkpoint()
        .map_err(|e| CliError::store("reading the checkpoint history", dir, e))?
        .ok_or_else(|| no_checkpoint(dir))
}

pub fn checkpoint(global: &Global, args: CheckpointArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let mut out = Out::new();
    if args.latest {
        let store = open_read_only(dir, &args.damaged)?;
        let mut warnings = DamageWarnings::default();
        warnings.name_new(dir, &store);
        out.line(newest(&store, dir)?.text.trim_end())?;
        out.flush()?;
        warnings.finish();
        return Ok(());
    }
    if args.damaged.allow_damaged {
        return Err(CliError::usage(
            "--allow-damaged reads a damaged store; signing a checkpoint needs an intact one",
            "use --latest to print the newest checkpoint of a damaged store, and `sealog \
             verify` to find the damage",
        ));
    }
    if global.signing_key.is_none() {
        return Err(CliError::usage(
            "signing a checkpoint needs the log's private key",
            "pass --signing-key PREFIX.key (or set SEALOG_SIGNING_KEY); to print the newest \
             checkpoint without signing, use --latest",
        ));
    }
    crate::common::check_store_exists(dir)?;
    let signed = match Store::open(dir, global.store_options()?) {
        Ok(store) => store
            .checkpoint()
            .map_err(|e| CliError::store("signing a checkpoint", dir, e))?,
        Err(sealog::Error::Locked { .. }) => {
            let store = open_read_only(dir, &args.damaged)?;
            let signed = newest(&store, dir)?;
            eprintln!(
                "note: the store is open in another process; printed the newest checkpoint it \
                 signed (covering {} records)",
                signed.size
            );
            signed
        }
        Err(e) => return Err(CliError::store("opening the store for writing", dir, e)),
    };
    out.line(signed.text.trim_end())?;
    out.flush()
}

const PROOF_AFTER_HELP: &str = "\\
With --seq, prints an offline-verifiable receipt for one record in the
C2SP tlog-proof@v1 format: the record's exact bytes, its RFC 9162 inclusion
proof, and a signed checkpoint covering it (by default the newest one; with
--tree-size, the checkpoint of exactly that size). Check it anywhere with
`sealog verify-receipt FILE --public-key PREFIX.pub`. If no checkpoint
covers the record yet, one is signed (needs --signing-key, and the store
not open in a server). A writer given --signing-key (append, import,
serve) signs a checkpoint when it closes, so receipts of what it wrote
need no key.

With --consistency, prints the RFC 9162 consistency proof between the
trees of --from and --to records: the proof that the larger log extends the
smaller one without changing it.

Examples:
  sealog proof --seq 4471 > record-4471.tlog-proof
  sealog proof --seq 4471 --tree-size 100000
  sealog proof --consistency --from 1000 --to 5000 --json";

/// Print a receipt (inclusion proof) or a consistency proof.
#[derive(Args, Debug)]
#[command(after_help = PROOF_AFTER_HELP)]
pub struct ProofArgs {
    /// The record to prove.
    ///
    /// Example: --seq 4471
    #[arg(
        long,
        conflicts_with = "consistency",
        required_unless_present = "consistency"
    )]
    seq: Option<u64>,

    /// Prove inclusion in the tree of this many records (must be the size
    /// of a signed checkpoint in the history).
    ///
    /// Example: --tree-size 100000
    #[arg(long, requires = "seq")]
    tree_size: Option<u64>,

    /// Print a consistency proof (with --from and --to).
    ///
    /// Example: --consistency --from 1000 --to 5000
    #[arg(long, requires_all = ["from", "to"])]
    consistency: bool,

    /// The smaller tree size.
    ///
    /// Example: --from 1000
    #[arg(long)]
    from: Option<u64>,

    /// The larger tree size.
    ///
    /// Example: --to 5000
    #[arg(long)]
    to: Option<u64>,

    /// Print the consistency proof as JSON: {"old_size", "new_size",
    /// "proof": [base64 hashes]} (the default prints one base64 hash per
    /// line).
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    damaged: DamageArgs,
}

/// No checkpoint covers the record, and there is no key to sign one.
fn not_covered(seq: u64, newest: Option<u64>) -> CliError {
    let why = match newest {
        Some(size) => format!("the newest covers the first {size} records"),
        None => "the store has none".to_owned(),
    };
    CliError::usage(
        format!("no signed checkpoint covers record {seq} yet ({why})"),
        format!(
            "sign one with the log's private key: sealog --signing-key PREFIX.key proof --seq \
             {seq} (a writer given --signing-key also signs one when it closes, a server every \
             minute the log grew)"
        ),
    )
}

/// No checkpoint covers the record, and another process (a server) holds
/// the store, so none can be signed here.
fn busy(seq: u64) -> CliError {
    CliError::failed(
        format!(
            "no signed checkpoint covers record {seq} yet, and the store is open in another \
             process (a server?), so this command cannot sign one"
        ),
        format!(
            "ask the server for the receipt (GET /v1/events/{seq}?proof=true), or run this again \
             in a minute: a server with a signing key signs a checkpoint every minute the log grew"
        ),
    )
}

fn b64(hash: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

pub fn proof(global: &Global, args: ProofArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let mut out = Out::new();
    if args.consistency {
        let (from, to) = (args.from.unwrap_or(0), args.to.unwrap_or(0));
        let store = open_read_only(dir, &args.damaged)?;
        DamageWarnings::default().name_new(dir, &store);
        let proof = store
            .consistency_proof(from, to)
            .map_err(|e| CliError::read("computing the consistency proof", dir, e))?;
        let hashes: Vec<String> = proof.iter().map(|h| b64(h)).collect();
        if args.json {
            out.json_line(&serde_json::json!({
                "old_size": from,
                "new_size": to,
                "proof": hashes,
            }))?;
        } else {
            for h in hashes {
                out.line(&h)?;
            }
        }
        return out.flush();
    }
    let seq = args.seq.unwrap_or(0);
    let store = open_read_only(dir, &args.damaged)?;
    DamageWarnings::default().name_new(dir, &store);
    if seq >= store.len() {
        return Err(CliError::usage(
            format!(
                "record {seq} does not exist (the log has {} records)",
                store.len()
            ),
            "check the seq: `sealog query --oldest-first` lists the records with theirs",
        ));
    }
    let history = store
        .checkpoints()
        .map_err(|e| CliError::store("reading the checkpoint history", dir, e))?;
    let newest = history.last().map(|c| c.size);
    let checkpoint = match args.tree_size {
        Some(size) => history
            .into_iter()
            .find(|c| c.size == size)
            .ok_or_else(|| {
                CliError::usage(
                    format!("no signed checkpoint covers exactly {size} records"),
                    "list the sizes with `sealog stats`, or omit --tree-size to use the newest",
                )
            })?,
        None => match history.into_iter().rev().find(|c| c.size > seq) {
            Some(c) => c,
            None => {
                // Sign one now (needs the key and the store to ourselves).
                if global.signing_key.is_none() {
                    return Err(not_covered(seq, newest));
                }
                drop(store);
                let writable = match Store::open(dir, global.store_options()?) {
                    Ok(store) => store,
                    Err(sealog::Error::Locked { .. }) => return Err(busy(seq)),
                    Err(e) => {
                        return Err(CliError::store("opening the store for writing", dir, e));
                    }
                };
                let text = writable
                    .receipt(seq)
                    .map_err(|e| CliError::store("making the receipt", dir, e))?;
                writable
                    .close()
                    .map_err(|e| CliError::store("closing the store", dir, e))?;
                out.line(text.trim_end())?;
                return out.flush();
            }
        },
    };
    if seq >= checkpoint.size {
        return Err(CliError::usage(
            format!(
                "record {seq} is not in the tree of {} records",
                checkpoint.size
            ),
            "use a larger --tree-size, or omit it",
        ));
    }
    let bytes = store
        .get_raw(seq)
        .map_err(|e| CliError::read("reading the record", dir, e))?
        .ok_or_else(|| CliError::usage(format!("record {seq} does not exist"), "check the seq"))?;
    let proof = store
        .inclusion_proof(seq, checkpoint.size)
        .map_err(|e| CliError::read("computing the inclusion proof", dir, e))?;
    let receipt = sealog::format::receipt::Receipt {
        extra: Some(bytes),
        index: seq,
        proof,
        checkpoint: checkpoint.text,
    };
    out.line(receipt.to_text().trim_end())?;
    out.flush()
}
