//! The store behind a swappable handle, reopened after a failed write.
//!
//! After a failed write or sync the engine refuses writes until it is
//! reopened: retrying a failed `fsync` can silently lose data, so the only
//! safe continuation is a fresh open, whose recovery decides from the disk
//! what survived. [`StoreHandle`] holds the open store; when a request sees
//! [`sealog::Error::WritesRefused`] it reports it, and a background task
//! takes the store out (requests then get 503 or 507), waits for every
//! request still holding the old store to finish, and opens the store again,
//! retrying with backoff (the disk may still be full) until it succeeds.
//! `/readyz` reports not-ready meanwhile.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sealog::{Store, StoreOptions};
use tokio::sync::Notify;

use crate::error::ApiError;

/// The open store, or none while it is being reopened.
pub struct StoreHandle {
    dir: PathBuf,
    options: StoreOptions,
    current: RwLock<Option<Store>>,
    /// The store accepts writes as far as the server knows.
    ready: AtomicBool,
    /// Why it does not, for `/readyz` and error messages.
    reason: Mutex<Option<(String, std::io::ErrorKind)>>,
    wake: Notify,
    reopens: AtomicU64,
    closing: AtomicBool,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("dir", &self.dir)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Opens the store.
    pub fn open(dir: PathBuf, options: StoreOptions) -> Result<StoreHandle, sealog::Error> {
        let store = Store::open(&dir, options.clone())?;
        Ok(StoreHandle {
            dir,
            options,
            current: RwLock::new(Some(store)),
            ready: AtomicBool::new(true),
            reason: Mutex::new(None),
            wake: Notify::new(),
            reopens: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether a signing key is configured.
    pub fn signs(&self) -> bool {
        self.options.checkpoints.is_some()
    }

    /// The open store, or the error to answer while it is being reopened.
    pub fn get(&self) -> Result<Store, ApiError> {
        if let Some(store) = self.current.read().as_ref() {
            return Ok(store.clone());
        }
        Err(self.not_ready_error())
    }

    fn not_ready_error(&self) -> ApiError {
        if self.closing.load(Ordering::Relaxed) {
            return ApiError::unavailable("the server is shutting down");
        }
        match self.reason.lock().clone() {
            Some((cause, kind)) => {
                ApiError::from_store(&sealog::Error::WritesRefused { cause, kind })
            }
            None => ApiError::unavailable("the store is being reopened; retry shortly"),
        }
    }

    /// Whether the store accepts writes as far as the server knows.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.current.read().is_some()
    }

    /// Why the store is not ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_ready() {
            return None;
        }
        Some(self.not_ready_error().message.clone())
    }

    /// Number of reopens since start.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Reports an engine error; a write refusal starts a reopen.
    pub fn report(&self, error: &sealog::Error) {
        if let sealog::Error::WritesRefused { cause, kind }
        | sealog::Error::Unacknowledged { cause, kind } = error
        {
            *self.reason.lock() = Some((cause.clone(), *kind));
            if self.ready.swap(false, Ordering::Relaxed) {
                tracing::error!(
                    %cause,
                    dir = %self.dir.display(),
                    "the store refuses writes; reopening it in the background"
                );
            }
            self.wake.notify_one();
        }
    }

    /// The background task that reopens the store after a write refusal.
    pub async fn reopen_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            if self.closing.load(Ordering::Relaxed) {
                return;
            }
            if self.ready.load(Ordering::Relaxed) {
                continue;
            }
            // A request that still held the store before the last reopen
            // may report that store's failure: check the current one first.
            let current = self.current.read().clone();
            if let Some(store) = current {
                let healthy = tokio::task::spawn_blocking(move || store.sync().is_ok())
                    .await
                    .unwrap_or(false);
                if healthy {
                    *self.reason.lock() = None;
                    self.ready.store(true, Ordering::Relaxed);
                    continue;
                }
            }
            let old = self.current.write().take();
            if let Some(old) = old {
                // Dropping the last handle closes the store (joins its
                // threads): not on the async runtime.
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            }
            let mut backoff = Duration::from_millis(50);
            let since = std::time::Instant::now();
            let mut attempts = 0u64;
            loop {
                attempts += 1;
                if self.closing.load(Ordering::Relaxed) {
                    return;
                }
                let dir = self.dir.clone();
                let options = self.options.clone();
                let (cause, kind) = self
                    .reason
                    .lock()
                    .clone()
                    .unwrap_or_else(|| ("unknown".into(), std::io::ErrorKind::Other));
                // Open, and prove that writes work again by recording the
                // outage itself; a store that opens on a disk that is still
                // full fails here and is closed again.
                let opened = tokio::task::spawn_blocking(move || {
                    let store = Store::open(&dir, options)?;
                    let event = reopened_event(&cause, kind, attempts, since.elapsed());
                    match store.append(event) {
                        Ok(_) => Ok(store),
                        Err(e) => {
                            drop(store);
                            Err(e)
                        }
                    }
                })
                .await;
                match opened {
                    Ok(Ok(store)) => {
                        *self.current.write() = Some(store);
                        *self.reason.lock() = None;
                        self.ready.store(true, Ordering::Relaxed);
                        self.reopens.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            dir = %self.dir.display(),
                            attempts,
                            "the store was reopened and accepts writes again"
                        );
                        break;
                    }
                    Ok(Err(e)) => {
                        // Locked: requests still hold the old store. Anything
                        // else (a full disk): wait for the operator.
                        if !matches!(e, sealog::Error::Locked { .. }) {
                            tracing::warn!(
                                error = %e,
                                retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                                "reopening the store failed; retrying"
                            );
                        }
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Takes the store out for closing at shutdown.
    pub fn take_for_close(&self) -> Option<Store> {
        self.closing.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        self.current.write().take()
    }
}

/// The `store.reopened` event: the server lost and regained the ability to
/// write, and how long it could not.
fn reopened_event(
    cause: &str,
    kind: std::io::ErrorKind,
    attempts: u64,
    outage: Duration,
) -> sealog::Event {
    use sealog::format::{Actor, Metadata, Resource};
    let mut metadata = Metadata::new();
    metadata.insert("cause".into(), crate::audit::clean(cause, 1024).into());
    metadata.insert("error_kind".into(), format!("{kind:?}").into());
    metadata.insert("attempts".into(), attempts.into());
    metadata.insert(
        "outage_ms".into(),
        u64::try_from(outage.as_millis()).unwrap_or(u64::MAX).into(),
    );
    sealog::Event::new(
        Actor::new("system", "sealog-server"),
        "store.reopened",
        Resource::kind("store"),
        sealog::Outcome::Success,
    )
    .with_reason(crate::audit::clean(
        &format!(
            "the store refused writes after a failed write or sync ({cause}); the server \
             reopened it and writes work again; requests in between were refused (503/507) \
             and were not acknowledged: the batch whose write or sync failed is in the log \
             whole or not at all, and nothing of the later refused ones was written"
        ),
        2048,
    ))
    .with_metadata(metadata)
}
