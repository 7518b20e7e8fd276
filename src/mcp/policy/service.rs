//! [`McpPolicy`], the service.

use std::mem;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::admit::{Config, too_large};
use super::body::McpPolicyBody;
use super::future::{Pending, ResponseFuture, State};
use crate::mcp::buffer::{Buffered, RequestBody, is_json_media_type};
use crate::reject::{DefaultResponder, Respond};

/// The service made by [`McpPolicyLayer`](crate::mcp::McpPolicyLayer). Clones share the policy.
#[derive(Clone, Debug)]
pub struct McpPolicy<S, R = DefaultResponder> {
    inner: S,
    config: Config<R>,
}

impl<S, R> McpPolicy<S, R> {
    pub(super) fn new(inner: S, config: Config<R>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for McpPolicy<S, R>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    R: Respond,
    ReqBody: Body,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<McpPolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !self.config.inspect
            || request.method() != Method::POST
            || !is_json_media_type(request.headers())
        {
            let future = self.inner.call(request.map(RequestBody::streaming));
            return ResponseFuture::new(State::Calling { future });
        }
        let limit = self.config.limits.request;
        if request.body().size_hint().lower() > limit as u64 {
            let response = too_large(&self.config.responder, &request);
            return ResponseFuture::new(State::Answered {
                response: Some(response),
            });
        }
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        let (parts, body) = request.into_parts();
        ResponseFuture::new(State::Buffering {
            body: Buffered::new(body, limit),
            // Boxed: only a body being read needs it, and inline it would
            // make the pass-through future as large as the service plus
            // the request head.
            pending: Some(Box::new(Pending {
                parts,
                service,
                config: self.config.clone(),
            })),
        })
    }
}
