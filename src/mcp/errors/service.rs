//! [`JsonRpcErrors`], the service.

use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::JsonRpcBody;
use super::future::{ResponseFuture, State};
use crate::mcp::buffer::{Buffered, RequestBody, is_json_media_type};

/// What the layer and its services share.
#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) max_body_bytes: usize,
}

/// The service made by [`JsonRpcErrorsLayer`](crate::mcp::JsonRpcErrorsLayer).
#[derive(Clone, Debug)]
pub struct JsonRpcErrors<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> JsonRpcErrors<S> {
    pub(super) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JsonRpcErrors<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
{
    type Response = Response<JsonRpcBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method() == Method::POST && is_json_media_type(request.headers()) {
            let clone = self.inner.clone();
            let service = mem::replace(&mut self.inner, clone);
            let (parts, body) = request.into_parts();
            return ResponseFuture::new(
                State::Buffering {
                    body: Buffered::new(body, self.config.max_body_bytes),
                    parts: Some(parts),
                    service: Some(service),
                },
                true,
            );
        }
        let future = self.inner.call(request.map(RequestBody::streaming));
        ResponseFuture::new(State::Calling { future }, false)
    }
}
