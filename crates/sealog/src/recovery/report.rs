//! What recovery found and did: [`RecoveryReport`], and the `store.recovered`
//! events that record it in the log.

use sealog_format::{Actor, Event, Outcome, Resource};

/// What recovery found and did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Torn tails removed.
    pub truncations: Vec<Truncation>,
    /// Segments whose interrupted seal was completed.
    pub sealed: Vec<String>,
    /// Empty segment files removed (created just before a crash that left
    /// an earlier segment with a torn tail).
    pub removed: Vec<String>,
    /// Leaf hashes recomputed because `tree/leaves` was short.
    pub rebuilt_leaves: u64,
    /// Records of unsealed segments taken from the writer's index snapshot
    /// (`segments/<seq>.oidx`, read-only opens) instead of being decoded,
    /// hashed and indexed again; their frames were still checked.
    pub from_index_snapshots: u64,
}

/// A torn tail that recovery removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub segment: String,
    /// Byte offset where the removed bytes began (the end of the last
    /// complete batch).
    pub offset: u64,
    /// Non-zero bytes removed.
    pub dropped_bytes: u64,
    /// Complete frames removed because their batch was incomplete.
    pub dropped_frames: u64,
    /// Where the removed bytes were saved, relative to the store.
    pub saved_to: Option<String>,
}

impl RecoveryReport {
    /// True if recovery changed nothing.
    pub fn is_clean(&self) -> bool {
        self.truncations.is_empty() && self.sealed.is_empty() && self.removed.is_empty()
    }

    /// The `store.recovered` events to append for this report.
    pub(crate) fn events(&self) -> Vec<Event> {
        self.truncations
            .iter()
            .map(|t| {
                let mut metadata = sealog_format::Metadata::new();
                metadata.insert("segment".into(), t.segment.clone().into());
                metadata.insert("offset".into(), t.offset.into());
                metadata.insert("dropped_bytes".into(), t.dropped_bytes.into());
                metadata.insert("dropped_frames".into(), t.dropped_frames.into());
                if let Some(saved) = &t.saved_to {
                    metadata.insert("saved_to".into(), saved.clone().into());
                }
                Event::new(
                    Actor::new("system", "sealog"),
                    "store.recovered",
                    Resource::new("segment", t.segment.clone()),
                    Outcome::Success,
                )
                .with_reason(format!(
                    "recovery removed an interrupted write: {} bytes ({} complete frames of an \
                     unfinished batch) at byte {} of {}; they were never acknowledged{}",
                    t.dropped_bytes,
                    t.dropped_frames,
                    t.offset,
                    t.segment,
                    // Nothing saved: nothing to add to the sentence.
                    t.saved_to
                        .as_ref()
                        .map(|s| format!(" and are kept in {s}"))
                        .unwrap_or_default()
                ))
                .with_metadata(metadata)
            })
            .collect()
    }
}
