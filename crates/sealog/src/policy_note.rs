//! The privacy-policy note (`privacy-policy.note`, see docs/format.md):
//! where the newest `store.privacy_policy` record of the sealed log is.
//!
//! A reader that names a value in a query (an actor, a request id) checks
//! the log's newest privacy policy against its own, and without the note
//! that lookup opens the index of every sealed segment: a few hundred maps
//! and page faults on a large store, for a record most stores never hold,
//! paid by every command-line query. With the note it looks only in the
//! segments sealed after the seq the note covers, and in the open ones.
//!
//! The note is derived data, like an index sidecar. The writer brings it up
//! to the end of the sealed log after each seal (on the sealer thread, off
//! the commit path); a reader uses it only if it decodes, belongs to the
//! store and covers no more than the sealed log, and checks the record it
//! names before trusting it; otherwise it searches the whole log as before.
//! `verify` compares it with the records.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealog_format::segment::PolicyNote;

use crate::error::{Corruption, CorruptionKind, Error, Location, Result};
use crate::fs::Vfs;
use crate::privacy::{POLICY_ACTION, POLICY_RESOURCE_TYPE, PolicyDescription};
use crate::readers::View;
use crate::store::Inner;

/// The note's file name, in the store directory.
pub(crate) const FILE: &str = "privacy-policy.note";

/// The note's path in the store `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The note of the store `dir` whose id is `store_id`, if it has one. A
/// note that does not decode is a [`CorruptionKind::Structure`], another
/// store's a [`CorruptionKind::ForeignFile`] (what `verify` reports).
pub(crate) fn find(fs: &dyn Vfs, dir: &Path, store_id: &[u8; 16]) -> Result<Option<PolicyNote>> {
    let path = path(dir);
    let bytes = match crate::fs::read_all(fs, &path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let location = || Location::file(FILE);
    let note = PolicyNote::decode(&bytes)
        .map_err(|e| Corruption::new(location(), CorruptionKind::Structure(e)))?;
    if note.store_id != *store_id {
        return Err(Corruption::new(
            location(),
            CorruptionKind::ForeignFile {
                found: crate::error::hex(&note.store_id),
                expected: crate::error::hex(store_id),
            },
        )
        .into());
    }
    Ok(Some(note))
}

/// [`find`] for a reader: `None` if there is no note or it cannot be used
/// (logged; the caller then searches the whole log).
pub(crate) fn read(fs: &dyn Vfs, dir: &Path, store_id: &[u8; 16]) -> Option<PolicyNote> {
    find(fs, dir, store_id).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring the privacy-policy note");
        None
    })
}

/// Whether the record `view` is one the note counts: a privacy policy as
/// [`PolicyDescription::from_event`] reads one.
pub(crate) fn is_policy_view(view: &sealog_format::record::RecordView<'_>) -> bool {
    view.action == POLICY_ACTION
        && view.resource_type == POLICY_RESOURCE_TYPE
        && view
            .to_record()
            .is_ok_and(|r| PolicyDescription::from_event(&r.event).is_some())
}

/// [`is_policy_view`] for a record `checked` from `body`.
pub(crate) fn is_policy_checked(checked: &sealog_format::record::Checked<'_>, body: &[u8]) -> bool {
    checked.action == POLICY_ACTION.as_bytes()
        && checked.resource_type == POLICY_RESOURCE_TYPE.as_bytes()
        && sealog_format::record::decode(body).is_ok_and(|view| is_policy_view(&view))
}

/// The newest privacy-policy record (and its seq) in the segments of
/// `view` that hold records of `seqs` (whole segments: a record found
/// outside `seqs` in one of them is returned as well). `None` if there is
/// none.
pub(crate) fn newest_in(
    view: &View,
    seqs: Range<u64>,
    inner: &Arc<Inner>,
) -> Result<Option<(u64, PolicyDescription)>> {
    let part = View {
        sealed: view
            .sealed
            .iter()
            .filter(|s| s.footer.end_seq() > seqs.start && s.header.first_seq < seqs.end)
            .cloned()
            .collect(),
        open: view
            .open
            .iter()
            .filter(|s| s.header.first_seq < seqs.end)
            .cloned()
            .collect(),
    };
    let query = crate::query::Query {
        actions: vec![crate::query::ActionPattern::new(POLICY_ACTION)?],
        resource_type: Some(POLICY_RESOURCE_TYPE.to_owned()),
        ..crate::query::Query::default()
    };
    let query = inner.config().options.privacy.query(&query);
    // Newest first; the first that reads as a policy is the newest.
    for record in crate::search::Matches::new(&part, &query, inner.clone())? {
        let record = record?;
        if let Some(description) = PolicyDescription::from_event(&record.event) {
            return Ok(Some((record.seq, description)));
        }
    }
    Ok(None)
}

/// Brings the note up to the end of the sealed log: searches the segments
/// sealed since the seq it covers (all of them without a usable note) and
/// writes it anew (atomically: a temporary file synced, renamed, the
/// directory synced). Called by the sealer after each seal. A failed search
/// is logged and leaves the note as it was (readers search past it); a
/// failed write or sync is returned, for the store to latch.
pub(crate) fn update(inner: &Arc<Inner>) -> Result<()> {
    let config = inner.config();
    let view = inner.readers().snapshot();
    if view.sealed.is_empty() {
        return Ok(());
    }
    let sealed_end = view.sealed_end();
    let store_id = config.manifest.store_id;
    let before = read(&*config.fs, &config.dir, &store_id).filter(|n| n.covered <= sealed_end);
    if before.is_some_and(|n| n.covered == sealed_end) {
        return Ok(());
    }
    let from = before.map_or(0, |n| n.covered);
    let found = match newest_in(&view, from..sealed_end, inner) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "could not bring the privacy-policy note up to date");
            return Ok(());
        }
    };
    let note = PolicyNote {
        store_id,
        covered: sealed_end,
        newest: found.map(|(seq, _)| seq).max(before.and_then(|n| n.newest)),
    };
    crate::fs::write_atomic(&*config.fs, &path(&config.dir), &note.encode())
}
