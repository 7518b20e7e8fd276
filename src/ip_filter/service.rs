//! [`IpFilter`], the service made by [`IpFilterLayer`].

use super::IpFilterLayer;
use crate::guard::Guard;
use crate::reject::DefaultResponder;

/// The service made by [`IpFilterLayer`]: admits only the client addresses
/// its [`IpSet`](super::IpSet) allows.
///
/// The client address is the [`ClientIp`](crate::client_ip::ClientIp)
/// extension when [`ClientIpLayer`](crate::client_ip::ClientIpLayer) ran
/// before, the peer address otherwise; a request with neither is refused.
/// Clones share the set. See the [module docs](super).
pub type IpFilter<S, R = DefaultResponder> = Guard<S, IpFilterLayer<R>>;

impl IpFilter<(), DefaultResponder> {
    /// The layer that admits the client addresses `set` allows; see
    /// [`IpFilterLayer::new`].
    pub fn layer(set: super::IpSet) -> IpFilterLayer {
        IpFilterLayer::new(set)
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

    use http::{Request, Response};
    use tower::{Layer, Service};

    use super::*;
    use crate::client_ip::ClientIp;
    use crate::ip_filter::IpSet;
    use crate::reject::{Reason, Rejection, RequestHead};

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
        let service = IpFilter::layer(set.clone()).layer(counted(&calls));
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
        let service = IpFilterLayer::new(office_only()).layer(counted(&calls));
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
