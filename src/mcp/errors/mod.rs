//! JSON-RPC shaped transport errors: [`JsonRpcErrorsLayer`](super::JsonRpcErrorsLayer).
//!
//! The layer makes an MCP Streamable HTTP endpoint answer every transport
//! error as a JSON-RPC error object, and a malformed body as a parse error.
//!
//! MCP clients read the JSON-RPC `error` of a failed POST; a plain-text body
//! (`Bad Request: Session ID is required`, `Unsupported Media Type`) leaves
//! them with nothing to show. This layer:
//!
//! * buffers the body of a `POST` whose `Content-Type` is JSON (at most
//!   [`max_body_bytes`](super::JsonRpcErrorsLayer::max_body_bytes), 4 MiB by default — put a
//!   `BodyLimitLayer` outside for the real cap) and answers
//!   `400 {"error":{"code":-32700,...}}` when it is not one JSON text;
//!   nothing malformed reaches the inner service;
//! * rewrites every 4xx/5xx answer of the inner service that is not already
//!   JSON into a JSON-RPC error object, keeping the status and headers
//!   (`Allow`, ...). The code follows the status ([`ErrorCode::for_status`](super::ErrorCode::for_status));
//!   the message is the inner text (first 1 KiB), except for 5xx answers,
//!   whose text may carry internals and is replaced by `Internal error`. A
//!   415 for a body that *is* JSON (a transport that could not decode the
//!   message) becomes `400` with `-32600`. The `id` is the request's, when
//!   the layer read it.
//!
//! JSON answers (JSON-RPC errors of the transport, `application/problem+json`
//! rejections of the guard layers) and successful answers pass untouched.
//!
//! The inner service receives a [`RequestBody`](super::RequestBody).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::mcp::{JsonRpcErrorsLayer, RequestBody};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(JsonRpcErrorsLayer::new())
//!     .service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
//!     });
//!
//! let request = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(b"{\"jsonrpc\":")))?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! let body = response.into_body().collect().await?.to_bytes();
//! assert!(body.starts_with(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700"#));
//! # Ok(())
//! # }
//! ```
//!
//! Its response future is [`ResponseFuture`], reached through this module
//! (as tower-http's `limit::ResponseFuture`); the layer, its service and
//! its body are re-exported from [`mcp`](super).

pub(super) mod body;
pub(super) mod code;
mod future;
pub(super) mod layer;
pub(super) mod service;

pub use future::ResponseFuture;

#[cfg(test)]
mod tests;
