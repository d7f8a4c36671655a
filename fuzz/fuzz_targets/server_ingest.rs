//! cargo-fuzz target `server_ingest`: see `sealog_fuzzing::server_ingest` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::server_ingest::run(data));
