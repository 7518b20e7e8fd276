//! Attacks on authentication, black-box against the reference server served
//! on 127.0.0.1 with production settings: forged, tampered, misdirected and
//! expired tokens, key-selection tricks, guessed API keys and credentials
//! in the URL. Every case asserts the refusal a client sees (status,
//! problem `code`, `WWW-Authenticate`) and that the MCP endpoint never
//! answered a JSON-RPC message.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use app::settings::Settings;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_support::{Reply, Server, initialize, open_session, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "attack-auth-test-secret-of-at-least-32-bytes";
const VERSION: &str = "2025-06-18";

/// The reference server with `vars` over a production base (in-memory
/// connection store, no rate limits unless `vars` say otherwise).
async fn start(vars: &[(&str, &str)]) -> (Server, Settings) {
    let mut all = vec![
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    let config = Settings::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    (Server::serve(router, shutdown).await, config)
}

/// A production server verifying HS256 tokens signed with [`SECRET`], for
/// the audience `aud`.
async fn start_hs(aud: &str) -> Server {
    start(&[("MCP_JWT_SECRET", SECRET), ("MCP_JWT_AUDIENCE", aud)])
        .await
        .0
}

const AUD: &str = "https://mcp.example/mcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims that a server for [`AUD`] accepts.
fn claims() -> Value {
    json!({"sub": "mallory", "aud": AUD, "exp": now() + 600, "scope": "*"})
}

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/keys/{file}"))
}

fn pem(file: &str) -> Vec<u8> {
    std::fs::read(fixture(file)).unwrap()
}

fn rsa_key(file: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&pem(file)).unwrap()
}

fn ec_key(file: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(&pem(file)).unwrap()
}

/// `claims` under `header`, signed by `key`.
fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    tower_warden::auth::install_crypto_provider();
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

/// Unpadded base64url (RFC 7515 §2), for tokens no library would build.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A token with this raw header and these claims, HS256-signed with
/// [`SECRET`] over exactly these bytes (so only the header is "wrong").
fn raw_hs256(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    tower_warden::auth::install_crypto_provider();
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

/// A `tools/call` of `whoami`: what an attacker wants to run.
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;

/// Sends `initialize` with `authorization`; what comes back.
async fn try_token(server: &Server, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    post(
        &server.url(),
        &[("authorization", &auth)],
        &initialize(VERSION),
    )
    .await
}

/// The answer is a problem document with `status` and `code`, and not a
/// JSON-RPC message: nothing reached the MCP service.
#[track_caller]
fn assert_refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body.get("jsonrpc").is_none() && body.get("result").is_none());
    assert!(reply.headers.get("mcp-session-id").is_none());
}

/// A 401 for a bad token: `invalid_credentials`, and a Bearer challenge
/// saying `invalid_token` and where the resource metadata is.
#[track_caller]
fn assert_bad_token(reply: &Reply) {
    assert_bad_token_code(reply, "invalid_credentials");
}

/// A 401 with `code` and a Bearer challenge saying `invalid_token`.
#[track_caller]
fn assert_bad_token_code(reply: &Reply, code: &str) {
    assert_refused(reply, StatusCode::UNAUTHORIZED, code);
    let challenge = reply.headers[http::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
}

/// The control: the same server answers a good token with a session.
async fn assert_admitted(server: &Server, token: &str) {
    let reply = try_token(server, token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.message()["result"]["protocolVersion"], VERSION);
}

// Finding 6: the audience is checked outside development, and a JWKS URL
// needs an issuer.

#[tokio::test]
async fn attack_audience_is_checked_in_production_without_jwt_audience() {
    let (server, config) = start(&[("MCP_JWT_SECRET", SECRET)]).await;
    // Neither MCP_JWT_AUDIENCE nor MCP_RESOURCE_URL: the derived resource
    // URL is the audience.
    let resource = tower_warden::stack::resource_url(&config.warden);
    let mut other = claims();
    other["aud"] = json!("https://other-service.example/api");
    assert_bad_token(&try_token(&server, &hs256(&other)).await);
    let mut none = claims();
    none.as_object_mut().unwrap().remove("aud");
    assert_bad_token(&try_token(&server, &hs256(&none)).await);
    let mut ours = claims();
    ours["aud"] = json!(resource);
    assert_admitted(&server, &hs256(&ours)).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_audience_is_checked_in_staging_too() {
    let (server, config) =
        start(&[("MCP_ENVIRONMENT", "staging"), ("MCP_JWT_SECRET", SECRET)]).await;
    let mut other = claims();
    other["aud"] = json!("https://other-service.example/api");
    assert_bad_token(&try_token(&server, &hs256(&other)).await);
    let mut ours = claims();
    ours["aud"] = json!(tower_warden::stack::resource_url(&config.warden));
    assert_admitted(&server, &hs256(&ours)).await;
    server.stop().await;
}

#[test]
fn jwks_url_needs_an_issuer_outside_development() {
    for env in ["production", "staging"] {
        let error = Settings::from_vars([
            ("MCP_ENVIRONMENT", env),
            ("MCP_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
        ])
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_JWT_ISSUER", "{env}: {error}");
        Settings::from_vars([
            ("MCP_ENVIRONMENT", env),
            ("MCP_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            ("MCP_JWT_ISSUER", "https://idp.example"),
        ])
        .unwrap();
    }
}

// Forged and unsigned tokens.

#[tokio::test]
async fn attack_alg_none_in_every_spelling_is_refused() {
    let server = start_hs(AUD).await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let payload = b64(claims().to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert_bad_token(&try_token(&server, &token).await);
        }
    }
    assert_admitted(&server, &hs256(&claims())).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_unsigned_token_with_an_empty_signature_is_refused() {
    let server = start_hs(AUD).await;
    let good = hs256(&claims());
    let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
    assert_bad_token(&try_token(&server, &unsigned).await);
    // A signature of another token over the same header.
    let mut other = claims();
    other["sub"] = json!("someone-else");
    let signature = hs256(&other).rsplit_once('.').unwrap().1.to_owned();
    let spliced = format!("{}.{signature}", good.rsplit_once('.').unwrap().0);
    assert_bad_token(&try_token(&server, &spliced).await);
    assert_admitted(&server, &good).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_tampered_payload_is_refused() {
    let server = start_hs(AUD).await;
    let good = hs256(&json!({"sub": "mallory", "aud": AUD, "exp": now() + 600}));
    let (header, rest) = good.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let mut escalated = claims();
    escalated["roles"] = json!(["admin"]);
    let payload = b64(escalated.to_string().as_bytes());
    assert_bad_token(&try_token(&server, &format!("{header}.{payload}.{signature}")).await);
    server.stop().await;
}

#[tokio::test]
async fn attack_token_signed_with_a_foreign_secret_is_refused() {
    let server = start_hs(AUD).await;
    let forged = sign(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"attacker-secret-of-at-least-32-bytes-long"),
    );
    assert_bad_token(&try_token(&server, &forged).await);
    server.stop().await;
}

// Algorithm confusion and foreign keys, against a public-key server.

/// A production server verifying RS256 tokens with `rsa.pub.pem`.
async fn start_rsa() -> Server {
    let key = fixture("rsa.pub.pem");
    start(&[
        ("MCP_JWT_PUBLIC_KEY_FILE", key.to_str().unwrap()),
        ("MCP_JWT_ALGORITHM", "RS256"),
        ("MCP_JWT_AUDIENCE", AUD),
    ])
    .await
    .0
}

#[tokio::test]
async fn attack_rsa_public_key_used_as_an_hmac_secret_is_refused() {
    let server = start_rsa().await;
    let public = pem("rsa.pub.pem");
    let trimmed = String::from_utf8(public.clone()).unwrap().trim().to_owned();
    for secret in [public, trimmed.into_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let forged = sign(
                &Header::new(alg),
                &claims(),
                &EncodingKey::from_secret(&secret),
            );
            assert_bad_token(&try_token(&server, &forged).await);
        }
    }
    let good = sign(
        &Header::new(Algorithm::RS256),
        &claims(),
        &rsa_key("rsa.pem"),
    );
    assert_admitted(&server, &good).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_token_signed_with_a_foreign_rsa_key_is_refused() {
    let server = start_rsa().await;
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
        let forged = sign(&Header::new(alg), &claims(), &rsa_key("rsa2.pem"));
        assert_bad_token(&try_token(&server, &forged).await);
    }
    // The right key, but an algorithm the server is not pinned to.
    let other_alg = sign(
        &Header::new(Algorithm::PS256),
        &claims(),
        &rsa_key("rsa.pem"),
    );
    assert_bad_token(&try_token(&server, &other_alg).await);
    server.stop().await;
}

#[tokio::test]
async fn attack_embedded_jwk_is_never_trusted() {
    let server = start_rsa().await;
    // The attacker signs with their own key and ships its public half in
    // the header: the server must verify with its own key only.
    let attacker = rsa_key("rsa2.pem");
    let mut header = Header::new(Algorithm::RS256);
    header.jwk =
        Some(jsonwebtoken::jwk::Jwk::from_encoding_key(&attacker, Algorithm::RS256).unwrap());
    assert_bad_token(&try_token(&server, &sign(&header, &claims(), &attacker)).await);
    server.stop().await;
}

// Key selection (`kid`) tricks and fetch-me headers, against a JWKS file.

/// A JWKS file of `rsa.pem` (kid `rsa-1`, RS256) and `ec256.pem` (kid
/// `ec-1`, ES256); removed on drop.
struct JwksFile(PathBuf);

impl JwksFile {
    fn new(name: &str) -> Self {
        tower_warden::auth::install_crypto_provider();
        let jwk = |key: &EncodingKey, alg, kid: &str| {
            let mut jwk =
                serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(key, alg).unwrap())
                    .unwrap();
            jwk["kid"] = json!(kid);
            jwk
        };
        let keys = json!({"keys": [
            jwk(&rsa_key("rsa.pem"), Algorithm::RS256, "rsa-1"),
            jwk(&ec_key("ec256.pem"), Algorithm::ES256, "ec-1"),
        ]});
        let path = std::env::temp_dir().join(format!(
            "tower-warden-attack-auth-{}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&path, keys.to_string()).unwrap();
        Self(path)
    }
}

impl Drop for JwksFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn start_jwks(file: &JwksFile) -> Server {
    start(&[
        ("MCP_JWKS_FILE", file.0.to_str().unwrap()),
        ("MCP_JWT_AUDIENCE", AUD),
    ])
    .await
    .0
}

fn rs256_kid(kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    sign(&header, &claims(), key)
}

#[tokio::test]
async fn attack_kid_tricks_are_refused() {
    let file = JwksFile::new("kid");
    let server = start_jwks(&file).await;
    let ours = rsa_key("rsa.pem");
    let long = "k".repeat(6000);
    for kid in [
        "unknown",
        "../../../../../../dev/null",
        "/dev/null",
        "' OR '1'='1",
        "rsa-1' --",
        "rsa-1\u{0}",
        "RSA-1",
        " rsa-1",
        "",
        long.as_str(),
    ] {
        assert_bad_token(&try_token(&server, &rs256_kid(kid, &ours)).await);
    }
    assert_admitted(&server, &rs256_kid("rsa-1", &ours)).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_kid_of_another_key_with_the_wrong_algorithm_is_refused() {
    let file = JwksFile::new("wrong-alg");
    let server = start_jwks(&file).await;
    // An RS256 token naming the EC key, and an ES256 token naming the RSA key.
    assert_bad_token(&try_token(&server, &rs256_kid("ec-1", &rsa_key("rsa.pem"))).await);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-1".to_owned());
    assert_bad_token(&try_token(&server, &sign(&header, &claims(), &ec_key("ec256.pem"))).await);
    // Well-formed for the EC key: admitted.
    header.kid = Some("ec-1".to_owned());
    assert_admitted(&server, &sign(&header, &claims(), &ec_key("ec256.pem"))).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_hs256_token_against_a_public_key_set_is_refused() {
    let file = JwksFile::new("hs");
    let server = start_jwks(&file).await;
    // Signed with the RSA key's public PEM as an HMAC secret, naming it or not.
    let secret = EncodingKey::from_secret(&pem("rsa.pub.pem"));
    for kid in [Some("rsa-1"), Some("ec-1"), None] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        assert_bad_token(&try_token(&server, &sign(&header, &claims(), &secret)).await);
    }
    server.stop().await;
}

#[tokio::test]
async fn attack_jku_and_x5u_headers_are_never_fetched() {
    // The attacker's key set, on a listener that counts its visitors.
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let mut attacker_jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa_key("rsa2.pem"), Algorithm::RS256).unwrap(),
    )
    .unwrap();
    attacker_jwk["kid"] = json!("attacker");
    let attacker_keys = json!({"keys": [attacker_jwk]}).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let trap = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let keys = attacker_keys.clone();
        async move { keys }
    });
    tokio::spawn(async move { axum::serve(listener, trap).await });

    let file = JwksFile::new("jku");
    let server = start_jwks(&file).await;
    for kid in ["attacker", "rsa-1"] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        header.jku = Some(format!("{base}/jwks.json"));
        header.x5u = Some(format!("{base}/cert.pem"));
        let forged = sign(&header, &claims(), &rsa_key("rsa2.pem"));
        assert_bad_token(&try_token(&server, &forged).await);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the server fetched a URL from a token"
    );
    server.stop().await;
}

#[tokio::test]
async fn attack_crit_header_is_refused() {
    let server = start_hs(AUD).await;
    for crit in [
        json!(["urn:example:must-understand"]),
        json!([]),
        json!(["exp"]),
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "crit": crit,
                            "urn:example:must-understand": true});
        assert_bad_token(&try_token(&server, &raw_hs256(&header, &claims())).await);
    }
    // The same signing path without `crit` is admitted.
    let plain = raw_hs256(&json!({"alg": "HS256", "typ": "JWT"}), &claims());
    assert_admitted(&server, &plain).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_oversized_token_is_refused() {
    let server = start_hs(AUD).await;
    // A header stuffed past the 8 KiB cap, validly signed.
    let header = json!({"alg": "HS256", "typ": "JWT", "pad": "p".repeat(9000)});
    assert_bad_token(&try_token(&server, &raw_hs256(&header, &claims())).await);
    let mut fat = claims();
    fat["junk"] = json!("j".repeat(9000));
    assert_bad_token(&try_token(&server, &hs256(&fat)).await);
    server.stop().await;
}

// Time and audience claims.

#[tokio::test]
async fn attack_expired_token_is_refused() {
    let server = start_hs(AUD).await;
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    assert_bad_token_code(&try_token(&server, &hs256(&expired)).await, "token_expired");
    server.stop().await;
}

#[tokio::test]
async fn attack_not_yet_valid_token_is_refused() {
    let server = start_hs(AUD).await;
    let mut early = claims();
    early["nbf"] = json!(now() + 3600);
    assert_bad_token(&try_token(&server, &hs256(&early)).await);
    early["nbf"] = json!("0");
    assert_bad_token(&try_token(&server, &hs256(&early)).await);
    server.stop().await;
}

#[tokio::test]
async fn attack_malformed_or_missing_exp_is_refused() {
    let server = start_hs(AUD).await;
    for exp in [
        json!((now() + 600).to_string()),
        json!(1e30),
        json!(-1),
        json!(1.5),
        json!(null),
        json!([now() + 600]),
    ] {
        let mut bad = claims();
        bad["exp"] = exp;
        assert_bad_token(&try_token(&server, &hs256(&bad)).await);
    }
    // `exp` is required.
    let mut missing = claims();
    missing.as_object_mut().unwrap().remove("exp");
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &missing,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_bad_token(&try_token(&server, &token).await);
    server.stop().await;
}

#[tokio::test]
async fn attack_wrong_audience_is_refused() {
    let server = start_hs(AUD).await;
    for aud in [
        json!("https://other.example/mcp"),
        json!(["https://other.example/mcp"]),
        json!("https://mcp.example/mcp/"),
        json!(""),
        json!([]),
    ] {
        let mut bad = claims();
        bad["aud"] = aud;
        assert_bad_token(&try_token(&server, &hs256(&bad)).await);
    }
    let mut several = claims();
    several["aud"] = json!(["https://other.example", AUD]);
    assert_admitted(&server, &hs256(&several)).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_wrong_or_missing_issuer_is_refused() {
    let (server, _) = start(&[
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_JWT_AUDIENCE", AUD),
        ("MCP_JWT_ISSUER", "https://idp.example"),
    ])
    .await;
    for iss in [
        Some(json!("https://evil.example")),
        Some(json!("https://idp.example/")),
        Some(json!(["https://idp.example"])),
        None,
    ] {
        let mut bad = claims();
        match iss {
            Some(iss) => bad["iss"] = iss,
            None => drop(bad.as_object_mut().unwrap().remove("iss")),
        }
        assert_bad_token(&try_token(&server, &hs256(&bad)).await);
    }
    let mut good = claims();
    good["iss"] = json!("https://idp.example");
    assert_admitted(&server, &hs256(&good)).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_malformed_tokens_are_refused() {
    let server = start_hs(AUD).await;
    let good = hs256(&claims());
    for token in [
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c".to_owned(),
        "...".to_owned(),
        "a.b.c.d".to_owned(),
        "!!!.###.$$$".to_owned(),
        format!("{good}.extra"),
        format!("{good}.."),
        format!(".{good}"),
        good.replace('.', ".="),
        good.replacen('.', "+/.", 1),
    ] {
        assert_bad_token(&try_token(&server, &token).await);
    }
    server.stop().await;
}

// API keys and credentials in the URL.

const API_KEY: &str = "ak_live_0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn attack_api_key_guesses_are_refused() {
    let (server, _) = start(&[("MCP_AUTH_MODE", "api_key"), ("MCP_API_KEYS", API_KEY)]).await;
    let upper = API_KEY.to_ascii_uppercase();
    let short = &API_KEY[..API_KEY.len() - 1];
    let longer = format!("{API_KEY}0");
    let extra = format!("{API_KEY} x");
    let guesses = [
        "ak_live_00000000000000000000000000000000",
        upper.as_str(),
        short,
        longer.as_str(),
        extra.as_str(),
        "*",
    ];
    for guess in guesses {
        let reply = post(&server.url(), &[("x-api-key", guess)], &initialize(VERSION)).await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, "invalid_credentials");
        let bearer = format!("Bearer {guess}");
        let reply = post(
            &server.url(),
            &[("authorization", &bearer)],
            &initialize(VERSION),
        )
        .await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let reply = post(
        &server.url(),
        &[("x-api-key", API_KEY)],
        &initialize(VERSION),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    server.stop().await;
}

#[tokio::test]
async fn attack_credentials_in_the_query_string_are_refused() {
    let (server, _) = start(&[
        ("MCP_AUTH_MODE", "both"),
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_JWT_AUDIENCE", AUD),
        ("MCP_API_KEYS", API_KEY),
    ])
    .await;
    let token = hs256(&claims());
    for query in [
        format!("access_token={token}"),
        format!("token={token}"),
        format!("api_key={API_KEY}"),
    ] {
        let url = format!("{}?{query}", server.url());
        let reply = post(&url, &[], &initialize(VERSION)).await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, "unauthenticated");
        let challenge = reply.headers[http::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(
            challenge.contains(r#"error="invalid_request""#),
            "{challenge}"
        );
    }
    assert_admitted(&server, &token).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_no_credential_gets_a_bare_challenge() {
    let server = start_hs(AUD).await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer ")],
        vec![("authorization", "Basic bWFsbG9yeTpwYXNz")],
    ] {
        let reply = post(&server.url(), &headers, &initialize(VERSION)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(reply.headers.contains_key(http::header::WWW_AUTHENTICATE));
        assert!(reply.json().get("result").is_none());
    }
    server.stop().await;
}

// Finding 16: only `*` and `prefix:*` are wildcards.

#[tokio::test]
async fn attack_scope_with_a_bare_trailing_star_grants_nothing_more() {
    let (server, _) = start(&[
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_JWT_AUDIENCE", AUD),
        ("MCP_TOOL_SCOPES", r#"{"whoami": "tools:call"}"#),
    ])
    .await;
    let call_with = |scope: &'static str| {
        let url = server.url();
        async move {
            let mut claims = claims();
            claims["scope"] = json!(scope);
            let auth = format!("Bearer {}", hs256(&claims));
            let session = open_session(&url, &[("authorization", &auth)], VERSION).await;
            post(
                &url,
                &[
                    ("authorization", &auth),
                    ("mcp-session-id", &session),
                    ("mcp-protocol-version", VERSION),
                ],
                CALL,
            )
            .await
        }
    };
    for scope in ["tools*", "t*", "tools:call*", "tools:c*"] {
        let reply = call_with(scope).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    }
    for scope in ["tools:*", "*", "tools:call"] {
        let reply = call_with(scope).await;
        assert_eq!(reply.status, StatusCode::OK, "{scope}: {}", reply.text());
        assert!(reply.message()["result"].is_object(), "{scope}");
    }
    server.stop().await;
}

// Finding 13: anonymous callers are rate-limited per client address.

#[tokio::test]
async fn attack_one_anonymous_client_cannot_exhaust_everyones_quota() {
    let (server, _) = start(&[
        ("MCP_ENVIRONMENT", "development"),
        ("MCP_AUTH_MODE", "none"),
        ("MCP_RATE_LIMIT_ENABLED", "true"),
        ("MCP_RATE_LIMIT_RPM", "2"),
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let from = |ip: &'static str| {
        let url = server.url();
        async move { post(&url, &[("x-forwarded-for", ip)], &initialize(VERSION)).await }
    };
    assert_eq!(from("198.51.100.7").await.status, StatusCode::OK);
    assert_eq!(from("198.51.100.7").await.status, StatusCode::OK);
    assert_refused(
        &from("198.51.100.7").await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    // Another client still gets its own allowance.
    let other = from("198.51.100.8").await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(other.message()["result"]["protocolVersion"], VERSION);
    server.stop().await;
}
