//! Layers that look at each request on its way in and at its response on
//! its way out: the latency of the measured endpoints, the count of
//! statuses, and the request timeout's answer.
//!
//! They are tower services of their own rather than
//! `axum::middleware::from_fn`: that one clones the boxed inner service
//! and boxes a future for every request, and its future is polled again
//! at every wake-up of the request (a durable POST is polled two or three
//! times). Three such layers cost a `/healthz` ~3 µs of the server's
//! ~13 µs, and a single-event POST 5–9 µs (docs/benchmarks.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};

use super::{TIMED_OUT, endpoint_of};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Endpoint;
use crate::state::App;

/// What a layer does with a request and with its response.
pub(crate) trait Hook: Clone + Send + Sync + 'static {
    /// What it keeps of the request until the response.
    type Kept: Send + 'static;
    /// Looks at the request before the inner service gets it.
    fn request(&self, req: &Request) -> Self::Kept;
    /// Looks at (and may replace) the response.
    fn response(&self, kept: Self::Kept, response: Response) -> Response;
}

/// The layer of a [`Hook`].
#[derive(Clone, Debug)]
pub(crate) struct HookLayer<H>(pub(crate) H);

impl<S, H: Clone> tower::Layer<S> for HookLayer<H> {
    type Service = Hooked<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Hooked {
            inner,
            hook: self.0.clone(),
        }
    }
}

/// A service with a [`Hook`] around it.
#[derive(Clone, Debug)]
pub(crate) struct Hooked<S, H> {
    inner: S,
    hook: H,
}

impl<S, H> tower::Service<Request> for Hooked<S, H>
where
    S: tower::Service<Request, Response = Response>,
    H: Hook,
{
    type Response = Response;
    type Error = S::Error;
    type Future = HookedFuture<S::Future, H, H::Kept>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let kept = self.hook.request(&req);
        HookedFuture {
            inner: self.inner.call(req),
            after: Some((self.hook.clone(), kept)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, then the hook's look at its response.
    pub(crate) struct HookedFuture<F, H, K> {
        #[pin]
        inner: F,
        after: Option<(H, K)>,
    }
}

impl<F, E, H> Future for HookedFuture<F, H, H::Kept>
where
    F: Future<Output = Result<Response, E>>,
    H: Hook,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(match this.after.take() {
            Some((hook, kept)) => hook.response(kept, response),
            None => response,
        }))
    }
}

/// Records the latency of each request to a measured endpoint
/// ([`endpoint_of`]) under the route matched: applied around the routes,
/// where the router has set [`MatchedPath`] (a request no route matched
/// has none and is not measured).
#[derive(Clone)]
pub(crate) struct Latency(pub(crate) Arc<App>);

impl Hook for Latency {
    type Kept = Option<(Endpoint, Instant)>;

    fn request(&self, req: &Request) -> Self::Kept {
        let route = req.extensions().get::<MatchedPath>()?;
        let endpoint = endpoint_of(req.method(), route.as_str(), req.headers())?;
        Some((endpoint, Instant::now()))
    }

    fn response(&self, kept: Self::Kept, response: Response) -> Response {
        if let Some((endpoint, started)) = kept {
            self.0.metrics.observe(endpoint, started.elapsed());
        }
        response
    }
}

/// Counts every response's status (401s, 403s, 503s, … in the metrics).
#[derive(Clone)]
pub(crate) struct CountStatuses(pub(crate) Arc<App>);

impl Hook for CountStatuses {
    type Kept = ();

    fn request(&self, _: &Request) {}

    fn response(&self, (): (), response: Response) -> Response {
        self.0.metrics.count_status(response.status().as_u16());
        response
    }
}

/// Turns the timeout layer's bare status ([`TIMED_OUT`]) into the API's
/// 503 `request_timeout`, which says how long the limit is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimedOut(pub(crate) Duration);

impl Hook for TimedOut {
    type Kept = ();

    fn request(&self, _: &Request) {}

    fn response(&self, (): (), response: Response) -> Response {
        if response.status() != TIMED_OUT {
            return response;
        }
        ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request took longer than {} s and was cut off; an ingest that was cut off \
                 may or may not have been written: retry with the same Idempotency-Key",
                self.0.as_secs()
            ),
        )
        .retry_after(1)
        .into_response()
    }
}
