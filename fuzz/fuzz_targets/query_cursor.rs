//! cargo-fuzz target `query_cursor`: see `sealog_fuzzing::query_cursor` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::query_cursor::run(data));
