//! `McpPolicyLayer` in front of the reference server's rmcp tools, served on
//! 127.0.0.1, against the official Rust MCP SDK client and raw HTTP.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;
use app::tools;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request as AxumRequest;
use http::StatusCode;
use mcp_support::{Reply, Server, client_config_with_header, post};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_warden::mcp::{JsonRpcErrorsLayer, McpPolicyLayer, ToolPolicy};
use tower_warden::principal::{AuthMethod, Principal};

/// What an operator would put in `MCP_TOOL_SCOPES`: `sleep` and `whoami`
/// fall under the default.
const TOOL_SCOPES: &str = r#"{"echo": "tools:echo", "add": ["tools:add"], "*": "tools:admin"}"#;

/// The header the test's stand-in for an auth layer reads the caller's
/// scopes from (space-separated).
const SCOPES_HEADER: &str = "x-test-scopes";

/// Stands in for `AuthLayer`: a principal with the scopes of
/// `x-test-scopes`, or none without the header.
async fn principal_from_header(mut request: AxumRequest) -> AxumRequest {
    let scopes = request
        .headers()
        .get(SCOPES_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
    if let Some(scopes) = scopes {
        let principal = Principal::builder("tester", AuthMethod::ApiKey)
            .scopes(scopes)
            .key_id("test-key")
            .build();
        request.extensions_mut().insert(principal);
    }
    request
}

impl Server {
    async fn start(json_response: bool) -> Self {
        let shutdown = CancellationToken::new();
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(shutdown.child_token())
            .disable_allowed_hosts()
            .disable_allowed_origins();
        if json_response {
            config = config
                .with_legacy_session_mode(false)
                .with_json_response(true);
        }
        let mcp = StreamableHttpService::new(
            || Ok(tools::Tools::new()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let policy = ToolPolicy::try_from_json(TOOL_SCOPES).unwrap();
        // `route_layer`: the last one added is the outermost.
        let router = Router::new()
            .route_service("/mcp", mcp)
            .route_layer(JsonRpcErrorsLayer::new())
            .route_layer(McpPolicyLayer::new(policy))
            .route_layer(axum::middleware::map_request(principal_from_header));
        Self::serve(router, shutdown).await
    }
}

/// Opens a session as a caller with `scopes`; returns its id.
async fn open_session(url: &str, scopes: &str) -> String {
    mcp_support::open_session(url, &[(SCOPES_HEADER, scopes)], "2025-06-18").await
}

/// A `tools/call` request `id` for tool `name`.
fn tool_call(id: u32, name: &str, arguments: Value) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}
    })
    .to_string()
}

/// Asserts a 403 for calling `tool` that challenges for `scope`.
fn assert_insufficient_scope(reply: &Reply, tool: &str, scope: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers[http::header::WWW_AUTHENTICATE],
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"tool `{tool}` requires a scope \
             the caller was not granted: {scope}\", scope=\"{scope}\""
        )
        .as_str()
    );
}

fn tool_names(message: &Value) -> Vec<String> {
    let mut names: Vec<String> = message["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tools/list result: {message}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn client_config(url: String, scopes: &str) -> StreamableHttpClientTransportConfig {
    client_config_with_header(url, SCOPES_HEADER, scopes)
}

#[tokio::test]
async fn official_client_sees_and_calls_only_what_its_scopes_allow() {
    let server = Server::start(false).await;
    let transport =
        StreamableHttpClientTransport::from_config(client_config(server.url(), "tools:echo"));
    let client = ClientConfig::default().serve(transport).await.unwrap();

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["echo"]);

    let arguments = serde_json::from_value(json!({"text": "hi"})).unwrap();
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "hi"
    );

    let arguments = serde_json::from_value(json!({"a": 1, "b": 2})).unwrap();
    let error = client
        .call_tool(CallToolRequestParams::new("add").with_arguments(arguments))
        .await
        .unwrap_err();
    let text = format!("{error:?}");
    assert!(text.contains("insufficient_scope"), "{text}");
    assert!(text.contains("tools:add"), "{text}");
    client.cancel().await.unwrap();

    // A broader grant sees more.
    let transport =
        StreamableHttpClientTransport::from_config(client_config(server.url(), "tools:*"));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let mut names: Vec<_> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "sleep", "whoami"]);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn raw_calls_get_403_insufficient_scope_with_a_challenge() {
    let server = Server::start(false).await;
    let url = server.url();
    let session = open_session(&url, "tools:echo").await;
    let headers = [
        (SCOPES_HEADER, "tools:echo"),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert_eq!(tool_names(&reply.message()), ["echo"]);

    let call = tool_call(3, "add", json!({"a": 1, "b": 2}));
    let reply = post(&url, &headers, &call).await;
    assert_insufficient_scope(&reply, "add", "tools:add");
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.json()["code"], "insufficient_scope");

    let call = tool_call(4, "echo", json!({"text": "ok"}));
    let reply = post(&url, &headers, &call).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.message()["result"]["content"][0]["text"], "ok");

    // Malformed bodies still reach JsonRpcErrorsLayer's parse error.
    let reply = post(&url, &headers, "{\"jsonrpc\":").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], -32700);
    server.stop().await;
}

#[tokio::test]
async fn json_answers_are_filtered_and_callers_without_a_principal_see_nothing() {
    let server = Server::start(true).await;
    let url = server.url();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    // Stateless server: no session needed.
    let reply = post(&url, &[(SCOPES_HEADER, "tools:echo tools:add")], list).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(tool_names(&reply.json()), ["add", "echo"]);

    let reply = post(&url, &[], list).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(tool_names(&reply.json()).is_empty());

    let reply = post(&url, &[], &tool_call(3, "whoami", json!({}))).await;
    assert_insufficient_scope(&reply, "whoami", "tools:admin");
    server.stop().await;
}
