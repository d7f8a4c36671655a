//! Appends to a store in a loop and prints each acknowledged seq, one per
//! line, flushed; the crash test kills it at random moments.
//!
//! Usage: crash-child DIR SEGMENT_SIZE BATCH THREADS

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .expect("usage: crash-child DIR SEGMENT_SIZE BATCH THREADS");
    let segment_size: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64 << 10);
    let batch: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let threads: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let store = sealog::Store::open(dir, sealog_tests::small_options(segment_size)).expect("open");
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            let out = &out;
            scope.spawn(move || {
                let mut i = t;
                loop {
                    let events = sealog_tests::events(i * batch, (i + 1) * batch);
                    i += threads;
                    match store.append_batch(events) {
                        Ok(receipts) => {
                            let mut out = out.lock().expect("stdout");
                            for r in receipts {
                                writeln!(out, "{}", r.seq).expect("stdout");
                            }
                            out.flush().expect("stdout");
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            std::process::exit(3);
                        }
                    }
                }
            });
        }
    });
}
