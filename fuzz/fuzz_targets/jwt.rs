//! JWT verification (`AuthLayer` with `JwtAuth`) over arbitrary tokens:
//! raw strings, and tokens whose header and claims are arbitrary bytes but
//! correctly signed (HS256 with the fixed secret, ES256 with the fixed EC
//! key), so that the claim handling behind the signature check is reached.
//! Two verifiers: a fixed HS256 secret, and a JWKS holding an RSA (RS256)
//! and an EC (ES256) key.
//!
//! Invariants: never a panic; a token is accepted only when its signature
//! is genuine (HS256: recomputed here; RS256/ES256: its signing input is
//! one this target signed), its `alg` is the key's, its `exp` and `nbf`
//! hold at the verifier's clock (30 s leeway), its `aud` and `iss` are the
//! configured ones, and the `Principal` carries the token's `sub` and no
//! scope the token does not grant.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sha2::Sha256;
use tower_layer::Layer;
use tower_service::Service;
use tower_warden::auth::{AuthLayer, JwtAuth};
use tower_warden_fuzz::{Inner, Seen, block_on};

const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";
const AUD: &str = "https://mcp.example.test/mcp";
const ISS: &str = "https://issuer.example.test";
const NOW: u64 = 1_900_000_000;
const LEEWAY: u64 = 30;

const RSA_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa.pem");
const EC_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/ec256.pem");

struct Fixed {
    hs: AuthLayer,
    set: AuthLayer,
    ec: EncodingKey,
    /// Signing inputs of RS256/ES256 tokens signed here.
    signed: Mutex<Vec<String>>,
    /// Pre-signed RS256 tokens whose signatures the fuzzer may reuse.
    rsa_tokens: Vec<String>,
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk =
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
        let ec = EncodingKey::from_ec_pem(EC_PEM).unwrap();
        let jwks =
            json!({"keys": [jwk(&rsa, Algorithm::RS256, "rsa"), jwk(&ec, Algorithm::ES256, "ec")]});
        let hs = JwtAuth::builder()
            .hmac_secret(SECRET, Algorithm::HS256)
            .audience([AUD])
            .issuer([ISS])
            .clock(|| NOW)
            .cache_capacity(16)
            .build()
            .unwrap();
        let set = JwtAuth::builder()
            .jwks(jwks.to_string())
            .audience([AUD])
            .issuer([ISS])
            .clock(|| NOW)
            .cache_capacity(16)
            .build()
            .unwrap();
        let claims =
            json!({"sub": "alice", "exp": NOW + 60, "aud": AUD, "iss": ISS, "scope": "tools:call"});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa".into());
        let rsa_token = jsonwebtoken::encode(&header, &claims, &rsa).unwrap();
        let signed = vec![signing_input(&rsa_token).to_owned()];
        Fixed {
            hs: AuthLayer::jwt(hs),
            set: AuthLayer::jwt(set),
            ec,
            signed: Mutex::new(signed),
            rsa_tokens: vec![rsa_token],
        }
    })
}

fn signing_input(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(input, _)| input)
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any token text.
    Raw(String),
    /// Header and claims bytes, signed with the HS256 secret.
    Hs { header: Vec<u8>, claims: Vec<u8> },
    /// Header and claims bytes, signed with the EC key.
    Es { header: Vec<u8>, claims: Vec<u8> },
    /// A JSON header built from parts, signed with the secret.
    Parts {
        alg: u8,
        kid: Option<String>,
        crit: bool,
        claims: Vec<u8>,
    },
    /// Header and claims bytes with the signature of a genuine RS256 token.
    Borrowed { header: Vec<u8>, claims: Vec<u8> },
}

fn hs256(input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn token(fixed: &Fixed, input: &Input) -> String {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match input {
        Input::Raw(text) => text.clone(),
        Input::Hs { header, claims } => {
            let signing = format!("{}.{}", b64(header), b64(claims));
            format!("{signing}.{}", hs256(&signing))
        }
        Input::Es { header, claims } => {
            let signing = format!("{}.{}", b64(header), b64(claims));
            let sig = jsonwebtoken::crypto::sign(signing.as_bytes(), &fixed.ec, Algorithm::ES256)
                .unwrap();
            let mut signed = fixed.signed.lock().unwrap();
            if signed.len() < 10_000 {
                signed.push(signing.clone());
            }
            format!("{signing}.{sig}")
        }
        Input::Parts {
            alg,
            kid,
            crit,
            claims,
        } => {
            let algs = [
                "HS256", "HS384", "none", "RS256", "ES256", "hs256", "EdDSA", "",
            ];
            let mut header = json!({"typ": "JWT", "alg": algs[usize::from(*alg) % algs.len()]});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            if *crit {
                header["crit"] = json!(["exp"]);
            }
            let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims));
            format!("{signing}.{}", hs256(&signing))
        }
        Input::Borrowed { header, claims } => {
            let (_, sig) = fixed.rsa_tokens[0].rsplit_once('.').unwrap();
            format!("{}.{}.{sig}", b64(header), b64(claims))
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn check_accepted(fixed: &Fixed, hs: bool, token: &str, principal: &tower_warden::principal::Principal) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token of {} parts", parts.len());
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header base64"))
            .expect("header JSON");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("claims base64"))
            .expect("claims JSON");
    let alg = header.get("alg").and_then(Value::as_str);
    let signing = signing_input(token);
    if hs {
        assert_eq!(alg, Some("HS256"));
        assert_eq!(
            parts[2],
            hs256(signing),
            "accepted a forged HS256 signature"
        );
    } else {
        assert!(
            matches!(alg, Some("RS256" | "ES256")),
            "accepted alg {alg:?}"
        );
        assert!(
            fixed.signed.lock().unwrap().iter().any(|s| s == signing),
            "accepted a signing input never signed"
        );
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .expect("a string sub");
    assert!(!sub.is_empty());
    assert_eq!(principal.subject(), sub);
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .expect("a numeric exp");
    assert!(
        NOW < exp.saturating_add(LEEWAY),
        "accepted an expired token"
    );
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_u64().expect("a numeric nbf");
        assert!(nbf <= NOW + LEEWAY, "accepted a token before its nbf");
    }
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some(ISS),
        "issuer"
    );
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == AUD,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(AUD)),
        _ => false,
    };
    assert!(aud_ok, "accepted a token for another audience: {claims}");
    let mut granted = strings(claims.get("scope"));
    granted.extend(strings(claims.get("scp")));
    granted.extend(strings(claims.get("permissions")));
    for scope in principal.scopes() {
        assert!(
            granted.iter().any(|g| g == scope),
            "scope {scope} was never granted"
        );
    }
}

fuzz_target!(|input: Input| {
    let fixed = fixed();
    let token = token(fixed, &input);
    let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    for (hs, layer) in [(true, &fixed.hs), (false, &fixed.set)] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let inner = Inner {
            seen: seen.clone(),
            content_type: "text/plain",
            chunks: Arc::new(Mutex::new(Vec::new())),
        };
        let mut service = layer.layer(inner);
        let mut request = Request::new(Full::new(Bytes::new()));
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value.clone());
        let response = block_on(service.call(request)).unwrap();
        let seen = seen.lock().unwrap();
        if seen.called {
            let principal = seen.principal.as_ref().expect("a principal");
            check_accepted(fixed, hs, &token, principal);
        } else {
            assert!(
                matches!(response.status().as_u16(), 400 | 401 | 403),
                "refused with {}",
                response.status()
            );
        }
    }
});
