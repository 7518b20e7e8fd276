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

mod errors;
mod json;
mod origin;

pub use errors::{
    ErrorCode, JsonRpcBody, JsonRpcErrors, JsonRpcErrorsLayer, RequestBody, ResponseFuture,
};
pub use origin::{HostOrigin, HostOriginLayer, LOOPBACK_HOSTS};

pub(crate) use origin::{validate_allowed_host, validate_allowed_origin};
