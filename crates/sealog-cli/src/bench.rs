//! `sealog bench`: the write-throughput benchmark of an embedded store, the
//! generator of the benchmark's events for peer comparisons, and (`--http`,
//! in [`crate::bench_http`]) the request-path benchmark of a running server.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use clap::{Args, ValueEnum};
use sealog::workload::{Workload, WorkloadShape, percentile};
use sealog::{Durability, Preallocation, Store};

use crate::common::{Global, Out, bytes, rate, thousands};
use crate::error::CliError;
use crate::render::{CSV_COLUMNS, event_csv_fields};

const AFTER_HELP: &str = "\
Creates a fresh store in a temporary directory (under --dir, or next to
--data-dir), appends --events synthetic audit events of about --event-size
bytes from --threads threads in batches of --batch, and removes the store
afterwards unless --keep. The events come from sealog's workload generator
(skewed actors, a few hundred actions, tenants, source addresses, user
agents, request ids, metadata padding); they are generated before the clock
starts, so only the store is measured.

Reports events/s, MB/s (10^6 bytes of frames written per second), the
latency of each append call (p50, p95, p99, max; one call appends one
batch), and from the engine's counters the syncs (fdatasync) per second and
the mean number of events made durable by one sync. With
--durability buffered, appends return before their sync; the final sync on
close is reported separately.

--http URL measures the request path of a running `sealog serve` instead:
for each --connections count, three rows of --duration seconds each, GET
/healthz, POST /v1/events with one event of about 200 bytes (durable before
its answer), and GET /v1/events?actor=ACTOR&limit=10 (recorded durably
before its answer), printing requests/s, latency percentiles, each row's
ratio to /healthz and the server's CPU time per request (every thread of
it, from process_cpu_seconds_total of its /metrics). The posted events
are written to that server's log. Its batch write throughput and query
latencies under load are measured by the load generator of the benchmarks
(`cargo run --release -p sealog-benches --bin load -- --http URL`, with
`--abuse` for load and abuse): see docs/benchmarks.md.

--emit prints the generated events instead (NDJSON, or CSV with the columns
of `sealog export --format csv` without seq and recorded_at), so other
systems can load exactly the same data (see benches/peers/).

Examples:
  sealog bench --events 1000000 --batch 1000 --threads 4
  sealog bench --events 200000 --batch 1 --threads 64 --json
  sealog bench --durability buffered --dir /mnt/nvme --keep
  sealog bench --emit csv --events 200000 > events.csv
  sealog bench --http http://127.0.0.1:7807 --connections 64,256 --duration 10";

/// Durability of the benchmark's appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Each append returns once its events are synced (group commit).
    Group,
    /// Each append returns once its events are written to the OS.
    Buffered,
}

/// Preallocation of segment files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PreallocationArg {
    /// Zero-fill segments ahead of use (the default of the engine).
    ZeroFill,
    /// Reserve space with fallocate.
    Allocate,
    /// Grow files as records are written.
    None,
}

/// What `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitFormat {
    /// One event per line, as JSON.
    Ndjson,
    /// CSV with a header line.
    Csv,
}

/// Benchmark write throughput on an embedded store, or (--http) the request
/// path of a running server.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Number of events to append (or to print with --emit).
    ///
    /// Example: --events 1000000
    #[arg(long, default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,

    /// Approximate size of each encoded record in bytes (metadata pads the
    /// events up to it).
    ///
    /// Example: --event-size 1024
    #[arg(long, default_value_t = 300, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(64..=65_536))]
    event_size: u64,

    /// Events per append call (each call is one atomic batch).
    ///
    /// Example: --batch 100
    #[arg(long, default_value_t = 1000, value_name = "B",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,

    /// Appending threads.
    ///
    /// Example: --threads 64
    #[arg(long, default_value_t = 1, value_name = "T",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,

    /// When an append returns: group (after fdatasync, shared by
    /// concurrent appends) or buffered (after the write to the OS).
    ///
    /// Example: --durability buffered
    #[arg(long, value_enum, default_value_t = DurabilityArg::Group)]
    durability: DurabilityArg,

    /// How segment files reserve space.
    ///
    /// Example: --preallocation none
    #[arg(long, value_enum, default_value_t = PreallocationArg::ZeroFill)]
    preallocation: PreallocationArg,

    /// Directory in which to create the temporary store (default: the
    /// parent directory of --data-dir).
    ///
    /// Example: --dir /mnt/nvme/tmp
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Keep the store after the benchmark (its path is printed).
    ///
    /// Example: --keep
    #[arg(long)]
    keep: bool,

    /// Print one JSON object with the results.
    ///
    /// Example: --json
    #[arg(long)]
    json: bool,

    /// Seed of the workload generator (the same seed gives the same
    /// events).
    ///
    /// Example: --seed 7
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,

    /// Print the generated events instead of benchmarking.
    ///
    /// Example: --emit csv --events 200000 > events.csv
    #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "http")]
    emit: Option<EmitFormat>,

    /// Measure the request path of a running `sealog serve` at this URL
    /// instead of an embedded store: GET /healthz, POST /v1/events with
    /// one event, and GET /v1/events?actor=ACTOR&limit=10.
    ///
    /// Example: --http http://127.0.0.1:7807
    #[arg(long, value_name = "URL")]
    http: Option<String>,

    /// With --http: keep-alive connections, one request in flight on each;
    /// a comma-separated list runs every row at each count.
    ///
    /// Example: --connections 64,256
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "64",
          requires = "http",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: Vec<u64>,

    /// With --http: seconds each row runs.
    ///
    /// Example: --duration 30
    #[arg(long, value_name = "SECS", default_value_t = 10, requires = "http",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,

    /// With --http: the bearer token, for a server with tokens (it needs
    /// the ingest and query scopes).
    ///
    /// Example: --token "$SEALOG_TOKEN"
    #[arg(
        long,
        env = "SEALOG_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        requires = "http"
    )]
    token: Option<String>,

    /// With --http: the actor (TYPE:ID) of the posted events and of the
    /// query.
    ///
    /// Example: --actor user:alice
    #[arg(
        long,
        value_name = "TYPE:ID",
        default_value = "user:alice",
        requires = "http"
    )]
    actor: String,
}

/// Largest pool of distinct pre-generated events; longer runs reuse it.
const POOL_MAX: u64 = 1_000_000;

fn workload(args: &BenchArgs) -> Workload {
    Workload::with_shape(
        args.seed,
        WorkloadShape {
            event_size: usize::try_from(args.event_size).unwrap_or(300),
            total: args.events,
            ..WorkloadShape::default()
        },
    )
}

pub fn run(global: &Global, args: BenchArgs) -> Result<(), CliError> {
    if let Some(url) = &args.http {
        return crate::bench_http::run(&crate::bench_http::HttpBench {
            url: url.clone(),
            connections: args.connections.clone(),
            duration: std::time::Duration::from_secs(args.duration),
            token: args.token.clone(),
            actor: args.actor.clone(),
            json: args.json,
        });
    }
    match args.emit {
        Some(format) => emit(&args, format),
        None => bench(global, &args),
    }
}

fn emit(args: &BenchArgs, format: EmitFormat) -> Result<(), CliError> {
    let w = workload(args);
    let mut out = Out::new();
    match format {
        EmitFormat::Ndjson => {
            for i in 0..args.events {
                out.json_line(&w.event(i))?;
            }
        }
        EmitFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out.writer());
            let to_err = |e: csv::Error| match e.into_kind() {
                csv::ErrorKind::Io(io) => CliError::stdout(io),
                other => CliError::stdout(std::io::Error::other(format!("{other:?}"))),
            };
            csv.write_record(CSV_COLUMNS.get(2..).unwrap_or_default())
                .map_err(to_err)?;
            for i in 0..args.events {
                csv.write_record(event_csv_fields(&w.event(i)))
                    .map_err(to_err)?;
            }
            csv.flush().map_err(CliError::stdout)?;
        }
    }
    out.flush()
}

fn bench(global: &Global, args: &BenchArgs) -> Result<(), CliError> {
    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => match global.data_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    std::fs::create_dir_all(&parent).map_err(|source| CliError::Write {
        op: "create the benchmark directory",
        path: parent.clone(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix("sealog-bench-")
        .tempdir_in(&parent)
        .map_err(|source| CliError::Write {
            op: "create a temporary store in",
            path: parent.clone(),
            source,
        })?;
    let dir = tmp.path().to_path_buf();

    // Pre-generate a pool whose size is a multiple of the batch, so every
    // batch is one contiguous slice of it.
    let pool_target = args.events.min(POOL_MAX).max(args.batch);
    let pool_len = pool_target.div_ceil(args.batch) * args.batch;
    let pool = workload(args).generate(pool_len);
    let pool_len = pool.len() as u64;

    let durability = match args.durability {
        DurabilityArg::Group => Durability::Group,
        DurabilityArg::Buffered => Durability::Buffered,
    };
    let mut options = global.store_options()?;
    options.durability = durability;
    options.preallocation = match args.preallocation {
        PreallocationArg::ZeroFill => Preallocation::ZeroFill,
        PreallocationArg::Allocate => Preallocation::Allocate,
        PreallocationArg::None => Preallocation::None,
    };
    let store = Store::open(&dir, options)
        .map_err(|e| CliError::store("opening the benchmark store", &dir, e))?;

    let next_batch = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<sealog::Error>> = Mutex::new(None);
    let latencies: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let k = next_batch.fetch_add(1, Ordering::Relaxed);
                    let first = k.saturating_mul(args.batch);
                    if first >= args.events {
                        break;
                    }
                    let len = args.batch.min(args.events - first);
                    let start = (first % pool_len) as usize;
                    let Some(slice) = pool.get(start..start + len as usize) else {
                        break;
                    };
                    let t = Instant::now();
                    if let Err(e) = store.append_batch_with(slice, durability) {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                    mine.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
                if let Ok(mut l) = latencies.lock() {
                    l.extend(mine);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(CliError::store("append", &dir, e));
    }
    let stats = store.stats();
    let close_started = Instant::now();
    store
        .close()
        .map_err(|e| CliError::store("closing the benchmark store", &dir, e))?;
    let close_secs = close_started.elapsed().as_secs_f64();

    let mut lat = latencies.into_inner().unwrap_or_default();
    lat.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    let secs = elapsed.as_secs_f64();
    let events = stats.appended_events;
    let fsyncs = stats.sync_latency_us.count();
    let result = serde_json::json!({
        "events": events,
        "event_size": args.event_size,
        "batch": args.batch,
        "threads": args.threads,
        "durability": match args.durability {
            DurabilityArg::Group => "group",
            DurabilityArg::Buffered => "buffered",
        },
        "elapsed_secs": secs,
        "events_per_sec": rate(events as f64, secs),
        "mb_per_sec": rate(stats.written_bytes as f64 / 1e6, secs),
        "record_bytes_mean": if events > 0 { stats.written_bytes as f64 / events as f64 } else { 0.0 },
        "appends": lat.len(),
        "p50_us": us(percentile(&lat, 0.50)),
        "p95_us": us(percentile(&lat, 0.95)),
        "p99_us": us(percentile(&lat, 0.99)),
        "max_us": us(lat.last().copied().unwrap_or(0)),
        "fsyncs": fsyncs,
        "fsyncs_per_sec": rate(fsyncs as f64, secs),
        "events_per_fsync": (fsyncs > 0).then(|| events as f64 / fsyncs as f64),
        "sync_mean_us": stats.sync_latency_us.mean(),
        "commit_groups": stats.commit_groups,
        "segment_rolls": stats.segment_rolls,
        "close_secs": close_secs,
        "dir": dir,
        "kept": args.keep,
    });
    if args.keep {
        let _ = tmp.keep();
    } else {
        drop(tmp);
    }
    let mut out = Out::new();
    if args.json {
        out.json_line(&result)?;
        return out.flush();
    }
    let f = |key: &str| {
        result
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    out.line(&format!(
        "sealog bench: {} events of ~{} bytes, batch {}, {} threads, durability {}",
        thousands(events),
        args.event_size,
        args.batch,
        args.threads,
        result["durability"].as_str().unwrap_or_default()
    ))?;
    out.line(&format!(
        "  store          {} ({})",
        dir.display(),
        if args.keep { "kept" } else { "removed" }
    ))?;
    out.line(&format!(
        "  throughput     {} events/s, {:.1} MB/s ({} written in {secs:.2} s)",
        thousands(f("events_per_sec").round() as u64),
        f("mb_per_sec"),
        bytes(stats.written_bytes)
    ))?;
    out.line(&format!(
        "  append call    p50 {:.0} us, p95 {:.0} us, p99 {:.0} us, max {:.0} us ({} calls)",
        f("p50_us"),
        f("p95_us"),
        f("p99_us"),
        f("max_us"),
        thousands(lat.len() as u64)
    ))?;
    out.line(&format!(
        "  syncs          {} ({:.0}/s, mean {:.0} us), {:.1} events per sync",
        thousands(fsyncs),
        f("fsyncs_per_sec"),
        f("sync_mean_us"),
        f("events_per_fsync")
    ))?;
    out.line(&format!(
        "  commit groups  {}, segment rolls {}, close {close_secs:.2} s",
        thousands(stats.commit_groups),
        stats.segment_rolls
    ))?;
    out.flush()
}
