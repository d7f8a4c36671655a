//! cargo-fuzz target `index_sidecar`: see `sealog_fuzzing::index_sidecar` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::index_sidecar::run(data));
