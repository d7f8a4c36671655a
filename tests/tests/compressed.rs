//! Compressed sealed segments (`StoreOptions::compression`): a store that
//! compresses answers exactly as one that does not, verifies, and names
//! damage to a compressed block; a compression cut short loses nothing;
//! the leaf hashes a compressed segment frees are computed for proofs and
//! written back before the segment is pruned.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sealog::format::compressed::{COMPRESSED_MAGIC, CompressedSegment};
use sealog::query::{ActionPattern, ActorFilter, Query};
use sealog::{Compression, CorruptionKind, Durability, Error, Record, Store, StoreOptions};
use sealog_tests::{segment_files, small_options};

const SEGMENTS: u64 = 6;
/// Enough records per segment (every 16th a dictionary sample, 64 needed)
/// that each segment trains its own dictionary.
const PER_SEGMENT: u64 = 1_500;

fn compressing(segment_size: u64) -> StoreOptions {
    StoreOptions {
        compression: Compression::ZSTD,
        ..small_options(segment_size)
    }
}

/// Appends `segments` segments of [`PER_SEGMENT`] realistic events (the
/// same events for every store), each rolled, and waits until they are
/// sealed.
fn seal_segments(store: &Store, segments: u64) {
    let workload = sealog::workload::Workload::new(300);
    for i in 0..segments {
        store
            .append_batch_with(
                workload.events(i * PER_SEGMENT, (i + 1) * PER_SEGMENT),
                Durability::Buffered,
            )
            .unwrap();
        store.roll().unwrap();
    }
    store.wait_sealed().unwrap();
}

/// Writes [`SEGMENTS`] sealed segments of realistic events with `options`
/// and closes the store; returns every record.
fn write(dir: &Path, options: StoreOptions) -> Vec<Record> {
    let options_compress = options.compression != Compression::None;
    let store = Store::open(dir, options).unwrap();
    seal_segments(&store, SEGMENTS);
    if options_compress {
        // What the compressor thread has not done yet, now.
        let report = store.compress_sealed(Compression::ZSTD).unwrap();
        assert_eq!(report.segments + report.already, SEGMENTS);
    }
    let all = store.scan(..).map(|r| r.unwrap()).collect();
    store.close().unwrap();
    all
}

fn is_compressed(path: &Path) -> bool {
    std::fs::read(path).unwrap().starts_with(&COMPRESSED_MAGIC)
}

fn bytes_of(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

/// Queries over values spread through the store, and one with a time range.
fn queries(all: &[Record]) -> Vec<Query> {
    let mut queries = Vec::new();
    for r in all.iter().step_by(301) {
        let e = &r.event;
        queries.push(Query {
            request_id: e.request_id.clone(),
            ..Query::default()
        });
        queries.push(Query {
            actor: Some(ActorFilter::parse(&format!(
                "{}:{}",
                e.actor.kind, e.actor.id
            ))),
            limit: 10_000,
            ..Query::default()
        });
        queries.push(Query {
            actions: vec![ActionPattern::new(&e.action).unwrap()],
            limit: 10_000,
            ..Query::default()
        });
    }
    let mid = &all[all.len() / 2].event.time;
    queries.push(Query {
        from: *mid,
        limit: 10_000,
        ..Query::default()
    });
    queries
}

/// Seqs and events (two stores record them at different times).
fn events(records: &[Record]) -> Vec<(u64, sealog::Event)> {
    records.iter().map(|r| (r.seq, r.event.clone())).collect()
}

fn answers(store: &Store, queries: &[Query]) -> Vec<Vec<(u64, sealog::Event)>> {
    queries
        .iter()
        .map(|q| events(&store.query(q).unwrap().records))
        .collect()
}

fn all_records(store: &Store) -> Vec<Record> {
    store.scan(..).map(|r| r.unwrap()).collect()
}

/// Waits until every sealed segment file in `dir` is compressed (a writer
/// compresses those it finds, one between seals, in the background).
fn wait_all_compressed(dir: &Path, sealed: usize) {
    let started = Instant::now();
    loop {
        let files = segment_files(dir);
        let done = files.iter().filter(|f| is_compressed(f)).count();
        if done >= sealed {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{done} of {sealed} segments compressed after two minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_compressing_store_answers_verifies_and_proves_as_an_uncompressed_one() {
    let plain = tempfile::tempdir().unwrap();
    let packed = tempfile::tempdir().unwrap();
    let all = write(plain.path(), small_options(4 << 20));
    let same = write(packed.path(), compressing(4 << 20));
    assert!(
        events(&all) == events(&same),
        "the same records, read back while written"
    );

    let plain_files = segment_files(plain.path());
    let packed_files = segment_files(packed.path());
    assert_eq!(plain_files.len(), packed_files.len());
    // The last file is the active segment (empty, open); every sealed one
    // is compressed, with a dictionary of its own.
    let sealed = &packed_files[..packed_files.len() - 1];
    assert_eq!(sealed.len() as u64, SEGMENTS);
    for f in sealed {
        let bytes = std::fs::read(f).unwrap();
        let c = CompressedSegment::parse(&bytes).unwrap();
        assert!(!c.dictionary().is_empty(), "{}", f.display());
        assert!(c.block_count() > 10);
    }
    let (plain_bytes, packed_bytes) = (
        bytes_of(&plain_files[..SEGMENTS as usize]),
        bytes_of(sealed),
    );
    assert!(
        packed_bytes * 3 < plain_bytes,
        "{packed_bytes} bytes compressed, {plain_bytes} not"
    );

    let queries = queries(&all);
    let a = Store::open_read_only(plain.path()).unwrap();
    let b = Store::open_read_only(packed.path()).unwrap();
    assert!(answers(&a, &queries) == answers(&b, &queries));
    assert!(all_records(&b) == same, "a scan");
    for r in same.iter().step_by(97) {
        assert!(b.get(r.seq).unwrap().as_ref() == Some(r), "seq {}", r.seq);
    }
    let report = b.verify().unwrap();
    assert_eq!(report.records, same.len() as u64);
    drop((a, b));

    // Indexes removed: rebuilt from the compressed records, the same.
    for f in sealog_tests::index_files(packed.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let b = Store::open_read_only(packed.path()).unwrap();
    // Reads by seq with no sidecar to map: the frames walked.
    for r in same.iter().step_by(97) {
        assert!(b.get(r.seq).unwrap().as_ref() == Some(r), "seq {}", r.seq);
    }
    let a = Store::open_read_only(plain.path()).unwrap();
    assert!(answers(&a, &queries) == answers(&b, &queries));
    assert_eq!(b.stats().index_rebuilds, SEGMENTS);
    // And through the indexes the queries rebuilt.
    for r in same.iter().step_by(89) {
        assert!(b.get(r.seq).unwrap().as_ref() == Some(r), "seq {}", r.seq);
    }
}

#[test]
fn concurrent_reads_of_one_compressed_segment_each_read_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let all = write(dir.path(), compressing(4 << 20));
    let store = Store::open_read_only(dir.path()).unwrap();
    // Eight threads at once, each through every record of the store in
    // its own order (blocks decompressed by several readers of a segment
    // at the same time, each with a decoder of that segment's dictionary).
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (store, all) = (&store, &all);
            scope.spawn(move || {
                let n = all.len() as u64;
                let step = [1, 7, 13, 31, 61, 97, 127, 251][t as usize];
                for i in 0..n {
                    let seq = (i * step + t * 101) % n;
                    let got = store.get(seq).unwrap();
                    assert!(
                        got.as_ref() == Some(&all[seq as usize]),
                        "thread {t}: seq {seq}"
                    );
                }
            });
        }
    });
}

#[test]
fn a_compressing_writer_compresses_the_segments_it_finds_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let all = write(dir.path(), small_options(4 << 20));
    let files = segment_files(dir.path());
    assert!(files.iter().all(|f| !is_compressed(f)));
    let before = bytes_of(&files[..SEGMENTS as usize]);
    let size = all.len() as u64;
    let proofs = {
        let store = Store::open_read_only(dir.path()).unwrap();
        [0, size / 3, size - 1].map(|seq| store.inclusion_proof(seq, size).unwrap())
    };

    // A leftover of a compression cut short (the temporary file a crash
    // left) is removed by the open, and the segment stays readable.
    let leftover = PathBuf::from(format!("{}.tmp", files[0].display()));
    std::fs::write(&leftover, COMPRESSED_MAGIC).unwrap();

    let store = Store::open(dir.path(), compressing(4 << 20)).unwrap();
    assert!(!leftover.exists());
    wait_all_compressed(dir.path(), SEGMENTS as usize);
    // Reads during and after, from the writer's own view.
    assert!(all_records(&store) == all);
    store.close().unwrap();

    let after = bytes_of(&segment_files(dir.path())[..SEGMENTS as usize]);
    assert!(after * 3 < before, "{after} bytes, {before} before");
    let store = Store::open_read_only(dir.path()).unwrap();
    assert!(all_records(&store) == all);
    assert_eq!(store.verify().unwrap().records, size);
    let again = [0, size / 3, size - 1].map(|seq| store.inclusion_proof(seq, size).unwrap());
    assert_eq!(again, proofs);
}

#[test]
fn damage_to_a_compressed_block_is_named_and_the_other_blocks_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let all = write(dir.path(), compressing(4 << 20));
    let path = segment_files(dir.path())[2].clone();
    let name = format!("segments/{}", path.file_name().unwrap().to_string_lossy());
    let mut bytes = std::fs::read(&path).unwrap();
    let (block, victim) = {
        let c = CompressedSegment::parse(&bytes).unwrap();
        let block = c.block(c.block_count() / 2).unwrap();
        (block, c.block_count() / 2)
    };
    let at = usize::try_from(block.stored_offset).unwrap() + block.stored_len as usize / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    // The records of that block: those whose frame lies in it.
    let first_seq = sealog_tests::first_seq_of(&path);
    let store = Store::open_read_only(dir.path()).unwrap();
    let mut damaged = 0;
    let mut read = 0;
    for r in all
        .iter()
        .filter(|r| (first_seq..first_seq + PER_SEGMENT).contains(&r.seq))
    {
        match store.get(r.seq) {
            Ok(got) => {
                assert!(got.as_ref() == Some(r), "seq {}", r.seq);
                read += 1;
            }
            Err(Error::Corruption(c)) => {
                assert_eq!(c.location.file, name);
                let CorruptionKind::Compressed { problem } = &c.kind else {
                    panic!("{c}");
                };
                assert!(problem.contains(&format!("block {victim}")), "{problem}");
                damaged += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        damaged > 0 && read > damaged,
        "{damaged} damaged, {read} read"
    );
    drop(store);

    match sealog::verify_dir(dir.path()) {
        Err(Error::Corruption(c)) => {
            assert_eq!(c.location.file, name);
            assert!(matches!(c.kind, CorruptionKind::Compressed { .. }), "{c}");
        }
        other => panic!("verify: {other:?}"),
    }
}

/// A power loss at every step of compressing a store's segments (and with
/// nothing or a random part of the unsynced changes kept): every record is
/// there after the restart, each segment whole in one form or the other,
/// and the store verifies.
#[test]
fn a_power_loss_at_any_step_of_a_compression_loses_nothing() {
    use sealog::fault::{FaultFs, Unsynced};
    let original = tempfile::tempdir().unwrap();
    // Two sealed segments are enough: each is compressed the same way.
    let all = {
        let store = Store::open(original.path(), small_options(4 << 20)).unwrap();
        seal_segments(&store, 2);
        let all = all_records(&store);
        store.close().unwrap();
        all
    };
    // Opens a copy on a power-loss filesystem, with what the open itself
    // does done (no compressor thread: the steps come from the call).
    let open_copy = |holder: &Path| {
        sealog_tests::copy_store(original.path(), &holder.join("store"));
        let fs = std::sync::Arc::new(FaultFs::with_power_loss());
        let store = Store::open(
            holder.join("store"),
            sealog_tests::options_on(fs.clone(), 4 << 20),
        )
        .unwrap();
        store.wait_sealed().unwrap();
        (fs, store)
    };
    let steps = {
        let holder = tempfile::tempdir().unwrap();
        let (fs, store) = open_copy(holder.path());
        let before = fs.calls();
        assert_eq!(
            store.compress_sealed(Compression::ZSTD).unwrap().segments,
            2
        );
        let steps = fs.calls() - before;
        store.close().unwrap();
        steps
    };
    assert!(
        steps >= 4,
        "{steps} filesystem calls to compress two segments"
    );
    let mut compressed_after = 0;
    for step in 0..=steps {
        for unsynced in [Unsynced::Lost, Unsynced::Random(step)] {
            let holder = tempfile::tempdir().unwrap();
            let (fs, store) = open_copy(holder.path());
            fs.crash_at(fs.calls() + step);
            let _ = store.compress_sealed(Compression::ZSTD);
            drop(store);
            let (_image_holder, image, lost) =
                sealog_tests::power_cut(&fs, holder.path(), unsynced);
            let dir = image.join("store");
            let label = format!("power cut at step {step} of {steps}, {lost}");
            let store = Store::open_read_only(&dir).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(all_records(&store) == all, "{label}: the records differ");
            drop(store);
            let report = sealog::verify_dir(&dir).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(report.records, all.len() as u64, "{label}");
            compressed_after += segment_files(&dir)
                .iter()
                .filter(|f| is_compressed(f))
                .count();
        }
    }
    // The later cuts find segments compressed: the schedule reached them.
    assert!(compressed_after > 0);
}

/// The 32-byte entries of a store's `tree/leaves`.
fn leaf_entries(dir: &Path) -> Vec<[u8; 32]> {
    std::fs::read(dir.join("tree").join("leaves"))
        .unwrap()
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect()
}

/// Bytes of disk a file's blocks take.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Asserts that two stores give the same roots and proofs over `size`.
fn assert_same_proofs(a: &Store, b: &Store, size: u64) {
    assert_eq!(a.root(size).unwrap(), b.root(size).unwrap());
    for seq in (0..size).step_by(61).chain([size - 1]) {
        assert_eq!(
            a.inclusion_proof(seq, size).unwrap(),
            b.inclusion_proof(seq, size).unwrap(),
            "inclusion of {seq} in {size}"
        );
    }
    for old in (1..size).step_by(397) {
        assert_eq!(
            a.consistency_proof(old, size).unwrap(),
            b.consistency_proof(old, size).unwrap(),
            "consistency of {old} with {size}"
        );
    }
}

#[test]
fn a_compressed_segment_frees_its_leaf_hashes_and_proofs_stay_the_same() {
    let plain = tempfile::tempdir().unwrap();
    let packed = tempfile::tempdir().unwrap();
    write(plain.path(), small_options(4 << 20));
    sealog_tests::copy_store(plain.path(), packed.path());
    let store = Store::open(packed.path(), small_options(4 << 20)).unwrap();
    let report = store.compress_sealed(Compression::ZSTD).unwrap();
    assert_eq!(report.segments, SEGMENTS);
    store.close().unwrap();
    let want = leaf_entries(plain.path());
    let have = leaf_entries(packed.path());
    assert_eq!(want.len(), have.len());
    assert_eq!(want.len() as u64, SEGMENTS * PER_SEGMENT);
    // Each entry is either the leaf or freed; freed are exactly the
    // 256-leaf blocks inside one segment.
    for (i, (w, h)) in want.iter().zip(&have).enumerate() {
        let i = i as u64;
        let block = i / 256 * 256;
        let inside =
            (0..SEGMENTS).any(|s| block >= s * PER_SEGMENT && block + 256 <= (s + 1) * PER_SEGMENT);
        if inside {
            assert_eq!(h, &[0u8; 32], "leaf {i} freed");
        } else {
            assert_eq!(h, w, "leaf {i} kept");
        }
    }
    let leaves = packed.path().join("tree").join("leaves");
    let plain_leaves = plain.path().join("tree").join("leaves");
    assert!(
        allocated(&leaves) * 2 < allocated(&plain_leaves),
        "{} bytes of disk against {}",
        allocated(&leaves),
        allocated(&plain_leaves)
    );

    let a = Store::open_read_only(plain.path()).unwrap();
    let b = Store::open_read_only(packed.path()).unwrap();
    let size = a.tree_size();
    assert_eq!(size, b.tree_size());
    assert_same_proofs(&a, &b, size);
    assert_same_proofs(&a, &b, size - 700);
    b.verify().unwrap();
    drop(b);

    // Level 1 lost: a writable open computes it again from the records of
    // the freed leaves, and leaves them freed.
    let level1 = packed.path().join("tree").join("level-1");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&level1)
        .unwrap()
        .set_len(0)
        .unwrap();
    let b = Store::open(packed.path(), compressing(4 << 20)).unwrap();
    assert_same_proofs(&a, &b, size);
    assert_eq!(
        std::fs::read(&level1).unwrap(),
        std::fs::read(plain.path().join("tree").join("level-1")).unwrap()
    );
    assert_eq!(leaf_entries(packed.path()), have);
    b.verify().unwrap();
}

#[test]
fn a_compressing_writer_frees_the_leaf_hashes_of_segments_compressed_before_it() {
    // A store whose compressed segments still have their leaves (restored
    // from an archive, or compressed by an older version): the plain
    // store's leaf file put back after the compression.
    let plain = tempfile::tempdir().unwrap();
    let packed = tempfile::tempdir().unwrap();
    write(plain.path(), small_options(4 << 20));
    sealog_tests::copy_store(plain.path(), packed.path());
    let store = Store::open(packed.path(), small_options(4 << 20)).unwrap();
    store.compress_sealed(Compression::ZSTD).unwrap();
    store.close().unwrap();
    let leaves = packed.path().join("tree").join("leaves");
    std::fs::copy(plain.path().join("tree").join("leaves"), &leaves).unwrap();
    assert!(!leaf_entries(packed.path()).contains(&[0u8; 32]));

    // Every segment's inner blocks: 1,500 records each, at least four
    // whole blocks of 256 inside each.
    let freed = || {
        leaf_entries(packed.path())
            .iter()
            .filter(|l| **l == [0u8; 32])
            .count() as u64
    };
    let store = Store::open(packed.path(), compressing(4 << 20)).unwrap();
    let started = Instant::now();
    while freed() < SEGMENTS * 4 * 256 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} leaves freed after a minute",
            freed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    store.close().unwrap();
    let a = Store::open_read_only(plain.path()).unwrap();
    let b = Store::open_read_only(packed.path()).unwrap();
    assert_same_proofs(&a, &b, a.tree_size());
    b.verify().unwrap();
}

#[test]
fn a_compressed_segment_pruned_has_its_leaf_hashes_written_back_first() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), small_options(4 << 20));
    let want = leaf_entries(dir.path());
    let store = Store::open(dir.path(), small_options(4 << 20)).unwrap();
    let size = store.tree_size();
    let proofs: Vec<_> = (0..size)
        .step_by(53)
        .map(|seq| store.inclusion_proof(seq, size).unwrap())
        .collect();
    // What an archive round would have copied: the uncompressed segments.
    let mut pruned = Vec::new();
    for s in &sealog::image::sealed_segments(&store)[..2] {
        let sha = |path: &Path| -> [u8; 32] { Sha256::digest(std::fs::read(path).unwrap()).into() };
        pruned.push(sealog::pruned::PrunedSegment {
            header: s.header,
            footer: s.footer,
            segment_sha256: sha(&s.path),
            sidecar_sha256: sha(&dir
                .path()
                .join(sealog::image::sidecar_file_name(s.header.first_seq))),
            url: "file:///archive".into(),
            manifest: "manifests/00000000000000000001.json".into(),
        });
    }
    store.compress_sealed(Compression::ZSTD).unwrap();
    assert!(leaf_entries(dir.path()).iter().any(|l| l == &[0u8; 32]));
    store.prune_archived(&pruned).unwrap();
    let have = leaf_entries(dir.path());
    let pruned_end = pruned[1].footer.end_seq() as usize;
    assert_eq!(&have[..pruned_end], &want[..pruned_end], "written back");
    assert!(have[pruned_end..].iter().any(|l| l == &[0u8; 32]));
    for (i, seq) in (0..size).step_by(53).enumerate() {
        assert_eq!(
            store.inclusion_proof(seq, size).unwrap(),
            proofs[i],
            "{seq}"
        );
    }
    let report = store.verify().unwrap();
    assert_eq!(report.archived_not_local.len(), 2);
    store.close().unwrap();
    let report = Store::open_read_only(dir.path()).unwrap().verify().unwrap();
    // And the two `archive.pruned` events.
    assert_eq!(report.records, size + 2);
}

/// A record rewritten inside a compressed segment, its frame's checksum
/// fixed and the segment compressed again (what someone with write access
/// and the format can do): the segment's leaves there are freed, so the
/// level-1 hashes stored when it was sealed name the 256 records the
/// altered one is among.
#[test]
fn a_record_rewritten_inside_a_compressed_segment_is_named_to_its_256_records() {
    use sealog::format::{frame, record};
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), compressing(4 << 20));
    let target = segment_files(dir.path())[2].clone();
    let bytes = std::fs::read(&target).unwrap();
    let mut image = CompressedSegment::parse(&bytes)
        .unwrap()
        .decode_image()
        .unwrap();
    let (offset, len) = sealog_tests::frames(&image)[700];
    let mut altered = record::decode_record(&image[offset + 12..offset + len]).unwrap();
    assert_eq!(altered.seq, 2 * PER_SEGMENT + 700);
    // Same length, another actor: the frame layout stays valid.
    altered.event.actor.id = altered.event.actor.id.chars().rev().collect();
    let mut new_frame = Vec::new();
    frame::encode_frame(
        &record::encode_record(&altered).unwrap(),
        image[offset + 4],
        &mut new_frame,
    )
    .unwrap();
    assert_eq!(new_frame.len(), len);
    image[offset..offset + len].copy_from_slice(&new_frame);
    let packed = sealog::format::compressed::compress(&image, &Default::default()).unwrap();
    std::fs::write(&target, packed).unwrap();

    let c = match sealog::verify_dir(dir.path()) {
        Err(Error::Corruption(c)) => *c,
        other => panic!("the rewritten record went undetected: {other:?}"),
    };
    let first = altered.seq / 256 * 256;
    let name = format!("segments/{}", target.file_name().unwrap().to_str().unwrap());
    assert_eq!(c.location.file, name, "{c}");
    assert_eq!(c.location.seq, Some(first), "{c}");
    assert!(
        matches!(c.kind, CorruptionKind::RecordsChanged { first: f, count: 256, .. } if f == first),
        "{c}"
    );
    let text = c.to_string();
    assert!(
        text.contains(&format!("{first} to {}", first + 255)),
        "{text}"
    );
}
