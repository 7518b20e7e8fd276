//! The response future of [`RateLimit`](super::RateLimit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::Config;
use super::store::Decision;
use crate::body::ResponseBody;
use crate::reject::{self, Respond};

type Pending = Pin<Box<dyn Future<Output = Decision> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit): the inner
    /// service's future (boxed only while a shared store decides).
    pub struct ResponseFuture<S, B, R>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, R>
    where
        S: Service<Request<B>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            decision: Option<(usize, Decision)>,
            config: Option<Arc<Config>>,
        },
        Reject { response: Option<Response<Bytes>> },
        Pending {
            pending: Pending,
            limit: usize,
            service: Option<S>,
            request: Option<Request<B>>,
            config: Arc<Config>,
            responder: R,
        },
    }
}

impl<S, B, R> ResponseFuture<S, B, R>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn inner(
        future: S::Future,
        decision: Option<(usize, Decision)>,
        config: &Arc<Config>,
    ) -> Self {
        // The config is only needed to write headers.
        let config = decision.map(|_| Arc::clone(config));
        Self {
            state: State::Inner {
                future,
                decision,
                config,
            },
        }
    }

    pub(crate) fn reject(response: Response<Bytes>) -> Self {
        Self {
            state: State::Reject {
                response: Some(response),
            },
        }
    }

    pub(crate) fn pending(
        pending: Pending,
        limit: usize,
        service: S,
        request: Request<B>,
        config: Arc<Config>,
        responder: R,
    ) -> Self {
        Self {
            state: State::Pending {
                pending,
                limit,
                service: Some(service),
                request: Some(request),
                config,
                responder,
            },
        }
    }
}

impl<S, B, R> std::fmt::Debug for ResponseFuture<S, B, R>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Inner { .. } => "inner",
            State::Reject { .. } => "reject",
            State::Pending { .. } => "deciding",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, B, R, ResBody> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: Respond,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Inner {
                    future,
                    decision,
                    config,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let (Some((limit, decision)), Some(config)) = (decision, config) {
                        config.write_headers(*limit, decision, response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Reject { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                StateProj::Pending {
                    pending,
                    limit,
                    service,
                    request,
                    config,
                    responder,
                } => {
                    let decision = ready!(pending.as_mut().poll(cx));
                    let (Some(mut svc), Some(req)) = (service.take(), request.take()) else {
                        panic!("ResponseFuture polled after completion");
                    };
                    config.record(*limit, decision.allowed);
                    if decision.allowed {
                        State::Inner {
                            future: svc.call(req),
                            decision: Some((*limit, decision)),
                            config: Some(Arc::clone(config)),
                        }
                    } else {
                        let rejection = config.rejection(*limit, &decision);
                        State::Reject {
                            response: Some(reject::render(&*responder, rejection, &req)),
                        }
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}
