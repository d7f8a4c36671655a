//! Query benchmark over a large generated store.
//!
//! ```sh
//! # build a store of 100M ~300-byte events (10k skewed actors, 200 actions,
//! # 1M resources, 90 days): ~35 GB, a few minutes
//! cargo run --release -p sealog-benches --example query_bench -- generate /path/to/store 100000000
//! # time the incident questions (p50/p99 over many parameter draws) and
//! # report bytes per event; time proofs
//! cargo run --release -p sealog-benches --example query_bench -- run /path/to/store
//! # only the grouped counts (`Store::count_by`)
//! cargo run --release -p sealog-benches --example query_bench -- count-by /path/to/store
//! # full verification against the signed checkpoints, with throughput
//! cargo run --release -p sealog-benches --example query_bench -- verify /path/to/store [log-only]
//! # the three-predicate query with the store's files evicted from the page
//! # cache (posix_fadvise DONTNEED on every file) before each draw, then the
//! # same draw again warm
//! cargo run --release -p sealog-benches --example query_bench -- cold /path/to/store 20
//! ```
//!
//! `QUERY_BENCH_DAYS` (default 90) sets the event-time window the events
//! are spread over; give `generate` and the other commands the same value.
//! `QUERY_BENCH_SEGMENT_MIB` (default 64) sets `generate`'s segment size:
//! a 10M-event store of 7 MiB segments has the ~470 sealed segments of a
//! 100M-event store of 64 MiB ones, for measuring per-segment costs
//! without 35 GB of disk.
//! A 10M-event store over 9 days has the events per day, and so the
//! matches per one-day query, of a 100M-event store over 90 days.
//! `QUERY_BENCH_COMPRESS=<zstd level>` makes `generate` compress the sealed
//! segments as it goes (after every 2.5M events, on the appending thread
//! that passed the mark, which holds the other back little), so that a
//! compressed 100M-event store (~12 GB) needs little more disk than it
//! takes in the end.
//!
//! The store is signed with a fixed benchmark key (a checkpoint per sealed
//! segment) so that proofs and verification can be measured.

#![allow(clippy::unwrap_used, reason = "a benchmark driver fails loudly")]

use std::path::Path;
use std::time::Instant;

use sealog::aggregate::CountField;
use sealog::format::{Outcome, Timestamp};
use sealog::query::{ActionPattern, ActorFilter, Order, Query};
use sealog::workload::{Workload, WorkloadShape, percentile};
use sealog::{Durability, Store, StoreOptions};

const SEED: u64 = 2026;
const DAY: i64 = 24 * 3600 * 1_000_000_000;

fn key() -> sealog::format::note::SigningKey {
    sealog::format::note::SigningKey::from_seed("bench.sealog", &[42u8; 32]).unwrap()
}

fn options() -> StoreOptions {
    let segment_size = std::env::var("QUERY_BENCH_SEGMENT_MIB")
        .ok()
        .map_or(64 << 20, |m| {
            m.parse::<u64>()
                .expect("QUERY_BENCH_SEGMENT_MIB is a number of MiB")
                << 20
        });
    StoreOptions {
        segment_size,
        checkpoints: Some(sealog::CheckpointOptions {
            every: None,
            ..sealog::CheckpointOptions::new(key())
        }),
        ..StoreOptions::default()
    }
}

fn shape(total: u64) -> WorkloadShape {
    let days: i64 = std::env::var("QUERY_BENCH_DAYS").ok().map_or(90, |d| {
        d.parse().expect("QUERY_BENCH_DAYS is a number of days")
    });
    WorkloadShape {
        total,
        time_span: days * DAY,
        ..WorkloadShape::default()
    }
}

fn generate(dir: &Path, total: u64) {
    let store = Store::open(dir, options()).unwrap();
    let start_at = store.len();
    let w = Workload::with_shape(SEED, shape(total));
    let started = Instant::now();
    let batch = 5_000u64;
    let threads = 2u64;
    let next = std::sync::atomic::AtomicU64::new(start_at);
    let compress = std::env::var("QUERY_BENCH_COMPRESS")
        .ok()
        .map(|l| sealog::Compression::Zstd {
            level: l.parse().expect("QUERY_BENCH_COMPRESS is a zstd level"),
        });
    let compressing = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let events = w.events(i, (i + batch).min(total));
                    store
                        .append_batch_with(events, Durability::Buffered)
                        .unwrap();
                    if i > start_at && i.is_multiple_of(5_000_000) {
                        let secs = started.elapsed().as_secs_f64();
                        eprintln!("{i} events, {:.0}/s", (i - start_at) as f64 / secs);
                    }
                    if let Some(compression) = compress
                        && i > start_at
                        && i.is_multiple_of(2_500_000)
                    {
                        let _one = compressing.lock().unwrap();
                        store.compress_sealed(compression).unwrap();
                    }
                }
            });
        }
    });
    store.wait_sealed().unwrap();
    if let Some(compression) = compress {
        store.compress_sealed(compression).unwrap();
    }
    store.checkpoint().unwrap();
    eprintln!(
        "generated {} events in {:.0} s",
        store.len(),
        started.elapsed().as_secs_f64()
    );
    store.close().unwrap();
}

fn time<F: FnMut(u64) -> u64>(name: &str, runs: u64, mut f: F) {
    let mut times = Vec::with_capacity(runs as usize);
    let mut total = 0;
    for i in 0..runs {
        let t = Instant::now();
        total += f(i);
        times.push(t.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    let ms = |p: f64| percentile(&times, p) as f64 / 1e6;
    println!(
        "{name:<58} p50 {:>9.3} ms   p99 {:>9.3} ms   ({runs} runs, {:.1} results/run)",
        ms(0.5),
        ms(0.99),
        total as f64 / runs as f64
    );
}

fn dir_bytes(dir: &Path, filter: &dyn Fn(&str) -> bool) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_bytes(&path, filter);
        } else if filter(&path.to_string_lossy()) {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

fn run(dir: &Path) {
    let opened = Instant::now();
    let store = Store::open_read_only(dir).unwrap();
    println!(
        "opened {} events in {:.1} ms",
        store.len(),
        opened.elapsed().as_secs_f64() * 1e3
    );
    let n = store.len();
    let w = Workload::with_shape(SEED, shape(n));
    let start = w.shape().time_start.as_nanos();
    let span = w.shape().time_span;
    // Actors drawn like events are: a random event's actor.
    let actor_of = |i: u64| w.event(i.wrapping_mul(0x9E37_79B9) % n).actor;
    let mut rng = 0x1234_5678_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };

    // Warm: open each segment's index once.
    let warm = Instant::now();
    let _ = store
        .count(&Query {
            outcome: Some(Outcome::Denied),
            ..Query::default()
        })
        .unwrap();
    println!(
        "first query (opens every segment index): {:.1} ms",
        warm.elapsed().as_secs_f64() * 1e3
    );

    time(
        "newest 100 events of one actor (actors drawn by activity)",
        200,
        |i| {
            let a = actor_of(i * 7919 + 1);
            let q = Query {
                actor: Some(ActorFilter {
                    kind: Some(a.kind),
                    id: a.id,
                }),
                limit: 100,
                ..Query::default()
            };
            store.query(&q).unwrap().records.len() as u64
        },
    );
    for rank in [0u64, 100, 1000, 9999] {
        let id = Workload::actor_id(rank);
        let kind = if rank % 50 == 49 { "service" } else { "user" };
        time(
            &format!("newest 100 events of actor rank {rank}"),
            50,
            |_| {
                let q = Query {
                    actor: Some(ActorFilter {
                        kind: Some(kind.into()),
                        id: id.clone(),
                    }),
                    limit: 100,
                    ..Query::default()
                };
                store.query(&q).unwrap().records.len() as u64
            },
        );
    }
    let actions: Vec<String> = w.actions().map(str::to_owned).collect();
    time(
        "action + outcome + tenant, 1-day range (newest 100)",
        200,
        |_| {
            let q = three_predicates(&actions, start, span, &mut next);
            store.query(&q).unwrap().records.len() as u64
        },
    );
    time("count outcome=denied in a 7-day range", 100, |_| {
        let day = start + (next() % (span / DAY - 7) as u64) as i64 * DAY;
        let q = Query {
            outcome: Some(Outcome::Denied),
            from: Some(Timestamp::from_nanos(day)),
            to: Some(Timestamp::from_nanos(day + 7 * DAY)),
            ..Query::default()
        };
        store.count(&q).unwrap()
    });
    count_by_cases(&store, start, span, &mut next);
    time(
        "actions matching *.export in a 1-day range (newest 100)",
        100,
        |_| {
            let day = start + (next() % (span / DAY) as u64) as i64 * DAY;
            let q = Query {
                actions: vec![ActionPattern::new("*.export").unwrap()],
                from: Some(Timestamp::from_nanos(day)),
                to: Some(Timestamp::from_nanos(day + DAY)),
                limit: 100,
                ..Query::default()
            };
            store.query(&q).unwrap().records.len() as u64
        },
    );

    time(
        "newest 100 by event time (order=time, no filter)",
        100,
        |_| {
            let q = Query {
                order: Order::LatestTimeFirst,
                limit: 100,
                ..Query::default()
            };
            store.query(&q).unwrap().records.len() as u64
        },
    );
    time("one actor's newest 100 by event time", 100, |i| {
        let a = actor_of(i);
        let q = Query {
            actor: Some(ActorFilter {
                kind: Some(a.kind),
                id: a.id,
            }),
            order: Order::LatestTimeFirst,
            limit: 100,
            ..Query::default()
        };
        store.query(&q).unwrap().records.len() as u64
    });

    let size = store.tree_size();
    time(
        "inclusion proof of a random record at the current size",
        200,
        |_| store.inclusion_proof(next() % size, size).unwrap().len() as u64,
    );
    time("consistency proof between two random sizes", 200, |_| {
        let old = 1 + next() % (size - 1);
        store.consistency_proof(old, size).unwrap().len() as u64
    });
    time(
        "receipt (record + inclusion proof + checkpoint)",
        200,
        |_| store.receipt(next() % size).unwrap().len() as u64,
    );

    let segments = dir_bytes(dir, &|p| p.ends_with(".seg"));
    let indexes = dir_bytes(dir, &|p| p.ends_with(".idx"));
    let leaves = dir_bytes(&dir.join("tree"), &|_| true);
    let total = dir_bytes(dir, &|_| true);
    let per = |b: u64| b as f64 / n as f64;
    println!(
        "bytes per event: segments {:.1}, indexes {:.1}, leaf hashes {:.1}, total {:.1} ({} events, {:.2} GB)",
        per(segments),
        per(indexes),
        per(leaves),
        per(total),
        n,
        total as f64 / 1e9
    );
}

/// Action + outcome + tenant in a random one-day range, newest 100.
fn three_predicates(
    actions: &[String],
    start: i64,
    span: i64,
    next: &mut dyn FnMut() -> u64,
) -> Query {
    let day = start + (next() % (span / DAY) as u64) as i64 * DAY;
    Query {
        actions: vec![
            ActionPattern::new(actions[(next() % actions.len() as u64) as usize].clone()).unwrap(),
        ],
        outcome: Some(Outcome::Success),
        tenant: Some(format!("tenant-{:03}", next() % 100)),
        from: Some(Timestamp::from_nanos(day)),
        to: Some(Timestamp::from_nanos(day + DAY)),
        limit: 100,
        ..Query::default()
    }
}

/// Drops every file under `dir` from the page cache (pages mapped by a
/// live process stay).
fn evict(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            evict(&path);
        } else if let Ok(file) = std::fs::File::open(&path) {
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        }
    }
}

/// The tenant after `tenant` (`tenant-041` → `tenant-042`, `tenant-099` →
/// `tenant-000`): another that exists.
fn other_tenant(tenant: &str) -> String {
    let n: u64 = tenant
        .strip_prefix("tenant-")
        .and_then(|n| n.parse().ok())
        .expect("a generated tenant");
    format!("tenant-{:03}", (n + 1) % 100)
}

/// What a cold draw reads before the query is timed.
#[derive(Clone, Copy, PartialEq)]
enum Warmup {
    /// Nothing: the store is opened and no segment's index is mapped yet
    /// (a server's first query).
    Opened,
    /// Every segment's index mapped by a count over the whole store (the
    /// warm-up of `run`).
    Mapped,
    /// As `Mapped`, and `count` of the same query and a page of the same
    /// query for another tenant read (and check) the index sections it
    /// needs without reading its records.
    Sections,
}

/// One cold draw of the three-predicate query: the store's files are
/// evicted, the store is opened and warmed up as `warmup` says. The files
/// are evicted again (pages the store has mapped stay, as in a running
/// server), and the query is timed cold, then warm.
/// Returns (open + warm-up, cold, CPU time of every thread of the process
/// during the cold query, warm, results).
fn cold_draw(dir: &Path, q: &Query, warmup: Warmup) -> (u64, u64, u64, u64, usize) {
    evict(dir);
    let t = Instant::now();
    let store = Store::open_read_only(dir).unwrap();
    if warmup != Warmup::Opened {
        let _ = store
            .count(&Query {
                outcome: Some(Outcome::Denied),
                ..Query::default()
            })
            .unwrap();
    }
    let opened = t.elapsed().as_nanos() as u64;
    if warmup == Warmup::Sections {
        let _ = store.count(q).unwrap();
        // A page of the same day and predicates for another tenant reads
        // and checks the sections a page needs beyond those of a count
        // (event times, frame offsets) in the same segments, and other
        // records: what a server that has answered queries over these
        // segments before holds in memory.
        let other = Query {
            tenant: q.tenant.as_ref().map(|t| other_tenant(t)),
            ..q.clone()
        };
        let _ = store.query(&other).unwrap();
    }
    evict(dir);
    let cpu = process_cpu();
    let t = Instant::now();
    let page = store.query(q).unwrap();
    let cold = t.elapsed().as_nanos() as u64;
    let cold_cpu = process_cpu() - cpu;
    let t = Instant::now();
    let again = store.query(q).unwrap();
    let warm = t.elapsed().as_nanos() as u64;
    assert_eq!(page.records, again.records);
    (opened, cold, cold_cpu, warm, page.records.len())
}

/// The CPU time every thread of this process has used, in nanoseconds.
fn process_cpu() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The three-predicate query cold, `runs` draws: with only the records
/// cold (the index sections the query needs already read), and with those
/// index sections cold too.
fn cold(dir: &Path, runs: u64) {
    let mut rng = 0x1234_5678_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (n, w) = {
        let store = Store::open_read_only(dir).unwrap();
        let n = store.len();
        (n, Workload::with_shape(SEED, shape(n)))
    };
    let actions: Vec<String> = w.actions().map(str::to_owned).collect();
    let (start, span) = (w.shape().time_start.as_nanos(), w.shape().time_span);
    let mut times: [Vec<u64>; 8] = Default::default();
    let mut matches = 0;
    for _ in 0..runs {
        let q = three_predicates(&actions, start, span, &mut next);
        let (_, unopened, unopened_cpu, _, _) = cold_draw(dir, &q, Warmup::Opened);
        let (opened, cold_all, cold_all_cpu, _, _) = cold_draw(dir, &q, Warmup::Mapped);
        let (_, cold_records, cold_records_cpu, warm, found) = cold_draw(dir, &q, Warmup::Sections);
        for (v, t) in times.iter_mut().zip([
            opened,
            unopened,
            cold_all,
            cold_records,
            warm,
            unopened_cpu,
            cold_all_cpu,
            cold_records_cpu,
        ]) {
            v.push(t);
        }
        matches += found;
    }
    let names = [
        "open + first query, after eviction",
        "3 predicates, 1 day: indexes not opened yet, cold",
        "3 predicates, 1 day: index sections and records cold",
        "3 predicates, 1 day: records cold",
        "3 predicates, 1 day: warm",
        "  CPU time of: indexes not opened yet, cold",
        "  CPU time of: index sections and records cold",
        "  CPU time of: records cold",
    ];
    println!("{n} events, {runs} draws");
    for (name, t) in names.iter().zip(times.iter_mut()) {
        let all: Vec<String> = t
            .iter()
            .map(|t| format!("{:.2}", *t as f64 / 1e6))
            .collect();
        t.sort_unstable();
        println!(
            "{name:<54} p50 {:>8.3} ms  (ms: {})",
            percentile(t, 0.5) as f64 / 1e6,
            all.join(" ")
        );
    }
    println!("{:.1} results per query", matches as f64 / runs as f64);
}

/// The grouped counts: results/run is the total counted.
fn count_by_cases(store: &Store, start: i64, span: i64, next: &mut dyn FnMut() -> u64) {
    let mut week = || {
        let day = start + (next() % (span / DAY - 7) as u64) as i64 * DAY;
        (
            Some(Timestamp::from_nanos(day)),
            Some(Timestamp::from_nanos(day + 7 * DAY)),
        )
    };
    let case = |name: &str, runs: u64, field: CountField, query: &mut dyn FnMut() -> Query| {
        time(name, runs, |_| {
            store.count_by(&query(), field, 20).unwrap().total
        });
    };
    case(
        "count-by actor of outcome=denied, 7-day range (top 20)",
        50,
        CountField::Actor,
        &mut || {
            let (from, to) = week();
            Query {
                outcome: Some(Outcome::Denied),
                from,
                to,
                ..Query::default()
            }
        },
    );
    case(
        "count-by action, whole store (top 20)",
        20,
        CountField::Action,
        &mut Query::default,
    );
    case(
        "count-by day of outcome=denied, 7-day range",
        50,
        CountField::Day,
        &mut || {
            let (from, to) = week();
            Query {
                outcome: Some(Outcome::Denied),
                from,
                to,
                ..Query::default()
            }
        },
    );
    case(
        "count-by tenant of actions *.export, whole store",
        20,
        CountField::Tenant,
        &mut || Query {
            actions: vec![ActionPattern::new("*.export").unwrap()],
            ..Query::default()
        },
    );
}

fn count_by_only(dir: &Path) {
    let store = Store::open_read_only(dir).unwrap();
    let n = store.len();
    let w = Workload::with_shape(SEED, shape(n));
    let (start, span) = (w.shape().time_start.as_nanos(), w.shape().time_span);
    let mut rng = 0x1234_5678_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Warm: open each segment's index once.
    let _ = store.count(&Query::default()).unwrap();
    println!("{n} events");
    count_by_cases(&store, start, span, &mut next);
}

fn verify(dir: &Path, log_only: bool) {
    let options = sealog::VerifyOptions {
        public_key: Some(key().verifier()),
        checkpoints: Vec::new(),
        log_only,
    };
    let report = sealog::verify_dir_with(dir, &options).unwrap();
    let secs = report.elapsed.as_secs_f64();
    println!(
        "verified {} records in {} segments ({:.2} GB) and {} signed checkpoints in {:.1} s: {:.2} GB/s, {:.0} records/s",
        report.records,
        report.segments,
        report.bytes as f64 / 1e9,
        report.checkpoints,
        secs,
        report.bytes as f64 / 1e9 / secs,
        report.records as f64 / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("generate"), Some(dir)) => {
            let total = args
                .get(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(100_000_000);
            generate(Path::new(dir), total);
        }
        (Some("run"), Some(dir)) => run(Path::new(dir)),
        (Some("verify"), Some(dir)) => {
            verify(Path::new(dir), args.get(3).is_some_and(|a| a == "log-only"))
        }
        (Some("count-by"), Some(dir)) => count_by_only(Path::new(dir)),
        (Some("cold"), Some(dir)) => {
            let runs = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
            cold(Path::new(dir), runs);
        }
        _ => {
            eprintln!(
                "usage: query_bench generate DIR [EVENTS] | run DIR | count-by DIR | verify DIR \
                 | cold DIR [RUNS]"
            );
            std::process::exit(2);
        }
    }
}
