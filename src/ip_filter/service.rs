//! [`IpFilter`], the service made by [`IpFilterLayer`].

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{IpFilterLayer, IpSet};
use crate::body::ResponseBody;
use crate::client_ip::ClientIp;
use crate::future::ResponseFuture;
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// Admits only the client addresses an [`IpSet`] allows.
///
/// The client address is the [`ClientIp`] extension when
/// [`ClientIpLayer`](crate::client_ip::ClientIpLayer) ran before, the peer
/// address otherwise; a request with neither is refused. Clones share the
/// set. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct IpFilter<S, R = DefaultResponder> {
    inner: S,
    set: IpSet,
    responder: R,
}

impl<S> IpFilter<S> {
    /// Wraps `inner`, admitting only what `set` allows.
    #[must_use]
    pub fn new(inner: S, set: IpSet) -> Self {
        Self::from_parts(inner, set, DefaultResponder)
    }

    /// A layer that wraps services in [`IpFilter`]; the same as
    /// [`IpFilterLayer::new`].
    pub fn layer(set: IpSet) -> IpFilterLayer {
        IpFilterLayer::new(set)
    }
}

impl<S, R> IpFilter<S, R> {
    pub(super) fn from_parts(inner: S, set: IpSet, responder: R) -> Self {
        Self {
            inner,
            set,
            responder,
        }
    }

    /// The set this service filters on.
    #[must_use]
    pub fn ip_set(&self) -> &IpSet {
        &self.set
    }

    /// The inner service.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    #[must_use]
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    #[must_use]
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for IpFilter<S, R>
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
        let rejection = match ClientIp::of(request.extensions()) {
            Some(ip) if self.set.is_allowed(ip) => {
                return ResponseFuture::inner(self.inner.call(request));
            }
            Some(_) => Rejection::new(Reason::IpDenied),
            // Fail closed: without an address there is nothing to allow.
            None => Rejection::new(Reason::IpDenied)
                .with_detail("the client address is unknown, so it cannot be allowed"),
        };
        ResponseFuture::reject(reject::render(&self.responder, rejection, &request))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::header::CONTENT_TYPE;
    use http::{StatusCode, header::HeaderValue};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::reject::RequestHead;

    /// An inner service that counts its calls.
    fn counted(
        calls: &Arc<AtomicUsize>,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<String>, Infallible>>,
    > + Clone {
        let calls = Arc::clone(calls);
        tower::service_fn(move |_request: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::from("inner"))) }
        })
    }

    fn from_peer(peer: &str) -> Request<()> {
        let mut request = Request::new(());
        let ip: IpAddr = peer.parse().unwrap();
        request.extensions_mut().insert(SocketAddr::new(ip, 40000));
        request
    }

    fn office_only() -> IpSet {
        IpSet::from_lists(["10.0.0.0/24"], ["0.0.0.0/0"]).unwrap()
    }

    async fn status_of(set: &IpSet, request: Request<()>) -> (StatusCode, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let service = IpFilter::new(counted(&calls), set.clone());
        let response = service.oneshot(request).await.unwrap();
        (response.status(), calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn allowed_addresses_reach_the_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let service = ServiceBuilder::new()
            .layer(IpFilterLayer::new(office_only()))
            .service(counted(&calls));
        let response = service.oneshot(from_peer("10.0.0.5")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.body().is_rejection());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "inner");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn denied_addresses_get_problem_json_and_never_reach_the_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let service = ServiceBuilder::new()
            .layer(IpFilterLayer::new(office_only()))
            .service(counted(&calls));
        let response = service.oneshot(from_peer("8.8.8.8")).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            response.extensions().get::<Rejection>().unwrap().reason(),
            Reason::IpDenied
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "ip_denied");
        assert_eq!(problem["status"], 403);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn grpc_calls_get_permission_denied() {
        let calls = Arc::new(AtomicUsize::new(0));
        let service = IpFilter::new(counted(&calls), office_only());
        let mut request = from_peer("8.8.8.8");
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn no_client_address_fails_closed() {
        // Even a set that allows everything refuses an unknown client.
        for set in [IpSet::default(), office_only()] {
            let (status, calls) = status_of(&set, Request::new(())).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(calls, 0);
        }
    }

    #[tokio::test]
    async fn the_client_ip_extension_wins_over_the_peer() {
        // The peer is an allowed proxy, the resolved client is not.
        let mut request = from_peer("10.0.0.1");
        request
            .extensions_mut()
            .insert(ClientIp("203.0.113.9".parse().unwrap()));
        assert_eq!(
            status_of(&office_only(), request).await,
            (StatusCode::FORBIDDEN, 0)
        );
        // And the other way round.
        let mut request = from_peer("203.0.113.9");
        request
            .extensions_mut()
            .insert(ClientIp("10.0.0.9".parse().unwrap()));
        assert_eq!(
            status_of(&office_only(), request).await,
            (StatusCode::OK, 1)
        );
    }

    #[tokio::test]
    async fn operator_case_and_ties() {
        let set = office_only();
        assert_eq!(
            status_of(&set, from_peer("10.0.0.5")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            status_of(&set, from_peer("8.8.8.8")).await.0,
            StatusCode::FORBIDDEN
        );
        let tie = IpSet::from_lists(["10.0.0.0/24"], ["10.0.0.0/24"]).unwrap();
        assert_eq!(
            status_of(&tie, from_peer("10.0.0.5")).await,
            (StatusCode::FORBIDDEN, 0)
        );
    }

    #[tokio::test]
    async fn ipv6_and_ipv4_mapped_peers() {
        let set =
            IpSet::from_lists(["2001:db8::/32", "10.0.0.0/8"], ["2001:db8:bad::/48"]).unwrap();
        assert_eq!(
            status_of(&set, from_peer("2001:db8::1")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            status_of(&set, from_peer("2001:db8:bad::1")).await.0,
            StatusCode::FORBIDDEN
        );
        // A dual-stack socket reports an IPv4 client as IPv4-mapped IPv6.
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(ClientIp("::ffff:10.1.2.3".parse().unwrap()));
        assert_eq!(status_of(&set, request).await.0, StatusCode::OK);
        assert_eq!(
            status_of(&set, from_peer("::ffff:192.0.2.1")).await.0,
            StatusCode::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn custom_responders_answer_refusals() {
        let teapot = |rejection: &Rejection, _: &RequestHead<'_>| {
            let mut response = Response::new(Bytes::from(rejection.reason().code()));
            *response.status_mut() = StatusCode::IM_A_TEAPOT;
            response
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let service = ServiceBuilder::new()
            .layer(IpFilterLayer::new(office_only()).responder(teapot))
            .service(counted(&calls));
        let response = service.oneshot(from_peer("8.8.8.8")).await.unwrap();
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ip_denied");
    }
}
