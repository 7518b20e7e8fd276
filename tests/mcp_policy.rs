//! `McpPolicyLayer` in front of the reference server's rmcp tools, served on
//! 127.0.0.1, against the official Rust MCP SDK client and raw HTTP.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/tools.rs"]
mod tools;

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
use tower_warden::mcp::{JsonRpcErrorsLayer, McpPolicyLayer, ToolPolicy};
use tower_warden::principal::{AuthMethod, Principal};

/// What an operator would put in `MCP_TOOL_SCOPES`: `sleep` and `whoami`
/// fall under the default.
const TOOL_SCOPES: &str = r#"{"echo": "tools:echo", "add": ["tools:add"], "*": "tools:admin"}"#;

/// The header the test's stand-in for an auth layer reads the caller's
/// scopes from (space-separated).
const SCOPES_HEADER: &str = "x-test-scopes";

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
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
        if self.headers[http::header::CONTENT_TYPE] == "text/event-stream" {
            let text = std::str::from_utf8(&self.body).unwrap();
            let data = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim)
                .find(|data| !data.is_empty())
                .expect("an event with data");
            serde_json::from_str(data).unwrap()
        } else {
            self.json()
        }
    }
}

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(
            builder
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn initialize() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "1"}
        }
    })
    .to_string()
}

/// Opens a session as a caller with `scopes`; returns its id.
async fn open_session(url: &str, scopes: &str) -> String {
    let reply = post(url, &[(SCOPES_HEADER, scopes)], &initialize()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let reply = post(
        url,
        &[
            (SCOPES_HEADER, scopes),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    session
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
    let headers = HashMap::from([(
        HeaderName::from_static(SCOPES_HEADER),
        HeaderValue::from_str(scopes).unwrap(),
    )]);
    StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers)
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

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers[http::header::WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", scope="tools:add""#
    );
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.json()["code"], "insufficient_scope");

    let reply = post(
        &url,
        &headers,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"}}}"#,
    )
    .await;
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

    let reply = post(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers[http::header::WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", scope="tools:admin""#
    );
    server.stop().await;
}
