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
use tower_warden::principal::Principal;
use tower_warden::reject::Rejection;

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

/// Serves `app` on 127.0.0.1; its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The status, the problem code of a refusal, and how often the inner
/// service ran.
async fn probe(auth: &JwtAuth, token: &str) -> (StatusCode, Option<&'static str>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::jwt(auth.clone()))
        .service_fn(move |_: Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
        });
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let code = response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.reason().code());
    (response.status(), code, calls.load(Ordering::SeqCst))
}

const SHARED_SECRET: &str = "a-shared-secret-published-by-mistake-0123";

/// An HS256 token with `kid`, signed with [`SHARED_SECRET`].
fn hs256_token(kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &header,
        &json!({"sub": "mallory", "exp": exp}),
        &EncodingKey::from_secret(SHARED_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The JWK of [`SHARED_SECRET`] (`kty: oct`), pinned to HS256.
fn oct_jwk(kid: &str) -> Value {
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_secret(SHARED_SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap(),
    )
    .unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

#[tokio::test]
async fn shared_secret_keys_from_a_url_are_refused() {
    tower_warden::auth::install_crypto_provider();
    // A key set of only a shared secret: whoever reads the URL could sign.
    let provider = Provider::default();
    *provider.document.lock().unwrap() = Some(json!({"keys": [oct_jwk("shared")]}).to_string());
    let url = start(provider.clone()).await;
    let auth = JwtAuth::builder()
        .jwks_url(JwksUrl::new(url).min_refetch_interval(Duration::ZERO))
        .build()
        .unwrap();
    let error = auth.prefetch().await.unwrap_err();
    assert!(error.to_string().contains("oct"), "{error}");
    let fetches = provider.fetches.load(Ordering::SeqCst);
    for kid in [Some("shared"), None] {
        assert_eq!(
            probe(&auth, &hs256_token(kid)).await,
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials"), 0),
            "{kid:?}"
        );
    }
    // An HS* token never makes the verifier fetch.
    assert_eq!(provider.fetches.load(Ordering::SeqCst), fetches);

    // Beside a public key, the shared secret still spoils the document:
    // the fetch fails and RS256 tokens are refused (fail closed).
    let mut document: Value = serde_json::from_str(&jwks(&[("one", "rsa.pem")])).unwrap();
    document["keys"]
        .as_array_mut()
        .unwrap()
        .push(oct_jwk("shared"));
    *provider.document.lock().unwrap() = Some(document.to_string());
    assert!(auth.prefetch().await.is_err());
    assert_eq!(
        probe(&auth, &token("one", "rsa.pem", "alice")).await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("auth_unavailable"), 0)
    );
    assert_eq!(
        probe(&auth, &hs256_token(Some("shared"))).await,
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"), 0)
    );
    // Public keys only: accepted.
    *provider.document.lock().unwrap() = Some(jwks(&[("one", "rsa.pem")]));
    auth.prefetch().await.unwrap();
    assert_eq!(
        probe(&auth, &token("one", "rsa.pem", "alice")).await,
        (StatusCode::OK, None, 1)
    );
}

#[tokio::test]
async fn jwks_redirects_are_not_followed() {
    tower_warden::auth::install_crypto_provider();
    let target_hits = Arc::new(AtomicUsize::new(0));
    let hits = target_hits.clone();
    let document = jwks(&[("one", "rsa.pem")]);
    let app = Router::new()
        .route(
            "/jwks.json",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(http::header::LOCATION, "/elsewhere.json")],
                )
            }),
        )
        .route(
            "/elsewhere.json",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let document = document.clone();
                async move { document }
            }),
        );
    let base = serve(app).await;
    let auth = JwtAuth::builder()
        .jwks_url(JwksUrl::new(format!("{base}/jwks.json")))
        .build()
        .unwrap();
    let error = auth.prefetch().await.unwrap_err();
    assert!(error.to_string().contains("302"), "{error}");
    assert_eq!(
        probe(&auth, &token("one", "rsa.pem", "alice")).await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("auth_unavailable"), 0)
    );
    assert_eq!(target_hits.load(Ordering::SeqCst), 0, "never followed");
}
