//! cargo-fuzz target `event_json`: see `sealog_fuzzing::event_json` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::event_json::run(data));
