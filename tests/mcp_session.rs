//! `SessionBindingLayer` in front of the reference MCP server (rmcp's
//! Streamable HTTP service), on 127.0.0.1: a session id is usable only by
//! the principal that opened it.
//!
//! A test `map_request` stands in for the auth layer: it puts a JWT
//! `Principal` for the subject in `x-test-user` in the request extensions.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/app.rs"]
mod app;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request as AxumRequest;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;
use tower_warden::mcp::{SessionBindingLayer, SessionTable};
use tower_warden::principal::{AuthMethod, Principal};

const USER: &str = "x-test-user";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
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

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The reference server, its `/mcp` behind `layer` (if any) and the
    /// test principal.
    async fn reference(layer: Option<SessionBindingLayer>) -> Self {
        // Authentication off: the test principal stands in for it.
        let config = WardenConfig::from_vars([("MCP_AUTH_MODE", "none")]).unwrap();
        let shutdown = CancellationToken::new();
        let mut router = app::router(&config, &shutdown).unwrap();
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

    async fn serve(router: Router, shutdown: CancellationToken) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(app::serve(listener, router, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops promptly")
            .unwrap()
            .unwrap();
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The JSON-RPC message of a JSON or event-stream answer.
    fn message(&self) -> Value {
        if self.headers[http::header::CONTENT_TYPE] != "text/event-stream" {
            return self.json();
        }
        let text = std::str::from_utf8(&self.body).unwrap();
        let data = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim)
            .find(|data| !data.is_empty())
            .expect("an event with data");
        serde_json::from_str(data).unwrap()
    }
}

async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET` of the session's event stream: only the status matters.
async fn get_stream(url: &str, user: &str, session: &str) -> StatusCode {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", VERSION)
        .header(USER, user)
        .body(Full::new(Bytes::new()))
        .unwrap();
    // The response of an admitted stream arrives with its headers; its body
    // stays open and is dropped here.
    client.request(request).await.unwrap().status()
}

/// A JSON-RPC `POST` as `user`, in `session` when given.
async fn post(url: &str, user: &str, session: Option<&str>, body: &str) -> Reply {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", ACCEPT_BOTH),
        (USER, user),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
        headers.push(("mcp-protocol-version", VERSION));
    }
    send(Method::POST, url, &headers, body).await
}

async fn delete(url: &str, user: &str, session: &str) -> Reply {
    let headers = [
        (USER, user),
        ("mcp-session-id", session),
        ("mcp-protocol-version", VERSION),
    ];
    send(Method::DELETE, url, &headers, "").await
}

fn initialize() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "1"}
        }
    })
    .to_string()
}

/// Opens a session as `user`; returns its id after
/// `notifications/initialized`.
async fn open_session(url: &str, user: &str) -> String {
    let reply = post(url, user, None, &initialize()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let reply = post(
        url,
        user,
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    session
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
    let headers = HashMap::from([(
        HeaderName::from_static(USER),
        HeaderValue::from_str(user).unwrap(),
    )]);
    StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers)
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
