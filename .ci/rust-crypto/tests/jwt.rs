//! The JWT algorithms through the RustCrypto backend, as a dependent crate
//! builds tower-warden with `default-features = false, features = ["auth",
//! "rust-crypto"]`: every supported algorithm verifies with its key, and a
//! forged, expired or algorithm-confused token is refused.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_warden::auth::{AuthLayer, JwtAuth};
use tower_warden::principal::Principal;

const AUD: &str = "https://mcp.example.test/mcp";
const NOW: u64 = 1_900_000_000;
const SECRET: &str = "rust-crypto-secret-of-at-least-32-bytes";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn claims(exp: u64) -> Value {
    json!({"sub": "alice", "aud": AUD, "iat": NOW, "exp": exp, "scope": "tools:call"})
}

fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn verifier(
    key: impl FnOnce(tower_warden::auth::JwtAuthBuilder) -> tower_warden::auth::JwtAuthBuilder,
) -> JwtAuth {
    key(JwtAuth::builder().audience([AUD]).clock(|| NOW))
        .build()
        .unwrap()
}

/// The status, and the subject the inner service saw (`None` when it was
/// not called).
async fn call(auth: JwtAuth, token: &str) -> (StatusCode, Option<String>) {
    let seen = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&seen);
    let service = ServiceBuilder::new()
        .layer(AuthLayer::jwt(auth))
        .service_fn(move |request: Request<()>| {
            let subject = request
                .extensions()
                .get::<Principal>()
                .map(|p| p.subject().to_owned());
            *inner.lock().unwrap() = Some(subject.unwrap_or_default());
            async { Ok::<_, Infallible>(Response::new(())) }
        });
    let request = Request::builder()
        .uri("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let status = service.oneshot(request).await.unwrap().status();
    let subject = seen.lock().unwrap().take();
    (status, subject)
}

#[tokio::test]
async fn every_algorithm_verifies_with_its_key() {
    let cases = [
        (Algorithm::RS256, "rsa"),
        (Algorithm::RS384, "rsa"),
        (Algorithm::RS512, "rsa"),
        (Algorithm::PS256, "rsa"),
        (Algorithm::PS384, "rsa"),
        (Algorithm::PS512, "rsa"),
        (Algorithm::ES256, "ec256"),
        (Algorithm::ES384, "ec384"),
        (Algorithm::EdDSA, "ed25519"),
    ];
    for (alg, file) in cases {
        let private = fixture(&format!("{file}.pem"));
        let key = match file {
            "rsa" => EncodingKey::from_rsa_pem(&private),
            "ed25519" => EncodingKey::from_ed_pem(&private),
            _ => EncodingKey::from_ec_pem(&private),
        }
        .unwrap();
        let auth = verifier(|b| b.public_key_pem(fixture(&format!("{file}.pub.pem")), alg));
        let (status, seen) = call(auth, &sign(alg, &claims(NOW + 60), &key)).await;
        assert_eq!(
            (status, seen.as_deref()),
            (StatusCode::OK, Some("alice")),
            "{alg:?}"
        );
    }
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let auth = verifier(|b| b.hmac_secret(SECRET, alg));
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let (status, _) = call(auth, &sign(alg, &claims(NOW + 60), &key)).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}");
    }
}

#[tokio::test]
async fn forged_expired_and_confused_tokens_are_refused() {
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap();
    let auth = || verifier(|b| b.public_key_pem(fixture("rsa.pub.pem"), Algorithm::RS256));

    let (status, seen) = call(auth(), &sign(Algorithm::RS256, &claims(NOW + 60), &rsa)).await;
    assert_eq!((status, seen.as_deref()), (StatusCode::OK, Some("alice")));

    // Signed by another RSA key.
    let other = EncodingKey::from_rsa_pem(&fixture("rsa2.pem")).unwrap();
    let (status, seen) = call(auth(), &sign(Algorithm::RS256, &claims(NOW + 60), &other)).await;
    assert_eq!((status, seen), (StatusCode::UNAUTHORIZED, None));

    // Expired (beyond the default leeway).
    let (status, _) = call(auth(), &sign(Algorithm::RS256, &claims(NOW - 3600), &rsa)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Algorithm confusion: HS256 keyed with the RSA public key's PEM.
    let confused = EncodingKey::from_secret(&fixture("rsa.pub.pem"));
    let (status, _) = call(
        auth(),
        &sign(Algorithm::HS256, &claims(NOW + 60), &confused),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // `alg: none`, unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(NOW + 60).to_string().as_bytes())
    );
    let (status, _) = call(auth(), &none).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Unpadded base64url.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
