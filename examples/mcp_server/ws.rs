//! `GET /mcp/ws`: MCP's JSON-RPC over WebSocket, one text frame per
//! message, served by the same rmcp handler as `/mcp`.
//!
//! The upgrade request passes the whole perimeter of `/mcp` (address,
//! certificate, rate limit, authentication from headers — the query only
//! with `MCP_WS_ALLOW_QUERY_AUTH=true` —, `Origin` and `Host`). After it,
//! the session keeps being checked:
//!
//! - every frame goes through the check of `/mcp` (`WardenLayer::check_message`:
//!   the rate limits per address, per tool and per principal, with the
//!   same allowances, and the tool scopes): over a limit, a request gets a
//!   JSON-RPC error (-32029) instead of a call; a call beyond the caller's
//!   scopes gets -32600 `insufficient_scope`; anything else refused is
//!   dropped (the handler checks the scopes again);
//! - when the token expires, or a reload stops allowing the client's
//!   address, the session is closed with code 1008 (policy violation) —
//!   the address is checked after each reload, and at each message and
//!   ping;
//! - the credential of the upgrade request is checked again, by the
//!   perimeter's own authentication, after each reload and at each ping:
//!   when it is refused (an API key gone from `MCP_API_KEYS_FILE`, a
//!   signing key gone from `MCP_JWKS_FILE`), or now names another subject
//!   or namespace, or grants fewer scopes or roles than at the upgrade,
//!   the session is closed with 1008;
//! - the server pings every `MCP_WS_PING_INTERVAL`; a client silent for
//!   `MCP_WS_PING_TIMEOUT` after a ping is dropped, and so is a client that
//!   takes no frame from the server (stops reading) for that long;
//! - a frame over `MCP_HTTP_MAX_BODY_BYTES` closes it (1009), a binary frame
//!   too (1003); shutdown closes it with 1001.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_warden::client_ip::ClientIp;
use tower_warden::principal::McpCall;
use tower_warden::principal::Principal;
use tower_warden::reject::Reason;
use tower_warden::stack::WardenLayer;

use super::tools::Tools;

/// Close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const UNSUPPORTED: u16 = 1003;
const POLICY: u16 = 1008;
const TOO_BIG: u16 = 1009;

/// What every WebSocket session of a server shares.
#[derive(Clone)]
pub struct WsState {
    /// A fresh MCP handler per session.
    pub tools: Arc<dyn Fn() -> Tools + Send + Sync>,
    /// The perimeter: each message counts against its rate limits, and
    /// its IP lists (which reloads replace) keep being checked.
    pub warden: WardenLayer,
    /// Notified after each reload.
    pub reloaded: Arc<tokio::sync::Notify>,
    /// `MCP_WS_PING_INTERVAL`.
    pub ping_interval: Duration,
    /// `MCP_WS_PING_TIMEOUT`.
    pub ping_timeout: Duration,
    /// `MCP_HTTP_MAX_BODY_BYTES`: the largest message.
    pub max_message: usize,
    /// Cancelled when the server stops.
    pub sessions: CancellationToken,
}

/// `GET /mcp/ws`: upgrades, then serves MCP on the socket.
pub async fn upgrade(
    State(state): State<Arc<WsState>>,
    ws: WebSocketUpgrade,
    request: Request,
) -> Response {
    // Only what authentication reads, to check the credential again.
    let credential = state.warden.auth().credential_head(&request);
    let (parts, _) = request.into_parts();
    ws.max_message_size(state.max_message)
        .max_frame_size(state.max_message)
        .on_upgrade(move |socket| session(socket, state, parts, credential))
}

/// The next message of either side of a session.
// Lives on the stack for one turn of the loop: boxing the larger variant
// would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Traffic {
    /// From the MCP handler to the client (`None`: the handler ended).
    Out(Option<ServerJsonRpcMessage>),
    /// From the client (`None`: the connection ended).
    In(Option<Result<Message, axum::Error>>),
}

/// Sends one frame to the client, or gives up after `within`. A client
/// that stops reading would otherwise hold its session, and the handler
/// behind it, for ever: the loop waits in the send, where no ping deadline
/// can fire. `false`: the session is over.
async fn deliver(
    to_client: &mut futures::stream::SplitSink<WebSocket, Message>,
    frame: Message,
    within: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(within, to_client.send(frame)).await,
        Ok(Ok(()))
    )
}

/// Why a session ended, as a close frame.
fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

async fn session(
    socket: WebSocket,
    state: Arc<WsState>,
    parts: http::request::Parts,
    credential: Option<http::Request<()>>,
) {
    let principal = parts.extensions.get::<Principal>().cloned();
    // With authentication switched off there is no credential to revoke.
    let recheck = credential.zip(principal.clone());
    let client_ip: Option<IpAddr> = ClientIp::of(&parts.extensions);
    // When the credential stops being valid, on the tokio clock.
    let expires = principal
        .as_ref()
        .and_then(Principal::expires_at)
        .map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            Instant::now() + left
        });

    let (mut to_client, mut from_client) = socket.split();
    // rmcp on one side of two channels, the socket on the other.
    let (to_server, server_in) = futures::channel::mpsc::channel::<ClientJsonRpcMessage>(16);
    let (server_out, mut from_server) = futures::channel::mpsc::channel::<ServerJsonRpcMessage>(16);
    let ended = state.sessions.child_token();
    let tools = (state.tools)();
    let running = tokio::spawn({
        let ended = ended.clone();
        async move {
            match tools.serve_with_ct((server_out, server_in), ended).await {
                Ok(service) => {
                    let _ = service.waiting().await;
                }
                Err(error) => tracing::debug!(%error, "WebSocket session ended before initialize"),
            }
        }
    });
    let mut to_server = to_server;

    let mut ping =
        tokio::time::interval_at(Instant::now() + state.ping_interval, state.ping_interval);
    let mut awaiting_pong: Option<Instant> = None;
    let never = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let expiry = tokio::time::sleep_until(expires.unwrap_or(never));
    tokio::pin!(expiry);
    let ip_allowed =
        |ip: Option<IpAddr>| ip.is_none_or(|ip| state.warden.ip_lists().get().is_allowed(ip));
    // Armed once and re-armed after each reload, so that a reload while
    // this loop is busy elsewhere (answering a message) is not missed.
    let reloaded = Arc::clone(&state.reloaded);
    let mut reload = std::pin::pin!(reloaded.notified());
    reload.as_mut().enable();

    let goodbye: Option<Message> = loop {
        let pong_deadline = awaiting_pong.map_or(never, |sent| sent + state.ping_timeout);
        // In order: shutdown, a reload, expiry and the ping checks are acted
        // on before the next frame is read, so that no message is served
        // under a credential or address a reload has already refused.
        tokio::select! {
            biased;
            () = state.sessions.cancelled() => break Some(close(GOING_AWAY, "server shutting down")),
            () = &mut reload => {
                reload.set(reloaded.notified());
                reload.as_mut().enable();
                if !ip_allowed(client_ip) {
                    break Some(close(POLICY, "client address no longer allowed"));
                }
                if let Err(reason) = still_admitted(&state, recheck.as_ref(), client_ip).await {
                    break Some(close(POLICY, reason));
                }
            }
            () = &mut expiry => {
                tracing::info!(target: tower_warden::audit::TARGET, event = "denied", reason = "token_expired", client_ip = client_ip.map(tracing::field::display), "WebSocket session closed: the token expired");
                break Some(close(POLICY, "token expired"));
            }
            () = tokio::time::sleep_until(pong_deadline) => {
                tracing::info!("WebSocket session dropped: no answer to a ping");
                break None;
            }
            _ = ping.tick() => {
                if !ip_allowed(client_ip) {
                    break Some(close(POLICY, "client address no longer allowed"));
                }
                // Also catches keys replaced without a reload notification
                // (by another handle, or by code of the application).
                if let Err(reason) = still_admitted(&state, recheck.as_ref(), client_ip).await {
                    break Some(close(POLICY, reason));
                }
                if awaiting_pong.is_none() {
                    awaiting_pong = Some(Instant::now());
                }
                if !deliver(&mut to_client, Message::Ping(bytes::Bytes::new()), state.ping_timeout).await {
                    break None;
                }
            }
            // Traffic last. Neither direction is preferred: a chatty
            // handler cannot starve the client's frames (pongs included),
            // nor a busy client the handler's answers.
            traffic = async {
                tokio::select! {
                    out = from_server.next() => Traffic::Out(out),
                    frame = from_client.next() => Traffic::In(frame),
                }
            } => match traffic {
                Traffic::Out(out) => {
                    let Some(message) = out else { break Some(close(1000, "session ended")) };
                    let Ok(text) = serde_json::to_string(&message) else { continue };
                    if !deliver(&mut to_client, Message::Text(text.into()), state.ping_timeout).await {
                        break None;
                    }
                }
                Traffic::In(frame) => {
                    // Any frame shows the client is alive.
                    awaiting_pong = None;
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => break Some(close(UNSUPPORTED, "JSON-RPC messages are text frames")),
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Ok(_)) => continue, // ping (answered by the library) or pong
                        Some(Err(error)) => {
                            let too_big = error
                                .into_inner()
                                .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                                .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)));
                            break too_big.then(|| close(TOO_BIG, "message too large"));
                        }
                    };
                    if !ip_allowed(client_ip) {
                        break Some(close(POLICY, "client address no longer allowed"));
                    }
                    match admit(&state, text.as_str(), &parts).await {
                        Ok(message) => {
                            if to_server.send(message).await.is_err() {
                                break Some(close(1000, "session ended"));
                            }
                        }
                        Err(Some(answer)) => {
                            if !deliver(&mut to_client, Message::Text(answer.into()), state.ping_timeout).await {
                                break None;
                            }
                        }
                        Err(None) => {}
                    }
                }
            },
        }
    };
    if let Some(frame) = goodbye {
        deliver(&mut to_client, frame, state.ping_timeout).await;
    }
    let _ = tokio::time::timeout(state.ping_timeout, to_client.close()).await;
    ended.cancel();
    drop(to_server);
    let _ = running.await;
}

/// Checks the session's credential (`recheck`: the upgrade request's
/// credential head and the principal it was admitted as) again with the
/// keys in force now, through the perimeter's own authentication.
/// `Err` with the close reason when the session must end: the credential
/// is refused, or it no longer [covers](Principal::covers) the principal
/// the session was admitted as (another subject or namespace, fewer scopes
/// or roles). No credential is ever logged.
async fn still_admitted(
    state: &WsState,
    recheck: Option<&(http::Request<()>, Principal)>,
    client_ip: Option<IpAddr>,
) -> Result<(), &'static str> {
    let Some((credential, admitted)) = recheck else {
        return Ok(());
    };
    match state.warden.auth().authenticate(credential).await {
        Ok(now) if now.covers(admitted) => Ok(()),
        Ok(_) => {
            tracing::info!(
                target: tower_warden::audit::TARGET,
                event = "denied",
                reason = Reason::InsufficientScope.code(),
                subject = admitted.subject(),
                client_ip = client_ip.map(tracing::field::display),
                "WebSocket session closed: its credential now grants less than at the upgrade"
            );
            Err("credential narrowed")
        }
        // The keys cannot be checked right now (a JWKS URL unreachable and
        // the keys fetched before too stale to trust): a new request would
        // get 503 and retry. That says nothing about this credential, so
        // the session stays open and is checked again at the next ping or
        // reload; closing every session during a key-server outage would
        // turn it into an outage of every client, all reconnecting into
        // the same 503. A token still ends at its `exp`, and a revocation
        // takes effect at the first check once the keys are known again.
        Err(refused) if refused.reason() == Reason::AuthUnavailable => {
            // Debug: once per session and ping during an outage, which
            // the JWKS fetch failures already report.
            tracing::debug!(
                subject = admitted.subject(),
                "WebSocket session kept open: its credential cannot be checked again right now"
            );
            Ok(())
        }
        // Refused as a new request would be (and audited as one).
        Err(refused) => {
            tracing::info!(
                subject = admitted.subject(),
                reason = refused.reason().code(),
                client_ip = client_ip.map(tracing::field::display),
                "WebSocket session closed: its credential was refused"
            );
            Err(if refused.reason() == Reason::TokenExpired {
                "token expired"
            } else {
                "credential revoked"
            })
        }
    }
}

/// Counts one frame from the client against the rate limits an HTTP
/// request meets (per address, per tool, per principal) — every frame,
/// malformed ones and answers included, as every `POST` counts — then
/// parses it. `Err(Some(answer))`: a JSON-RPC error to send back instead;
/// `Err(None)`: nothing to send (a refused frame that is not a request,
/// or a notification that could not be read).
async fn admit(
    state: &WsState,
    text: &str,
    parts: &http::request::Parts,
) -> Result<ClientJsonRpcMessage, Option<String>> {
    let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let field = |name: &str| value.as_ref().and_then(|v| v.get(name));
    let id = field("id").cloned().unwrap_or(serde_json::Value::Null);
    let method = field("method").and_then(serde_json::Value::as_str);
    let is_request = method.is_some() && field("id").is_some();
    let notification = method.is_some() && !is_request;
    // The upgrade request as the handler and the limits see each message,
    // as they see each HTTP request.
    let mut head = http::Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.headers_mut() = parts.headers.clone();
    *head.extensions_mut() = parts.extensions.clone();
    if let Some(call) = value.as_ref().and_then(McpCall::of_message) {
        head.extensions_mut().insert(call);
    }
    // The one check of every way a tool is run (`WardenLayer::check_message`:
    // rate limits, tool policy, tool quotas), as for an HTTP request.
    if let Err(refused) = state.warden.check_message(&head).await {
        return Err(is_request.then(|| match refused.retry_after() {
            None => error_json(
                &id,
                -32600,
                &format!("insufficient_scope: {}", refused.rejection().detail()),
            ),
            Some(retry) => error_json(
                &id,
                -32029,
                &format!(
                    "rate_limited: too many requests; retry in {} s",
                    retry.as_secs().max(1)
                ),
            ),
        }));
    }
    let Some(value) = value else {
        return Err(Some(error_json(
            &serde_json::Value::Null,
            -32700,
            "parse error: not JSON",
        )));
    };
    let mut message: ClientJsonRpcMessage = serde_json::from_value(value)
        .map_err(|_| (!notification).then(|| error_json(&id, -32600, "invalid request")))?;
    // The handler reads the caller (and its namespace) from it.
    if let ClientJsonRpcMessage::Request(request) = &mut message {
        request.request.extensions_mut().insert(head.into_parts().0);
    }
    Ok(message)
}

fn error_json(id: &serde_json::Value, code: i64, message: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    })
    .to_string()
}
