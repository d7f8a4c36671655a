//! Crash test: a child process appends from several threads and prints each
//! acknowledged seq; the test kills it with SIGKILL at random moments. After
//! every restart each acknowledged seq is present, every batch is complete
//! or absent, and verification passes.
//!
//! `SEALOG_CRASH_CYCLES` sets the number of cycles (default 20; the soak
//! run uses 100 or more).

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sealog::Store;
use sealog_tests::small_options;

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
