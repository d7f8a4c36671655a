//! `impl AuditSink for sealog_client::Batcher`: events to a sealog server.
//!
//! The batcher queues (bounded), batches, retries with an idempotency key
//! and answers each event with the server's receipt, which is the durable
//! acknowledgement. See the `sealog_client` documentation for what happens
//! to queued events if the process dies.

use sealog_client::{Batcher, Error};
use sealog_format::Event;

use crate::sink::{AuditSink, BoxFuture, Durable, Receipt, SinkError, SinkErrorKind, Unrecorded};

impl AuditSink for Batcher {
    fn submit(&self, event: Event) -> BoxFuture<Result<Durable, Unrecorded>> {
        let batcher = self.clone();
        Box::pin(async move {
            match batcher.send(event).await {
                Ok(pending) => Ok(durable(pending)),
                Err(e) => Err(Unrecorded {
                    error: sink_error(e.error),
                    event: e.event,
                }),
            }
        })
    }

    fn try_submit(&self, event: Event) -> Result<Durable, Unrecorded> {
        match self.try_send(event) {
            Ok(pending) => Ok(durable(pending)),
            Err(e) => Err(Unrecorded {
                error: sink_error(e.error),
                event: e.event,
            }),
        }
    }

    fn health(&self) -> Result<(), SinkError> {
        if self.is_closed() {
            return Err(SinkError::new(
                SinkErrorKind::Closed,
                "the audit batcher is closed",
            ));
        }
        Ok(())
    }
}

fn durable(pending: sealog_client::PendingReceipt) -> Durable {
    Durable::new(async move {
        pending
            .await
            .map(|r| Receipt::new(r.seq, r.recorded_at, r.leaf_hash, r.chain_hash))
            .map_err(sink_error)
    })
}

fn sink_error(error: Error) -> SinkError {
    let kind = match &error {
        Error::QueueFull { .. } => SinkErrorKind::Full,
        Error::Closed(_) => SinkErrorKind::Closed,
        Error::InvalidEvent(_) | Error::InvalidEvents { .. } => SinkErrorKind::Invalid,
        _ => SinkErrorKind::Failed,
    };
    SinkError::new(
        kind,
        format!("the audit server did not record the event: {error}"),
    )
}
