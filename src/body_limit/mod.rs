//! Cap request bodies, with a clean 413 whether or not the client declared a
//! length.
//!
//! A client that streams a gigabyte at a JSON endpoint should cost you the
//! cap, not the gigabyte. [`BodyLimitLayer`] enforces a byte limit in two
//! places:
//!
//! * **Before the service runs**: a `Content-Length` (or a known body size)
//!   over the cap is answered with 413 at once; the inner service is never
//!   called and the body is never read.
//! * **While the body streams** (chunked uploads, HTTP/2 without a length, a
//!   `Content-Length` that lies): the body handed to the service stops with an
//!   error at the cap (the same `http_body_util::LengthLimitError` axum's
//!   extractors already turn into 413), and whatever response the service
//!   then produces — a 400, a 500, even a 200 from a handler that swallowed
//!   the error — is replaced by this layer's 413 `payload_too_large`, with
//!   `Connection: close` on HTTP/1 since the rest of the upload is still on
//!   the wire. The client always sees the same answer for the same cause.
//!
//! gRPC callers get `RESOURCE_EXHAUSTED`.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{BoxError, ServiceBuilder, ServiceExt};
//! use tower_warden::body_limit::{BodyLimitLayer, LimitedBody};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let service = ServiceBuilder::new()
//!     .layer(BodyLimitLayer::new(16))
//!     .service_fn(|req: Request<LimitedBody<Full<Bytes>>>| async move {
//!         // However the handler treats the error, the client gets 413.
//!         let _ = req.into_body().collect().await;
//!         Ok::<_, BoxError>(Response::new(Full::new(Bytes::from("ok"))))
//!     });
//!
//! let request = Request::new(Full::new(Bytes::from(vec![b'x'; 64])));
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # Ok(())
//! # }
//! ```
//!
//! # Caveats
//!
//! The streamed check replaces the response only if the body overflowed
//! before the service returned its response: a handler that answers first and
//! reads the body afterwards (rare; for example a streaming echo) sees the
//! error but its response is already on its way. The request body type seen
//! by the inner service becomes [`LimitedBody`]; in a tonic server add
//! `tower::util::MapRequestLayer::new(|r: http::Request<_>| r.map(tonic::body::Body::new))`
//! after this layer so the routes receive tonic's body type again.

mod body;
mod future;
mod layer;
mod service;

pub use body::LimitedBody;
pub use future::ResponseFuture;
pub use layer::BodyLimitLayer;
pub use service::BodyLimit;

#[cfg(test)]
mod tests;
