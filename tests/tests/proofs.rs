//! The verifiable log: checkpoints commit to the whole log, proofs verify
//! with standard RFC 9162 algorithms, receipts verify with only the public
//! key, and an attacker who rewrites the whole directory (recomputing every
//! checksum, chain value, segment root and tree node) is caught by the
//! signed checkpoints.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::fs;
use std::path::{Path, PathBuf};

use sealog::format::frame::{self, FrameRead};
use sealog::format::merkle::{self, Hash};
use sealog::format::note::{SigningKey, VerifierKey};
use sealog::format::receipt::Receipt;
use sealog::format::record;
use sealog::format::segment::{HEADER_LEN, Manifest, SegmentFooter, SegmentHeader};
use sealog::format::{Record, Timestamp, chain};
use sealog::{CheckpointOptions, CorruptionKind, Error, Store, StoreOptions, VerifyOptions};
use sealog_tests::{event, events, small_options};

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example.com/sealog", &[7u8; 32]).unwrap()
}

fn options(segment_size: u64) -> StoreOptions {
    StoreOptions {
        checkpoints: Some(CheckpointOptions {
            every: None,
            ..CheckpointOptions::new(key())
        }),
        ..small_options(segment_size)
    }
}

fn leaves_of(store: &Store, size: u64) -> Vec<Hash> {
    (0..size)
        .map(|s| merkle::leaf_hash(&store.get_raw(s).unwrap().unwrap()))
        .collect()
}

#[test]
fn a_checkpoint_commits_to_the_root_and_chain_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(64 << 10)).unwrap();
    for i in 0..30 {
        store.append_batch(events(i * 5, i * 5 + 5)).unwrap();
        if i % 10 == 9 {
            // Each seal signs a checkpoint of its own.
            store.roll().unwrap();
            store.wait_sealed().unwrap();
        }
    }
    let signed = store.checkpoint().unwrap();
    assert_eq!(signed.size, 150);
    let verifier = key().verifier();
    let body = sealog::format::checkpoint::open(&signed.text, &verifier).unwrap();
    assert_eq!(body.origin, "audit.example.com/sealog");
    assert_eq!(body.size, 150);
    assert_eq!(body.root, merkle::root(&leaves_of(&store, 150)));
    assert_eq!(
        sealog::checkpoint::chain_head_of(&body),
        Some(store.head().chain_head)
    );
    assert!(signed.text.contains("\nsealog-chain "), "{}", signed.text);
    // Sealed segments produced checkpoints of their own; the history keeps all.
    let history = store.checkpoints().unwrap();
    assert_eq!(
        history.iter().map(|c| c.size).collect::<Vec<_>>(),
        vec![50, 100, 150]
    );
    assert!(history.windows(2).all(|w| w[0].size <= w[1].size));
    drop(store);
    let reopened = Store::open(dir.path(), options(8 << 10)).unwrap();
    assert_eq!(reopened.checkpoints().unwrap(), history);
}

#[test]
fn buffered_appends_are_checkpointed_as_segments_seal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(8 << 10)).unwrap();
    for i in 0..40 {
        store
            .append_batch_with(events(i * 10, i * 10 + 10), sealog::Durability::Buffered)
            .unwrap();
    }
    store.wait_sealed().unwrap();
    let sealed = store.stats().sealed_segments;
    assert!(sealed >= 3, "{sealed} sealed segments");
    // A roll syncs the segment it leaves, so seals sign checkpoints of the
    // log up to there even though no append asked for a sync (a seal that
    // finds the log already covered signs nothing new).
    let history = store.checkpoints().unwrap();
    assert!(history.len() >= 2, "{} checkpoints", history.len());
    let active_first_seq: u64 = sealog_tests::segment_files(dir.path())
        .last()
        .and_then(|p| p.file_stem()?.to_str()?.parse().ok())
        .unwrap();
    let newest = history.last().unwrap().size;
    assert!(
        newest >= active_first_seq,
        "the newest checkpoint covers {newest} records; the sealed segments hold {active_first_seq}"
    );
    let verifier = key().verifier();
    for c in &history {
        let body = sealog::format::checkpoint::open(&c.text, &verifier).unwrap();
        assert_eq!(body.root, merkle::root(&leaves_of(&store, body.size)));
    }
}

#[test]
fn proofs_verify_with_the_rfc_algorithms_across_segments_and_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(4 << 10)).unwrap();
    for i in 0..60 {
        store.append_batch(events(i * 5, i * 5 + 5)).unwrap();
        if i == 40 {
            store.wait_sealed().unwrap();
        }
    }
    let n = store.tree_size();
    assert_eq!(n, 300);
    let leaves = leaves_of(&store, n);
    for size in [1, 2, 7, 150, 256, 257, 299, 300] {
        let root = store.root(size).unwrap();
        assert_eq!(
            root,
            merkle::root(&leaves[..size as usize]),
            "root at {size}"
        );
        for seq in (0..size).step_by(13).chain([size - 1]) {
            let proof = store.inclusion_proof(seq, size).unwrap();
            merkle::verify_inclusion(&leaves[seq as usize], seq, size, &proof, &root).unwrap();
        }
        for old in [1, size / 2, size] {
            let proof = store.consistency_proof(old, size).unwrap();
            merkle::verify_consistency(old, size, &store.root(old).unwrap(), &root, &proof)
                .unwrap();
        }
    }
    let err = store.inclusion_proof(0, n + 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidQuery {
                field: "tree_size",
                ..
            }
        ),
        "{err}"
    );
    assert!(store.inclusion_proof(300, 300).is_err());
}

/// What a reader asked of the tree at one size while appends ran.
struct Seen {
    size: u64,
    root: Hash,
    half_root: Hash,
    inclusion: Vec<(u64, Vec<Hash>)>,
    consistency: Vec<(u64, Vec<Hash>)>,
}

fn look(store: &Store, size: u64) -> Seen {
    let half = size.div_ceil(2);
    Seen {
        size,
        root: store.root(size).unwrap(),
        half_root: store.root(half).unwrap(),
        inclusion: [0, half - 1, size - 1]
            .into_iter()
            .map(|seq| (seq, store.inclusion_proof(seq, size).unwrap()))
            .collect(),
        consistency: [1, half, size]
            .into_iter()
            .map(|old| (old, store.consistency_proof(old, size).unwrap()))
            .collect(),
    }
}

#[test]
fn proofs_and_roots_computed_while_appends_run_equal_those_computed_after() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    // Segments of about 5,000 records, so that the tail is brought up
    // to date in several chunks, and seals (each signing a checkpoint, which
    // reads the tree too) happen while the reader below runs.
    let store = Arc::new(Store::open(dir.path(), options(512 << 10)).unwrap());
    let observed = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, observed) = (store.clone(), observed.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            while next < 30_000 || observed.load(Ordering::SeqCst) < 20 {
                store.append_batch(events(next, next + 250)).unwrap();
                next += 250;
            }
            next
        })
    };
    let mut seen = Vec::new();
    while !writer.is_finished() {
        let size = store.tree_size();
        if size == 0 || seen.last().is_some_and(|s: &Seen| s.size == size) {
            std::thread::yield_now();
            continue;
        }
        seen.push(look(&store, size));
        observed.fetch_add(1, Ordering::SeqCst);
    }
    let appended = writer.join().unwrap();
    store.wait_sealed().unwrap();
    assert_eq!(store.tree_size(), appended);
    assert!(seen.len() >= 20, "{} sizes looked at", seen.len());
    let sealed = store.stats().sealed_segments;
    assert!(sealed >= 3, "{sealed} segments sealed");
    let leaves = leaves_of(&store, appended);
    for s in &seen {
        let size = s.size;
        let after = look(&store, size);
        assert_eq!(
            s.root,
            merkle::root(&leaves[..size as usize]),
            "root at {size}"
        );
        assert_eq!(s.root, after.root, "root at {size}");
        assert_eq!(s.half_root, after.half_root, "root at half of {size}");
        assert_eq!(s.inclusion, after.inclusion, "inclusion proofs in {size}");
        assert_eq!(
            s.consistency, after.consistency,
            "consistency proofs to {size}"
        );
        for (seq, proof) in &s.inclusion {
            merkle::verify_inclusion(&leaves[*seq as usize], *seq, size, proof, &s.root).unwrap();
        }
    }
}

#[test]
fn a_receipt_verifies_with_only_the_public_key_after_the_store_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(8 << 10)).unwrap();
    store.append_batch(events(0, 40)).unwrap();
    let expected = store.get(17).unwrap().unwrap();
    let text = store.receipt(17).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    drop(store);
    drop(dir); // the store is gone
    let verifier: VerifierKey = VerifierKey::parse(&key().verifier().to_text()).unwrap();
    let receipt = Receipt::parse(&text).unwrap();
    let (checkpoint, bytes) = receipt.verify_extra_as_entry(&verifier).unwrap();
    assert_eq!(checkpoint.size, 40);
    assert_eq!(record::decode_record(&bytes).unwrap(), expected);
    // A receipt whose record was altered does not verify.
    let mut forged = receipt.clone();
    let mut altered = expected.clone();
    altered.event.actor.id = "mallory".into();
    forged.extra = Some(record::encode_record(&altered).unwrap());
    assert!(forged.verify_extra_as_entry(&verifier).is_err());
    // Nor under another key.
    let other = SigningKey::from_seed("audit.example.com/sealog", &[8u8; 32])
        .unwrap()
        .verifier();
    assert!(receipt.verify_extra_as_entry(&other).is_err());
}

/// What an attacker with write access to the whole directory (but not the
/// signing key) can do: rewrite the records and recompute every checksum,
/// chain value, segment header and footer, leaf and level hash. The store
/// id, the segment sizes and every record's seq and recorded time are kept;
/// `alter` edits the list of records.
fn forge(dir: &Path, alter: impl FnOnce(&mut Vec<Record>)) {
    let manifest = Manifest::decode(&fs::read(dir.join("STORE")).unwrap()).unwrap();
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    let mut sizes = Vec::new();
    for path in &files {
        let bytes = fs::read(path).unwrap();
        let mut pos = HEADER_LEN;
        let mut n = 0;
        while let Ok(FrameRead::Frame(f)) = frame::read_frame(&bytes[pos..]) {
            records.push(record::decode_record(f.body).unwrap());
            pos += f.len;
            n += 1;
        }
        sizes.push(n);
    }
    alter(&mut records);
    for path in &files {
        fs::remove_file(path).unwrap();
    }
    // Renumber (a dropped record or segment shifts every later seq).
    for (seq, r) in records.iter_mut().enumerate() {
        r.seq = seq as u64;
    }
    let mut chain = manifest.genesis();
    let mut leaves = Vec::new();
    let mut at = 0usize;
    let last = sizes.len() - 1;
    for (no, &size) in sizes.iter().enumerate() {
        let take = if no == last {
            records.len().saturating_sub(at)
        } else {
            size.min(records.len() - at)
        };
        if take == 0 && no != 0 {
            break;
        }
        let first_seq = at as u64;
        let header = SegmentHeader {
            store_id: manifest.store_id,
            segment_no: no as u64,
            first_seq,
            chain_in: chain,
            created_at: Timestamp::from_nanos(1),
        };
        let mut file = header.encode().to_vec();
        let mut seg_leaves = Vec::new();
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for r in &records[at..at + take] {
            let body = record::encode_record(r).unwrap();
            frame::encode_frame(&body, frame::FRAME_COMMIT, &mut file).unwrap();
            let leaf = merkle::leaf_hash(&body);
            chain = chain::link(&chain, &leaf);
            seg_leaves.push(leaf);
            min_t = min_t.min(r.event_time().as_nanos());
            max_t = max_t.max(r.event_time().as_nanos());
        }
        let path = dir.join("segments").join(format!("{first_seq:020}.seg"));
        if no == last {
            file.resize(file.len() + 4096, 0); // the active segment, preallocated
        } else {
            let footer = SegmentFooter {
                first_seq,
                record_count: take as u64,
                segment_no: no as u64,
                frames_end: file.len() as u64,
                min_event_time: Timestamp::from_nanos(min_t),
                max_event_time: Timestamp::from_nanos(max_t),
                min_recorded_at: records[at].recorded_at,
                max_recorded_at: records[at + take - 1].recorded_at,
                merkle_root: merkle::root(&seg_leaves),
                chain_head: chain,
                store_id: manifest.store_id,
                sealed_at: Timestamp::from_nanos(2),
            };
            file.extend_from_slice(&frame::end_marker());
            file.extend_from_slice(&footer.encode());
            leaves.extend_from_slice(&seg_leaves);
        }
        fs::write(path, file).unwrap();
        at += take;
    }
    // The tree files over the sealed records.
    fs::write(dir.join("tree/leaves"), leaves.concat()).unwrap();
    let mut below = leaves;
    for k in 1..8 {
        let level: Vec<Hash> = below.chunks_exact(256).map(merkle::root).collect();
        fs::write(dir.join(format!("tree/level-{k}")), level.concat()).unwrap();
        below = level;
    }
    // Indexes are derived data: remove them so they cannot mislead.
    for entry in fs::read_dir(dir.join("segments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "idx") {
            fs::remove_file(path).unwrap();
        }
    }
}

/// A store with a checkpoint after every single append, closed.
fn checkpointed_store(dir: &Path, n: u64) {
    let store = Store::open(dir, options(4 << 10)).unwrap();
    for i in 0..n {
        store.append(event(i)).unwrap();
        store.checkpoint().unwrap();
    }
    store.wait_sealed().unwrap();
    store.close().unwrap();
    let report = sealog::verify_dir_with(
        dir,
        &VerifyOptions {
            public_key: Some(key().verifier()),
            checkpoints: vec![],
            log_only: false,
        },
    )
    .unwrap();
    assert!(report.checkpoints >= n, "{report:?}");
    assert!(report.sealed_segments >= 1 || n < 40, "{report:?}");
}

fn with_key() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: vec![],
        log_only: false,
    }
}

#[test]
fn a_rewritten_old_record_is_caught_by_the_earlier_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed_store(dir.path(), 80);
    // The forgery passes every check that does not involve a signature...
    forge(dir.path(), |records| {
        records[23].event.actor.id = "mallory".into()
    });
    let err = sealog::verify_dir_with(dir.path(), &with_key()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    // ...and the first checkpoint it breaks names the altered record.
    match c.kind {
        CorruptionKind::CheckpointMismatch {
            first_divergent, ..
        } => assert_eq!(first_divergent, (23, 24), "{c}"),
        _ => panic!("{c}"),
    }
    assert!(c.to_string().contains("seq 23"), "{c}");
}

#[test]
fn truncating_the_newest_records_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed_store(dir.path(), 80);
    forge(dir.path(), |records| records.truncate(70));
    let err = sealog::verify_dir_with(dir.path(), &with_key()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(
            c.kind,
            CorruptionKind::Truncated {
                have: 70,
                signed: 71
            }
        ),
        "{c}"
    );
}

#[test]
fn dropping_a_whole_segment_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed_store(dir.path(), 80);
    let second: Vec<PathBuf> = {
        let mut f: Vec<PathBuf> = fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        f.sort();
        f
    };
    let first_of_second = usize::try_from(sealog_tests::first_seq_of(&second[1])).unwrap();
    let first_of_third = usize::try_from(sealog_tests::first_seq_of(&second[2])).unwrap();
    forge(dir.path(), |records| {
        records.drain(first_of_second..first_of_third);
    });
    let err = sealog::verify_dir_with(dir.path(), &with_key()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    match c.kind {
        CorruptionKind::CheckpointMismatch {
            first_divergent, ..
        } => {
            assert_eq!(first_divergent.0, first_of_second as u64, "{c}");
        }
        _ => panic!("{c}"),
    }
}

#[test]
fn checkpoints_signed_by_another_key_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed_store(dir.path(), 10);
    // The attacker replaces the history with checkpoints signed by their key.
    let theirs = SigningKey::from_seed("audit.example.com/sealog", &[9u8; 32]).unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            checkpoints: Some(CheckpointOptions::new(theirs)),
            ..small_options(4 << 10)
        },
    )
    .unwrap();
    drop(store);
    fs::remove_file(dir.path().join("checkpoints.log")).unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            checkpoints: Some(CheckpointOptions::new(
                SigningKey::from_seed("audit.example.com/sealog", &[9u8; 32]).unwrap(),
            )),
            ..small_options(4 << 10)
        },
    )
    .unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let err = sealog::verify_dir_with(dir.path(), &with_key()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert!(matches!(c.kind, CorruptionKind::Checkpoint(_)), "{c}");
    assert_eq!(c.location.file, "checkpoints.log#0");
}

#[test]
fn a_checkpoint_kept_elsewhere_catches_a_rewritten_history() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed_store(dir.path(), 40);
    let kept = Store::open_read_only(dir.path())
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    // The attacker rewrites a record and deletes the whole history.
    forge(dir.path(), |records| {
        records[5].event.action = "customer.read".into()
    });
    fs::remove_file(dir.path().join("checkpoints.log")).unwrap();
    sealog::verify_dir(dir.path()).expect("without a checkpoint the forgery is self-consistent");
    let err = sealog::verify_dir_with(
        dir.path(),
        &VerifyOptions {
            public_key: Some(key().verifier()),
            checkpoints: vec![kept.text],
            log_only: false,
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err.corruption().unwrap().kind,
            CorruptionKind::CheckpointMismatch { .. }
        ),
        "{err}"
    );
}

/// Found by the `segment_recovery` fuzz target's seed: cutting the end of
/// the active segment looks like a torn tail to recovery, and a live
/// `Store::verify` skipped every checkpoint larger than the log as "signed
/// after the snapshot", so it passed a store that had lost signed records
/// (only `verify_dir` said so).
#[test]
fn a_live_verify_catches_signed_records_cut_from_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(64 << 10)).unwrap();
    store.append_batch(events(0, 10)).unwrap();
    assert_eq!(store.checkpoint().unwrap().size, 10);
    store.close().unwrap();
    // Cut the last record's frame in half, as a torn write would leave it.
    let segment = sealog_tests::segment_files(dir.path()).pop().unwrap();
    let bytes = fs::read(&segment).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut cut = bytes.clone();
    cut[end - 40..].fill(0);
    fs::write(&segment, &cut).unwrap();

    // Recovery refuses to take the cut for a torn write (see
    // `recovery_refuses_to_cut_records_a_checkpoint_covers`); so does a
    // read-only open, and the live verify of one reading around the damage
    // reports it.
    let err = Store::open(dir.path(), options(64 << 10)).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(c.kind, CorruptionKind::Truncated { signed: 10, .. }),
        "{c}"
    );
    let err = Store::open_read_only(dir.path()).unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(c.kind, CorruptionKind::Truncated { signed: 10, .. }),
        "{c}"
    );
    let store = read_around(dir.path());
    let err = store.verify().unwrap_err();
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(c.kind, CorruptionKind::Truncated { signed: 10, .. }),
        "{c}"
    );
}

/// Records a signed checkpoint covers were durable when it was signed, so a
/// log that now ends before the checkpoint lost them to damage or
/// tampering, not to a torn write: opening for writing refuses (recovery
/// would cut them and appends would overwrite the evidence), and a
/// read-only open reports it and changes nothing.
#[test]
fn recovery_refuses_to_cut_records_a_checkpoint_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(1 << 20)).unwrap();
    for i in 0..10 {
        store.append(event(i)).unwrap();
    }
    assert_eq!(store.checkpoint().unwrap().size, 10);
    drop(store);
    // Zero the last two frames of the active segment, as a disk that lost
    // synced bytes (or an attacker) would leave them.
    let segment = sealog_tests::segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let frames = sealog_tests::frames(&bytes);
    assert_eq!(frames.len(), 10);
    let (cut, _) = frames[8];
    let end = frames.last().map(|(o, l)| o + l).unwrap();
    bytes[cut..end].fill(0);
    fs::write(&segment, &bytes).unwrap();

    let err = Store::open(dir.path(), options(1 << 20)).unwrap_err();
    match &err {
        Error::Corruption(c) => {
            assert!(
                matches!(
                    c.kind,
                    CorruptionKind::Truncated {
                        have: 8,
                        signed: 10
                    }
                ),
                "{c}"
            );
            assert_eq!(c.location.offset, Some(cut as u64), "{c}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert_eq!(
        fs::read(&segment).unwrap(),
        bytes,
        "the failed open changed the segment"
    );
    assert!(!dir.path().join("lost+found").exists());
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(
        matches!(
            err.corruption().map(|c| &c.kind),
            Some(CorruptionKind::Truncated { .. })
        ),
        "{err}"
    );
    let read_only = read_around(dir.path());
    assert_eq!(read_only.len(), 8);
    let damage = read_only.damage();
    assert!(
        damage.iter().any(
            |d| matches!(d.corruption.kind, CorruptionKind::Truncated { .. })
                && d.seqs() == Some(8..10)
        ),
        "{damage:?}"
    );
}

#[test]
fn a_writer_with_a_key_signs_a_checkpoint_of_what_it_wrote_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    // No seal and no timer: only the close can sign.
    let quiet = || StoreOptions {
        checkpoints: Some(CheckpointOptions {
            on_seal: false,
            every: None,
            ..CheckpointOptions::new(key())
        }),
        ..small_options(64 << 10)
    };
    let store = Store::open(dir.path(), quiet()).unwrap();
    store.append_batch(events(0, 3)).unwrap();
    assert!(store.latest_checkpoint().unwrap().is_none());
    store.close().unwrap();
    let read = Store::open_read_only(dir.path()).unwrap();
    let latest = read.latest_checkpoint().unwrap().unwrap();
    assert_eq!(latest.size, 3);
    assert_eq!(latest.root, read.root(3).unwrap());
    // The receipt of every record now comes from the history, no key needed.
    let receipt = Receipt::parse(&read.receipt(2).unwrap()).unwrap();
    receipt.verify_extra_as_entry(&key().verifier()).unwrap();
    drop(read);

    // A writer that adds nothing signs nothing more; one dropped without
    // `close` signs what it added.
    Store::open(dir.path(), quiet()).unwrap().close().unwrap();
    let store = Store::open(dir.path(), quiet()).unwrap();
    assert_eq!(store.checkpoints().unwrap().len(), 1);
    store.append(event(3)).unwrap();
    drop(store);
    let read = Store::open_read_only(dir.path()).unwrap();
    let sizes: Vec<u64> = read.checkpoints().unwrap().iter().map(|c| c.size).collect();
    assert_eq!(sizes, [3, 4]);
    drop(read);
    sealog::verify_dir_with(dir.path(), &with_key()).unwrap();

    // Without a key, closing signs nothing.
    let plain = Store::open(dir.path(), small_options(64 << 10)).unwrap();
    plain.append(event(4)).unwrap();
    plain.close().unwrap();
    let read = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(read.checkpoints().unwrap().len(), 2);
}

/// A read-only open that reads around damage.
fn read_around(dir: &Path) -> Store {
    Store::open_read_only_with(
        dir,
        sealog::StoreOptions {
            on_damage: sealog::OnDamage::ReadAround,
            ..sealog::StoreOptions::default()
        },
    )
    .unwrap()
}
