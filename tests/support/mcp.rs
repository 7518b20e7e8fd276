//! The MCP integration tests' harness: a router served on 127.0.0.1, raw
//! HTTP requests over a hyper client and their collected replies; shared by
//! `tests/mcp_interop.rs`, `tests/mcp_policy.rs` and `tests/mcp_session.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The `accept` of a `POST`: a JSON or an event-stream answer.
pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// The notification that completes a session's initialization.
pub(crate) const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// A router served on 127.0.0.1 until [`Server::stop`].
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `router` (with the peer's address as connect info) on a free
    /// port until `shutdown` is cancelled.
    pub(crate) async fn serve(router: Router, shutdown: CancellationToken) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_listener(listener, router, shutdown)
    }

    /// Serves `router` on `listener` until `shutdown` is cancelled.
    pub(crate) fn serve_listener(
        listener: tokio::net::TcpListener,
        router: Router,
        shutdown: CancellationToken,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(token.cancelled_owned())
            .await
        });
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// The URL of the MCP endpoint.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Cancels the shutdown token and waits (at most 10 s) for the server
    /// to finish.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops promptly")
            .unwrap()
            .unwrap();
    }
}

/// `claims` signed HS256 with `secret`; `exp` is set an hour ahead unless
/// the claims carry one.
pub(crate) fn sign_hs256(secret: &str, mut claims: Value) -> String {
    tower_warden::auth::install_crypto_provider();
    if claims.get("exp").is_none() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["exp"] = json!(now + 3600);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A response with its body collected.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The JSON-RPC message of a JSON or event-stream answer.
    pub(crate) fn message(&self) -> Value {
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

/// A plain-HTTP client.
pub(crate) fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends exactly these headers and collects the answer.
pub(crate) async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(body.into())).unwrap();
    let response = client().request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A JSON-RPC `POST`: a JSON body, either answer accepted, then `headers`.
pub(crate) async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", ACCEPT_BOTH),
    ];
    all.extend_from_slice(headers);
    send(Method::POST, url, &all, body.to_owned()).await
}

/// An `initialize` request for protocol `version`.
pub(crate) fn initialize(version: &str) -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "1"}
        }
    })
    .to_string()
}

/// The official client's transport to `url`, sending `name: value` with
/// every request.
pub(crate) fn client_config_with_header(
    url: String,
    name: &'static str,
    value: &str,
) -> StreamableHttpClientTransportConfig {
    let headers = HashMap::from([(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap(),
    )]);
    StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers)
}

/// Opens a session with `headers` on both requests; returns its id after
/// `notifications/initialized`.
pub(crate) async fn open_session(url: &str, headers: &[(&str, &str)], version: &str) -> String {
    let reply = post(url, headers, &initialize(version)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.message()["result"]["protocolVersion"], version);
    let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let mut with = headers.to_vec();
    with.push(("mcp-session-id", &session));
    with.push(("mcp-protocol-version", version));
    let reply = post(url, &with, INITIALIZED).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.body.is_empty());
    session
}
