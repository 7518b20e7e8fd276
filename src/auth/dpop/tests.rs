//! DPoP proofs (RFC 9449) and bound tokens (RFC 8705) through `AuthLayer`:
//! every refusal, and the admitted cases.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::replay::SHARDS;
use aws_lc::rand::SystemRandom;
use aws_lc::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::auth::{AuthLayer, DpopMode, JwtAuth, install_crypto_provider};
use crate::client_cert::ClientCertLayer;
use crate::principal::Principal;

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
const NOW: u64 = 1_900_000_000;
const URL: &str = "https://mcp.example.test/mcp";

/// A proof key: how it signs, and its public JWK.
struct Key {
    encoding: EncodingKey,
    alg: Algorithm,
    jwk: Value,
}

impl Key {
    fn p256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        Self {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            alg: Algorithm::ES256,
            jwk: json!({"kty": "EC", "crv": "P-256",
                        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                        "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
        }
    }

    fn ed25519() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            alg: Algorithm::EdDSA,
            jwk: json!({"kty": "OKP", "crv": "Ed25519",
                        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
        }
    }

    /// The RFC 7638 thumbprint, computed here independently.
    fn jkt(&self) -> String {
        let j = &self.jwk;
        let canonical = match j["kty"].as_str().unwrap() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                j["crv"].as_str().unwrap(),
                j["x"].as_str().unwrap(),
                j["y"].as_str().unwrap()
            ),
            _ => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                j["crv"].as_str().unwrap(),
                j["x"].as_str().unwrap()
            ),
        };
        sha256_b64(canonical.as_bytes())
    }

    /// A proof signed by this key with `header` and `claims` as given,
    /// byte for byte.
    fn sign(&self, header: Value, claims: &Value) -> String {
        install_crypto_provider();
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{signed}.{signature}")
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk})
    }

    /// A valid proof for `POST URL` and `token`.
    fn proof(&self, token: &str) -> String {
        self.sign(self.header(), &claims(token))
    }
}

fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn claims(token: &str) -> Value {
    json!({"jti": jti(), "htm": "POST", "htu": URL, "iat": NOW,
           "ath": sha256_b64(token.as_bytes())})
}

fn with(mut value: Value, key: &str, v: Value) -> Value {
    value[key] = v;
    value
}

fn token(cnf: Option<Value>) -> String {
    install_crypto_provider();
    let mut claims = json!({"sub": "alice", "exp": NOW + 3600, "scope": "tools:*"});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn bound_to(key: &Key) -> String {
    token(Some(json!({"jkt": key.jkt()})))
}

fn jwt(clock: &Arc<AtomicU64>) -> JwtAuth {
    let clock = clock.clone();
    JwtAuth::builder()
        .hmac_secret(SECRET, Algorithm::HS256)
        .clock(move || clock.load(Ordering::SeqCst))
        .build()
        .unwrap()
}

fn layer() -> (AuthLayer, Arc<AtomicU64>) {
    let clock = Arc::new(AtomicU64::new(NOW));
    (AuthLayer::jwt(jwt(&clock)), clock)
}

fn dpop_request(token: &str, proofs: &[&str]) -> Request<()> {
    let mut request = Request::post(URL)
        .header("authorization", format!("DPoP {token}"))
        .body(())
        .unwrap();
    for proof in proofs {
        request.headers_mut().append(DPOP, proof.parse().unwrap());
    }
    request
}

fn bearer_request(token: &str) -> Request<()> {
    Request::post(URL)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

async fn call(layer: &AuthLayer, request: Request<()>) -> Response<String> {
    let service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|request: Request<()>| async move {
                let who = request.extensions().get::<Principal>().unwrap();
                Ok::<_, Infallible>(Response::new(who.subject().to_owned()))
            });
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body).await.unwrap();
    Response::from_parts(parts, String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

fn challenges(response: &Response<String>) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Refused with 401, the proof's fault, `detail` in the body.
#[track_caller]
fn assert_proof_refused(response: &Response<String>, detail: &str) {
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body()
    );
    assert!(response.body().contains(detail), "{}", response.body());
    let challenges = challenges(response);
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("error=\"invalid_dpop_proof\"")),
        "{challenges:?}"
    );
}

/// Refused with 401 `invalid_token`, `detail` in the body.
#[track_caller]
fn assert_token_refused(response: &Response<String>, detail: &str) {
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body()
    );
    assert!(response.body().contains(detail), "{}", response.body());
    assert!(
        challenges(response)
            .iter()
            .any(|c| c.contains("error=\"invalid_token\"")),
        "{:?}",
        challenges(response)
    );
}

#[tokio::test]
async fn a_valid_proof_with_its_bound_token_is_admitted() {
    let (layer, _) = layer();
    for key in [Key::p256(), Key::ed25519()] {
        let token = bound_to(&key);
        let response = call(&layer, dpop_request(&token, &[&key.proof(&token)])).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
        assert_eq!(response.body(), "alice");
    }
}

#[tokio::test]
async fn the_scheme_is_case_insensitive_and_the_htu_is_compared_normalised() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    for htu in [
        "HTTPS://MCP.Example.TEST/mcp",
        "https://mcp.example.test:443/mcp",
        "https://mcp.example.test/%6Dcp?query=ignored#and-fragment",
    ] {
        let proof = key.sign(key.header(), &with(claims(&token), "htu", json!(htu)));
        let mut request = dpop_request(&token, &[&proof]);
        request
            .headers_mut()
            .insert("authorization", format!("dpop {token}").parse().unwrap());
        let response = call(&layer, request).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{htu}: {}",
            response.body()
        );
    }
    // A request in origin form: the origin is read from Host (any case,
    // the default port spelled out or not).
    for host in ["mcp.example.test", "MCP.example.test:443"] {
        let proof = key.proof(&token);
        let mut request = dpop_request(&token, &[&proof]);
        *request.uri_mut() = "/mcp".parse().unwrap();
        request.headers_mut().insert("host", host.parse().unwrap());
        let response = call(&layer, request).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{host}: {}",
            response.body()
        );
    }
}

#[tokio::test]
async fn refuses_a_wrong_typ_symmetric_or_none_alg_and_a_private_jwk() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    let c = claims(&token);
    let cases = [
        (
            key.sign(with(key.header(), "typ", json!("JWT")), &c),
            "typ is not dpop+jwt",
        ),
        (
            {
                // A MAC, with a public key beside it.
                let mac = Key {
                    encoding: EncodingKey::from_secret(b"x"),
                    alg: Algorithm::HS256,
                    jwk: key.jwk.clone(),
                };
                mac.sign(mac.header(), &c)
            },
            "not an accepted asymmetric",
        ),
        (
            {
                let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk});
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(c.to_string())
                )
            },
            "not an accepted asymmetric",
        ),
        (
            key.sign(
                with(
                    key.header(),
                    "jwk",
                    with(key.jwk.clone(), "d", json!("c2VjcmV0")),
                ),
                &c,
            ),
            "holds a private key",
        ),
        (
            {
                let mut header = key.header();
                header.as_object_mut().unwrap().remove("jwk");
                key.sign(header, &c)
            },
            "no public key (jwk)",
        ),
        (
            // Signed by one key, naming another.
            key.sign(with(key.header(), "jwk", Key::p256().jwk), &c),
            "signature is not valid",
        ),
        (
            // ES256 with a P-384 curve named.
            key.sign(
                with(
                    key.header(),
                    "jwk",
                    with(key.jwk.clone(), "crv", json!("P-384")),
                ),
                &c,
            ),
            "does not fit its key",
        ),
        (
            key.sign(with(key.header(), "crit", json!(["exp"])), &c),
            "critical header extensions",
        ),
        (
            key.sign(
                with(key.header(), "jwk", json!({"kty": "oct", "k": "c2VjcmV0"})),
                &c,
            ),
            "private key",
        ),
        ("not.a-proof".to_owned(), "not a signed JWT"),
    ];
    for (proof, detail) in cases {
        let response = call(&layer, dpop_request(&token, &[&proof])).await;
        assert_proof_refused(&response, detail);
    }
}

#[tokio::test]
async fn refuses_a_proof_made_for_another_method_or_uri() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    let cases = [
        (with(claims(&token), "htm", json!("GET")), "another method"),
        (with(claims(&token), "htm", json!("post")), "another method"),
        (
            with(
                claims(&token),
                "htu",
                json!("https://evil.example.test/mcp"),
            ),
            "another URI",
        ),
        (
            with(
                claims(&token),
                "htu",
                json!("https://mcp.example.test/other"),
            ),
            "another URI",
        ),
        (
            with(claims(&token), "htu", json!("http://mcp.example.test/mcp")),
            "another URI",
        ),
        (
            with(
                claims(&token),
                "htu",
                json!("https://mcp.example.test:8443/mcp"),
            ),
            "another URI",
        ),
        (
            with(
                claims(&token),
                "htu",
                json!("https://user@mcp.example.test/mcp"),
            ),
            "not an http(s) URI",
        ),
        (
            with(claims(&token), "htu", json!("mcp")),
            "not an http(s) URI",
        ),
    ];
    for (claims, detail) in cases {
        let proof = key.sign(key.header(), &claims);
        let response = call(&layer, dpop_request(&token, &[&proof])).await;
        assert_proof_refused(&response, detail);
    }
}

#[tokio::test]
async fn configured_origins_decide_the_htu() {
    let (layer, _) = layer();
    let layer = layer
        .try_dpop_origins(["https://public.example.test"])
        .unwrap();
    let key = Key::p256();
    let token = bound_to(&key);
    // The server sees itself as http://10.0.0.5:8000; the client called
    // the public name.
    let mut request = dpop_request(&token, &[]);
    *request.uri_mut() = "http://10.0.0.5:8000/mcp".parse().unwrap();
    let proof = key.sign(
        key.header(),
        &with(
            claims(&token),
            "htu",
            json!("https://public.example.test/mcp"),
        ),
    );
    request.headers_mut().insert(DPOP, proof.parse().unwrap());
    assert_eq!(call(&layer, request).await.status(), StatusCode::OK);
    // The internal name is not one of them.
    let response = call(&layer, dpop_request(&token, &[&key.proof(&token)])).await;
    assert_proof_refused(&response, "another URI");
    assert!(
        AuthLayer::anonymous()
            .try_dpop_origins(["ftp://x"])
            .is_err()
    );
}

#[tokio::test]
async fn refuses_a_stale_or_future_proof_and_admits_within_the_window() {
    let (layer, clock) = layer();
    let layer = layer.dpop_iat_window(Duration::from_secs(60), Duration::from_secs(5));
    let key = Key::p256();
    let token = bound_to(&key);
    let at = |iat: u64| key.sign(key.header(), &with(claims(&token), "iat", json!(iat)));
    for (iat, detail) in [(NOW - 61, "too old"), (NOW + 6, "from the future")] {
        let response = call(&layer, dpop_request(&token, &[&at(iat)])).await;
        assert_proof_refused(&response, detail);
    }
    for iat in [NOW - 60, NOW + 5] {
        let response = call(&layer, dpop_request(&token, &[&at(iat)])).await;
        assert_eq!(response.status(), StatusCode::OK, "{iat}");
    }
    // A proof made now is refused once its window has passed.
    let proof = at(NOW);
    clock.store(NOW + 61, Ordering::SeqCst);
    let response = call(&layer, dpop_request(&token, &[&proof])).await;
    assert_proof_refused(&response, "too old");
    for missing in ["iat", "jti", "ath", "htm", "htu"] {
        let mut c = claims(&token);
        c["iat"] = json!(NOW + 61);
        c.as_object_mut().unwrap().remove(missing);
        let response = call(&layer, dpop_request(&token, &[&key.sign(key.header(), &c)])).await;
        assert_proof_refused(&response, "DPoP proof");
    }
}

#[tokio::test]
async fn refuses_a_replayed_proof() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    let proof = key.proof(&token);
    assert_eq!(
        call(&layer, dpop_request(&token, &[&proof])).await.status(),
        StatusCode::OK
    );
    let response = call(&layer, dpop_request(&token, &[&proof])).await;
    assert_proof_refused(&response, "used before (jti)");
    // Clones of the layer share the cache.
    let response = call(&layer.clone(), dpop_request(&token, &[&proof])).await;
    assert_proof_refused(&response, "used before (jti)");
    // The same jti from another key is another proof; a proof for a token
    // that is refused takes no room (it can be sent again with a token
    // that passes).
    let other = Key::p256();
    let other_token = bound_to(&other);
    let c = claims(&other_token);
    let refused = key.sign(
        key.header(),
        &with(c.clone(), "ath", json!(sha256_b64(b"x"))),
    );
    assert_eq!(
        call(&layer, dpop_request(&token, &[&refused]))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let proof = other.sign(other.header(), &c);
    let expired = token_with_exp(&other, NOW - 100);
    let for_expired = other.sign(
        other.header(),
        &with(c.clone(), "ath", json!(sha256_b64(expired.as_bytes()))),
    );
    assert_eq!(
        call(&layer, dpop_request(&expired, &[&for_expired]))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&layer, dpop_request(&other_token, &[&proof]))
            .await
            .status(),
        StatusCode::OK
    );
}

fn token_with_exp(key: &Key, exp: u64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp, "cnf": {"jkt": key.jkt()}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn refuses_a_proof_for_another_token_or_from_another_key() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    // ath of another token.
    let proof = key.sign(
        key.header(),
        &with(claims(&token), "ath", json!(sha256_b64(b"another token"))),
    );
    let response = call(&layer, dpop_request(&token, &[&proof])).await;
    assert_proof_refused(&response, "another access token (ath)");
    // A valid proof by a key the token is not bound to.
    let thief = Key::p256();
    let response = call(&layer, dpop_request(&token, &[&thief.proof(&token)])).await;
    assert_proof_refused(&response, "another key than the token is bound to");
}

#[tokio::test]
async fn refuses_two_dpop_headers_or_none() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    let (one, two) = (key.proof(&token), key.proof(&token));
    let response = call(&layer, dpop_request(&token, &[&one, &two])).await;
    assert_proof_refused(&response, "more than one DPoP header");
    let response = call(&layer, dpop_request(&token, &[])).await;
    assert_proof_refused(&response, "no DPoP proof header");
    let response = call(&layer, dpop_request(&token, &[&"x".repeat(9000)])).await;
    assert_proof_refused(&response, "too large");
}

#[tokio::test]
async fn a_bound_token_is_never_a_bearer_token_even_when_cached() {
    for mode in [DpopMode::Allowed, DpopMode::Off] {
        let (layer, _) = layer();
        let layer = layer.dpop(mode);
        let key = Key::p256();
        let token = bound_to(&key);
        if mode == DpopMode::Allowed {
            // Admitted once with its proof: now in the token cache.
            let response = call(&layer, dpop_request(&token, &[&key.proof(&token)])).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let response = call(&layer, bearer_request(&token)).await;
        assert_token_refused(&response, "bound to a DPoP key");
        // With a proof beside it, still not as Bearer.
        let mut request = bearer_request(&token);
        request
            .headers_mut()
            .insert(DPOP, key.proof(&token).parse().unwrap());
        assert_token_refused(&call(&layer, request).await, "bound to a DPoP key");
    }
}

#[tokio::test]
async fn an_unbound_token_is_not_a_dpop_token() {
    let (layer, _) = layer();
    let key = Key::p256();
    let token = token(None);
    let response = call(&layer, dpop_request(&token, &[&key.proof(&token)])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.body().contains("not bound to a DPoP key"));
    // ... and it stays a bearer token.
    assert_eq!(
        call(&layer, bearer_request(&token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_bound_by_an_unknown_or_malformed_confirmation_are_refused() {
    let (layer, _) = layer();
    for cnf in [
        json!("jkt"),
        json!({"jwk": {"kty": "EC"}}),
        json!({"jkt": "short"}),
        json!({"x5t#S256": 7}),
    ] {
        let token = token(Some(cnf.clone()));
        let response = call(&layer, bearer_request(&token)).await;
        assert_token_refused(&response, "cnf");
    }
}

#[tokio::test]
async fn modes_decide_which_schemes_pass_and_which_challenges_are_sent() {
    let key = Key::p256();
    let bound = bound_to(&key);
    let plain = token(None);

    // Allowed (the default): both, and two challenges.
    let (allowed, _) = layer();
    let layer = allowed;
    let response = call(&layer, Request::post(URL).body(()).unwrap()).await;
    assert_eq!(
        challenges(&response),
        ["Bearer".to_owned(), format!("DPoP algs=\"{PROOF_ALGS}\"")]
    );
    assert_eq!(
        call(&layer, bearer_request(&plain)).await.status(),
        StatusCode::OK
    );
    // A Bearer error is on the Bearer challenge only.
    let response = call(&layer, bearer_request("a.b.c")).await;
    let found = challenges(&response);
    assert!(found[0].contains("invalid_token"), "{found:?}");
    assert!(!found[1].contains("error"), "{found:?}");

    // Required: plain bearer tokens and API keys refused, one challenge.
    let layer = self::layer().0.dpop(DpopMode::Required);
    let response = call(&layer, bearer_request(&plain)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.body().contains("only DPoP-bound tokens"));
    let found = challenges(&response);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("DPoP algs=") && found[0].contains("invalid_token"));
    let ok = call(&layer, dpop_request(&bound, &[&key.proof(&bound)])).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let mut with_key = Request::post(URL).body(()).unwrap();
    with_key
        .headers_mut()
        .insert("x-api-key", "sk-some-api-key-0001".parse().unwrap());
    assert_eq!(
        call(&layer, with_key).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Off: the DPoP scheme is refused, the Bearer challenge alone.
    let layer = self::layer().0.dpop(DpopMode::Off);
    let response = call(&layer, dpop_request(&bound, &[&key.proof(&bound)])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&response).len(), 1);
    assert!(challenges(&response)[0].starts_with("Bearer"));
    assert_eq!(
        call(&layer, bearer_request(&plain)).await.status(),
        StatusCode::OK
    );

    // API keys alone: no DPoP, no DPoP challenge.
    let keys = crate::auth::ApiKeys::new("a-salt-of-sixteen-bytes").unwrap();
    keys.insert_key(
        "sk-some-api-key-0001",
        Principal::builder("ci", crate::principal::AuthMethod::ApiKey).build(),
    )
    .unwrap();
    let response = call(&AuthLayer::api_keys(keys), Request::new(())).await;
    assert_eq!(challenges(&response), ["Bearer"]);
}

/// A made-up certificate: the binding compares bytes, not their meaning.
const CERT: &[u8] = b"0\x82certificate-one";
const OTHER_CERT: &[u8] = b"0\x82certificate-two";

async fn call_with_cert(layer: &AuthLayer, token: &str, cert: Option<&[u8]>) -> StatusCode {
    let service = ServiceBuilder::new()
        .layer(
            ClientCertLayer::new()
                .rfc9440()
                .try_trusted_proxies(["127.0.0.1"])
                .unwrap(),
        )
        .layer(layer.clone())
        .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut request = bearer_request(token);
    request
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40000)));
    if let Some(cert) = cert {
        request.headers_mut().insert(
            "client-cert",
            format!(":{}:", STANDARD.encode(cert)).parse().unwrap(),
        );
    }
    service.oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_certificate_bound_token_needs_its_certificate() {
    let (layer, _) = layer();
    let token = token(Some(json!({"x5t#S256": sha256_b64(CERT)})));
    assert_eq!(
        call_with_cert(&layer, &token, Some(CERT)).await,
        StatusCode::OK
    );
    // Cached now; the binding is still checked.
    assert_eq!(
        call_with_cert(&layer, &token, Some(OTHER_CERT)).await,
        StatusCode::UNAUTHORIZED
    );
    // No certificate at all (no ClientCertLayer in front either).
    let response = call(&layer, bearer_request(&token)).await;
    assert_token_refused(&response, "none was presented");
    // An unbound token needs none.
    assert_eq!(
        call_with_cert(&layer, &self::token(None), Some(OTHER_CERT)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_credential_head_is_checked_again_without_replaying_the_proof() {
    let (layer, clock) = layer();
    let key = Key::p256();
    let token = bound_to(&key);
    let heads = Arc::new(Mutex::new(Vec::new()));
    let service = {
        let (layer, heads) = (layer.clone(), heads.clone());
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(move |request: Request<()>| {
                heads
                    .lock()
                    .unwrap()
                    .push(layer.credential_head(&request).unwrap());
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            })
    };
    let response = service
        .oneshot(dpop_request(&token, &[&key.proof(&token)]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let head = heads.lock().unwrap().pop().unwrap();
    assert!(!head.headers().contains_key(DPOP), "the proof is not kept");
    // Later, past the proof's window: the token is checked, not the proof.
    clock.store(NOW + 600, Ordering::SeqCst);
    assert_eq!(layer.authenticate(&head).await.unwrap().subject(), "alice");
    assert_eq!(layer.authenticate(&head).await.unwrap().subject(), "alice");
    // A head of a request this layer did not admit proves nothing.
    let unproven = layer.credential_head(&dpop_request(&token, &[])).unwrap();
    assert!(layer.authenticate(&unproven).await.is_err());
}

#[test]
fn rfc_7638_thumbprint_example() {
    // RFC 7638 §3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let digest = thumbprint(jwk.as_object().unwrap()).unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(digest),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn replay_cache_refuses_when_full_of_live_proofs_and_drops_expired_ones() {
    // One entry per shard.
    let cache = ReplayCache::new(SHARDS);
    let first: u128 = 3;
    let same_shard: u128 = 3 + SHARDS as u128;
    assert_eq!(cache.record(first, 100, 10), Recorded::Fresh);
    assert_eq!(cache.record(first, 100, 20), Recorded::Replayed);
    // The shard is full of a live proof: refused, not evicted.
    assert_eq!(cache.record(same_shard, 110, 50), Recorded::Full);
    assert_eq!(cache.record(first, 100, 60), Recorded::Replayed);
    // Another shard has room.
    assert_eq!(cache.record(first + 1, 100, 60), Recorded::Fresh);
    // Once the first has expired, it is dropped for the new one.
    assert_eq!(cache.record(same_shard, 200, 100), Recorded::Fresh);
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.record(same_shard, 200, 150), Recorded::Replayed);
}

#[tokio::test]
async fn a_full_replay_cache_refuses_with_503() {
    let (layer, _) = layer();
    let layer = layer.dpop_replay_capacity(1);
    let key = Key::p256();
    let token = bound_to(&key);
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let response = call(&layer, dpop_request(&token, &[&key.proof(&token)])).await;
        statuses.push(response.status());
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(response.headers().contains_key("retry-after"));
            assert!(response.body().contains("too many recent DPoP proofs"));
        }
    }
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(statuses.iter().filter(|s| **s == StatusCode::OK).count() <= SHARDS);
}

#[test]
fn paths_normalise_escapes_of_unreserved_characters_only() {
    assert_eq!(normalize_path("/a%7eb%2fc").unwrap(), "/a~b%2Fc");
    assert_eq!(normalize_path("").unwrap(), "/");
    assert!(normalize_path("/%zz").is_none());
    assert!(normalize_path("/%4").is_none());
}

#[tokio::test]
async fn a_refused_dpop_token_is_told_on_the_dpop_challenge() {
    let (layer, _) = layer();
    let key = Key::p256();
    let expired = token_with_exp(&key, NOW - 3600);
    let response = call(&layer, dpop_request(&expired, &[&key.proof(&expired)])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.body().contains("token_expired"),
        "{}",
        response.body()
    );
    let found = challenges(&response);
    assert_eq!(found[0], "Bearer", "{found:?}");
    assert!(
        found[1].starts_with("DPoP ") && found[1].contains("error=\"invalid_token\""),
        "{found:?}"
    );
}
