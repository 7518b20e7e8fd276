//! Attacks on authentication, black-box against the reference server served
//! on 127.0.0.1 with production settings: forged, tampered, misdirected and
//! expired tokens, key-selection tricks, guessed API keys and credentials
//! in the URL. Every case asserts the refusal a client sees (status,
//! problem `code`, `WWW-Authenticate`) and that the MCP endpoint never
//! answered a JSON-RPC message.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/app.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_support::{Reply, Server, initialize, open_session, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;

const SECRET: &str = "attack-auth-test-secret-of-at-least-32-bytes";
const VERSION: &str = "2025-06-18";

/// The reference server with `vars` over a production base (in-memory
/// connection store, no rate limits unless `vars` say otherwise).
async fn start(vars: &[(&str, &str)]) -> (Server, WardenConfig) {
    let mut all = vec![
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    let config = WardenConfig::from_vars(all).unwrap();
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
    assert_refused(reply, StatusCode::UNAUTHORIZED, "invalid_credentials");
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
    let resource = tower_warden::stack::resource_url(&config);
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
    ours["aud"] = json!(tower_warden::stack::resource_url(&config));
    assert_admitted(&server, &hs256(&ours)).await;
    server.stop().await;
}

#[test]
fn jwks_url_needs_an_issuer_outside_development() {
    for env in ["production", "staging"] {
        let error = WardenConfig::from_vars([
            ("MCP_ENVIRONMENT", env),
            ("MCP_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
        ])
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_JWT_ISSUER", "{env}: {error}");
        WardenConfig::from_vars([
            ("MCP_ENVIRONMENT", env),
            ("MCP_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            ("MCP_JWT_ISSUER", "https://idp.example"),
        ])
        .unwrap();
    }
}

#[allow(dead_code)]
fn _unused(_: Arc<AtomicUsize>, _: Ordering, _: &str, _: &Header, _: fn() -> EncodingKey) {
    let _ = (CALL, open_session, rsa_key, ec_key, raw_hs256, start_hs);
}
