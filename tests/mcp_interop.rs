//! The reference MCP server, started in-process on 127.0.0.1, against the
//! official Rust MCP SDK client and against raw HTTP requests.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::time::Duration;

use app::settings::Settings;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_support::{ACCEPT_BOTH, Reply, Server, client, initialize, send as send_raw};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The HMAC secret every test server is started with.
const TEST_SECRET: &str = "interop-test-secret-of-at-least-32-bytes";

/// A token for [`TEST_SECRET`]: subject `interop`, every scope.
static TOKEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| mint(&json!({"sub": "interop", "scope": "*"})));

/// Signs `claims` (plus `exp` an hour ahead) with [`TEST_SECRET`].
fn mint(claims: &Value) -> String {
    mcp_support::sign_hs256(TEST_SECRET, claims.clone())
}

impl Server {
    /// The reference server, started with [`TEST_SECRET`] and `vars`.
    async fn start(vars: &[(&str, &str)]) -> Self {
        let mut all = vec![
            ("MCP_JWT_SECRET", TEST_SECRET),
            ("MCP_DATABASE_URL", "sqlite::memory:"),
        ];
        all.extend_from_slice(vars);
        let config = Settings::from_vars(all).unwrap();
        let shutdown = CancellationToken::new();
        let router = app::router(&config, &shutdown).await.unwrap();
        Self::serve(router, shutdown).await
    }
}

/// The `authorization` header value for [`TOKEN`].
static BEARER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("Bearer {}", *TOKEN));

/// `headers`, plus [`TOKEN`] as the credential unless they carry one of
/// their own.
fn with_token<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let has_credential = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("x-api-key")
    });
    let mut all = headers.to_vec();
    if !has_credential {
        all.push(("authorization", BEARER.as_str()));
    }
    all
}

/// Sends a request with [`with_token`]'s headers.
async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    send_raw(method, url, &with_token(headers), body).await
}

/// A JSON-RPC `POST` with [`with_token`]'s headers.
async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    mcp_support::post(url, &with_token(headers), body).await
}

/// Opens a session with [`TOKEN`]; returns its id after
/// `notifications/initialized`.
async fn open_session(url: &str, version: &str) -> String {
    mcp_support::open_session(url, &with_token(&[]), version).await
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    serde_json::from_value(value).unwrap()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).unwrap();
    value["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn official_client_initializes_lists_tools_and_adds() {
    let server = Server::start(&[]).await;
    for version in [
        ProtocolVersion::V_2025_03_26,
        ProtocolVersion::V_2025_06_18,
        ProtocolVersion::V_2025_11_25,
    ] {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(server.url()).auth_header(TOKEN.as_str()),
        );
        let client = ClientConfig::default()
            .with_protocol_version(version.clone())
            .serve(transport)
            .await
            .unwrap();
        let info = client.peer_info().expect("the server introduced itself");
        assert_eq!(info.protocol_version, version);
        assert_eq!(
            info.server_info.as_ref().map(|s| s.name.as_str()),
            Some("tower-warden-mcp-server")
        );

        let tools = client.list_all_tools().await.unwrap();
        let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(names, ["add", "echo", "sleep", "whoami"]);

        let result = client
            .call_tool(
                CallToolRequestParams::new("add")
                    .with_arguments(arguments(json!({"a": 2, "b": 40.5}))),
            )
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true));
        assert_eq!(text_of(&result), "42.5");

        let result = client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .unwrap();
        let who: Value = serde_json::from_str(&text_of(&result)).unwrap();
        assert_eq!(who["client_ip"], "127.0.0.1");

        let error = client
            .call_tool(
                CallToolRequestParams::new("sleep")
                    .with_arguments(arguments(json!({"ms": 10_001}))),
            )
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("-32602") || error.to_string().contains("at most"),
            "{error}"
        );
        client.cancel().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn official_client_with_its_default_protocol() {
    let server = Server::start(&[]).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url()).auth_header(TOKEN.as_str()),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(arguments(json!({"text": "hi"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&result), "hi");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn sessions_ping_notifications_and_delete() {
    let server = Server::start(&[]).await;
    let url = server.url();
    let session = open_session(&url, "2025-06-18").await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.message(), json!({"jsonrpc":"2.0","id":2,"result":{}}));

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":3,"method":"no/such"}"#,
    )
    .await;
    assert_eq!(reply.message()["error"]["code"], -32601);

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
    )
    .await;
    assert_eq!(reply.message()["error"]["code"], -32602);

    let reply = send(Method::DELETE, &url, &headers, Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let error = reply.json();
    assert_eq!(error["id"], 5);
    assert_eq!(error["error"]["code"], -32001);
    server.stop().await;
}

#[tokio::test]
async fn session_ids_are_distinct_and_required() {
    let server = Server::start(&[]).await;
    let url = server.url();
    let a = open_session(&url, "2025-03-26").await;
    let b = open_session(&url, "2025-11-25").await;
    assert_ne!(a, b);
    assert!(a.len() >= 32, "{a}");

    let reply = post(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/json"
    );
    let error = reply.json();
    assert_eq!(error["id"], 7);
    assert_eq!(error["error"]["code"], -32600);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Session ID")
    );

    let reply = send(
        Method::GET,
        &url,
        &[("accept", "text/event-stream")],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], -32600);
    server.stop().await;
}

#[tokio::test]
async fn malformed_input_gets_json_rpc_errors_never_5xx() {
    let server = Server::start(&[]).await;
    let url = server.url();

    for body in ["{\"jsonrpc\":", "not json", "", "{\"a\":1,}"] {
        let reply = post(&url, &[], body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let error = reply.json();
        assert_eq!(error["error"]["code"], -32700, "{body}");
        assert_eq!(error["id"], Value::Null);
    }

    let reply = post(&url, &[], r#"{"id":3,"not":"json-rpc"}"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], -32600);
    assert_eq!(reply.json()["id"], 3);

    let reply = send(
        Method::POST,
        &url,
        &[("content-type", "text/plain"), ("accept", ACCEPT_BOTH)],
        "{}",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.json()["error"]["code"], -32000);

    let reply = send(
        Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("accept", "text/html"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(reply.json()["error"]["code"], -32000);

    let reply = send(Method::PUT, &url, &[], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.json()["error"]["code"], -32000);
    server.stop().await;
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-http", "version": "1"}
    })
}

#[tokio::test]
async fn stateless_2026_revision() {
    let server = Server::start(&[]).await;
    let url = server.url();
    let version = ("mcp-protocol-version", "2026-07-28");

    let discover =
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta": meta()}});
    let reply = post(
        &url,
        &[version, ("mcp-method", "server/discover")],
        &discover.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let versions = reply.message()["result"]["supportedVersions"].clone();
    for v in ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"] {
        assert!(versions.as_array().unwrap().contains(&json!(v)), "{v}");
    }

    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"add","arguments":{"a":1,"b":2},"_meta": meta()}});
    let reply = post(
        &url,
        &[version, ("mcp-method", "tools/call"), ("mcp-name", "add")],
        &call.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.message()["result"]["content"][0]["text"], "3");

    for headers in [
        [version, ("mcp-method", "tools/list"), ("mcp-name", "add")],
        [version, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
    ] {
        let reply = post(&url, &headers, &call.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let error = reply.json();
        assert_eq!(error["error"]["code"], -32020);
        assert_eq!(error["id"], 2);
    }

    let reply = post(
        &url,
        &[version, ("mcp-method", "notifications/cancelled")],
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.body.is_empty());

    let unknown = json!({"jsonrpc":"2.0","id":3,"method":"no/such","params":{"_meta": meta()}});
    let reply = post(
        &url,
        &[version, ("mcp-method", "no/such")],
        &unknown.to_string(),
    )
    .await;
    assert_eq!(reply.json()["error"]["code"], -32601);

    for method in [Method::GET, Method::DELETE] {
        let reply = send(
            method,
            &url,
            &[version, ("accept", "text/event-stream")],
            Bytes::new(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.json()["error"]["code"], -32000);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_tools_list_that_depends_on_the_caller_is_cached_privately() {
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta": meta()}});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    // The same list for everyone: a shared cache may keep it.
    let server = Server::start(&[]).await;
    let reply = post(&server.url(), &headers, &list.to_string()).await;
    assert_eq!(reply.message()["result"]["cacheScope"], "public");
    server.stop().await;
    // Filtered by the caller's scopes: never shared across tokens.
    for rules in [
        ("MCP_TOOL_SCOPES", r#"{"add": ["tools:add"]}"#),
        (
            "MCP_TOOL_ANNOTATIONS_OFF",
            r#"{"destructiveHint": ["acme"]}"#,
        ),
    ] {
        let server = Server::start(&[rules]).await;
        let reply = post(&server.url(), &headers, &list.to_string()).await;
        assert_eq!(
            reply.message()["result"]["cacheScope"],
            "private",
            "{rules:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn origin_and_host_are_checked() {
    let server = Server::start(&[("MCP_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let url = server.url();
    let own = format!("http://{}", server.addr);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    let reply = post(&url, &[("origin", "https://evil.example")], ping).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.json()["code"], "origin_forbidden");

    for origin in [own.as_str(), "https://app.example.com"] {
        let reply = post(&url, &[("origin", origin)], &initialize("2025-06-18")).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin}");
    }

    let reply = post(&url, &[("host", "evil.example")], ping).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "host_forbidden");
    let reply = post(
        &url,
        &[("host", "localhost:1234")],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;

    let server = Server::start(&[("MCP_ALLOWED_HOSTS", "mcp.example.com")]).await;
    let reply = post(&server.url(), &[], ping).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = post(
        &server.url(),
        &[("host", "mcp.example.com")],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn body_limit_and_client_certificate_guard_the_endpoint() {
    let server = Server::start(&[
        ("MCP_HTTP_MAX_BODY_BYTES", "200"),
        ("MCP_CLIENT_CERT_REQUIRED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let url = server.url();
    let verified = ("x-ssl-client-verify", "SUCCESS");

    let reply = post(&url, &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "client_cert_required");

    let big = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"x".repeat(300)}});
    let reply = post(&url, &[verified], &big.to_string()).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["code"], "payload_too_large");

    let reply = post(&url, &[verified], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn health_reports_status_version_and_uptime() {
    let server = Server::start(&[]).await;
    let reply = send(
        Method::GET,
        &format!("http://{}/health", server.addr),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let health = reply.json();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_seconds"].is_u64());
    assert_eq!(
        health["rate_limit"],
        json!({"enabled": true, "storage": "memory", "degraded": false})
    );
    assert_eq!(
        health["upstreams"],
        json!({"total": 0, "closed": 0, "half_open": 0, "open": 0})
    );
    assert_eq!(health.as_object().unwrap().len(), 5);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let server = Server::start(&[]).await;
    let url = server.url();
    let session = open_session(&url, "2025-06-18").await;

    let request = Request::get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("authorization", BEARER.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body();

    // The stream stays open until the server shuts down; then it ends and
    // the server task completes.
    server.stop().await;
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = stream.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the event stream ended");
}

#[tokio::test]
async fn tools_see_the_client_behind_a_trusted_proxy() {
    let server = Server::start(&[
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let url = server.url();
    let forwarded = ("x-forwarded-for", "6.6.6.6, 203.0.113.9");
    let session = mcp_support::open_session(&url, &with_token(&[forwarded]), "2025-06-18").await;
    let headers = [
        forwarded,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#,
    )
    .await;
    let text = reply.message()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let who: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(who["client_ip"], "203.0.113.9");
    assert_eq!(who["peer_ip"], "127.0.0.1");
    assert_eq!(who["client_cert"], Value::Null);

    // A trusted peer without the header is refused rather than guessed.
    let reply = post(&url, &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["code"], "forwarded_invalid");
    server.stop().await;
}

#[tokio::test]
async fn ip_lists_guard_the_endpoint() {
    // The operator's setting: block everything, allow one network.
    let server = Server::start(&[
        ("MCP_BLOCKED_IPS", "0.0.0.0/0"),
        ("MCP_ALLOWED_IPS", r#"["10.0.0.0/24", "127.0.0.1"]"#),
    ])
    .await;
    let reply = post(&server.url(), &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;

    let server = Server::start(&[("MCP_ALLOWED_IPS", "10.0.0.0/24")]).await;
    let reply = post(&server.url(), &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    server.stop().await;

    // Behind a trusted proxy the forwarded client is filtered, not the proxy.
    let server = Server::start(&[
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
        ("MCP_BLOCKED_IPS", "203.0.113.0/24"),
    ])
    .await;
    let url = server.url();
    let reply = post(
        &url,
        &[("x-forwarded-for", "203.0.113.9")],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    let reply = post(
        &url,
        &[("x-forwarded-for", "203.0.113.9, 198.51.100.4")],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a spoofed leftmost entry is ignored"
    );
    server.stop().await;
}

#[tokio::test]
async fn mcp_requires_a_credential_and_challenges_without_one() {
    let server = Server::start(&[
        (
            "MCP_TOOL_SCOPES",
            r#"{"add":["tools:add"],"echo":["tools:add","offline_access"]}"#,
        ),
        (
            "MCP_TOOL_ANNOTATION_SCOPES",
            r#"{"destructiveHint":["tools:write"]}"#,
        ),
    ])
    .await;
    let url = server.url();
    let headers = [
        ("content-type", "application/json"),
        ("accept", ACCEPT_BOTH),
    ];
    let reply = send_raw(Method::POST, &url, &headers, initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let metadata_url = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp";
    assert_eq!(
        reply.headers["www-authenticate"],
        format!("Bearer resource_metadata=\"{metadata_url}\"").as_str()
    );
    assert_eq!(reply.json()["code"], "unauthenticated");

    // A forged token and an expired one.
    let forged = format!("Bearer {}x", *TOKEN);
    let mut with = headers.to_vec();
    with.push(("authorization", forged.as_str()));
    let reply = send_raw(Method::POST, &url, &with, initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let expired = {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "late", "exp": 1_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        )
        .unwrap();
        format!("Bearer {token}")
    };
    let with = [headers[0], headers[1], ("authorization", expired.as_str())];
    let reply = send_raw(Method::POST, &url, &with, initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["code"], "token_expired");

    // The query string is not a place for tokens.
    let query_url = format!("{url}?access_token={}", *TOKEN);
    let reply = send_raw(Method::POST, &query_url, &headers, initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // The metadata the challenge points at is served, in both forms.
    let base = format!("http://{}", server.addr);
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let reply = send_raw(Method::GET, &format!("{base}{path}"), &[], Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let doc = reply.json();
        assert_eq!(doc["resource"], "http://127.0.0.1:8000/mcp");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        // Every scope a tool rule needs; never `offline_access`.
        assert_eq!(doc["scopes_supported"], json!(["tools:add", "tools:write"]));
        assert!(doc["authorization_servers"].is_array());
    }
    server.stop().await;
}

#[tokio::test]
async fn the_rmcp_client_is_refused_without_a_token() {
    let server = Server::start(&[]).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url()),
    );
    let refused = ClientConfig::default().serve(transport).await;
    assert!(
        refused.is_err(),
        "initialize without a credential must fail"
    );
    server.stop().await;
}

#[tokio::test]
async fn api_keys_work_in_both_mode() {
    let server = Server::start(&[
        ("MCP_AUTH_MODE", "both"),
        ("MCP_API_KEYS", "dev-key-0123456789,second-key-0123456789"),
    ])
    .await;
    let url = server.url();
    let reply = post(
        &url,
        &[("x-api-key", "second-key-0123456789")],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = post(
        &url,
        &[("x-api-key", "wrong-key-0123456789")],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["code"], "invalid_credentials");
    let reply = post(&url, &[], &initialize("2025-06-18")).await;
    assert_eq!(reply.status, StatusCode::OK, "JWTs still work");
    server.stop().await;
}

#[tokio::test]
async fn a_zero_config_development_start_prints_a_working_token() {
    let config = Settings::from_vars([("MCP_DATABASE_URL", "sqlite::memory:")]).unwrap();
    let auth = app::auth(&config).unwrap();
    let token = auth.dev_token.clone().expect("a development token");
    assert!(auth.warnings.iter().any(|w| w.contains("ephemeral")));
    let shutdown = CancellationToken::new();
    let gateway = app::gateway(&config).await.unwrap();
    let router = app::router_with(&config, &shutdown, &auth, gateway).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(app::serve(listener, router, shutdown.clone()));
    let url = format!("http://{addr}/mcp");
    let bearer = format!("Bearer {token}");
    let reply = post(
        &url,
        &[("authorization", bearer.as_str())],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = post(&url, &[], &initialize("2025-06-18")).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "the test token is not for this secret"
    );
    let health = send_raw(
        Method::GET,
        &format!("http://{addr}/health"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK, "/health stays open");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn another_principals_session_id_is_answered_as_unknown() {
    let server = Server::start(&[]).await;
    let url = server.url();
    let session = open_session(&url, "2025-06-18").await;
    let bob = format!("Bearer {}", mint(&json!({"sub": "bob", "scope": "*"})));
    let ping = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;
    let stolen = post(
        &url,
        &[
            ("mcp-session-id", session.as_str()),
            ("authorization", bob.as_str()),
        ],
        ping,
    )
    .await;
    let unknown = post(&url, &[("mcp-session-id", "no-such-session")], ping).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    assert_eq!(stolen.status, unknown.status);
    assert_eq!(
        stolen.json(),
        unknown.json(),
        "indistinguishable from an unknown session"
    );
    assert_eq!(stolen.json()["error"]["code"], -32001);
    // The owner (same subject, a freshly minted token) still gets through.
    let reply = post(&url, &[("mcp-session-id", session.as_str())], ping).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn tool_scopes_refuse_calls_and_filter_lists() {
    let server = Server::start(&[(
        "MCP_TOOL_SCOPES",
        r#"{"add":["tools:add"],"sleep":"tools:sleep"}"#,
    )])
    .await;
    let url = server.url();
    let echo_only = format!(
        "Bearer {}",
        mint(&json!({"sub": "carol", "scope": "tools:echo"}))
    );
    let auth = [("authorization", echo_only.as_str())];
    let session = mcp_support::open_session(&url, &auth, "2025-06-18").await;
    let with = [auth[0], ("mcp-session-id", session.as_str())];

    let list = post(
        &url,
        &with,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    let names: Vec<String> = list.message()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"echo".to_owned()) && names.contains(&"whoami".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"add".to_owned()) && !names.contains(&"sleep".to_owned()),
        "{names:?}"
    );

    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;
    let refused = post(&url, &with, call).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["code"], "insufficient_scope");
    assert_eq!(
        refused.headers["www-authenticate"],
        "Bearer error=\"insufficient_scope\", error_description=\"tool `add` requires a scope the caller \
         was not granted: tools:add\", scope=\"tools:add\", \
         resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""
    );
    // The default test token has every scope.
    let allowed = post(&url, &[], &initialize("2025-06-18")).await;
    assert_eq!(allowed.status, StatusCode::OK);
    server.stop().await;
}
