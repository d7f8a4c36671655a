//! [`AuditBody`]: the body of a response that passed the layer.
//!
//! Usually the service's body, untouched. For a gRPC response whose status
//! comes in the trailers, the body records the event when the trailers
//! arrive (or the body ends without them, or is dropped): under
//! `FailClosed` it holds the trailers back until the event is durable and,
//! if it is not, sends `grpc-status: 14` (UNAVAILABLE) instead of the
//! service's status, so that the client does not take the call for a
//! success. For a `503` the layer made itself, a fixed body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::config::{FailurePolicy, ResponseInfo};
use crate::layer::{Draft, End, Shared, add, grpc_status, join, record, record_detached};
use crate::sink::{Receipt, SinkError};

pin_project! {
    /// The body of a response that passed the layer.
    pub struct AuditBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            // Set while the event waits for the trailers.
            deferred: Option<Box<Deferred>>,
            // The service's body returned its last frame.
            inner_done: bool,
            // Nothing more to send.
            ended: bool,
        },
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B> std::fmt::Debug for AuditBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditBody").finish_non_exhaustive()
    }
}

impl<B> AuditBody<B> {
    /// The service's body, passed through.
    pub(crate) fn new(body: B) -> AuditBody<B> {
        AuditBody {
            kind: Kind::Inner {
                body,
                deferred: None,
                inner_done: false,
                ended: false,
            },
        }
    }

    /// The service's body, recording the event at its trailers.
    pub(crate) fn deferred(body: B, deferred: Deferred) -> AuditBody<B> {
        AuditBody {
            kind: Kind::Inner {
                body,
                deferred: Some(Box::new(deferred)),
                inner_done: false,
                ended: false,
            },
        }
    }

    /// A body of the layer's own.
    pub(crate) fn full(data: Bytes) -> AuditBody<B> {
        AuditBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

/// The event of a gRPC response, waiting for its status.
pub(crate) struct Deferred {
    shared: Arc<Shared>,
    /// `None` once the event is built.
    draft: Option<Draft>,
    status: StatusCode,
    waiting: Option<Waiting>,
}

struct Waiting {
    task: JoinHandle<Result<Option<Receipt>, SinkError>>,
    /// The service's trailers, held back until the event is settled.
    trailers: Option<HeaderMap>,
    policy: FailurePolicy,
}

impl Deferred {
    pub(crate) fn new(shared: Arc<Shared>, draft: Draft, status: StatusCode) -> Deferred {
        Deferred {
            shared,
            draft: Some(draft),
            status,
            waiting: None,
        }
    }

    /// The status arrived (or the body ended without one): record.
    fn start(&mut self, trailers: Option<HeaderMap>) {
        let Some(draft) = self.draft.take() else {
            return;
        };
        let policy = draft.policy;
        let code = trailers.as_ref().and_then(grpc_status);
        let (info, end) = match code {
            Some(code) => (ResponseInfo::of(self.status, Some(code)), End::Response),
            // A call without a status failed (gRPC clients read it as
            // UNKNOWN, 2).
            None => (ResponseInfo::of(self.status, Some(2)), End::NoGrpcStatus),
        };
        let event = draft.event(&self.shared, info, end);
        self.waiting = Some(Waiting {
            task: tokio::spawn(record(self.shared.clone(), event, policy)),
            trailers,
            policy,
        });
    }

    /// The body failed: record that, without waiting.
    fn failed(&mut self) {
        if let Some(draft) = self.draft.take() {
            let event = draft.event(
                &self.shared,
                ResponseInfo::of(self.status, None),
                End::BodyError,
            );
            record_detached(&self.shared, event);
        }
    }
}

impl Drop for Deferred {
    /// The body was dropped before its end: the client went away.
    fn drop(&mut self) {
        if let Some(draft) = self.draft.take() {
            let event = draft.event(
                &self.shared,
                ResponseInfo::of(self.status, None),
                End::Cancelled,
            );
            record_detached(&self.shared, event);
        }
    }
}

impl<B> Body for AuditBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner {
                mut body,
                deferred,
                inner_done,
                ended,
            } => loop {
                if *ended || (*inner_done && deferred.is_none()) {
                    *ended = true;
                    return Poll::Ready(None);
                }
                if let Some(d) = deferred.as_mut()
                    && let Some(w) = d.waiting.as_mut()
                {
                    let result = join(ready!(Pin::new(&mut w.task).poll(cx)));
                    let trailers = w.trailers.take();
                    let policy = w.policy;
                    let shared = d.shared.clone();
                    *deferred = None;
                    let trailers = match (policy, result) {
                        (FailurePolicy::FailClosed, Err(e)) => {
                            add(&shared.counters.withheld);
                            tracing::error!(
                                error = %e,
                                "sealog: gRPC status withheld: its audit record was not written \
                                 (the handler ran)"
                            );
                            let mut t = trailers.unwrap_or_default();
                            t.insert("grpc-status", HeaderValue::from_static("14"));
                            t.insert(
                                "grpc-message",
                                HeaderValue::from_static(
                                    "the%20audit%20record%20of%20this%20request%20could%20not%20be%20written",
                                ),
                            );
                            Some(t)
                        }
                        _ => trailers,
                    };
                    match trailers {
                        Some(t) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                        None => {
                            *ended = true;
                            return Poll::Ready(None);
                        }
                    }
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(d) = deferred.as_mut()
                            && frame.is_trailers()
                        {
                            match frame.into_trailers() {
                                Ok(trailers) => d.start(Some(trailers)),
                                Err(frame) => return Poll::Ready(Some(Ok(frame))),
                            }
                            continue;
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Some(Err(e)) => {
                        if let Some(mut d) = deferred.take() {
                            d.failed();
                        }
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => match deferred.as_mut() {
                        // The body ended without trailers: record, then end
                        // (with UNAVAILABLE trailers if that fails under
                        // `FailClosed`).
                        Some(d) => {
                            *inner_done = true;
                            d.start(None);
                            if d.waiting.is_none() {
                                *deferred = None;
                            }
                        }
                        None => {
                            *ended = true;
                            return Poll::Ready(None);
                        }
                    },
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner {
                body,
                deferred,
                ended,
                ..
            } => *ended || (deferred.is_none() && body.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Inner { body, .. } => body.size_hint(),
        }
    }
}
