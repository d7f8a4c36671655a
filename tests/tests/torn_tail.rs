//! A torn tail — the bytes of an interrupted write — is removed on reopen,
//! leaving exactly the complete batches; the chain then continues.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::fs;
use std::path::Path;

use sealog::{Store, verify_dir};
use sealog_tests::{copy_store, event, frames, segment_files, small_options};

const SEGMENT: u64 = 64 << 10;

/// A store whose active segment holds `n` single-event batches, closed.
fn store_with_singles(dir: &Path, n: u64) -> Vec<(usize, usize)> {
    let store = Store::open(dir, small_options(SEGMENT)).unwrap();
    for i in 0..n {
        store.append(event(i)).unwrap();
    }
    store.close().unwrap();
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    let frames = frames(&fs::read(&files[0]).unwrap());
    assert_eq!(frames.len() as u64, n);
    frames
}

/// A copy of the store in `original` whose file `rel` has the bytes
/// `range` zeroed: sectors a write never got to the disk.
fn zeroed_copy(original: &Path, rel: &Path, range: std::ops::Range<usize>) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_store(original, copy.path());
    let path = copy.path().join(rel);
    let mut bytes = fs::read(&path).unwrap();
    bytes[range].fill(0);
    fs::write(&path, &bytes).unwrap();
    copy
}

/// Checks the reopened store: `complete` original events, then (if bytes
/// were dropped) one `store.recovered` event; verification passes; appends
/// continue the chain.
fn check_reopened(dir: &Path, complete: u64, cut: usize) {
    let store = Store::open(dir, small_options(SEGMENT)).unwrap();
    let dropped = !store.recovery_report().truncations.is_empty();
    let expected_len = complete + u64::from(dropped);
    assert_eq!(store.len(), expected_len, "cut at {cut}");
    for seq in 0..complete {
        let record = store.get(seq).unwrap().unwrap();
        assert_eq!(record.event, event(seq), "cut at {cut}, seq {seq}");
    }
    if dropped {
        let note = store.get(complete).unwrap().unwrap();
        assert_eq!(note.event.action, "store.recovered");
        assert_eq!(note.event.actor.id, "sealog");
        let t = &store.recovery_report().truncations[0];
        let saved = dir.join(t.saved_to.as_ref().unwrap());
        assert!(
            saved.exists(),
            "dropped bytes are kept in {}",
            saved.display()
        );
    }
    store
        .verify()
        .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
    let r = store.append(event(1000)).unwrap();
    assert_eq!(r.seq, expected_len);
    store
        .verify()
        .unwrap_or_else(|e| panic!("cut at {cut}, after append: {e}"));
    store.close().unwrap();
    verify_dir(dir).unwrap();
}

#[test]
fn truncating_the_active_segment_at_every_byte_of_its_last_frames() {
    let original = tempfile::tempdir().unwrap();
    let frames = store_with_singles(original.path(), 12);
    let segment = segment_files(original.path())[0].clone();
    let rel = segment.strip_prefix(original.path()).unwrap().to_owned();
    let first = frames[frames.len() - 3].0;
    let (last, last_len) = frames[frames.len() - 1];
    for cut in first..=last + last_len {
        let copy = tempfile::tempdir().unwrap();
        copy_store(original.path(), copy.path());
        let file = fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(&rel))
            .unwrap();
        file.set_len(cut as u64).unwrap();
        drop(file);
        let complete = frames.iter().filter(|(o, l)| o + l <= cut).count() as u64;
        check_reopened(copy.path(), complete, cut);
    }
}

#[test]
fn sectors_never_written_in_the_last_frames_are_a_torn_tail() {
    let original = tempfile::tempdir().unwrap();
    let frames = store_with_singles(original.path(), 40);
    let segment = segment_files(original.path())[0].clone();
    let rel = segment.strip_prefix(original.path()).unwrap().to_owned();
    let first = frames[frames.len() - 6].0;
    let end = frames.last().map(|(o, l)| o + l).unwrap();
    // Zero from each sector boundary (or frame start) inside the last frames
    // to the end: the state a write leaves when later sectors never reached
    // the disk.
    let mut cuts: Vec<usize> = (first / 512 + 1..=end / 512).map(|s| s * 512).collect();
    cuts.extend(frames.iter().rev().take(6).map(|(o, _)| *o));
    for cut in cuts {
        let copy = zeroed_copy(original.path(), &rel, cut..end);
        let complete = frames.iter().filter(|(o, l)| o + l <= cut).count() as u64;
        check_reopened(copy.path(), complete, cut);
    }
}

#[test]
fn a_partial_batch_is_removed_entirely() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    store.append_batch(sealog_tests::events(0, 5)).unwrap();
    store.append_batch(sealog_tests::events(5, 15)).unwrap();
    store.close().unwrap();
    let segment = segment_files(dir.path())[0].clone();
    let bytes = fs::read(&segment).unwrap();
    let ends: Vec<usize> = frames(&bytes).iter().map(|(o, l)| o + l).collect();
    // Cut inside the last frame of the second batch: its first 9 frames are
    // complete but the batch is not.
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(ends[14] as u64 - 3).unwrap();
    drop(file);
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    let t = &store.recovery_report().truncations[0];
    assert_eq!(t.dropped_frames, 9);
    assert_eq!(t.offset, ends[4] as u64);
    assert_eq!(store.len(), 6, "5 events and the store.recovered event");
    assert_eq!(
        store.get(5).unwrap().unwrap().event.action,
        "store.recovered"
    );
    store.verify().unwrap();
}

/// In a segment whose unused space is far larger than its data (where a
/// scan reads only up to the data, plus room for one frame, and finds the
/// data's end from the end of the file): torn last frames are still cut
/// at the right place, and a stray byte far beyond the data is still
/// found.
#[test]
fn a_large_mostly_unused_segment_is_scanned_as_a_whole() {
    const LARGE: u64 = 16 << 20;
    let original = tempfile::tempdir().unwrap();
    let store = Store::open(original.path(), small_options(LARGE)).unwrap();
    for i in 0..40 {
        store.append(event(i)).unwrap();
    }
    store.close().unwrap();
    let segment = segment_files(original.path())[0].clone();
    let rel = segment.strip_prefix(original.path()).unwrap().to_owned();
    let bytes = fs::read(&segment).unwrap();
    assert_eq!(
        bytes.len() as u64,
        LARGE,
        "the segment's space is reserved whole"
    );
    let frames = frames(&bytes);
    assert_eq!(frames.len(), 40);
    let end = frames.last().map(|(o, l)| o + l).unwrap();

    // Untouched: every record, read-only and writable.
    let copy = tempfile::tempdir().unwrap();
    copy_store(original.path(), copy.path());
    assert_eq!(Store::open_read_only(copy.path()).unwrap().len(), 40);
    let store = Store::open(copy.path(), small_options(LARGE)).unwrap();
    assert_eq!(store.len(), 40);
    assert!(store.recovery_report().truncations.is_empty());
    store.close().unwrap();

    // Torn last frames: cut where the first missing sector starts.
    let first = frames[frames.len() - 3].0;
    for cut in [first, first + 1, (first / 512 + 1) * 512, end - 1] {
        let copy = zeroed_copy(original.path(), &rel, cut..end);
        let complete = frames.iter().filter(|(o, l)| o + l <= cut).count() as u64;
        let store = Store::open(copy.path(), small_options(LARGE)).unwrap();
        let dropped = !store.recovery_report().truncations.is_empty();
        assert_eq!(store.len(), complete + u64::from(dropped), "cut at {cut}");
        store.verify().unwrap();
        store.close().unwrap();
    }

    // A stray byte 12 MiB in, far beyond the data and the room kept after
    // it: the segment does not end cleanly there.
    let copy = tempfile::tempdir().unwrap();
    copy_store(original.path(), copy.path());
    let path = copy.path().join(&rel);
    let mut stray = fs::read(&path).unwrap();
    stray[12 << 20] = 0x5a;
    fs::write(&path, &stray).unwrap();
    // A reader takes the 40 whole records; a writer removes what follows
    // them up to the stray byte, keeps it aside and says so.
    assert_eq!(Store::open_read_only(copy.path()).unwrap().len(), 40);
    let store = Store::open(copy.path(), small_options(LARGE)).unwrap();
    assert_eq!(store.len(), 41, "the 40 records and store.recovered");
    let t = &store.recovery_report().truncations;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].offset, end as u64);
    assert_eq!(t[0].dropped_bytes, 1, "one non-zero byte removed");
    let saved = fs::read(copy.path().join(t[0].saved_to.as_ref().unwrap())).unwrap();
    assert_eq!(saved.last(), Some(&0x5a), "the stray byte is kept");
    store.close().unwrap();
}

/// The zero-filled space ahead of a large active segment's data is read
/// in full by verify (the reader keeps only the first MiB of zeros after
/// the data): the report counts the whole file, and a stray byte anywhere
/// in that space, past the MiBs left out, is seen as it would be in a
/// small segment.
#[test]
fn verify_reads_the_whole_zero_filled_space_of_a_large_active_segment() {
    const LARGE: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(LARGE)).unwrap();
    for i in 0..10 {
        store.append(event(i)).unwrap();
    }
    store.close().unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let len = fs::metadata(&files[0]).unwrap().len();
    assert!(len >= LARGE, "preallocated: {len}");
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.bytes, len);
    assert_eq!(report.unacknowledged_tail_bytes, 0);
    for at in [3 << 20, (5 << 20) + 7, len as usize - 1] {
        let copy = tempfile::tempdir().unwrap();
        sealog_tests::copy_store(dir.path(), copy.path());
        let path = copy.path().join(files[0].strip_prefix(dir.path()).unwrap());
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] = 0x5a;
        fs::write(&path, &bytes).unwrap();
        // After zeroed sectors it reads as the leftover of an interrupted
        // write, which a reopen would remove.
        let stray = verify_dir(copy.path()).unwrap();
        assert_eq!(stray.unacknowledged_tail_bytes, 1, "a stray byte at {at}");
        assert_eq!((stray.records, stray.bytes), (10, len));
    }
}
