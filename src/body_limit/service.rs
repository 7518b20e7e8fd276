use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body;
use tower_service::Service;

use super::{LimitedBody, ResponseFuture};
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// The service made by [`BodyLimitLayer`](super::BodyLimitLayer).
#[derive(Clone, Debug)]
pub struct BodyLimit<S, R = DefaultResponder> {
    inner: S,
    limit: u64,
    responder: R,
}

impl<S, R> BodyLimit<S, R> {
    pub(super) fn new(inner: S, limit: u64, responder: R) -> Self {
        Self {
            inner,
            limit,
            responder,
        }
    }
}

/// What is kept of the request to answer a streamed overflow after the
/// request itself has moved into the inner service. Cheap: no allocation.
#[derive(Debug)]
pub(super) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    content_type: Option<HeaderValue>,
}

impl Head {
    fn of<B>(request: &Request<B>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            content_type: request.headers().get(CONTENT_TYPE).cloned(),
        }
    }

    pub(super) fn into_request(self) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        if let Some(content_type) = self.content_type {
            request.headers_mut().insert(CONTENT_TYPE, content_type);
        }
        request
    }
}

/// The 413 for a body over `limit`, rendered for `request`.
pub(super) fn too_large<R: Respond, B>(
    responder: &R,
    limit: u64,
    request: &Request<B>,
) -> Response<bytes::Bytes> {
    let mut rejection = Rejection::new(Reason::PayloadTooLarge)
        .with_detail(format!("request body is larger than {limit} bytes"));
    if request.version() <= Version::HTTP_11 {
        // The rest of the upload is still on the wire: do not reuse the
        // connection for another request.
        rejection = rejection.with_header(CONNECTION, HeaderValue::from_static("close"));
    }
    reject::render(responder, rejection, request)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S, R>
where
    S: Service<Request<LimitedBody<ReqBody>>, Response = Response<ResBody>>,
    R: Respond,
    ReqBody: Body,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let declared = declared_length(request.headers()).unwrap_or(0);
        if declared > self.limit || request.body().size_hint().lower() > self.limit {
            return ResponseFuture::reject(too_large(&self.responder, self.limit, &request));
        }
        let limit = self.limit;
        // A body of exact, known size within the limit cannot overflow it
        // (the limit is still enforced on the bytes read): no watch, no
        // copy of the head.
        if request.body().size_hint().exact().is_some() {
            let request = request.map(|body| LimitedBody::new(body, limit, None));
            return ResponseFuture::unwatched(self.inner.call(request));
        }
        let tripped = Arc::new(AtomicBool::new(false));
        let head = Head::of(&request);
        let flag = Arc::clone(&tripped);
        let request = request.map(|body| LimitedBody::new(body, limit, Some(flag)));
        ResponseFuture::watch(
            self.inner.call(request),
            tripped,
            head,
            self.responder.clone(),
            limit,
        )
    }
}
