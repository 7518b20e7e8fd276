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
//!
//! Both are plain Tower layers, generic over request and response bodies,
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

mod errors;
mod json;
mod origin;
pub mod session;

pub use errors::{
    ErrorCode, JsonRpcBody, JsonRpcErrors, JsonRpcErrorsLayer, RequestBody, ResponseFuture,
};
pub use origin::{HostOrigin, HostOriginLayer, LOOPBACK_HOSTS};
pub use session::{MCP_SESSION_ID, SessionBinding, SessionBindingLayer, SessionTable};

pub(crate) use origin::{validate_allowed_host, validate_allowed_origin};
