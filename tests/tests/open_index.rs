//! Index snapshots of open segments (`segments/<seq>.oidx`): a read-only
//! open takes the records and index a writer persisted instead of decoding
//! and indexing them again, and answers exactly as a full scan would; a
//! snapshot that is torn, damaged or does not match the log is ignored.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::fs;
use std::path::{Path, PathBuf};

use sealog::format::{Outcome, Record};
use sealog::query::{ActionPattern, ActorFilter, IpFilter, Query, ResourceFilter};
use sealog::workload::Workload;
use sealog::{Durability, Store};
use sealog_tests::small_options;

const SEGMENT: u64 = 16 << 20;

/// A store whose open segment holds records past more than one snapshot
/// chunk (the writer closed, so its snapshot covers all of them).
fn store_with_open_segment(dir: &Path, events: u64) -> Store {
    let store = Store::open(dir, small_options(SEGMENT)).unwrap();
    let workload = Workload::new(7);
    let mut i = 0;
    while i < events {
        let to = (i + 500).min(events);
        store
            .append_batch_with(workload.events(i, to), Durability::Buffered)
            .unwrap();
        i = to;
    }
    store
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "oidx"))
        .collect();
    files.sort();
    files
}

fn queries() -> Vec<Query> {
    let workload = Workload::new(7);
    let one = workload.event(3);
    let other = workload.event(17);
    vec![
        Query {
            actor: Some(ActorFilter::parse(&format!(
                "{}:{}",
                one.actor.kind, one.actor.id
            ))),
            limit: 10_000,
            ..Query::default()
        },
        Query {
            actions: vec![ActionPattern::new(&one.action).unwrap()],
            outcome: Some(Outcome::Success),
            limit: 10_000,
            ..Query::default()
        },
        Query {
            source_ip: Some(IpFilter::parse("10.3.0.0/16").unwrap()),
            limit: 10_000,
            ..Query::default()
        },
        Query {
            resource: Some(ResourceFilter::parse(&format!(
                "{}:{}",
                other.resource.kind,
                other.resource.id.unwrap()
            ))),
            limit: 10_000,
            ..Query::default()
        },
    ]
}

/// Records of the last (open) segment.
fn open_records(dir: &Path, store: &Store) -> u64 {
    let last = sealog_tests::segment_files(dir).pop().unwrap();
    let first: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    store.len() - first
}

/// Every query's results and count, and every record.
fn answers(store: &Store) -> (Vec<Vec<Record>>, Vec<u64>, Vec<Record>) {
    let results = queries()
        .iter()
        .map(|q| store.query(q).unwrap().records)
        .collect();
    let counts = queries().iter().map(|q| store.count(q).unwrap()).collect();
    let all = store.scan(..).map(Result::unwrap).collect();
    (results, counts, all)
}

/// What a read-only open answers without any snapshot.
fn answers_without_snapshot(dir: &Path) -> (Vec<Vec<Record>>, Vec<u64>, Vec<Record>) {
    let copy = tempfile::tempdir().unwrap();
    sealog_tests::copy_store(dir, copy.path());
    for f in snapshot_files(copy.path()) {
        fs::remove_file(f).unwrap();
    }
    let store = Store::open_read_only(copy.path()).unwrap();
    assert_eq!(store.recovery_report().from_index_snapshots, 0);
    answers(&store)
}

#[test]
fn a_read_only_open_takes_the_index_snapshot_and_answers_like_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_open_segment(dir.path(), 30_000);
    store.close().unwrap();
    let snapshots = snapshot_files(dir.path());
    assert_eq!(snapshots.len(), 1, "one open segment: {snapshots:?}");

    let store = Store::open_read_only(dir.path()).unwrap();
    let open_records = open_records(dir.path(), &store);
    assert!(open_records > 8_192, "{open_records}");
    assert_eq!(
        store.recovery_report().from_index_snapshots,
        open_records,
        "the closed writer's snapshot covers the whole open segment"
    );
    let with = answers(&store);
    assert!(
        with.0.iter().all(|r| !r.is_empty()),
        "every query matches something: {:?}",
        with.1
    );
    assert_eq!(with, answers_without_snapshot(dir.path()));
    store.verify().unwrap();
}

#[test]
fn a_writer_persists_the_snapshot_while_it_runs_and_removes_it_at_the_seal() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_open_segment(dir.path(), 20_000);
    // The indexer writes a chunk every 8,192 indexed records; wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let reader = loop {
        let reader = Store::open_read_only(dir.path()).unwrap();
        if reader.recovery_report().from_index_snapshots >= 8_192 {
            break reader;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(answers(&reader), answers_without_snapshot(dir.path()));
    drop(reader);
    // Sealed segments have sidecars; their snapshots are removed.
    let before = snapshot_files(dir.path());
    let workload = Workload::new(7);
    for from in (20_000..60_000).step_by(1_000) {
        store
            .append_batch_with(workload.events(from, from + 1_000), Durability::Buffered)
            .unwrap();
    }
    store.wait_sealed().unwrap();
    let after = snapshot_files(dir.path());
    for f in &before {
        assert!(
            !after.contains(f),
            "{f:?} stayed after its segment was sealed"
        );
    }
    store.close().unwrap();
}

#[test]
fn a_damaged_or_torn_index_snapshot_is_ignored_from_the_damage_on() {
    let dir = tempfile::tempdir().unwrap();
    store_with_open_segment(dir.path(), 30_000).close().unwrap();
    let expected = answers_without_snapshot(dir.path());
    let snapshot = snapshot_files(dir.path()).pop().unwrap();
    let intact = fs::read(&snapshot).unwrap();
    let total = Store::open_read_only(dir.path())
        .unwrap()
        .recovery_report()
        .from_index_snapshots;

    let damaged = [
        // A flipped byte in the middle: the chunks before it are taken.
        {
            let mut b = intact.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            b
        },
        // Torn: the last chunk is cut short.
        intact[..intact.len() - 100].to_vec(),
        // Not a snapshot of this segment (its header's CRC fails).
        {
            let mut b = intact.clone();
            b[20] ^= 1;
            b
        },
    ];
    for (i, bytes) in damaged.iter().enumerate() {
        fs::write(&snapshot, bytes).unwrap();
        let store = Store::open_read_only(dir.path()).unwrap();
        let taken = store.recovery_report().from_index_snapshots;
        assert!(taken < total, "case {i}: took {taken} of {total}");
        assert_eq!(answers(&store), expected, "case {i}");
    }
}

#[test]
fn a_snapshot_of_records_the_log_no_longer_holds_is_ignored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_open_segment(dir.path(), 10_000);
    store.close().unwrap();
    let segment = sealog_tests::segment_files(dir.path()).pop().unwrap();
    let shorter = fs::read(&segment).unwrap();
    let expected = answers_without_snapshot(dir.path());

    // The log grows, and its snapshot with it...
    let store = Store::open(dir.path(), small_options(SEGMENT)).unwrap();
    store
        .append_batch_with(Workload::new(9).events(0, 500), Durability::Group)
        .unwrap();
    store.close().unwrap();
    // ...then the segment loses those records (as a disk that did not keep
    // unsynced writes could), while the snapshot still covers them.
    fs::write(&segment, &shorter).unwrap();

    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.recovery_report().from_index_snapshots, 0);
    assert_eq!(store.len(), 10_000);
    assert_eq!(answers(&store), expected);
}

#[test]
fn a_damaged_record_covered_by_the_snapshot_still_fails_the_read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    store_with_open_segment(dir.path(), 10_000).close().unwrap();
    let segment = sealog_tests::segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    // A byte inside the first record's body (the header is 128 bytes, the
    // frame header 12).
    bytes[128 + 12 + 40] ^= 0x08;
    fs::write(&segment, &bytes).unwrap();
    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(c.location.offset, Some(128), "{c}");
}

/// The chunks of a snapshot file as `docs/format.md` lays them out:
/// `(start, from, n, frontier hashes)` per chunk.
fn chunks(bytes: &[u8]) -> Vec<(usize, u64, u32, Vec<[u8; 32]>)> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 84;
    while at + 48 <= bytes.len() && &bytes[at..at + 4] == b"OIXC" {
        let body_len = u32_at(at + 4) as usize;
        let from = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        let n = u32_at(at + 16);
        let k = u32_at(at + 20) as usize;
        let body_end = at + 48 + body_len;
        let frontier = bytes[body_end - 32 * k..body_end]
            .chunks_exact(32)
            .map(|h| h.try_into().unwrap())
            .collect();
        out.push((at, from, n, frontier));
        at = body_end + 4;
    }
    out
}

/// Options of 4 MiB segments whose writer signs checkpoints (on demand).
fn signing_options() -> sealog::StoreOptions {
    let key =
        sealog::format::note::SigningKey::from_seed("audit.example.com/oidx", &[3u8; 32]).unwrap();
    sealog::StoreOptions {
        checkpoints: Some(sealog::CheckpointOptions {
            every: None,
            ..sealog::CheckpointOptions::new(key)
        }),
        ..small_options(4 << 20)
    }
}

#[test]
fn a_signing_writer_s_snapshot_carries_the_tree_frontier_and_a_wrong_one_changes_no_answer() {
    use sealog::format::merkle::node_hash;
    // Two sealed segments of 4 MiB, then an open one of two chunks.
    const TOTAL: u64 = 36_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), signing_options()).unwrap();
    let workload = Workload::new(11);
    for i in (0..TOTAL).step_by(500) {
        if i + 500 == TOTAL {
            // The indexer writes a chunk once it has indexed 8,192 records
            // past the snapshot, when it gets to it (a loaded machine may
            // index the whole segment at once): wait for that chunk, so
            // that the last batch makes a second one at close.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while Store::open_read_only(dir.path())
                .unwrap()
                .recovery_report()
                .from_index_snapshots
                < 8_192
            {
                assert!(std::time::Instant::now() < deadline, "no chunk written");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        store
            .append_batch_with(workload.events(i, i + 500), Durability::Group)
            .unwrap();
    }
    let checkpoint = store.checkpoint().unwrap();
    store.close().unwrap();
    assert_eq!(checkpoint.size, TOTAL);

    // Every chunk has the frontier of the whole log at its last record; the
    // last one folds to the checkpoint's root.
    let snapshot = snapshot_files(dir.path()).pop().unwrap();
    let first_seq = sealog_tests::first_seq_of(&snapshot);
    assert!(first_seq > 0, "the open segment follows a sealed one");
    let intact = fs::read(&snapshot).unwrap();
    assert_eq!(u16::from_le_bytes([intact[8], intact[9]]), 2);
    let found = chunks(&intact);
    assert!(found.len() > 1, "{} chunks", found.len());
    for (_, from, n, frontier) in &found {
        let size = first_seq + from + u64::from(*n);
        assert_eq!(frontier.len(), size.count_ones() as usize, "at {size}");
    }
    let (last_at, _, _, frontier) = found.last().unwrap();
    let root = frontier
        .iter()
        .rev()
        .copied()
        .reduce(|right, left| node_hash(&left, &right))
        .unwrap();
    assert_eq!(root, checkpoint.root);

    let expected = answers_without_snapshot(dir.path());
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.root(TOTAL).unwrap(), checkpoint.root);
    assert_eq!(answers(&store), expected);
    drop(store);

    // A frontier that is wrong behind a valid CRC (the open then checks
    // the checkpoint from every leaf, as without frontiers): same answers,
    // same proofs.
    let mut wrong = intact.clone();
    let body_len = u32::from_le_bytes(wrong[last_at + 4..last_at + 8].try_into().unwrap()) as usize;
    let crc_at = last_at + 48 + body_len;
    wrong[crc_at - 1] ^= 0x01;
    let crc = crc32fast::hash(&wrong[*last_at..crc_at]);
    wrong[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    fs::write(&snapshot, &wrong).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.recovery_report().from_index_snapshots,
        TOTAL - first_seq
    );
    assert_eq!(store.root(TOTAL).unwrap(), checkpoint.root);
    assert_eq!(answers(&store), expected);
}

#[test]
fn a_damaged_record_late_in_a_large_snapshot_s_range_fails_the_read_only_open_too() {
    // The covered frames of a large snapshot are checked in pieces on two
    // threads; damage in a late piece counts as much as in the first.
    let dir = tempfile::tempdir().unwrap();
    store_with_open_segment(dir.path(), 20_000).close().unwrap();
    let segment = sealog_tests::segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let data_end = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[data_end * 3 / 4] ^= 0x08;
    fs::write(&segment, &bytes).unwrap();
    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    let offset = c.location.offset.unwrap();
    assert!(
        offset > data_end as u64 / 2 && offset <= data_end as u64 * 3 / 4,
        "{c}"
    );
}

#[test]
fn a_chunk_that_fails_its_checksum_past_intact_offsets_ends_what_is_taken() {
    // The covered frames are checked from the chunks' offsets while the
    // chunks are decoded; a chunk whose offsets read well but whose body
    // fails its checksum is not taken, and the frames of those before it
    // are what the open relies on.
    let dir = tempfile::tempdir().unwrap();
    store_with_open_segment(dir.path(), 30_000).close().unwrap();
    let expected = answers_without_snapshot(dir.path());
    let snapshot = snapshot_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&snapshot).unwrap();
    let all = chunks(&bytes);
    assert!(all.len() >= 3, "{} chunks", all.len());
    let (start, from, n, _) = all[all.len() - 1].clone();
    let intact = bytes.clone();
    // A byte of the last chunk's first leaf hash: after its header (48
    // bytes), offsets (4 a record) and event times (8 a record).
    bytes[start + 48 + 12 * n as usize + 5] ^= 0x10;
    // Its header's recorded time of its last record: the frames no longer
    // agree with what the chunk says, yet the chunks before it still do.
    let mut header = intact;
    header[start + 40] ^= 0x01;
    for (case, bytes) in [bytes, header].iter().enumerate() {
        fs::write(&snapshot, bytes).unwrap();
        let store = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(
            store.recovery_report().from_index_snapshots,
            from,
            "case {case}"
        );
        assert_eq!(store.len(), 30_000);
        assert_eq!(answers(&store), expected, "case {case}");
    }
}

#[test]
fn a_writer_without_the_key_keeps_writing_frontiers_on_a_store_with_checkpoints() {
    // A store written by a signing writer, then by one without the key
    // (`sealog serve` with no key configured): the newest checkpoint is
    // still checked by every read-only open, and without frontiers that
    // check hashes every leaf of the open segments.
    const TOTAL: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let workload = Workload::new(11);
    let store = Store::open(dir.path(), signing_options()).unwrap();
    store
        .append_batch_with(workload.events(0, 1_000), Durability::Group)
        .unwrap();
    let checkpoint = store.checkpoint().unwrap();
    store.close().unwrap();

    let store = Store::open(dir.path(), small_options(4 << 20)).unwrap();
    for i in (1_000..TOTAL).step_by(500) {
        store
            .append_batch_with(workload.events(i, i + 500), Durability::Group)
            .unwrap();
    }
    store.close().unwrap();
    let snapshot = snapshot_files(dir.path()).pop().unwrap();
    let first_seq = sealog_tests::first_seq_of(&snapshot);
    let found = chunks(&fs::read(&snapshot).unwrap());
    assert!(!found.is_empty());
    for (_, from, n, frontier) in &found {
        let size = first_seq + from + u64::from(*n);
        assert_eq!(frontier.len(), size.count_ones() as usize, "at {size}");
    }
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.root(checkpoint.size).unwrap(), checkpoint.root);
    assert_eq!(answers(&store), answers_without_snapshot(dir.path()));
}
