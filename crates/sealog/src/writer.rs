//! The background threads of a store opened for writing: starting them,
//! stopping them, and latching the store when one panics.
//!
//! - the committer ([`crate::committer`]) writes, syncs and publishes what
//!   the sequencer queues;
//! - the sealer ([`crate::sealer`]) seals full segments, prepares the spare
//!   segment file and signs periodic checkpoints;
//! - the indexer ([`crate::indexer`]) keeps the open segments' in-memory
//!   indexes caught up;
//! - with [`crate::Compression::Zstd`], the compressor
//!   ([`crate::compressed::Compressor`]) compresses sealed segments, at the
//!   lowest priority.
//!
//! A panic in the committer or the sealer latches the store through
//! [`PanicGuard`], so appenders waiting on it wake with an error instead of
//! hanging.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::committer::Committer;
use crate::error::Result;
use crate::indexer::{IndexProgress, Indexer};
use crate::options::Preallocation;
use crate::progress::Failure;
use crate::sealer::Sealer;
use crate::segment::OpenSegment;
use crate::store::Inner;

/// Handles of the background threads; shuts them down when dropped.
pub(crate) struct Workers {
    committer: Mutex<Option<JoinHandle<()>>>,
    sealer: Mutex<Option<JoinHandle<()>>>,
    indexer: Mutex<Option<Indexer>>,
    compressor: Mutex<Option<crate::compressed::Compressor>>,
    inner: Arc<Inner>,
}

impl Workers {
    /// Starts the sealer, the committer (writing to `active`) and the
    /// indexer; a read-only store (`active` is `None`) has no threads. If
    /// one cannot be started, those started are stopped again.
    pub(crate) fn start(
        inner: Arc<Inner>,
        active: Option<Arc<OpenSegment>>,
    ) -> Result<Arc<Workers>> {
        let workers = Workers {
            committer: Mutex::new(None),
            sealer: Mutex::new(None),
            indexer: Mutex::new(None),
            compressor: Mutex::new(None),
            inner: inner.clone(),
        };
        let Some(active) = active else {
            return Ok(Arc::new(workers));
        };
        let (jobs, queue) = std::sync::mpsc::channel();
        inner.sealing().connect(jobs);
        *workers.sealer.lock() = Some(Sealer::spawn(inner.clone(), queue)?);
        inner.sealing().key_filters_later();
        let index_progress = Arc::new(IndexProgress::default());
        *workers.committer.lock() = Some(Committer::spawn(
            inner.clone(),
            active,
            index_progress.clone(),
        )?);
        if inner.config().options.preallocation == Preallocation::ZeroFill {
            inner.sealing().prepare_spare_later();
        }
        if let crate::Compression::Zstd { level } = inner.config().options.compression {
            *workers.compressor.lock() =
                Some(crate::compressed::Compressor::start(inner.clone(), level)?);
        }
        *workers.indexer.lock() = Some(Indexer::start(inner, index_progress)?);
        Ok(Arc::new(workers))
    }

    /// Waits until no seal is outstanding.
    pub(crate) fn wait_idle(&self, inner: &Inner) -> Result<()> {
        inner.sealing().wait_idle(inner.progress())
    }

    /// Stops the indexer, the committer (after it drained the queue and
    /// synced) and then the sealer (after it finished outstanding seals);
    /// then, with a signing key, signs a checkpoint of the durable log if it
    /// grew since the last one, so that every record a writer leaves behind
    /// is covered by a checkpoint (and can be given a receipt) without the
    /// key. Only the first call does anything.
    pub(crate) fn shutdown(&self, inner: &Inner) -> Result<()> {
        if let Some(compressor) = self.compressor.lock().take() {
            compressor.stop(inner);
        }
        if let Some(mut indexer) = self.indexer.lock().take() {
            indexer.stop(inner);
        }
        inner.sequencer().close();
        let committer = self.committer.lock().take();
        let writer = committer.is_some();
        if let Some(handle) = committer
            && handle.join().is_err()
        {
            inner.latch(Failure::new(
                "committer thread panicked".into(),
                io::ErrorKind::Other,
            ));
        }
        inner.sealing().disconnect();
        if let Some(handle) = self.sealer.lock().take()
            && handle.join().is_err()
        {
            inner.latch(Failure::new(
                "sealer thread panicked".into(),
                io::ErrorKind::Other,
            ));
        }
        if writer {
            crate::indexer::persist_all(inner);
            crate::sealer::checkpoint_if_grown(inner)?;
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        if let Err(e) = self.shutdown(&inner) {
            // Dropping cannot return it; `Store::close` does.
            tracing::error!(store = %inner.config().dir.display(), error = %e, "closing the store");
        }
    }
}

/// Latches the store if the thread that holds it panics, so appenders
/// waiting on that thread are woken with an error instead of hanging.
pub(crate) struct PanicGuard<'a> {
    inner: &'a Inner,
    what: &'static str,
}

impl<'a> PanicGuard<'a> {
    /// Guards the `what` thread (named in the failure).
    pub(crate) fn new(inner: &'a Inner, what: &'static str) -> PanicGuard<'a> {
        PanicGuard { inner, what }
    }
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.inner.latch(Failure::new(
                format!("the {} thread panicked", self.what),
                io::ErrorKind::Other,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use sealog_format::{Actor, Event, Outcome, Resource};

    use super::*;
    use crate::fs::{LockGuard, OpenMode, StdFs, Vfs, VfsFile};
    use crate::mmap::Mapped;
    use crate::{Durability, Error, Store, StoreOptions};

    /// A real filesystem that panics once, on the first call of the armed
    /// kind to a file whose path contains the armed text: a bug in the
    /// middle of a write, as the committer or the sealer would meet it.
    #[derive(Debug, Default, Clone)]
    struct PanickingFs {
        armed: Arc<Mutex<Option<(&'static str, &'static str)>>>,
    }

    impl PanickingFs {
        fn arm(&self, call: &'static str, path_contains: &'static str) {
            *self.armed.lock() = Some((call, path_contains));
        }
    }

    #[derive(Debug)]
    struct PanickingFile {
        path: String,
        file: Arc<dyn VfsFile>,
        armed: Arc<Mutex<Option<(&'static str, &'static str)>>>,
    }

    impl PanickingFile {
        fn check(&self, call: &'static str) {
            let mut armed = self.armed.lock();
            if let Some((c, p)) = *armed
                && c == call
                && self.path.contains(p)
            {
                *armed = None;
                drop(armed);
                panic!("injected panic in {call} of {}", self.path);
            }
        }
    }

    impl Vfs for PanickingFs {
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            StdFs.create_dir_all(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            StdFs.read_dir(path)
        }
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
            Ok(Arc::new(PanickingFile {
                path: path.display().to_string(),
                file: StdFs.open(path, mode)?,
                armed: self.armed.clone(),
            }))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_file(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.sync_dir(path)
        }
        fn exists(&self, path: &Path) -> io::Result<bool> {
            StdFs.exists(path)
        }
        fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
            StdFs.lock(path)
        }
    }

    impl VfsFile for PanickingFile {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.file.read_exact_at(buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.check("write");
            self.file.write_all_at(buf, offset)
        }
        fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
            self.check("write");
            self.file.write_all_vectored_at(bufs, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.check("fdatasync");
            self.file.sync_data()
        }
        fn sync_all(&self) -> io::Result<()> {
            self.file.sync_all()
        }
        fn size(&self) -> io::Result<u64> {
            self.file.size()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            self.file.allocate(len)
        }
        fn map(&self) -> io::Result<Mapped> {
            self.file.map()
        }
    }

    fn event(i: usize) -> Event {
        Event::new(
            Actor::new("user", format!("u{i}")),
            "doc.read",
            Resource::new("doc", "1"),
            Outcome::Success,
        )
    }

    fn open(dir: &Path, fs: &PanickingFs) -> Store {
        Store::open(
            dir,
            StoreOptions {
                fs: Arc::new(fs.clone()),
                preallocation: crate::Preallocation::None,
                ..StoreOptions::default()
            },
        )
        .unwrap()
    }

    /// Runs `f` on another thread and returns its result, failing the test
    /// if it does not return in time (a waiter left hanging).
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || drop(tx.send(f())));
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what} did not return: left waiting"))
    }

    fn refused_by(e: &Error, thread: &str) -> bool {
        let cause = match e {
            Error::WritesRefused { cause, .. } | Error::Unacknowledged { cause, .. } => cause,
            _ => return false,
        };
        cause == &format!("the {thread} thread panicked")
    }

    #[test]
    fn a_panic_in_the_committer_latches_the_store_and_wakes_every_appender() {
        let dir = tempfile::tempdir().unwrap();
        let fs = PanickingFs::default();
        let store = open(dir.path(), &fs);
        store.append(event(0)).unwrap();
        fs.arm("write", ".seg");
        let results = within("the appenders", {
            let store = store.clone();
            move || {
                let appenders: Vec<_> = (0..4)
                    .map(|i| {
                        let store = store.clone();
                        std::thread::spawn(move || {
                            store.append_batch_with([event(i)], Durability::Group)
                        })
                    })
                    .collect();
                appenders
                    .into_iter()
                    .map(|a| a.join().unwrap())
                    .collect::<Vec<_>>()
            }
        });
        assert!(
            fs.armed.lock().is_none(),
            "the committer met the injected panic"
        );
        for result in results {
            let e = result.expect_err("no append after the panic is acknowledged");
            assert!(refused_by(&e, "committer"), "{e}");
        }
        let later = store.append(event(9)).unwrap_err();
        assert!(matches!(later, Error::WritesRefused { .. }) && refused_by(&later, "committer"));
        let sync = within("sync", {
            let store = store.clone();
            move || store.sync()
        });
        assert!(refused_by(&sync.unwrap_err(), "committer"));
        assert!(refused_by(&store.close().unwrap_err(), "committer"));
        // What was acknowledged before the panic is there after reopening.
        let store = open(dir.path(), &PanickingFs::default());
        assert_eq!(store.get(0).unwrap().unwrap().event, event(0));
    }

    #[test]
    fn a_panic_in_the_sealer_latches_the_store_and_wakes_wait_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let fs = PanickingFs::default();
        let store = open(dir.path(), &fs);
        store.append(event(0)).unwrap();
        fs.arm("fdatasync", "leaves");
        // The sealer can meet the panic before the committer has finished
        // the roll; then the roll reports the latch itself.
        if let Err(e) = store.roll() {
            assert!(refused_by(&e, "sealer"), "{e}");
        }
        let sealed = within("wait_sealed", {
            let store = store.clone();
            move || store.wait_sealed()
        });
        assert!(
            fs.armed.lock().is_none(),
            "the sealer met the injected panic"
        );
        assert!(refused_by(&sealed.unwrap_err(), "sealer"));
        let later = store.append(event(1)).unwrap_err();
        assert!(refused_by(&later, "sealer"), "{later}");
        drop(store);
        // The seal is completed by the next open.
        let store = open(dir.path(), &PanickingFs::default());
        assert_eq!(store.recovery_report().sealed.len(), 1);
        assert_eq!(store.len(), 1);
    }
}
