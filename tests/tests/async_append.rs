//! `Store::append_async`: the same contract as `append` (validation,
//! durability, order of the calls, errors), with tasks woken by the
//! committer instead of threads parked per event.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;

use sealog::fault::{Fault, FaultFs, Op};
use sealog::{Durability, Error, Store};
use sealog_tests::{assert_contents, event, events, options_on, small_options};

const SEGMENT: u64 = 64 << 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

#[test]
fn concurrent_async_appends_are_all_acknowledged_durable_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), small_options(SEGMENT)).unwrap());
    let receipts = runtime().block_on(async {
        let tasks: Vec<_> = (0..512u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { (i, store.append_async(event(i)).await) })
            })
            .collect();
        let mut receipts = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            receipts.push((i, r.unwrap()));
        }
        receipts
    });
    // Every acknowledged event is durable: readable, at the seq its receipt
    // names, and nothing else was written.
    assert_eq!(store.len(), 512);
    let durable = store.stats().records;
    assert_eq!(durable, 512);
    for (i, receipt) in &receipts {
        let record = store.get(receipt.seq).unwrap().unwrap();
        assert_eq!(record.event, event(*i), "seq {}", receipt.seq);
    }
    let mut seqs: Vec<u64> = receipts.iter().map(|(_, r)| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..512).collect::<Vec<_>>());
    drop(store);
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.len(), 512);
    store.verify().unwrap();
}

#[test]
fn async_appends_keep_the_order_of_the_calls_and_batches_stay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    // Queued at the call, in call order, before any future is polled.
    let first = store.append_async(event(0));
    let batch = store.append_batch_async_with(events(1, 4), Durability::Group);
    let last = store.append_async(event(4));
    let (a, b, c) = runtime().block_on(async { (last.await, batch.await, first.await) });
    assert_eq!(a.unwrap().seq, 4);
    assert_eq!(
        b.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(c.unwrap().seq, 0);
    assert_contents(&store, &events(0, 5));
}

#[test]
fn the_receipts_known_at_queue_time_are_those_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    store.append_batch(events(0, 2)).unwrap();
    let batch = store.append_batch_async_with(events(2, 5), Durability::Group);
    let queued = batch.queued_receipts().unwrap().to_vec();
    assert_eq!(
        queued.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let acknowledged = runtime().block_on(batch).unwrap();
    assert_eq!(queued, acknowledged);
    // A refused batch has none.
    let mut bad = event(9);
    bad.action = "Not An Action".into();
    let refused = store.append_batch_async_with([bad], Durability::Group);
    assert!(refused.queued_receipts().is_none());
    assert!(runtime().block_on(refused).is_err());
}

#[test]
fn an_invalid_async_append_is_refused_like_append_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    let mut bad = event(0);
    bad.action = "Not An Action".into();
    let sync_err = store.append(bad.clone()).unwrap_err();
    let async_err = runtime().block_on(store.append_async(bad)).unwrap_err();
    assert!(matches!(async_err, Error::InvalidEvent(_)), "{async_err}");
    assert_eq!(async_err.to_string(), sync_err.to_string());
    assert_eq!(store.len(), 0);

    let read_only = Store::open_read_only(dir.path()).unwrap();
    let err = runtime()
        .block_on(read_only.append_async(event(1)))
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly), "{err}");
}

#[test]
fn a_failed_fdatasync_wakes_pending_async_appends_with_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultFs::new());
    let store = Arc::new(Store::open(dir.path(), options_on(fs.clone(), SEGMENT)).unwrap());
    store.append(event(0)).unwrap();
    fs.fail(Op::SyncData, Some(".seg"), 0, Fault::Io);
    let results = runtime().block_on(async {
        let tasks: Vec<_> = (1..65u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append_async(event(i)).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    // None hangs; none is acknowledged without its sync; the first group's
    // events are unacknowledged (fate known at reopen), later ones refused.
    for r in &results {
        match r {
            Err(Error::Unacknowledged { .. } | Error::WritesRefused { .. }) => {}
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::Unacknowledged { .. }))),
        "the group whose sync failed is reported as unacknowledged"
    );
}
