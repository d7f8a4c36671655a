//! `sealog compress`: store a store's sealed segments compressed, now.

use clap::Args;

use crate::common::{Global, Out, bytes, check_store_exists};
use crate::error::CliError;

const AFTER_HELP: &str = "\
Rewrites every sealed segment stored uncompressed as blocks of ~16 KiB of
whole frames, each compressed with zstd with a dictionary trained on the
segment (docs/format.md, \"Compressed sealed segments\"), one segment after
the other, and prints what it saved. The records, their hashes, the indexes
and every proof stay as they are: the compressed file decodes to the
segment's exact bytes, which is checked before the segment is replaced.
The open segment is compressed once it is sealed, by a writer given
--compress (`serve --compress`, `append --compress`).

It needs the store to itself (a writer); a server holding the store
compresses its own segments when started with --compress. Stopped midway,
each segment is whole in one form or the other: run it again to finish.

Examples:
  sealog compress --data-dir /var/lib/sealog
  sealog compress --level 9";

/// Compress the store's sealed segments now (see --compress for writers).
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct CompressArgs {
    /// The zstd level, 1 to 19: higher is smaller and slower to write
    /// (reads cost the same).
    ///
    /// Example: --level 9
    #[arg(long, default_value_t = 6, value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
}

pub fn run(global: &Global, args: CompressArgs) -> Result<(), CliError> {
    let dir = &global.data_dir;
    check_store_exists(dir)?;
    // It appends nothing: no space is reserved for records to come (a
    // writer with another --segment-size would otherwise grow the open
    // segment, and make a spare).
    let options = sealog::StoreOptions {
        preallocation: sealog::Preallocation::None,
        ..global.store_options()?
    };
    let store = sealog::Store::open(dir, options)
        .map_err(|e| CliError::store("opening the store for writing", dir, e))?;
    let report = store
        .compress_sealed(sealog::Compression::Zstd { level: args.level })
        .map_err(|e| CliError::store("compressing the sealed segments", dir, e))?;
    store
        .close()
        .map_err(|e| CliError::store("closing the store", dir, e))?;
    let mut out = Out::new();
    if report.segments == 0 {
        out.line(&format!(
            "nothing to compress: {} sealed segments, all compressed already",
            report.already
        ))?;
        return out.flush();
    }
    let ratio = report.bytes_before as f64 / report.bytes_after.max(1) as f64;
    out.line(&format!(
        "compressed {} sealed segments: {} → {} ({ratio:.1}× smaller); {} were compressed already",
        report.segments,
        bytes(report.bytes_before),
        bytes(report.bytes_after),
        report.already
    ))?;
    out.flush()
}
