use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::service::{Head, too_large};
use crate::body::ResponseBody;
use crate::guard;
use crate::reject::Respond;

pin_project! {
    /// Response future of [`BodyLimit`](super::BodyLimit): the guard future
    /// (inner service, or a refusal ready at once), plus, for admitted
    /// requests, the watch that turns a streamed overflow into 413.
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: guard::ResponseFuture<F>,
        watch: Option<Watch<R>>,
    }
}

struct Watch<R> {
    tripped: Arc<AtomicBool>,
    head: Head,
    responder: R,
    limit: u64,
}

impl<F, R> ResponseFuture<F, R> {
    pub(super) fn watch(
        future: F,
        tripped: Arc<AtomicBool>,
        head: Head,
        responder: R,
        limit: u64,
    ) -> Self {
        Self {
            inner: guard::ResponseFuture::inner(future),
            watch: Some(Watch {
                tripped,
                head,
                responder,
                limit,
            }),
        }
    }

    pub(super) fn unwatched(future: F) -> Self {
        Self {
            inner: guard::ResponseFuture::inner(future),
            watch: None,
        }
    }

    pub(super) fn reject(response: Response<Bytes>) -> Self {
        Self {
            inner: guard::ResponseFuture::reject(response),
            watch: None,
        }
    }
}

impl<F, R> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: Respond,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        match this.watch.take() {
            Some(watch) if watch.tripped.load(Ordering::Acquire) => {
                drop(response);
                let request = watch.head.into_request();
                let rejection = too_large(&watch.responder, watch.limit, &request);
                Poll::Ready(Ok(rejection.map(ResponseBody::rejection)))
            }
            _ => Poll::Ready(Ok(response)),
        }
    }
}
