//! Attacks on the tool policy, the quotas and the gateway's tenant rules,
//! against the reference server on 127.0.0.1: every way to run a tool (MCP
//! over HTTP, MCP over WebSocket, the REST connection API) meets one policy
//! and one quota, and no role crosses namespaces unless configured.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::time::Duration;

use app::settings::Settings;
use futures::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, open_session, post, send};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "attack-policy-secret-of-at-least-32-bytes";
const UPSTREAM_SECRET: &str = "attack-policy-upstream-secret-32-bytes-ok";
const VERSION: &str = "2025-06-18";

/// A reference server with `secret` and `vars` on 127.0.0.1.
async fn start_with(secret: &str, vars: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("MCP_JWT_SECRET", secret),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    let config = Settings::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

async fn start(vars: &[(&str, &str)]) -> Server {
    start_with(SECRET, vars).await
}

/// `Bearer <token>` for these claims, signed with the server's secret.
fn bearer(claims: Value) -> String {
    format!("Bearer {}", mcp_support::sign_hs256(SECRET, claims))
}

fn api(server: &Server, path: &str) -> String {
    format!("http://{}/api/v1/mcp/connections{path}", server.addr)
}

async fn rest(method: Method, url: &str, auth: &str, body: Option<Value>) -> Reply {
    let mut headers = vec![("authorization", auth)];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(method, url, &headers, body).await
}

/// Registers `upstream` as `name` for the caller of `auth`.
async fn register(gateway: &Server, auth: &str, name: &str, upstream: &Server) -> Reply {
    let credential =
        mcp_support::sign_hs256(UPSTREAM_SECRET, json!({"sub": "gateway", "scope": "*"}));
    rest(
        Method::POST,
        &api(gateway, ""),
        auth,
        Some(json!({
            "server_name": name, "url": upstream.url(), "timeout": 5, "credential": credential,
        })),
    )
    .await
}

/// An MCP-over-HTTP session of the caller of `auth`.
struct Http {
    url: String,
    auth: String,
    session: String,
}

impl Http {
    async fn open(server: &Server, auth: &str) -> Self {
        let url = server.url();
        let session = open_session(&url, &[("authorization", auth)], VERSION).await;
        Self {
            url,
            auth: auth.to_owned(),
            session,
        }
    }

    async fn request(&self, body: Value) -> Reply {
        let headers = [
            ("authorization", self.auth.as_str()),
            ("mcp-session-id", self.session.as_str()),
            ("mcp-protocol-version", VERSION),
        ];
        post(&self.url, &headers, &body.to_string()).await
    }

    async fn call(&self, id: u64, tool: &str, arguments: Value) -> Reply {
        self.request(json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":tool,"arguments":arguments}}))
            .await
    }

    async fn list(&self, id: u64) -> Vec<String> {
        let reply = self
            .request(json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        names(&reply.message())
    }
}

fn names(message: &Value) -> Vec<String> {
    let mut names: Vec<String> = message["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tools/list result: {message}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Asserts a problem JSON answer with `status` and `code`.
fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.json()["code"], code, "{}", reply.text());
}

/// An initialized MCP-over-WebSocket session of the caller of `auth`.
async fn ws_open(server: &Server, auth: &str) -> Socket {
    let mut request = format!("ws://{}/mcp/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws_send(
        &mut socket,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":VERSION,"capabilities":{},
            "clientInfo":{"name":"attack","version":"1"}}}),
    )
    .await;
    assert_eq!(ws_receive(&mut socket).await["id"], 1);
    ws_send(
        &mut socket,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    socket
}

async fn ws_send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

async fn ws_receive(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .unwrap();
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame: {other:?}"),
        }
    }
}

async fn ws_call(socket: &mut Socket, id: u64, tool: &str, arguments: Value) -> Value {
    ws_send(
        socket,
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}}),
    )
    .await;
    ws_receive(socket).await
}

async fn ws_list(socket: &mut Socket, id: u64) -> Vec<String> {
    ws_send(
        socket,
        json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}),
    )
    .await;
    names(&ws_receive(socket).await)
}

fn refused_for_scope(reply: &Value) -> bool {
    reply["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("insufficient_scope"))
}

// Finding 3: `"*"` in `MCP_TOOL_SCOPES` is the requirement of every tool not
// listed — local and gateway tools, over HTTP and WebSocket. It governs
// `tools/call`; `tools/list` shows each caller only what it may call.

#[tokio::test]
async fn a_default_tool_scope_guards_every_tool_over_http_websocket_and_the_gateway() {
    let upstream = start_with(UPSTREAM_SECRET, &[]).await;
    let server = start(&[("MCP_TOOL_SCOPES", r#"{"*":["tools:call"]}"#)]).await;
    let owner = bearer(json!({"sub": "owner", "namespace": "acme", "scope": "*"}));
    let reply = register(&server, &owner, "up", &upstream).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());

    // No scope at all: nothing listed, nothing callable.
    let nobody = bearer(json!({"sub": "nobody", "namespace": "acme"}));
    let http = Http::open(&server, &nobody).await;
    assert!(http.list(2).await.is_empty());
    for (id, tool) in [(3, "echo"), (4, "up.echo")] {
        let reply = http.call(id, tool, json!({"text": "x"})).await;
        assert_problem(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
        // The scope the call needs, and the metadata a client steps up
        // from, as the 401 names it.
        assert_eq!(
            reply.headers[http::header::WWW_AUTHENTICATE],
            format!(
                "Bearer error=\"insufficient_scope\", error_description=\"tool `{tool}` requires a scope \
                 the caller was not granted: tools:call\", scope=\"tools:call\", \
                 resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""
            )
            .as_str()
        );
    }
    let mut socket = ws_open(&server, &nobody).await;
    assert!(ws_list(&mut socket, 2).await.is_empty());
    for (id, tool) in [(3, "echo"), (4, "up.echo"), (5, "whoami")] {
        let reply = ws_call(&mut socket, id, tool, json!({"text": "x"})).await;
        assert!(refused_for_scope(&reply), "{tool}: {reply}");
    }

    // With the scope, every tool, the gateway's included.
    let caller = bearer(json!({"sub": "caller", "namespace": "acme", "scope": "tools:call"}));
    let http = Http::open(&server, &caller).await;
    let listed = http.list(2).await;
    assert!(
        listed.contains(&"echo".to_owned()) && listed.contains(&"up.echo".to_owned()),
        "{listed:?}"
    );
    let reply = http.call(3, "up.echo", json!({"text": "through"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.message()["result"]["content"][0]["text"], "through");
    let mut socket = ws_open(&server, &caller).await;
    let reply = ws_call(&mut socket, 2, "echo", json!({"text": "ws"})).await;
    assert_eq!(reply["result"]["content"][0]["text"], "ws", "{reply}");
    server.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_listed_tool_keeps_its_own_scopes_beside_the_default() {
    let server = start(&[(
        "MCP_TOOL_SCOPES",
        r#"{"echo": [], "add": "math", "*": "tools:call"}"#,
    )])
    .await;
    let caller = bearer(json!({"sub": "m", "namespace": "acme", "scope": "math"}));
    let http = Http::open(&server, &caller).await;
    assert_eq!(http.list(2).await, ["add", "echo"]);
    let reply = http.call(3, "whoami", json!({})).await;
    assert_problem(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    let reply = http.call(4, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    server.stop().await;
}

// Finding 4: the role that crosses namespaces is `MCP_ADMIN_ROLE`, and only
// when it is set.

/// A connection of namespace `victim`, registered by its owner; its id.
async fn victim_connection(server: &Server) -> String {
    let owner = bearer(json!({"sub": "v", "namespace": "victim", "scope": "*"}));
    let reply = rest(
        Method::POST,
        &api(server, ""),
        &owner,
        Some(json!({"server_name": "crm", "url": "http://127.0.0.1:9/mcp"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// Every way into namespace `victim` is refused 403 `namespace_forbidden`
/// for the caller of `auth`, and the connection is still there.
async fn assert_cannot_cross(server: &Server, auth: &str, id: &str) {
    let attempts = [
        (Method::GET, format!("/{id}"), None),
        (Method::GET, format!("/{id}/tools"), None),
        (
            Method::POST,
            format!("/{id}/tools/echo/execute"),
            Some(json!({"arguments": {"text": "x"}})),
        ),
        (Method::DELETE, format!("/{id}"), None),
        (
            Method::POST,
            String::new(),
            Some(
                json!({"server_name": "planted", "url": "http://127.0.0.1:9/mcp",
                "namespace": "victim"}),
            ),
        ),
    ];
    for (method, path, body) in attempts {
        let reply = rest(method.clone(), &api(server, &path), auth, body).await;
        assert_problem(&reply, StatusCode::FORBIDDEN, "namespace_forbidden");
    }
    let owner = bearer(json!({"sub": "v", "namespace": "victim", "scope": "*"}));
    let listed = rest(Method::GET, &api(server, ""), &owner, None).await;
    let connections = listed.json()["connections"].as_array().unwrap().clone();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["id"], id);
}

#[tokio::test]
async fn only_the_configured_admin_role_crosses_namespaces() {
    let server = start(&[("MCP_ADMIN_ROLE", "platform-admin")]).await;
    let id = victim_connection(&server).await;
    let admin = bearer(json!({"sub": "m", "namespace": "evil", "roles": ["admin"], "scope": "*"}));
    assert_cannot_cross(&server, &admin, &id).await;

    let platform =
        bearer(json!({"sub": "p", "namespace": "ops", "roles": ["platform-admin"], "scope": "*"}));
    let reply = rest(
        Method::GET,
        &api(&server, &format!("/{id}")),
        &platform,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["namespace"], "victim");
    let reply = rest(
        Method::POST,
        &api(&server, ""),
        &platform,
        Some(
            json!({"server_name": "ops-made", "url": "http://127.0.0.1:10/mcp",
            "namespace": "victim"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.json()["namespace"], "victim");
    let reply = rest(
        Method::DELETE,
        &api(&server, &format!("/{id}")),
        &platform,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    server.stop().await;
}

#[tokio::test]
async fn without_an_admin_role_setting_no_role_crosses_namespaces() {
    let server = start(&[]).await;
    let id = victim_connection(&server).await;
    for role in ["admin", "platform-admin", "root"] {
        let auth = bearer(json!({"sub": "m", "namespace": "evil", "roles": [role], "scope": "*"}));
        assert_cannot_cross(&server, &auth, &id).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_gateways_schema_firewall_and_quarantine_hold_over_websocket() {
    let upstream = start_with(UPSTREAM_SECRET, &[]).await;
    // The screen flags the upstream's `echo` by a phrase of its
    // description; `add` stays offered.
    let server = start(&[("MCP_GATEWAY_TOOL_SCREEN_PHRASES", "text unchanged")]).await;
    let owner = bearer(json!({"sub": "owner", "namespace": "acme", "scope": "*"}));
    let reply = register(&server, &owner, "up", &upstream).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());

    let mut socket = ws_open(&server, &owner).await;
    let listed = ws_list(&mut socket, 2).await;
    assert!(listed.contains(&"up.add".to_owned()), "{listed:?}");
    assert!(!listed.contains(&"up.echo".to_owned()), "{listed:?}");
    let reply = ws_call(&mut socket, 3, "up.echo", json!({"text": "x"})).await;
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("quarantined"), "{text}");

    // Arguments the tool's schema does not allow: the gateway's tool error
    // (the upstream would have answered a JSON-RPC invalid-params error).
    let reply = ws_call(&mut socket, 4, "up.add", json!({"a": "one", "b": 2})).await;
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Invalid arguments") && text.contains("/a"),
        "{text}"
    );
    let reply = ws_call(&mut socket, 5, "up.add", json!({"a": 1, "b": 2})).await;
    assert_eq!(reply["result"]["content"][0]["text"], "3", "{reply}");
    server.stop().await;
    upstream.stop().await;
}
