//! The reference server's operations surface, over real HTTP on 127.0.0.1:
//! `/metrics` and who may read it, `/status` for admins only, CORS preflights, security
//! headers, the request timeout's 504, and settings from a TOML file.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::io::Write;
use std::time::Duration;

use app::settings::Settings;
use bytes::Bytes;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, post, send};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "operations-test-secret-of-32-bytes-or-more";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ops-test","version":"1"}}}"#;

fn token(subject: &str, roles: &[&str]) -> String {
    let claims = json!({"sub": subject, "namespace": "default", "roles": roles, "scope": "*"});
    mcp_support::sign_hs256(SECRET, claims)
}

fn bearer(subject: &str, roles: &[&str]) -> String {
    format!("Bearer {}", token(subject, roles))
}

fn config(vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    Settings::from_vars(all).unwrap()
}

async fn start(vars: &[(&str, &str)]) -> Server {
    let config = config(vars);
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, &url(server, path), headers, Bytes::new()).await
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tower-warden-ops-{}-{name}", std::process::id()))
}

#[tokio::test]
async fn a_bad_log_filter_or_audit_file_is_a_start_up_error() {
    let error = app::ops::log_subscriber(
        &config(&[("MCP_LOG_LEVEL", "info,tower_warden=loud")]),
        std::io::sink,
        None,
    )
    .err()
    .unwrap();
    assert_eq!(error.setting(), "MCP_LOG_LEVEL");
    let error = app::ops::log_subscriber(
        &config(&[("MCP_AUDIT_LOG_FILE", "/nonexistent-dir/audit.jsonl")]),
        std::io::sink,
        None,
    )
    .err()
    .unwrap();
    assert_eq!(error.setting(), "MCP_AUDIT_LOG_FILE");
}

#[test]
fn trace_settings_are_read_from_the_same_source_and_bad_ones_stop_start_up() {
    use tower_warden::otel::Incoming;

    let plain = config(&[]);
    assert_eq!(plain.traces.incoming, Incoming::Continue);
    assert!(
        plain.traces.export.is_none(),
        "off unless an endpoint is set"
    );
    let linked = config(&[
        ("MCP_TRACE_INCOMING", "link"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
    ]);
    assert_eq!(linked.traces.incoming, Incoming::Link);
    assert_eq!(
        linked.traces.export.as_ref().map(|e| e.endpoint()),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(linked.redacted_json()["trace_incoming"], "link");

    for (name, value) in [
        ("MCP_TRACE_INCOMING", "follow"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ] {
        let mut all = vec![
            ("MCP_JWT_SECRET", SECRET),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ];
        all.push((name, value));
        let error = Settings::from_vars(all).unwrap_err();
        assert_eq!(error.setting(), name, "{name}={value}");
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_refusals_and_are_for_allowed_clients_only() {
    let server = start(&[]).await;
    let series =
        r#"tower_warden_requests_rejected_total{layer="auth",reason="invalid_credentials"}"#;
    let before = metric(&get(&server, "/metrics", &[]).await.text(), series);
    for _ in 0..3 {
        let reply = post(
            &server.url(),
            &[("authorization", "Bearer forged.token.value")],
            INITIALIZE,
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = get(&server, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.text();
    // The recorder is process-wide: other tests count too, so compare.
    assert!(metric(&text, series) >= before + 3.0, "{text}");
    assert!(
        metric(
            &text,
            r#"tower_warden_auth_failures_total{reason="invalid_credentials"}"#
        ) >= 3.0
    );
    assert!(text.contains("tower_warden_request_duration_seconds_bucket"));
    server.stop().await;

    // Only `MCP_METRICS_ALLOWED_IPS` may read it: 127.0.0.1 is not listed.
    let server = start(&[("MCP_METRICS_ALLOWED_IPS", "10.0.0.0/8")]).await;
    let reply = get(&server, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    server.stop().await;

    // Behind a trusted proxy, the real client counts: a loopback proxy
    // forwarding an outside client is refused, and a spoofed header from
    // an untrusted peer changes nothing.
    let server = start(&[
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let reply = get(&server, "/metrics", &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = get(&server, "/metrics", &[("x-forwarded-for", "127.0.0.1")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;

    // With its own port, the main listener does not serve it.
    let server = start(&[("MCP_METRICS_PORT", "9")]).await;
    assert_eq!(
        get(&server, "/metrics", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn status_is_for_admins_and_redacts_secrets() {
    let server = start(&[("MCP_API_KEYS", "status-test-api-key-0123456789")]).await;
    let reply = get(&server, "/status", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let user = bearer("alice", &[]);
    let reply = get(&server, "/status", &[("authorization", user.as_str())]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "insufficient_scope");

    let admin = bearer("root", &["admin"]);
    let reply = get(&server, "/status", &[("authorization", admin.as_str())]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let status = reply.json();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptime_seconds"].is_u64());
    // The refusals above are counted.
    assert_eq!(
        status["requests"]["rejected_by_reason"]["unauthenticated"],
        1
    );
    assert_eq!(
        status["requests"]["rejected_by_reason"]["insufficient_scope"],
        1
    );
    assert_eq!(status["rate_limit"]["enabled"], false);
    assert_eq!(status["upstreams"]["total"], 0);
    assert!(status["connections"].is_array());
    assert!(status["jwt"]["keys_loaded_at"].is_u64());
    assert_eq!(status["config"]["jwt_secret"], "<redacted>");
    assert_eq!(status["config"]["request_timeout"], 30);
    let text = reply.text();
    assert!(!text.contains(SECRET), "the JWT secret leaked");
    assert!(!text.contains("status-test-api-key"), "an API key leaked");
    server.stop().await;

    // The admin role is a setting.
    let server = start(&[("MCP_ADMIN_ROLE", "ops")]).await;
    let reply = get(&server, "/status", &[("authorization", admin.as_str())]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let ops = bearer("oncall", &["ops"]);
    let reply = get(&server, "/status", &[("authorization", ops.as_str())]).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn cors_preflights_are_allowed_and_refused_by_origin() {
    let server = start(&[("MCP_CORS_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &'static str| {
        let url = server.url();
        async move {
            send(
                Method::OPTIONS,
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization, content-type, mcp-session-id",
                    ),
                ],
                Bytes::new(),
            )
            .await
        }
    };
    let allowed = preflight("https://app.example.com").await;
    assert!(allowed.status.is_success(), "{}", allowed.status);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = allowed.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = allowed.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("mcp-session-id") && headers.contains("authorization"));

    let refused = preflight("https://evil.example").await;
    assert!(
        !refused.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        refused.headers
    );

    // The real request from the allowed origin passes the Origin check too,
    // and the browser may read the session id.
    let auth = bearer("alice", &[]);
    let reply = post(
        &server.url(),
        &[
            ("authorization", auth.as_str()),
            ("origin", "https://app.example.com"),
        ],
        INITIALIZE,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = reply.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("mcp-session-id"), "{exposed}");
    // Another origin is still refused by the Origin check.
    let reply = post(
        &server.url(),
        &[
            ("authorization", auth.as_str()),
            ("origin", "https://evil.example"),
        ],
        INITIALIZE,
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    server.stop().await;

    // No CORS settings: no CORS headers at all.
    let server = start(&[]).await;
    let reply = preflight_without_cors(&server).await;
    assert!(!reply.headers.contains_key("access-control-allow-origin"));
    server.stop().await;
}

async fn preflight_without_cors(server: &Server) -> Reply {
    send(
        Method::OPTIONS,
        &server.url(),
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
        Bytes::new(),
    )
    .await
}

#[test]
fn cors_any_origin_is_refused_in_production() {
    let error = Settings::from_vars([
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_CORS_ORIGINS", "*"),
    ])
    .unwrap_err();
    assert_eq!(error.setting(), "MCP_CORS_ORIGINS");
}

#[tokio::test]
async fn security_headers_on_every_response_and_hsts_behind_tls() {
    let server = start(&[]).await;
    for path in ["/health", "/mcp", "/status", "/no-such-path"] {
        let reply = get(&server, path, &[]).await;
        assert_eq!(reply.headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(reply.headers["x-frame-options"], "DENY", "{path}");
        assert!(reply.headers.contains_key("x-request-id"), "{path}");
        assert!(
            !reply.headers.contains_key("strict-transport-security"),
            "{path}"
        );
    }
    server.stop().await;
    let server = start(&[("MCP_RESOURCE_URL", "https://mcp.example.com/mcp")]).await;
    let reply = get(&server, "/health", &[]).await;
    assert!(
        reply.headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_request_gets_504_with_a_problem_body() {
    // The gateway calls itself: its `sleep` tool outlasts the 1 s timeout.
    let server = start(&[("MCP_REQUEST_TIMEOUT", "1")]).await;
    let auth = bearer("alice", &[]);
    let upstream_auth = token("gateway", &[]);
    let api = url(&server, "/api/v1/mcp/connections");
    let reply = send(
        Method::POST,
        &api,
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        json!({"server_name": "self", "url": server.url(), "timeout": 30, "credential": upstream_auth})
            .to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let reply = send(
        Method::POST,
        &format!("{api}/{id}/tools/sleep/execute"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        json!({"arguments": {"ms": 5000}}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(reply.json()["code"], "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A quick call is unaffected.
    let reply = send(
        Method::POST,
        &format!("{api}/{id}/tools/echo/execute"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        json!({"arguments": {"text": "hi"}}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    server.stop().await;
}

#[tokio::test]
async fn settings_from_a_toml_file_with_env_overrides() {
    let file = temp_path("settings.toml");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(
        f,
        "jwt_secret = \"{SECRET}\"\nadmin_role = \"from-file\"\nrequest_timeout = 7\n\n[rate_limit]\nenabled = false\n\n[database]\nurl = \"sqlite::memory:\""
    )
    .unwrap();
    drop(f);
    let config = Settings::from_vars([
        ("MCP_CONFIG_FILE", file.to_str().unwrap()),
        ("MCP_REQUEST_TIMEOUT", "9"),
    ])
    .unwrap();
    assert_eq!(config.http.admin_role, "from-file");
    assert_eq!(
        config.http.request_timeout,
        Duration::from_secs(9),
        "env wins"
    );
    assert!(!config.warden.rate_limit_enabled);
    let shutdown = CancellationToken::new();
    let server = Server::serve(app::router(&config, &shutdown).await.unwrap(), shutdown).await;
    let admin = bearer("root", &["from-file"]);
    let reply = get(&server, "/status", &[("authorization", admin.as_str())]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["config"]["request_timeout"], 9);
    server.stop().await;
    let _ = std::fs::remove_file(&file);
}
