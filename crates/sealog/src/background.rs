//! Background work beside a store's writers.
//!
//! Archiving and alert evaluation follow the log on the machine that
//! ingests it. At the normal priority they take CPU from ingest: on two
//! cores, archiving every sealed segment cost 15% of HTTP ingest and rule
//! evaluation 18% (docs/benchmarks.md). Their threads run at a lower
//! scheduling priority instead: they take the CPU ingest leaves, fall
//! behind while ingest saturates the machine (their lag is reported), and
//! catch up when it eases. Archiving may wait ([`idle_thread_priority`]);
//! alert evaluation keeps a small share ([`lower_thread_priority`]).

/// The nice value of background threads (Linux: 0 is normal, 19 lowest:
/// a thread at 19 weighs 1.5% of one at 0 when both want the CPU).
pub const BACKGROUND_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority to nice
/// [`BACKGROUND_NICE`] for the rest of the thread's life; returns whether
/// it took effect (it does nothing outside Linux). For work that must still
/// progress, if slowly, while the machine is saturated (alert rules: an
/// alert held back for the whole of a flood of events is one too late).
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

/// Like [`lower_thread_priority`], and on Linux also puts the thread under
/// the `SCHED_IDLE` policy: for work that may wait until the machine has
/// CPU to spare (archiving, whose lag is reported). Nice 19 alone still
/// weighs 1.5% of a normal thread, and a core running it counts as busy
/// when a normal thread wakes up, so the committer or an HTTP worker could
/// wait behind it; a `SCHED_IDLE` thread is preempted as soon as a normal
/// one wants its core, and the core counts as idle when the scheduler
/// places a waking thread. Threads it starts inherit both. Same caveat:
/// only on a thread of its own.
pub fn idle_thread_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        let niced = lower_thread_priority();
        niced & set_idle_policy(rustix::thread::gettid().as_raw_nonzero().get())
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Puts thread `tid` under `SCHED_IDLE` (allowed without privileges).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_idle_policy(tid: i32) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the duration of the call;
    // the call reads it and changes only the scheduling of thread `tid`.
    unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &raw const param) == 0 }
}

/// Whether the calling thread runs under `SCHED_IDLE`.
#[cfg(all(test, target_os = "linux"))]
#[allow(unsafe_code)]
fn idle_policy() -> bool {
    // SAFETY: no arguments to uphold; 0 is the calling thread.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

#[cfg(test)]
mod tests {
    use rustix::process::getpriority_process;
    use rustix::thread::gettid;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_background_thread_runs_at_the_lower_priority_and_others_do_not() {
        let before = getpriority_process(Some(gettid())).unwrap();
        let inside = std::thread::spawn(|| {
            assert!(super::lower_thread_priority());
            // Niced, not idle: it still gets a share while the machine is busy.
            assert!(!super::idle_policy());
            getpriority_process(Some(gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, before.max(super::BACKGROUND_NICE));
        let after = getpriority_process(Some(gettid())).unwrap();
        assert_eq!(after, before, "the caller's priority is unchanged");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_idle_thread_and_the_threads_it_starts_run_under_sched_idle() {
        let before = getpriority_process(Some(gettid())).unwrap();
        let inside = std::thread::spawn(|| {
            assert!(super::idle_thread_priority());
            assert!(super::idle_policy());
            // Threads it starts inherit it.
            assert!(std::thread::spawn(super::idle_policy).join().unwrap());
            getpriority_process(Some(gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, before.max(super::BACKGROUND_NICE));
        assert!(!super::idle_policy(), "the caller's policy is unchanged");
    }
}
