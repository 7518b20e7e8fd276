//! The services behind every check: admit the request to the inner
//! service, or answer with a rejection without calling it.
//!
//! A synchronous rule is a [`Check`] run by a [`Guard`]; a rule that may
//! have to wait (a shared store, a key fetch, a lookup) is an
//! [`AsyncCheck`] run by an [`AsyncGuard`].
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
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxFuture;
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

    /// The name this rule's admissions are recorded under, as a DEBUG
    /// event `admitted` on the target `tower_warden::decision` in the
    /// request's span (refusals are recorded under their reason's layer);
    /// empty, the default: not recorded.
    const LAYER: &'static str = "";

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

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.check.check(&mut request) {
            Ok(()) => {
                crate::telemetry::admitted(C::LAYER);
                ResponseFuture::inner(self.inner.call(request))
            }
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

/// A value known now, or one that comes later: what an [`AsyncCheck`]
/// decides, and what a rate-limit [`Store`](crate::rate_limit::Store)
/// answers. Only [`Later`](Self::Later) boxes.
pub enum NowOrLater<T> {
    /// Known without waiting.
    Now(T),
    /// Known when the future resolves (after a round trip, a key fetch, a
    /// lookup).
    Later(BoxFuture<T>),
}

impl<T> NowOrLater<T> {
    /// The value, waiting for it when it comes later.
    pub async fn resolve(self) -> T {
        match self {
            Self::Now(value) => value,
            Self::Later(future) => future.await,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for NowOrLater<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Now(value) => f.debug_tuple("Now").field(value).finish(),
            Self::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// An admission rule that may have to wait before it decides (in the spirit
/// of tower-http's `AsyncRequireAuthorization`).
///
/// [`decide`](Self::decide) looks at the request head and answers
/// [`NowOrLater`]; [`apply`](Self::apply) then admits the request (possibly
/// annotating it) or refuses it, and what an admission returns is handed to
/// [`on_response`](Self::on_response) with the inner service's response
/// headers. A decision made now costs no allocation; only a pending one
/// boxes its future (and clones the inner service, which the request takes
/// with it).
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceExt, service_fn};
/// use tower_warden::guard::{AsyncCheck, AsyncGuard, NowOrLater};
/// use tower_warden::reject::{DefaultResponder, Reason, Rejection};
///
/// /// Requests need an `x-ticket`; whether it is valid is looked up later.
/// #[derive(Clone)]
/// struct Ticket;
///
/// impl AsyncCheck for Ticket {
///     type Responder = DefaultResponder;
///     type Outcome = bool;
///     type Memo = ();
///     type Admitted = ();
///     fn decide<B>(&self, request: &Request<B>) -> Option<((), NowOrLater<bool>)> {
///         let Some(ticket) = request.headers().get("x-ticket").cloned() else {
///             return Some(((), NowOrLater::Now(false)));
///         };
///         // A store lookup in real life.
///         Some(((), NowOrLater::Later(Box::pin(async move { ticket == "valid" }))))
///     }
///     fn apply<B>(&self, (): (), valid: bool, _: &mut Request<B>) -> Result<(), Rejection> {
///         valid.then_some(()).ok_or_else(|| Rejection::new(Reason::Unauthenticated))
///     }
///     fn responder(&self) -> &DefaultResponder {
///         &DefaultResponder
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = service_fn(|_: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
/// });
/// let service = AsyncGuard::new(inner, Ticket);
/// let request = Request::builder().header("x-ticket", "valid").body(()).unwrap();
/// let response = service.clone().oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK);
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
pub trait AsyncCheck: Clone {
    /// The name this rule's admissions are recorded under, as a DEBUG
    /// event `admitted` on the target `tower_warden::decision` in the
    /// request's span (refusals are recorded under their reason's layer);
    /// empty, the default: not recorded.
    const LAYER: &'static str = "";

    /// How refusals are answered.
    type Responder: Respond;
    /// What a decision comes to, before it is applied.
    type Outcome: Send + 'static;
    /// What [`decide`](Self::decide) learned that
    /// [`apply`](Self::apply) needs again (`()` when nothing).
    type Memo;
    /// What an admitted request leaves for its response (`()` when
    /// nothing).
    type Admitted;

    /// Decides on the request head, now or later; `None` when the rule
    /// does not concern this request, which then passes untouched (a rate
    /// limit whose key the request does not carry).
    fn decide<B>(&self, request: &Request<B>) -> Option<(Self::Memo, NowOrLater<Self::Outcome>)>;

    /// Applies `outcome` to `request`: admits it (possibly adding
    /// extensions) or refuses it.
    ///
    /// # Errors
    ///
    /// The rejection to answer with; the inner service is not called.
    fn apply<B>(
        &self,
        memo: Self::Memo,
        outcome: Self::Outcome,
        request: &mut Request<B>,
    ) -> Result<Self::Admitted, Rejection>;

    /// Adds what an admission left to the inner service's response headers.
    fn on_response(admitted: Self::Admitted, headers: &mut HeaderMap) {
        let _ = (admitted, headers);
    }

    /// The responder refusals are rendered with.
    fn responder(&self) -> &Self::Responder;
}

/// Runs an [`AsyncCheck`] before the inner service. Clones share the
/// check's configuration.
///
/// `poll_ready` is the inner service's. A decision made now calls the ready
/// inner service at once; a pending one takes the ready service with the
/// request and leaves a fresh clone in its place, which is polled ready
/// before its own next call (so the inner service must be `Clone`).
#[derive(Clone)]
pub struct AsyncGuard<S, C> {
    inner: S,
    check: C,
}

impl<S, C> AsyncGuard<S, C> {
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

impl<S: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for AsyncGuard<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncGuard")
            .field("inner", &self.inner)
            .field("check", &self.check)
            .finish()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for AsyncGuard<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: AsyncCheck,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = AsyncResponseFuture<S, ReqBody, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let Some((memo, decision)) = self.check.decide(&request) else {
            return AsyncResponseFuture {
                state: State::Inner {
                    future: self.inner.call(request),
                    admitted: None,
                },
            };
        };
        let state = match decision {
            NowOrLater::Now(outcome) => match self.check.apply(memo, outcome, &mut request) {
                Ok(admitted) => {
                    crate::telemetry::admitted(C::LAYER);
                    State::Inner {
                        future: self.inner.call(request),
                        admitted: Some(admitted),
                    }
                }
                Err(rejection) => State::Reject {
                    response: Some(reject::render(self.check.responder(), rejection, &request)),
                },
            },
            NowOrLater::Later(pending) => {
                // The ready service goes with the request; this one gets a
                // fresh clone that is polled ready before its next call.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                State::Pending {
                    pending,
                    later: Some(Box::new(Later {
                        memo,
                        service,
                        request,
                        check: self.check.clone(),
                    })),
                }
            }
        };
        AsyncResponseFuture { state }
    }
}

/// What a pending decision needs once it resolves.
struct Later<S, B, C: AsyncCheck> {
    memo: C::Memo,
    service: S,
    request: Request<B>,
    check: C,
}

pin_project! {
    /// Response future of an [`AsyncGuard`]: the inner service's future, a
    /// rejection that is ready at once, or a pending decision (the only
    /// state that holds a boxed future).
    pub struct AsyncResponseFuture<S, B, C>
    where
        S: Service<Request<B>>,
        C: AsyncCheck,
    {
        #[pin]
        state: State<S, B, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, C>
    where
        S: Service<Request<B>>,
        C: AsyncCheck,
    {
        Inner { #[pin] future: S::Future, admitted: Option<C::Admitted> },
        Reject { response: Option<Response<Bytes>> },
        // Boxed: the pending state is rare (it already boxes its future),
        // and inline it would make every layer's future as large as the
        // inner service plus the request, copied at each layer.
        Pending { pending: BoxFuture<C::Outcome>, later: Option<Box<Later<S, B, C>>> },
    }
}

impl<S, B, C> std::fmt::Debug for AsyncResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
    C: AsyncCheck,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Inner { .. } => "inner",
            State::Reject { .. } => "reject",
            State::Pending { .. } => "deciding",
        };
        f.debug_struct("AsyncResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, B, C, ResBody> Future for AsyncResponseFuture<S, B, C>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    C: AsyncCheck,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Inner { future, admitted } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(admitted) = admitted.take() {
                        C::on_response(admitted, response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Reject { response } => {
                    let response = response
                        .take()
                        .expect("AsyncResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                StateProj::Pending { pending, later } => {
                    let outcome = ready!(pending.as_mut().poll(cx));
                    let Some(later) = later.take() else {
                        panic!("AsyncResponseFuture polled after completion");
                    };
                    let Later {
                        memo,
                        mut service,
                        mut request,
                        check,
                    } = *later;
                    match check.apply(memo, outcome, &mut request) {
                        Ok(admitted) => {
                            crate::telemetry::admitted(C::LAYER);
                            State::Inner {
                                future: service.call(request),
                                admitted: Some(admitted),
                            }
                        }
                        Err(rejection) => State::Reject {
                            response: Some(reject::render(check.responder(), rejection, &request)),
                        },
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

#[cfg(test)]
mod tests;
