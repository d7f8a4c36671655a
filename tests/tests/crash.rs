//! Crash test: a child process appends from several threads and prints each
//! acknowledged seq; the test kills it with SIGKILL at random moments. After
//! every restart each acknowledged seq is present, every batch is complete
//! or absent, and verification passes.
//!
//! `SEALOG_CRASH_CYCLES` sets the number of cycles (default 20; the soak
//! run uses 100 or more).
//!
//! A killed process keeps the page cache, so that test proves nothing about
//! `fsync`. The power-loss test does the same under a simulated power
//! loss ([`FaultFs::power_loss`]): threads append until the power is cut at
//! a random moment, and the store is reopened from the disk a restarted
//! machine could find — every write since its file's last sync, and every
//! directory entry change since its directory's last sync, lost or (for
//! most cycles) partly kept, torn at sector granularity. Each cycle starts
//! from the previous cycle's disk, so recovery's own writes meet the next
//! power loss too. `SEALOG_POWER_LOSS_CYCLES` sets the number of cycles
//! (default 12) and `SEALOG_POWER_LOSS_SEED` the seed (printed when a cycle
//! fails).

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealog::checkpoint::CheckpointOptions;
use sealog::fault::{FaultFs, Unsynced};
use sealog::format::note::SigningKey;
use sealog::format::{Event, merkle};
use sealog::{Durability, Preallocation, Receipt, Store, StoreOptions, VerifyOptions};
use sealog_tests::{OnPanic, power_cut, small_options};

const SEGMENT: u64 = 32 << 10;

fn cycles() -> u64 {
    std::env::var("SEALOG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[test]
fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = BTreeSet::new();
    let mut rng: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let cycles = cycles();
    for cycle in 0..cycles {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let run_for = Duration::from_millis(20 + (rng >> 33) % 300);
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-child"))
            .arg(dir.path())
            .arg(SEGMENT.to_string())
            .arg((1 + (rng >> 40) % 16).to_string())
            .arg((1 + (rng >> 50) % 8).to_string())
            .arg(cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crash-child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(seq) = line.trim().parse::<u64>() {
                    seqs.push(seq);
                }
            }
            seqs
        });
        let started = Instant::now();
        while started.elapsed() < run_for {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                panic!("cycle {cycle}: the child exited by itself ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seqs = reader.join().unwrap();
        acked.extend(seqs);

        let store = Store::open(dir.path(), small_options(SEGMENT))
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let len = store.len();
        if let Some(&max) = acked.iter().next_back() {
            assert!(
                len > max,
                "cycle {cycle}: acknowledged seq {max} missing (store has {len})"
            );
        }
        // Every batch is whole: count the members of each batch present.
        let mut batches: HashMap<String, (u64, u64)> = HashMap::new();
        for record in store.scan(..) {
            let record = record.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            if record.event.action == "store.recovered" {
                continue;
            }
            let id = record.event.request_id.clone().expect("batch id");
            let (name, part) = id.split_once('.').unwrap();
            let n: u64 = part.split_once('/').unwrap().1.parse().unwrap();
            let entry = batches.entry(name.to_owned()).or_insert((0, n));
            entry.0 += 1;
        }
        for (name, (have, n)) in &batches {
            assert_eq!(have, n, "cycle {cycle}: batch {name} is partial");
        }
        store
            .verify()
            .unwrap_or_else(|e| panic!("cycle {cycle}: verify failed: {e}"));
        store.close().unwrap();
    }
    assert!(
        acked.len() > 100,
        "only {} events were acknowledged",
        acked.len()
    );
    eprintln!(
        "{cycles} kill -9 cycles, {} acknowledged events, none lost",
        acked.len()
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// splitmix64, for reproducible choices from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key() -> SigningKey {
    SigningKey::from_seed("audit.example.com/power", &[5u8; 32]).unwrap()
}

fn power_options(fs: Arc<FaultFs>, preallocation: Preallocation) -> StoreOptions {
    StoreOptions {
        fs,
        segment_size: 8 << 10,
        preallocation,
        checkpoints: Some(CheckpointOptions {
            on_seal: true,
            every: Some(Duration::from_millis(7)),
            ..CheckpointOptions::new(key())
        }),
        ..StoreOptions::default()
    }
}

/// What the appenders of one cycle did.
#[derive(Default)]
struct Appended {
    /// Every event appended, acknowledged or not, by request id.
    attempted: HashMap<String, Event>,
    /// Acknowledged events: seq → (event, receipt, durable).
    acked: BTreeMap<u64, (Event, Receipt, bool)>,
}

/// Appends batches from `threads` threads until `stop` is set or an
/// append fails; every event carries `b<cycle>-<thread>-<batch>.<k>/<n>`
/// as its request id.
fn append_until_stopped(
    store: &Store,
    cycle: u64,
    threads: u64,
    seed: u64,
    stop: &AtomicBool,
    appended: &Mutex<Appended>,
) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                for batch_no in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = 1 + rng.below(6);
                    let durability = if rng.below(4) == 0 {
                        Durability::Buffered
                    } else {
                        Durability::Group
                    };
                    let events: Vec<Event> = (0..n)
                        .map(|k| {
                            sealog_tests::event(rng.next() % 10_000)
                                .with_request_id(format!("b{cycle}-{t}-{batch_no}.{k}/{n}"))
                        })
                        .collect();
                    {
                        let mut a = appended.lock().unwrap();
                        for e in &events {
                            a.attempted.insert(e.request_id.clone().unwrap(), e.clone());
                        }
                    }
                    match store.append_batch_with(&events, durability) {
                        Ok(receipts) => {
                            let mut a = appended.lock().unwrap();
                            let durable = durability == Durability::Group;
                            for (e, r) in events.into_iter().zip(receipts) {
                                a.acked.insert(r.seq, (e, r, durable));
                            }
                        }
                        Err(_) => break,
                    }
                }
            });
        }
    });
}

/// What the store must hold when reopened after a power loss.
struct Expected {
    /// Every record of the store when the cycle began (after its recovery).
    base: Vec<Event>,
    appended: Appended,
    /// Records promised durable: through the last durable acknowledgement,
    /// and the durable tree size the store reported.
    promised: u64,
    /// Checkpoints the store acknowledged.
    checkpoints: Vec<String>,
    /// The copies of removed bytes recovery made when the cycle began
    /// (`lost+found/…`, relative to the store), with their contents.
    saved: Vec<(String, Vec<u8>)>,
    store_id: [u8; 16],
}

/// Checks the store reopened after a power loss, and returns its records.
fn check_after_power_loss(store: &Store, dir: &Path, want: &Expected, label: &str) -> Vec<Event> {
    assert_eq!(
        store.store_id(),
        want.store_id,
        "{label}: the store was lost"
    );
    let records: Vec<_> = store
        .scan(..)
        .map(|r| r.unwrap_or_else(|e| panic!("{label}: scan: {e}")))
        .collect();
    let len = records.len() as u64;
    assert!(
        len >= want.promised,
        "{label}: {len} records, {} promised durable",
        want.promised
    );
    for (i, want_event) in want.base.iter().enumerate() {
        assert_eq!(
            &records[i].event, want_event,
            "{label}: record {i} from before the cycle changed"
        );
    }
    let mut batches: HashMap<String, (u64, u64)> = HashMap::new();
    for r in &records[want.base.len()..] {
        let seq = r.seq;
        let acked = want.appended.acked.get(&seq);
        if seq < want.promised
            && let Some((event, receipt, _)) = acked
        {
            // Promised durable: exactly what was acknowledged.
            assert_eq!(&r.event, event, "{label}: acknowledged seq {seq} changed");
            let raw = store.get_raw(seq).unwrap().unwrap();
            assert_eq!(
                merkle::leaf_hash(&raw),
                receipt.leaf_hash,
                "{label}: seq {seq} is not the record its receipt names"
            );
        }
        if r.event.action == "store.recovered" && r.event.actor.id == "sealog" {
            assert!(
                seq >= want.promised,
                "{label}: a recovery note at seq {seq}, inside the promised records"
            );
            continue;
        }
        // Anything else is an event that was appended (a buffered or an
        // unacknowledged batch may or may not have reached the disk).
        let id = r.event.request_id.clone().unwrap_or_default();
        assert_eq!(
            want.appended.attempted.get(&id),
            Some(&r.event),
            "{label}: seq {seq} was never appended"
        );
        if let Some((event, receipt, _)) = acked
            && event == &r.event
        {
            let raw = store.get_raw(seq).unwrap().unwrap();
            assert_eq!(
                merkle::leaf_hash(&raw),
                receipt.leaf_hash,
                "{label}: seq {seq}"
            );
        }
        let id = r.event.request_id.clone().expect("batch id");
        let (name, part) = id.split_once('.').unwrap();
        let n: u64 = part.split_once('/').unwrap().1.parse().unwrap();
        batches.entry(name.to_owned()).or_insert((0, n)).0 += 1;
    }
    for (name, (have, n)) in &batches {
        assert_eq!(have, n, "{label}: batch {name} is partial");
    }
    for (&seq, (_, _, durable)) in &want.appended.acked {
        if *durable {
            assert!(seq < len, "{label}: acknowledged seq {seq} lost");
        }
    }
    let report = store.recovery_report();
    assert_eq!(
        report.rebuilt_leaves, 0,
        "{label}: leaf hashes lost: {report:?}"
    );
    // Recovery keeps a copy of what it removes: the copies made when the
    // previous cycle began survived its power loss.
    for (name, bytes) in &want.saved {
        let kept = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{label}: the copy {name} recovery made is gone: {e}"));
        assert_eq!(&kept, bytes, "{label}: the copy {name} changed");
    }
    let history: Vec<String> = store
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();
    for text in &want.checkpoints {
        assert!(
            history.contains(text),
            "{label}: an acknowledged checkpoint is missing from the history"
        );
    }
    let verified = store
        .verify()
        .unwrap_or_else(|e| panic!("{label}: verify: {e}"));
    sealog::verify_dir_with(
        dir,
        &VerifyOptions {
            public_key: Some(key().verifier()),
            checkpoints: want.checkpoints.clone(),
            log_only: false,
        },
    )
    .unwrap_or_else(|e| panic!("{label}: verify_dir_with: {e}"));
    // Every acknowledged record still proves its inclusion in the tree.
    let size = store.tree_size();
    if size > 0 {
        let root = store.root(size).unwrap();
        assert_eq!(root, verified.root, "{label}: the tree and verify disagree");
        for (&seq, (_, receipt, _)) in want
            .appended
            .acked
            .iter()
            .filter(|(s, _)| **s < size.min(want.promised))
            .take(50)
        {
            let proof = store.inclusion_proof(seq, size).unwrap();
            merkle::verify_inclusion(&receipt.leaf_hash, seq, size, &proof, &root)
                .unwrap_or_else(|e| panic!("{label}: inclusion of seq {seq}: {e}"));
        }
    }
    records.into_iter().map(|r| r.event).collect()
}

#[test]
fn every_acknowledged_event_survives_power_loss() {
    let seed = env_u64("SEALOG_POWER_LOSS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let cycles = env_u64("SEALOG_POWER_LOSS_CYCLES").unwrap_or(12);
    let _seed = OnPanic(format!("rerun with SEALOG_POWER_LOSS_SEED={seed}"));
    let mut rng = Rng(seed);
    // The directory that holds the store (the power-loss image of the
    // previous cycle's), and the temporary directory that holds it.
    let mut holder = tempfile::tempdir().unwrap();
    let mut root: PathBuf = holder.path().to_owned();
    let mut dir: PathBuf = root.join("store");
    let mut expected: Option<Expected> = None;
    let mut store_id = None;
    let mut total_acked = 0usize;
    let mut copies = 0usize;
    let mut last_loss = String::new();
    for cycle in 0..=cycles {
        let preallocation = match rng.below(3) {
            0 => Preallocation::Allocate,
            1 => Preallocation::ZeroFill,
            _ => Preallocation::None,
        };
        let label = format!("cycle {cycle} ({preallocation:?})");
        let _loss = OnPanic(last_loss.clone());
        let fs = Arc::new(FaultFs::with_power_loss());
        let store = Store::open(&dir, power_options(fs.clone(), preallocation))
            .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
        let base = match &expected {
            Some(want) => check_after_power_loss(&store, &dir, want, &label),
            None => Vec::new(),
        };
        let saved: Vec<(String, Vec<u8>)> = store
            .recovery_report()
            .truncations
            .iter()
            .filter_map(|t| t.saved_to.clone())
            .map(|name| {
                let bytes = std::fs::read(dir.join(&name)).unwrap();
                (name, bytes)
            })
            .collect();
        copies += saved.len();
        if cycle == cycles {
            store.close().unwrap();
            break;
        }
        let id = *store_id.get_or_insert(store.store_id());
        let appended = Mutex::new(Appended::default());
        let stop = AtomicBool::new(false);
        let threads = 1 + rng.below(4);
        let thread_seed = rng.next();
        let run_for = Duration::from_millis(10 + rng.below(80));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(run_for);
                // The power goes: every later call fails, as the machine
                // stops.
                fs.crash();
                stop.store(true, Ordering::Relaxed);
            });
            append_until_stopped(&store, cycle, threads, thread_seed, &stop, &appended);
        });
        let appended = appended.into_inner().unwrap();
        let last_durable = appended
            .acked
            .iter()
            .filter(|(_, (_, _, durable))| *durable)
            .map(|(&seq, _)| seq + 1)
            .max()
            .unwrap_or(0);
        let promised = last_durable.max(store.tree_size()).max(base.len() as u64);
        let checkpoints = store
            .checkpoints()
            .unwrap()
            .into_iter()
            .map(|c| c.text)
            .collect();
        total_acked += appended.acked.len();
        drop(store);
        let unsynced = if rng.below(4) == 0 {
            Unsynced::Lost
        } else {
            Unsynced::Random(rng.next())
        };
        let (next_holder, image, lost) = power_cut(&fs, &root, unsynced);
        last_loss = format!(
            "{label}: {} events acknowledged; then {lost}",
            appended.acked.len()
        );
        expected = Some(Expected {
            base,
            appended,
            promised,
            checkpoints,
            saved,
            store_id: id,
        });
        dir = image.join("store");
        root = image;
        holder = next_holder;
    }
    drop(holder);
    assert!(
        total_acked > 100,
        "only {total_acked} events were acknowledged"
    );
    eprintln!(
        "{cycles} power losses, {total_acked} acknowledged events, none lost; {copies} torn \
         tails removed, their copies kept"
    );
}
