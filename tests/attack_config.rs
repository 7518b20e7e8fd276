//! Attacks on the settings, against the reference server on 127.0.0.1: a
//! typo that would leave the server in development, an allow list emptied
//! into "everyone", staging treated as development, and credentials in URL
//! settings leaking through `/status`, `Debug` or error messages.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use bytes::Bytes;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, send};
use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;

const SECRET: &str = "attack-config-test-secret-of-32-bytes-or-more";

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ]
}

fn load(vars: &[(&'static str, &'static str)]) -> Result<WardenConfig, tower_warden::ConfigError> {
    let mut all = base();
    all.extend_from_slice(vars);
    WardenConfig::from_vars(all)
}

async fn start(config: &WardenConfig) -> Server {
    let shutdown = CancellationToken::new();
    let router = app::router(config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    let url = format!("http://{}{path}", server.addr);
    send(Method::GET, &url, headers, Bytes::new()).await
}

#[test]
fn a_misspelt_environment_stops_start_up() {
    // `MCP_ENV=production` used to be ignored, leaving development rules
    // (and so `MCP_AUTH_MODE=none`) in force.
    let error = load(&[("MCP_ENV", "production"), ("MCP_AUTH_MODE", "none")]).unwrap_err();
    assert_eq!(error.setting(), "MCP_ENV");
    assert!(
        error.to_string().contains("did you mean MCP_ENVIRONMENT?"),
        "{error}"
    );
}

#[test]
fn an_empty_metrics_allow_list_stops_start_up() {
    for empty in ["", ",", "[]", " [ ] "] {
        let error = load(&[("MCP_METRICS_ALLOWED_IPS", empty)]).unwrap_err();
        assert_eq!(error.setting(), "MCP_METRICS_ALLOWED_IPS", "{empty:?}");
    }
}

#[tokio::test]
async fn metrics_are_never_open_to_everyone() {
    // Unset: loopback only, so this test's client (127.0.0.1) may read.
    let config = load(&[]).unwrap();
    let server = start(&config).await;
    assert_eq!(get(&server, "/metrics", &[]).await.status, StatusCode::OK);
    server.stop().await;

    // A list that leaves the client out refuses it.
    let config = load(&[("MCP_METRICS_ALLOWED_IPS", "192.0.2.0/24")]).unwrap();
    let server = start(&config).await;
    let reply = get(&server, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    server.stop().await;

    // An empty list built by hand (the loader refuses one) admits no one.
    let mut config = load(&[]).unwrap();
    config.metrics_allowed_ips.clear();
    let server = start(&config).await;
    let reply = get(&server, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    assert!(!reply.text().contains("tower_warden_"), "metrics leaked");
    server.stop().await;
}

#[test]
fn every_allow_list_set_to_nothing_stops_start_up() {
    for name in [
        "MCP_ALLOWED_IPS",
        "MCP_BLOCKED_IPS",
        "MCP_TRUSTED_PROXIES",
        "MCP_METRICS_ALLOWED_IPS",
        "MCP_ALLOWED_HOSTS",
        "MCP_ALLOWED_ORIGINS",
        "MCP_CORS_ORIGINS",
        "MCP_JWT_ISSUER",
        "MCP_JWT_AUDIENCE",
        "MCP_OAUTH_AUTHORIZATION_SERVERS",
        "MCP_API_KEYS",
    ] {
        let error = load(&[(name, "[]")]).unwrap_err();
        assert_eq!(error.setting(), name);
    }
}
