//! What compressing sealed segments would save and cost: the measurement
//! behind the "fewer bytes per event" item of the performance work, made
//! before choosing an on-disk format for it.
//!
//! ```sh
//! # a store of the realistic workload (default event size ~300 bytes;
//! # 0 leaves out the metadata padding, keeping only the real fields)
//! cargo run --release -p sealog-benches --example compression -- generate /tmp/c300 1000000 300
//! cargo run --release -p sealog-benches --example compression -- measure /tmp/c300 3
//! ```
//!
//! `measure` takes the store's first sealed segments (3 by default) and,
//! for each combination of block size, zstd level and dictionary, cuts the
//! frames into blocks of whole frames, compresses every block on its own
//! (one block is what a point read would decompress), and reports bytes
//! per event (the compressed blocks, 8 bytes of block index per block and
//! the dictionary), compression and decompression speed on one core, and
//! the median cost of reading one random record (decompress its block,
//! find the frame, no cache). It also states the store's other bytes per
//! event (index sidecars, tree files) so the total can be projected.
//!
//! `reads DIR [THREADS] [SECONDS]` measures random record reads
//! (`Store::get`) on a store as it is (compressed with `sealog compress`
//! or not) from THREADS threads at once (2, 5 s by default): first spread
//! over every record, then within the newest sealed segment only, where
//! concurrent reads meet in one segment (and, compressed, in its block
//! decoders), then within the open segment.

use std::path::Path;
use std::time::Instant;

use sealog::workload::{Workload, WorkloadShape, percentile};
use sealog::{Durability, Store, StoreOptions};
use sealog_format::frame::{FrameRead, read_frame};
use sealog_format::segment::{END_MARKER_LEN, FOOTER_LEN, HEADER_LEN};

const USAGE: &str = "usage: compression generate DIR EVENTS [EVENT_SIZE] | compression measure DIR \
                     [SEGMENTS] | compression reads DIR [THREADS] [SECONDS]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("generate"), Some(dir)) => {
            let events = arg(2).map_or(1_000_000, |n| n.parse().expect("EVENTS is a number"));
            let size = arg(3).map_or(300, |n| n.parse().expect("EVENT_SIZE is a number"));
            generate(Path::new(dir), events, size);
        }
        (Some("measure"), Some(dir)) => {
            let segments = arg(2).map_or(3, |n| n.parse().expect("SEGMENTS is a number"));
            measure(Path::new(dir), segments);
        }
        (Some("reads"), Some(dir)) => {
            let threads = arg(2).map_or(2, |n| n.parse().expect("THREADS is a number"));
            let secs = arg(3).map_or(5, |n| n.parse().expect("SECONDS is a number"));
            reads(Path::new(dir), threads, secs);
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn generate(dir: &Path, total: u64, event_size: usize) {
    let store = Store::open(dir, StoreOptions::default()).expect("open the store");
    let w = Workload::with_shape(
        7,
        WorkloadShape {
            total,
            event_size,
            ..WorkloadShape::default()
        },
    );
    let batch = 5_000u64;
    let mut i = store.len();
    while i < total {
        let events = w.events(i, (i + batch).min(total));
        store
            .append_batch_with(events, Durability::Buffered)
            .expect("append");
        i += batch;
    }
    store.wait_sealed().expect("seal");
    eprintln!("{} events in {}", store.len(), dir.display());
    store.close().expect("close");
}

/// One sealed segment's frames: the bytes from the first frame to the end
/// marker, and where each frame starts in them.
struct Frames {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

fn sealed_frames(path: &Path) -> Frames {
    let file = std::fs::read(path).expect("read a segment");
    let end = file.len() - FOOTER_LEN - END_MARKER_LEN;
    let bytes = file
        .get(HEADER_LEN..end)
        .expect("a sealed segment")
        .to_vec();
    let mut starts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match read_frame(&bytes[at..]).expect("a valid frame") {
            FrameRead::Frame(f) => {
                starts.push(at);
                at += f.len;
            }
            FrameRead::End => break,
        }
    }
    Frames { bytes, starts }
}

/// Blocks of whole frames of at least `block` bytes (the last may be
/// shorter): the frame index each starts at.
fn cut(frames: &Frames, block: usize) -> Vec<usize> {
    let mut firsts = vec![0];
    let mut from = 0;
    for (i, &s) in frames.starts.iter().enumerate() {
        if s - from >= block {
            firsts.push(i);
            from = s;
        }
    }
    firsts
}

fn block_range(frames: &Frames, firsts: &[usize], b: usize) -> std::ops::Range<usize> {
    let start = frames.starts[firsts[b]];
    let end = firsts
        .get(b + 1)
        .map_or(frames.bytes.len(), |&f| frames.starts[f]);
    start..end
}

/// A dictionary trained on every 16th frame of the segment (~6% of it).
fn train(frames: &Frames, size: usize) -> (Vec<u8>, f64) {
    let t = Instant::now();
    let mut samples = Vec::new();
    let mut sizes = Vec::new();
    for (i, &s) in frames.starts.iter().enumerate().step_by(16) {
        let end = frames
            .starts
            .get(i + 1)
            .copied()
            .unwrap_or(frames.bytes.len());
        samples.extend_from_slice(&frames.bytes[s..end]);
        sizes.push(end - s);
    }
    let dict = zstd::dict::from_continuous(&samples, &sizes, size).expect("train a dictionary");
    (dict, t.elapsed().as_secs_f64())
}

struct Row {
    stored: u64,
    raw: u64,
    records: u64,
    compress_s: f64,
    decompress_s: f64,
    train_s: f64,
    reads_ns: Vec<u64>,
}

fn measure_one(frames: &Frames, block: usize, level: i32, dict: Option<&[u8]>, row: &mut Row) {
    let firsts = cut(frames, block);
    let empty: &[u8] = &[];
    let mut compressor =
        zstd::bulk::Compressor::with_dictionary(level, dict.unwrap_or(empty)).expect("compressor");
    let mut decompressor =
        zstd::bulk::Decompressor::with_dictionary(dict.unwrap_or(empty)).expect("decompressor");
    let t = Instant::now();
    let blocks: Vec<Vec<u8>> = (0..firsts.len())
        .map(|b| {
            compressor
                .compress(&frames.bytes[block_range(frames, &firsts, b)])
                .expect("compress")
        })
        .collect();
    row.compress_s += t.elapsed().as_secs_f64();
    let largest = (0..firsts.len())
        .map(|b| block_range(frames, &firsts, b).len())
        .max()
        .unwrap_or(0);
    let t = Instant::now();
    let mut out = Vec::with_capacity(largest);
    for (b, c) in blocks.iter().enumerate() {
        out.clear();
        decompressor
            .decompress_to_buffer(c, &mut out)
            .expect("decompress");
        assert_eq!(
            out.as_slice(),
            &frames.bytes[block_range(frames, &firsts, b)]
        );
    }
    row.decompress_s += t.elapsed().as_secs_f64();
    // Point reads: a random frame, its block decompressed, the frame found.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ frames.starts.len() as u64;
    for _ in 0..2_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let frame = (rng % frames.starts.len() as u64) as usize;
        let t = Instant::now();
        let b = firsts.partition_point(|&f| f <= frame) - 1;
        out.clear();
        decompressor
            .decompress_to_buffer(&blocks[b], &mut out)
            .expect("decompress");
        let at = frames.starts[frame] - frames.starts[firsts[b]];
        let found = matches!(read_frame(&out[at..]), Ok(FrameRead::Frame(_)));
        row.reads_ns.push(t.elapsed().as_nanos() as u64);
        assert!(found);
    }
    row.stored +=
        blocks.iter().map(|c| c.len() as u64 + 8).sum::<u64>() + dict.map_or(0, |d| d.len() as u64);
    row.raw += frames.bytes.len() as u64;
    row.records += frames.starts.len() as u64;
}

fn file_bytes(dir: &Path, keep: &dyn Fn(&str) -> bool) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read a directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += file_bytes(&path, keep);
        } else if keep(&path.to_string_lossy()) {
            total += entry.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

fn measure(dir: &Path, segments: usize) {
    let store = Store::open_read_only(dir).expect("open the store read-only");
    let records = store.len();
    drop(store);
    let mut names: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("a store")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    names.sort();
    // The last segment may be open: only sealed ones (with a sidecar).
    names.retain(|p| p.with_extension("idx").exists());
    names.truncate(segments);
    assert!(!names.is_empty(), "no sealed segment in {}", dir.display());
    let all: Vec<Frames> = names.iter().map(|p| sealed_frames(p)).collect();
    let events: usize = all.iter().map(|f| f.starts.len()).sum();
    let raw: usize = all.iter().map(|f| f.bytes.len()).sum();
    let sidecars = file_bytes(&dir.join("segments"), &|p| p.ends_with(".idx"));
    let tree = file_bytes(&dir.join("tree"), &|_| true);
    // Records the sidecars and tree files cover: the sealed ones (a leaf
    // hash of 32 bytes each in `tree/leaves`).
    let sealed_records =
        std::fs::metadata(dir.join("tree").join("leaves")).map_or(0, |m| m.len() / 32);
    println!(
        "{} sealed segments measured, {events} records, frames {:.1} bytes/event; the store: {records} records, index sidecars {:.1} and tree files {:.1} bytes per sealed record",
        all.len(),
        raw as f64 / events as f64,
        sidecars as f64 / sealed_records.max(1) as f64,
        tree as f64 / sealed_records.max(1) as f64,
    );
    println!(
        "| block | level | dictionary | bytes/event | ratio | compress MB/s | decompress MB/s | point read p50 / p99 | training |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for &block in &[16 * 1024, 64 * 1024, 256 * 1024] {
        for &level in &[1, 3, 9] {
            for dict_size in [None, Some(64 * 1024)] {
                let mut row = Row {
                    stored: 0,
                    raw: 0,
                    records: 0,
                    compress_s: 0.0,
                    decompress_s: 0.0,
                    train_s: 0.0,
                    reads_ns: Vec::new(),
                };
                for frames in &all {
                    let dict = dict_size.map(|size| {
                        let (d, s) = train(frames, size);
                        row.train_s += s;
                        d
                    });
                    measure_one(frames, block, level, dict.as_deref(), &mut row);
                }
                row.reads_ns.sort_unstable();
                let mb = row.raw as f64 / 1e6;
                println!(
                    "| {} KiB | {level} | {} | {:.1} | {:.2} | {:.0} | {:.0} | {:.1} / {:.1} µs | {} |",
                    block / 1024,
                    dict_size.map_or("none".to_owned(), |s| format!(
                        "{} KiB, per segment",
                        s / 1024
                    )),
                    row.stored as f64 / row.records as f64,
                    row.raw as f64 / row.stored as f64,
                    mb / row.compress_s,
                    mb / row.decompress_s,
                    percentile(&row.reads_ns, 0.5) as f64 / 1e3,
                    percentile(&row.reads_ns, 0.99) as f64 / 1e3,
                    if dict_size.is_some() {
                        format!("{:.0} ms/segment", row.train_s * 1e3 / all.len() as f64)
                    } else {
                        "—".to_owned()
                    },
                );
            }
        }
    }
}

/// Random `Store::get`s from `threads` threads for `secs` seconds, over
/// every record and then over the newest sealed segment's.
fn reads(dir: &Path, threads: usize, secs: u64) {
    let store = Store::open_read_only(dir).expect("open the store read-only");
    // Segment files are named by their first seq; the last is open.
    let mut firsts: Vec<u64> = std::fs::read_dir(dir.join("segments"))
        .expect("list the segments")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    firsts.sort_unstable();
    let [.., newest, open] = firsts[..] else {
        panic!("the store has no sealed segment");
    };
    for (what, lo, hi) in [
        ("every record", 0, store.len()),
        ("the newest sealed segment", newest, open),
        ("the open segment", open, store.len()),
    ] {
        let deadline = Instant::now() + std::time::Duration::from_secs(secs);
        let total: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let store = &store;
                    scope.spawn(move || {
                        let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (t as u64 + 1);
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            for _ in 0..64 {
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                let seq = lo + rng % (hi - lo);
                                store.get(seq).expect("read").expect("a record");
                                n += 1;
                            }
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("reader")).sum()
        });
        println!(
            "{what}: {threads} threads, {:.0} reads/s",
            total as f64 / secs as f64
        );
    }
}
