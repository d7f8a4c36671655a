//! Many single-event appenders, side by side in one process: APPENDERS
//! tasks calling `Store::append_async` on a 2-worker tokio runtime, against
//! APPENDERS threads calling the blocking `Store::append`. Each round runs
//! both (alternating which goes first) on a fresh store; prints events/s,
//! append latency p50/p99 and the mean commit group for each.
//!
//! `cargo run --release -p sealog-benches --example async_appends -- EVENTS APPENDERS ROUNDS`

#![allow(clippy::unwrap_used, reason = "a benchmark driver fails loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sealog::{Event, Store};

struct Run {
    events_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    mean_group: f64,
}

fn pool() -> Arc<Vec<Event>> {
    Arc::new(sealog::workload::Workload::new(9).events(0, 4096))
}

fn finish(store: &Store, events: u64, secs: f64, mut lat: Vec<u64>) -> Run {
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    let stats = store.stats();
    Run {
        events_per_s: events as f64 / secs,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        mean_group: stats.appended_events as f64 / stats.commit_groups.max(1) as f64,
    }
}

fn threads(events: u64, appenders: u64, pool: &Arc<Vec<Event>>) -> Run {
    let dir = sealog_benches::bench_dir("async-threads");
    let store = Store::open(dir.path(), sealog::StoreOptions::default()).unwrap();
    let next = AtomicU64::new(0);
    let latencies = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..appenders {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events {
                        break;
                    }
                    let t = Instant::now();
                    store.append(&pool[i as usize % pool.len()]).unwrap();
                    mine.push(t.elapsed().as_micros() as u64);
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    finish(&store, events, secs, latencies.into_inner().unwrap())
}

fn tasks(events: u64, appenders: u64, pool: &Arc<Vec<Event>>) -> Run {
    let dir = sealog_benches::bench_dir("async-tasks");
    let store = Arc::new(Store::open(dir.path(), sealog::StoreOptions::default()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let lat = runtime.block_on(async {
        let handles: Vec<_> = (0..appenders)
            .map(|_| {
                let (store, next, pool) = (store.clone(), next.clone(), pool.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= events {
                            break;
                        }
                        let t = Instant::now();
                        store
                            .append_async(&pool[i as usize % pool.len()])
                            .await
                            .unwrap();
                        mine.push(t.elapsed().as_micros() as u64);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    let secs = start.elapsed().as_secs_f64();
    finish(&store, events, secs, lat)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(300_000);
    let appenders = args.get(1).copied().unwrap_or(256);
    let rounds = args.get(2).copied().unwrap_or(3);
    let pool = pool();
    println!("{events} single-event appends, {appenders} appenders, {rounds} rounds");
    for round in 0..rounds {
        let order: [bool; 2] = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for use_tasks in order {
            let (name, run) = if use_tasks {
                (
                    "tasks, append_async, 2 workers",
                    tasks(events, appenders, &pool),
                )
            } else {
                ("threads, append", threads(events, appenders, &pool))
            };
            println!(
                "round {round}  {name:32} {:>9.0} events/s  p50 {:>6} us  p99 {:>6} us  mean group {:>6.1}",
                run.events_per_s, run.p50_us, run.p99_us, run.mean_group
            );
        }
    }
}
