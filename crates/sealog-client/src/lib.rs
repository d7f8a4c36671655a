//! An async client for the HTTP API of `sealog serve`.
//!
//! ```no_run
//! # async fn run() -> Result<(), sealog_client::Error> {
//! use sealog_client::{BatchOptions, Client};
//! use sealog_format::{Actor, Event, Outcome, Resource};
//!
//! let client = Client::builder("https://audit.internal:7807")
//!     .bearer_token(std::env::var("SEALOG_TOKEN").unwrap_or_default())
//!     .ca_certificate_file("/etc/sealog/ca.pem")
//!     .build()?;
//!
//! // One event, one request: returns once the event is durable.
//! let event = Event::new(Actor::new("user", "alice"), "customer.delete",
//!                        Resource::new("customer", "4471"), Outcome::Success);
//! let receipt = client.append(&event).await?;
//! println!("recorded as seq {}", receipt.seq);
//!
//! // Many events from many tasks: a bounded queue and a background batcher.
//! let batcher = client.batcher(BatchOptions::default())?;
//! // Waits while the queue is full; a refused event comes back with the error.
//! let pending = batcher.send(event).await.map_err(|refused| refused.error)?;
//! let receipt = pending.await?;               // waits until the event is durable
//! batcher.close().await;                      // flushes and stops the batcher
//! # let _ = receipt; Ok(()) }
//! ```
//!
//! ## What an acknowledgement means
//!
//! The server is the durable acknowledgement point: a [`Receipt`] exists
//! only once the server has written the event's batch to stable storage
//! (`fdatasync`). Nothing this client holds in memory is durable: an event
//! given to [`Batcher::send`] is durable when its [`PendingReceipt`]
//! resolves to `Ok`, not before.
//!
//! ## Retries and idempotency: at least once, exactly once in practice
//!
//! Every request carries a fresh random `Idempotency-Key` (128 bits), and
//! every retry of that request sends the same body with the same key. The
//! server remembers the keys of the batches it acknowledged (by default
//! 100,000 keys for 24 hours, across restarts) and answers a retry with the
//! original receipts instead of writing the batch again. So:
//!
//! - **A lost answer** (a connection reset, a timeout, a server restarted
//!   after writing but before answering) is retried and gets the original
//!   receipts: the events are in the log exactly once.
//! - **The server was unavailable** (connection refused, `429`, `503`,
//!   `507` with `Retry-After`, other `5xx`): nothing was acknowledged, and
//!   the retry writes the batch once.
//! - **Invalid events** (`400 invalid_events`) are never retried: the error
//!   names each event and field. The batcher answers each invalid event's
//!   caller with its own error and sends the rest of the batch again as a
//!   new batch (the server wrote nothing of the refused one).
//! - **Duplicates can still happen** in two corners, both on the server's
//!   side of the line: a batch whose own write failed on the server (a disk
//!   that filled up mid-batch: `507`/`503` saying the batch was *not
//!   acknowledged*) may be in the log after the server reopens its store,
//!   and its key is not remembered, so the retry writes it again; and a
//!   power loss of the server's host can forget the keys of the last second.
//!   Give every event a unique `request_id` if duplicates must be
//!   recognisable afterwards.
//! - **If this process dies**, events still in its queue or in a batch
//!   that was not acknowledged are lost: they were never durable, and their
//!   callers had not been given a receipt. A batch the server had already
//!   written stays written, once. A caller that must not lose an event
//!   awaits its receipt before acting on it (the tower layer's `FailClosed`
//!   policy does exactly that), and calls [`Batcher::close`] at shutdown.
//!
//! Retries back off exponentially with jitter (equal jitter: half the delay
//! fixed, half random) from [`RetryPolicy::initial_backoff`] up to
//! [`RetryPolicy::max_backoff`], honour `Retry-After` (capped at
//! [`RetryPolicy::max_retry_after`]), and stop after
//! [`RetryPolicy::give_up_after`], when the callers get
//! [`Error::GaveUp`] with the last error.
//!
//! ## Backpressure
//!
//! The batcher's queue holds [`BatchOptions::queue_capacity`] events.
//! [`Batcher::send`] waits for room; [`Batcher::try_send`] fails at once
//! with [`Error::QueueFull`]. At most [`BatchOptions::max_in_flight`]
//! batches are sent at once; while they are all in flight (a slow or absent
//! server) the queue fills up and senders wait, so memory stays bounded.

mod batcher;
mod config;
mod error;
mod metrics;
mod receipt;
mod transport;

pub use batcher::{BatchOptions, Batcher, PendingReceipt, SendError};
pub use config::{ClientBuilder, RetryPolicy};
pub use error::{Error, EventError};
pub use metrics::Metrics;
pub use receipt::Receipt;
pub use transport::Client;

/// The event model, re-exported so that a client needs no other crate.
pub use sealog_format::{Actor, Event, Outcome, Principal, Resource, Source, Timestamp};
