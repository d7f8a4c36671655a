//! Shared helpers of the sealog benchmarks.

use std::path::PathBuf;

/// A fresh directory for a benchmark store, on the disk being measured:
/// under `$SEALOG_BENCH_DIR` if set, else under the target directory (on the
/// same filesystem as the checkout, unlike a tmpfs `/tmp`).
pub fn bench_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("SEALOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-stores")
        });
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("create a directory in {}: {e}", base.display()))
}
