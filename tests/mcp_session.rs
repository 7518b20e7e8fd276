//! `SessionBindingLayer` in front of the reference MCP server (rmcp's
//! Streamable HTTP service), on 127.0.0.1: a session id is usable only by
//! the principal that opened it.
//!
//! A test `map_request` stands in for the auth layer: it puts a JWT
//! `Principal` for the subject in `x-test-user` in the request extensions.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::sync::Arc;

use app::settings::Settings;
use axum::Router;
use axum::extract::Request as AxumRequest;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use mcp_support::{Reply, Server, client, client_config_with_header, send};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_warden::mcp::{SessionBindingLayer, SessionTable};
use tower_warden::principal::{AuthMethod, Principal};

const USER: &str = "x-test-user";
const VERSION: &str = "2025-06-18";

/// Stands in for the auth layer.
async fn principal_from_header(mut request: AxumRequest) -> AxumRequest {
    let user = request
        .headers()
        .get(USER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(user) = user {
        request
            .extensions_mut()
            .insert(Principal::builder(user, AuthMethod::Jwt).build());
    }
    request
}

impl Server {
    /// The reference server, its `/mcp` behind `layer` (if any) and the
    /// test principal.
    async fn reference(layer: Option<SessionBindingLayer>) -> Self {
        // Authentication off: the test principal stands in for it.
        let config = Settings::from_vars([
            ("MCP_AUTH_MODE", "none"),
            ("MCP_DATABASE_URL", "sqlite::memory:"),
        ])
        .unwrap();
        let shutdown = CancellationToken::new();
        let mut router = app::router(&config, &shutdown).await.unwrap();
        if let Some(layer) = layer {
            router = router.layer(layer);
        }
        let router = router.layer(axum::middleware::map_request(principal_from_header));
        Self::serve(router, shutdown).await
    }

    /// rmcp's Streamable HTTP service alone, without any tower-warden layer.
    async fn bare_rmcp() -> Self {
        let shutdown = CancellationToken::new();
        let mcp = StreamableHttpService::new(
            || Ok(app::tools::Tools::new()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token()),
        );
        Self::serve(Router::new().route_service("/mcp", mcp), shutdown).await
    }
}

/// `GET` of the session's event stream: only the status matters.
async fn get_stream(url: &str, user: &str, session: &str) -> StatusCode {
    let request = Request::get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", VERSION)
        .header(USER, user)
        .body(Full::new(Bytes::new()))
        .unwrap();
    // The response of an admitted stream arrives with its headers; its body
    // stays open and is dropped here.
    client().request(request).await.unwrap().status()
}

/// A JSON-RPC `POST` as `user`, in `session` when given.
async fn post(url: &str, user: &str, session: Option<&str>, body: &str) -> Reply {
    let mut headers = vec![(USER, user)];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
        headers.push(("mcp-protocol-version", VERSION));
    }
    mcp_support::post(url, &headers, body).await
}

async fn delete(url: &str, user: &str, session: &str) -> Reply {
    let headers = [
        (USER, user),
        ("mcp-session-id", session),
        ("mcp-protocol-version", VERSION),
    ];
    send(Method::DELETE, url, &headers, "").await
}

/// Opens a session as `user`; returns its id after
/// `notifications/initialized`.
async fn open_session(url: &str, user: &str) -> String {
    mcp_support::open_session(url, &[(USER, user)], VERSION).await
}

/// Calls `echo` in `session` as `user`.
async fn echo(url: &str, user: &str, session: &str, text: &str) -> Reply {
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text": text}}});
    post(url, user, Some(session), &call.to_string()).await
}

fn echoed(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK);
    reply.message()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A well-formed session id that no server issued.
const UNKNOWN_SESSION: &str = "6c1b0f39-7a0e-4f8e-9f55-2d1a4b7c9e10";

/// What the server answers a session id it does not know.
async fn unknown_session_status(url: &str) -> (StatusCode, Bytes) {
    let reply = post(
        url,
        "alice",
        Some(UNKNOWN_SESSION),
        r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
    )
    .await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn rmcp_answers_an_unknown_session_with_404() {
    let bare = Server::bare_rmcp().await;
    let (status, body) = unknown_session_status(&bare.url()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "Not Found: Session not found");
    bare.stop().await;

    // The reference server's `JsonRpcErrorsLayer` gives it a JSON-RPC body.
    let reference = Server::reference(None).await;
    let (status, body) = unknown_session_status(&reference.url()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], -32001);
    reference.stop().await;
}

#[tokio::test]
async fn another_principal_cannot_use_a_session() {
    let layer = SessionBindingLayer::new();
    let table: SessionTable = layer.sessions();
    let server = Server::reference(Some(layer)).await;
    let url = server.url();
    let bare = Server::bare_rmcp().await;
    let (unknown_status, _) = unknown_session_status(&bare.url()).await;
    bare.stop().await;

    let session = open_session(&url, "alice").await;
    assert_eq!(table.len(), 1);
    assert_eq!(echoed(&echo(&url, "alice", &session, "mine").await), "mine");

    // bob presents alice's session id: answered as an unknown session.
    let stolen = echo(&url, "bob", &session, "hers").await;
    assert_eq!(stolen.status, unknown_status);
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    assert_eq!(
        stolen.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(stolen.json()["code"], "session_not_found");
    assert_eq!(get_stream(&url, "bob", &session).await, unknown_status);
    assert_eq!(delete(&url, "bob", &session).await.status, unknown_status);

    // An id the server never issued is refused the same way.
    let (status, body) = unknown_session_status(&url).await;
    assert_eq!(status, unknown_status);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["code"],
        "session_not_found"
    );

    // alice's session is untouched by bob's attempts, DELETE included.
    assert_eq!(
        echoed(&echo(&url, "alice", &session, "still").await),
        "still"
    );
    assert_eq!(get_stream(&url, "alice", &session).await, StatusCode::OK);

    // alice ends it: the binding goes, and the id is unknown from now on.
    assert_eq!(
        delete(&url, "alice", &session).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(table.len(), 0);
    assert_eq!(
        echo(&url, "alice", &session, "gone").await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

fn client_config(url: String, user: &str) -> StreamableHttpClientTransportConfig {
    client_config_with_header(url, USER, user)
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).unwrap();
    value["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_official_client_recovers_from_an_evicted_binding() {
    // Room for one session: a second one evicts the first binding.
    let layer = SessionBindingLayer::new().max_sessions(1);
    let table = layer.sessions();
    let server = Server::reference(Some(layer)).await;
    let url = server.url();

    let transport = StreamableHttpClientTransport::from_config(client_config(url.clone(), "alice"));
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let call = |text: &str| {
        CallToolRequestParams::new("echo")
            .with_arguments(serde_json::from_value(json!({ "text": text })).unwrap())
    };
    let result = client.call_tool(call("one")).await.unwrap();
    assert_eq!(text_of(&result), "one");

    // bob opens a session; alice's binding is evicted.
    let bobs = open_session(&url, "bob").await;
    assert_eq!(table.len(), 1);

    // alice's client gets 404 for its session, re-initializes and retries.
    let result = client.call_tool(call("two")).await.unwrap();
    assert_eq!(text_of(&result), "two");
    client.cancel().await.unwrap();

    // That evicted bob's binding in turn: his session is gone, not shared.
    assert_eq!(
        echo(&url, "bob", &bobs, "x").await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}
