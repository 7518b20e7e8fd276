//! Sender-constrained tokens from a real authorization server: the npm
//! package `oidc-provider` (`tests/oidc/provider.js`), started on
//! 127.0.0.1 at a free port, issues JWT access tokens through the
//! client_credentials grant, bound to a DPoP key (RFC 9449) or to a client
//! certificate (RFC 8705). `AuthLayer`, built from the provider's JWKS,
//! admits them only with their proof or certificate.
//!
//! The test makes its own DPoP proofs (ES256, a P-256 key made at test
//! time) for the token endpoint and for the resource, and plays the
//! TLS-terminating proxy: it passes the client certificate to the provider
//! in a header and to the resource as RFC 9440 `Client-Cert`.
//!
//! Needs `node` and `tests/oidc/node_modules` (`npm ci --prefix
//! tests/oidc`, which `.ci/run` does). Without them the test says why and
//! passes, unless `TOWER_WARDEN_REQUIRE_SERVICES=1`, when it fails.
#![cfg(all(
    feature = "auth",
    feature = "client-cert",
    feature = "jwks-url",
    feature = "stack"
))]

use std::convert::Infallible;
use std::net::SocketAddr;

use aws_lc::rand::SystemRandom;
use aws_lc::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::{ServiceBuilder, ServiceExt};
use tower_warden::auth::{AuthLayer, DPOP, JwtAuth};
use tower_warden::client_cert::ClientCertLayer;
use tower_warden::principal::Principal;

#[allow(dead_code)]
#[path = "support/oidc.rs"]
mod oidc;
use oidc::{Provider, now, oidc_dir};

fn start_provider(test: &str) -> Option<Provider> {
    oidc::start_provider(test, &[("RESOURCE", RESOURCE.to_owned())])
}

/// The resource the provider issues tokens for (their `aud`), and the URL
/// the proofs for it name.
const RESOURCE: &str = "http://mcp.example.test/mcp";
const CLIENT_SECRET: &str = "a-test-client-secret-of-some-length";

fn b64_sha256(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// A DPoP key: an EC P-256 key pair made at test time.
struct DpopKey {
    encoding: EncodingKey,
    jwk: Value,
}

impl DpopKey {
    fn new() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        Self {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256",
                        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                        "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
        }
    }

    /// A proof for `method url`, and for `token` when given (`ath`).
    fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        tower_warden::auth::install_crypto_provider();
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(rand_bytes()),
            "htm": method,
            "htu": url,
            "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = json!(b64_sha256(token.as_bytes()));
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &self.encoding, Algorithm::ES256)
                .unwrap();
        format!("{signed}.{signature}")
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    aws_lc::rand::fill(&mut bytes).unwrap();
    bytes
}

/// The DER bytes of a PEM certificate in `tests/oidc`.
fn certificate(name: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(oidc_dir().join(name)).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// A client_credentials token from the provider's token endpoint, with
/// the extra request headers given. Returns the token response.
async fn token(provider: &Provider, client_id: &str, headers: &[(&str, String)]) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer))
        .basic_auth(client_id, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope=tools%3Aread&resource={}",
            RESOURCE.replace(':', "%3A").replace('/', "%2F")
        ));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the token endpoint");
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "token endpoint: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

/// The claims of a JWT, unverified (to look at what the provider issued).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `AuthLayer` verifying the provider's tokens with its published keys.
async fn auth_layer(provider: &Provider) -> AuthLayer {
    let jwks = reqwest::get(format!("{}/jwks", provider.issuer))
        .await
        .expect("the JWKS endpoint")
        .text()
        .await
        .unwrap();
    let jwt = JwtAuth::builder()
        .jwks(jwks)
        .issuer([provider.issuer.as_str()])
        .audience([RESOURCE])
        .build()
        .expect("a verifier from the provider's JWKS");
    AuthLayer::jwt(jwt)
}

/// A request to the resource as a server sees it behind its proxy:
/// origin-form URI, `Host`, the proxy as peer.
fn resource_request(authorization: &str, proof: Option<&str>) -> Request<()> {
    let mut request = Request::post("/mcp")
        .header("host", "mcp.example.test")
        .header("authorization", authorization)
        .body(())
        .unwrap();
    if let Some(proof) = proof {
        request.headers_mut().insert(DPOP, proof.parse().unwrap());
    }
    request
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40000)));
    request
}

type Reply = std::future::Ready<Result<Response<String>, Infallible>>;
type Handler = tower::util::ServiceFn<fn(Request<()>) -> Reply>;

/// The subject the request was admitted as.
fn handler(request: Request<()>) -> Reply {
    let who = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.subject().to_owned())
        .unwrap_or_default();
    std::future::ready(Ok(Response::new(who)))
}

/// `request` through `layer` in front of [`handler`], its body as text.
async fn call<L, B>(layer: L, request: Request<()>) -> Response<String>
where
    L: tower::Layer<Handler>,
    L::Service: tower::Service<Request<()>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let service = layer.layer(tower::service_fn(handler as fn(Request<()>) -> Reply));
    let (parts, body) = service.oneshot(request).await.unwrap().into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    Response::from_parts(parts, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn dpop_bound_tokens_from_oidc_provider_need_a_fresh_proof_by_their_key() {
    let Some(provider) = start_provider("dpop_bound_tokens_from_oidc_provider") else {
        return;
    };
    let key = DpopKey::new();
    let issued = token(
        &provider,
        "dpop-client",
        &[(
            "dpop",
            key.proof("POST", &format!("{}/token", provider.issuer), None),
        )],
    )
    .await;
    assert_eq!(issued["token_type"], "DPoP", "{issued}");
    let access = issued["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    assert_eq!(claims["aud"], RESOURCE);
    assert!(claims["cnf"]["jkt"].is_string(), "{claims}");

    let layer = auth_layer(&provider).await;
    let authorization = format!("DPoP {access}");

    // A valid proof: admitted, as the client.
    let proof = key.proof("POST", RESOURCE, Some(access));
    let response = call(
        layer.clone(),
        resource_request(&authorization, Some(&proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    assert_eq!(response.body(), "dpop-client");

    // The same proof again: a replay.
    let response = call(
        layer.clone(),
        resource_request(&authorization, Some(&proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.body().contains("used before"),
        "{}",
        response.body()
    );
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("error=\"invalid_dpop_proof\"")),
        "{challenges:?}"
    );

    // A proof for another URL.
    let proof = key.proof("POST", "http://mcp.example.test/other", Some(access));
    let response = call(
        layer.clone(),
        resource_request(&authorization, Some(&proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.body().contains("(htu)"), "{}", response.body());

    // A proof for another token.
    let proof = key.proof("POST", RESOURCE, Some("another.access.token"));
    let response = call(
        layer.clone(),
        resource_request(&authorization, Some(&proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.body().contains("(ath)"), "{}", response.body());

    // A proof by another key (a thief holding the token, not the key).
    let thief = DpopKey::new();
    let proof = thief.proof("POST", RESOURCE, Some(access));
    let response = call(
        layer.clone(),
        resource_request(&authorization, Some(&proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.body().contains("cnf.jkt"), "{}", response.body());

    // The token as a plain bearer token, with or without a proof.
    for proof in [None, Some(key.proof("POST", RESOURCE, Some(access)))] {
        let response = call(
            layer.clone(),
            resource_request(&format!("Bearer {access}"), proof.as_deref()),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.body().contains("bound to a DPoP key"),
            "{}",
            response.body()
        );
    }

    // And a fresh proof is admitted again.
    let proof = key.proof("POST", RESOURCE, Some(access));
    let response = call(layer, resource_request(&authorization, Some(&proof))).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
}

#[tokio::test]
async fn certificate_bound_tokens_from_oidc_provider_need_their_certificate() {
    let Some(provider) = start_provider("certificate_bound_tokens_from_oidc_provider") else {
        return;
    };
    let (cert_a, cert_b) = (
        certificate("client-cert-a.pem"),
        certificate("client-cert-b.pem"),
    );
    let issued = token(
        &provider,
        "mtls-client",
        &[("x-test-client-cert", STANDARD.encode(&cert_a))],
    )
    .await;
    assert_eq!(issued["token_type"], "Bearer", "{issued}");
    let access = issued["access_token"].as_str().unwrap();
    assert_eq!(
        claims_of(access)["cnf"]["x5t#S256"],
        b64_sha256(&cert_a),
        "the provider binds the token to the certificate's DER"
    );

    let auth = auth_layer(&provider).await;
    let layer = ServiceBuilder::new()
        .layer(
            ClientCertLayer::new()
                .rfc9440()
                .try_trusted_proxies(["127.0.0.1"])
                .unwrap(),
        )
        .layer(auth.clone())
        .into_inner();
    let with_cert = |cert: &[u8]| {
        let mut request = resource_request(&format!("Bearer {access}"), None);
        request.headers_mut().insert(
            "client-cert",
            format!(":{}:", STANDARD.encode(cert)).parse().unwrap(),
        );
        request
    };

    let response = call(layer.clone(), with_cert(&cert_a)).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());
    assert_eq!(response.body(), "mtls-client");

    // Another certificate (the token is cached now: still refused).
    let response = call(layer.clone(), with_cert(&cert_b)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.body().contains("another client certificate"),
        "{}",
        response.body()
    );

    // No certificate at all.
    let response = call(
        auth.clone(),
        resource_request(&format!("Bearer {access}"), None),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.body().contains("none was presented"),
        "{}",
        response.body()
    );

    // The right certificate again.
    let response = call(layer, with_cert(&cert_a)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The settings reach the layer: `MCP_DPOP=required` refuses a plain
/// bearer token and answers with the DPoP challenge alone, and the proof's
/// `htu` is compared with the origin of `MCP_RESOURCE_URL`, not with the
/// address the server sees behind its proxy. No authorization server
/// needed: the token is signed with the configured secret.
#[tokio::test]
async fn settings_require_dpop_and_name_the_public_origin() {
    use tower_warden::config::WardenConfig;
    use tower_warden::stack::WardenLayer;

    const SECRET: &str = "a-jwt-secret-of-at-least-thirty-two-bytes";
    const PUBLIC: &str = "https://mcp.public.example/mcp";
    let config = WardenConfig::from_vars([
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_RESOURCE_URL", PUBLIC),
        ("MCP_DPOP", "required"),
        ("MCP_DPOP_MAX_AGE_SECONDS", "30"),
    ])
    .unwrap();
    let warden = WardenLayer::from_config(&config).unwrap();
    let layer = warden.auth().clone();
    tower_warden::auth::install_crypto_provider();
    let key = DpopKey::new();
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let jkt = {
        let j = &key.jwk;
        b64_sha256(
            format!(
                r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
                j["x"], j["y"]
            )
            .as_bytes(),
        )
    };
    let claims = json!({"sub": "alice", "aud": PUBLIC, "exp": now() + 300});
    let plain = sign(claims.clone());
    let mut bound_claims = claims;
    bound_claims["cnf"] = json!({"jkt": jkt});
    let bound = sign(bound_claims);

    // The server listens on 127.0.0.1:8000 behind the proxy.
    let internal = |authorization: &str, proof: Option<&str>| {
        let mut request = resource_request(authorization, proof);
        request
            .headers_mut()
            .insert("host", "127.0.0.1:8000".parse().unwrap());
        request
    };
    let response = call(layer.clone(), internal(&format!("Bearer {plain}"), None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .collect();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].to_str().unwrap().starts_with("DPoP algs="));

    let proof = key.proof("POST", PUBLIC, Some(&bound));
    let response = call(
        layer.clone(),
        internal(&format!("DPoP {bound}"), Some(&proof)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.body());

    let proof = key.proof("POST", "http://127.0.0.1:8000/mcp", Some(&bound));
    let response = call(layer, internal(&format!("DPoP {bound}"), Some(&proof))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.body().contains("(htu)"), "{}", response.body());
}
