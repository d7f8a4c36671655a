//! cargo-fuzz target `frame_record`: see `sealog_fuzzing::frame_record` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::frame_record::run(data));
