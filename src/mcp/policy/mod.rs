//! Per-tool authorization: [`McpPolicyLayer`](super::McpPolicyLayer)
//! enforces a [`ToolPolicy`](super::ToolPolicy) (which scopes a caller
//! needs to call, and to see, each MCP tool) on `tools/call` requests, and
//! filters `tools/list` answers down to the tools the caller may call.
//!
//! # What it reads and refuses
//!
//! For a `POST` whose `Content-Type` is JSON the layer buffers the body (at
//! most [`max_body_bytes`](super::McpPolicyLayer::max_body_bytes), 4 MiB by default; more is
//! refused with 413 `payload_too_large`) and reads the JSON-RPC message — or
//! every message of a JSON array batch:
//!
//! * it leaves an [`McpCall`](crate::principal::McpCall) (method and tool name) in the request
//!   extensions for the first message that has a method, and the
//!   [`ToolPolicy`](super::ToolPolicy) itself, so that a server's own handlers can consult it;
//! * a `tools/call` whose tool needs scopes the caller's [`Principal`](crate::principal::Principal) lacks
//!   is refused with 403 `insufficient_scope` and
//!   `WWW-Authenticate: Bearer error="insufficient_scope",
//!   error_description="…", scope="<missing scopes>"` (and
//!   `resource_metadata="…"` when the policy
//!   [names one](super::ToolPolicy::resource_metadata)), logged once on the
//!   [audit target](crate::audit). In a batch,
//!   one forbidden call refuses the whole batch. The inner service is not
//!   called;
//! * the answer to a `tools/list` (JSON, or an SSE stream of JSON-RPC
//!   messages) is rewritten so that `result.tools` keeps only the tools the
//!   caller may call (see below).
//!
//! The [`Principal`](crate::principal::Principal) is read from the request extensions, where an
//! authentication layer outside this one put it. A request without one is
//! treated as a caller with no scopes: it may call only the tools that
//! require none. (The anonymous principal of a server without
//! authentication has every scope, `*`.)
//!
//! Bodies that are not JSON POSTs stream through untouched. A body that is
//! not valid JSON is passed on unchanged for the server (or a
//! [`JsonRpcErrorsLayer`](super::JsonRpcErrorsLayer) inside) to answer with
//! a parse error. The inner service receives a [`RequestBody`](super::RequestBody).
//!
//! # Filtering `tools/list`
//!
//! Only the answer to a request that carried a `tools/list` is touched, and
//! only when it is `application/json` or `text/event-stream`; every other
//! answer streams through with no buffering. The answer's `Content-Length`
//! is removed (the length changes). A JSON answer is buffered whole; an
//! event stream is read event by event, every event is passed on
//! byte-for-byte except the one whose JSON-RPC `id` is the `tools/list`
//! request's (its `data` is re-serialized), and once that event has passed
//! the rest of the stream is not looked at. The filtering is done in the
//! response body, so the status and headers reach the client at once.
//!
//! The answer is buffered up to [`max_response_bytes`](super::McpPolicyLayer::max_response_bytes)
//! (4 MiB by default; for an event stream, per event). Past that, or when
//! the answer carries a `Content-Encoding` this layer cannot read, the layer
//! **fails closed**: instead of an unfiltered list the client receives a
//! JSON-RPC error (`-32603`, for the request's id) — the whole JSON body, or
//! one last event that ends the stream. Put compression outside this layer.
//!
//! # Order
//!
//! Inside authentication (it reads the [`Principal`](crate::principal::Principal)) and outside
//! [`JsonRpcErrorsLayer`](super::JsonRpcErrorsLayer), which then still
//! answers malformed bodies with JSON-RPC parse errors.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::mcp::{McpPolicyLayer, RequestBody, ToolPolicy};
//! use tower_warden::principal::{AuthMethod, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = ToolPolicy::new().require("add", ["tools:add"]);
//! let service = ServiceBuilder::new()
//!     .layer(McpPolicyLayer::new(policy))
//!     .service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
//!     });
//!
//! let mut request = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(
//!         br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#,
//!     )))?;
//! let caller = Principal::builder("bob", AuthMethod::ApiKey).scopes(["tools:echo"]).build();
//! request.extensions_mut().insert(caller);
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     "Bearer error=\"insufficient_scope\", error_description=\"tool `add` requires a scope \
//!      the caller was not granted: tools:add\", scope=\"tools:add\""
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! The rules live in [`ToolPolicy`](super::ToolPolicy), the layer and its
//! service in [`McpPolicyLayer`](super::McpPolicyLayer) and
//! [`McpPolicy`](super::McpPolicy), the rewritten answer in
//! [`McpPolicyBody`](super::McpPolicyBody), all re-exported from
//! [`mcp`](super). The response future, [`ResponseFuture`], is reached
//! through this module (as tower-http's `limit::ResponseFuture`).

mod admit;
pub(super) mod body;
mod future;
pub(super) mod layer;
pub(super) mod rules;
pub(super) mod service;
mod tools_list;

pub use future::ResponseFuture;

#[cfg(test)]
mod tests;
