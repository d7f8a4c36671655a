//! The heap an open segment's in-memory index holds per record, and what
//! loading it costs, measured with a counting allocator.
//!
//! ```sh
//! cargo run --release -p sealog-benches --example open_index_memory -- [RECORDS] [ACTORS]
//! ```
//!
//! Appends RECORDS (default 200,000) generated events from ACTORS distinct
//! actors (default 10,000, skewed) to one open segment, queries once so the
//! index covers them all, and prints the live heap per record; then closes
//! the store (which writes the index snapshot), opens it read-only (which
//! loads the snapshot) and prints the heap and the time of that open and of
//! a first one-actor page. Run it on two builds to compare their indexes:
//! the rest of what the store keeps per record is the same.

#![allow(clippy::unwrap_used, reason = "a benchmark driver fails loudly")]
#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; it only forwards to the system's"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use sealog::query::{ActorFilter, Order, Query};
use sealog::workload::{Workload, WorkloadShape};
use sealog::{Durability, Store, StoreOptions};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same
// arguments; only a counter is updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let records = args.first().copied().unwrap_or(200_000);
    let actors = args.get(1).copied().unwrap_or(10_000);
    let dir = sealog_benches::bench_dir("open-index-memory");
    let options = || StoreOptions {
        // One open segment holds every record.
        segment_size: 1 << 30,
        preallocation: sealog::Preallocation::None,
        ..StoreOptions::default()
    };
    let workload = Workload::with_shape(
        7,
        WorkloadShape {
            actors,
            total: records,
            ..WorkloadShape::default()
        },
    );
    let page = Query {
        actor: Some(ActorFilter {
            kind: Some("user".into()),
            id: Workload::actor_id(0),
        }),
        order: Order::NewestFirst,
        limit: 10,
        ..Query::default()
    };
    {
        let before = live();
        let store = Store::open(dir.path(), options()).unwrap();
        let mut at = 0;
        while at < records {
            let to = (at + 5_000).min(records);
            store
                .append_batch_with(workload.events(at, to), Durability::Buffered)
                .unwrap();
            at = to;
        }
        // A query brings the index up to date with every record.
        store.query(&page).unwrap();
        assert_eq!(store.stats().sealed_segments, 0);
        let held = live() - before;
        println!(
            "writer: {records} records, {actors} actors: {:.1} MiB live, {:.1} B per record",
            held as f64 / (1 << 20) as f64,
            held as f64 / records as f64
        );
    }
    let before = live();
    let started = Instant::now();
    let store = Store::open_read_only(dir.path()).unwrap();
    let opened = started.elapsed();
    let started = Instant::now();
    let first = store.query(&page).unwrap();
    let paged = started.elapsed();
    let held = live() - before;
    println!(
        "read-only open from the snapshot: {:.1} ms, first page of {} in {:.2} ms; \
         {:.1} MiB live, {:.1} B per record",
        opened.as_secs_f64() * 1e3,
        first.records.len(),
        paged.as_secs_f64() * 1e3,
        held as f64 / (1 << 20) as f64,
        held as f64 / records as f64
    );
}
