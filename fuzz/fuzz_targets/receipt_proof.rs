//! cargo-fuzz target `receipt_proof`: see `sealog_fuzzing::receipt_proof` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::receipt_proof::run(data));
