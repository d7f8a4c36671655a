//! cargo-fuzz target `server_query_string`: see `sealog_fuzzing::server_query_string` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::server_query_string::run(data));
