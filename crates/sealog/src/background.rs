//! Background work beside a store's writers.
//!
//! Archiving and alert evaluation follow the log on the machine that
//! ingests it. At the normal priority they take CPU from ingest: on two
//! cores, archiving every sealed segment cost 15% of HTTP ingest and rule
//! evaluation 18% (docs/benchmarks.md). Their threads run at a lower
//! scheduling priority instead: they take the CPU ingest leaves, fall
//! behind while ingest saturates the machine (their lag is reported), and
//! catch up when it eases.

/// The nice value of background threads (Linux: 0 is normal, 19 lowest:
/// a thread at 19 weighs 1.5% of one at 0 when both want the CPU).
pub const BACKGROUND_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority to nice
/// [`BACKGROUND_NICE`] for the rest of the thread's life; returns whether
/// it took effect (it does nothing outside Linux).
///
/// An unprivileged process cannot raise a priority back, so call this only
/// on a thread of its own, never on a pooled one (a tokio blocking thread
/// would keep the lower priority for whatever work it takes next).
pub fn lower_thread_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        // On Linux, setpriority on a thread id applies to that thread only.
        let tid = rustix::thread::gettid();
        rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn a_background_thread_runs_at_the_lower_priority_and_others_do_not() {
        let before = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let inside = std::thread::spawn(|| {
            assert!(super::lower_thread_priority());
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, before.max(super::BACKGROUND_NICE));
        let after = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(after, before, "the caller's priority is unchanged");
    }
}
