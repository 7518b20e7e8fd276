//! The layers in an axum 0.8 `Router`, served on 127.0.0.1 with connect info
//! and called over real HTTP/1.1.
#![cfg(feature = "axum")]

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Extension;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_ip::{ClientIp, ClientIpLayer};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn whoami(Extension(ClientIp(ip)): Extension<ClientIp>) -> String {
    ip.to_string()
}

async fn echo(body: String) -> String {
    body
}

fn app(layer: ClientIpLayer) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/echo", post(echo))
        .layer(BodyLimitLayer::new(16))
        .layer(layer)
}

#[path = "support/chunks.rs"]
mod chunks;
use chunks::Chunks;

async fn send<B>(request: Request<B>) -> (StatusCode, http::HeaderMap, Bytes)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client = Client::builder(TokioExecutor::new()).build_http::<B>();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

#[tokio::test]
async fn client_ip_comes_from_axum_connect_info() {
    let addr = serve(app(ClientIpLayer::new())).await;
    let request = Request::get(format!("http://{addr}/whoami"))
        .header("x-forwarded-for", "203.0.113.9")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "127.0.0.1", "an untrusted peer's XFF is ignored");
}

#[tokio::test]
async fn trusted_loopback_proxy_forwards_the_client() {
    let layer = ClientIpLayer::new()
        .try_trusted_proxies(["127.0.0.1"])
        .unwrap();
    let addr = serve(app(layer)).await;
    let request = Request::get(format!("http://{addr}/whoami"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "203.0.113.9");

    let request = Request::get(format!("http://{addr}/whoami"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, headers, _) = send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn attack_chunked_upload_over_the_cap_gets_a_clean_413() {
    let addr = serve(app(ClientIpLayer::new())).await;
    let chunks = Chunks::of(vec![Bytes::from_static(b"0123456789"); 4]);
    let request = Request::post(format!("http://{addr}/echo"))
        .body(chunks)
        .unwrap();
    let (status, headers, body) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["connection"], "close");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "payload_too_large");
}

#[tokio::test]
async fn declared_length_over_the_cap_and_bodies_within_it() {
    let addr = serve(app(ClientIpLayer::new())).await;
    let request = Request::post(format!("http://{addr}/echo"))
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 17])))
        .unwrap();
    let (status, _, _) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let chunks = Chunks::of(vec![Bytes::from_static(b"01234567"); 2]);
    let request = Request::post(format!("http://{addr}/echo"))
        .body(chunks)
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "0123456701234567");
}

/// The `Principal` extractor: a handler takes the caller as an argument.
async fn me(principal: tower_warden::principal::Principal) -> String {
    format!("{} {}", principal.subject(), principal.method())
}

#[tokio::test]
async fn the_principal_extractor_and_route_layer_auth() {
    use tower_warden::auth::{ApiKeys, AuthLayer, RequireLayer};
    use tower_warden::principal::{AuthMethod, Principal};

    let keys = ApiKeys::new("a-server-side-salt-value").unwrap();
    let reader = Principal::builder("reader-bot", AuthMethod::ApiKey)
        .scopes(["notes:read"])
        .build();
    keys.insert_key("sk-reader-0123456789", reader).unwrap();
    let app = Router::new()
        .route("/admin", get(me))
        .route_layer(RequireLayer::scopes(["notes:write"]))
        .route("/me", get(me))
        .route_layer(AuthLayer::api_keys(keys));
    let app = Router::new().route("/bare", get(me)).merge(app);
    let addr = serve(app).await;
    let get_with = |path: &str, key: Option<&str>| {
        let mut builder = Request::get(format!("http://{addr}{path}"));
        if let Some(key) = key {
            builder = builder.header("x-api-key", key);
        }
        builder.body(Empty::<Bytes>::new()).unwrap()
    };
    let (status, _, body) = send(get_with("/me", Some("sk-reader-0123456789"))).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"reader-bot api_key"[..])
    );
    let (status, headers, _) = send(get_with("/me", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, headers, _) = send(get_with("/admin", Some("sk-reader-0123456789"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"insufficient_scope\", error_description=\"missing scope(s): notes:write\", scope=\"notes:write\""
    );
    // route_layer: an unknown path stays 404 rather than 401.
    let (status, _, _) = send(get_with("/nowhere", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A handler outside any auth layer: the extractor refuses with 401.
    let (status, _, body) = send(get_with("/bare", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("unauthenticated")
    );
}
