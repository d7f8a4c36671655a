//! Engine benchmarks: encoding, hashing, durable batch appends and
//! concurrent single-event appends. Results feed `docs/benchmarks.md`.
//!
//! `cargo bench -p sealog-benches --bench engine`

#![allow(clippy::unwrap_used, reason = "benchmarks fail loudly")]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealog::workload::Workload;
use sealog::{Store, StoreOptions};
use sealog_format::{Timestamp, chain, merkle, record};

fn encode(c: &mut Criterion) {
    let w = Workload::new(1);
    let event = w.event(42);
    let body = record::encode(&event, 1, Timestamp::now()).unwrap();
    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("encode_{}_byte_record", body.len()), |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            record::encode_prefix(&event, &mut out).unwrap();
            out.extend_from_slice(&record::encode_trailer(1, Timestamp::UNIX_EPOCH));
            std::hint::black_box(&out);
        });
    });
    g.bench_function("check_fields_as_the_store_does", |b| {
        let validator = sealog_format::Validator::default();
        b.iter(|| std::hint::black_box(validator.check_fields(&event).unwrap()));
    });
    g.bench_function("validate_owned_including_drop", |b| {
        let validator = sealog_format::Validator::default();
        b.iter_batched(
            || event.clone(),
            |mut e| validator.validate(&mut e).unwrap(),
            criterion::BatchSize::SmallInput,
        );
    });
    g.bench_function("leaf_hash_and_chain_link", |b| {
        let mut head = [0u8; 32];
        b.iter(|| {
            let leaf = merkle::leaf_hash(&body);
            head = chain::link(&head, &leaf);
            std::hint::black_box(&head);
        });
    });
    g.bench_function("decode", |b| {
        b.iter(|| std::hint::black_box(record::decode(&body).unwrap()));
    });
    g.finish();
}

fn batch_append(c: &mut Criterion) {
    let dir = sealog_benches::bench_dir("batch");
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = Workload::new(2);
    let batches: Vec<_> = (0..64)
        .map(|i| w.events(i * 1000, i * 1000 + 1000))
        .collect();
    let mut g = c.benchmark_group("append_batch");
    g.throughput(Throughput::Elements(1000));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(10));
    let mut i = 0;
    g.bench_function("durable_1000_events", |b| {
        b.iter(|| {
            store
                .append_batch(batches[i % batches.len()].clone())
                .unwrap();
            i += 1;
        });
    });
    g.finish();
    drop(store);
}

fn concurrent_singles(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_appends");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for threads in [1usize, 16, 256] {
        let dir = sealog_benches::bench_dir("singles");
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let w = Workload::new(3);
        let per_thread = (16_384 / threads).max(64) as u64;
        g.throughput(Throughput::Elements(per_thread * threads as u64));
        g.bench_with_input(
            BenchmarkId::new("durable_threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        std::thread::scope(|s| {
                            for t in 0..threads {
                                let store = &store;
                                let w = &w;
                                s.spawn(move || {
                                    for k in 0..per_thread {
                                        store.append(w.event(t as u64 * per_thread + k)).unwrap();
                                    }
                                });
                            }
                        });
                        total += start.elapsed();
                    }
                    total
                });
            },
        );
    }
    g.finish();
}

/// Reopening a store whose active (unsealed) segment is nearly full: the
/// worst case, since only unsealed segments are scanned on open.
fn reopen(c: &mut Criterion) {
    let dir = sealog_benches::bench_dir("reopen");
    let w = Workload::new(4);
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // ~300-byte events: 64 MiB holds ~210k; fill the first segment to ~95%.
        for i in 0..200 {
            store
                .append_batch(w.events(i * 1000, i * 1000 + 1000))
                .unwrap();
        }
        assert_eq!(store.stats().segments, 1);
        store.close().unwrap();
    }
    let mut g = c.benchmark_group("reopen");
    g.sample_size(10);
    g.bench_function("active_segment_200k_events_61MiB", |b| {
        b.iter(|| {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            std::hint::black_box(store.len());
            store.close().unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, encode, batch_append, concurrent_singles, reopen);
criterion_main!(benches);
