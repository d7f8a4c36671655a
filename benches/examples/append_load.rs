//! A quick throughput driver for profiling: THREADS threads append BATCH-event
//! batches until EVENTS events are durable, then print events/s.
//!
//! `cargo run --release -p sealog-benches --example append_load -- EVENTS BATCH THREADS`

#![allow(clippy::unwrap_used, reason = "a profiling driver fails loudly")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sealog::workload::percentile;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(1_000_000);
    let batch = args.get(1).copied().unwrap_or(1000);
    let threads = args.get(2).copied().unwrap_or(1);
    let dir = sealog_benches::bench_dir("load");
    let preallocation = match std::env::var("PREALLOC").as_deref() {
        Ok("none") => sealog::Preallocation::None,
        Ok("allocate") => sealog::Preallocation::Allocate,
        _ => sealog::Preallocation::ZeroFill,
    };
    let options = sealog::StoreOptions {
        preallocation,
        ..sealog::StoreOptions::default()
    };
    let store = sealog::Store::open(dir.path(), options).unwrap();
    let w = sealog::workload::Workload::new(9);
    // Pre-generate so the driver measures the store, not the generator.
    let pool: Vec<Vec<sealog::Event>> = (0..64)
        .map(|i| w.events(i * batch, (i + 1) * batch))
        .collect();
    let next = AtomicU64::new(0);
    let latencies = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(batch, Ordering::Relaxed);
                    if i >= events {
                        break;
                    }
                    let t = Instant::now();
                    store
                        .append_batch(&pool[(i / batch) as usize % pool.len()])
                        .unwrap();
                    mine.push(t.elapsed().as_micros() as u64);
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let mut lat = latencies.into_inner().unwrap();
    lat.sort_unstable();
    let pct = |p: f64| percentile(&lat, p);
    println!(
        "append latency us: p50 {} p95 {} p99 {} max {}",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "{events} events, batch {batch}, {threads} threads: {:.0} events/s ({secs:.2} s)",
        events as f64 / secs
    );
    let st = store.stats();
    println!(
        "groups {} (mean {:.1} events), syncs {} (mean {:.0} us), rolls {}, spare misses {}",
        st.commit_groups,
        st.group_events.mean().unwrap_or(0.0),
        st.sync_latency_us.count(),
        st.sync_latency_us.mean().unwrap_or(0.0),
        st.segment_rolls,
        st.spare_misses
    );
    println!(
        "committer: idle {:.2} s, writing {:.2} s, syncing {:.2} s, waiting for seals {:.2} s",
        st.committer_idle_us as f64 / 1e6,
        st.committer_write_us as f64 / 1e6,
        st.sync_latency_us.sum as f64 / 1e6,
        st.seal_wait_us as f64 / 1e6
    );
    println!(
        "sync histogram (us): {:?}",
        st.sync_latency_us
            .bounds
            .iter()
            .zip(&st.sync_latency_us.counts)
            .filter(|(_, c)| **c > 0)
            .collect::<Vec<_>>()
    );
    store.close().unwrap();
}
