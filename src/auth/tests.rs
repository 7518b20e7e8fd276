//! Attack and behaviour tests of `AuthLayer`, `JwtAuth` and `RequireLayer`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::principal::{AuthMethod, Principal};
use crate::reject::{Reason, Rejection};

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
const AUD: &str = "https://mcp.example.test/mcp";
const ISS: &str = "https://issuer.example.test";
const NOW: u64 = 1_900_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW + 3600, "iat": NOW, "aud": AUD, "iss": ISS,
           "scope": "tools:* resources:read", "roles": ["reader"], "namespace": "acme"})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    install_crypto_provider();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(NOW)))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
    fn func(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let c = self.0.clone();
        move || c.load(Ordering::SeqCst)
    }
}

fn builder(clock: &Clock) -> JwtAuthBuilder {
    JwtAuth::builder()
        .audience([AUD])
        .issuer([ISS])
        .clock(clock.func())
}

fn hmac_auth(clock: &Clock) -> JwtAuth {
    builder(clock)
        .hmac_secret(SECRET, Algorithm::HS256)
        .build()
        .unwrap()
}

/// What the inner service saw.
type Seen = Arc<Mutex<Vec<Principal>>>;

async fn call(
    layer: AuthLayer,
    request: Request<()>,
) -> (Response<crate::body::ResponseBody<String>>, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |request: Request<()>| {
            let s = s.clone();
            async move {
                if let Some(p) = request.extensions().get::<Principal>() {
                    s.lock().unwrap().push(p.clone());
                }
                Ok::<_, Infallible>(Response::new(String::from("inner")))
            }
        });
    let response = service.oneshot(request).await.unwrap();
    (response, seen)
}

fn bearer(token: &str) -> Request<()> {
    Request::builder()
        .uri("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn reason<B>(response: &Response<B>) -> Option<Reason> {
    response
        .extensions()
        .get::<Rejection>()
        .map(Rejection::reason)
}

async fn refused(layer: AuthLayer, request: Request<()>) -> (Reason, String) {
    let (response, seen) = call(layer, request).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "the inner service was called"
    );
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (reason(&response).expect("a rejection"), challenge)
}

#[tokio::test]
async fn valid_hs256_token_yields_the_principal() {
    let clock = Clock::new();
    let (response, seen) = call(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&claims()))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    let p = &seen[0];
    assert_eq!(p.subject(), "alice");
    assert_eq!(p.namespace(), Some("acme"));
    assert_eq!(p.method(), AuthMethod::Jwt);
    assert!(p.has_scope("tools:echo") && p.has_scope("resources:read"));
    assert!(!p.has_scope("resources:write"));
    assert!(p.has_role("reader"));
    assert_eq!(p.expires_at_unix(), Some(NOW + 3600));
}

#[tokio::test]
async fn missing_credential_is_401_with_a_bare_challenge() {
    let clock = Clock::new();
    let layer = AuthLayer::jwt(hmac_auth(&clock))
        .resource_metadata("https://mcp.example.test/.well-known/oauth-protected-resource/mcp");
    let (response, seen) = call(layer, Request::new(())).await;
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&response), Some(Reason::Unauthenticated));
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer resource_metadata=\"https://mcp.example.test/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let clock = Clock::new();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.c2ln"),
    ] {
        let (reason, challenge) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&token)).await;
        assert_eq!(reason, Reason::InvalidCredentials);
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
}

/// `claims` HS256-signed under exactly this header.
fn hs256_with_header(header: &Value, claims: &Value) -> String {
    install_crypto_provider();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

#[tokio::test]
async fn crit_headers_are_refused() {
    let clock = Clock::new();
    // RFC 7515 §4.1.11: an unknown extension, an empty list, a standard
    // header name; none is understood, so each one is refused.
    for crit in [
        json!(["http://example.test/must-understand"]),
        json!(["b64"]),
        json!([]),
        json!(["alg"]),
        json!("exp"),
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "crit": crit,
                            "http://example.test/must-understand": true, "b64": true});
        let token = hs256_with_header(&header, &claims());
        let (response, seen) = call(AuthLayer::jwt(hmac_auth(&clock)), bearer(&token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{crit}");
        assert_eq!(reason(&response), Some(Reason::InvalidCredentials));
        assert!(seen.lock().unwrap().is_empty(), "{crit}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    // The same token without `crit` passes: only the header differs.
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let (response, _) = call(
        AuthLayer::jwt(hmac_auth(&clock)),
        bearer(&hs256_with_header(&header, &claims())),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let clock = Clock::new();
    let public = fixture("rsa.pub.pem");
    let auth = builder(&clock)
        .public_key_pem(&public, Algorithm::RS256)
        .build()
        .unwrap();
    // The classic confusion attack: use the public key bytes as an HMAC secret.
    let forged = sign(
        Algorithm::HS256,
        None,
        &claims(),
        &EncodingKey::from_secret(&public),
    );
    let (reason, _) = refused(AuthLayer::jwt(auth.clone()), bearer(&forged)).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    // A genuine RS256 token passes.
    let genuine = sign(
        Algorithm::RS256,
        None,
        &claims(),
        &EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap(),
    );
    let (response, _) = call(AuthLayer::jwt(auth), bearer(&genuine)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_naming_another_algorithm_of_the_key_family_is_refused() {
    let clock = Clock::new();
    let auth = builder(&clock)
        .public_key_pem(fixture("rsa.pub.pem"), Algorithm::RS256)
        .build()
        .unwrap();
    let ps = sign(
        Algorithm::PS256,
        None,
        &claims(),
        &EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap(),
    );
    let (reason, _) = refused(AuthLayer::jwt(auth), bearer(&ps)).await;
    assert_eq!(reason, Reason::InvalidCredentials);
}

#[tokio::test]
async fn every_supported_algorithm_verifies_with_its_pem_key() {
    let clock = Clock::new();
    let cases: [(Algorithm, &str, &str); 9] = [
        (Algorithm::RS256, "rsa", "rsa"),
        (Algorithm::RS384, "rsa", "rsa"),
        (Algorithm::RS512, "rsa", "rsa"),
        (Algorithm::PS256, "rsa", "rsa"),
        (Algorithm::PS384, "rsa", "rsa"),
        (Algorithm::PS512, "rsa", "rsa"),
        (Algorithm::ES256, "ec256", "ec"),
        (Algorithm::ES384, "ec384", "ec"),
        (Algorithm::EdDSA, "ed25519", "ed"),
    ];
    for (alg, file, kind) in cases {
        let private = fixture(&format!("{file}.pem"));
        let key = match kind {
            "rsa" => EncodingKey::from_rsa_pem(&private),
            "ec" => EncodingKey::from_ec_pem(&private),
            _ => EncodingKey::from_ed_pem(&private),
        }
        .unwrap();
        let auth = builder(&clock)
            .public_key_pem(fixture(&format!("{file}.pub.pem")), alg)
            .build()
            .unwrap();
        let (response, seen) = call(
            AuthLayer::jwt(auth),
            bearer(&sign(alg, None, &claims(), &key)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{alg:?}");
        assert_eq!(seen.lock().unwrap()[0].subject(), "alice");
    }
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let auth = builder(&clock).hmac_secret(SECRET, alg).build().unwrap();
        let token = sign(
            alg,
            None,
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        let (response, _) = call(AuthLayer::jwt(auth), bearer(&token)).await;
        assert_eq!(response.status(), StatusCode::OK, "{alg:?}");
    }
}

#[tokio::test]
async fn expired_tokens_are_refused_after_the_leeway() {
    let clock = Clock::new();
    let mut c = claims();
    c["exp"] = json!(NOW - 10);
    let (response, _) = call(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "10 s past exp is inside the 30 s leeway"
    );
    c["exp"] = json!(NOW - 31);
    let (reason, challenge) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
    assert_eq!(reason, Reason::TokenExpired);
    assert!(challenge.contains("error=\"invalid_token\""));
    assert!(challenge.contains("expired"));
}

#[tokio::test]
async fn not_yet_valid_and_missing_exp_are_refused() {
    let clock = Clock::new();
    let mut c = claims();
    c["nbf"] = json!(NOW + 120);
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
    assert_eq!(reason, Reason::InvalidCredentials);
}

#[tokio::test]
async fn wrong_audience_or_issuer_is_refused() {
    let clock = Clock::new();
    for (claim, value) in [
        ("aud", "https://other.example/mcp"),
        ("iss", "https://evil.example"),
    ] {
        let mut c = claims();
        c[claim] = json!(value);
        let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
        assert_eq!(reason, Reason::InvalidCredentials, "{claim}");
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&hs256(&c))).await;
    assert_eq!(
        reason,
        Reason::InvalidCredentials,
        "aud is required once configured"
    );
}

#[tokio::test]
async fn tampered_payload_and_wrong_key_are_refused() {
    let clock = Clock::new();
    let token = hs256(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut evil = claims();
    evil["sub"] = json!("admin");
    evil["scope"] = json!("*");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(evil.to_string()),
        parts[2]
    );
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&tampered)).await;
    assert_eq!(reason, Reason::InvalidCredentials);

    let other = sign(
        Algorithm::HS256,
        None,
        &claims(),
        &EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long!!"),
    );
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&other)).await;
    assert_eq!(reason, Reason::InvalidCredentials);

    let rsa2 = sign(
        Algorithm::RS256,
        None,
        &claims(),
        &EncodingKey::from_rsa_pem(&fixture("rsa2.pem")).unwrap(),
    );
    let auth = builder(&clock)
        .public_key_pem(fixture("rsa.pub.pem"), Algorithm::RS256)
        .build()
        .unwrap();
    let (reason, _) = refused(AuthLayer::jwt(auth), bearer(&rsa2)).await;
    assert_eq!(reason, Reason::InvalidCredentials);
}

#[tokio::test]
async fn oversized_and_malformed_tokens_are_refused() {
    let clock = Clock::new();
    let huge = format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c");
    let (reason, challenge) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(&huge)).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    assert!(challenge.contains("too large"), "{challenge}");
    for token in ["", "abc", "a.b", "a.b.c.d", "%%%.%%%.%%%"] {
        let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), bearer(token)).await;
        assert_eq!(reason, Reason::InvalidCredentials, "{token:?}");
    }
    let basic = Request::builder()
        .header("authorization", "Basic YWxpY2U6cHc=")
        .body(())
        .unwrap();
    let (reason, challenge) = refused(AuthLayer::jwt(hmac_auth(&clock)), basic).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    assert!(challenge.contains("invalid_request"));
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let clock = Clock::new();
    let token = hs256(&claims());
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer other")
        .body(())
        .unwrap();
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), request).await;
    assert_eq!(reason, Reason::InvalidCredentials);
}

#[tokio::test]
async fn query_string_tokens_are_refused_unless_enabled_for_websocket_upgrades() {
    let clock = Clock::new();
    let token = hs256(&claims());
    let plain = || {
        Request::builder()
            .uri(format!("/mcp?access_token={token}"))
            .body(())
            .unwrap()
    };
    let upgrade = || {
        Request::builder()
            .uri(format!("/mcp/ws?access_token={token}"))
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(())
            .unwrap()
    };
    let (reason, challenge) = refused(AuthLayer::jwt(hmac_auth(&clock)), plain()).await;
    assert_eq!(reason, Reason::Unauthenticated);
    assert!(challenge.contains("invalid_request"));
    let (reason, _) = refused(AuthLayer::jwt(hmac_auth(&clock)), upgrade()).await;
    assert_eq!(
        reason,
        Reason::Unauthenticated,
        "off by default, even for upgrades"
    );
    let allowing = || AuthLayer::jwt(hmac_auth(&clock)).allow_query_credentials(true);
    let (reason, _) = refused(allowing(), plain()).await;
    assert_eq!(reason, Reason::Unauthenticated, "never for plain requests");
    let (response, _) = call(allowing(), upgrade()).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_keys_right_wrong_and_as_bearer() {
    let keys = ApiKeys::new("a-server-side-salt-value").unwrap();
    let bot = Principal::builder("bot", AuthMethod::ApiKey)
        .key_id("bot")
        .scopes(["tools:echo"])
        .build();
    keys.insert_key("sk-live-0123456789", bot).unwrap();
    let with_key = |key: &str| {
        Request::builder()
            .header("x-api-key", key)
            .body(())
            .unwrap()
    };
    let (response, seen) = call(
        AuthLayer::api_keys(keys.clone()),
        with_key("sk-live-0123456789"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[0].key_id(), Some("bot"));

    let (reason, _) = refused(
        AuthLayer::api_keys(keys.clone()),
        with_key("sk-live-0123456788"),
    )
    .await;
    assert_eq!(reason, Reason::InvalidCredentials);

    let (response, _) = call(
        AuthLayer::api_keys(keys.clone()),
        bearer("sk-live-0123456789"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "a bearer API key");

    // In `both` mode a JWT-shaped bearer is a JWT, anything else an API key.
    let clock = Clock::new();
    let both = || AuthLayer::jwt_or_api_key(hmac_auth(&clock), keys.clone());
    let (response, _) = call(both(), bearer("sk-live-0123456789")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (response, _) = call(both(), bearer(&hs256(&claims()))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (response, _) = call(both(), with_key("sk-live-0123456789")).await;
    assert_eq!(response.status(), StatusCode::OK);

    // API keys sent to a JWT-only layer are refused.
    let (reason, _) = refused(
        AuthLayer::jwt(hmac_auth(&clock)),
        with_key("sk-live-0123456789"),
    )
    .await;
    assert_eq!(reason, Reason::InvalidCredentials);
}

#[tokio::test]
async fn cached_entries_never_outlive_exp() {
    let clock = Clock::new();
    let auth = builder(&clock)
        .hmac_secret(SECRET, Algorithm::HS256)
        .leeway(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let mut c = claims();
    c["exp"] = json!(NOW + 100);
    let token = hs256(&c);
    for _ in 0..3 {
        let (response, _) = call(AuthLayer::jwt(auth.clone()), bearer(&token)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        auth.cache_stats().0,
        2,
        "the second and third requests hit the cache"
    );
    clock.set(NOW + 100);
    let (reason, _) = refused(AuthLayer::jwt(auth.clone()), bearer(&token)).await;
    assert_eq!(reason, Reason::TokenExpired);
    assert_eq!(auth.cache_stats().0, 2, "no hit past exp");
    assert_eq!(auth.cached_tokens(), 0);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let clock = Clock::new();
    let auth = hmac_auth(&clock);
    let mut c = claims();
    c["aud"] = json!("elsewhere");
    let token = hs256(&c);
    for _ in 0..2 {
        let (reason, _) = refused(AuthLayer::jwt(auth.clone()), bearer(&token)).await;
        assert_eq!(reason, Reason::InvalidCredentials);
    }
    assert_eq!(auth.cached_tokens(), 0);
}

fn jwks_of(keys: &[(&str, Algorithm, &str)]) -> String {
    install_crypto_provider();
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, alg, file)| {
            let private = fixture(&format!("{file}.pem"));
            let key = match alg {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&private),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(&private),
                _ => EncodingKey::from_rsa_pem(&private),
            }
            .unwrap();
            let mut jwk = serde_json::to_value(
                jsonwebtoken::jwk::Jwk::from_encoding_key(&key, *alg).unwrap(),
            )
            .unwrap();
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn rs256(kid: &str, file: &str) -> String {
    sign(
        Algorithm::RS256,
        Some(kid),
        &claims(),
        &EncodingKey::from_rsa_pem(&fixture(&format!("{file}.pem"))).unwrap(),
    )
}

#[tokio::test]
async fn jwks_documents_select_keys_by_kid() {
    let clock = Clock::new();
    let jwks = jwks_of(&[
        ("one", Algorithm::RS256, "rsa"),
        ("two", Algorithm::ES256, "ec256"),
    ]);
    let auth = builder(&clock).jwks(&jwks).build().unwrap();
    let (response, seen) = call(AuthLayer::jwt(auth.clone()), bearer(&rs256("one", "rsa"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[0].key_id(), Some("one"));
    let es = sign(
        Algorithm::ES256,
        Some("two"),
        &claims(),
        &EncodingKey::from_ec_pem(&fixture("ec256.pem")).unwrap(),
    );
    let (response, _) = call(AuthLayer::jwt(auth.clone()), bearer(&es)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Unknown kid, and an RS256 token claiming the EC key's kid.
    let (reason, _) = refused(AuthLayer::jwt(auth.clone()), bearer(&rs256("three", "rsa"))).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    let (reason, _) = refused(AuthLayer::jwt(auth), bearer(&rs256("two", "rsa"))).await;
    assert_eq!(reason, Reason::InvalidCredentials);
}

#[tokio::test]
async fn replacing_the_jwks_drops_cached_tokens_of_removed_keys() {
    let clock = Clock::new();
    let both = jwks_of(&[
        ("old", Algorithm::RS256, "rsa"),
        ("new", Algorithm::RS256, "rsa2"),
    ]);
    let auth = builder(&clock).jwks(&both).build().unwrap();
    let old = rs256("old", "rsa");
    let new = rs256("new", "rsa2");
    for token in [&old, &new] {
        let (response, _) = call(AuthLayer::jwt(auth.clone()), bearer(token)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(auth.cached_tokens(), 2);
    assert!(
        auth.replace_jwks(b"{\"keys\":[]}").is_err(),
        "no usable key: refused"
    );
    assert!(auth.replace_jwks(b"garbage").is_err());
    auth.replace_jwks(jwks_of(&[("new", Algorithm::RS256, "rsa2")]).as_bytes())
        .unwrap();
    assert_eq!(
        auth.cached_tokens(),
        1,
        "the unchanged key keeps its cache entry"
    );
    let (reason, _) = refused(AuthLayer::jwt(auth.clone()), bearer(&old)).await;
    assert_eq!(reason, Reason::InvalidCredentials);
    let (response, _) = call(AuthLayer::jwt(auth), bearer(&new)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn weak_or_inconsistent_settings_are_refused_at_build() {
    let short = JwtAuth::builder()
        .hmac_secret("short", Algorithm::HS256)
        .build();
    assert_eq!(short.unwrap_err().setting(), "jwt secret");
    assert!(
        JwtAuth::builder()
            .hmac_secret("short", Algorithm::HS256)
            .allow_short_secret()
            .build()
            .is_ok()
    );
    assert!(
        JwtAuth::builder()
            .hmac_secret(SECRET, Algorithm::RS256)
            .build()
            .is_err()
    );
    assert!(
        JwtAuth::builder()
            .public_key_pem(fixture("rsa.pub.pem"), Algorithm::HS256)
            .build()
            .is_err()
    );
    assert!(
        JwtAuth::builder()
            .public_key_pem(b"not a pem", Algorithm::RS256)
            .build()
            .is_err()
    );
    assert!(JwtAuth::builder().build().is_err(), "no key source");
    assert!(
        JwtAuth::builder()
            .hmac_secret(SECRET, Algorithm::HS256)
            .jwks("{}")
            .build()
            .is_err(),
        "two key sources"
    );
    assert!(
        JwtAuth::builder()
            .jwks_file("/nonexistent/jwks.json")
            .build()
            .is_err()
    );
    // A JWKS whose only key is a symmetric key without `alg` has no usable key.
    assert!(
        JwtAuth::builder()
            .jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn grpc_callers_get_unauthenticated() {
    let clock = Clock::new();
    let request = Request::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (response, _) = call(AuthLayer::jwt(hmac_auth(&clock)), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
}

#[tokio::test]
async fn anonymous_mode_admits_everyone_with_every_scope() {
    let (response, seen) = call(AuthLayer::anonymous(), Request::new(())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[0].method(), AuthMethod::Anonymous);
}

#[tokio::test]
async fn refusals_are_audited_without_the_credential() {
    crate::testing::start();
    let clock = Clock::new();
    let mut c = claims();
    c["exp"] = json!(NOW - 3600);
    c["sub"] = json!("audited-alice");
    let expired = hs256(&c);
    let signature = expired.rsplit('.').next().unwrap().to_owned();
    let keys = ApiKeys::new("a-server-side-salt-value").unwrap();
    let mut request = bearer(&expired);
    request
        .extensions_mut()
        .insert(crate::client_ip::ClientIp("198.51.100.77".parse().unwrap()));
    let (reason, challenge) = refused(AuthLayer::jwt(hmac_auth(&clock)), request).await;
    assert_eq!(reason, Reason::TokenExpired);
    assert!(!challenge.contains(&signature));
    let mut request = Request::builder()
        .header("x-api-key", "sk-secret-guess-123")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(crate::client_ip::ClientIp("198.51.100.78".parse().unwrap()));
    refused(AuthLayer::api_keys(keys), request).await;

    let jwt_events: Vec<String> = crate::testing::lines_with("198.51.100.77")
        .into_iter()
        .filter(|l| l.contains(crate::audit::TARGET))
        .collect();
    assert_eq!(jwt_events.len(), 1, "{jwt_events:?}");
    assert!(jwt_events[0].contains("token_expired"), "{jwt_events:?}");
    assert!(
        jwt_events[0].contains("audited-alice"),
        "the subject of a verified-but-expired token"
    );
    let key_events: Vec<String> = crate::testing::lines_with("198.51.100.78")
        .into_iter()
        .filter(|l| l.contains(crate::audit::TARGET))
        .collect();
    assert_eq!(key_events.len(), 1, "{key_events:?}");
    assert!(key_events[0].contains("invalid_credentials"));
    let logs = crate::testing::text();
    for secret in [
        expired.as_str(),
        signature.as_str(),
        "sk-secret-guess-123",
        SECRET,
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

fn with_principal(p: Principal) -> Request<()> {
    let mut request = Request::new(());
    request.extensions_mut().insert(p);
    request
}

async fn require(
    layer: RequireLayer,
    request: Request<()>,
) -> Response<crate::body::ResponseBody<Bytes>> {
    ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok")))
        })
        .oneshot(request)
        .await
        .unwrap()
}

#[tokio::test]
async fn require_layer_checks_scopes_and_roles() {
    let p = Principal::builder("bob", AuthMethod::Jwt)
        .scopes(["tools:*"])
        .roles(["reader"])
        .build();
    let ok = require(Require::layer(["tools:echo"]), with_principal(p.clone())).await;
    assert_eq!(ok.status(), StatusCode::OK);

    let denied = require(
        RequireLayer::scopes(["tools:echo", "admin:write", "admin:read"]),
        with_principal(p.clone()),
    )
    .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&denied), Some(Reason::InsufficientScope));
    assert_eq!(
        denied.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", error_description=\"missing scope(s): admin:write admin:read\", scope=\"admin:write admin:read\""
    );

    let role = require(RequireLayer::role("admin"), with_principal(p.clone())).await;
    assert_eq!(role.status(), StatusCode::FORBIDDEN);
    let any = require(
        RequireLayer::scopes(Vec::<String>::new()).any_role(["admin", "reader"]),
        with_principal(p),
    )
    .await;
    assert_eq!(any.status(), StatusCode::OK);

    let nobody = require(RequireLayer::scopes(["x"]), Request::new(())).await;
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn authenticate_checks_a_kept_head_against_the_current_keys() {
    let keys = ApiKeys::new("a-server-side-salt-value").unwrap();
    let line = |scopes: &str| {
        format!(
            r#"{{"id":"bot","digest":"{}","scopes":[{scopes}]}}"#,
            ApiKeys::digest_of("a-server-side-salt-value", "sk-live-0123456789")
        )
    };
    keys.replace_with(&line(r#""tools:echo""#)).unwrap();
    let layer = AuthLayer::api_keys(keys.clone());
    let upgrade = Request::builder()
        .uri("/mcp/ws?session=1")
        .header("x-api-key", "sk-live-0123456789")
        .header("cookie", "unrelated=1")
        .body(())
        .unwrap();
    let head = layer
        .credential_head(&upgrade)
        .expect("a credential to keep");
    assert_eq!(head.headers().len(), 1, "{:?}", head.headers().keys());
    assert_eq!(head.uri(), "/mcp/ws", "no query without query credentials");
    let principal = layer.authenticate(&head).await.unwrap();
    assert_eq!(principal.subject(), "bot");
    // The same head, after the keys changed: what a new request would get.
    keys.replace_with(&line(r#""tools:*""#)).unwrap();
    let wider = layer.authenticate(&head).await.unwrap();
    assert!(wider.has_scope("tools:add"));
    keys.replace_with("").unwrap();
    let refused = layer.authenticate(&head).await.unwrap_err();
    assert_eq!(refused.reason(), Reason::InvalidCredentials);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn authenticate_refuses_a_token_of_a_removed_jwks_key_even_when_cached() {
    let clock = Clock::new();
    let auth = builder(&clock)
        .jwks(jwks_of(&[
            ("old", Algorithm::RS256, "rsa"),
            ("new", Algorithm::RS256, "rsa2"),
        ]))
        .build()
        .unwrap();
    let layer = AuthLayer::jwt(auth.clone());
    let head = layer
        .credential_head(&bearer(&rs256("old", "rsa")))
        .unwrap();
    assert_eq!(
        layer.authenticate(&head).await.unwrap().key_id(),
        Some("old")
    );
    assert_eq!(auth.cached_tokens(), 1);
    auth.replace_jwks(jwks_of(&[("new", Algorithm::RS256, "rsa2")]).as_bytes())
        .unwrap();
    let refused = layer.authenticate(&head).await.unwrap_err();
    assert_eq!(refused.reason(), Reason::InvalidCredentials);
}

#[tokio::test]
async fn credential_heads_keep_query_credentials_only_when_allowed() {
    let clock = Clock::new();
    let token = hs256(&claims());
    let upgrade = Request::builder()
        .uri(format!("/mcp/ws?access_token={token}"))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .body(())
        .unwrap();
    let layer = AuthLayer::jwt(hmac_auth(&clock)).allow_query_credentials(true);
    let head = layer.credential_head(&upgrade).unwrap();
    assert_eq!(layer.authenticate(&head).await.unwrap().subject(), "alice");
    assert!(
        AuthLayer::anonymous().credential_head(&upgrade).is_none(),
        "nothing to check again without authentication"
    );
}

#[tokio::test]
async fn auth_layer_accepts_the_tokens_of_its_jwt_auth() {
    let clock = Clock::new();
    let (response, seen) = call(Auth::layer(hmac_auth(&clock)), bearer(&hs256(&claims()))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[0].subject(), "alice");
    let (reason, challenge) = refused(Auth::layer(hmac_auth(&clock)), Request::new(())).await;
    assert_eq!(reason, Reason::Unauthenticated);
    assert_eq!(challenge, "Bearer");
}

/// What the inner service saw of the access token.
async fn kept_token(layer: AuthLayer, request: Request<()>) -> (StatusCode, Option<AccessToken>) {
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(|request: Request<()>| async move {
                let mut response = Response::new(String::new());
                let token = request.extensions().get::<AccessToken>().cloned();
                response.extensions_mut().insert(token);
                Ok::<_, Infallible>(response)
            });
    let response = service.oneshot(request).await.unwrap();
    let token = response
        .extensions()
        .get::<Option<AccessToken>>()
        .cloned()
        .flatten();
    (response.status(), token)
}

#[tokio::test]
async fn the_verified_token_is_kept_for_the_inner_service_only_when_asked() {
    let clock = Clock::new();
    let keys = ApiKeys::new("a-server-side-salt-value").unwrap();
    keys.insert_key(
        "sk-live-0123456789",
        Principal::builder("bot", AuthMethod::ApiKey).build(),
    )
    .unwrap();
    let layer = AuthLayer::jwt_or_api_key(hmac_auth(&clock), keys);
    let token = hs256(&claims());

    // Off by default.
    let (status, kept) = kept_token(layer.clone(), bearer(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kept.is_none());

    let layer = layer.keep_access_token(true);
    let (status, kept) = kept_token(layer.clone(), bearer(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let kept = kept.expect("the verified token");
    assert_eq!(kept.as_str(), token);
    assert!(!format!("{kept:?}").contains(&token));
    // A cached verification keeps it too.
    let (_, again) = kept_token(layer.clone(), bearer(&token)).await;
    assert_eq!(again.unwrap().as_str(), token);

    // An API key is no token to exchange: never kept, as a header or as
    // a bearer value.
    let with_key = Request::builder()
        .header("x-api-key", "sk-live-0123456789")
        .body(())
        .unwrap();
    let (status, kept) = kept_token(layer.clone(), with_key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kept.is_none());
    let (status, kept) = kept_token(layer.clone(), bearer("sk-live-0123456789")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kept.is_none());

    // A refused token is not handed on either.
    clock.set(NOW + 10 * 3600);
    let (status, kept) = kept_token(layer, bearer(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(kept.is_none());
}
