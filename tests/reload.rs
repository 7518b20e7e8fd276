//! Hot reload of the reference server without a restart: API keys, IP
//! lists and JWKS keys swap in on SIGHUP (or `ReloadHandle::reload`), and
//! a broken new file leaves the old settings in force. Its own test binary,
//! since it signals its own process.

#![cfg(unix)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

#[path = "support/files.rs"]
mod files;

use std::sync::Arc;
use std::time::Duration;

use app::settings::Settings;
use files::Files;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_support::{Reply, Server, initialize, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_warden::auth::ApiKeys;
use tower_warden::reload::ReloadHandle;

const SALT: &str = "reload-test-salt-0123456789";
const KEY_A: &str = "first-api-key-0123456789abcdef";
const KEY_B: &str = "second-api-key-0123456789abcdef";

fn key_line(id: &str, key: &str) -> String {
    json!({"id": id, "digest": ApiKeys::digest_of(SALT, key), "scopes": ["*"]}).to_string()
}

/// The server of `vars`, and its reload handle, which reads `vars` again
/// (so a settings file or key file is read afresh).
async fn start(vars: Vec<(&'static str, String)>) -> (Server, ReloadHandle) {
    let mut all: Vec<(&str, String)> = vec![
        ("MCP_DATABASE_URL", "sqlite::memory:".to_owned()),
        ("MCP_RATE_LIMIT_ENABLED", "false".to_owned()),
    ];
    all.extend(vars);
    let config = Settings::from_vars(all.clone()).unwrap();
    let load = move || Settings::from_vars(all.clone()).map(|s| s.warden);
    let auth = app::auth(&config).unwrap();
    let gateway = app::gateway(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (router, reload) = app::build(&config, &shutdown, &auth, gateway, Arc::new(load)).unwrap();
    (Server::serve(router, shutdown).await, reload)
}

async fn with_key(server: &Server, key: &str) -> Reply {
    post(
        &server.url(),
        &[("x-api-key", key)],
        &initialize("2025-06-18"),
    )
    .await
}

#[tokio::test]
async fn api_keys_swap_and_a_broken_file_keeps_the_old_ones() {
    let files = Files::new("keys");
    let path = files.write("keys.jsonl", &key_line("a", KEY_A));
    let (server, reload) = start(vec![
        ("MCP_AUTH_MODE", "api_key".to_owned()),
        ("MCP_API_KEY_SALT", SALT.to_owned()),
        ("MCP_API_KEYS_FILE", path.clone()),
    ])
    .await;
    assert_eq!(with_key(&server, KEY_A).await.status, StatusCode::OK);
    assert_eq!(
        with_key(&server, KEY_B).await.status,
        StatusCode::UNAUTHORIZED
    );

    files.write("keys.jsonl", &key_line("b", KEY_B));
    let done = reload.reload().unwrap();
    assert!(done.iter().any(|d| d == "api keys: 1 keys"), "{done:?}");
    assert_eq!(
        with_key(&server, KEY_A).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(with_key(&server, KEY_B).await.status, StatusCode::OK);

    // A broken file: an error naming the file's variable, old keys kept.
    files.write(
        "keys.jsonl",
        &format!("{}\n{{not json", key_line("c", KEY_A)),
    );
    let error = reload.reload().unwrap_err();
    assert_eq!(error.setting(), "MCP_API_KEYS_FILE");
    assert_eq!(with_key(&server, KEY_B).await.status, StatusCode::OK);
    assert_eq!(
        with_key(&server, KEY_A).await.status,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

#[tokio::test]
async fn ip_lists_from_the_settings_file_swap_on_reload() {
    let files = Files::new("ips");
    let settings = files.write("mcp.toml", "allowed_ips = [\"127.0.0.1\"]\n");
    let (server, reload) = start(vec![
        ("MCP_AUTH_MODE", "api_key".to_owned()),
        ("MCP_API_KEYS", KEY_A.to_owned()),
        ("MCP_CONFIG_FILE", settings),
    ])
    .await;
    assert_eq!(with_key(&server, KEY_A).await.status, StatusCode::OK);

    files.write("mcp.toml", "blocked_ips = [\"127.0.0.0/8\"]\n");
    reload.reload().unwrap();
    let reply = with_key(&server, KEY_A).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");

    // A broken file changes nothing: still refused.
    files.write("mcp.toml", "blocked_ips = [\"127.0.0.0/33\"]\n");
    let error = reload.reload().unwrap_err();
    assert_eq!(error.setting(), "MCP_BLOCKED_IPS");
    assert!(error.message().contains("mcp.toml"), "{error}");
    assert_eq!(with_key(&server, KEY_A).await.status, StatusCode::FORBIDDEN);

    files.write("mcp.toml", "allowed_ips = [\"127.0.0.1\"]\n");
    reload.reload().unwrap();
    assert_eq!(with_key(&server, KEY_A).await.status, StatusCode::OK);
    server.stop().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn jwks(kid: &str, private_pem: &str) -> String {
    tower_warden::auth::install_crypto_provider();
    let key = EncodingKey::from_rsa_pem(&fixture(private_pem)).unwrap();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap(),
    )
    .unwrap();
    jwk["kid"] = json!(kid);
    json!({"keys": [jwk]}).to_string()
}

fn bearer(kid: &str, private_pem: &str) -> String {
    tower_warden::auth::install_crypto_provider();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "alice", "scope": "*", "aud": "test", "exp": exp}),
        &EncodingKey::from_rsa_pem(&fixture(private_pem)).unwrap(),
    )
    .unwrap();
    format!("Bearer {token}")
}

async fn with_token(server: &Server, bearer: &str) -> StatusCode {
    post(
        &server.url(),
        &[("authorization", bearer)],
        &initialize("2025-06-18"),
    )
    .await
    .status
}

#[tokio::test]
async fn sighup_rotates_the_jwks_file_keys() {
    let files = Files::new("jwks");
    let path = files.write("jwks.json", &jwks("old", "rsa.pem"));
    let (server, reload) = start(vec![
        ("MCP_JWKS_FILE", path),
        ("MCP_JWT_AUDIENCE", "test".to_owned()),
        ("MCP_AUTH_MODE", "jwt".to_owned()),
    ])
    .await;
    let old = bearer("old", "rsa.pem");
    let new = bearer("new", "rsa2.pem");
    assert_eq!(with_token(&server, &old).await, StatusCode::OK);
    assert_eq!(with_token(&server, &new).await, StatusCode::UNAUTHORIZED);

    tokio::spawn(app::reload_on_sighup(reload).unwrap());
    files.write("jwks.json", &jwks("new", "rsa2.pem"));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The reload runs on the signal task: wait until the new key works.
    let mut swapped = false;
    for _ in 0..100 {
        if with_token(&server, &new).await == StatusCode::OK {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "the new key was never accepted");
    assert_eq!(with_token(&server, &old).await, StatusCode::UNAUTHORIZED);

    // A broken JWKS on the next SIGHUP: the new key stays.
    files.write("jwks.json", "{\"keys\": \"nope\"}");
    std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(with_token(&server, &new).await, StatusCode::OK);
    server.stop().await;
}
