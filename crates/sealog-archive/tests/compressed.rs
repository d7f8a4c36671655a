//! Compressed sealed segments and the archive, end to end on `file://`
//! archives: a store that compresses uploads its compressed files byte for
//! byte, the archive verifies and restores; segments compressed after they
//! were archived are removed by retention (same image) and read back from
//! the archive, also while a compressing writer's compressor rewrites
//! them; a local compressed copy that is not the archived segment is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealog::format::compressed::{COMPRESSED_MAGIC, CompressOptions, CompressedSegment};
use sealog::format::note::SigningKey;
use sealog::format::segment::SEGMENT_MAGIC;
use sealog::image::SealedSegmentInfo;
use sealog::{
    CheckpointOptions, Compression, Durability, Preallocation, Record, Store, StoreOptions,
};
use sealog_archive::{
    Archiver, ArchiverOptions, RetryPolicy, TargetOptions, VerifyOptions, layout,
};

/// Records per segment: every 16th is a dictionary sample and 64 samples
/// are needed, so each segment trains its own dictionary.
const PER_SEGMENT: u64 = 1_500;

fn key() -> SigningKey {
    SigningKey::from_seed("archive.test/log", &[7; 32]).expect("key")
}

/// Small segments (each holds one batch of [`PER_SEGMENT`] events, rolled
/// by hand), signed checkpoints, and `compression`.
fn options(compression: Compression) -> StoreOptions {
    StoreOptions {
        segment_size: 1 << 20,
        preallocation: Preallocation::Allocate,
        checkpoints: Some(CheckpointOptions::new(key())),
        compression,
        ..StoreOptions::default()
    }
}

/// Appends `segments` sealed segments of workload events to the store in
/// `dir` (continuing its seqs) with `compression`; when compressing, every
/// sealed segment is compressed before the store is closed.
fn grow(dir: &Path, segments: u64, compression: Compression) {
    let store = Store::open(dir, options(compression)).expect("open");
    let workload = sealog::workload::Workload::new(300);
    for _ in 0..segments {
        let from = store.len();
        store
            .append_batch_with(
                workload.events(from, from + PER_SEGMENT),
                Durability::Buffered,
            )
            .expect("append");
        store.roll().expect("roll");
    }
    store.wait_sealed().expect("sealed");
    if compression != Compression::None {
        // What the compressor thread has not done yet, now.
        store.compress_sealed(compression).expect("compress");
    }
    store.close().expect("close");
}

fn read_only(dir: &Path) -> Store {
    Store::open_read_only(dir).expect("open read-only")
}

fn sealed(dir: &Path) -> Vec<SealedSegmentInfo> {
    sealog::image::sealed_segments(&read_only(dir))
}

fn all_records(store: &Store) -> Vec<Record> {
    store.scan(..).map(|r| r.expect("record")).collect()
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
    }
}

fn archiver(url: &str) -> Archiver {
    Archiver::new(
        url,
        ArchiverOptions {
            target: TargetOptions {
                retry: quick_retry(),
                ..TargetOptions::default()
            },
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver")
}

fn verify_opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: Vec::new(),
    }
}

fn local_verify_opts() -> sealog::VerifyOptions {
    sealog::VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: Vec::new(),
        log_only: false,
    }
}

fn verify_archive(url: &str) -> sealog_archive::ArchiveReport {
    sealog_archive::blocking::verify(url, TargetOptions::default(), &verify_opts())
        .expect("the archive verifies")
}

/// Store options that read pruned segments through a cache in `cache`.
fn with_archive(cache: &Path) -> StoreOptions {
    let cache = sealog_archive::ArchiveCache::new(
        cache,
        sealog_archive::DEFAULT_CACHE_BYTES,
        TargetOptions {
            retry: quick_retry(),
            ..TargetOptions::default()
        },
    )
    .expect("cache");
    StoreOptions {
        archive: Some(Arc::new(cache)),
        ..StoreOptions::default()
    }
}

fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&COMPRESSED_MAGIC)
}

fn image_of(s: &SealedSegmentInfo, bytes: &[u8]) -> Vec<u8> {
    sealog::image::uncompressed(&s.name, bytes)
        .expect("the file decodes")
        .into_owned()
}

/// Replaces `path` by `bytes` whole (a new file renamed over it: a store
/// that mapped the old one keeps reading it).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("replacing");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A store of `segments` sealed segments written without compression and
/// archived in one round.
struct Fixture {
    tmp: tempfile::TempDir,
    store: PathBuf,
    archive: PathBuf,
    url: String,
}

fn archived_uncompressed(segments: u64) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    grow(&store, segments, Compression::None);
    let url = file_url(&archive);
    let r = archiver(&url)
        .round(&read_only(&store))
        .expect("round of the uncompressed segments");
    assert_eq!(r.segments, segments, "{r:?}");
    for s in sealed(&store) {
        let archived = std::fs::read(archive.join(layout::segment(s.header.first_seq)))
            .expect("archived segment");
        assert!(archived.starts_with(&SEGMENT_MAGIC), "{}", s.name);
    }
    Fixture {
        tmp,
        store,
        archive,
        url,
    }
}

#[test]
fn a_compressing_store_archives_its_compressed_files_which_verify_and_restore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_dir = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    grow(&store_dir, 4, Compression::ZSTD);
    let segments = sealed(&store_dir);
    assert_eq!(segments.len(), 4);
    for s in &segments {
        let bytes = std::fs::read(&s.path).expect("segment");
        assert!(is_compressed(&bytes), "{} is compressed locally", s.name);
        let parsed = CompressedSegment::parse(&bytes).expect("a compressed segment");
        assert!(
            !parsed.dictionary().is_empty(),
            "{} trained a dictionary",
            s.name
        );
    }
    let original = all_records(&read_only(&store_dir));
    let local = sealog::verify_dir_with(&store_dir, &local_verify_opts()).expect("local verify");

    // The round uploads the compressed files as they are.
    let url = file_url(&archive);
    let r = archiver(&url).round(&read_only(&store_dir)).expect("round");
    assert_eq!(r.segments, 4, "{r:?}");
    for s in &segments {
        let name = layout::segment(s.header.first_seq);
        let archived = std::fs::read(archive.join(&name)).expect("archived segment");
        let local_bytes = std::fs::read(&s.path).expect("segment");
        assert!(
            is_compressed(&archived),
            "{name} is archived in its compressed form"
        );
        assert_eq!(archived, local_bytes, "{name} is uploaded byte for byte");
        let image = image_of(s, &archived);
        assert_eq!(image.len() as u64, s.footer.file_len(), "{name}");
        assert!(
            archived.len() * 2 < image.len(),
            "{name}: {} compressed bytes for an image of {}",
            archived.len(),
            image.len()
        );
        let sidecar = layout::sidecar(s.header.first_seq);
        assert_eq!(
            std::fs::read(archive.join(&sidecar)).expect("archived sidecar"),
            std::fs::read(s.path.with_extension("idx")).expect("local sidecar"),
            "{sidecar} (it describes the image) is the local one"
        );
    }

    // The archive verifies.
    let report = verify_archive(&url);
    assert_eq!(report.segments, 4);
    assert_eq!((report.records, report.root), (local.records, local.root));
    assert!(report.checkpoints_authenticated);
    assert!(report.unlisted.is_empty(), "{:?}", report.unlisted);

    // A restore gives the same log, which the engine verifies.
    let restored = tmp.path().join("restored");
    let rr = sealog_archive::blocking::restore(
        &url,
        &restored,
        TargetOptions::default(),
        &verify_opts(),
    )
    .expect("restore");
    assert_eq!(rr.records, local.records);
    let again = sealog::verify_dir_with(&restored, &local_verify_opts()).expect("restored verify");
    assert_eq!((again.records, again.root), (local.records, local.root));
    let copy = all_records(&read_only(&restored));
    assert_eq!(copy.len(), original.len());
    assert!(copy == original, "the restored records are the original's");
    for s in &segments {
        let name = layout::segment(s.header.first_seq);
        assert_eq!(
            std::fs::read(restored.join(&name)).expect("restored segment"),
            std::fs::read(archive.join(&name)).expect("archived segment"),
            "{name} is restored as archived"
        );
    }
    // The restored store goes on (compressing what it seals).
    grow(&restored, 1, Compression::ZSTD);
    let continued = sealog::verify_dir(&restored).expect("continued store verifies");
    assert_eq!(continued.records, local.records + PER_SEGMENT);
}

#[test]
fn segments_compressed_after_archiving_are_pruned_and_read_back_from_the_archive() {
    let f = archived_uncompressed(4);
    let first_round = sealed(&f.store);

    // The store compresses its archived segments afterwards.
    {
        let store = Store::open(&f.store, options(Compression::None)).expect("open");
        let report = store.compress_sealed(Compression::ZSTD).expect("compress");
        assert_eq!(report.segments, 4, "{report:?}");
        assert!(report.bytes_after * 2 < report.bytes_before, "{report:?}");
        store.close().expect("close");
    }
    for s in &first_round {
        let local = std::fs::read(&s.path).expect("segment");
        let archived =
            std::fs::read(f.archive.join(layout::segment(s.header.first_seq))).expect("archived");
        assert!(is_compressed(&local), "{}", s.name);
        assert_ne!(local, archived);
        assert_eq!(image_of(s, &local), archived, "{}: the same image", s.name);
    }
    // Two more segments, written compressed, archived in a second round:
    // the archive holds both forms.
    grow(&f.store, 2, Compression::ZSTD);
    let a = archiver(&f.url);
    let r2 = a.round(&read_only(&f.store)).expect("round 2");
    assert_eq!(r2.segments, 2, "{r2:?}");
    let segments = sealed(&f.store);
    assert_eq!(segments.len(), 6);
    let fifth = &segments[4];
    assert!(
        is_compressed(
            &std::fs::read(f.archive.join(layout::segment(fifth.header.first_seq)))
                .expect("archived")
        ),
        "round 2 archived {} compressed",
        fifth.name
    );
    let report = verify_archive(&f.url);
    assert_eq!(report.segments, 6);
    let before = all_records(&read_only(&f.store));

    // Retention removes every segment but the newest.
    let store = Store::open(&f.store, options(Compression::None)).expect("open");
    let pruned = a.prune_local(&store, Duration::ZERO).expect("prune");
    assert!(pruned.kept.is_empty(), "{pruned:?}");
    let expected: Vec<String> = segments[..5].iter().map(|s| s.name.clone()).collect();
    assert_eq!(pruned.pruned, expected);
    assert_eq!(pruned.records, 5 * PER_SEGMENT);
    for s in &segments[..5] {
        assert!(!s.path.exists(), "{} removed", s.name);
        assert!(!s.path.with_extension("idx").exists(), "{} sidecar", s.name);
    }
    assert!(segments[5].path.exists(), "the newest sealed segment stays");
    assert_eq!(store.pruned_segments().len(), 5);
    store.close().expect("close");

    let verified = sealog::verify_dir_with(&f.store, &local_verify_opts())
        .expect("verify across pruned segments");
    assert_eq!(verified.archived_not_local, expected);
    assert_eq!(verified.records, before.len() as u64 + 5);

    // The pruned segments are read from the archive: uncompressed copies
    // (round 1) and a compressed one (round 2).
    let cache = f.tmp.path().join("cache");
    let reader = Store::open_read_only_with(&f.store, with_archive(&cache)).expect("open");
    let after = all_records(&reader);
    assert_eq!(after.len(), before.len() + 5);
    assert!(
        after[..before.len()] == before[..],
        "the same records before and after pruning"
    );
    assert!(
        after[before.len()..]
            .iter()
            .all(|r| r.event.action == "archive.pruned"),
        "then one archive.pruned event per segment"
    );
    let in_fifth = fifth.header.first_seq + 7;
    assert_eq!(
        reader.get(in_fifth).expect("get").expect("present"),
        before[in_fifth as usize]
    );
    let page = reader
        .query(&sealog::query::Query {
            request_id: before[in_fifth as usize].event.request_id.clone(),
            ..sealog::query::Query::default()
        })
        .expect("query");
    assert_eq!(
        page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![in_fifth],
        "a query finds a record of a pruned segment archived compressed"
    );
    let seg0 = before
        .iter()
        .find(|r| r.seq == 3)
        .expect("a record of the first segment");
    let page = reader
        .query(&sealog::query::Query {
            request_id: seg0.event.request_id.clone(),
            ..sealog::query::Query::default()
        })
        .expect("query");
    assert_eq!(page.records, vec![seg0.clone()]);
    let size = reader.tree_size();
    assert!(
        !reader
            .inclusion_proof(in_fifth, size)
            .expect("proof")
            .is_empty()
    );
    drop(reader);
    let mut cached: Vec<(String, bool)> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, is_compressed(&std::fs::read(&p).expect("read")))
        })
        .collect();
    cached.sort();
    assert_eq!(
        cached.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![false, false, false, false, true],
        "the cache holds the archived forms: {cached:?}"
    );

    // And the mixed archive restores to the log as archived.
    let restored = f.tmp.path().join("restored");
    let rr = sealog_archive::blocking::restore(
        &f.url,
        &restored,
        TargetOptions::default(),
        &verify_opts(),
    )
    .expect("restore");
    assert_eq!(rr.records, 6 * PER_SEGMENT);
    sealog::verify_dir_with(&restored, &local_verify_opts()).expect("restored verify");
    let copy = all_records(&read_only(&restored));
    assert!(copy[..] == before[..copy.len()]);
}

/// Retention keeps segment 0 of `f` (two sealed segments: the only
/// candidate) whose local file was replaced by `local`, naming the file;
/// nothing is removed or recorded.
fn assert_kept(f: &Fixture, local: &[u8]) {
    let segments = sealed(&f.store);
    assert_eq!(segments.len(), 2);
    let victim = &segments[0];
    replace(&victim.path, local);
    let sidecar = std::fs::read(victim.path.with_extension("idx")).expect("sidecar");
    let store = Store::open(&f.store, options(Compression::None)).expect("open");
    let len = store.len();
    let report = archiver(&f.url)
        .prune_local(&store, Duration::ZERO)
        .expect("a pass that keeps the segment");
    assert!(report.pruned.is_empty(), "{report:?}");
    assert_eq!(report.kept.len(), 1, "{report:?}");
    let (name, reason) = &report.kept[0];
    assert_eq!(*name, victim.name);
    let path = victim.path.display().to_string();
    assert!(
        reason.contains(&path) && reason.contains("locally"),
        "the reason names {path}: {reason}"
    );
    assert!(store.pruned_segments().is_empty());
    assert_eq!(store.len(), len, "no archive.pruned event");
    store.close().expect("close");
    assert_eq!(std::fs::read(&victim.path).expect("kept"), local);
    assert_eq!(
        std::fs::read(victim.path.with_extension("idx")).expect("kept sidecar"),
        sidecar
    );
    assert!(segments[1].path.exists());
    let record = f.store.join(sealog::pruned::PRUNED_FILE);
    assert!(
        std::fs::read(&record).unwrap_or_default().is_empty(),
        "nothing recorded in {}",
        record.display()
    );
}

/// Retention removes segment 0 of `f` once its local file is `local`.
fn assert_pruned(f: &Fixture, local: &[u8]) {
    let victim = &sealed(&f.store)[0];
    replace(&victim.path, local);
    let store = Store::open(&f.store, options(Compression::None)).expect("open");
    let report = archiver(&f.url)
        .prune_local(&store, Duration::ZERO)
        .expect("prune");
    assert!(report.kept.is_empty(), "{report:?}");
    assert_eq!(report.pruned, vec![victim.name.clone()]);
    store.close().expect("close");
    assert!(!victim.path.exists());
    sealog::verify_dir_with(&f.store, &local_verify_opts()).expect("verify");
}

#[test]
fn retention_keeps_a_local_compressed_copy_whose_image_differs_from_the_archived_one() {
    let f = archived_uncompressed(2);
    let victim = &sealed(&f.store)[0];
    let image = std::fs::read(&victim.path).expect("segment");
    // A different segment that compresses: one record byte changed and its
    // frame's CRC made to match, so the container is whole and decodes.
    let mut forged = image.clone();
    let at = sealog::format::segment::HEADER_LEN;
    let fh = sealog::format::frame::FRAME_HEADER_LEN;
    let len = u32::from_le_bytes(forged[at..at + 4].try_into().expect("4 bytes")) as usize;
    forged[at + fh + len / 2] ^= 0x01;
    let prefix: [u8; 8] = forged[at..at + 8].try_into().expect("8 bytes");
    let crc = sealog::format::frame::frame_crc(&prefix, &forged[at + fh..at + fh + len]);
    forged[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
    let packed = sealog::format::compressed::compress(&forged, &CompressOptions::default())
        .expect("the forged image compresses");
    assert!(is_compressed(&packed));
    assert_eq!(
        image_of(victim, &packed),
        forged,
        "it decodes, to another image"
    );
    assert_kept(&f, &packed);

    // The control: the segment's own image compressed is the same segment.
    let genuine = sealog::format::compressed::compress(&image, &CompressOptions::default())
        .expect("compress");
    assert_pruned(&f, &genuine);
}

#[test]
fn retention_keeps_a_local_compressed_copy_with_a_damaged_block() {
    let f = archived_uncompressed(2);
    {
        let store = Store::open(&f.store, options(Compression::None)).expect("open");
        let report = store.compress_sealed(Compression::ZSTD).expect("compress");
        assert_eq!(report.segments, 2, "{report:?}");
        store.close().expect("close");
    }
    let victim = &sealed(&f.store)[0];
    let genuine = std::fs::read(&victim.path).expect("segment");
    let mut damaged = genuine.clone();
    let block = CompressedSegment::parse(&genuine)
        .expect("compressed")
        .block(1)
        .expect("a second block");
    damaged[(block.stored_offset + u64::from(block.stored_len) / 2) as usize] ^= 0x20;
    assert!(
        CompressedSegment::parse(&damaged).is_ok(),
        "the container's structure is intact"
    );
    assert!(sealog::image::uncompressed(&victim.name, &damaged).is_err());
    assert_kept(&f, &damaged);
    assert_pruned(&f, &genuine);
}

#[test]
fn a_compressing_writer_prunes_archived_segments_while_its_compressor_rewrites_them() {
    // A server with compression and retention on: the writer's compressor
    // starts rewriting the archived uncompressed segments as the pass reads
    // them back; whichever form each is in, it is the archived segment.
    let f = archived_uncompressed(5);
    let segments = sealed(&f.store);
    let before = all_records(&read_only(&f.store));
    let store = Store::open(&f.store, options(Compression::ZSTD)).expect("open");
    let report = archiver(&f.url)
        .prune_local(&store, Duration::ZERO)
        .expect("prune");
    assert!(report.kept.is_empty(), "{report:?}");
    let expected: Vec<String> = segments[..4].iter().map(|s| s.name.clone()).collect();
    assert_eq!(report.pruned, expected);
    store.close().expect("close");
    for s in &segments[..4] {
        assert!(!s.path.exists(), "{} removed", s.name);
    }
    sealog::verify_dir_with(&f.store, &local_verify_opts()).expect("verify");
    let cache = f.tmp.path().join("cache");
    let reader = Store::open_read_only_with(&f.store, with_archive(&cache)).expect("open");
    let after = all_records(&reader);
    assert_eq!(after.len(), before.len() + 4);
    assert!(after[..before.len()] == before[..]);
}

/// A round interrupted after it wrote a segment's object but before its
/// manifest, then the store compressed that segment: the next round finds
/// the object in the other form, keeps it (the same segment), lists it as
/// it is, and the archive verifies. An object of another segment under
/// that name is still a conflict.
#[test]
fn a_segment_object_left_by_an_interrupted_round_is_kept_in_its_form() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    grow(&store, 3, Compression::None);
    let first = sealed(&store)[0].clone();
    let object = archive.join(layout::segment(first.header.first_seq));
    // What the interrupted round left: the uncompressed segment, no
    // manifest.
    std::fs::create_dir_all(object.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&first.path, &object).expect("copy");
    {
        let s = Store::open(&store, options(Compression::None)).expect("open");
        assert_eq!(
            s.compress_sealed(Compression::ZSTD)
                .expect("compress")
                .segments,
            3
        );
        s.close().expect("close");
    }
    let local = std::fs::read(&first.path).expect("local");
    assert!(is_compressed(&local));
    let url = file_url(&archive);

    // Another segment's bytes under that name: refused.
    let other = std::fs::read(&sealed(&store)[1].path).expect("other");
    let kept = std::fs::read(&object).expect("object");
    std::fs::write(&object, image_of(&sealed(&store)[1], &other)).expect("write");
    let e = archiver(&url)
        .round(&read_only(&store))
        .expect_err("another segment under the name");
    assert!(
        e.to_string()
            .contains(&layout::segment(first.header.first_seq)),
        "{e}"
    );
    std::fs::write(&object, &kept).expect("write");

    let r = archiver(&url).round(&read_only(&store)).expect("round");
    assert_eq!(r.segments, 3, "{r:?}");
    let archived = std::fs::read(&object).expect("object");
    assert!(!is_compressed(&archived), "the object is kept as it was");
    assert_eq!(image_of(&first, &archived), image_of(&first, &local));
    let report = verify_archive(&url);
    assert_eq!(report.segments, 3, "{report:?}");
}
