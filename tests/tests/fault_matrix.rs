//! The fault-injection matrix: every mutating filesystem call that an
//! append, a roll and seal, a checkpoint and an index rebuild make, failed
//! in every way that call can fail, and a crash before each of them.
//!
//! Each step is first *recorded* ([`FaultFs::start_recording`]): the
//! scenario runs on a healthy disk and every write, sync, create, rename,
//! truncate and allocate is logged with its path. Then, for every recorded
//! call `i` and every fault that call can meet — `EIO`, `ENOSPC`, and for
//! writes a short write that stops half way on `ENOSPC` — a fresh store
//! runs the same scenario with call `i` failing ([`FaultFs::fail_nth`]),
//! and once more with the process "dying" just before call `i`
//! ([`FaultFs::crash_at`]). After each run:
//!
//! 1. the step that hit the fault failed with an error naming the
//!    operation and the file, a full disk recognisable as `StorageFull`
//!    (for a step in the sealer thread: the store latched, and the next
//!    append is refused with that cause);
//! 2. every later append is refused (`WritesRefused`), without hanging;
//! 3. reopened on the real filesystem: every acknowledged event is there
//!    unchanged, seqs are dense, `Store::verify` and `verify_dir_with` (with
//!    the checkpoint key) pass, the segment that was being sealed is sealed,
//!    the next append continues the chain, and queries (through the
//!    sidecars, rebuilt if a write of one failed) equal a full scan.
//!
//! Each call is also the moment of a simulated power loss
//! ([`FaultFs::power_loss`]): the process dies just before it, and the
//! store is reopened from the disk a machine could find on restart —
//! every write since its file's last sync, and every directory entry
//! change since its directory's last sync, lost (and, for a few seeds per
//! call, a random part of them kept, torn at sector granularity). Then
//! every event the store promised durable (acknowledged under
//! `Durability::Group`, or inside its durable tree size) is there, nothing
//! that was never appended is, the store keeps its id, every checkpoint it
//! acknowledged is in its history, no leaf hash has to be recomputed, and
//! the checks of 3. pass. `SEALOG_POWER_LOSS_SEED` fixes the seeds (the
//! seed of a failing run is printed); `SEALOG_POWER_LOSS_SEEDS` sets how
//! many random runs each call gets (default 2).
//!
//! The scenarios are serialised (one background step at a time, no
//! periodic checkpoints, `Preallocation::Allocate` so no spare file is
//! zero-filled concurrently), so the recorded sequence is the same on every
//! run; the test checks that too. The matrix is documented in
//! `docs/durability.md`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealog::checkpoint::CheckpointOptions;
use sealog::fault::{Call, Fault, FaultFs, Op, Unsynced};
use sealog::format::note::SigningKey;
use sealog::format::{Event, record};
use sealog::query::{ActionPattern, ActorFilter, IpFilter, Order, Query};
use sealog::{Error, Preallocation, Store, StoreOptions, VerifyOptions, Vfs};
use sealog_tests::{OnPanic, event, events, power_cut};

const SEGMENT: u64 = sealog::MIN_SEGMENT_SIZE;

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example.com/matrix", &[3u8; 32]).unwrap()
}

fn options(fs: Arc<dyn Vfs>) -> StoreOptions {
    options_with(fs, Preallocation::Allocate)
}

fn options_with(fs: Arc<dyn Vfs>, preallocation: Preallocation) -> StoreOptions {
    StoreOptions {
        fs,
        segment_size: SEGMENT,
        preallocation,
        checkpoints: Some(CheckpointOptions {
            on_seal: true,
            every: None,
            ..CheckpointOptions::new(key())
        }),
        ..StoreOptions::default()
    }
}

/// The step under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// One durable append into the active segment: write, fdatasync.
    Append,
    /// A durable append that does not fit: the committer syncs and rolls
    /// (creates, preallocates, writes and syncs the new segment's header,
    /// renames it into place, syncs the directory), writes and syncs the
    /// batch; the sealer then seals the full segment (leaves and tree
    /// levels written and synced, end marker and footer written, file cut
    /// to length and fsynced, sidecar written atomically) and signs a
    /// checkpoint (history written and synced).
    AppendRolling,
    /// The same after buffered appends: the roll first syncs the old
    /// segment, which holds written but unsynced records.
    BufferedThenRolling,
    /// `Store::roll` and the seal that follows (as above, without a batch).
    RollAndSeal,
    /// The same with zero-filled segments (the default): the roll renames
    /// the ready spare into place, and the sealer zero-fills the next spare
    /// (created, written, fsynced, renamed, directory synced) before it
    /// seals.
    RollAndSealZeroFill,
    /// `Store::checkpoint`: the history entry written and synced.
    Checkpoint,
    /// A query over a sealed segment whose sidecar is missing: the index
    /// is rebuilt from the records and written atomically.
    IndexRebuild,
}

const STEPS: [Step; 7] = [
    Step::Append,
    Step::AppendRolling,
    Step::BufferedThenRolling,
    Step::RollAndSeal,
    Step::RollAndSealZeroFill,
    Step::Checkpoint,
    Step::IndexRebuild,
];

/// How a run is disturbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disturbance {
    /// Call `i` fails.
    Fail(u64, Fault),
    /// The process dies just before call `i`.
    Crash(u64),
    /// The power is cut just before call `i` (`i` = the number of calls:
    /// after the step), keeping what `Unsynced` says of the unsynced
    /// changes.
    PowerLoss(u64, Unsynced),
}

/// A store set up for a step, on a fault-injecting filesystem.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    fs: Arc<FaultFs>,
    store: Store,
    /// Events acknowledged before the step.
    acked: Vec<Event>,
    /// How many of them were acknowledged as durable.
    durable: usize,
}

fn setup(step: Step) -> Setup {
    setup_on(step, FaultFs::new())
}

fn setup_on(step: Step, fs: FaultFs) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let fs = Arc::new(fs);
    let mut acked = Vec::new();
    if step == Step::IndexRebuild {
        // Two sealed segments; the first one's sidecar then goes missing.
        let store = Store::open(&dir, options(Arc::new(sealog::StdFs))).unwrap();
        for i in 0..12 {
            let batch = events(i * 5, i * 5 + 5);
            store.append_batch(&batch).unwrap();
            acked.extend(batch);
        }
        store.wait_sealed().unwrap();
        store.close().unwrap();
        let idx = dir.join("segments/00000000000000000000.idx");
        assert!(idx.exists(), "the first segment was sealed with a sidecar");
        std::fs::remove_file(idx).unwrap();
    }
    let preallocation = if step == Step::RollAndSealZeroFill {
        Preallocation::ZeroFill
    } else {
        Preallocation::Allocate
    };
    let store = Store::open(&dir, options_with(fs.clone(), preallocation)).unwrap();
    if step == Step::RollAndSealZeroFill {
        // The spare is zero-filled in the background after the open; wait
        // for it so that the roll always finds it.
        while !store.stats().spare_ready {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    let mut durable = acked.len();
    if step != Step::IndexRebuild {
        let durability = if step == Step::BufferedThenRolling {
            sealog::Durability::Buffered
        } else {
            sealog::Durability::Group
        };
        for i in 0..4 {
            let batch = events(i * 3, i * 3 + 3);
            store.append_batch_with(&batch, durability).unwrap();
            acked.extend(batch);
            if durability == sealog::Durability::Group {
                durable = acked.len();
            }
        }
    }
    Setup {
        _tmp: tmp,
        dir,
        fs,
        store,
        acked,
        durable,
    }
}

/// The batch a step appends, if any.
fn step_batch(step: Step) -> Vec<Event> {
    match step {
        Step::Append => events(100, 103),
        // About 3 KB: more than the 4 KiB segment has left after the
        // setup, less than an empty one holds.
        Step::AppendRolling | Step::BufferedThenRolling => {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for i in 200.. {
                let e = event(i);
                bytes += record::encode(&e, 0, sealog::Timestamp::now())
                    .unwrap()
                    .len()
                    + 12;
                if bytes > 3_000 {
                    break;
                }
                batch.push(e);
            }
            batch
        }
        _ => Vec::new(),
    }
}

/// What the step did.
struct Outcome {
    /// The step's own result (the append, `wait_sealed`, the checkpoint or
    /// the query).
    result: Result<(), Error>,
    /// The batch was acknowledged.
    batch_acked: bool,
}

fn actor_query() -> Query {
    Query {
        actor: Some(ActorFilter::parse("user:actor-1")),
        limit: sealog::query::MAX_LIMIT,
        ..Query::default()
    }
}

fn run_step(step: Step, store: &Store) -> Outcome {
    let batch = step_batch(step);
    match step {
        Step::Append => {
            let r = store.append_batch(&batch).map(drop);
            Outcome {
                batch_acked: r.is_ok(),
                result: r,
            }
        }
        Step::AppendRolling | Step::BufferedThenRolling => {
            let appended = store.append_batch(&batch).map(drop);
            let batch_acked = appended.is_ok();
            let result = appended.and_then(|()| store.wait_sealed());
            Outcome {
                result,
                batch_acked,
            }
        }
        Step::RollAndSeal | Step::RollAndSealZeroFill => Outcome {
            result: store.roll().and_then(|()| store.wait_sealed()),
            batch_acked: false,
        },
        Step::Checkpoint => Outcome {
            result: store.checkpoint().map(drop),
            batch_acked: false,
        },
        Step::IndexRebuild => {
            // The query must answer correctly whether or not the rebuilt
            // index could be written: indexes are derived data.
            let result = store.query(&actor_query()).map(|page| {
                let expected = scan_matches(store, &actor_query());
                let got: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
                assert_eq!(got, expected, "the query during the rebuild is wrong");
            });
            Outcome {
                result,
                batch_acked: false,
            }
        }
    }
}

/// Records the calls a step makes on a healthy disk.
fn record(step: Step) -> Vec<Call> {
    let s = setup(step);
    s.fs.start_recording();
    let outcome = run_step(step, &s.store);
    let calls =
        s.fs.take_recording()
            .into_iter()
            .map(|c| Call {
                path: c.path.strip_prefix(&s.dir).unwrap().to_owned(),
                from: c.from.map(|f| f.strip_prefix(&s.dir).unwrap().to_owned()),
                ..c
            })
            .collect();
    outcome.result.unwrap();
    s.store.close().unwrap();
    calls
}

/// The faults a call can meet.
fn faults_for(op: Op) -> &'static [Fault] {
    match op {
        Op::Write => &[Fault::Io, Fault::NoSpace, Fault::ShortWrite],
        _ => &[Fault::Io, Fault::NoSpace],
    }
}

/// The words an error names a failed operation with.
fn op_words(op: Op) -> &'static [&'static str] {
    match op {
        Op::Write => &["write"],
        Op::SyncData => &["fdatasync"],
        Op::SyncAll => &["fsync"],
        Op::SyncDir => &["fsync directory"],
        Op::Create => &["create"],
        Op::Rename => &["rename"],
        Op::Remove => &["remove"],
        Op::SetLen => &["truncate", "extend"],
        Op::Allocate => &["fallocate"],
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The part of a file name that is the same on every run: a spare segment
/// file's name carries a timestamp.
fn stable_name(path: &Path) -> String {
    let name = file_name(path);
    if name.starts_with("spare-") {
        "spare-".to_owned()
    } else {
        name
    }
}

/// Records matching `query` by a full scan, in the query's order.
fn scan_matches(store: &Store, query: &Query) -> Vec<u64> {
    let mut seqs: Vec<u64> = (0..store.len())
        .filter(|&seq| {
            let bytes = store.get_raw(seq).unwrap().unwrap();
            query.matches(&record::decode(&bytes).unwrap())
        })
        .collect();
    if query.order == Order::NewestFirst {
        seqs.reverse();
    }
    seqs
}

fn queries() -> Vec<Query> {
    let q = Query {
        limit: sealog::query::MAX_LIMIT,
        ..Query::default()
    };
    vec![
        actor_query(),
        Query {
            actions: vec![ActionPattern::new("customer.*").unwrap()],
            ..q.clone()
        },
        Query {
            actions: vec![ActionPattern::new("*.export").unwrap()],
            tenant: Some("tenant-0".into()),
            order: Order::OldestFirst,
            ..q.clone()
        },
        Query {
            source_ip: Some(IpFilter::parse("10.0.2.0/24").unwrap()),
            ..q.clone()
        },
        Query {
            resource: Some(sealog::query::ResourceFilter::parse("customer:7")),
            outcome: Some(sealog::Outcome::Failure),
            ..q.clone()
        },
        Query {
            request_id: Some("req-4".into()),
            ..q
        },
    ]
}

/// Invariant 3: reopened on the real filesystem, the store holds every
/// acknowledged event and nothing else but the unacknowledged batch and
/// recovery notes; it verifies; appends continue; queries equal a scan.
fn check_reopened(dir: &Path, acked: &[Event], unacked: &[Event], label: &str) {
    let store = Store::open(dir, options(Arc::new(sealog::StdFs)))
        .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    let records: Vec<_> = store
        .scan(..)
        .map(|r| r.unwrap_or_else(|e| panic!("{label}: scan: {e}")))
        .collect();
    assert!(
        records.len() >= acked.len(),
        "{label}: acknowledged events lost"
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "{label}: seqs are not dense");
    }
    for (r, want) in records.iter().zip(acked) {
        assert_eq!(&r.event, want, "{label}: an acknowledged event changed");
    }
    // After the acknowledged events: a prefix of the unacknowledged batch
    // (it may have reached the disk whole), and recovery notes.
    let mut rest = records.get(acked.len()..).unwrap_or_default().iter();
    let mut pending = unacked.iter();
    for r in rest.by_ref() {
        if r.event.action == "store.recovered" {
            continue;
        }
        assert_eq!(
            Some(&r.event),
            pending.next(),
            "{label}: a record that was never appended"
        );
    }
    let report = store
        .verify()
        .unwrap_or_else(|e| panic!("{label}: verify: {e}"));
    assert!(
        report.sealed_segments + 1 >= report.segments,
        "{label}: a full segment was left unsealed: {report:?}"
    );
    let with_key = VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: Vec::new(),
        log_only: false,
    };
    sealog::verify_dir_with(dir, &with_key)
        .unwrap_or_else(|e| panic!("{label}: verify_dir_with: {e}"));
    for q in queries() {
        let page = store
            .query(&q)
            .unwrap_or_else(|e| panic!("{label}: query: {e}"));
        let got: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(got, scan_matches(&store, &q), "{label}: {q:?}");
        assert_eq!(store.count(&q).unwrap(), got.len() as u64, "{label}: count");
    }
    let len = store.len();
    let receipt = store
        .append(event(9_999))
        .unwrap_or_else(|e| panic!("{label}: append after reopen: {e}"));
    assert_eq!(receipt.seq, len, "{label}: the chain does not continue");
    store
        .verify()
        .unwrap_or_else(|e| panic!("{label}: verify after append: {e}"));
    store.close().unwrap();
}

/// The seed behind the random power losses of this run.
fn base_seed() -> u64 {
    std::env::var("SEALOG_POWER_LOSS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Random power losses per call.
fn random_runs() -> u64 {
    std::env::var("SEALOG_POWER_LOSS_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The power losses of call `i`: everything unsynced lost, and a few
/// random survivals.
fn power_losses(seed: u64, i: u64) -> Vec<Disturbance> {
    let mut out = vec![Disturbance::PowerLoss(i, Unsynced::Lost)];
    for k in 0..random_runs() {
        let s = seed
            .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(k.wrapping_mul(0xD1B5_4A32_D192_ED03));
        out.push(Disturbance::PowerLoss(i, Unsynced::Random(s)));
    }
    out
}

/// A power loss at call `at` of a step: the store is reopened from what a
/// restarted machine could find on the disk.
fn run_power_loss(step: Step, calls: &[Call], at: u64, unsynced: Unsynced) {
    let s = setup_on(step, FaultFs::with_power_loss());
    let store_id = s.store.store_id();
    let place = calls.get(at as usize).map_or_else(
        || "after the step".to_owned(),
        |c| format!("at {:?} {}", c.op, c.path.display()),
    );
    let label = format!("{step:?} power loss ({unsynced:?}) {place}");
    s.fs.crash_at(at);
    let outcome = run_step(step, &s.store);
    let batch = step_batch(step);
    let mut expected = s.acked.clone();
    expected.extend(batch.iter().cloned());
    // What the store promised durable: the acknowledged durable appends,
    // and every record inside the tree size it reports.
    let promised = if outcome.batch_acked {
        s.acked.len() + batch.len()
    } else {
        s.durable
    };
    let promised = promised.max(s.store.tree_size() as usize);
    let checkpoints: Vec<String> = s
        .store
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();
    drop(s.store);
    let tmp_root = s.dir.parent().unwrap().to_owned();
    let (_image, root, lost) = power_cut(&s.fs, &tmp_root, unsynced);
    let _report = OnPanic(format!("{label}\n{lost}"));
    check_after_power_loss(
        &root.join("store"),
        &PowerLossCheck {
            store_id,
            expected: &expected,
            promised,
            checkpoints: &checkpoints,
        },
        &label,
    );
}

/// What a store must hold after a power loss.
struct PowerLossCheck<'a> {
    store_id: [u8; 16],
    /// The events appended, in order (acknowledged or not).
    expected: &'a [Event],
    /// How many of them were promised durable.
    promised: usize,
    /// The checkpoints the store acknowledged.
    checkpoints: &'a [String],
}

/// Reopened after a power loss: the store keeps its id; the events it
/// promised are there, unchanged, followed only by a prefix of the rest and
/// recovery notes; no leaf hash is recomputed (the tree files are synced
/// before a footer commits to them); every acknowledged checkpoint is in
/// the history; then the checks of [`check_reopened`].
fn check_after_power_loss(dir: &Path, want: &PowerLossCheck<'_>, label: &str) {
    let store = Store::open(dir, options(Arc::new(sealog::StdFs)))
        .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    assert_eq!(
        store.store_id(),
        want.store_id,
        "{label}: the store was lost (a new one was created in its place)"
    );
    let records: Vec<_> = store
        .scan(..)
        .map(|r| r.unwrap_or_else(|e| panic!("{label}: scan: {e}")))
        .collect();
    let mut events = Vec::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "{label}: seqs are not dense");
        if r.event.action == "store.recovered" && r.event.actor.id == "sealog" {
            assert!(
                events.len() >= want.promised,
                "{label}: a recovery note before seq {} among promised events",
                r.seq
            );
            continue;
        }
        events.push(r.event.clone());
    }
    assert!(
        events.len() >= want.promised,
        "{label}: {} of {} events promised durable survive",
        events.len(),
        want.promised
    );
    for (i, (got, expected)) in events.iter().zip(want.expected).enumerate() {
        assert_eq!(got, expected, "{label}: event {i} is not what was appended");
    }
    assert!(
        events.len() <= want.expected.len(),
        "{label}: the store holds events that were never appended"
    );
    assert_eq!(
        store.recovery_report().rebuilt_leaves,
        0,
        "{label}: leaf hashes were lost: {:?}",
        store.recovery_report()
    );
    let history: Vec<String> = store
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();
    for text in want.checkpoints {
        assert!(
            history.contains(text),
            "{label}: an acknowledged checkpoint is not in the history: {text}"
        );
    }
    store.close().unwrap();
    // The survivors, whatever they are, pass every check a reopened store
    // must pass.
    let acked: Vec<Event> = records
        .iter()
        .map(|r| r.event.clone())
        .filter(|e| e.action != "store.recovered")
        .collect();
    check_reopened(dir, &acked, &[], label);
}

/// One run of the matrix.
fn run_disturbed(step: Step, calls: &[Call], disturbance: Disturbance) {
    if let Disturbance::PowerLoss(at, unsynced) = disturbance {
        return run_power_loss(step, calls, at, unsynced);
    }
    let s = setup(step);
    let label = format!("{step:?} {disturbance:?}");
    let call = match disturbance {
        Disturbance::Fail(i, fault) => {
            s.fs.fail_nth(i, fault);
            calls.get(i as usize).unwrap()
        }
        Disturbance::Crash(i) => {
            s.fs.crash_at(i);
            calls.get(i as usize).unwrap()
        }
        Disturbance::PowerLoss(..) => unreachable!("handled above"),
    };
    let label = format!("{label} at {:?} {}", call.op, call.path.display());
    let outcome = run_step(step, &s.store);
    let mut acked = s.acked.clone();
    let batch = step_batch(step);
    if outcome.batch_acked {
        acked.extend(batch.iter().cloned());
    }
    if let Disturbance::Fail(_, fault) = disturbance {
        assert!(s.fs.nth_fired(), "{label}: the call was not reached");
        // 1. A clear error: from the step, or latched for the next append.
        let refused = s.store.append(event(50_000));
        let refused = refused
            .err()
            .unwrap_or_else(|| panic!("{label}: an append after the failure was accepted"));
        assert!(
            matches!(refused, Error::WritesRefused { .. }),
            "{label}: {refused}"
        );
        for err in [outcome.result.as_ref().err(), Some(&refused)]
            .into_iter()
            .flatten()
        {
            let text = err.to_string();
            assert!(
                op_words(call.op).iter().any(|w| text.contains(w)),
                "{label}: the error does not say what failed: {text}"
            );
            let names = [Some(&call.path), call.from.as_ref()];
            assert!(
                names
                    .into_iter()
                    .flatten()
                    .any(|p| text.contains(&stable_name(p))),
                "{label}: the error does not name the file: {text}"
            );
            if fault != Fault::Io {
                assert_eq!(
                    err.io_kind(),
                    Some(ErrorKind::StorageFull),
                    "{label}: a full disk is not recognisable: {err}"
                );
            }
        }
        if step != Step::IndexRebuild {
            assert!(outcome.result.is_err(), "{label}: the step hid the failure");
        }
        // 2. Writes stay refused.
        for _ in 0..2 {
            assert!(matches!(
                s.store.append(event(50_001)),
                Err(Error::WritesRefused { .. })
            ));
        }
        assert!(s.store.roll().is_err(), "{label}: a roll was accepted");
    }
    drop(s.store);
    let unacked = if outcome.batch_acked {
        Vec::new()
    } else {
        batch
    };
    check_reopened(&s.dir, &acked, &unacked, &label);
}

fn run_matrix(step: Step) -> usize {
    let calls = record(step);
    assert!(!calls.is_empty(), "{step:?} made no call");
    if matches!(
        step,
        Step::AppendRolling
            | Step::BufferedThenRolling
            | Step::RollAndSeal
            | Step::RollAndSealZeroFill
    ) {
        assert!(
            calls.iter().any(|c| c.op == Op::Rename) && calls.iter().any(|c| c.op == Op::SetLen),
            "{step:?} did not roll and seal: {calls:?}"
        );
    }
    let stable = |calls: &[Call]| -> Vec<(Op, String)> {
        calls.iter().map(|c| (c.op, stable_name(&c.path))).collect()
    };
    assert_eq!(
        stable(&calls),
        stable(&record(step)),
        "{step:?}: the recorded calls vary"
    );
    let mut runs = 0;
    for (i, call) in calls.iter().enumerate() {
        for &fault in faults_for(call.op) {
            run_disturbed(step, &calls, Disturbance::Fail(i as u64, fault));
            runs += 1;
        }
        run_disturbed(step, &calls, Disturbance::Crash(i as u64));
        runs += 1;
    }
    let seed = base_seed();
    let _seed = OnPanic(format!(
        "{step:?}: rerun with SEALOG_POWER_LOSS_SEED={seed}"
    ));
    for i in 0..=calls.len() as u64 {
        for disturbance in power_losses(seed, i) {
            run_disturbed(step, &calls, disturbance);
            runs += 1;
        }
    }
    eprintln!("{step:?}: {} calls, {runs} runs", calls.len());
    runs
}

#[test]
fn every_call_of_an_append_fails_cleanly() {
    assert!(run_matrix(Step::Append) >= 4);
}

#[test]
fn every_call_of_an_append_that_rolls_and_seals_fails_cleanly() {
    run_matrix(Step::AppendRolling);
}

#[test]
fn every_call_of_a_roll_after_buffered_appends_fails_cleanly() {
    let calls = record(Step::BufferedThenRolling);
    assert_eq!(
        (calls[0].op, file_name(&calls[0].path)),
        (Op::SyncData, "00000000000000000000.seg".to_owned()),
        "the roll syncs the old segment first"
    );
    run_matrix(Step::BufferedThenRolling);
}

#[test]
fn every_call_of_a_roll_and_seal_fails_cleanly_and_a_crash_before_any_is_recovered() {
    run_matrix(Step::RollAndSeal);
}

#[test]
fn every_call_of_a_zero_filled_roll_and_seal_fails_cleanly() {
    run_matrix(Step::RollAndSealZeroFill);
}

#[test]
fn every_call_of_a_checkpoint_fails_cleanly() {
    run_matrix(Step::Checkpoint);
}

#[test]
fn every_call_of_an_index_rebuild_fails_cleanly() {
    run_matrix(Step::IndexRebuild);
}

/// The recorded steps, printed: `cargo test -p sealog-tests --test
/// fault_matrix -- --nocapture print_the_steps`.
#[test]
fn print_the_steps() {
    for step in STEPS {
        let calls = record(step);
        println!("{step:?}: {} calls", calls.len());
        for c in calls {
            println!("  {:?} {}", c.op, file_name(&c.path));
        }
    }
}

/// Creating a store: the manifest (written atomically), the tree level
/// files and the checkpoint history (each created and its directory
/// synced), and the first segment (created, preallocated, header written
/// and synced, renamed, directory synced). A failure or a crash at any
/// call leaves a directory that opens as an empty store.
#[test]
fn every_call_of_creating_a_store_fails_cleanly_and_leaves_an_openable_directory() {
    let record_create = || {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let fs = Arc::new(FaultFs::new());
        fs.start_recording();
        let store = Store::open(&dir, options(fs.clone())).unwrap();
        // Paths from the directory that holds the store: creating it also
        // syncs its parent.
        let calls: Vec<(Op, String)> = fs
            .take_recording()
            .into_iter()
            .map(|c| {
                (
                    c.op,
                    c.path
                        .strip_prefix(tmp.path())
                        .unwrap()
                        .display()
                        .to_string(),
                )
            })
            .collect();
        store.close().unwrap();
        calls
    };
    let calls = record_create();
    assert_eq!(calls, record_create(), "the recorded calls vary");
    assert!(calls.len() > 10, "{calls:?}");
    let mut runs = 0;
    for (i, (op, path)) in calls.iter().enumerate() {
        let disturbances = faults_for(*op)
            .iter()
            .map(|&f| Disturbance::Fail(i as u64, f))
            .chain([Disturbance::Crash(i as u64)]);
        for disturbance in disturbances {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            let fs = Arc::new(FaultFs::new());
            let label = format!("create {disturbance:?} at {op:?} {path}");
            match disturbance {
                Disturbance::Fail(n, _) => fs.fail_nth(n, disturbance_fault(disturbance)),
                Disturbance::Crash(n) | Disturbance::PowerLoss(n, _) => fs.crash_at(n),
            }
            match Store::open(&dir, options(fs.clone())) {
                Ok(store) => panic!("{label}: the open hid the failure ({store:?})"),
                Err(err) => {
                    let text = err.to_string();
                    let name = path.rsplit('/').next().unwrap_or(path);
                    assert!(
                        op_words(*op).iter().any(|w| text.contains(w)),
                        "{label}: the error does not say what failed: {text}"
                    );
                    if let Disturbance::Fail(..) = disturbance {
                        assert!(
                            text.contains(name) || text.contains(&format!("{name}.tmp")),
                            "{label}: the error does not name the file: {text}"
                        );
                        if disturbance_fault(disturbance) != Fault::Io {
                            assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{label}");
                        }
                    }
                }
            }
            check_reopened(&dir, &[], &[], &label);
            runs += 1;
        }
    }
    let seed = base_seed();
    let _seed = OnPanic(format!("Create: rerun with SEALOG_POWER_LOSS_SEED={seed}"));
    for i in 0..=calls.len() as u64 {
        for disturbance in power_losses(seed, i) {
            let Disturbance::PowerLoss(at, unsynced) = disturbance else {
                continue;
            };
            let place = calls.get(at as usize).map_or_else(
                || "after the open".to_owned(),
                |(op, path)| format!("at {op:?} {path}"),
            );
            let label = format!("create: power loss ({unsynced:?}) {place}");
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            let fs = Arc::new(FaultFs::with_power_loss());
            fs.crash_at(at);
            let created = Store::open(&dir, options(fs.clone())).map(|store| store.store_id());
            let (_image, root, lost) = power_cut(&fs, tmp.path(), unsynced);
            let _report = OnPanic(format!("{label}\n{lost}"));
            let image = root.join("store");
            if let Ok(id) = created {
                // The open returned: the store exists, whatever happens next.
                let store = Store::open(&image, options(Arc::new(sealog::StdFs)))
                    .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
                assert_eq!(
                    store.store_id(),
                    id,
                    "{label}: the store created was lost and a new one made in its place"
                );
                store.close().unwrap();
            }
            check_reopened(&image, &[], &[], &label);
            runs += 1;
        }
    }
    eprintln!("Create: {} calls, {runs} runs", calls.len());
}

fn disturbance_fault(d: Disturbance) -> Fault {
    match d {
        Disturbance::Fail(_, f) => f,
        Disturbance::Crash(_) | Disturbance::PowerLoss(..) => Fault::Io,
    }
}
