//! What the committer has written and synced, and the appenders waiting
//! for it.
//!
//! Progress is two atomic seq marks (exclusive ends): `written` (handed to
//! the operating system) and `durable` (synced). Appends are committed in
//! *generations*: the committer takes everything queued so far as one
//! generation, and appends queued meanwhile form the next. An appender
//! learns its generation under the log lock and sleeps on that generation's
//! futex word (one word per parity, so the next generation sleeps on the
//! other). When a generation is committed, the committer bumps its word and
//! wakes every sleeper on it with one system call: exactly that
//! generation's appenders, and no mutex for them to fight over on the way
//! out (a condition variable made hundreds of woken threads queue on one
//! lock). A failure wakes everyone. Asynchronous appends park no thread:
//! their tasks' wakers wait in a list the committer drains after each
//! generation.
//!
//! Measured alternatives (256 single-event appenders, `docs/benchmarks.md`):
//! one `unpark` per waiter, and a wake-up tree where each woken appender
//! wakes a few more, were no faster; the limit is the cost of two context
//! switches per blocking append on this machine.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Poll, Waker};

use parking_lot::Mutex;
use rustix::thread::futex;

use crate::error::{Error, Result};
use crate::options::Durability;

/// A latched write failure: why the store refuses writes until reopened.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub cause: String,
    pub kind: std::io::ErrorKind,
}

impl Failure {
    pub(crate) fn new(cause: String, kind: std::io::ErrorKind) -> Failure {
        Failure { cause, kind }
    }

    /// The failure of an I/O call on `path`.
    pub(crate) fn io(op: &str, path: &std::path::Path, e: &std::io::Error) -> Failure {
        Failure {
            cause: format!("{op} `{}`: {e}", path.display()),
            kind: e.kind(),
        }
    }

    /// The failure of an engine operation (`what` says which).
    pub(crate) fn of(what: &str, e: &Error) -> Failure {
        Failure {
            cause: format!("{what}: {e}"),
            kind: kind_of(e),
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        Error::WritesRefused {
            cause: self.cause.clone(),
            kind: self.kind,
        }
    }
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Failure {
        Failure {
            cause: e.to_string(),
            kind: kind_of(e),
        }
    }
}

/// The kind a latched failure reports: the I/O error's, or `Other` for a
/// failure that is not an I/O error (corruption met while sealing, say),
/// which has no kind of its own to report.
fn kind_of(e: &Error) -> std::io::ErrorKind {
    e.io_kind().unwrap_or(std::io::ErrorKind::Other)
}

pub(crate) struct Progress {
    written: AtomicU64,
    durable: AtomicU64,
    has_failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
    /// `words[g % 2]` is bumped when generation `g` is committed.
    words: [AtomicU32; 2],
    /// Generations the committer has finished (all of `0..done`).
    done: AtomicU64,
    /// Tasks awaiting an asynchronous append ([`crate::Store::append_async`]),
    /// with the generation that commits it: woken by the committer when
    /// that generation is finished, or by a failure. No thread waits.
    wakers: Mutex<Vec<(u64, Waker)>>,
}

impl Progress {
    /// Progress of a store whose first `seq` records are durable.
    pub(crate) fn new(seq: u64) -> Progress {
        Progress {
            written: AtomicU64::new(seq),
            durable: AtomicU64::new(seq),
            has_failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            words: [AtomicU32::new(0), AtomicU32::new(0)],
            done: AtomicU64::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Sleeps until the committer has finished `generation` (whatever it
    /// held: records, a roll, a sync request), or the store fails.
    pub(crate) fn wait_generation(&self, generation: u64) -> Result<()> {
        let word = self.word(generation);
        loop {
            let seen = word.load(Ordering::Acquire);
            if self.done.load(Ordering::Acquire) > generation {
                return Ok(());
            }
            if self.has_failed.load(Ordering::Acquire)
                && let Some(failure) = self.failure()
            {
                return Err(failure.to_error());
            }
            // EAGAIN (the word moved) and EINTR both mean: look again.
            let _ = futex::wait(word, futex::Flags::PRIVATE, seen, None);
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn word(&self, generation: u64) -> &AtomicU32 {
        let [even, odd] = &self.words;
        if generation.is_multiple_of(2) {
            even
        } else {
            odd
        }
    }

    /// Sleeps until `target` is reached by the commit of `generation` (or an
    /// earlier one), or the store fails.
    pub(crate) fn wait(&self, target: u64, durability: Durability, generation: u64) -> Result<()> {
        let word = self.word(generation);
        loop {
            // Read the word before the marks: a commit that lands after the
            // marks are read changes the word, and the wait returns at once.
            let seen = word.load(Ordering::Acquire);
            let reached = match durability {
                Durability::Group => self.durable(),
                Durability::Buffered => self.written(),
            };
            if reached >= target {
                return Ok(());
            }
            if self.has_failed.load(Ordering::Acquire)
                && let Some(failure) = self.failure()
            {
                return Err(failure.to_error());
            }
            // EAGAIN (the word moved) and EINTR both mean: look again.
            let _ = futex::wait(word, futex::Flags::PRIVATE, seen, None);
        }
    }

    /// Whether `target` is reached under `durability`: `Ok(true)` if so,
    /// the latched failure if the store failed first. Never waits.
    pub(crate) fn reached(&self, target: u64, durability: Durability) -> Result<bool> {
        let reached = match durability {
            Durability::Group => self.durable(),
            Durability::Buffered => self.written(),
        };
        if reached >= target {
            return Ok(true);
        }
        if self.has_failed.load(Ordering::Acquire)
            && let Some(failure) = self.failure()
        {
            return Err(failure.to_error());
        }
        Ok(false)
    }

    /// Polls for `target` as [`Progress::wait`] waits for it: ready once
    /// reached (or failed); otherwise `waker` is woken when `generation`
    /// is finished or the store fails.
    pub(crate) fn poll_reached(
        &self,
        target: u64,
        durability: Durability,
        generation: u64,
        waker: &Waker,
    ) -> Poll<Result<()>> {
        match self.reached(target, durability) {
            Ok(true) => return Poll::Ready(Ok(())),
            Err(e) => return Poll::Ready(Err(e)),
            Ok(false) => {}
        }
        {
            let mut wakers = self.wakers.lock();
            match wakers.iter_mut().find(|(_, w)| w.will_wake(waker)) {
                Some(slot) => *slot = (generation, waker.clone()),
                None => wakers.push((generation, waker.clone())),
            }
        }
        // Look again: the generation may have finished (and the committer
        // drained the wakers) between the first look and the registration.
        match self.reached(target, durability) {
            Ok(true) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e)),
            Ok(false) => {
                if self.done.load(Ordering::Acquire) > generation {
                    // Finished without reaching the target: only a failure
                    // does that, and it is latched just after; poll again.
                    waker.wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    /// Wakes the tasks waiting for generations before `done` (all of
    /// them with `everyone`).
    fn wake_tasks(&self, done: u64, everyone: bool) {
        let ready: Vec<Waker> = {
            let mut wakers = self.wakers.lock();
            if wakers.is_empty() {
                return;
            }
            let mut ready = Vec::new();
            wakers.retain(|(generation, waker)| {
                let wake = everyone || *generation < done;
                if wake {
                    ready.push(waker.clone());
                }
                !wake
            });
            ready
        };
        for waker in ready {
            waker.wake();
        }
    }

    /// Publishes new marks after committing `generation` and wakes its
    /// appenders.
    pub(crate) fn advance(&self, written: u64, durable: bool, generation: u64) {
        self.written.fetch_max(written, Ordering::AcqRel);
        if durable {
            let written = self.written();
            self.durable.fetch_max(written, Ordering::AcqRel);
        }
        self.done.fetch_max(generation + 1, Ordering::AcqRel);
        self.wake(self.word(generation));
        self.wake_tasks(generation + 1, false);
    }

    /// Records that every record before `seq` is synced and visible to
    /// readers (a roll synced the segment it left), without waking anyone:
    /// the generation's [`Progress::advance`] does that.
    pub(crate) fn mark_durable(&self, seq: u64) {
        self.durable.fetch_max(seq, Ordering::AcqRel);
    }

    fn wake(&self, word: &AtomicU32) {
        word.fetch_add(1, Ordering::AcqRel);
        // The count of threads woken is of no use; a waiter that the call
        // missed sees the word moved and does not sleep.
        let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
    }

    /// Latches a failure and wakes every waiter.
    pub(crate) fn fail(&self, failure: Failure) {
        {
            let mut slot = self.failure.lock();
            if slot.is_none() {
                *slot = Some(failure);
            }
        }
        self.has_failed.store(true, Ordering::Release);
        for word in &self.words {
            self.wake(word);
        }
        self.wake_tasks(0, true);
    }

    /// The latched failure, if any.
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure.lock().clone()
    }
}
