//! cargo-fuzz target `checkpoint_note`: see `sealog_fuzzing::checkpoint_note` for what it
//! checks; the body is shared with the corpus replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealog_fuzzing::checkpoint_note::run(data));
