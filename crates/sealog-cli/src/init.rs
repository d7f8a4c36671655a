//! `sealog init`: create a new, empty store, explicitly.
//!
//! Every command but `append`, `import` and `bench` refuses to work on a
//! directory that holds no store, so that a mistyped path or a volume that
//! did not mount is an error rather than a new, empty log. `init` is how a
//! store is made for them (or `serve --create`).

use std::path::Path;

use clap::Args;

use crate::common::{Global, Out, bytes, check_store_exists};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Creates the store directory (and its parents) with an empty log: the
manifest (a random store id, which seeds the hash chain), the first segment
file, the Merkle tree files and the checkpoint history. The first segment's
space is reserved now (64 MiB unless --segment-size says otherwise), so a
disk too small for it is found here, with the size it lacked.

A directory that already holds a store is left as it is (exit 0, saying
so). A directory that exists and holds other files is refused: a store
needs a directory of its own.

The segment size is an option of each command that writes, not stored in
the store: give the same --segment-size (or set SEALOG_SEGMENT_SIZE) to
`serve`, `append` and `import`, or `segment_size` in the server's config.

Examples:
  sealog init
  sealog init --data-dir /var/lib/sealog
  sealog init --data-dir /mnt/small/audit --segment-size 8MiB";

/// Create a new, empty store in --data-dir.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct InitArgs {}

pub fn run(global: &Global, _args: InitArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    let mut out = Out::new();
    if check_store_exists(dir).is_ok() {
        out.line(&format!(
            "a store already exists at {}; left as it is",
            dir.display()
        ))?;
        return out.flush();
    }
    refuse_foreign_directory(dir)?;
    let options = global.store_options()?;
    let segment_size = options.segment_size;
    let store = sealog::Store::open(dir, options)
        .map_err(|e| CliError::store("creating the store", dir, e))?;
    let id = hex::encode(store.store_id());
    store
        .close()
        .map_err(|e| CliError::store("closing the new store", dir, e))?;
    out.line(&format!(
        "created an empty store at {} (store id {id}, segments of {})",
        dir.display(),
        bytes(segment_size)
    ))?;
    if global.segment_size.is_some() {
        out.line(
            "give the same --segment-size (or set SEALOG_SEGMENT_SIZE) to the commands that \
             write to it",
        )?;
    }
    out.flush()
}

/// A directory that exists, is not a store and is not empty belongs to
/// something else.
fn refuse_foreign_directory(dir: &Path) -> Result<(), CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CliError::ReadInput {
                what: "data directory",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let others: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .take(4)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(CliError::usage(
        format!(
            "`{}` is not empty and holds no sealog store (it has {}{})",
            dir.display(),
            others
                .iter()
                .take(3)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if others.len() > 3 { ", ..." } else { "" }
        ),
        "a store needs a directory of its own: pass a new or empty directory with --data-dir",
    ))
}
