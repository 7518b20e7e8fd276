//! Attack: an open WebSocket session (`/mcp/ws`) must not outlive the
//! revocation of its credential. A reload that removes the session's API
//! key, removes the JWKS key its token was signed with, or narrows its
//! scopes closes it with 1008 before another message is served; so does
//! the next ping when keys change without a reload reaching the session.
//! A reload that changes nothing, or a server without authentication,
//! leaves sessions alone, and a key server that cannot be reached keeps
//! them open until it answers. Real WebSocket clients on 127.0.0.1.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

#[path = "support/files.rs"]
mod files;

use std::sync::Arc;
use std::time::Duration;

use app::settings::Settings;
use files::Files;
use futures::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_support::Server;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tower_warden::auth::ApiKeys;
use tower_warden::reload::ReloadHandle;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SALT: &str = "revoke-test-salt-0123456789";
const KEY_A: &str = "revoke-key-a-0123456789abcdef";
const KEY_B: &str = "revoke-key-b-0123456789abcdef";
const AUD: &str = "revoke-test";
/// Every wait is bounded by this; none is a timing threshold.
const BOUND: Duration = Duration::from_secs(10);

/// One line of an API key file.
fn key_line(id: &str, key: &str, scopes: &[&str]) -> String {
    json!({"id": id, "digest": ApiKeys::digest_of(SALT, key), "scopes": scopes}).to_string()
}

/// The reference server of `vars` and its reload handle (which reads
/// `vars`, so the files they name, again), plus its perimeter.
async fn start(vars: Vec<(&'static str, String)>) -> (Server, ReloadHandle, app::Auth) {
    let mut all: Vec<(&str, String)> = vec![
        ("MCP_DATABASE_URL", "sqlite::memory:".to_owned()),
        ("MCP_RATE_LIMIT_ENABLED", "false".to_owned()),
        // Pings every 10 minutes unless a test says otherwise: only a
        // reload can close a session in time.
        ("MCP_WS_PING_INTERVAL", "600".to_owned()),
    ];
    all.extend(vars);
    let config = Settings::from_vars(all.clone()).unwrap();
    let load = move || Settings::from_vars(all.clone()).map(|s| s.warden);
    let auth = app::auth(&config).unwrap();
    let gateway = app::gateway(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (router, reload) = app::build(&config, &shutdown, &auth, gateway, Arc::new(load)).unwrap();
    (Server::serve(router, shutdown).await, reload, auth)
}

/// A server accepting the API keys of the file `keys.jsonl` in `files`.
async fn start_with_keys(
    files: &Files,
    keys: &str,
    more: &[(&'static str, &str)],
) -> (Server, ReloadHandle, app::Auth) {
    let path = files.write("keys.jsonl", keys);
    let mut vars = vec![
        ("MCP_AUTH_MODE", "api_key".to_owned()),
        ("MCP_API_KEY_SALT", SALT.to_owned()),
        ("MCP_API_KEYS_FILE", path),
    ];
    vars.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    start(vars).await
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
        let frame = tokio::time::timeout(BOUND, socket.next())
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

/// An initialized MCP session over `/mcp/ws`, authenticated by `header`.
async fn open(server: &Server, header: (&'static str, &str)) -> Socket {
    let mut request = format!("ws://{}/mcp/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"revoke-test","version":"1"}}}),
    )
    .await;
    let reply = receive(&mut socket).await;
    assert_eq!(reply["result"]["protocolVersion"], "2025-06-18", "{reply}");
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    socket
}

fn echo(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"still here"}}})
}

/// Calls `echo` and asserts that it ran.
async fn answers(socket: &mut Socket, id: u64) {
    send(socket, echo(id)).await;
    let reply = receive(socket).await;
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(
        reply["result"]["content"][0]["text"], "still here",
        "{reply}"
    );
}

/// Sends a `tools/call`, then reads everything until the connection ends:
/// the session must close with 1008 and the call must get no answer.
/// (Sessions act on a reload before reading the next frame, so a call sent
/// after the reload returned is never served.)
async fn closed_with_policy_and_call_unanswered(socket: &mut Socket, id: u64) {
    // The server may already have closed: a failed send is fine.
    let _ = socket
        .send(Message::Text(echo(id).to_string().into()))
        .await;
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut code = None;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("the session stayed open (close code so far: {code:?})"),
            Ok(Some(Ok(Message::Text(text)))) => {
                let reply: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(reply["id"], id, "the call was answered: {reply}");
            }
            Ok(Some(Ok(Message::Close(frame)))) => code = frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
        }
    }
    assert_eq!(code, Some(CloseCode::Policy));
}

/// Waits (bounded) for the close frame and returns its code.
async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("no close within {BOUND:?}"),
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
        }
    }
}

#[tokio::test]
async fn attack_api_key_removed_and_reloaded_closes_the_session() {
    let files = Files::new("removed");
    let both = format!(
        "{}\n{}",
        key_line("a", KEY_A, &["*"]),
        key_line("b", KEY_B, &["*"])
    );
    let (server, reload, _) = start_with_keys(&files, &both, &[]).await;
    let mut revoked = open(&server, ("x-api-key", KEY_A)).await;
    let mut kept = open(&server, ("x-api-key", KEY_B)).await;
    answers(&mut revoked, 2).await;

    files.write("keys.jsonl", &key_line("b", KEY_B, &["*"]));
    reload.reload().unwrap();
    closed_with_policy_and_call_unanswered(&mut revoked, 3).await;
    // The other key's session goes on, and the removed key opens nothing.
    answers(&mut kept, 2).await;
    let mut request = format!("ws://{}/mcp/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", KEY_A.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("a removed key opened a session: {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A JWKS document of the RSA public keys of `keys` (`kid`, private PEM).
fn jwks(keys: &[(&str, &str)]) -> String {
    tower_warden::auth::install_crypto_provider();
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, pem)| {
            let key = EncodingKey::from_rsa_pem(&fixture(pem)).unwrap();
            let mut jwk = serde_json::to_value(
                jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap(),
            )
            .unwrap();
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// `Bearer` and an RS256 token for `sub`, signed with `pem` as `kid`.
fn bearer(sub: &str, kid: &str, pem: &str) -> String {
    tower_warden::auth::install_crypto_provider();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "scope": "*", "aud": AUD, "exp": exp}),
        &EncodingKey::from_rsa_pem(&fixture(pem)).unwrap(),
    )
    .unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn attack_jwks_key_removed_and_reloaded_closes_the_sessions_it_signed() {
    let files = Files::new("jwks");
    let path = files.write(
        "jwks.json",
        &jwks(&[("old", "rsa.pem"), ("kept", "rsa2.pem")]),
    );
    let (server, reload, _) = start(vec![
        ("MCP_AUTH_MODE", "jwt".to_owned()),
        ("MCP_JWKS_FILE", path),
        ("MCP_JWT_AUDIENCE", AUD.to_owned()),
    ])
    .await;
    let old = bearer("alice", "old", "rsa.pem");
    let new = bearer("bob", "kept", "rsa2.pem");
    let mut revoked = open(&server, ("authorization", &old)).await;
    let mut kept = open(&server, ("authorization", &new)).await;
    // Verified, so cached: the removal must reach the cache too.
    answers(&mut revoked, 2).await;

    files.write("jwks.json", &jwks(&[("kept", "rsa2.pem")]));
    reload.reload().unwrap();
    closed_with_policy_and_call_unanswered(&mut revoked, 3).await;
    answers(&mut kept, 2).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_api_key_scopes_narrowed_and_reloaded_closes_the_session() {
    let files = Files::new("narrowed");
    let (server, reload, _) = start_with_keys(&files, &key_line("a", KEY_A, &["*"]), &[]).await;
    let mut socket = open(&server, ("x-api-key", KEY_A)).await;
    answers(&mut socket, 2).await;

    // The same key, still valid, but granted only one tool now.
    files.write("keys.jsonl", &key_line("a", KEY_A, &["echo"]));
    reload.reload().unwrap();
    closed_with_policy_and_call_unanswered(&mut socket, 3).await;
    server.stop().await;
}

#[tokio::test]
async fn a_reload_that_changes_nothing_leaves_sessions_open() {
    let files = Files::new("unchanged");
    let keys = key_line("a", KEY_A, &["*"]);
    let (server, reload, _) = start_with_keys(&files, &keys, &[]).await;
    let mut socket = open(&server, ("x-api-key", KEY_A)).await;
    // The keys file rewritten with the same key.
    files.write("keys.jsonl", &keys);
    reload.reload().unwrap();
    // The session acts on the reload before it reads this call.
    answers(&mut socket, 2).await;
    // Another key added is no reason to close either.
    files.write(
        "keys.jsonl",
        &format!("{keys}\n{}", key_line("b", KEY_B, &["*"])),
    );
    reload.reload().unwrap();
    answers(&mut socket, 3).await;
    answers(&mut socket, 4).await;
    server.stop().await;
}

#[tokio::test]
async fn attack_keys_replaced_without_a_reload_notice_close_the_session_at_the_next_ping() {
    let files = Files::new("ping");
    let (server, _, auth) = start_with_keys(
        &files,
        &key_line("a", KEY_A, &["*"]),
        &[("MCP_WS_PING_INTERVAL", "1")],
    )
    .await;
    let mut socket = open(&server, ("x-api-key", KEY_A)).await;
    answers(&mut socket, 2).await;
    // The keys change behind the sessions' back: no reload step runs, so
    // no session is told. Only the ping-time check can see it.
    auth.warden
        .api_keys()
        .expect("API keys are on")
        .replace_with(&key_line("b", KEY_B, &["*"]))
        .unwrap();
    // Reading answers the server's pings until it closes.
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Policy));
    server.stop().await;
}

#[tokio::test]
async fn sessions_without_authentication_are_left_alone_by_reloads() {
    let (server, reload, _) = start(vec![("MCP_AUTH_MODE", "none".to_owned())]).await;
    let mut socket = open(&server, ("user-agent", "revoke-test")).await;
    reload.reload().unwrap();
    answers(&mut socket, 2).await;
    server.stop().await;
}

/// What a JWKS endpoint on 127.0.0.1 serves (a document, or 500 when
/// `None`), and how often it was asked.
#[derive(Clone, Default)]
struct Provider {
    document: Arc<std::sync::Mutex<Option<String>>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl Provider {
    async fn serve(&self) -> String {
        let provider = self.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let p = provider.clone();
                async move {
                    p.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    match p.document.lock().unwrap().clone() {
                        Some(doc) => (http::StatusCode::OK, doc),
                        None => (http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks.json")
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn an_unreachable_key_server_keeps_sessions_open_until_it_answers() {
    let provider = Provider::default();
    *provider.document.lock().unwrap() = Some(jwks(&[("one", "rsa.pem"), ("two", "rsa2.pem")]));
    let url = provider.serve().await;
    // Keys trusted for 1 s without a successful fetch, no token cache: every
    // ping's check reaches the key server once the keys are that old.
    let jwt = tower_warden::auth::JwtAuth::builder()
        .jwks_url(
            tower_warden::auth::JwksUrl::new(url)
                .max_staleness(Duration::from_secs(1))
                .min_refetch_interval(Duration::ZERO)
                .refresh_interval(Duration::from_secs(3600)),
        )
        .audience([AUD])
        .cache_capacity(0)
        .build()
        .unwrap();
    let config = Settings::from_vars([
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
        ("MCP_AUTH_MODE", "jwt"),
        ("MCP_JWT_SECRET", "a-secret-this-test-replaces-0123456789"),
        ("MCP_WS_PING_INTERVAL", "1"),
        ("MCP_WS_PING_TIMEOUT", "60"),
    ])
    .unwrap();
    let mut auth = app::auth(&config).unwrap();
    auth.warden = auth
        .warden
        .with_auth(tower_warden::auth::AuthLayer::jwt(jwt));
    let gateway = app::gateway(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let same = config.warden.clone();
    let load: app::Loader = Arc::new(move || Ok(same.clone()));
    let (router, _) = app::build(&config, &shutdown, &auth, gateway, load).unwrap();
    let server = Server::serve(router, shutdown).await;

    let bearer = bearer("alice", "one", "rsa.pem");
    let mut socket = open(&server, ("authorization", &bearer)).await;
    // The key server goes down; wait (bounded) until a ping's check has
    // asked it, and been refused, after the keys went stale.
    *provider.document.lock().unwrap() = None;
    let before = provider.fetches();
    let mut asked = false;
    for _ in 0..200 {
        if provider.fetches() > before {
            asked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(asked, "no check reached the key server");
    // 503 for the check: no verdict on the credential, the session goes on.
    answers(&mut socket, 2).await;
    // Back, with the session's signing key rotated out: closed at the next
    // check.
    *provider.document.lock().unwrap() = Some(jwks(&[("two", "rsa2.pem")]));
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Policy));
    server.stop().await;
}
