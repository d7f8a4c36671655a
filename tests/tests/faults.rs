//! Injected failures: a failed write or sync fails the append that needed
//! it, latches the store into refusing writes until reopen, and loses
//! nothing that was acknowledged.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::io::ErrorKind;
use std::sync::Arc;

use sealog::fault::{Fault, FaultFs, Op};
use sealog::{Error, Store};
use sealog_tests::{assert_contents, event, events, options_on};

const SEGMENT: u64 = 16 << 10;

fn open_on(fs: &Arc<FaultFs>, dir: &std::path::Path) -> Store {
    Store::open(dir, options_on(fs.clone(), SEGMENT)).unwrap()
}

/// Appends until an append fails; returns the events acknowledged and the
/// error.
fn append_until_failure(store: &Store, start: u64) -> (Vec<sealog::Event>, Error) {
    let mut acked = Vec::new();
    for i in start..start + 2000 {
        match store.append_batch(events(i * 3, i * 3 + 3)) {
            Ok(_) => acked.extend(events(i * 3, i * 3 + 3)),
            Err(e) => return (acked, e),
        }
    }
    panic!("no append failed");
}

/// After the failure: later appends are refused with the original cause,
/// and a reopen (on a healthy disk) finds every acknowledged event.
fn check_refusal_and_recovery(
    dir: &std::path::Path,
    store: Store,
    acked: &[sealog::Event],
    err: &Error,
    cause: &str,
) {
    assert!(err.to_string().contains(cause), "{err}");
    assert!(err.is_write_refusal(), "{err}");
    let later = store.append(event(99_999)).unwrap_err();
    assert!(matches!(later, Error::WritesRefused { .. }), "{later}");
    assert!(later.to_string().contains(cause), "{later}");
    assert!(later.to_string().contains("reopen"), "{later}");
    drop(store);
    let reopened = Store::open(dir, sealog_tests::small_options(SEGMENT)).unwrap();
    // Acknowledged events are all there, in order; the failed batch may or
    // may not have reached the disk, and a store.recovered note may follow.
    let records: Vec<_> = reopened.scan(..).map(|r| r.unwrap()).collect();
    assert!(records.len() >= acked.len());
    for (record, want) in records.iter().zip(acked) {
        assert_eq!(&record.event, want);
    }
    reopened.verify().unwrap();
    reopened.append(event(1)).unwrap();
    reopened.verify().unwrap();
}

#[test]
fn a_failed_fdatasync_fails_the_append_and_latches() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    fs.fail(Op::SyncData, Some(".seg"), 7, Fault::Io);
    let (acked, err) = append_until_failure(&store, 0);
    assert_eq!(
        acked.len(),
        7 * 3,
        "the seven appends synced before the failure"
    );
    // The failing append's own batch: not acknowledged, fate known at reopen.
    assert!(matches!(err, Error::Unacknowledged { .. }), "{err}");
    check_refusal_and_recovery(dir.path(), store, &acked, &err, "fdatasync");
}

#[test]
fn a_failed_write_fails_the_append_and_latches() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    fs.fail(Op::Write, Some(".seg"), 4, Fault::Io);
    let (acked, err) = append_until_failure(&store, 0);
    assert_eq!(acked.len(), 4 * 3);
    check_refusal_and_recovery(dir.path(), store, &acked, &err, "write");
}

#[test]
fn a_full_disk_is_reported_as_such_and_a_short_write_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    fs.fail(Op::Write, Some(".seg"), 5, Fault::ShortWrite);
    let (acked, err) = append_until_failure(&store, 0);
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    assert!(err.to_string().contains("No space left"), "{err}");
    // The half-written batch is dropped on reopen, and says so.
    drop(store);
    let reopened = Store::open(dir.path(), sealog_tests::small_options(SEGMENT)).unwrap();
    let report = reopened.recovery_report();
    assert_eq!(report.truncations.len(), 1, "{report:?}");
    let records: Vec<_> = reopened.scan(..).map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), acked.len() + 1);
    assert_eq!(records.last().unwrap().event.action, "store.recovered");
    reopened.verify().unwrap();
}

#[test]
fn a_failure_while_sealing_latches_and_the_seal_completes_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    // The sealer writes the footer, then cuts the file to length: fail the
    // cut, leaving a footer that is not at the end of the file.
    fs.fail(
        Op::SetLen,
        Some("segments/00000000000000000000.seg"),
        0,
        Fault::Io,
    );
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..200u64 {
        match store.append_batch(events(i * 3, i * 3 + 3)) {
            Ok(_) => acked.extend(events(i * 3, i * 3 + 3)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if store.wait_sealed().is_err() {
            break;
        }
    }
    let later = store.append(event(5)).unwrap_err();
    assert!(matches!(later, Error::WritesRefused { .. }), "{later}");
    assert!(
        later.to_string().contains("sealing"),
        "{later} / {failure:?}"
    );
    drop(store);
    let reopened = Store::open(dir.path(), sealog_tests::small_options(SEGMENT)).unwrap();
    assert_eq!(
        reopened.recovery_report().sealed,
        vec!["segments/00000000000000000000.seg".to_owned()]
    );
    assert_contents(&reopened, &acked);
    reopened.verify().unwrap();
}

#[test]
fn a_failure_creating_the_next_segment_latches_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    fs.fail(Op::Rename, Some(".seg"), 0, Fault::NoSpace);
    let (acked, err) = append_until_failure(&store, 0);
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    check_refusal_and_recovery(dir.path(), store, &acked, &err, "rename");
}

#[test]
fn waiting_appenders_are_woken_by_a_failure_not_left_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    fs.fail_always(Op::SyncData, Some(".seg"), 3, Fault::Io);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    (0..20)
                        .map(|i| store.append(event(t * 100 + i)).is_ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: usize = results.iter().flatten().filter(|&&ok| ok).count();
    assert!(ok < 16 * 20, "some appends must have failed");
    drop(store);
    let reopened = Store::open(dir.path(), sealog_tests::small_options(SEGMENT)).unwrap();
    assert!(reopened.len() as usize >= ok);
    reopened.verify().unwrap();
}

/// The files in `segments/` whose name ends in `.tmp`.
fn leftover_tmp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// The message of a segment that could not get its space: the file, the
/// size asked for, and the two ways out.
fn assert_names_file_size_and_fix(message: &str, file: &str, size: &str) {
    for part in [file, size, "removed", "Free space", "smaller segment size"] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

#[test]
fn a_disk_too_full_for_the_first_segment_names_file_and_size_and_leaves_no_tmp_file() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    fs.fail(Op::Allocate, Some(".seg.tmp"), 0, Fault::NoSpace);
    let err = Store::open(dir.path(), options_on(fs.clone(), SEGMENT)).unwrap_err();
    assert!(
        matches!(err, Error::SegmentSpace { size: SEGMENT, .. }),
        "{err}"
    );
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    assert_names_file_size_and_fix(
        &err.to_string(),
        "00000000000000000000.seg.tmp",
        "16384 bytes (16 KiB)",
    );
    assert_eq!(leftover_tmp_files(dir.path()), Vec::<String>::new());
    // With space again, the directory opens as an empty store.
    let store = open_on(&fs, dir.path());
    store.append(event(0)).unwrap();
    store.verify().unwrap();
}

#[test]
fn a_disk_full_while_zero_filling_a_segment_removes_the_part_written() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    // Zero-filled segments (the default): the second 1 MiB piece of zeros
    // finds the disk full, after the first one was written.
    fs.fail(Op::Write, Some(".seg.tmp"), 1, Fault::ShortWrite);
    let options = sealog::StoreOptions {
        preallocation: sealog::Preallocation::ZeroFill,
        ..options_on(fs.clone(), 4 << 20)
    };
    let err = Store::open(dir.path(), options).unwrap_err();
    assert!(matches!(err, Error::SegmentSpace { .. }), "{err}");
    assert_names_file_size_and_fix(
        &err.to_string(),
        "00000000000000000000.seg.tmp",
        "4194304 bytes (4 MiB)",
    );
    assert_eq!(leftover_tmp_files(dir.path()), Vec::<String>::new());
}

#[test]
fn a_disk_full_while_preparing_the_spare_latches_names_it_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    fs.fail_always(Op::Write, Some("spare-"), 0, Fault::NoSpace);
    let options = sealog::StoreOptions {
        preallocation: sealog::Preallocation::ZeroFill,
        ..options_on(fs.clone(), SEGMENT)
    };
    let store = Store::open(dir.path(), options).unwrap();
    // The spare is prepared in the background as the store opens, and its
    // failure latches the store: appends are refused from then on. (Closing
    // at once could win the race and skip the spare altogether.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seq = 0;
    // The append that meets the latch may be refused as unacknowledged;
    // every append after it is refused outright, naming the cause.
    loop {
        match store.append(event(seq)) {
            Err(_) => break,
            Ok(_) => {
                seq += 1;
                assert!(
                    std::time::Instant::now() < deadline,
                    "the failed spare never latched the store"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    let err = store.append(event(seq)).unwrap_err();
    let _ = store.close();
    assert!(matches!(err, Error::WritesRefused { .. }), "{err}");
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    assert_names_file_size_and_fix(&err.to_string(), "spare-", "16384 bytes (16 KiB)");
    assert_eq!(leftover_tmp_files(dir.path()), Vec::<String>::new());
}

#[test]
fn a_disk_full_when_rolling_to_a_new_segment_leaves_no_tmp_file_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = open_on(&fs, dir.path());
    fs.fail(Op::Allocate, Some(".seg.tmp"), 0, Fault::NoSpace);
    let (acked, err) = append_until_failure(&store, 0);
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    assert_names_file_size_and_fix(&err.to_string(), ".seg.tmp", "16384 bytes (16 KiB)");
    assert_eq!(leftover_tmp_files(dir.path()), Vec::<String>::new());
    check_refusal_and_recovery(dir.path(), store, &acked, &err, "cannot reserve");
}
