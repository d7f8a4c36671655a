//! The state every request shares, and who owns which part of it.
//!
//! [`App`] holds the store handle, the tokens, the limits, the counters,
//! the idempotency table and the refusal limiter. Two parts keep their own
//! invariant behind a small API: [`Admission`] owns the ingest budget
//! (body and parsed-event bytes in flight, batches in flight, one parse
//! per core), so memory stays bounded however many clients send at once;
//! [`Gates`] owns the caps on long reads (tail streams, exports, one
//! verification at a time) and the error that answers a request beyond
//! them.

use std::sync::Arc;
use std::time::Duration;

use sealog::format::validate::Validator;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::audit::{self, RefusalLimiter};
use crate::body::Allowance;
use crate::config::Limits;
use crate::error::{ApiError, ErrorCode};
use crate::handle::StoreHandle;
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;
use crate::tokens::TokenStore;

/// Everything the handlers share.
pub(crate) struct App {
    /// The store.
    pub(crate) store: Arc<StoreHandle>,
    /// The tokens; `None`: unauthenticated (loopback only).
    pub(crate) tokens: Option<TokenStore>,
    /// Limits.
    pub(crate) limits: Limits,
    /// The store's event rules (to list every problem of a refused batch).
    pub(crate) validator: Validator,
    /// Counters.
    pub(crate) metrics: Metrics,
    /// Idempotency keys.
    pub(crate) idempotency: Arc<Idempotency>,
    /// Which refusals are recorded one by one.
    pub(crate) refusals: RefusalLimiter,
    /// The ingest budget.
    pub(crate) admission: Admission,
    /// The caps on tails, exports and verification.
    pub(crate) gates: Gates,
    /// The number of visible records, published by the follower thread.
    pub(crate) visible: watch::Receiver<u64>,
    /// Becomes true when the server shuts down (ends tail streams).
    pub(crate) stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// The shared state.
    pub(crate) fn new(
        store: Arc<StoreHandle>,
        tokens: Option<TokenStore>,
        limits: Limits,
        validator: Validator,
        visible: watch::Receiver<u64>,
        stopping: watch::Receiver<bool>,
    ) -> App {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        App {
            store,
            tokens,
            idempotency: Arc::new(Idempotency::new(
                limits.idempotency_keys,
                limits.idempotency_receipts,
                limits.idempotency_ttl,
            )),
            refusals: RefusalLimiter::new(
                limits.refusals_per_window,
                limits
                    .refusals_per_window
                    .saturating_mul(audit::ADDRESSES_IN_FULL),
                limits.refusal_window,
                audit::MAX_ADDRESSES,
            ),
            admission: Admission::new(&limits, cores),
            gates: Gates::new(&limits, cores),
            limits,
            validator,
            metrics: Metrics::default(),
            visible,
            stopping,
        }
    }
}

/// The ingest budget: a semaphore of bytes (`ingest_inflight_bytes`)
/// that bodies and parsed events take their share of as they are
/// allocated, one of batches in flight (`ingest_inflight_batches`), one
/// of parses and one of encodings on a blocking thread (one per core
/// each, so a flood of batches cannot starve queries of CPU, nor fill the
/// blocking pool with a thread per batch).
#[derive(Debug)]
pub(crate) struct Admission {
    bytes: Arc<Semaphore>,
    /// The permits of `bytes` (its size).
    budget: usize,
    batches: Arc<Semaphore>,
    parsing: Arc<Semaphore>,
    encoding: Arc<Semaphore>,
    /// How long a batch waits for its share before it is refused.
    wait: Duration,
}

impl Admission {
    /// The budget of `limits`, with `cores` parses at once.
    pub(crate) fn new(limits: &Limits, cores: usize) -> Admission {
        let budget = usize::try_from(limits.ingest_inflight_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Admission {
            bytes: Arc::new(Semaphore::new(budget)),
            budget,
            batches: Arc::new(Semaphore::new(limits.ingest_inflight_batches.max(1))),
            parsing: Arc::new(Semaphore::new(cores.max(1))),
            encoding: Arc::new(Semaphore::new(cores.max(1))),
            wait: limits.ingest_wait,
        }
    }

    /// An empty share of the byte budget, for one request's body and
    /// events.
    pub(crate) fn allowance(&self) -> Allowance {
        Allowance::new(self.bytes.clone(), self.budget, self.wait)
    }

    /// A slot among the batches in flight, or the 503 when none frees up
    /// within the wait.
    pub(crate) async fn batch_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let taken = match self.batches.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => tokio::time::timeout(self.wait, self.batches.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        };
        taken.ok_or_else(|| saturated("too many batches in flight"))
    }

    /// A parsing slot: waits for a core.
    pub(crate) async fn parse_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        core_slot(&self.parsing).await
    }

    /// A slot to validate, encode and hash a large batch on a blocking
    /// thread: waits for a core. Separate from the parsing slots: a parse
    /// may wait for the byte budget, which encodings waiting here hold.
    pub(crate) async fn encode_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        core_slot(&self.encoding).await
    }
}

/// A permit of one of the per-core semaphores, however long it takes.
async fn core_slot(cores: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, ApiError> {
    cores
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))
}

/// The 503 of a batch that could not get its share of the budget.
pub(crate) fn saturated(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::IngestSaturated,
        format!(
            "the server is ingesting as much as it accepts at once ({what}); nothing of this \
             request was written: retry after the Retry-After delay"
        ),
    )
    .retry_after(1)
}

/// The caps on long reads. A permit is held for the life of the stream or
/// the verification and frees its place when dropped.
#[derive(Debug)]
pub(crate) struct Gates {
    tails: Arc<Semaphore>,
    max_tails: usize,
    exports: Arc<Semaphore>,
    max_exports: usize,
    verifying: Arc<Semaphore>,
    /// Searches and counts running on blocking threads.
    reads: Arc<Semaphore>,
}

/// Searches and counts run on blocking threads at once, per core: enough
/// to keep a disk's queue busy with cold reads, few enough that hundreds
/// of concurrent queries wait their turn rather than start a thread each
/// (on two cores, 256 clients made the pool grow to over 400 threads).
const READS_PER_CORE: usize = 4;

impl Gates {
    /// The caps of `limits` (at least one of each), for `cores` cores.
    pub(crate) fn new(limits: &Limits, cores: usize) -> Gates {
        Gates {
            tails: Arc::new(Semaphore::new(limits.max_tail_streams.max(1))),
            max_tails: limits.max_tail_streams,
            exports: Arc::new(Semaphore::new(limits.max_exports.max(1))),
            max_exports: limits.max_exports,
            verifying: Arc::new(Semaphore::new(1)),
            reads: Arc::new(Semaphore::new(cores.max(1) * READS_PER_CORE)),
        }
    }

    /// A place for a search or count on a blocking thread: waits for one
    /// (the request's timeout bounds the wait).
    pub(crate) async fn read_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("the server is shutting down"))
    }

    /// A place for a tail stream, or the 503 beyond `max_tail_streams`.
    pub(crate) fn tail(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.tails.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(format!(
                "{} tail streams are open, the most at once; retry later",
                self.max_tails
            ))
        })
    }

    /// A place for an NDJSON export, or the 503 beyond `max_exports`.
    pub(crate) fn export(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.exports.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(format!(
                "{} exports are running, the most at once; retry shortly",
                self.max_exports
            ))
        })
    }

    /// The one verification, or the 409 while another runs.
    pub(crate) fn verification(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.verifying.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::VerifyRunning,
                "a verification is already running; wait for it to finish",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_tail_streams: 2,
            max_exports: 1,
            ingest_inflight_batches: 1,
            ingest_inflight_bytes: 1000,
            ingest_wait: Duration::from_millis(20),
            ..Limits::default()
        }
    }

    #[test]
    fn a_long_read_beyond_its_cap_is_refused_until_one_ends() {
        let gates = Gates::new(&limits(), 1);
        let first = gates.tail().unwrap();
        let _second = gates.tail().unwrap();
        let refused = gates.tail().unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unavailable);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            refused.message.starts_with("2 tail streams are open"),
            "{refused}"
        );
        drop(first);
        assert!(gates.tail().is_ok());

        let export = gates.export().unwrap();
        let refused = gates.export().unwrap_err();
        assert!(
            refused.message.starts_with("1 exports are running"),
            "{refused}"
        );
        drop(export);
        assert!(gates.export().is_ok());

        let verifying = gates.verification().unwrap();
        assert_eq!(
            gates.verification().unwrap_err().code,
            ErrorCode::VerifyRunning
        );
        drop(verifying);
        assert!(gates.verification().is_ok());
    }

    #[tokio::test]
    async fn searches_beyond_the_blocking_slots_wait_for_one_to_free() {
        let gates = Arc::new(Gates::new(&limits(), 1));
        let mut held = Vec::new();
        for _ in 0..READS_PER_CORE {
            held.push(gates.read_slot().await.unwrap());
        }
        let next = tokio::spawn({
            let gates = gates.clone();
            async move { gates.read_slot().await.map(drop).is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "the fifth waits while four run");
        held.pop();
        assert!(next.await.unwrap(), "and gets the slot freed");
    }

    #[test]
    fn a_cap_of_zero_still_lets_one_in() {
        let gates = Gates::new(
            &Limits {
                max_exports: 0,
                ..limits()
            },
            0,
        );
        let one = gates.export().unwrap();
        assert!(gates.export().is_err());
        drop(one);
    }

    #[tokio::test]
    async fn a_batch_waits_for_a_slot_then_is_refused_with_503() {
        let admission = Admission::new(&limits(), 1);
        let slot = admission.batch_slot().await.unwrap();
        let refused = admission.batch_slot().await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::IngestSaturated);
        assert_eq!(refused.retry_after, Some(1));
        assert!(refused.message.contains("too many batches in flight"));
        // A slot freed while a batch waits goes to it.
        let waiting = {
            let admission = Arc::new(admission);
            let a = admission.clone();
            let waiter = tokio::spawn(async move { a.batch_slot().await.is_ok() });
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(slot);
            waiter.await.unwrap()
        };
        assert!(waiting);
    }

    #[tokio::test]
    async fn allowances_share_one_byte_budget() {
        let admission = Admission::new(&limits(), 1);
        let mut a = admission.allowance();
        a.hold(600).await.unwrap();
        assert_eq!((a.held(), a.budget()), (600, 1000));
        let mut b = admission.allowance();
        assert!(b.hold(600).await.is_err(), "only 400 bytes are left");
        drop(a);
        b.hold(600).await.unwrap();
        assert_eq!(b.held(), 600);
    }
}
