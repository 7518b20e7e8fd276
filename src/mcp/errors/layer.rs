//! [`JsonRpcErrorsLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::service::{Config, JsonRpcErrors};

/// The largest body buffered by default: 4 MiB.
const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Answers every transport error of an MCP Streamable HTTP endpoint as a
/// JSON-RPC error object, and a malformed JSON body as a parse error
/// (`400`, `-32700`); see the [module docs](super) for what is rewritten.
///
/// Place it innermost, just outside the MCP service; the inner service
/// receives a [`RequestBody`](crate::mcp::RequestBody).
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::{BodyExt, Full};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_warden::mcp::{JsonRpcErrorsLayer, RequestBody};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let service = ServiceBuilder::new()
///     .layer(JsonRpcErrorsLayer::new().max_body_bytes(1024 * 1024))
///     .service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
///     });
///
/// let request = Request::post("/mcp")
///     .header("content-type", "application/json")
///     .body(Full::new(Bytes::from_static(b"not json")))?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct JsonRpcErrorsLayer {
    config: Arc<Config>,
}

impl Default for JsonRpcErrorsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonRpcErrorsLayer {
    /// Buffers JSON bodies up to 4 MiB.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            }),
        }
    }

    /// The largest body this layer buffers; a longer one is answered with
    /// 413 and `-32000`.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        Arc::make_mut(&mut self.config).max_body_bytes = max;
        self
    }
}

impl JsonRpcErrors<()> {
    /// The layer that makes this service; see [`JsonRpcErrorsLayer::new`].
    pub fn layer() -> JsonRpcErrorsLayer {
        JsonRpcErrorsLayer::new()
    }
}

impl<S> Layer<S> for JsonRpcErrorsLayer {
    type Service = JsonRpcErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonRpcErrors::new(inner, Arc::clone(&self.config))
    }
}
