//! `segment_recovery`: a store directory built from the input, opened every
//! way the engine opens one.
//!
//! The input is a small archive of store files (see [`unpack`]): the
//! manifest, segments (each named for the first seq in its header, so that
//! a mutated header still names its file), `tree/leaves`, `tree/level-1`,
//! `checkpoints.log` and index sidecars. It is written to a temporary
//! directory and then checked with [`sealog::verify_dir`],
//! [`Store::open_read_only`] (scanned and verified), and [`Store::open`]
//! (recovery, a full scan, verification, a query, one append, close).
//!
//! Everything must return `Ok` or a typed error — never panic, hang or
//! allocate without bound. And: a directory that `verify_dir` passes opens
//! both read-only and for writing; a store that opens for writing and
//! verifies takes one more append, and after a reopen holds it and still
//! verifies.

use std::path::Path;

use sealog::format::{Actor, Event, Outcome, Resource};
use sealog::query::Query;
use sealog::{Preallocation, Store, StoreOptions};

/// Bytes of a segment header before its `first_seq` field.
const HEADER_FIRST_SEQ_AT: usize = 40;

/// What an archive entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `STORE`.
    Manifest,
    /// `segments/<first seq>.seg`.
    Segment,
    /// `tree/leaves`.
    Leaves,
    /// `checkpoints.log`.
    Checkpoints,
    /// `segments/<first seq>.idx` of the segment before it.
    Sidecar,
    /// `tree/level-1`.
    Level1,
}

impl Entry {
    const ALL: [Entry; 6] = [
        Entry::Manifest,
        Entry::Segment,
        Entry::Leaves,
        Entry::Checkpoints,
        Entry::Sidecar,
        Entry::Level1,
    ];

    /// The tag byte of this kind of entry.
    pub fn tag(self) -> u8 {
        Entry::ALL.iter().position(|&e| e == self).unwrap_or(0) as u8
    }
}

/// Options of the run, from the archive's first byte.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    /// Open with `Preallocation::None` (files end where data ends) instead
    /// of `Allocate`.
    pub grow: bool,
}

/// Packs files into an archive (for seeds): the mode byte, then for each
/// file its tag, its length (`u16`, little-endian) and its bytes.
pub fn pack(mode: Mode, files: &[(Entry, &[u8])]) -> Vec<u8> {
    let mut out = vec![u8::from(mode.grow)];
    for (entry, bytes) in files {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.push(entry.tag());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or_default());
    }
    out
}

/// Reads an archive; a truncated last entry keeps what is there.
pub fn unpack(data: &[u8]) -> (Mode, Vec<(Entry, &[u8])>) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return (Mode::default(), Vec::new());
    };
    let mut files = Vec::new();
    while let [tag, a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        let entry = Entry::ALL
            .get(usize::from(*tag) % Entry::ALL.len())
            .copied()
            .unwrap_or(Entry::Segment);
        files.push((entry, bytes));
        rest = after;
    }
    (
        Mode {
            grow: mode & 1 == 1,
        },
        files,
    )
}

/// Writes the store an archive describes into `dir` (created); returns the
/// run's mode.
pub fn materialize(data: &[u8], dir: &Path) -> std::io::Result<Mode> {
    let (mode, files) = unpack(data);
    write_store(dir, &files)?;
    Ok(mode)
}

fn write_store(dir: &Path, files: &[(Entry, &[u8])]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("segments"))?;
    std::fs::create_dir_all(dir.join("tree"))?;
    let mut last_first_seq = 0u64;
    for (n, (entry, bytes)) in files.iter().enumerate() {
        let name = match entry {
            Entry::Manifest => "STORE".to_owned(),
            Entry::Segment => {
                let first_seq = bytes
                    .get(HEADER_FIRST_SEQ_AT..HEADER_FIRST_SEQ_AT + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(n as u64 * 1000, u64::from_le_bytes);
                last_first_seq = first_seq;
                format!("segments/{first_seq:020}.seg")
            }
            Entry::Leaves => "tree/leaves".to_owned(),
            Entry::Checkpoints => "checkpoints.log".to_owned(),
            Entry::Sidecar => format!("segments/{last_first_seq:020}.idx"),
            Entry::Level1 => "tree/level-1".to_owned(),
        };
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn probe_event() -> Event {
    Event::new(
        Actor::new("user", "fuzz"),
        "fuzz.probe",
        Resource::new("doc", "1"),
        Outcome::Success,
    )
}

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Ok(tmp) = tempfile::tempdir() else {
        return;
    };
    let dir = tmp.path().join("store");
    let Ok(mode) = materialize(data, &dir) else {
        return;
    };
    let verified_on_disk = sealog::verify_dir(&dir).is_ok();
    let read_only = Store::open_read_only(&dir);
    if verified_on_disk && let Err(e) = &read_only {
        panic!("a directory that verifies does not open read-only: {e}");
    }
    if let Ok(store) = read_only {
        let _ = store.scan(..).take(10_000).count();
        let _ = store.verify();
        let _ = store.query(&Query::default());
        let _ = store.recovery_report();
    }
    let options = StoreOptions {
        segment_size: sealog::MIN_SEGMENT_SIZE,
        preallocation: if mode.grow {
            Preallocation::None
        } else {
            Preallocation::Allocate
        },
        ..StoreOptions::default()
    };
    let store = match Store::open(&dir, options.clone()) {
        Ok(store) => store,
        Err(e) if verified_on_disk => panic!("a directory that verifies does not open: {e}"),
        Err(_) => return,
    };
    let scanned = store.scan(..).take(10_000).filter(|r| r.is_ok()).count();
    let verified = store.verify().is_ok();
    let _ = store.query(&Query::default());
    let before = store.len();
    if !verified {
        let _ = store.close();
        return;
    }
    assert_eq!(
        scanned as u64, before,
        "a verified store does not scan in full"
    );
    let appended = store.append(probe_event());
    if let Err(e) = store.close() {
        panic!("closing a verified store failed: {e}");
    }
    let Ok(receipt) = appended else {
        return;
    };
    let reopened = match Store::open(&dir, options) {
        Ok(s) => s,
        Err(e) => panic!("a verified store with one more append does not reopen: {e}"),
    };
    if let Err(e) = reopened.verify() {
        panic!("a verified store with one more append does not verify: {e}");
    }
    match reopened.get(receipt.seq) {
        Ok(Some(r)) => assert_eq!(r.event, probe_event(), "the appended event changed"),
        other => panic!("the appended event is gone after reopen: {other:?}"),
    }
    let _ = reopened.close();
}
