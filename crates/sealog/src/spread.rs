//! Work items spread over a few threads and taken in order, for a read
//! that visits many independent pieces (segments, ranges of frames) and
//! must answer as if it had visited them one after the other.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// The cores this process may use (`std::thread::available_parallelism`,
/// 1 if unknown), asked once: the standard library reads three cgroup
/// files at every call (~30 µs), and a query asks at each of its phases.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// Reads (searches and counts) in progress in this process.
static READS: AtomicUsize = AtomicUsize::new(0);

/// A read in progress, counted while it lives (see [`read_threads`]).
pub(crate) struct ReadInProgress(());

impl ReadInProgress {
    pub(crate) fn start() -> ReadInProgress {
        READS.fetch_add(1, Relaxed);
        ReadInProgress(())
    }
}

impl Drop for ReadInProgress {
    fn drop(&mut self) {
        READS.fetch_sub(1, Relaxed);
    }
}

/// Threads a read may spread its independent pieces over: `wanted` while
/// it is the only read in progress, else only its own. Concurrent reads
/// (a server's) keep the cores busy already, and a thread started for each
/// of them would cost more than it saves.
pub(crate) fn read_threads(wanted: usize) -> usize {
    if READS.load(Relaxed) > 1 { 1 } else { wanted }
}

/// Runs `work(i)` for each `i` in `0..n`, items taken in order by
/// whichever of `threads` threads (this one included) is free; this
/// thread first runs `meanwhile`. Once `stop` holds for a result, no item
/// is taken after it (those begun are finished): every item before a
/// stopping one was taken before it, so the results up to the first stop
/// in index order are all there, as a loop in order would have them.
/// Returns what `meanwhile` returned and the results, in index order.
pub(crate) fn in_order<T: Send, M>(
    n: usize,
    threads: usize,
    work: impl Fn(usize) -> T + Sync,
    stop: impl Fn(&T) -> bool + Sync,
    meanwhile: impl FnOnce() -> M,
) -> (M, Vec<(usize, T)>) {
    let next = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    let take = || {
        let mut done = Vec::new();
        while !stopped.load(Relaxed) {
            let i = next.fetch_add(1, Relaxed);
            if i >= n {
                break;
            }
            let result = work(i);
            if stop(&result) {
                stopped.store(true, Relaxed);
            }
            done.push((i, result));
        }
        done
    };
    let (value, mut done) = if threads > 1 && n > 1 {
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..threads.min(n)).map(|_| scope.spawn(take)).collect();
            let value = meanwhile();
            let mut done = take();
            for other in others {
                // A panic on another thread is a bug; report it as one.
                done.extend(
                    other
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                );
            }
            (value, done)
        })
    } else {
        let value = meanwhile();
        (value, take())
    };
    done.sort_unstable_by_key(|&(i, _)| i);
    (value, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_spreads_only_while_no_other_read_is_in_progress() {
        // Other tests' reads may be in progress too: two of this test's own
        // are enough for the rule to hold whatever they do.
        let one = ReadInProgress::start();
        let two = ReadInProgress::start();
        assert_eq!(read_threads(4), 1);
        drop((one, two));
    }

    #[test]
    fn results_come_in_order_and_stop_after_the_first_stopping_item() {
        for threads in [1, 2, 4] {
            let (m, all) = in_order(100, threads, |i| i * 2, |_| false, || "meanwhile");
            assert_eq!(m, "meanwhile");
            assert_eq!(all, (0..100).map(|i| (i, i * 2)).collect::<Vec<_>>());
            // Everything up to the first stop is there; on one thread,
            // nothing after it.
            let (_, some) = in_order(1000, threads, |i| i, |&r| r == 10, || ());
            assert_eq!(&some[..11], (0..=10).map(|i| (i, i)).collect::<Vec<_>>());
            if threads == 1 {
                assert_eq!(some.len(), 11);
            }
        }
        let (_, none) = in_order(0, 4, |i| i, |_| false, || ());
        assert!(none.is_empty());
    }
}
