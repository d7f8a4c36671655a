//! Query latency while the store ingests at full speed: the incident
//! responder's view of a busy log.
//!
//! `cargo run --release -p sealog-benches --example query_during_ingest -- EVENTS THREADS INTERVAL_MS`
//!
//! THREADS threads append durable 1,000-event batches until EVENTS events
//! are in; meanwhile one thread runs "newest 100 events of an actor" every
//! INTERVAL_MS milliseconds. Prints ingest events/s and the query latency
//! percentiles, then the same queries on the idle store for comparison.

#![allow(clippy::unwrap_used, reason = "a benchmark driver fails loudly")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sealog::query::{ActorFilter, Query};
use sealog::workload::{Workload, percentile};

fn actor_query(w: &Workload, i: u64) -> Query {
    let a = w.event(i.wrapping_mul(0x9E37_79B9) % 1_000_000).actor;
    Query {
        actor: Some(ActorFilter {
            kind: Some(a.kind),
            id: a.id,
        }),
        limit: 100,
        ..Query::default()
    }
}

fn report(name: &str, times: Vec<Duration>) {
    let mut times: Vec<u64> = times.iter().map(|t| t.as_nanos() as u64).collect();
    times.sort_unstable();
    let pct = |p: f64| percentile(&times, p) as f64 / 1e6;
    println!(
        "{name:<28} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms   ({} queries)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        times.len()
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(2_000_000);
    let threads = args.get(1).copied().unwrap_or(2);
    let interval = Duration::from_millis(args.get(2).copied().unwrap_or(50));
    let batch = 1000;
    let dir = sealog_benches::bench_dir("query-during-ingest");
    let store = sealog::Store::open(dir.path(), sealog::StoreOptions::default()).unwrap();
    let w = Workload::new(11);
    let pool: Vec<Vec<sealog::Event>> = (0..64)
        .map(|i| w.events(i * batch, (i + 1) * batch))
        .collect();
    let next = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let mut busy = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(batch, Ordering::Relaxed);
                    if i >= events {
                        break;
                    }
                    store
                        .append_batch(&pool[(i / batch) as usize % pool.len()])
                        .unwrap();
                }
            });
        }
        let querier = s.spawn(|| {
            let mut times = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                let t = Instant::now();
                store.query(&actor_query(&w, i)).unwrap();
                times.push(t.elapsed());
                i += 1;
            }
            times
        });
        while next.load(Ordering::Relaxed) < events {
            std::thread::sleep(Duration::from_millis(5));
        }
        done.store(true, Ordering::Relaxed);
        busy = querier.join().unwrap();
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {} events in {secs:.2} s: {:.0} events/s ({threads} threads, batches of {batch})",
        store.len(),
        store.len() as f64 / secs
    );
    report("actor query during ingest", busy);
    let idle = (0..200)
        .map(|i| {
            let t = Instant::now();
            store.query(&actor_query(&w, i)).unwrap();
            t.elapsed()
        })
        .collect();
    report("actor query, idle store", idle);
}
