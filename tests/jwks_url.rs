//! Key rotation through a JWKS endpoint on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_warden::auth::{AuthLayer, JwksUrl, JwtAuth};
use tower_warden::{Principal, Rejection};

fn key(file: &str) -> EncodingKey {
    let path = format!("{}/tests/fixtures/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    EncodingKey::from_rsa_pem(&std::fs::read(path).unwrap()).unwrap()
}

fn jwks(keys: &[(&str, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, file)| {
            let jwk =
                jsonwebtoken::jwk::Jwk::from_encoding_key(&key(file), Algorithm::RS256).unwrap();
            let mut jwk = serde_json::to_value(jwk).unwrap();
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token(kid: &str, file: &str, sub: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(&header, &json!({"sub": sub, "exp": exp}), &key(file)).unwrap()
}

/// What the identity provider serves: a document, or 500 when `None`.
#[derive(Clone, Default)]
struct Provider {
    document: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
}

async fn start(provider: Provider) -> String {
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let p = provider.clone();
            async move {
                p.fetches.fetch_add(1, Ordering::SeqCst);
                match p.document.lock().unwrap().clone() {
                    Some(doc) => (StatusCode::OK, doc),
                    None => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks.json")
}

/// The status and, when admitted, the subject.
async fn check(auth: &JwtAuth, token: &str) -> (StatusCode, Option<String>) {
    let service = ServiceBuilder::new()
        .layer(AuthLayer::jwt(auth.clone()))
        .service_fn(|request: Request<()>| async move {
            let sub = request
                .extensions()
                .get::<Principal>()
                .unwrap()
                .subject()
                .to_owned();
            Ok::<_, std::convert::Infallible>(Response::new(sub))
        });
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    if response.extensions().get::<Rejection>().is_some() {
        return (status, None);
    }
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, Some(String::from_utf8(body.to_vec()).unwrap()))
}

#[tokio::test]
async fn a_new_kid_is_accepted_without_restart_and_known_keys_survive_an_outage() {
    tower_warden::auth::install_crypto_provider();
    let provider = Provider::default();
    *provider.document.lock().unwrap() = Some(jwks(&[("one", "rsa.pem")]));
    let url = start(provider.clone()).await;
    let auth = JwtAuth::builder()
        .jwks_url(JwksUrl::new(url).min_refetch_interval(Duration::ZERO))
        .build()
        .unwrap();
    auth.prefetch().await.unwrap();
    assert_eq!(
        check(&auth, &token("one", "rsa.pem", "alice"))
            .await
            .1
            .as_deref(),
        Some("alice")
    );

    // The provider rotates in a new key: the first token naming it triggers a
    // refetch and is accepted.
    *provider.document.lock().unwrap() = Some(jwks(&[("one", "rsa.pem"), ("two", "rsa2.pem")]));
    assert_eq!(
        check(&auth, &token("two", "rsa2.pem", "bob"))
            .await
            .1
            .as_deref(),
        Some("bob")
    );

    // The endpoint goes down: known keys keep working (fresh tokens, so no
    // cache hit), unknown ones are refused.
    *provider.document.lock().unwrap() = None;
    assert_eq!(
        check(&auth, &token("one", "rsa.pem", "carol"))
            .await
            .1
            .as_deref(),
        Some("carol")
    );
    assert_eq!(
        check(&auth, &token("two", "rsa2.pem", "dave"))
            .await
            .1
            .as_deref(),
        Some("dave")
    );
    let (status, _) = check(&auth, &token("three", "rsa.pem", "eve")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_kids_cannot_hammer_the_provider() {
    tower_warden::auth::install_crypto_provider();
    let provider = Provider::default();
    *provider.document.lock().unwrap() = Some(jwks(&[("one", "rsa.pem")]));
    let url = start(provider.clone()).await;
    let auth = JwtAuth::builder()
        .jwks_url(JwksUrl::new(url).min_refetch_interval(Duration::from_secs(3600)))
        .build()
        .unwrap();
    // The first use fetches; a flood of made-up kids adds no fetch within the
    // minimum interval.
    assert_eq!(
        check(&auth, &token("one", "rsa.pem", "alice")).await.0,
        StatusCode::OK
    );
    for n in 0..20 {
        let (status, _) = check(&auth, &token(&format!("made-up-{n}"), "rsa.pem", "eve")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn keys_too_stale_to_trust_fail_closed() {
    tower_warden::auth::install_crypto_provider();
    let provider = Provider::default();
    *provider.document.lock().unwrap() = Some(jwks(&[("one", "rsa.pem")]));
    let url = start(provider.clone()).await;
    let auth = JwtAuth::builder()
        .jwks_url(JwksUrl::new(url).max_staleness(Duration::from_secs(60)))
        .cache_capacity(0)
        .build()
        .unwrap();
    auth.prefetch().await.unwrap();
    assert_eq!(
        check(&auth, &token("one", "rsa.pem", "alice")).await.0,
        StatusCode::OK
    );
    *provider.document.lock().unwrap() = None;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    let (status, _) = check(&auth, &token("one", "rsa.pem", "alice")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 auth_unavailable"
    );
}
