//! `/mcp/ws`: MCP over WebSocket behind the same perimeter, with a real
//! WebSocket client on 127.0.0.1: header credentials work, query
//! credentials only when allowed, a foreign `Origin` is refused, tool
//! scopes and quotas hold per message, and the session is closed with 1008
//! when its token expires or its address stops being allowed.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::sync::Arc;
use std::time::Duration;

use app::settings::Settings;
use futures::{SinkExt, StreamExt};
use mcp_support::Server;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tower_warden::reload::ReloadHandle;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// Settings a reload adds to the start-up ones.
type Later = Arc<std::sync::Mutex<Vec<(&'static str, &'static str)>>>;

const SECRET: &str = "websocket-test-secret-of-32-bytes-or-more";

fn token(claims: Value) -> String {
    mcp_support::sign_hs256(SECRET, claims)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn start(vars: &[(&'static str, &'static str)]) -> (Server, ReloadHandle) {
    start_loading(vars, None).await
}

/// A server; reloads read `reloaded` (when given) instead of `vars`.
async fn start_loading(
    vars: &[(&'static str, &'static str)],
    reloaded: Option<Later>,
) -> (Server, ReloadHandle) {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_JWT_LEEWAY_SECONDS", "0"),
    ];
    all.extend_from_slice(vars);
    let config = Settings::from_vars(all.clone()).unwrap();
    let load: app::Loader = match reloaded {
        Some(vars) => Arc::new(move || {
            let mut with = all.clone();
            with.extend(vars.lock().unwrap().iter().copied());
            Settings::from_vars(with).map(|s| s.warden)
        }),
        None => Arc::new(move || Settings::from_vars(all.clone()).map(|s| s.warden)),
    };
    let auth = app::auth(&config).unwrap();
    let gateway = app::gateway(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (router, reload) = app::build(&config, &shutdown, &auth, gateway, load).unwrap();
    (Server::serve(router, shutdown).await, reload)
}

fn ws_url(server: &Server, query: &str) -> String {
    format!("ws://{}/mcp/ws{query}", server.addr)
}

async fn connect(
    server: &Server,
    query: &str,
    headers: &[(&'static str, &str)],
) -> Result<Socket, WsError> {
    let mut request = ws_url(server, query).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON-RPC message (pings and pongs skipped).
async fn receive(socket: &mut Socket) -> Value {
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

/// The close frame's code, reading past anything else.
async fn close_code(socket: &mut Socket, within: Duration) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("no close within {within:?}"),
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
        }
    }
}

async fn initialize(socket: &mut Socket) {
    send(
        socket,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"ws-test","version":"1"}}}),
    )
    .await;
    let reply = receive(socket).await;
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["result"]["protocolVersion"], "2025-06-18", "{reply}");
    send(
        socket,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
}

/// A session of a caller with these token claims, initialized.
async fn open(server: &Server, claims: Value) -> Socket {
    let bearer = format!("Bearer {}", token(claims));
    let mut socket = connect(server, "", &[("authorization", bearer.as_str())])
        .await
        .unwrap();
    initialize(&mut socket).await;
    socket
}

async fn call(socket: &mut Socket, id: u64, tool: &str, arguments: Value) -> Value {
    send(
        socket,
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}}),
    )
    .await;
    receive(socket).await
}

#[tokio::test]
async fn header_credentials_work_and_tools_run() {
    let (server, _) = start(&[]).await;
    let mut socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    let reply = call(&mut socket, 2, "echo", json!({"text": "over ws"})).await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["result"]["content"][0]["text"], "over ws", "{reply}");
    // The handler sees the caller, as on `/mcp`.
    let reply = call(&mut socket, 3, "whoami", json!({})).await;
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("127.0.0.1"), "{text}");
    // Garbage gets a JSON-RPC parse error, and the session goes on.
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(receive(&mut socket).await["error"]["code"], -32700);
    let reply = call(&mut socket, 4, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(reply["id"], 4, "{reply}");
    socket.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_tool_call_is_cut_at_its_deadline_and_the_session_goes_on() {
    let (server, _) = start(&[("MCP_TOOL_TIMEOUTS", r#"{"sleep": 200}"#)]).await;
    let mut socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    let reply = call(&mut socket, 2, "sleep", json!({"ms": 10000})).await;
    assert_eq!(reply["id"], 2, "{reply}");
    assert_eq!(reply["error"]["code"], -32001, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline of 200 ms"),
        "{reply}"
    );
    let reply = call(&mut socket, 3, "echo", json!({"text": "on time"})).await;
    assert_eq!(reply["result"]["content"][0]["text"], "on time", "{reply}");
    socket.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tool_rules_on_annotations_hold_per_message() {
    // Every built-in tool says it is read-only: off in `kids`.
    let (server, _) = start(&[("MCP_TOOL_ANNOTATIONS_OFF", r#"{"readOnlyHint": ["kids"]}"#)]).await;
    let mut kid = open(
        &server,
        json!({"sub": "kim", "namespace": "kids", "scope": "*"}),
    )
    .await;
    send(
        &mut kid,
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let listed = receive(&mut kid).await;
    assert_eq!(listed["result"]["tools"], json!([]), "{listed}");
    let reply = call(&mut kid, 3, "echo", json!({"text": "hi"})).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("readOnlyHint"),
        "{reply}"
    );
    let mut adult = open(
        &server,
        json!({"sub": "ana", "namespace": "acme", "scope": "*"}),
    )
    .await;
    let reply = call(&mut adult, 2, "echo", json!({"text": "hi"})).await;
    assert_eq!(reply["result"]["content"][0]["text"], "hi", "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn missing_and_query_credentials_are_refused_unless_allowed() {
    let (server, _) = start(&[]).await;
    let jwt = token(json!({"sub": "alice", "scope": "*"}));
    let refused = |result: Result<Socket, WsError>| match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    };
    assert_eq!(refused(connect(&server, "", &[]).await), 401);
    let query = format!("?access_token={jwt}");
    assert_eq!(refused(connect(&server, &query, &[]).await), 401);
    // Cross-site WebSocket hijacking: a page elsewhere cannot open one, even
    // with the user's credentials.
    let bearer = format!("Bearer {jwt}");
    let result = connect(
        &server,
        "",
        &[
            ("authorization", bearer.as_str()),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(refused(result), 403);
    server.stop().await;

    let (server, _) = start(&[("MCP_WS_ALLOW_QUERY_AUTH", "true")]).await;
    let mut socket = connect(&server, &query, &[]).await.unwrap();
    initialize(&mut socket).await;
    server.stop().await;
}

#[tokio::test]
async fn tool_scopes_and_quotas_hold_per_message() {
    let (server, _) = start(&[
        ("MCP_TOOL_SCOPES", r#"{"add":["math"]}"#),
        ("MCP_RATE_LIMIT_RPM", "7"),
    ])
    .await;
    // The upgrade, `initialize` and `notifications/initialized`: 3 of 7,
    // per address and per principal alike.
    let mut socket = open(&server, json!({"sub": "bob", "scope": "echo"})).await;
    // Not allowed `add`: refused, and not listed.
    let reply = call(&mut socket, 2, "add", json!({"a": 1, "b": 1})).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient_scope"),
        "{reply}"
    );
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}),
    )
    .await;
    let list = receive(&mut socket).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"add"),
        "{names:?}"
    );
    // Two more requests fit the quota of 7; then refusals.
    assert!(call(&mut socket, 4, "echo", json!({"text": "x"})).await["result"].is_object());
    assert!(call(&mut socket, 5, "echo", json!({"text": "x"})).await["result"].is_object());
    let reply = call(&mut socket, 6, "echo", json!({"text": "x"})).await;
    assert_eq!(reply["id"], 6);
    assert_eq!(reply["error"]["code"], -32029, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("rate_limited")
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_and_answers_count_against_the_quota() {
    let (server, _) = start(&[("MCP_RATE_LIMIT_RPM", "5")]).await;
    // The upgrade, `initialize` and `notifications/initialized`: 3 of 5.
    let mut socket = open(&server, json!({"sub": "dave", "scope": "*"})).await;
    // Not JSON: answered, and counted (4 of 5).
    socket.send(Message::Text("not json".into())).await.unwrap();
    let reply = receive(&mut socket).await;
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    // An answer to a request the server never sent: counted (5 of 5).
    send(&mut socket, json!({"jsonrpc":"2.0","id":77,"result":{}})).await;
    // So the next call is over the quota.
    let reply = call(&mut socket, 2, "echo", json!({"text": "x"})).await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["error"]["code"], -32029, "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn a_tool_quota_counts_http_and_websocket_calls_together() {
    let (server, _) = start(&[("MCP_TOOL_RATE_LIMITS", r#"{"echo":2}"#)]).await;
    let bearer = format!("Bearer {}", token(json!({"sub": "carol", "scope": "*"})));
    // One call of `echo` over HTTP...
    let url = server.url();
    let auth = [("authorization", bearer.as_str())];
    let session = mcp_support::open_session(&url, &auth, "2025-06-18").await;
    let with = [
        auth[0],
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"over http"}}});
    let reply = mcp_support::post(&url, &with, &body.to_string()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.message()["result"].is_object(), "{}", reply.text());
    // ... and one over the socket use up the allowance of 2.
    let mut socket = connect(&server, "", &[("authorization", bearer.as_str())])
        .await
        .unwrap();
    initialize(&mut socket).await;
    assert!(call(&mut socket, 2, "echo", json!({"text": "x"})).await["result"].is_object());
    let reply = call(&mut socket, 3, "echo", json!({"text": "x"})).await;
    assert_eq!(reply["error"]["code"], -32029, "{reply}");
    // Other tools have no quota of their own.
    let reply = call(&mut socket, 4, "add", json!({"a": 1, "b": 2})).await;
    assert!(reply["result"].is_object(), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn an_expiring_token_closes_the_session_with_1008() {
    let (server, _) = start(&[]).await;
    let mut socket = open(
        &server,
        json!({"sub": "alice", "scope": "*", "exp": now() + 2}),
    )
    .await;
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(5)).await,
        Some(CloseCode::Policy)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_address_refused_after_a_reload_closes_the_session_with_1008() {
    let later: Later = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Pings every 10 minutes: only the reload itself can close the session
    // in time.
    let (server, reload) =
        start_loading(&[("MCP_WS_PING_INTERVAL", "600")], Some(Arc::clone(&later))).await;
    let mut socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    later
        .lock()
        .unwrap()
        .push(("MCP_BLOCKED_IPS", "127.0.0.0/8"));
    reload.reload().unwrap();
    // Checked at once, while the client is idle.
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(5)).await,
        Some(CloseCode::Policy)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_dropped() {
    let (server, _) = start(&[("MCP_WS_PING_INTERVAL", "1"), ("MCP_WS_PING_TIMEOUT", "1")]).await;
    let mut socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    // Not reading: the client library cannot answer the pings.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What arrived: pings, then the end of the connection.
    let mut pings = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => break,
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Err(_) => panic!("the server kept the silent session open"),
        }
    }
    assert!(pings >= 1);
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_the_body_cap_closes_the_session_with_1009() {
    let (server, _) = start(&[("MCP_HTTP_MAX_BODY_BYTES", "4096")]).await;
    let mut socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    let big = call_text(2, &"x".repeat(8192));
    socket.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(5)).await,
        Some(CloseCode::Size)
    );
    server.stop().await;
}

fn call_text(id: u64, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}).to_string()
}

/// A client may send many messages before it reads any answer (pipelining):
/// every one is answered, in bounded time, whatever the channel sizes
/// between the socket and the MCP handler.
#[tokio::test]
async fn pipelined_messages_are_all_answered() {
    let (server, _) = start(&[("MCP_RATE_LIMIT_RPM", "100000")]).await;
    let mut socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    const N: u64 = 1000;
    for id in 0..N {
        send(
            &mut socket,
            json!({"jsonrpc":"2.0","id":100 + id,"method":"tools/call",
                   "params":{"name":"echo","arguments":{"text": format!("m{id}")}}}),
        )
        .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..N {
        let reply = receive(&mut socket).await;
        assert!(reply["result"]["content"][0]["text"].is_string(), "{reply}");
        seen.insert(reply["id"].as_u64().unwrap());
    }
    assert_eq!(seen.len(), N as usize);
    socket.close(None).await.unwrap();
    server.stop().await;
}

/// A client that keeps sending but stops reading is dropped once the
/// server's answers wait `MCP_WS_PING_TIMEOUT` for it, instead of holding
/// its session (and the handler behind it) open for ever.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let (server, _) = start(&[
        ("MCP_RATE_LIMIT_RPM", "100000"),
        ("MCP_WS_PING_INTERVAL", "1"),
        ("MCP_WS_PING_TIMEOUT", "1"),
    ])
    .await;
    let socket = open(&server, json!({"sub": "alice", "scope": "*"})).await;
    let (mut writer, mut reader) = socket.split();
    // About 25 MB of answers: more than the socket buffers on both sides
    // hold, so the server's sends wait for this client.
    const CALLS: u64 = 400;
    let text = "x".repeat(64 * 1024);
    let sending = tokio::spawn(async move {
        for id in 0..CALLS {
            let frame = Message::Text(call_text(1000 + id, &text).into());
            if writer.send(frame).await.is_err() {
                return;
            }
        }
        // Kept open: only the server may end the session.
        std::future::pending::<()>().await;
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Now read: what the buffers held, then the end of the connection.
    // Pings go on arriving while a session lives: the deadline is for the
    // whole read, not per frame.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut answers = 0;
    loop {
        match tokio::time::timeout_at(deadline, reader.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => answers += 1,
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!(
                "the server kept the session of a client that stopped reading ({answers} answers read)"
            ),
        }
    }
    assert!(
        answers < CALLS,
        "every answer arrived: the server never waited"
    );
    sending.abort();
    server.stop().await;
}
