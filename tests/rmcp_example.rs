//! `examples/rmcp_server.rs` served on 127.0.0.1: the official MCP client
//! passes with a token and reaches its tools, a missing or forged token is
//! refused before rmcp sees the request, a per-tool scope rule holds, and a
//! session id does not work for another principal.
#![cfg(all(feature = "stack", feature = "axum"))]

#[allow(dead_code)]
#[path = "../examples/rmcp_server.rs"]
mod rmcp_server;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use http::{Method, StatusCode};
use mcp_support::{Server, open_session, post, send, sign_hs256};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;

const SECRET: &str = "rmcp-example-secret-of-32-bytes-or-more";
const VERSION: &str = "2025-06-18";

async fn start(vars: &[(&str, &str)]) -> Server {
    let mut all = vec![("MCP_JWT_SECRET", SECRET)];
    all.extend_from_slice(vars);
    let config = WardenConfig::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let app = rmcp_server::app(&config, &shutdown).unwrap();
    Server::serve(app, shutdown).await
}

fn token(subject: &str, scope: &str) -> String {
    sign_hs256(SECRET, json!({"sub": subject, "scope": scope}))
}

/// The headers of a request in `session` with the credential `bearer`.
fn in_session<'a>(bearer: &'a str, session: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("authorization", bearer),
        ("mcp-session-id", session),
        ("mcp-protocol-version", VERSION),
    ]
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).unwrap();
    value["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_official_client_passes_with_a_token_and_calls_the_tools() {
    let server = start(&[]).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url())
            .auth_header(token("ada", "tools:call")),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let names: std::collections::BTreeSet<_> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["greet", "whoami"].into());

    let arguments = serde_json::from_value(json!({"name": "Grace"})).unwrap();
    let greeting = client
        .call_tool(CallToolRequestParams::new("greet").with_arguments(arguments))
        .await
        .unwrap();
    assert_eq!(text_of(&greeting), "Hello, Grace!");
    // The tool saw the principal the perimeter authenticated.
    let who = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    assert_eq!(text_of(&who), "ada");
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn no_token_or_a_forged_one_is_refused_before_rmcp() {
    let server = start(&[]).await;
    let initialize = mcp_support::initialize(VERSION);
    let reply = post(&server.url(), &[], &initialize).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key("www-authenticate"));

    let forged = sign_hs256(
        "some-other-secret-of-32-bytes-or-more",
        json!({"sub": "mallory", "scope": "tools:call"}),
    );
    let bearer = format!("Bearer {forged}");
    let reply = post(&server.url(), &[("authorization", &bearer)], &initialize).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Refused before rmcp: no session was opened.
    assert!(!reply.headers.contains_key("mcp-session-id"));

    // `/health` stays outside the perimeter.
    let health = send(
        Method::GET,
        &format!("http://{}/health", server.addr),
        &[],
        "",
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_tool_scope_rule_holds_and_sessions_stay_with_their_principal() {
    let server = start(&[("MCP_TOOL_SCOPES", r#"{"greet": ["greet:use"]}"#)]).await;
    let url = server.url();
    let ada = format!("Bearer {}", token("ada", "tools:call"));
    let session = open_session(&url, &[("authorization", &ada)], VERSION).await;
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "greet", "arguments": {"name": "Grace"}}
    })
    .to_string();
    // Without `greet:use` the perimeter refuses the call.
    let reply = post(&url, &in_session(&ada, &session), &call).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "insufficient_scope");
    // With it, the same session calls the tool.
    let granted = format!("Bearer {}", token("ada", "tools:call greet:use"));
    let reply = post(&url, &in_session(&granted, &session), &call).await;
    assert_eq!(reply.status, StatusCode::OK);
    let answer: Value = reply.message();
    assert_eq!(answer["result"]["content"][0]["text"], "Hello, Grace!");

    // Another principal presenting ada's session id: the session is
    // unknown to it, whatever its scopes, and the tool does not run.
    let eve = format!("Bearer {}", token("eve", "tools:call greet:use"));
    let reply = post(&url, &in_session(&eve, &session), &call).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["code"], "session_not_found");
    server.stop().await;
}
