//! [`CircuitBreakerLayer`]: a [`CircuitBreaker`] in front of a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{CircuitBreaker, Permit};
use crate::body::ResponseBody;
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// How a call ended, for a [classifier](CircuitBreakerLayer::classify).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The service answered.
    Response {
        /// The answer's status.
        status: StatusCode,
        /// The answer's headers (gRPC statuses may be here).
        headers: &'a HeaderMap,
    },
    /// The service returned an error.
    Error,
}

type Classifier = dyn Fn(Outcome<'_>) -> bool + Send + Sync;

/// The default rule: errors, 5xx and 408 are failures, and so are the gRPC
/// statuses of a failing server (`UNKNOWN` 2, `DEADLINE_EXCEEDED` 4,
/// `INTERNAL` 13, `UNAVAILABLE` 14, `DATA_LOSS` 15) when the answer carries
/// them in its headers (a trailers-only answer, as servers send for an
/// error). A caller's mistake (`INVALID_ARGUMENT`, `NOT_FOUND`,
/// `PERMISSION_DENIED`, ...) is not the service failing.
fn default_failure(outcome: Outcome<'_>) -> bool {
    match outcome {
        Outcome::Error => true,
        Outcome::Response { status, headers } => {
            status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || headers.get("grpc-status").is_some_and(|code| {
                    matches!(code.as_bytes(), b"2" | b"4" | b"13" | b"14" | b"15")
                })
        }
    }
}

/// Puts a [`CircuitBreaker`] in front of a service: an open breaker
/// answers 503 `circuit_open` with `Retry-After` (gRPC `UNAVAILABLE`)
/// without calling it. Clones share the breaker.
#[derive(Clone)]
#[must_use]
pub struct CircuitBreakerLayer<R = DefaultResponder> {
    breaker: CircuitBreaker,
    /// `None`: the default rule, called without an `Arc` per request.
    classify: Option<Arc<Classifier>>,
    responder: R,
}

impl<R> fmt::Debug for CircuitBreakerLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// `breaker` in front of the service; errors, 5xx and 408 count as
    /// failures.
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classify: None,
            responder: DefaultResponder,
        }
    }
}

impl<R> CircuitBreakerLayer<R> {
    /// Decides what counts as a failure: `true` for a failure.
    pub fn classify<F>(mut self, is_failure: F) -> Self
    where
        F: Fn(Outcome<'_>) -> bool + Send + Sync + 'static,
    {
        self.classify = Some(Arc::new(is_failure));
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> CircuitBreakerLayer<R2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify: self.classify,
            responder,
        }
    }

    /// The breaker (for its state).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, R: Clone> Layer<S> for CircuitBreakerLayer<R> {
    type Service = BreakCircuit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakCircuit {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The service of [`CircuitBreakerLayer`] (named for what it wraps: the
/// breaker itself is [`CircuitBreaker`]).
#[derive(Clone)]
pub struct BreakCircuit<S, R = DefaultResponder> {
    inner: S,
    breaker: CircuitBreaker,
    classify: Option<Arc<Classifier>>,
    responder: R,
}

impl<S: fmt::Debug, R> fmt::Debug for BreakCircuit<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakCircuit")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl BreakCircuit<(), DefaultResponder> {
    /// The layer that makes this service; see [`CircuitBreakerLayer::new`].
    pub fn layer(breaker: CircuitBreaker) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, R> BreakCircuit<S, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for BreakCircuit<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Respond,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.breaker.try_acquire() {
            Ok(permit) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                    permit: Some(permit),
                    classify: self.classify.clone(),
                },
            },
            Err(open) => {
                let retry = open.retry_after();
                let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
                let rejection = Rejection::new(Reason::CircuitOpen)
                    .with_header(RETRY_AFTER, HeaderValue::from(secs.max(1)));
                ResponseFuture {
                    kind: Kind::Reject {
                        response: Some(reject::render(&self.responder, rejection, &request)),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`BreakCircuit`]: the inner future, reporting
    /// its outcome to the breaker, or an immediate refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner {
            #[pin]
            future: F,
            permit: Option<Permit>,
            classify: Option<Arc<Classifier>>,
        },
        Reject { response: Option<Response<Bytes>> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Reject { .. } => "reject",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                future,
                permit,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                let outcome = match &result {
                    Ok(response) => Outcome::Response {
                        status: response.status(),
                        headers: response.headers(),
                    },
                    Err(_) => Outcome::Error,
                };
                if let Some(permit) = permit.take() {
                    let failed = match classify {
                        Some(classify) => classify(outcome),
                        None => default_failure(outcome),
                    };
                    if failed {
                        permit.failure();
                    } else {
                        permit.success();
                    }
                }
                Poll::Ready(result.map(|response| response.map(ResponseBody::inner)))
            }
            KindProj::Reject { response } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::rejection)))
            }
        }
    }
}
