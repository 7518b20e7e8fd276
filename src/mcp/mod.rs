//! Layers for MCP (Model Context Protocol) servers on the Streamable HTTP
//! transport.
//!
//! * [`HostOriginLayer`] — the DNS-rebinding protection the transport
//!   requires: the `Host` must be one this server answers for, and an
//!   `Origin`, when sent, must be the server's own or an allowed one
//!   (403 `host_forbidden` / `origin_forbidden`).
//! * [`JsonRpcErrorsLayer`] — every transport error reaches the client as a
//!   JSON-RPC error object: a malformed body is `400` with `-32700`, a plain
//!   text refusal of the transport (missing session, wrong media type,
//!   method not allowed) keeps its status and gains a JSON-RPC body.
//! * [`McpPolicyLayer`] — per-tool authorization with a [`ToolPolicy`]
//!   (tool → required scopes, from code or `MCP_TOOL_SCOPES`): a
//!   `tools/call` the caller's scopes do not cover is refused with 403
//!   `insufficient_scope`, and `tools/list` answers only show the tools the
//!   caller may call. It leaves an [`McpCall`](crate::principal::McpCall) in the
//!   request extensions.
//! * [`SessionBindingLayer`] — each `Mcp-Session-Id` is usable only by the
//!   principal that opened it (404 `session_not_found` for anyone else);
//!   [`ShareSessionsLayer`] shares those bindings between instances through
//!   a [`SharedSessions`] store.
//!
//! All are plain Tower layers, generic over request and response bodies,
//! and do not depend on any MCP SDK. Place them innermost, just outside the
//! MCP service (rmcp's `StreamableHttpService`, for example):
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_warden::mcp::{HostOriginLayer, JsonRpcErrorsLayer};
//!
//! # fn main() -> Result<(), tower_warden::ConfigError> {
//! let layers = ServiceBuilder::new()
//!     .layer(HostOriginLayer::new().try_allowed_hosts(["mcp.example.com"])?)
//!     .layer(JsonRpcErrorsLayer::new());
//! # let _ = layers;
//! # Ok(())
//! # }
//! ```
//!
//! [`SessionBindingLayer`] keeps a session from standing in for
//! authentication: each `Mcp-Session-Id` is bound to the principal that
//! opened it, and anyone else presenting it — or any id the layer does not
//! know — is answered `404` `session_not_found`, as for an unknown session,
//! without reaching the server. It goes after the auth layer (it reads the
//! `Principal`) and outside the two above:
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_warden::mcp::{JsonRpcErrorsLayer, SessionBindingLayer};
//!
//! let sessions = SessionBindingLayer::new()
//!     .max_sessions(10_000)
//!     .idle_timeout(Duration::from_secs(30 * 60));
//! let table = sessions.sessions(); // for a gauge: table.len()
//! let layers = ServiceBuilder::new()
//!     // .layer(auth) — puts the `Principal` in the request extensions
//!     .layer(sessions)
//!     .layer(JsonRpcErrorsLayer::new());
//! # let _ = layers;
//! assert_eq!(table.len(), 0);
//! ```
//!
//! [`McpPolicyLayer`] goes inside authentication, which leaves the
//! [`Principal`](crate::principal::Principal) it reads, and outside
//! [`JsonRpcErrorsLayer`]:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_warden::mcp::{JsonRpcErrorsLayer, McpPolicyLayer, RequestBody, ToolPolicy};
//! use tower_warden::principal::{AuthMethod, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Usually from the environment: ToolPolicy::try_from_json(&std::env::var("MCP_TOOL_SCOPES")?)?
//! let policy = ToolPolicy::try_from_json(r#"{"echo": "tools:echo", "add": ["tools:add"]}"#)?;
//! let mut service = ServiceBuilder::new()
//!     .layer(McpPolicyLayer::new(policy))
//!     .layer(JsonRpcErrorsLayer::new())
//!     .service_fn(|_: Request<RequestBody<RequestBody<Full<Bytes>>>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("{}"))))
//!     });
//!
//! let call = |tool: &str| {
//!     let body = format!(
//!         r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
//!     );
//!     let mut request = Request::post("/mcp")
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from(body)))
//!         .unwrap();
//!     // What an authentication layer would have left:
//!     request.extensions_mut().insert(
//!         Principal::builder("bob", AuthMethod::ApiKey).scopes(["tools:echo"]).build(),
//!     );
//!     request
//! };
//! let response = service.ready().await?.call(call("echo")).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let response = service.ready().await?.call(call("add")).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! let problem = response.into_body().collect().await?.to_bytes();
//! assert!(std::str::from_utf8(&problem)?.contains(r#""code":"insufficient_scope""#));
//! # Ok(())
//! # }
//! ```
//!
//! # Paths
//!
//! Every layer, service, body and rule type is used from here
//! (`tower_warden::mcp::McpPolicyLayer`), and only from here. Each layer with
//! its own response future has a module that holds that future and the
//! layer's design notes, as tower-http's `limit::ResponseFuture`:
//! [`errors::ResponseFuture`], [`policy::ResponseFuture`] and
//! [`session::ResponseFuture`] (with the session defaults).
//! [`HostOrigin`] answers through the crate's [`guard`](crate::guard)
//! future, and [`ShareSessions`] with a [`BoxFuture`](crate::BoxFuture).

mod buffer;
pub mod errors;
pub(crate) mod json;
mod origin;
pub mod policy;
#[cfg(feature = "response-limit")]
pub mod response_limit;
#[cfg(feature = "schema-firewall")]
pub mod schema_firewall;
pub mod session;
mod shared;
pub(crate) mod sse;
#[cfg(feature = "tool-integrity")]
pub mod tool_integrity;

pub use buffer::RequestBody;
pub use errors::{
    body::JsonRpcBody, code::ErrorCode, layer::JsonRpcErrorsLayer, service::JsonRpcErrors,
};
pub use origin::{HostOrigin, HostOriginLayer, LOOPBACK_HOSTS};
pub use policy::{
    body::McpPolicyBody, layer::McpPolicyLayer, rules::ToolPolicy, service::McpPolicy,
};
#[cfg(feature = "response-limit")]
pub use response_limit::{
    ResponseLimit, ResponseLimitBody, ResponseLimitExceeded, ResponseLimitLayer, StreamBudget,
};
pub use session::{
    header::MCP_SESSION_ID, layer::SessionBindingLayer, service::SessionBinding,
    table::SessionTable,
};
pub use shared::{ShareSessions, ShareSessionsLayer, SharedSessions, StoreError};

pub(crate) use origin::{validate_allowed_host, validate_allowed_origin};
