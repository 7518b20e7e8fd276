//! `examples/grpc_server.rs` with a real tonic client on 127.0.0.1: the
//! perimeter's refusals arrive as the gRPC statuses a client can act on.
#![cfg(all(feature = "tonic", feature = "stack", feature = "circuit-breaker"))]

#[allow(dead_code)]
#[path = "../examples/grpc_server.rs"]
mod grpc_server;

use std::net::SocketAddr;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_warden::config::WardenConfig;

const SECRET: &str = "grpc-example-secret-of-32-bytes-or-more";

fn token(claims: serde_json::Value) -> String {
    tower_warden::auth::install_crypto_provider();
    let mut claims = claims;
    claims["exp"] = json!(4_000_000_000u64);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn start(vars: &[(&str, &str)]) -> (HealthClient<Channel>, grpc_server::Perimeter) {
    let mut all = vec![("MCP_JWT_SECRET", SECRET)];
    all.extend_from_slice(vars);
    let config = WardenConfig::from_vars(all).unwrap();
    let perimeter = grpc_server::perimeter(&config).unwrap();
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = incoming.local_addr().unwrap();
    let serving = grpc_server::Perimeter {
        warden: perimeter.warden.clone(),
        breaker: perimeter.breaker.clone(),
    };
    tokio::spawn(async move {
        grpc_server::serve(&serving, incoming, CancellationToken::new())
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (HealthClient::new(channel), perimeter)
}

fn check(bearer: Option<&str>) -> Request<HealthCheckRequest> {
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[tokio::test]
async fn a_valid_token_is_served_and_a_missing_one_is_unauthenticated() {
    let (mut client, _) = start(&[]).await;
    let alice = token(json!({"sub": "alice"}));
    assert!(client.check(check(Some(&alice))).await.is_ok());
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with("unauthenticated"),
        "{}",
        status.message()
    );
    let status = client
        .check(check(Some("forged.token.value")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_blocked_address_is_permission_denied() {
    let (mut client, _) = start(&[("MCP_BLOCKED_IPS", "127.0.0.0/8")]).await;
    let alice = token(json!({"sub": "alice"}));
    let status = client.check(check(Some(&alice))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with("ip_denied"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_caller_over_quota_is_resource_exhausted() {
    let (mut client, _) =
        start(&[("MCP_RATE_LIMIT_RPM", "60"), ("MCP_RATE_LIMIT_BURST", "2")]).await;
    let alice = token(json!({"sub": "alice"}));
    for _ in 0..2 {
        assert!(client.check(check(Some(&alice))).await.is_ok());
    }
    let status = client.check(check(Some(&alice))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with("rate_limited"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn an_open_breaker_is_unavailable() {
    let (mut client, perimeter) = start(&[("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2")]).await;
    let alice = token(json!({"sub": "alice"}));
    assert!(client.check(check(Some(&alice))).await.is_ok());
    // The service behind fails twice (as a backend outage would).
    for _ in 0..2 {
        perimeter.breaker.try_acquire().unwrap().failure();
    }
    let status = client.check(check(Some(&alice))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().starts_with("circuit_open"),
        "{}",
        status.message()
    );
}
