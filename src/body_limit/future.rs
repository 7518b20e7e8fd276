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
use crate::reject::Respond;

pin_project! {
    /// Response future of [`BodyLimit`](super::BodyLimit).
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R> {
        Watch {
            #[pin]
            future: F,
            watch: Option<Watch<R>>,
        },
        Reject { response: Option<Response<Bytes>> },
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
            kind: Kind::Watch {
                future,
                watch: Some(Watch {
                    tripped,
                    head,
                    responder,
                    limit,
                }),
            },
        }
    }

    pub(super) fn reject(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Reject {
                response: Some(response),
            },
        }
    }
}

impl<F, R> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.kind {
            Kind::Watch { .. } => "watch",
            Kind::Reject { .. } => "reject",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
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
        match self.project().kind.project() {
            KindProj::Watch { future, watch } => {
                let response = ready!(future.poll(cx))?;
                let watch = watch
                    .take()
                    .expect("ResponseFuture polled after completion");
                if watch.tripped.load(Ordering::Acquire) {
                    drop(response);
                    let request = watch.head.into_request();
                    let rejection = too_large(&watch.responder, watch.limit, &request);
                    return Poll::Ready(Ok(rejection.map(ResponseBody::rejection)));
                }
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
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
