//! Opaque access tokens from a real authorization server: `oidc-provider`
//! (`tests/oidc/provider.js`) on 127.0.0.1 issues opaque tokens through the
//! client_credentials grant and answers token introspection (RFC 7662) and
//! revocation; `AuthLayer` asks it about each token (client_secret_basic,
//! client_secret_post is the same form, and private_key_jwt with a key made
//! at test time), caches the answers, and fails closed — or on its last
//! known answers — when it is down.
//!
//! Needs `node` and `tests/oidc/node_modules`; see `support/oidc.rs`.
#![cfg(all(feature = "introspection", feature = "stack"))]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc::rand::SystemRandom;
use aws_lc::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_warden::auth::{AuthLayer, ClientAuth, Introspection, IntrospectionFailMode};
use tower_warden::principal::{AuthMethod, Principal};

#[allow(dead_code)]
#[path = "support/oidc.rs"]
mod oidc;
use oidc::{Provider, now};

const RESOURCE: &str = "http://mcp.example.test/mcp";
const CLIENT_SECRET: &str = "a-test-client-secret-of-some-length";

/// An opaque token for `opaque-client`.
async fn opaque_token(provider: &Provider) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer))
        .basic_auth("opaque-client", Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope=tools%3Aread&resource={}",
            RESOURCE.replace(':', "%3A").replace('/', "%2F")
        ))
        .send()
        .await
        .expect("the token endpoint");
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 1, "an opaque token, not a JWT");
    token
}

async fn revoke(provider: &Provider, token: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/token/revocation", provider.issuer))
        .basic_auth("opaque-client", Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

fn endpoint(provider: &Provider) -> String {
    format!("{}/token/introspection", provider.issuer)
}

/// What the inner service saw: the principal, as JSON.
type Reply = (StatusCode, Option<Principal>, String);

async fn call(layer: &AuthLayer, token: &str) -> Reply {
    let service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|request: Request<()>| async move {
                let principal = request.extensions().get::<Principal>().cloned();
                let mut response = Response::new(String::new());
                response.extensions_mut().insert(principal);
                Ok::<_, Infallible>(response)
            });
    let request = Request::get("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let principal = response
        .extensions()
        .get::<Option<Principal>>()
        .cloned()
        .flatten();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, principal, challenge)
}

fn layer(introspection: Introspection) -> AuthLayer {
    AuthLayer::introspection_only(introspection)
}

#[tokio::test]
async fn opaque_tokens_are_admitted_on_the_servers_word_and_refused_once_inactive() {
    let Some(provider) = oidc::start_provider(
        "opaque_tokens_are_admitted_on_the_servers_word_and_refused_once_inactive",
        &[("RESOURCE", RESOURCE.to_owned())],
    ) else {
        return;
    };
    // No caching here: every request asks (the revocation shows at once).
    let introspection = Introspection::builder(
        endpoint(&provider),
        "mcp-server",
        ClientAuth::SecretBasic(CLIENT_SECRET.to_owned()),
    )
    .issuer([provider.issuer.as_str()])
    .audience([RESOURCE])
    .cache_ttl(Duration::ZERO)
    .build()
    .unwrap();
    let auth = layer(introspection);
    let token = opaque_token(&provider).await;

    let (status, principal, _) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::OK);
    let principal = principal.expect("the inner service saw a principal");
    assert_eq!(
        principal.subject(),
        "opaque-client",
        "client_id stands in for sub"
    );
    assert_eq!(principal.namespace(), Some("acme"));
    assert!(principal.has_scope("tools:read"));
    assert!(!principal.has_scope("tools:call"));
    assert_eq!(principal.method(), AuthMethod::Introspected);

    revoke(&provider, &token).await;
    let (status, principal, challenge) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(principal.is_none());
    assert!(challenge.contains("invalid_token"), "{challenge}");

    // A made-up token, and a token for another audience.
    let (status, ..) = call(&auth, "not-a-token-anyone-issued").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let elsewhere = Introspection::builder(
        endpoint(&provider),
        "mcp-server",
        ClientAuth::SecretBasic(CLIENT_SECRET.to_owned()),
    )
    .audience(["http://another.example/mcp"])
    .build()
    .unwrap();
    let fresh = opaque_token(&provider).await;
    let (status, ..) = call(&layer(elsewhere), &fresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A wrong client secret: the endpoint refuses us, which is not the
    // caller's fault: 503, no verdict on the token.
    let wrong = Introspection::builder(
        endpoint(&provider),
        "mcp-server",
        ClientAuth::SecretBasic("not the secret".to_owned()),
    )
    .build()
    .unwrap();
    let (status, ..) = call(&layer(wrong), &fresh).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_private_key_jwt_client_is_accepted_by_the_server() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    let Some(provider) = oidc::start_provider(
        "a_private_key_jwt_client_is_accepted_by_the_server",
        &[
            ("RESOURCE", RESOURCE.to_owned()),
            ("SERVER_JWK", jwk.to_string()),
        ],
    ) else {
        return;
    };
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let introspection = Introspection::builder(
        endpoint(&provider),
        "mcp-server-key",
        ClientAuth::private_key_pem(pem.as_bytes(), None).unwrap(),
    )
    .issuer([provider.issuer.as_str()])
    .build()
    .unwrap();
    let token = opaque_token(&provider).await;
    let (status, principal, _) = call(&layer(introspection), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(principal.unwrap().subject(), "opaque-client");
}

#[tokio::test]
async fn answers_are_cached_bounded_and_expire_and_a_down_server_fails_closed_or_cached() {
    let Some(provider) = oidc::start_provider(
        "answers_are_cached_bounded_and_expire_and_a_down_server_fails_closed_or_cached",
        &[("RESOURCE", RESOURCE.to_owned())],
    ) else {
        return;
    };
    let clock = Arc::new(AtomicU64::new(now()));
    let time = Arc::clone(&clock);
    let build = |mode: IntrospectionFailMode| {
        let time = Arc::clone(&time);
        Introspection::builder(
            endpoint(&provider),
            "mcp-server",
            ClientAuth::SecretBasic(CLIENT_SECRET.to_owned()),
        )
        .cache_ttl(Duration::from_secs(30))
        .cache_capacity(16)
        .fail_mode(mode)
        .timeout(Duration::from_secs(2))
        .clock(move || time.load(Ordering::SeqCst))
        .build()
        .unwrap()
    };
    let closed = build(IntrospectionFailMode::Closed);
    let cached = build(IntrospectionFailMode::Cached);
    let token = opaque_token(&provider).await;
    assert_eq!(call(&layer(closed.clone()), &token).await.0, StatusCode::OK);
    assert_eq!(call(&layer(cached.clone()), &token).await.0, StatusCode::OK);

    // Cached: a revocation shows once the answer expires (30 s).
    revoke(&provider, &token).await;
    assert_eq!(call(&layer(closed.clone()), &token).await.0, StatusCode::OK);
    clock.fetch_add(31, Ordering::SeqCst);
    assert_eq!(
        call(&layer(closed.clone()), &token).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Bounded: 40 tokens, a cache of about 16.
    let mut tokens = Vec::new();
    for _ in 0..40 {
        let token = opaque_token(&provider).await;
        assert_eq!(call(&layer(closed.clone()), &token).await.0, StatusCode::OK);
        tokens.push(token);
    }
    assert!(
        closed.cached_tokens() <= 32,
        "{} answers cached",
        closed.cached_tokens()
    );
    // One more, known to the `cached` layer, then the server goes down.
    let last = tokens.pop().unwrap();
    assert_eq!(call(&layer(cached.clone()), &last).await.0, StatusCode::OK);
    drop(provider);
    clock.fetch_add(31, Ordering::SeqCst);
    let (status, ..) = call(&layer(closed.clone()), &last).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "closed: no verdict"
    );
    let (status, principal, _) = call(&layer(cached.clone()), &last).await;
    assert_eq!(status, StatusCode::OK, "cached: the last known answer");
    assert_eq!(principal.unwrap().subject(), "opaque-client");
    // A token it never saw is still refused with 503.
    let (status, ..) = call(&layer(cached.clone()), &tokens[0]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Past the token's own exp (300 s), not even the cached mode admits it.
    clock.fetch_add(400, Ordering::SeqCst);
    let (status, ..) = call(&layer(cached), &last).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_perimeter_asks_the_endpoint_its_settings_name() {
    use tower_warden::config::WardenConfig;
    use tower_warden::stack::WardenLayer;

    let Some(provider) = oidc::start_provider(
        "the_perimeter_asks_the_endpoint_its_settings_name",
        &[("RESOURCE", RESOURCE.to_owned())],
    ) else {
        return;
    };
    let url = endpoint(&provider);
    let config = WardenConfig::from_vars([
        (
            "MCP_JWT_SECRET",
            "a-jwt-secret-of-at-least-thirty-two-bytes",
        ),
        ("MCP_RESOURCE_URL", RESOURCE),
        ("MCP_JWT_ISSUER", provider.issuer.as_str()),
        ("MCP_INTROSPECTION_URL", url.as_str()),
        ("MCP_INTROSPECTION_CLIENT_ID", "mcp-server"),
        ("MCP_INTROSPECTION_CLIENT_SECRET", CLIENT_SECRET),
        ("MCP_INTROSPECTION_CLIENT_AUTH", "client_secret_post"),
    ])
    .unwrap();
    let auth = WardenLayer::from_config(&config).unwrap().auth().clone();
    let token = opaque_token(&provider).await;
    let (status, principal, _) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(principal.unwrap().namespace(), Some("acme"));
    // The same perimeter still verifies JWTs itself, and refuses made-up
    // opaque tokens on the endpoint's word.
    let (status, ..) = call(&auth, "made-up-opaque-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Another resource URL: the provider's tokens name another audience.
    let config = WardenConfig::from_vars([
        (
            "MCP_JWT_SECRET",
            "a-jwt-secret-of-at-least-thirty-two-bytes",
        ),
        ("MCP_RESOURCE_URL", "http://other.example.test/mcp"),
        ("MCP_INTROSPECTION_URL", url.as_str()),
        ("MCP_INTROSPECTION_CLIENT_ID", "mcp-server"),
        ("MCP_INTROSPECTION_CLIENT_SECRET", CLIENT_SECRET),
    ])
    .unwrap();
    let auth = WardenLayer::from_config(&config).unwrap().auth().clone();
    let (status, ..) = call(&auth, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
