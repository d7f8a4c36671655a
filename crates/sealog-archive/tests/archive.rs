//! The archive end to end, on a local directory and on a real S3 API
//! server (`moto`) on loopback: upload rounds, verification, restore,
//! Object Lock, conflicts, faults of the object store, and tampering.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealog::format::note::SigningKey;
use sealog::format::{Actor, Event, Outcome, Resource};
use sealog::{CheckpointOptions, Preallocation, Store, StoreOptions};
use sealog_archive::{
    ArchiveError, Archiver, ArchiverOptions, LockMode, ObjectLock, RetryPolicy, Target,
    TargetOptions, VerifyOptions, layout,
};
use support::{Moto, Proxy, ProxyMode};

fn key() -> SigningKey {
    SigningKey::from_seed("archive.test/log", &[7; 32]).expect("key")
}

fn options(signing: bool) -> StoreOptions {
    StoreOptions {
        segment_size: 8192,
        preallocation: Preallocation::Allocate,
        checkpoints: signing.then(|| CheckpointOptions::new(key())),
        ..StoreOptions::default()
    }
}

/// Appends `n` events to the store in `dir` and seals what it holds.
fn grow(dir: &Path, n: usize, signing: bool) {
    let store = Store::open(dir, options(signing)).expect("open");
    let start = store.len();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new(
                Actor::new("user", format!("u{}", i % 5)),
                "doc.read",
                Resource::new("doc", (start as usize + i).to_string()),
                Outcome::Success,
            )
        })
        .collect();
    for chunk in events.chunks(20) {
        store.append_batch(chunk.to_vec()).expect("append");
    }
    store.roll().expect("roll");
    store.wait_sealed().expect("sealed");
    store.close().expect("close");
}

fn read_only(dir: &Path) -> Store {
    Store::open_read_only(dir).expect("open read-only")
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn archiver(url: &str, config: Vec<(String, String)>) -> Archiver {
    Archiver::new(
        url,
        ArchiverOptions {
            target: TargetOptions {
                config,
                retry: quick_retry(),
                ..TargetOptions::default()
            },
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver")
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
    }
}

fn verify_opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: Vec::new(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn target(url: &str, config: Vec<(String, String)>) -> Target {
    Target::open(
        url,
        TargetOptions {
            config,
            retry: quick_retry(),
            ..TargetOptions::default()
        },
    )
    .expect("target")
}

fn verify(
    url: &str,
    config: Vec<(String, String)>,
    options: &VerifyOptions,
) -> sealog_archive::Result<sealog_archive::ArchiveReport> {
    let t = target(url, config);
    rt().block_on(sealog_archive::verify(&t, options, None))
}

/// A store with two archived rounds (over 256 records, so tree level 1
/// pieces exist) in a `file://` archive.
struct Fixture {
    _tmp: tempfile::TempDir,
    store: std::path::PathBuf,
    archive: std::path::PathBuf,
    url: String,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    grow(&store, 200, true);
    let a = archiver(&file_url(&archive), Vec::new());
    let r1 = a.round(&read_only(&store)).expect("round 1");
    assert_eq!(r1.round, 1);
    grow(&store, 250, true);
    let r2 = a.round(&read_only(&store)).expect("round 2");
    assert_eq!(r2.round, 2);
    assert_eq!(r2.from_size, r1.tree_size);
    let url = file_url(&archive);
    Fixture {
        _tmp: tmp,
        store,
        archive,
        url,
    }
}

fn object(f: &Fixture, name: &str) -> std::path::PathBuf {
    f.archive.join(name)
}

fn first_of(f: &Fixture, prefix: &str) -> String {
    let dir = f.archive.join(prefix);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    format!("{prefix}/{}", names.first().expect("an object"))
}

fn tampered_object(result: sealog_archive::Result<sealog_archive::ArchiveReport>) -> String {
    match result {
        Err(ArchiveError::Tampered { object, problem }) => {
            eprintln!("{object}: {problem}");
            object
        }
        other => panic!("expected tampering to be found, got {other:?}"),
    }
}

#[test]
fn file_archive_round_trips_through_verify_and_restore() {
    let f = fixture();
    let report = verify(&f.url, Vec::new(), &verify_opts()).expect("intact");
    let local = sealog::verify_dir(&f.store).expect("local verify");
    assert_eq!(report.rounds, 2);
    assert_eq!(report.records, local.records);
    assert_eq!(report.root, local.root);
    assert!(report.checkpoints_authenticated);
    assert!(report.unlisted.is_empty(), "{:?}", report.unlisted);
    assert!(
        f.archive.join("tree/level-1").is_dir(),
        "450 records complete a level-1 tree entry"
    );

    // Restore, verify, compare, continue the log.
    let restored = f._tmp.path().join("restored");
    let rr = sealog_archive::blocking::restore(
        &f.url,
        &restored,
        TargetOptions::default(),
        &verify_opts(),
    )
    .expect("restore");
    assert_eq!(rr.records, local.records);
    let again = sealog::verify_dir_with(
        &restored,
        &sealog::VerifyOptions {
            public_key: Some(key().verifier()),
            checkpoints: Vec::new(),
            log_only: false,
        },
    )
    .expect("restored store verifies");
    assert_eq!((again.records, again.root), (local.records, local.root));
    let original: Vec<_> = read_only(&f.store)
        .scan(..)
        .map(|r| r.expect("record"))
        .collect();
    let copy: Vec<_> = read_only(&restored)
        .scan(..)
        .map(|r| r.expect("record"))
        .collect();
    assert_eq!(original, copy);
    let store = Store::open(&restored, options(true)).expect("open restored for writing");
    let receipt = store
        .append(Event::new(
            Actor::new("user", "after-restore"),
            "store.restored",
            Resource::kind("store"),
            Outcome::Success,
        ))
        .expect("append after restore");
    assert_eq!(receipt.seq, local.records);
    store.close().expect("close");
    sealog::verify_dir(&restored).expect("continued store verifies");
}

#[test]
fn a_second_round_with_nothing_sealed_writes_nothing() {
    let f = fixture();
    let a = archiver(&f.url, Vec::new());
    let r = a.round(&read_only(&f.store)).expect("round");
    assert_eq!(r.manifest, None);
    assert_eq!(r.objects_written, 0);
    assert_eq!(a.progress().lag_records, 0);
}

#[test]
fn an_archived_segment_is_fetched_checked_against_its_manifest() {
    let f = fixture();
    let a = archiver(&f.url, Vec::new());
    let local = read_only(&f.store);
    let segments = sealog::image::sealed_segments(&local);
    let last = segments.last().expect("a segment");
    let fetched = rt()
        .block_on(a.fetch_segment(last.header.first_seq))
        .expect("fetch");
    assert_eq!(&fetched[..], &std::fs::read(&last.path).expect("read")[..]);
    assert!(matches!(
        rt().block_on(a.fetch_segment(last.header.first_seq + 1)),
        Err(ArchiveError::Config { .. })
    ));
    // An altered copy is never handed out.
    let name = layout::segment(last.header.first_seq);
    let mut bytes = std::fs::read(object(&f, &name)).expect("read");
    bytes[150] ^= 1;
    std::fs::write(object(&f, &name), bytes).expect("write");
    assert!(matches!(
        rt().block_on(a.fetch_segment(last.header.first_seq)),
        Err(ArchiveError::Tampered { object, .. }) if object == name
    ));
}

#[test]
fn restore_refuses_a_non_empty_directory() {
    let f = fixture();
    let target = f._tmp.path().join("busy");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("keep-me"), b"x").expect("write");
    let e = sealog_archive::blocking::restore(
        &f.url,
        &target,
        TargetOptions::default(),
        &verify_opts(),
    );
    assert!(matches!(e, Err(ArchiveError::Config { .. })), "{e:?}");
    assert!(target.join("keep-me").exists());
}

#[test]
fn a_tampered_archive_is_not_restored_and_leaves_nothing_behind() {
    let f = fixture();
    let seg = first_of(&f, "segments");
    let mut bytes = std::fs::read(object(&f, &seg)).expect("read");
    bytes[200] ^= 1;
    std::fs::write(object(&f, &seg), bytes).expect("write");
    let target = f._tmp.path().join("restored");
    let e = sealog_archive::blocking::restore(
        &f.url,
        &target,
        TargetOptions::default(),
        &verify_opts(),
    );
    assert!(
        matches!(&e, Err(ArchiveError::Tampered { object, .. }) if *object == seg),
        "{e:?}"
    );
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(f._tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn archiving_without_a_checkpoint_or_a_key_is_refused_with_a_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 100, false);
    let url = file_url(&tmp.path().join("archive"));
    let e = archiver(&url, Vec::new()).round(&read_only(&store));
    match e {
        Err(ArchiveError::Config { message, fix }) => {
            assert!(message.contains("no signed checkpoint"), "{message}");
            assert!(fix.contains("--signing-key"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    // With the key, the archiver signs one at exactly the archived size.
    let a = Archiver::new(
        &url,
        ArchiverOptions {
            signing_key: Some(Arc::new(key())),
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver");
    let r = a.round(&read_only(&store)).expect("round with key");
    assert!(r.signed_checkpoint);
    assert_eq!(r.checkpoint_size, Some(r.tree_size));
    verify(&url, Vec::new(), &verify_opts()).expect("intact");
}

#[test]
fn an_archive_of_another_store_is_refused() {
    let f = fixture();
    let other = f._tmp.path().join("other");
    grow(&other, 100, true);
    let e = archiver(&f.url, Vec::new()).round(&read_only(&other));
    assert!(
        matches!(&e, Err(ArchiveError::Config { message, .. }) if message.contains("belongs to store")),
        "{e:?}"
    );
}

// ---- tampering, on the local backend ----

#[test]
fn an_altered_segment_is_named() {
    let f = fixture();
    let seg = first_of(&f, "segments");
    let mut bytes = std::fs::read(object(&f, &seg)).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(object(&f, &seg), bytes).expect("write");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        seg
    );
}

#[test]
fn a_deleted_segment_is_named() {
    let f = fixture();
    let seg = first_of(&f, "segments");
    std::fs::remove_file(object(&f, &seg)).expect("delete");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        seg
    );
}

#[test]
fn a_sidecar_replaced_by_another_segments_is_named() {
    let f = fixture();
    let mut idx: Vec<String> = std::fs::read_dir(f.archive.join("segments"))
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".idx"))
        .collect();
    idx.sort();
    let (a, b) = (
        format!("segments/{}", idx[0]),
        format!("segments/{}", idx[1]),
    );
    std::fs::copy(object(&f, &b), object(&f, &a)).expect("copy");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        a
    );
}

#[test]
fn swapped_segments_are_named() {
    let f = fixture();
    let mut segs: Vec<String> = std::fs::read_dir(f.archive.join("segments"))
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    segs.sort();
    let (a, b) = (
        format!("segments/{}", segs[0]),
        format!("segments/{}", segs[1]),
    );
    let tmp = f._tmp.path().join("swap");
    std::fs::rename(object(&f, &a), &tmp).expect("mv");
    std::fs::rename(object(&f, &b), object(&f, &a)).expect("mv");
    std::fs::rename(&tmp, object(&f, &b)).expect("mv");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        a
    );
}

#[test]
fn an_altered_tree_piece_is_named() {
    let f = fixture();
    let piece = first_of(&f, "tree/level-1");
    let mut bytes = std::fs::read(object(&f, &piece)).expect("read");
    bytes[0] ^= 1;
    std::fs::write(object(&f, &piece), bytes).expect("write");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        piece
    );
}

#[test]
fn a_deleted_first_manifest_is_named() {
    let f = fixture();
    let m = layout::manifest(1);
    std::fs::remove_file(object(&f, &m)).expect("delete");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        m
    );
}

#[test]
fn an_altered_older_manifest_is_named() {
    let f = fixture();
    let m = layout::manifest(1);
    let text = std::fs::read_to_string(object(&f, &m)).expect("read");
    // A consistent-looking edit: claim a later write time.
    let edited = text.replacen("\"written_at\":\"2", "\"written_at\":\"1", 1);
    assert_ne!(text, edited);
    std::fs::write(object(&f, &m), edited).expect("write");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        m
    );
}

#[test]
fn swapped_manifests_are_named() {
    let f = fixture();
    let (a, b) = (layout::manifest(1), layout::manifest(2));
    let tmp = f._tmp.path().join("swap");
    std::fs::rename(object(&f, &a), &tmp).expect("mv");
    std::fs::rename(object(&f, &b), object(&f, &a)).expect("mv");
    std::fs::rename(&tmp, object(&f, &b)).expect("mv");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        a
    );
}

#[test]
fn a_checkpoint_not_signed_by_the_key_is_named() {
    let f = fixture();
    let cp = first_of(&f, "checkpoints");
    let other = SigningKey::from_seed("archive.test/log", &[9; 32]).expect("key");
    let opts = VerifyOptions {
        public_key: Some(other.verifier()),
        checkpoints: Vec::new(),
    };
    assert_eq!(tampered_object(verify(&f.url, Vec::new(), &opts)), cp);
}

#[test]
fn deleting_the_newest_manifest_is_caught_only_with_a_later_checkpoint() {
    let f = fixture();
    // The checkpoint the newest round relied on, kept by a witness.
    let newest = std::fs::read(object(&f, &layout::manifest(2))).expect("read");
    let m = sealog_archive::manifest::Manifest::parse(&newest).expect("parse");
    std::fs::remove_file(object(&f, &layout::manifest(2))).expect("delete");
    // Without outside knowledge the shorter archive is self-consistent
    // (its round-2 objects are reported as unlisted).
    let report = verify(&f.url, Vec::new(), &verify_opts()).expect("a consistent prefix");
    assert_eq!(report.rounds, 1);
    assert!(!report.unlisted.is_empty());
    let opts = VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: vec![m.checkpoint.text],
    };
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &opts)),
        "given checkpoint #1"
    );
}

#[test]
fn an_interrupted_round_is_resumed_without_duplicates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 300, true);
    let archive = tmp.path().join("archive");
    let url = file_url(&archive);
    archiver(&url, Vec::new())
        .round(&read_only(&store))
        .expect("round");
    // Simulate a crash after the uploads and before the manifest.
    std::fs::remove_file(archive.join(layout::manifest(1))).expect("rm");
    let r = archiver(&url, Vec::new())
        .round(&read_only(&store))
        .expect("resumed round");
    assert_eq!(r.round, 1);
    assert_eq!(r.objects_written, 1, "only the manifest is new");
    assert!(r.objects_already_there > 3);
    verify(&url, Vec::new(), &verify_opts()).expect("intact");
}

// ---- S3 (moto) ----

const BUCKET: &str = "sealog-archive";

#[test]
fn s3_archive_on_moto_verifies_and_its_locked_objects_cannot_be_deleted() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 300, true);
    let url = format!("s3://{BUCKET}/prod/log");
    let config = Moto::config(&moto.endpoint());
    let a = Archiver::new(
        &url,
        ArchiverOptions {
            target: TargetOptions {
                lock: Some(ObjectLock {
                    mode: LockMode::Governance,
                    retain: Duration::from_secs(3 * 86_400),
                }),
                retry: quick_retry(),
                config: config.clone(),
            },
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver");
    let r = a.round(&read_only(&store)).expect("round");
    assert!(r.objects_written > 4);
    grow(&store, 100, true);
    // Round 2 with Parquet copies on (a server turned it on later).
    let a = Archiver::new(
        &url,
        ArchiverOptions {
            target: TargetOptions {
                lock: Some(ObjectLock {
                    mode: LockMode::Governance,
                    retain: Duration::from_secs(3 * 86_400),
                }),
                retry: quick_retry(),
                config: config.clone(),
            },
            parquet: true,
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver");
    let r2 = a.round(&read_only(&store)).expect("round 2");
    let report = verify(&url, config.clone(), &verify_opts()).expect("intact");
    assert_eq!(
        report.records,
        sealog::verify_dir(&store).expect("local").records
    );
    assert_eq!(report.parquet_segments, r2.segments);
    assert!(report.parquet_segments > 0 && report.parquet_segments < report.segments);

    // The per-object retention was applied, and a locked version cannot be
    // deleted.
    let key = format!("prod/log/{}", layout::segment(0));
    let out = moto.boto3(
        &moto.endpoint(),
        &format!(
            "h = s3.head_object(Bucket='{BUCKET}', Key='{key}')\n\
             print(h.get('ObjectLockMode'))\n\
             v = s3.list_object_versions(Bucket='{BUCKET}', Prefix='{key}')['Versions'][0]['VersionId']\n\
             try:\n    s3.delete_object(Bucket='{BUCKET}', Key='{key}', VersionId=v)\n    print('deleted')\n\
             except Exception as e:\n    print('refused', type(e).__name__)\n"
        ),
    );
    assert!(out.contains("GOVERNANCE"), "{out}");
    assert!(out.contains("refused"), "{out}");
    // Parquet copies are locked like every object.
    let date = sealog_export::parquet::utc_date(sealog::format::Timestamp::now().as_nanos());
    let out = moto.boto3(
        &moto.endpoint(),
        &format!(
            "for o in s3.list_objects_v2(Bucket='{BUCKET}', Prefix='prod/log/parquet/')['Contents']:\n    \
             print(o['Key'], s3.head_object(Bucket='{BUCKET}', Key=o['Key']).get('ObjectLockMode'))\n"
        ),
    );
    assert!(out.contains("prod/log/parquet/date="), "{out}");
    assert!(
        out.lines().all(|l| l.ends_with(" GOVERNANCE")),
        "{out} (today is {date})"
    );
    verify(&url, config, &verify_opts()).expect("still intact");
}

#[test]
fn a_conflicting_object_in_the_bucket_stops_the_upload_naming_it() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 200, true);
    let url = format!("s3://{BUCKET}/p");
    let config = Moto::config(&moto.endpoint());
    let planted = layout::sidecar(0);
    rt().block_on(
        target(&url, config.clone()).overwrite(&planted, Bytes::from_static(b"not an index")),
    )
    .expect("plant");
    let e = archiver(&url, config.clone()).round(&read_only(&store));
    assert!(
        matches!(&e, Err(ArchiveError::Conflict { object, .. }) if *object == planted),
        "{e:?}"
    );
    let names = rt().block_on(target(&url, config).list("")).expect("list");
    assert!(
        !names.iter().any(|(n, _)| n.starts_with(layout::MANIFESTS)),
        "no manifest after a refused upload: {names:?}"
    );
}

#[test]
fn tampering_in_an_s3_bucket_is_named() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 200, true);
    let url = format!("s3://{BUCKET}/t");
    let config = Moto::config(&moto.endpoint());
    archiver(&url, config.clone())
        .round(&read_only(&store))
        .expect("round");
    let t = target(&url, config.clone());
    let leaves = layout::tree_piece(0, 0);
    let mut bytes = rt()
        .block_on(t.get(&leaves))
        .expect("get")
        .expect("exists")
        .to_vec();
    bytes[5] ^= 1;
    rt().block_on(t.overwrite(&leaves, Bytes::from(bytes)))
        .expect("overwrite");
    assert_eq!(
        tampered_object(verify(&url, config.clone(), &verify_opts())),
        leaves
    );
    rt().block_on(t.delete(&layout::manifest(1)))
        .expect("delete");
    assert_eq!(
        tampered_object(verify(&url, config.clone(), &verify_opts())),
        layout::manifest(1)
    );
    // A URL where nothing was ever archived is not an intact archive.
    let e = verify(
        &format!("s3://{BUCKET}/nothing-here"),
        config,
        &verify_opts(),
    );
    assert!(matches!(e, Err(ArchiveError::Config { .. })), "{e:?}");
}

#[test]
fn an_object_store_down_mid_round_is_retried_until_it_is_back() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 400, true);
    let url = format!("s3://{BUCKET}/d");
    let config = Moto::config(&proxy.endpoint());
    let a = Archiver::new(
        &url,
        ArchiverOptions {
            target: TargetOptions {
                retry: RetryPolicy {
                    attempts: 30,
                    first_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_millis(500),
                    request_timeout: Duration::from_secs(5),
                },
                config: config.clone(),
                ..TargetOptions::default()
            },
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver");
    // Down shortly after the round starts, back two seconds later.
    proxy.set(ProxyMode::Slow(Duration::from_millis(30)));
    let p = std::sync::Arc::new(proxy);
    let p2 = p.clone();
    let flipper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        p2.set(ProxyMode::Down);
        std::thread::sleep(Duration::from_secs(2));
        p2.set(ProxyMode::Pass);
    });
    let r = a
        .round(&read_only(&store))
        .expect("the round completes once the store is back");
    flipper.join().expect("flipper");
    assert!(r.manifest.is_some());
    assert!(a.progress().retries > 0, "the outage was met and retried");
    verify(&url, config, &verify_opts()).expect("intact: nothing duplicated, nothing missing");
}

#[test]
fn a_stalled_object_store_times_out_with_an_error_naming_the_object_and_url() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 200, true);
    let url = format!("s3://{BUCKET}/s");
    let a = Archiver::new(
        &url,
        ArchiverOptions {
            target: TargetOptions {
                retry: RetryPolicy {
                    attempts: 2,
                    first_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(50),
                    request_timeout: Duration::from_millis(700),
                },
                config: Moto::config(&proxy.endpoint()),
                ..TargetOptions::default()
            },
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver");
    // Slow enough that no request finishes within its time limit.
    proxy.set(ProxyMode::Slow(Duration::from_secs(2)));
    let started = Instant::now();
    let e = a.round(&read_only(&store));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    match e {
        Err(ArchiveError::ObjectStore {
            url: u, attempts, ..
        }) => {
            assert_eq!(u, url);
            assert_eq!(attempts, 2);
        }
        other => panic!("{other:?}"),
    }
    let p = a.progress();
    assert_eq!((p.failures, p.consecutive_failures), (1, 1));
    assert!(p.last_error.is_some());
    assert!(p.lag_records > 0);
    // Slow but within the limit: the round completes.
    proxy.set(ProxyMode::Slow(Duration::from_millis(2)));
    let a = archiver(&url, Moto::config(&proxy.endpoint()));
    a.round(&read_only(&store))
        .expect("a slow store is waited for");
    assert_eq!(a.progress().lag_records, 0);
}

#[test]
fn moto_killed_fails_the_round_after_bounded_retries() {
    let mut moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    grow(&store, 100, true);
    let url = format!("s3://{BUCKET}/k");
    let config = Moto::config(&moto.endpoint());
    moto.kill();
    let started = Instant::now();
    let e = archiver(&url, config).round(&read_only(&store));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        matches!(e, Err(ArchiveError::ObjectStore { attempts: 3, .. })),
        "{e:?}"
    );
}

// ---- Retention of local copies ----

fn cache_options(cache: &Path, config: Vec<(String, String)>) -> StoreOptions {
    let cache = sealog_archive::ArchiveCache::new(
        cache,
        sealog_archive::DEFAULT_CACHE_BYTES,
        TargetOptions {
            config,
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

fn all_records(store: &Store) -> Vec<u64> {
    let page = store
        .query(&sealog::query::Query {
            limit: 10_000,
            ..sealog::query::Query::default()
        })
        .expect("query");
    let mut seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs
}

/// A store upgraded from before column block checksums: its sealed
/// segments' sidecars are in the older layout. Archiving copies them as
/// they are, the archive verifies, and every segment can be pruned (the
/// local and archived sidecars are the same bytes).
#[test]
fn sidecars_sealed_before_block_checksums_are_archived_verified_and_pruned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let large = StoreOptions {
        segment_size: 256 << 10,
        ..options(true)
    };
    let store = Store::open(&dir, large.clone()).expect("open");
    for batch in 0..60u64 {
        let events: Vec<Event> = (0..200)
            .map(|i| {
                Event::new(
                    Actor::new("user", format!("u{}", i % 7)),
                    "doc.read",
                    Resource::new("doc", (batch * 200 + i).to_string()),
                    Outcome::Success,
                )
            })
            .collect();
        store.append_batch(events).expect("append");
    }
    store.roll().expect("roll");
    store.wait_sealed().expect("sealed");
    store.close().expect("close");
    let segments = sealog::image::sealed_segments(&read_only(&dir));
    assert!(segments.len() >= 3, "{} sealed segments", segments.len());
    for s in &segments {
        let bytes = std::fs::read(&s.path).expect("segment");
        let image = sealog::image::check_sealed(&s.name, &bytes).expect("image");
        let current = sealog::image::sidecar_of(&s.name, &bytes, &image).expect("sidecar");
        let older = sealog::image::sidecar_of_as(
            &s.name,
            &bytes,
            &image,
            sealog::image::SidecarLayout::ORIGINAL,
        )
        .expect("older");
        assert_ne!(current, older, "{} has columns past one block", s.name);
        std::fs::write(s.path.with_extension("idx"), older).expect("write");
    }
    sealog::verify_dir(&dir).expect("the upgraded store verifies");

    let url = file_url(&tmp.path().join("archive"));
    let a = archiver(&url, Vec::new());
    a.round(&read_only(&dir)).expect("round");
    verify(&url, Vec::new(), &verify_opts()).expect("the archive verifies");
    let store = Store::open(&dir, large).expect("open");
    let report = a.prune_local(&store, Duration::ZERO).expect("prune");
    assert!(report.kept.is_empty(), "{report:?}");
    assert_eq!(
        report.pruned.len(),
        segments.len() - 1,
        "all but the newest"
    );
    store.close().expect("close");
}

#[test]
fn a_segment_whose_archived_copy_differs_is_kept_and_the_others_are_pruned_and_still_read() {
    let f = fixture();
    let a = archiver(&f.url, Vec::new());
    let before = {
        let store = read_only(&f.store);
        (sealog::image::sealed_segments(&store), store.len())
    };
    let (segments, len) = before;
    assert!(segments.len() >= 5, "{}", segments.len());
    // The second segment's archived copy is altered.
    let altered = &segments[1];
    let name = layout::segment(altered.header.first_seq);
    let mut bytes = std::fs::read(object(&f, &name)).expect("read");
    bytes[200] ^= 1;
    std::fs::write(object(&f, &name), bytes).expect("write");

    let store = Store::open(&f.store, options(true)).expect("open");
    let report = a.prune_local(&store, Duration::ZERO).expect("prune");
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert_eq!(report.kept[0].0, altered.name);
    assert!(report.kept[0].1.contains("SHA-256"), "{:?}", report.kept);
    assert!(
        altered.path.exists(),
        "the segment whose copy differs stays"
    );
    assert_eq!(report.pruned.len(), segments.len() - 2, "{report:?}");
    assert!(!segments[0].path.exists());
    assert!(
        segments.last().expect("newest").path.exists(),
        "the newest sealed segment stays"
    );
    // A retention longer than the records' age removes nothing more.
    let again = a
        .prune_local(&store, Duration::from_secs(3600))
        .expect("prune");
    assert!(
        again.pruned.is_empty() && again.kept.is_empty(),
        "{again:?}"
    );
    store.close().expect("close");

    let verified = sealog::verify_dir_with(
        &f.store,
        &sealog::VerifyOptions {
            public_key: Some(key().verifier()),
            checkpoints: Vec::new(),
            log_only: false,
        },
    )
    .expect("verify across pruned segments");
    assert_eq!(verified.archived_not_local, report.pruned);
    assert!(
        verified.records > len,
        "the archive.pruned events were appended"
    );

    // Reads reach the archive through the cache, checked.
    let tmp = tempfile::tempdir().expect("tempdir");
    let reader = Store::open_read_only_with(&f.store, cache_options(tmp.path(), Vec::new()))
        .expect("read-only with an archive");
    let seqs = all_records(&reader);
    assert_eq!(
        seqs,
        (0..reader.len()).collect::<Vec<_>>(),
        "one log, whatever its age"
    );
    assert_eq!(reader.get(0).expect("get").expect("present").seq, 0);
    let size = reader.tree_size();
    let proof = reader
        .inclusion_proof(3, size)
        .expect("a proof for a pruned seq");
    assert!(!proof.is_empty());
    let pruned_events = seqs.len() as u64 - len;
    assert_eq!(pruned_events, report.pruned.len() as u64);
    drop(reader);

    // Without the archive, a read that needs a pruned segment fails naming it.
    let bare = read_only(&f.store);
    match bare.get(0) {
        Err(sealog::Error::Archived { segment, url, .. }) => {
            assert_eq!(&*segment, segments[0].name);
            assert_eq!(&*url, f.url);
        }
        other => panic!("expected an archived-segment error, got {other:?}"),
    }
}

#[test]
fn a_full_disk_while_pruning_loses_nothing_and_the_next_pass_finishes() {
    use sealog::fault::{Fault, FaultFs, Op};
    let f = fixture();
    let a = archiver(&f.url, Vec::new());
    let len = read_only(&f.store).len();
    let fs = Arc::new(FaultFs::new());
    let faulty = || StoreOptions {
        fs: fs.clone(),
        ..options(true)
    };
    // The record of the pruned segments cannot be written: nothing is removed.
    fs.fail_always(Op::Write, Some("pruned.log"), 0, Fault::NoSpace);
    let store = Store::open(&f.store, faulty()).expect("open");
    let e = a
        .prune_local(&store, Duration::ZERO)
        .expect_err("the disk is full");
    assert!(e.to_string().contains("pruned.log"), "{e}");
    assert!(store.pruned_segments().is_empty());
    fs.clear();
    // The record is written, then the audit event cannot be: the store
    // refuses writes, nothing is removed.
    fs.fail_always(Op::Write, Some(".seg"), 0, Fault::NoSpace);
    let e = a
        .prune_local(&store, Duration::ZERO)
        .expect_err("the disk is full");
    eprintln!("{e}");
    drop(store);
    fs.clear();
    let segments = sealog::image::sealed_segments(&read_only(&f.store));
    assert!(segments.iter().all(|s| s.path.exists()), "nothing removed");
    sealog::verify_dir(&f.store).expect("intact");
    // Space again: the next pass removes them.
    let store = Store::open(&f.store, options(true)).expect("reopen");
    let report = a.prune_local(&store, Duration::ZERO).expect("prune");
    assert_eq!(report.pruned.len(), segments.len() - 1, "{report:?}");
    store.close().expect("close");
    let report = sealog::verify_dir(&f.store).expect("verify");
    assert_eq!(report.archived_not_local.len(), segments.len() - 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let reader =
        Store::open_read_only_with(&f.store, cache_options(tmp.path(), Vec::new())).expect("open");
    let seqs = all_records(&reader);
    assert!(seqs.len() as u64 > len);
    assert_eq!(seqs, (0..reader.len()).collect::<Vec<_>>());
}

#[test]
fn an_unreachable_archive_keeps_local_segments_and_fails_reads_naming_segment_and_url() {
    let moto = Moto::start();
    moto.create_locked_bucket(BUCKET, 0);
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_dir = tmp.path().join("store");
    grow(&store_dir, 400, true);
    let url = format!("s3://{BUCKET}/retain");
    let config = Moto::config(&proxy.endpoint());
    let a = archiver(&url, config.clone());
    a.round(&read_only(&store_dir)).expect("round");
    let store = Store::open(&store_dir, options(true)).expect("open");
    proxy.set(ProxyMode::Down);
    assert!(
        a.prune_local(&store, Duration::ZERO).is_err(),
        "no read-back, no removal"
    );
    assert!(store.pruned_segments().is_empty());
    proxy.set(ProxyMode::Pass);
    let report = a.prune_local(&store, Duration::ZERO).expect("prune");
    assert!(!report.pruned.is_empty());
    store.close().expect("close");

    let cache = tmp.path().join("cache");
    let reader = Store::open_read_only_with(&store_dir, cache_options(&cache, config.clone()))
        .expect("open");
    proxy.set(ProxyMode::Down);
    match reader.get(1) {
        Err(sealog::Error::Archived {
            segment, url: u, ..
        }) => {
            assert_eq!(&*segment, report.pruned[0]);
            assert_eq!(&*u, url);
        }
        other => panic!("expected an archived-segment error, got {other:?}"),
    }
    let e = reader
        .query(&sealog::query::Query::default())
        .expect_err("never a shorter answer");
    assert!(e.to_string().contains(&url), "{e}");
    proxy.set(ProxyMode::Pass);
    assert_eq!(reader.get(1).expect("back").expect("present").seq, 1);
    // Once cached, the archive is not needed for that segment.
    proxy.set(ProxyMode::Down);
    assert_eq!(reader.get(2).expect("cached").expect("present").seq, 2);
}

/// A store whose segments hold records of three event dates, out of
/// order within each segment, archived in one round with Parquet copies.
fn parquet_fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    {
        let s = Store::open(&store, options(true)).expect("open");
        let day = 86_400_000_000_000i64;
        let base = 1_767_225_600_000_000_000i64; // 2026-01-01T00:00:00Z
        let events: Vec<Event> = (0..240i64)
            .map(|i| {
                Event::new(
                    Actor::new("user", format!("u{}", i % 7)),
                    if i % 3 == 0 { "doc.export" } else { "doc.read" },
                    Resource::new("doc", i.to_string()),
                    if i % 5 == 0 {
                        Outcome::Denied
                    } else {
                        Outcome::Success
                    },
                )
                .with_time(sealog::format::Timestamp::from_nanos(
                    base + (i % 3) * day + i * 1_000_000_000,
                ))
                .with_tenant(format!("t{}", i % 2))
            })
            .collect();
        for chunk in events.chunks(20) {
            s.append_batch(chunk.to_vec()).expect("append");
        }
        s.roll().expect("roll");
        s.wait_sealed().expect("sealed");
        s.close().expect("close");
    }
    let url = file_url(&archive);
    let a = Archiver::new(
        &url,
        ArchiverOptions {
            parquet: true,
            ..ArchiverOptions::default()
        },
    )
    .expect("archiver");
    let r = a.round(&read_only(&store)).expect("round");
    assert_eq!(r.round, 1);
    assert!(r.segments > 2, "{r:?}");
    Fixture {
        _tmp: tmp,
        store,
        archive,
        url,
    }
}

/// The Parquet objects of the archive, sorted.
fn parquet_objects(f: &Fixture) -> Vec<String> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(f.archive.join("parquet")).expect("parquet/") {
        let day = day.expect("entry");
        for file in std::fs::read_dir(day.path()).expect("partition") {
            let file = file.expect("entry");
            out.push(format!(
                "parquet/{}/{}",
                day.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

/// Rewrites manifest 1 with `edit` applied (the newest manifest: nothing
/// names its digest).
fn edit_manifest(f: &Fixture, edit: impl FnOnce(&mut sealog_archive::manifest::Manifest)) {
    let path = object(f, &layout::manifest(1));
    let mut m = sealog_archive::manifest::Manifest::parse(&std::fs::read(&path).expect("read"))
        .expect("manifest");
    edit(&mut m);
    std::fs::write(&path, m.to_bytes()).expect("write");
}

#[test]
fn parquet_copies_hold_every_record_once_by_event_date_and_verify() {
    let f = parquet_fixture();
    let report = verify(&f.url, Vec::new(), &verify_opts()).expect("intact");
    assert_eq!(report.parquet_segments, report.segments);
    let objects = parquet_objects(&f);
    // Three dates; every segment of 8 KiB spans them all.
    for date in ["2026-01-01", "2026-01-02", "2026-01-03"] {
        assert!(
            objects
                .iter()
                .any(|o| o.starts_with(&format!("parquet/date={date}/"))),
            "{objects:?}"
        );
    }
    assert_eq!(objects.len() as u64, 3 * report.segments, "{objects:?}");
    // Each file holds exactly its segment's records of its date.
    let store = read_only(&f.store);
    let mut seen = 0u64;
    for name in &objects {
        let Some(layout::ObjectKind::Parquet(first, date)) = layout::parse(name) else {
            panic!("{name} does not parse");
        };
        let info = sealog::image::sealed_segments(&store)
            .into_iter()
            .find(|s| s.header.first_seq == first)
            .expect("its segment");
        let entries: Vec<sealog_export::Entry> = (first..info.footer.end_seq())
            .map(|seq| {
                sealog_export::read_entry(&store, seq)
                    .expect("read")
                    .expect("record")
            })
            .filter(|e| {
                sealog_export::parquet::utc_date(e.record.event_time().as_nanos())
                    == layout::date_text(date)
            })
            .collect();
        let bytes = Bytes::from(std::fs::read(object(&f, name)).expect("read"));
        sealog_export::parquet::check(bytes, &entries).expect("rows equal to records");
        seen += entries.len() as u64;
    }
    assert_eq!(seen, report.records);
    // Restore reads past them: the restored store is the log, no Parquet in it.
    let restored = f._tmp.path().join("restored");
    let rr = sealog_archive::blocking::restore(
        &f.url,
        &restored,
        TargetOptions::default(),
        &verify_opts(),
    )
    .expect("restore an archive with Parquet copies");
    assert_eq!(rr.records, report.records);
    assert!(!restored.join("parquet").exists());
}

#[test]
fn a_deleted_parquet_copy_is_named() {
    let f = parquet_fixture();
    let victim = parquet_objects(&f)[1].clone();
    std::fs::remove_file(object(&f, &victim)).expect("delete");
    assert_eq!(
        tampered_object(verify(&f.url, Vec::new(), &verify_opts())),
        victim
    );
}

#[test]
fn a_parquet_copy_rewritten_with_its_manifest_entry_is_named_by_its_row() {
    // A bucket administrator replaces a Parquet file with one where an
    // actor was changed, and updates the newest manifest's digest to match:
    // the rows no longer equal the segment's records.
    let f = parquet_fixture();
    let victim = parquet_objects(&f)[0].clone();
    let Some(layout::ObjectKind::Parquet(first, date)) = layout::parse(&victim) else {
        panic!("{victim}");
    };
    let store = read_only(&f.store);
    let info = sealog::image::sealed_segments(&store)
        .into_iter()
        .find(|s| s.header.first_seq == first)
        .expect("segment");
    let mut entries: Vec<sealog_export::Entry> = (first..info.footer.end_seq())
        .map(|seq| {
            sealog_export::read_entry(&store, seq)
                .expect("read")
                .expect("record")
        })
        .filter(|e| {
            sealog_export::parquet::utc_date(e.record.event_time().as_nanos())
                == layout::date_text(date)
        })
        .collect();
    entries[1].record.event.actor.id = "mallory".into();
    let forged = sealog_export::parquet::encode(
        &entries,
        &sealog_export::parquet::ParquetOptions::default(),
    )
    .expect("encode");
    std::fs::write(object(&f, &victim), &forged).expect("write");
    edit_manifest(&f, |m| {
        let o = m
            .objects
            .iter_mut()
            .find(|o| o.name == victim)
            .expect("listed");
        o.size = forged.len() as u64;
        o.sha256 = sealog_archive::manifest::sha256_hex(&forged);
    });
    match verify(&f.url, Vec::new(), &verify_opts()) {
        Err(ArchiveError::Tampered { object, problem }) => {
            assert_eq!(object, victim);
            assert!(
                problem.contains("actor_id")
                    && problem.contains(&format!("seq {}", entries[1].record.seq)),
                "{problem}"
            );
        }
        other => panic!("expected the forged row to be found, got {other:?}"),
    }
}

#[test]
fn a_parquet_date_dropped_from_the_manifest_is_named() {
    let f = parquet_fixture();
    let victim = parquet_objects(&f)[0].clone();
    std::fs::remove_file(object(&f, &victim)).expect("delete");
    edit_manifest(&f, |m| m.objects.retain(|o| o.name != victim));
    match verify(&f.url, Vec::new(), &verify_opts()) {
        Err(ArchiveError::Tampered { object, problem }) => {
            assert_eq!(object, layout::manifest(1));
            assert!(problem.contains(&victim), "{problem}");
        }
        other => panic!("expected the missing date to be found, got {other:?}"),
    }
}
