//! The bodies of sealog's fuzz targets.
//!
//! Each target is a plain function of the fuzzer's bytes, called by the
//! cargo-fuzz target of the same name in `fuzz/fuzz_targets/` and by this
//! crate's corpus replay test (`tests/replay.rs`), which runs every file
//! under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` on each
//! `cargo test --workspace`. A target returns normally on any input; a
//! panic (a failed property included) is a finding.
//!
//! Every target caps its input at [`MAX_INPUT`] bytes and returns early
//! beyond it, so no run is slow or large because the fuzzer grew an input.
//!
//! [`seeds`] builds small valid inputs for every target; the committed
//! corpus was made with `cargo run -p sealog-fuzzing --bin fuzz-seeds`.

#![allow(
    clippy::missing_panics_doc,
    reason = "panicking on a broken property is the point of a fuzz target"
)]

pub mod checkpoint_note;
pub mod compressed_segment;
pub mod event_json;
pub mod frame_record;
pub mod index_sidecar;
pub mod query_cursor;
pub mod receipt_proof;
pub mod seeds;
pub mod segment_recovery;
pub mod server_ingest;
pub mod server_query_string;

/// The largest input any target looks at (64 KiB).
pub const MAX_INPUT: usize = 64 << 10;

/// A fuzz target: its name (the directory of its corpus) and its body.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name, as in `cargo fuzz run <name>`.
    pub name: &'static str,
    /// The body.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frame_record",
        run: frame_record::run,
    },
    Target {
        name: "segment_recovery",
        run: segment_recovery::run,
    },
    Target {
        name: "index_sidecar",
        run: index_sidecar::run,
    },
    Target {
        name: "checkpoint_note",
        run: checkpoint_note::run,
    },
    Target {
        name: "receipt_proof",
        run: receipt_proof::run,
    },
    Target {
        name: "query_cursor",
        run: query_cursor::run,
    },
    Target {
        name: "event_json",
        run: event_json::run,
    },
    Target {
        name: "server_query_string",
        run: server_query_string::run,
    },
    Target {
        name: "server_ingest",
        run: server_ingest::run,
    },
    Target {
        name: "compressed_segment",
        run: compressed_segment::run,
    },
];

/// The fixed signing key the targets verify against (its seed is public:
/// it signs fuzz inputs, nothing else).
pub fn fuzz_key() -> sealog_format::note::SigningKey {
    match sealog_format::note::SigningKey::from_seed("fuzz.sealog.example/log", &[7u8; 32]) {
        Ok(key) => key,
        Err(e) => panic!("the fixed fuzz key is valid: {e}"),
    }
}
