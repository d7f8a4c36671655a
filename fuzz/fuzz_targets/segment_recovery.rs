//! cargo-fuzz target `segment_recovery`: see `sealog_fuzzing::segment_recovery` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::segment_recovery::run(data));
