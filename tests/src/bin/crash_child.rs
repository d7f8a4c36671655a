//! Appends batches to a store in a loop from several threads and prints each
//! acknowledged seq, one per line, flushed; the crash test kills it at random
//! moments. Every event's `request_id` is `b<batch>.<k>/<n>` so the test can
//! check that batches are all-or-nothing.
//!
//! Usage: crash-child DIR SEGMENT_SIZE MAX_BATCH THREADS SEED

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let Some(dir) = args.get(1) else {
        eprintln!("usage: crash-child DIR SEGMENT_SIZE MAX_BATCH THREADS SEED");
        std::process::exit(2);
    };
    let segment_size = arg(2, 64 << 10);
    let max_batch = arg(3, 8).max(1);
    let threads = arg(4, 4).max(1);
    let seed = arg(5, 1);
    let store = match sealog::Store::open(dir, sealog_tests::small_options(segment_size)) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(3);
        }
    };
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            let out = &out;
            scope.spawn(move || {
                let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(t + 1);
                let mut batch_no = 0u64;
                loop {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let n = 1 + (rng >> 33) % max_batch;
                    let id = format!("{seed}-{t}-{batch_no}");
                    batch_no += 1;
                    let events: Vec<sealog::Event> = (0..n)
                        .map(|k| {
                            sealog_tests::event(rng.wrapping_add(k) % 10_000)
                                .with_request_id(format!("b{id}.{k}/{n}"))
                        })
                        .collect();
                    match store.append_batch(events) {
                        Ok(receipts) => {
                            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                            for r in receipts {
                                let _ = writeln!(out, "{}", r.seq);
                            }
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            std::process::exit(4);
                        }
                    }
                }
            });
        }
    });
}
