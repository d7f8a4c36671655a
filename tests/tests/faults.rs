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

/// A closed store of a sealed segment followed by an active one, the
/// sealed segment's end marker and footer straddling a sector boundary:
/// returns the events and the sealed segment's file.
fn store_with_a_fresh_seal(dir: &std::path::Path) -> (Vec<sealog::Event>, std::path::PathBuf) {
    use sealog::format::segment::{FOOTER_LEN, SegmentFooter};
    for k in 1..40 {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), sealog_tests::small_options(4 << 10)).unwrap();
        let acked = events(0, k + 1);
        for e in &acked[..k as usize] {
            store.append(e).unwrap();
        }
        store.roll().unwrap();
        store.wait_sealed().unwrap();
        store.append(&acked[k as usize]).unwrap();
        store.close().unwrap();
        let files = sealog_tests::segment_files(tmp.path());
        assert_eq!(files.len(), 2, "{files:?}");
        let bytes = std::fs::read(&files[0]).unwrap();
        let footer = SegmentFooter::decode(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
        if footer.frames_end / 512 != (footer.file_len() - 1) / 512 {
            sealog_tests::copy_store(tmp.path(), dir);
            return (acked, dir.join(files[0].strip_prefix(tmp.path()).unwrap()));
        }
    }
    panic!("no seal straddled a sector boundary");
}

/// A power loss while a segment is being sealed can leave any sector of
/// the end marker and footer written or not, and the file at its sealed
/// or its preallocated length: whatever survives, the segment's records
/// are whole (they were synced before the next segment was created), so
/// verification passes and the open completes the seal.
#[test]
fn a_seal_torn_at_any_sector_by_a_power_loss_is_completed_on_reopen() {
    use sealog::format::segment::{FOOTER_LEN, SegmentFooter};
    let original = tempfile::tempdir().unwrap();
    let (acked, sealed) = store_with_a_fresh_seal(original.path());
    let rel = sealed.strip_prefix(original.path()).unwrap().to_owned();
    let bytes = std::fs::read(&sealed).unwrap();
    let footer = SegmentFooter::decode(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
    let (from, to) = (footer.frames_end as usize, footer.file_len() as usize);
    let sectors: Vec<usize> = (from / 512..=(to - 1) / 512).collect();
    let mut variants = 0;
    for &sector in &sectors {
        for only_this_one_kept in [false, true] {
            for len in [to, 4 << 10] {
                let mut torn = bytes.clone();
                for &s in &sectors {
                    let lost = (s == sector) != only_this_one_kept;
                    if lost {
                        let lo = (s * 512).max(from);
                        let hi = ((s + 1) * 512).min(to);
                        torn[lo..hi].fill(0);
                    }
                }
                torn.resize(len, 0);
                if torn == bytes {
                    continue;
                }
                let label = format!(
                    "sector {sector} {} , file {len} bytes",
                    if only_this_one_kept {
                        "alone written"
                    } else {
                        "alone lost"
                    }
                );
                let copy = tempfile::tempdir().unwrap();
                sealog_tests::copy_store(original.path(), copy.path());
                std::fs::write(copy.path().join(&rel), &torn).unwrap();
                sealog::verify_dir(copy.path())
                    .unwrap_or_else(|e| panic!("{label}: verify before recovery: {e}"));
                let store = Store::open(copy.path(), sealog_tests::small_options(4 << 10))
                    .unwrap_or_else(|e| panic!("{label}: open: {e}"));
                let name = format!("segments/{}", rel.file_name().unwrap().to_str().unwrap());
                assert_eq!(
                    store.recovery_report().sealed,
                    vec![name],
                    "{label}: {:?}",
                    store.recovery_report()
                );
                assert!(store.recovery_report().truncations.is_empty(), "{label}");
                assert_contents(&store, &acked);
                store.verify().unwrap_or_else(|e| panic!("{label}: {e}"));
                store.close().unwrap();
                variants += 1;
            }
        }
    }
    assert!(variants >= 4, "{variants} variants");
}

/// An append to `checkpoints.log` whose size reached the disk but whose
/// bytes did not leaves zeros at its end: an unfinished append, cut on
/// open, not a run of empty checkpoints.
#[test]
fn zeros_at_the_end_of_the_checkpoint_history_are_an_unfinished_append() {
    use sealog::checkpoint::CheckpointOptions;
    use sealog::format::note::SigningKey;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed("audit.example.com/zeros", &[9u8; 32]).unwrap();
    let options = || sealog::StoreOptions {
        checkpoints: Some(CheckpointOptions {
            every: None,
            ..CheckpointOptions::new(key.clone())
        }),
        ..sealog_tests::small_options(SEGMENT)
    };
    let store = Store::open(dir.path(), options()).unwrap();
    store.append_batch(events(0, 5)).unwrap();
    let signed = store.checkpoint().unwrap();
    store.close().unwrap();
    let history = dir.path().join("checkpoints.log");
    let len = std::fs::metadata(&history).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&history)
        .unwrap();
    file.set_len(len + 300).unwrap();
    drop(file);
    sealog::verify_dir(dir.path()).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let kept: Vec<String> = store
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();
    assert_eq!(kept, vec![signed.text]);
    store.close().unwrap();
    assert_eq!(
        std::fs::metadata(&history).unwrap().len(),
        len,
        "the zeros are cut"
    );
    sealog::verify_dir(dir.path()).unwrap();
}

/// A store with two checkpoints in its history, closed; returns the two
/// signed texts and the history's length after the first.
fn store_with_two_checkpoints(dir: &std::path::Path) -> (Vec<String>, usize) {
    let store = Store::open(dir, checkpoint_options()).unwrap();
    store.append_batch(events(0, 5)).unwrap();
    let first = store.checkpoint().unwrap();
    let len = std::fs::metadata(dir.join("checkpoints.log"))
        .unwrap()
        .len() as usize;
    store.append_batch(events(5, 9)).unwrap();
    let second = store.checkpoint().unwrap();
    store.close().unwrap();
    (vec![first.text, second.text], len)
}

fn checkpoint_options() -> sealog::StoreOptions {
    use sealog::checkpoint::CheckpointOptions;
    use sealog::format::note::SigningKey;
    let key = SigningKey::from_seed("audit.example.com/torn", &[8u8; 32]).unwrap();
    sealog::StoreOptions {
        checkpoints: Some(CheckpointOptions {
            every: None,
            on_seal: false,
            ..CheckpointOptions::new(key)
        }),
        ..sealog_tests::small_options(SEGMENT)
    }
}

/// A power loss during an append to `checkpoints.log` can keep any of the
/// sectors the append wrote: whichever survive, the open cuts the
/// unfinished entry and keeps the history before it.
#[test]
fn a_checkpoint_append_torn_at_any_sector_is_cut_on_open() {
    let original = tempfile::tempdir().unwrap();
    let (texts, start) = store_with_two_checkpoints(original.path());
    let history = std::fs::read(original.path().join("checkpoints.log")).unwrap();
    let end = history.len();
    let sectors: Vec<usize> = (start / 512..=(end - 1) / 512).collect();
    let mut variants = 0;
    for &sector in &sectors {
        for only_this_one_kept in [false, true] {
            let mut torn = history.clone();
            for &s in &sectors {
                if (s == sector) != only_this_one_kept {
                    let lo = (s * 512).max(start);
                    let hi = ((s + 1) * 512).min(end);
                    torn[lo..hi].fill(0);
                }
            }
            if torn == history {
                continue;
            }
            let label = format!(
                "sector {sector} alone {}",
                if only_this_one_kept {
                    "written"
                } else {
                    "lost"
                }
            );
            let copy = tempfile::tempdir().unwrap();
            sealog_tests::copy_store(original.path(), copy.path());
            std::fs::write(copy.path().join("checkpoints.log"), &torn).unwrap();
            sealog::verify_dir(copy.path()).unwrap_or_else(|e| panic!("{label}: verify: {e}"));
            let store = Store::open(copy.path(), checkpoint_options())
                .unwrap_or_else(|e| panic!("{label}: open: {e}"));
            let kept: Vec<String> = store
                .checkpoints()
                .unwrap()
                .into_iter()
                .map(|c| c.text)
                .collect();
            assert_eq!(kept, texts[..1], "{label}");
            store.close().unwrap();
            variants += 1;
        }
    }
    assert!(variants >= 2, "{variants} variants");
}

/// Damage to an entry that whole entries follow is not an unfinished
/// append: the open refuses, naming where.
#[test]
fn a_damaged_checkpoint_before_whole_ones_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (_, second_at) = store_with_two_checkpoints(dir.path());
    let path = dir.path().join("checkpoints.log");
    let mut bytes = std::fs::read(&path).unwrap();
    for zeroed in [0..8, 20..30] {
        let mut damaged = bytes.clone();
        damaged[zeroed.clone()].fill(0);
        std::fs::write(&path, &damaged).unwrap();
        let err = Store::open(dir.path(), checkpoint_options()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("checkpoints.log"), "{zeroed:?}: {text}");
        assert!(
            matches!(err, sealog::Error::Corruption(_)),
            "{zeroed:?}: {text}"
        );
    }
    bytes.truncate(second_at);
    std::fs::write(&path, &bytes).unwrap();
    Store::open(dir.path(), checkpoint_options()).unwrap();
}

// The power-loss model itself: what `FaultFs::power_loss` keeps.

use sealog::fault::Unsynced;
use sealog::{OpenMode, Vfs};

/// A directory `d` under a fresh root, on a power-loss filesystem.
fn power_loss_fs() -> (tempfile::TempDir, FaultFs, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FaultFs::with_power_loss();
    let d = tmp.path().join("d");
    fs.create_dir_all(&d).unwrap();
    fs.sync_dir(tmp.path()).unwrap();
    (tmp, fs, d)
}

#[test]
fn a_power_loss_keeps_synced_bytes_and_only_synced_names() {
    let (tmp, fs, d) = power_loss_fs();
    let a = fs.open(&d.join("a"), OpenMode::CreateNew).unwrap();
    a.write_all_at(b"synced", 0).unwrap();
    a.sync_data().unwrap();
    a.write_all_at(b" and more", 6).unwrap();
    // The file's data is synced but not its name.
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    assert!(!image.join("d/a").exists(), "{lost}");
    assert!(
        lost.dropped_entries.iter().any(|e| e.ends_with("+a")),
        "{lost}"
    );

    let (tmp, fs, d) = power_loss_fs();
    let a = fs.open(&d.join("a"), OpenMode::CreateNew).unwrap();
    a.write_all_at(b"synced", 0).unwrap();
    a.sync_data().unwrap();
    fs.sync_dir(&d).unwrap();
    a.write_all_at(b" and more", 6).unwrap();
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    assert_eq!(
        std::fs::read(image.join("d/a")).unwrap(),
        b"synced",
        "{lost}"
    );
    // After the cut, every call fails.
    assert!(a.write_all_at(b"x", 0).is_err());
    assert!(fs.sync_dir(&d).is_err());
}

#[test]
fn a_rename_and_a_removal_last_only_once_their_directory_is_synced() {
    let (tmp, fs, d) = power_loss_fs();
    for name in ["old", "gone"] {
        let f = fs.open(&d.join(name), OpenMode::CreateNew).unwrap();
        f.write_all_at(name.as_bytes(), 0).unwrap();
        f.sync_all().unwrap();
    }
    fs.sync_dir(&d).unwrap();
    fs.rename(&d.join("old"), &d.join("new")).unwrap();
    fs.remove_file(&d.join("gone")).unwrap();
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    assert_eq!(
        std::fs::read(image.join("d/old")).unwrap(),
        b"old",
        "{lost}"
    );
    assert_eq!(
        std::fs::read(image.join("d/gone")).unwrap(),
        b"gone",
        "{lost}"
    );
    assert!(!image.join("d/new").exists(), "{lost}");

    let (tmp, fs, d) = power_loss_fs();
    let f = fs.open(&d.join("old"), OpenMode::CreateNew).unwrap();
    f.write_all_at(b"old", 0).unwrap();
    f.sync_all().unwrap();
    fs.rename(&d.join("old"), &d.join("new")).unwrap();
    fs.sync_dir(&d).unwrap();
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    assert_eq!(
        std::fs::read(image.join("d/new")).unwrap(),
        b"old",
        "{lost}"
    );
    assert!(!image.join("d/old").exists(), "{lost}");
}

/// Each 512-byte sector of an unsynced write survives whole or not at
/// all, holding one of the versions it went through; the size is one the
/// file had since its last sync.
#[test]
fn unsynced_writes_survive_torn_at_sector_granularity() {
    let mut seen_torn = false;
    for seed in 0..64u64 {
        let (tmp, fs, d) = power_loss_fs();
        let f = fs.open(&d.join("f"), OpenMode::CreateNew).unwrap();
        f.write_all_at(&[1u8; 1024], 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&d).unwrap();
        // Two unsynced writes: 2s over sectors 0..3, then 3s over 1..2.
        f.write_all_at(&[2u8; 1536], 0).unwrap();
        f.write_all_at(&[3u8; 512], 512).unwrap();
        let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Random(seed));
        let bytes = std::fs::read(image.join("d/f")).unwrap();
        assert!([1024, 1536].contains(&bytes.len()), "{lost}");
        let versions: [&[u8]; 3] = [&[1, 2], &[1, 2, 3], &[0, 2]];
        let mut kinds = Vec::new();
        for (s, chunk) in bytes.chunks(512).enumerate() {
            assert!(
                chunk.iter().all(|&b| b == chunk[0]),
                "seed {seed}: sector {s} is torn inside: {lost}"
            );
            assert!(
                versions[s].contains(&chunk[0]),
                "seed {seed}: sector {s}: {lost}"
            );
            kinds.push(chunk[0]);
        }
        seen_torn |= kinds.windows(2).any(|w| w[0] != w[1]);
    }
    assert!(seen_torn, "no seed mixed old and new sectors");
}

/// Creating a store makes its own directory entry durable: a power loss
/// right after `Store::open` returned keeps the store, not an empty
/// directory in which the next open would start another one.
#[test]
fn a_new_store_survives_a_power_loss_right_after_it_was_created() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::with_power_loss());
    let dir = tmp.path().join("audit");
    let store = Store::open(&dir, options_on(fs.clone(), SEGMENT)).unwrap();
    let id = store.store_id();
    store.append_batch(events(0, 3)).unwrap();
    drop(store);
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    let reopened = Store::open(image.join("audit"), sealog_tests::small_options(SEGMENT))
        .unwrap_or_else(|e| panic!("{e}\n{lost}"));
    assert_eq!(reopened.store_id(), id, "{lost}");
    assert_contents(&reopened, &events(0, 3));
}

/// `Durability::Buffered` promises durability on `Store::sync` and on
/// close: after either, a power loss keeps every buffered append.
#[test]
fn buffered_appends_survive_a_power_loss_after_sync_and_after_close() {
    for close in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::with_power_loss());
        let dir = tmp.path().join("store");
        let store = Store::open(&dir, options_on(fs.clone(), SEGMENT)).unwrap();
        for i in 0..4 {
            store
                .append_batch_with(events(i * 5, i * 5 + 5), sealog::Durability::Buffered)
                .unwrap();
        }
        if close {
            store.close().unwrap();
        } else {
            store.sync().unwrap();
            fs.crash();
            drop(store);
        }
        let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
        let reopened = Store::open(image.join("store"), sealog_tests::small_options(SEGMENT))
            .unwrap_or_else(|e| panic!("{e}\n{lost}"));
        let label = if close { "after close" } else { "after sync" };
        assert_eq!(reopened.len(), 20, "{label}: {lost}");
        assert_contents(&reopened, &events(0, 20));
    }
}

/// The spare segment file is zero-filled and synced in the background
/// before a roll renames it into place, so the roll's own sync of the new
/// segment's header has none of those zeros left to write: the point of
/// zero-filling ahead is to keep that work off the commit path.
#[test]
fn a_zero_filled_spare_is_synced_before_a_roll_can_take_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::with_power_loss());
    let dir = tmp.path().join("store");
    let options = sealog::StoreOptions {
        preallocation: sealog::Preallocation::ZeroFill,
        ..options_on(fs.clone(), SEGMENT)
    };
    let store = Store::open(&dir, options).unwrap();
    for round in 0..3 {
        let started = std::time::Instant::now();
        while !store.stats().spare_ready {
            assert!(started.elapsed().as_secs() < 30, "no spare was prepared");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let spares: Vec<_> = std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("spare") && !name.ends_with(".tmp")
            })
            .collect();
        assert_eq!(spares.len(), 1, "round {round}: {spares:?}");
        assert_eq!(
            fs.unsynced_bytes(&spares[0]),
            0,
            "round {round}: the spare's zeros are not synced"
        );
        store
            .append_batch(events(round * 3, round * 3 + 3))
            .unwrap();
        store.roll().unwrap();
        store.wait_sealed().unwrap();
    }
    store.close().unwrap();
}

/// Derived tree files that the open had to rebuild (here: deleted) are
/// synced before the open returns: after a power loss the next open finds
/// them whole and rebuilds nothing — reopening must not cost a pass over
/// the store every time.
#[test]
fn a_tree_rebuilt_on_open_survives_a_power_loss_and_is_not_rebuilt_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, sealog_tests::small_options(4 << 10)).unwrap();
    for i in 0..100 {
        store.append_batch(events(i * 4, i * 4 + 4)).unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    for name in ["leaves", "level-1"] {
        std::fs::remove_file(dir.join("tree").join(name)).unwrap();
    }
    let fs = Arc::new(FaultFs::with_power_loss());
    let store = Store::open(&dir, options_on(fs.clone(), 4 << 10)).unwrap();
    let rebuilt = store.recovery_report().rebuilt_leaves;
    assert!(rebuilt >= 256, "{rebuilt} leaves rebuilt");
    drop(store);
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    let fs = Arc::new(FaultFs::new());
    fs.start_recording();
    let store = Store::open(image.join("store"), options_on(fs.clone(), 4 << 10)).unwrap();
    let tree_writes: Vec<_> = fs
        .take_recording()
        .into_iter()
        .filter(|c| c.path.to_string_lossy().contains("/tree/") && c.op != Op::SyncDir)
        .collect();
    assert_eq!(store.recovery_report().rebuilt_leaves, 0, "{lost}");
    assert!(
        tree_writes.is_empty(),
        "rebuilt again: {tree_writes:?}\n{lost}"
    );
    store.verify().unwrap();
}

/// Segments after one whose tail was torn can hold no committed record
/// (the writer syncs a segment before it creates the next); recovery
/// removes them, and the removal is made durable before the open returns:
/// were they to come back after a power loss, they would no longer follow
/// the repaired segment and the store would not open.
#[test]
fn empty_segments_removed_by_recovery_stay_removed_after_a_power_loss() {
    use sealog::format::segment::{Manifest, SegmentHeader};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, sealog_tests::small_options(SEGMENT)).unwrap();
    for i in 0..6 {
        store.append(event(i)).unwrap();
    }
    store.close().unwrap();
    // Tear the last frame of the active segment, and put an empty segment
    // after it, as a crash between the two could never leave with a disk
    // that keeps its syncs (recovery handles it all the same).
    let segment = dir.join("segments/00000000000000000000.seg");
    let bytes = std::fs::read(&segment).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    std::fs::write(&segment, &bytes[..end - 5]).unwrap();
    let manifest = Manifest::decode(&std::fs::read(dir.join("STORE")).unwrap()).unwrap();
    let header = SegmentHeader {
        store_id: manifest.store_id,
        segment_no: 1,
        first_seq: 6,
        chain_in: [7; 32],
        created_at: sealog::Timestamp::now(),
    };
    let mut later = header.encode().to_vec();
    later.resize(4096, 0);
    std::fs::write(dir.join("segments/00000000000000000006.seg"), later).unwrap();

    let fs = Arc::new(FaultFs::with_power_loss());
    let store = Store::open(&dir, options_on(fs.clone(), SEGMENT)).unwrap();
    assert_eq!(
        store.recovery_report().removed,
        vec!["segments/00000000000000000006.seg".to_owned()]
    );
    assert_eq!(store.len(), 6, "5 events and the recovery note");
    drop(store);
    let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), Unsynced::Lost);
    let store = Store::open(image.join("store"), sealog_tests::small_options(SEGMENT))
        .unwrap_or_else(|e| panic!("{e}\n{lost}"));
    assert!(store.recovery_report().removed.is_empty());
    assert_eq!(store.len(), 6);
    store.verify().unwrap();
}

/// Every seal is synced before the next one starts: a power loss after two
/// seals, whatever part of the unsynced changes it keeps, never leaves the
/// first segment without its footer while the second has one (a store that
/// would not open: an unsealed segment before a sealed one is corruption).
#[test]
fn a_seal_is_durable_before_the_next_seal_starts() {
    for seed in 0..32u64 {
        let tmp = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultFs::with_power_loss());
        let dir = tmp.path().join("store");
        let store = Store::open(&dir, options_on(fs.clone(), SEGMENT)).unwrap();
        for round in 0..3 {
            store
                .append_batch(events(round * 4, round * 4 + 4))
                .unwrap();
            store.roll().unwrap();
            store.wait_sealed().unwrap();
        }
        drop(store);
        let unsynced = if seed == 0 {
            Unsynced::Lost
        } else {
            Unsynced::Random(seed)
        };
        let (_t, image, lost) = sealog_tests::power_cut(&fs, tmp.path(), unsynced);
        let store = Store::open(image.join("store"), sealog_tests::small_options(SEGMENT))
            .unwrap_or_else(|e| panic!("{unsynced:?}: {e}\n{lost}"));
        assert_contents(&store, &events(0, 12));
        store
            .verify()
            .unwrap_or_else(|e| panic!("{unsynced:?}: {e}\n{lost}"));
    }
}

/// The last sealed segment's end marker lost, its footer intact (a seal a
/// power loss interrupted between the two sectors): an open, which maps
/// sealed segments and closes their files while it reads them, reopens
/// that one for writing to seal it again; a read-only open reads it as
/// it is. Every record stays, and the store verifies.
#[test]
fn a_sealed_segment_without_its_end_marker_is_reopened_and_sealed_again() {
    use sealog::format::segment::{END_MARKER_LEN, FOOTER_LEN, SegmentFooter};
    let dir = tempfile::tempdir().unwrap();
    let acked = events(0, 200);
    {
        let store = Store::open(dir.path(), sealog_tests::small_options(4 << 10)).unwrap();
        for e in &acked {
            store.append(e).unwrap();
        }
        store.wait_sealed().unwrap();
        store.close().unwrap();
    }
    let files = sealog_tests::segment_files(dir.path());
    let sealed: Vec<_> = files
        .iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes.len() >= FOOTER_LEN
                && SegmentFooter::decode(&bytes[bytes.len() - FOOTER_LEN..]).is_ok()
        })
        .collect();
    assert!(sealed.len() >= 3, "{files:?}");
    let last = sealed.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let footer = SegmentFooter::decode(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
    let at = usize::try_from(footer.frames_end).unwrap();
    // The sectors of the marker never written: zeros where it goes.
    bytes[at..at + END_MARKER_LEN].fill(0);
    std::fs::write(last, &bytes).unwrap();
    {
        let reader = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.len(), acked.len() as u64);
    }
    let store = Store::open(dir.path(), sealog_tests::small_options(4 << 10)).unwrap();
    assert_eq!(store.len(), acked.len() as u64);
    store.close().unwrap();
    let resealed = std::fs::read(last).unwrap();
    assert!(
        sealog::format::frame::is_end_marker(&resealed[at..]),
        "the end marker was written again"
    );
    sealog::verify_dir(dir.path()).expect("the store verifies");
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_contents(&store, &acked);
}
