//! The service behind every synchronous check: admit the request to the
//! inner service, or answer with a rejection without calling it.
//!
//! [`ClientIpLayer`](crate::client_ip::ClientIpLayer),
//! `IpFilterLayer` and `ClientCertLayer` are each a [`Check`]: their layer
//! value (shared configuration in an `Arc`, plus a responder) is cloned into
//! a [`Guard`] around the inner service. Implement [`Check`] yourself to get
//! the same service, future and rejection handling for your own rule.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceExt, service_fn};
//! use tower_warden::guard::{Check, Guard};
//! use tower_warden::reject::{DefaultResponder, Reason, Rejection};
//!
//! /// Only GET.
//! #[derive(Clone)]
//! struct GetOnly;
//!
//! impl Check for GetOnly {
//!     type Responder = DefaultResponder;
//!     fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
//!         if request.method() == http::Method::GET {
//!             Ok(())
//!         } else {
//!             Err(Rejection::new(Reason::IpDenied).with_detail("GET only"))
//!         }
//!     }
//!     fn responder(&self) -> &DefaultResponder {
//!         &DefaultResponder
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let inner = service_fn(|_: Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! });
//! let service = Guard::new(inner, GetOnly);
//! let response = service.oneshot(Request::post("/").body(()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::reject::{self, Rejection, Respond};

/// A synchronous admission rule.
///
/// `check` may add what it learned to the request extensions; an `Err` is
/// rendered with [`responder`](Check::responder) and the inner service is
/// not called.
pub trait Check: Clone {
    /// How refusals are answered.
    type Responder: Respond;

    /// Admits `request` (possibly annotating it) or refuses it.
    ///
    /// # Errors
    ///
    /// The rejection to answer with.
    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection>;

    /// The responder refusals are rendered with.
    fn responder(&self) -> &Self::Responder;
}

/// Runs a [`Check`] before the inner service. Clones share the check's
/// configuration.
#[derive(Clone, Debug)]
pub struct Guard<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Guard<S, C> {
    /// Guards `inner` with `check`.
    pub fn new(inner: S, check: C) -> Self {
        Self { inner, check }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The check.
    pub fn check_ref(&self) -> &C {
        &self.check
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Guard<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: Check,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.check.check(&mut request) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(rejection) => {
                ResponseFuture::reject(reject::render(self.check.responder(), rejection, &request))
            }
        }
    }
}

pin_project! {
    /// Response future of a [`Guard`]: the inner service's future, or a
    /// rejection that is ready at once. Never boxed.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Reject { response: Option<Response<Bytes>> },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn reject(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Reject {
                response: Some(response),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
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
