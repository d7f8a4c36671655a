//! cargo-fuzz target `compressed_segment`: see `sealog_fuzzing::compressed_segment` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::compressed_segment::run(data));
