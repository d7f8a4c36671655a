//! Basic behaviour of the store: append, read back, reopen, roll, seal.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use sealog::{Durability, Error, Store};
use sealog_tests::{assert_contents, event, events, open, small_options};

#[test]
fn appended_events_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64 << 10);
    let mut expected = Vec::new();
    for i in 0..50 {
        let r = store.append(event(i)).unwrap();
        assert_eq!(r.seq, i);
        expected.push(event(i));
    }
    let receipts = store.append_batch(events(50, 300)).unwrap();
    assert_eq!(receipts.first().unwrap().seq, 50);
    assert_eq!(receipts.last().unwrap().seq, 299);
    expected.extend(events(50, 300));
    assert_contents(&store, &expected);
    let report = store.verify().unwrap();
    assert_eq!(report.records, 300);
}

#[test]
fn a_reopened_store_continues_the_log_and_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16 << 10);
    for i in 0..4 {
        store.append_batch(events(i * 50, i * 50 + 50)).unwrap();
    }
    let head = store.head();
    store.close().unwrap();
    let store = open(dir.path(), 16 << 10);
    assert!(
        store.recovery_report().is_clean(),
        "{:?}",
        store.recovery_report()
    );
    assert_eq!(store.head(), head);
    for i in 4..8 {
        store.append_batch(events(i * 50, i * 50 + 50)).unwrap();
    }
    assert_contents(&store, &events(0, 400));
    store.verify().unwrap();
}

#[test]
fn segments_roll_and_seal_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 8 << 10);
    for i in 0..40 {
        store.append_batch(events(i * 10, i * 10 + 10)).unwrap();
    }
    store.wait_sealed().unwrap();
    let files = sealog_tests::segment_files(dir.path());
    assert!(files.len() > 5, "{} segments", files.len());
    assert_contents(&store, &events(0, 400));
    let report = store.verify().unwrap();
    assert_eq!(report.sealed_segments + 1, report.segments);
    drop(store);
    let report = sealog::verify_dir(dir.path()).unwrap();
    assert_eq!(report.records, 400);
}

#[test]
fn buffered_appends_become_durable_on_sync_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64 << 10);
    store
        .append_batch_with(events(0, 100), Durability::Buffered)
        .unwrap();
    store.sync().unwrap();
    store
        .append_batch_with(events(100, 150), Durability::Buffered)
        .unwrap();
    store.close().unwrap();
    let store = open(dir.path(), 64 << 10);
    assert_contents(&store, &events(0, 150));
}

#[test]
fn concurrent_appenders_get_dense_distinct_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 32 << 10);
    let mut seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    (0..50)
                        .map(|i| store.append(event(t * 1000 + i)).unwrap().seq)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    seqs.sort_unstable();
    assert_eq!(seqs, (0..400).collect::<Vec<_>>());
    store.verify().unwrap();
}

#[test]
fn an_invalid_event_in_a_batch_writes_nothing_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64 << 10);
    let mut batch = events(0, 5);
    batch[1].actor.id.clear();
    batch[3].action = "Not Valid".into();
    let err = store.append_batch(batch).unwrap_err();
    let Error::InvalidBatch(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 2);
    assert_eq!((errors[0].index, errors[0].error.field()), (1, "actor.id"));
    assert_eq!((errors[1].index, errors[1].error.field()), (3, "action"));
    assert!(err.to_string().contains("[event 1]"), "{err}");
    assert_eq!(store.len(), 0);
    let mut one = event(0);
    one.outcome = sealog::Outcome::Denied;
    one.actor.kind = "User".into();
    let err = store.append(one).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidEvent(e) if e.field() == "actor.type"),
        "{err}"
    );
}

#[test]
fn a_second_process_cannot_open_the_store_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), small_options(64 << 10)).unwrap();
    let err = Store::open(dir.path(), small_options(64 << 10)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let read_only = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.len(), 0);
}

#[test]
fn receipts_carry_the_leaf_and_chain_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64 << 10);
    let receipts = store.append_batch(events(0, 3)).unwrap();
    let genesis = sealog::format::chain::genesis(&store.store_id());
    let mut chain = genesis;
    for r in &receipts {
        let bytes = store.get_raw(r.seq).unwrap().unwrap();
        assert_eq!(r.leaf_hash, sealog::format::merkle::leaf_hash(&bytes));
        chain = sealog::format::chain::link(&chain, &r.leaf_hash);
        assert_eq!(r.chain_hash, chain);
    }
    assert_eq!(store.head().chain_head, chain);
}

#[test]
fn oversized_metadata_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64 << 10);
    let mut metadata = sealog::format::Metadata::new();
    metadata.insert("blob".into(), "x".repeat(17 * 1024).into());
    let err = store.append(event(1).with_metadata(metadata)).unwrap_err();
    let Error::InvalidEvent(e) = &err else {
        panic!("{err}")
    };
    assert_eq!(e.field(), "metadata");
    assert!(err.to_string().contains("16384"), "{err}");
    assert_eq!(store.len(), 0);
}

#[test]
fn the_active_segment_is_sealed_when_it_gets_old() {
    let dir = tempfile::tempdir().unwrap();
    let options = sealog::StoreOptions {
        segment_max_age: Some(std::time::Duration::from_millis(50)),
        ..small_options(1 << 20)
    };
    let store = Store::open(dir.path(), options).unwrap();
    store.append_batch(events(0, 10)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.stats().sealed_segments == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the segment was never sealed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // An empty active segment is not sealed, however old.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(store.stats().sealed_segments, 1);
    store.append_batch(events(10, 20)).unwrap();
    assert_contents(&store, &events(0, 20));
    store.verify().unwrap();
}

#[test]
fn followers_are_woken_when_records_become_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64 << 10);
    store.append_batch(events(0, 3)).unwrap();
    // Nothing new: the wait times out and reports what is visible.
    let t = std::time::Instant::now();
    assert_eq!(
        store.wait_for_records(3, std::time::Duration::from_millis(50)),
        3
    );
    assert!(t.elapsed() >= std::time::Duration::from_millis(50));
    let follower = {
        let store = store.clone();
        std::thread::spawn(move || store.wait_for_records(3, std::time::Duration::from_secs(30)))
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    store.append(event(3)).unwrap();
    assert_eq!(follower.join().unwrap(), 4);
    assert_eq!(store.get(3).unwrap().unwrap().event, event(3));
}

#[test]
fn rolls_close_together_never_take_a_spare_that_is_being_prepared() {
    // Zero-filled spares and tiny segments: the sealer prepares a spare
    // while the committer may be renaming the previous one into place.
    for _ in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let options = sealog::StoreOptions {
            segment_size: 64 << 10,
            preallocation: sealog::Preallocation::ZeroFill,
            ..sealog::StoreOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..30 {
                        let first = t * 10_000 + i * 100;
                        store.append_batch(events(first, first + 100)).unwrap();
                    }
                });
            }
        });
        store.wait_sealed().unwrap();
        assert!(
            store.stats().segment_rolls >= 8,
            "{} rolls",
            store.stats().segment_rolls
        );
        store.verify().unwrap();
        drop(store);
        // At most one spare is kept across a reopen.
        let spares = std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("spare")
            })
            .count();
        assert!(spares <= 1, "{spares} spare files");
    }
}

/// A read-only open while a writer seals segments: sealing cuts a segment
/// file to its sealed length, which a reader may be in the middle of
/// reading. Every open succeeds and sees a whole prefix of the log.
#[test]
fn read_only_opens_while_a_writer_seals_segments_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path(), 16 << 10));
    store.append_batch(events(0, 20)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 20;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.append_batch(events(next, next + 20)).unwrap();
                next += 20;
            }
        })
    };
    for opened in 0..300 {
        let reader = Store::open_read_only(dir.path())
            .unwrap_or_else(|e| panic!("read-only open {opened} failed: {e}"));
        assert!(reader.len() >= 20);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}
