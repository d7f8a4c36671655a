//! Reads from a damaged store never look complete: opening it checks what
//! is cheap to check and refuses damage naming the file; a read that meets
//! a bad frame fails naming the file, byte offset and seq; and only an
//! explicit `OnDamage::ReadAround` reads what is left, listing every range
//! it skips.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::fs;
use std::path::{Path, PathBuf};

use sealog::format::frame;
use sealog::format::note::SigningKey;
use sealog::query::{Order, Query};
use sealog::{
    CheckpointOptions, Corruption, CorruptionKind, Error, OnDamage, Record, Store, StoreOptions,
    Timestamp,
};
use sealog_tests::{events, frames, small_options};

const SEGMENT: u64 = 4 << 10;

/// A closed store of `batches × 4` events with several sealed segments and
/// an active one holding records.
fn store_with(dir: &Path, options: StoreOptions, batches: u64) -> Vec<PathBuf> {
    let store = Store::open(dir, options).unwrap();
    for i in 0..batches {
        store.append_batch(events(i * 4, i * 4 + 4)).unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    sealog::verify_dir(dir).expect("the untouched store verifies");
    let files = sealog_tests::segment_files(dir);
    assert!(files.len() >= 5, "{} segments", files.len());
    files
}

fn sealed_store() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let files = store_with(dir.path(), small_options(SEGMENT), 60);
    (dir, files)
}

const TOTAL: u64 = 240;

fn name(path: &Path) -> String {
    format!("segments/{}", path.file_name().unwrap().to_str().unwrap())
}

fn first_seq(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Flips a byte inside the record of frame `n` of `file`; returns the
/// frame's offset.
fn damage_record(file: &Path, n: usize) -> u64 {
    let mut bytes = fs::read(file).unwrap();
    let (offset, len) = frames(&bytes)[n];
    bytes[offset + len - 20] ^= 0x10;
    fs::write(file, &bytes).unwrap();
    offset as u64
}

fn corruption_of(err: &Error) -> &Corruption {
    err.corruption()
        .unwrap_or_else(|| panic!("expected corruption, got: {err}"))
}

fn read_around(dir: &Path) -> Store {
    Store::open_read_only_with(
        dir,
        StoreOptions {
            on_damage: OnDamage::ReadAround,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn everything(order: Order) -> Query {
    Query {
        order,
        limit: sealog::query::MAX_LIMIT,
        ..Query::default()
    }
}

#[test]
fn a_deleted_sealed_segment_makes_a_read_only_open_fail_naming_it_and_its_seqs() {
    let (dir, files) = sealed_store();
    let (from, to) = (first_seq(&files[1]), first_seq(&files[2]));
    fs::remove_file(&files[1]).unwrap();

    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = corruption_of(&err);
    assert_eq!(c.location.file, name(&files[1]), "{c}");
    assert_eq!(
        c.kind,
        CorruptionKind::MissingSegment {
            expected_segment_no: 1,
            expected_first_seq: from,
            next_segment_no: 2,
            next_first_seq: to,
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("seqs {from} to {}", to - 1)),
        "{text}"
    );
    // The writable open refuses through the same check.
    let err = Store::open(dir.path(), small_options(SEGMENT)).unwrap_err();
    assert_eq!(corruption_of(&err).location.file, name(&files[1]));
}

#[test]
fn a_deleted_first_segment_is_refused_too() {
    let (dir, files) = sealed_store();
    fs::remove_file(&files[0]).unwrap();
    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = corruption_of(&err);
    assert_eq!(c.location.file, name(&files[0]), "{c}");
    assert!(
        matches!(
            c.kind,
            CorruptionKind::MissingSegment {
                expected_first_seq: 0,
                ..
            }
        ),
        "{c}"
    );
}

/// Removing the newest segments leaves no gap in the numbering; the leaf
/// file, written before each footer, still knows how many records were
/// sealed.
#[test]
fn deleting_the_newest_segments_is_caught_by_the_leaf_file_on_both_opens() {
    let (dir, files) = sealed_store();
    let n = files.len();
    let kept_end = first_seq(&files[n - 2]);
    fs::remove_file(&files[n - 1]).unwrap();
    fs::remove_file(&files[n - 2]).unwrap();

    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = corruption_of(&err);
    assert!(
        matches!(c.kind, CorruptionKind::RecordsMissing { have, sealed } if have == kept_end && sealed > have),
        "{c}"
    );
    assert_eq!(c.location.file, name(&files[n - 2]), "{c}");
    // Verification says the same (it used to pass such a store).
    let err = sealog::verify_dir(dir.path()).unwrap_err();
    assert!(
        matches!(
            corruption_of(&err).kind,
            CorruptionKind::RecordsMissing { .. }
        ),
        "{err}"
    );
    // Before, the writable open cut the leaf file to the segments left and
    // went on appending over the lost seqs.
    let leaves = fs::read(dir.path().join("tree/leaves")).unwrap();
    let err = Store::open(dir.path(), small_options(SEGMENT)).unwrap_err();
    assert!(
        matches!(
            corruption_of(&err).kind,
            CorruptionKind::RecordsMissing { .. }
        ),
        "{err}"
    );
    assert_eq!(fs::read(dir.path().join("tree/leaves")).unwrap(), leaves);
}

#[test]
fn a_damaged_record_in_the_open_segment_makes_the_read_only_open_fail() {
    let (dir, files) = sealed_store();
    let active = files.last().unwrap();
    let offset = damage_record(active, 1);
    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = corruption_of(&err);
    assert_eq!(c.location.file, name(active), "{c}");
    assert_eq!(c.location.offset, Some(offset), "{c}");
    assert_eq!(c.location.seq, Some(first_seq(active) + 1), "{c}");
}

/// Records of a live store's open segment are read several at once (one
/// positioned read per run of nearby frames): a damaged frame among them is
/// still an error naming it, after the records before it, never a gap.
#[test]
fn a_damaged_record_in_a_live_open_segment_fails_the_reads_that_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options(1 << 20)).unwrap();
    store.append_batch(events(0, 40)).unwrap();
    // Every record indexed first: records the indexer has not reached yet
    // are read by a scan, which would reach the damaged one for any page.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.stats().index_lag > 0 {
        assert!(std::time::Instant::now() < deadline, "not indexed in 30 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let files = sealog_tests::segment_files(dir.path());
    assert_eq!(files.len(), 1, "every record in the open segment");
    let offset = damage_record(&files[0], 25);

    // A page that stops before the damage reads.
    let page = store
        .query(&Query {
            limit: 5,
            ..everything(Order::NewestFirst)
        })
        .unwrap();
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [39, 38, 37, 36, 35]);

    // One that reaches it fails, naming the frame.
    let err = store
        .query(&Query {
            limit: 30,
            ..everything(Order::NewestFirst)
        })
        .unwrap_err();
    let c = corruption_of(&err);
    assert_eq!(c.location.file, name(&files[0]), "{c}");
    assert_eq!(c.location.offset, Some(offset), "{c}");
    assert_eq!(c.location.seq, Some(25), "{c}");

    // The lazy iterator, in both orders: the records before the damaged
    // one, then the error, then nothing.
    for (order, before) in [(Order::NewestFirst, 26..=39), (Order::OldestFirst, 0..=24)] {
        let items: Vec<_> = store.matches(&everything(order)).unwrap().collect();
        let read: Vec<u64> = items
            .iter()
            .map_while(|i| i.as_ref().ok().map(|r| r.seq))
            .collect();
        let expected: Vec<u64> = if order == Order::NewestFirst {
            before.rev().collect()
        } else {
            before.collect()
        };
        assert_eq!(read, expected, "{order:?}");
        assert_eq!(items.len(), read.len() + 1, "{order:?}: the error ends it");
        let err = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(corruption_of(err).location.seq, Some(25), "{order:?}");
    }
    drop(store);
}

#[test]
fn a_damaged_record_in_a_sealed_segment_fails_scan_query_and_get_instead_of_shortening_them() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let offset = damage_record(target, 3);
    let bad = first_seq(target) + 3;
    // Opening stays cheap: sealed segments' frames are not read.
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.len(), TOTAL);

    // Scan: every record before the damaged one, then an error naming it,
    // then nothing.
    let items: Vec<sealog::Result<Record>> = store.scan(..).collect();
    assert_eq!(
        items.len() as u64,
        bad + 1,
        "records before, then the error"
    );
    for (seq, item) in items.iter().enumerate().take(bad as usize) {
        assert_eq!(item.as_ref().unwrap().seq, seq as u64);
    }
    let err = items.last().unwrap().as_ref().unwrap_err();
    let c = corruption_of(err);
    assert_eq!(c.location.file, name(target), "{c}");
    assert_eq!(c.location.offset, Some(offset), "{c}");
    assert_eq!(c.location.seq, Some(bad), "{c}");

    // Get: the damaged record is an error; its neighbours read.
    let err = store.get(bad).unwrap_err();
    assert_eq!(corruption_of(&err).location.seq, Some(bad));
    assert_eq!(store.get(bad + 1).unwrap().unwrap().seq, bad + 1);
    assert_eq!(store.get(bad - 1).unwrap().unwrap().seq, bad - 1);

    // Query and the lazy iterator, in both orders.
    for order in [
        Order::NewestFirst,
        Order::OldestFirst,
        Order::LatestTimeFirst,
        Order::EarliestTimeFirst,
    ] {
        let err = store.query(&everything(order)).unwrap_err();
        assert_eq!(corruption_of(&err).location.seq, Some(bad), "{order:?}");
        let items: Vec<_> = store.matches(&everything(order)).unwrap().collect();
        assert!(items.last().unwrap().is_err(), "{order:?}");
        assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
        let before = items.len() as u64 - 1;
        let expected = match order {
            Order::OldestFirst => bad,
            Order::NewestFirst => TOTAL - bad - 1,
            // The records before it in event-time order depend on the
            // events' times; the error must still end the iteration.
            _ => continue,
        };
        assert_eq!(before, expected, "{order:?}");
    }
}

/// Replaces the record of frame `n` of `file` with bytes that are not a
/// record, under a valid checksum (what a careless edit leaves).
fn garble_record(file: &Path, n: usize) {
    let mut bytes = fs::read(file).unwrap();
    let (offset, len) = frames(&bytes)[n];
    let flags = bytes[offset + 4];
    let mut garbled = Vec::new();
    frame::encode_frame(&vec![0xEE; len - 12], flags, &mut garbled).unwrap();
    assert_eq!(garbled.len(), len);
    bytes[offset..offset + len].copy_from_slice(&garbled);
    fs::write(file, &bytes).unwrap();
}

/// A count that must read records (request ids are indexed by hash) used
/// to pass over a record that did not decode.
#[test]
fn a_counting_query_that_must_read_a_malformed_record_fails() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    // Every fourth event has a request id.
    let n = (4 - first_seq(target) % 4) % 4 + 4;
    let bad = first_seq(target) + n;
    let request_id = format!("req-{bad}");
    garble_record(target, n as usize);
    let store = Store::open_read_only(dir.path()).unwrap();
    let query = Query {
        request_id: Some(request_id),
        ..Query::default()
    };
    let err = store.count(&query).unwrap_err();
    assert_eq!(corruption_of(&err).location.seq, Some(bad), "{err}");
}

#[test]
fn reading_around_a_missing_segment_returns_the_rest_and_reports_the_gap() {
    let (dir, files) = sealed_store();
    let (from, to) = (first_seq(&files[1]), first_seq(&files[2]));
    fs::remove_file(&files[1]).unwrap();
    let store = read_around(dir.path());

    let damage = store.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].seqs(), Some(from..to));
    assert_eq!(damage[0].corruption.location.file, name(&files[1]));
    assert!(
        damage[0].to_string().starts_with(&format!(
            "seqs {from} to {} ({} records) unreadable",
            to - 1,
            to - from
        )),
        "{}",
        damage[0]
    );

    let expected: Vec<u64> = (0..TOTAL).filter(|s| !(from..to).contains(s)).collect();
    let scanned: Vec<u64> = store.scan(..).map(|r| r.unwrap().seq).collect();
    assert_eq!(scanned, expected);
    let mut queried: Vec<u64> = store
        .query(&everything(Order::NewestFirst))
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    queried.reverse();
    assert_eq!(queried, expected);
    let exported: Vec<u64> = store
        .matches(&everything(Order::OldestFirst))
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(exported, expected);
    assert_eq!(
        store.count(&Query::default()).unwrap(),
        expected.len() as u64
    );
    // A record in the gap is an error naming the missing file, not "none".
    let err = store.get(from).unwrap_err();
    assert_eq!(corruption_of(&err).location.file, name(&files[1]));
    // Reading added nothing: the gap was known from the open.
    assert_eq!(store.damage().len(), 1);
}

#[test]
fn reading_around_a_damaged_record_skips_it_and_lists_it() {
    let (dir, files) = sealed_store();
    let target = &files[1];
    let offset = damage_record(target, 3);
    let bad = first_seq(target) + 3;
    let store = read_around(dir.path());
    assert!(
        store.damage().is_empty(),
        "the open does not read sealed frames"
    );

    let expected: Vec<u64> = (0..TOTAL).filter(|&s| s != bad).collect();
    let scanned: Vec<u64> = store.scan(..).map(|r| r.unwrap().seq).collect();
    assert_eq!(scanned, expected);
    let queried: Vec<u64> = store
        .matches(&everything(Order::OldestFirst))
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(queried, expected);
    let damage = store.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].seqs(), Some(bad..bad + 1));
    assert_eq!(damage[0].corruption.location.file, name(target));
    assert_eq!(damage[0].corruption.location.offset, Some(offset));
}

#[test]
fn reading_around_a_cut_sealed_segment_keeps_its_readable_records() {
    let (dir, files) = sealed_store();
    let target = &files[2];
    let (from, to) = (first_seq(target), first_seq(&files[3]));
    let bytes = fs::read(target).unwrap();
    let cut = bytes.len() / 2;
    fs::write(target, &bytes[..cut]).unwrap();
    // Whole frames before the cut survive.
    let readable = frames(&bytes).iter().filter(|(o, l)| o + l <= cut).count() as u64;
    assert!(readable > 0 && from + readable < to);

    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(
        matches!(corruption_of(&err).kind, CorruptionKind::UnsealedInMiddle),
        "{err}"
    );
    let store = read_around(dir.path());
    let damage = store.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].seqs(), Some(from + readable..to));
    assert_eq!(damage[0].corruption.location.file, name(target));
    let expected: Vec<u64> = (0..TOTAL)
        .filter(|s| !(from + readable..to).contains(s))
        .collect();
    let scanned: Vec<u64> = store.scan(..).map(|r| r.unwrap().seq).collect();
    assert_eq!(scanned, expected);
    let queried: Vec<u64> = store
        .matches(&everything(Order::OldestFirst))
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(queried, expected);
}

#[test]
fn reading_around_damage_is_refused_by_a_writable_open() {
    let (dir, _) = sealed_store();
    let err = Store::open(
        dir.path(),
        StoreOptions {
            on_damage: OnDamage::ReadAround,
            ..small_options(SEGMENT)
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn a_short_leaf_file_is_refused_read_only_and_recomputed_by_a_writable_open() {
    let (dir, _) = sealed_store();
    let path = dir.path().join("tree/leaves");
    let leaves = fs::read(&path).unwrap();
    fs::write(&path, &leaves[..leaves.len() - 64]).unwrap();
    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = corruption_of(&err);
    assert_eq!(c.location.file, "tree/leaves", "{c}");
    assert!(matches!(c.kind, CorruptionKind::LeavesShort { .. }), "{c}");
    // Reading around it loses no record (proofs over the sealed records
    // are what is missing).
    let store = read_around(dir.path());
    assert_eq!(store.scan(..).filter(|r| r.is_ok()).count() as u64, TOTAL);
    assert_eq!(store.damage().len(), 1);
    drop(store);
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    assert_eq!(store.recovery_report().rebuilt_leaves, 2);
    store.close().unwrap();
    assert_eq!(fs::read(&path).unwrap(), leaves);
}

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example.com/sealog", &[9u8; 32]).unwrap()
}

#[test]
fn a_tree_that_does_not_give_the_newest_checkpoints_root_refuses_both_opens() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        checkpoints: Some(CheckpointOptions::new(key())),
        ..small_options(SEGMENT)
    };
    store_with(dir.path(), options.clone(), 60);
    let store = Store::open_read_only(dir.path()).unwrap();
    let signed = store.latest_checkpoint().unwrap().unwrap();
    assert!(signed.size > 8);
    drop(store);
    // A stored leaf hash the checkpoint covers is altered.
    let path = dir.path().join("tree/leaves");
    let mut leaves = fs::read(&path).unwrap();
    leaves[3 * 32] ^= 1;
    fs::write(&path, &leaves).unwrap();

    for err in [
        Store::open_read_only(dir.path()).unwrap_err(),
        Store::open(dir.path(), options).unwrap_err(),
    ] {
        let c = corruption_of(&err);
        assert_eq!(c.location.file, "checkpoints.log", "{c}");
        assert!(matches!(c.kind, CorruptionKind::HashMismatch { .. }), "{c}");
    }
}

/// Byte range of the section of `kind` in a sidecar file (see format.md,
/// "Section table").
fn sidecar_section(bytes: &[u8], kind: u16) -> (usize, usize) {
    let header_len = 72;
    let count = u32::from_le_bytes(bytes[60..64].try_into().unwrap()) as usize;
    for i in 0..count {
        let entry = &bytes[header_len + 24 * i..header_len + 24 * (i + 1)];
        if u16::from_le_bytes(entry[0..2].try_into().unwrap()) == kind {
            let offset = u64::from_le_bytes(entry[8..16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(entry[16..24].try_into().unwrap()) as usize;
            return (offset, len);
        }
    }
    panic!("no section of kind {kind}");
}

/// A damaged event-time column used to make a time-filtered query skip the
/// segment's matches silently.
#[test]
fn a_time_range_query_over_a_damaged_time_column_finds_every_match() {
    let (dir, files) = sealed_store();
    let sidecar = files[1].with_extension("idx");
    let mut bytes = fs::read(&sidecar).unwrap();
    let (offset, len) = sidecar_section(&bytes, 2);
    bytes[offset + len / 2] ^= 0x40;
    fs::write(&sidecar, &bytes).unwrap();

    let store = Store::open_read_only(dir.path()).unwrap();
    // Events given an old time, and some taken now: a range that cuts
    // through every segment.
    let to = Timestamp::from_nanos(Timestamp::now().as_nanos() - 3_600_000_000_000);
    let expected: Vec<u64> = store
        .scan(..)
        .map(|r| r.unwrap())
        .filter(|r| r.event_time() < to)
        .map(|r| r.seq)
        .collect();
    assert!(
        expected
            .iter()
            .any(|&s| (first_seq(&files[1])..first_seq(&files[2])).contains(&s)),
        "the damaged segment has matches"
    );
    let query = Query {
        to: Some(to),
        order: Order::OldestFirst,
        limit: sealog::query::MAX_LIMIT,
        ..Query::default()
    };
    let found: Vec<u64> = store
        .query(&query)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(found, expected);
    assert_eq!(store.count(&query).unwrap(), expected.len() as u64);
}

/// A sealed segment is read through a memory map, which keeps serving a
/// file deleted after the open: the cheap file check finds it.
#[test]
fn checking_the_segment_files_names_one_deleted_or_cut_after_the_open() {
    let (dir, files) = sealed_store();
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    store.check_segment_files().unwrap();
    fs::remove_file(&files[1]).unwrap();
    // Reads still work from the map...
    assert_eq!(
        store.get(first_seq(&files[1])).unwrap().unwrap().seq,
        first_seq(&files[1])
    );
    // ...but the store is no longer what the next open would accept.
    let err = store.check_segment_files().unwrap_err();
    let c = corruption_of(&err);
    assert_eq!(c.location.file, name(&files[1]), "{c}");
    assert!(
        matches!(c.kind, CorruptionKind::MissingSegment { .. }),
        "{c}"
    );
    fs::write(&files[1], b"").unwrap();
    let err = store.check_segment_files().unwrap_err();
    assert_eq!(corruption_of(&err).location.file, name(&files[1]));
    store.close().unwrap();
}
