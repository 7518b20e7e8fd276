//! The layers in front of a real tonic 0.14 server, called by a real tonic
//! client on 127.0.0.1: gRPC callers read refusals as gRPC statuses.
#![cfg(feature = "tonic")]

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_cert::ClientCertLayer;
use tower_warden::client_ip::ClientIpLayer;

/// Starts a health server behind `layer` and returns a connected client.
async fn serve<L, B>(layer: L) -> HealthClient<Channel>
where
    L: tower::Layer<tonic::service::Routes> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn check() -> Request<HealthCheckRequest> {
    Request::new(HealthCheckRequest {
        service: String::new(),
    })
}

#[tokio::test]
async fn refusals_reach_the_tonic_client_as_permission_denied() {
    // Loopback is the trusted proxy, but the client sends no cert assertion.
    let layer = ServiceBuilder::new()
        .layer(ClientIpLayer::new())
        .layer(
            ClientCertLayer::new()
                .try_trusted_proxies(["127.0.0.1"])
                .unwrap(),
        )
        .into_inner();
    let mut client = serve(layer).await;
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with("client_cert_required"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn admitted_calls_reach_the_service_with_the_peer_from_tonic_connect_info() {
    // The cert layer trusts only loopback, so admission proves the peer
    // address was read from tonic's `TcpConnectInfo`.
    let layer = ClientCertLayer::new()
        .try_trusted_proxies(["127.0.0.1"])
        .unwrap();
    let mut client = serve(layer).await;
    let mut request = check();
    request
        .metadata_mut()
        .insert("x-ssl-client-verify", "SUCCESS".parse().unwrap());
    let response = client.check(request).await.unwrap().into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted() {
    let layer = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(2))
        .map_request(|r: http::Request<_>| r.map(tonic::body::Body::new))
        .into_inner();
    let mut client = serve(layer).await;
    let mut request = check();
    request.get_mut().service = "a-service-name-longer-than-the-cap".into();
    let status = client.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().starts_with("payload_too_large"));
}

#[tokio::test]
async fn missing_and_forged_credentials_are_unauthenticated_and_scopes_permission_denied() {
    use tower_warden::auth::{ApiKeys, AuthLayer, RequireLayer};
    use tower_warden::principal::{AuthMethod, Principal};

    let keys = ApiKeys::new("a-server-side-salt-value").unwrap();
    keys.insert_key(
        "sk-grpc-0123456789",
        Principal::builder("svc", AuthMethod::ApiKey)
            .scopes(["health:read"])
            .build(),
    )
    .unwrap();
    let layer = ServiceBuilder::new()
        .layer(AuthLayer::api_keys(keys.clone()))
        .into_inner();
    let mut client = serve(layer).await;
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with("unauthenticated"),
        "{}",
        status.message()
    );
    let mut forged = check();
    forged
        .metadata_mut()
        .insert("x-api-key", "sk-grpc-0000000000".parse().unwrap());
    assert_eq!(
        client.check(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut good = check();
    good.metadata_mut()
        .insert("x-api-key", "sk-grpc-0123456789".parse().unwrap());
    assert_eq!(
        client.check(good).await.unwrap().into_inner().status(),
        ServingStatus::Serving
    );

    let layer = ServiceBuilder::new()
        .layer(AuthLayer::api_keys(keys))
        .layer(RequireLayer::scopes(["health:admin"]))
        .into_inner();
    let mut client = serve(layer).await;
    let mut good = check();
    good.metadata_mut()
        .insert("x-api-key", "sk-grpc-0123456789".parse().unwrap());
    let status = client.check(good).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().starts_with("insufficient_scope"));
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn over_quota_calls_are_resource_exhausted() {
    use tower_warden::rate_limit::{KeyBy, Quota, RateLimitLayer};

    let layer = RateLimitLayer::memory(Quota::per_minute(2).unwrap(), KeyBy::client_ip());
    let mut client = serve(layer).await;
    for _ in 0..2 {
        let response = client.check(check()).await.unwrap();
        // Admitted calls carry where they stand, as metadata.
        assert!(response.metadata().get("ratelimit").is_some());
    }
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with("rate_limited"),
        "{}",
        status.message()
    );
}

/// A health service that answers `UNAVAILABLE` (a trailers-only gRPC
/// error) until `healthy` is set.
#[cfg(feature = "circuit-breaker")]
#[derive(Clone)]
struct Flaky {
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(feature = "circuit-breaker")]
impl tower::Service<http::Request<tonic::body::Body>> for Flaky {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(Ok(tonic::Status::unavailable("backend down").into_http()))
    }
}

#[cfg(feature = "circuit-breaker")]
impl tonic::server::NamedService for Flaky {
    const NAME: &'static str = "grpc.health.v1.Health";
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test]
async fn an_open_breaker_is_unavailable_and_grpc_failures_open_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower_warden::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};

    let breaker = CircuitBreaker::builder("grpc-backend")
        .failure_threshold(2)
        .reset_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let flaky = Flaky {
        calls: calls.clone(),
    };
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = incoming.local_addr().unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(flaky)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    // The backend's own UNAVAILABLE answers (HTTP 200, gRPC 14) count as
    // failures: two of them open the breaker.
    for _ in 0..2 {
        let status = client.check(check()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "backend down");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Open: the client reads UNAVAILABLE from the breaker itself, and the
    // backend is not called.
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().starts_with("circuit_open"),
        "{}",
        status.message()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
