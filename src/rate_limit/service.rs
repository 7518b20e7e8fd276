//! The [`RateLimit`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::config::Config;
use super::future::ResponseFuture;
use super::store::Check;
use crate::body::ResponseBody;
use crate::reject::{self, Respond};

/// The service of [`RateLimitLayer`](super::RateLimitLayer). Clones share
/// the store.
pub struct RateLimit<S, R> {
    inner: S,
    config: Arc<Config>,
    responder: R,
}

impl<S, R> RateLimit<S, R> {
    pub(crate) fn new(inner: S, config: Arc<Config>, responder: R) -> Self {
        Self {
            inner,
            config,
            responder,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, R: Clone> Clone for RateLimit<S, R> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            Arc::clone(&self.config),
            self.responder.clone(),
        )
    }
}

impl<S: fmt::Debug, R> fmt::Debug for RateLimit<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limits", &self.config.limits_debug())
            .field("key", &self.config.key)
            .finish_non_exhaustive()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: Respond,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some((key, limit)) = self.config.select(&request) else {
            return ResponseFuture::inner(self.inner.call(request), None, &self.config);
        };
        let check = self.config.store.check(&key, self.config.quota(limit));
        if let Check::Ready(decision) = &check {
            self.config.record(limit, decision.allowed);
        }
        match check {
            Check::Ready(decision) if decision.allowed => ResponseFuture::inner(
                self.inner.call(request),
                Some((limit, decision)),
                &self.config,
            ),
            Check::Ready(decision) => {
                let rejection = self.config.rejection(limit, &decision);
                ResponseFuture::reject(reject::render(&self.responder, rejection, &request))
            }
            Check::Pending(pending) => {
                // The ready service goes with the request; this one gets a
                // fresh clone that is polled ready before its next call.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::pending(
                    pending,
                    limit,
                    service,
                    request,
                    Arc::clone(&self.config),
                    self.responder.clone(),
                )
            }
        }
    }
}
