//! JSON-RPC shaped transport errors.

use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::json;
use crate::body::ResponseBody;

/// JSON-RPC 2.0 and MCP error codes used by [`JsonRpcErrorsLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `-32700`: the body is not JSON.
    ParseError,
    /// `-32600`: the message is not a request this server accepts.
    InvalidRequest,
    /// `-32603`: the server failed.
    InternalError,
    /// `-32000`: a transport-level refusal (wrong method, media type, size).
    ServerError,
    /// `-32001`: the session named by `Mcp-Session-Id` does not exist.
    SessionNotFound,
}

impl ErrorCode {
    /// The numeric code.
    #[must_use]
    pub const fn code(self) -> i32 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::InternalError => -32603,
            Self::ServerError => -32000,
            Self::SessionNotFound => -32001,
        }
    }

    /// The code a plain-text error answer with `status` is given.
    #[must_use]
    pub const fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::InvalidRequest,
            404 => Self::SessionNotFound,
            500..=599 => Self::InternalError,
            _ => Self::ServerError,
        }
    }
}

/// The most of an inner plain-text error message that is kept.
const MAX_MESSAGE_BYTES: usize = 1024;

#[derive(Clone, Debug)]
struct Config {
    max_body_bytes: usize,
}

/// Makes an MCP Streamable HTTP endpoint answer every transport error as a
/// JSON-RPC error object, and a malformed body as a parse error.
///
/// MCP clients read the JSON-RPC `error` of a failed POST; a plain-text body
/// (`Bad Request: Session ID is required`, `Unsupported Media Type`) leaves
/// them with nothing to show. This layer:
///
/// * buffers the body of a `POST` whose `Content-Type` is JSON (at most
///   [`max_body_bytes`](Self::max_body_bytes), 4 MiB by default — put a
///   `BodyLimitLayer` outside for the real cap) and answers
///   `400 {"error":{"code":-32700,...}}` when it is not one JSON text;
///   nothing malformed reaches the inner service;
/// * rewrites every 4xx/5xx answer of the inner service that is not already
///   JSON into a JSON-RPC error object, keeping the status and headers
///   (`Allow`, ...). The code follows the status ([`ErrorCode::for_status`]);
///   the message is the inner text (first 1 KiB), except for 5xx answers,
///   whose text may carry internals and is replaced by `Internal error`. A
///   415 for a body that *is* JSON (a transport that could not decode the
///   message) becomes `400` with `-32600`. The `id` is the request's, when
///   the layer read it.
///
/// JSON answers (JSON-RPC errors of the transport, `application/problem+json`
/// rejections of the guard layers) and successful answers pass untouched.
///
/// The inner service receives a [`RequestBody`].
///
/// # Example
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
///     .layer(JsonRpcErrorsLayer::new())
///     .service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
///     });
///
/// let request = Request::post("/mcp")
///     .header("content-type", "application/json")
///     .body(Full::new(Bytes::from_static(b"{\"jsonrpc\":")))?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// let body = response.into_body().collect().await?.to_bytes();
/// assert!(body.starts_with(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700"#));
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
                max_body_bytes: 4 * 1024 * 1024,
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

impl<S> Layer<S> for JsonRpcErrorsLayer {
    type Service = JsonRpcErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonRpcErrors {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`JsonRpcErrorsLayer`].
#[derive(Clone, Debug)]
pub struct JsonRpcErrors<S> {
    inner: S,
    config: Arc<Config>,
}

pub(super) fn is_json_media_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype.is_char_boundary(subtype.len() - 5)
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JsonRpcErrors<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
{
    type Response = Response<JsonRpcBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method() == Method::POST && is_json_media_type(request.headers()) {
            let clone = self.inner.clone();
            let service = mem::replace(&mut self.inner, clone);
            let (parts, body) = request.into_parts();
            return ResponseFuture {
                state: State::Buffering {
                    body: Buffered::new(body, self.config.max_body_bytes),
                    parts: Some(parts),
                    service: Some(service),
                },
                json_body: true,
                id: None,
            };
        }
        let future = self.inner.call(request.map(RequestBody::streaming));
        ResponseFuture {
            state: State::Calling { future },
            json_body: false,
            id: None,
        }
    }
}

pin_project! {
    /// Response future of [`JsonRpcErrors`]: reads a JSON body, then awaits
    /// the inner service. Never boxed.
    pub struct ResponseFuture<S, B, F> {
        #[pin]
        state: State<S, B, F>,
        json_body: bool,
        id: Option<String>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Buffering {
            #[pin]
            body: Buffered<B>,
            parts: Option<Parts>,
            service: Option<S>,
        },
        Calling { #[pin] future: F },
        Answered { response: Option<Response<Bytes>> },
    }
}

impl<S, B, F> std::fmt::Debug for ResponseFuture<S, B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Buffering { .. } => "buffering",
            State::Calling { .. } => "calling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// A complete JSON-RPC error response built by this layer.
pub(super) fn error_response(
    status: StatusCode,
    id: Option<&str>,
    code: ErrorCode,
    message: &str,
) -> Response<Bytes> {
    let body = Bytes::from(json::error_object(id, code.code(), message));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The answer to a request body that could not be read.
pub(super) fn unreadable_body() -> Response<Bytes> {
    error_response(
        StatusCode::BAD_REQUEST,
        None,
        ErrorCode::InvalidRequest,
        "Invalid Request: the request body could not be read",
    )
}

/// The answer when the layer itself failed.
pub(super) fn internal_error() -> Response<Bytes> {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        ErrorCode::InternalError,
        "Internal error",
    )
}

pin_project! {
    /// A request body being read into memory, up to a limit.
    pub(super) struct Buffered<B> {
        #[pin]
        body: B,
        buffer: BytesMut,
        limit: usize,
    }
}

/// Why a [`Buffered`] body was not read whole.
pub(super) enum Unread {
    /// It is longer than the limit.
    TooLarge,
    /// The body failed.
    Unreadable,
}

impl<B: Body> Buffered<B> {
    pub(super) fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            buffer: BytesMut::new(),
            limit,
        }
    }

    /// Reads data frames (trailers are dropped) until the body ends.
    pub(super) fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, Unread>> {
        let mut this = self.project();
        loop {
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.remaining() > this.limit.saturating_sub(this.buffer.len()) {
                        return Poll::Ready(Err(Unread::TooLarge));
                    }
                    this.buffer.put(data);
                }
                Some(Err(_)) => return Poll::Ready(Err(Unread::Unreadable)),
                None => return Poll::Ready(Ok(mem::take(this.buffer).freeze())),
            }
        }
    }
}

impl<S, B, F, ResBody, E> std::future::Future for ResponseFuture<S, B, F>
where
    S: Service<Request<RequestBody<B>>, Future = F>,
    F: std::future::Future<Output = Result<Response<ResBody>, E>>,
    B: Body,
{
    type Output = Result<Response<JsonRpcBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Buffering {
                    body,
                    parts,
                    service,
                } => match ready!(body.poll_read(cx)) {
                    Err(Unread::TooLarge) => State::Answered {
                        response: Some(error_response(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            None,
                            ErrorCode::ServerError,
                            "Payload Too Large: the request body is too large",
                        )),
                    },
                    Err(Unread::Unreadable) => State::Answered {
                        response: Some(unreadable_body()),
                    },
                    Ok(bytes) => match (json::check(&bytes), parts.take(), service.take()) {
                        (Some(peek), Some(parts), Some(mut service)) => {
                            *this.id = peek.id;
                            let request = Request::from_parts(parts, RequestBody::full(bytes));
                            State::Calling {
                                future: service.call(request),
                            }
                        }
                        (None, _, _) => State::Answered {
                            response: Some(error_response(
                                StatusCode::BAD_REQUEST,
                                None,
                                ErrorCode::ParseError,
                                "Parse error: the request body is not valid JSON",
                            )),
                        },
                        _ => State::Answered {
                            response: Some(internal_error()),
                        },
                    },
                },
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(shape(response, *this.json_body, this.id.as_deref())));
                }
                StateProj::Answered { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(JsonRpcBody::fixed)));
                }
            };
            this.state.set(next);
        }
    }
}

/// Rewrites a plain-text error answer into a JSON-RPC error object.
fn shape<B>(response: Response<B>, json_body: bool, id: Option<&str>) -> Response<JsonRpcBody<B>> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json_media_type(response.headers())
    {
        return response.map(JsonRpcBody::inner);
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status.is_server_error() {
        let bytes = json::error_object(id, ErrorCode::InternalError.code(), "Internal error");
        return Response::from_parts(parts, JsonRpcBody::fixed(Bytes::from(bytes)));
    }
    let undecodable = status == StatusCode::UNSUPPORTED_MEDIA_TYPE && json_body;
    let code = if undecodable {
        // The body was JSON, so the transport could not decode the message.
        parts.status = StatusCode::BAD_REQUEST;
        ErrorCode::InvalidRequest
    } else {
        ErrorCode::for_status(status)
    };
    let mut prefix = json::error_prefix(id, code.code());
    if undecodable {
        prefix.extend_from_slice(b"Invalid Request: ");
    }
    let prefix = Bytes::from(prefix);
    Response::from_parts(
        parts,
        JsonRpcBody {
            kind: Kind::Wrapping {
                body,
                prefix,
                message: Vec::new(),
                fallback: status.canonical_reason().unwrap_or("Error"),
            },
        },
    )
}

pin_project! {
    /// Request body handed to the service inside [`JsonRpcErrorsLayer`]: the
    /// buffered JSON body of a POST, or the original body.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        kind: RequestKind<B>,
    }
}

pin_project! {
    #[project = RequestKindProj]
    #[derive(Debug)]
    enum RequestKind<B> {
        Full { bytes: Option<Bytes> },
        Streaming { #[pin] body: B },
    }
}

impl<B> RequestBody<B> {
    /// A body of `bytes`, already read.
    #[must_use]
    pub fn full(bytes: Bytes) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        Self {
            kind: RequestKind::Full { bytes },
        }
    }

    /// The original body, streamed through.
    #[must_use]
    pub fn streaming(body: B) -> Self {
        Self {
            kind: RequestKind::Streaming { body },
        }
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            RequestKindProj::Full { bytes } => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes))))
            }
            RequestKindProj::Streaming { body } => {
                let frame = ready!(body.poll_frame(cx));
                Poll::Ready(frame.map(|result| {
                    result.map(|frame| {
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    })
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Full { bytes } => bytes.is_none(),
            RequestKind::Streaming { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Full { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestKind::Streaming { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// Response body of [`JsonRpcErrors`]: the inner body, a JSON-RPC error
    /// object wrapped around the inner error text, or one built by the layer.
    #[derive(Debug)]
    pub struct JsonRpcBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Plain { #[pin] body: ResponseBody<B> },
        Wrapping {
            #[pin]
            body: B,
            prefix: Bytes,
            message: Vec<u8>,
            fallback: &'static str,
        },
    }
}

impl<B> JsonRpcBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: Kind::Plain {
                body: ResponseBody::inner(body),
            },
        }
    }

    fn fixed(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Plain {
                body: ResponseBody::rejection(bytes),
            },
        }
    }
}

/// The JSON-RPC error object around `message` (lossy UTF-8, trimmed).
fn finish(prefix: &[u8], message: &[u8], fallback: &str) -> Bytes {
    let text = String::from_utf8_lossy(message);
    let text = text.trim();
    let text = if text.is_empty() { fallback } else { text };
    let mut out = Vec::with_capacity(prefix.len() + text.len() + 8);
    out.extend_from_slice(prefix);
    json::escape_into(&mut out, text.as_bytes());
    out.extend_from_slice(json::ERROR_SUFFIX);
    Bytes::from(out)
}

impl<B> Body for JsonRpcBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let done = match self.as_mut().project().kind.project() {
            KindProj::Plain { body } => return body.poll_frame(cx),
            KindProj::Wrapping {
                mut body,
                prefix,
                message,
                fallback,
            } => loop {
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = MAX_MESSAGE_BYTES.saturating_sub(message.len());
                            message.extend_from_slice(&data[..data.len().min(room)]);
                            if message.len() >= MAX_MESSAGE_BYTES {
                                break finish(prefix, message, fallback);
                            }
                        }
                    }
                    Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                    None => break finish(prefix, message, fallback),
                }
            },
        };
        self.project().kind.set(Kind::Plain {
            body: ResponseBody::default(),
        });
        Poll::Ready(Some(Ok(Frame::data(done))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Wrapping { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Wrapping { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tower::{ServiceBuilder, ServiceExt};

    /// An inner service that echoes the body it got, or answers with the
    /// status and plain text named by the `x-answer` header.
    async fn inner(
        request: Request<RequestBody<Full<Bytes>>>,
    ) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
        if let Some(answer) = request.headers().get("x-answer") {
            let answer = String::from_utf8_lossy(answer.as_bytes()).into_owned();
            let (status, text) = answer.split_once(' ').unwrap();
            let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
            *response.status_mut() = status.parse().unwrap();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
            return Ok(response);
        }
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let mut response = Response::new(Full::new(body));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }

    async fn call(
        layer: JsonRpcErrorsLayer,
        request: Request<Full<Bytes>>,
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let service = ServiceBuilder::new().layer(layer).service_fn(inner);
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (parts.status, parts.headers, value)
    }

    fn post(_body: &str) -> http::request::Builder {
        Request::post("/mcp").header(CONTENT_TYPE, "application/json; charset=utf-8")
    }

    #[tokio::test]
    async fn malformed_json_is_a_parse_error() {
        for body in ["", "{", "not json", "{\"jsonrpc\":\"2.0\",}"] {
            let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
            let (status, headers, value) = call(JsonRpcErrorsLayer::new(), request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(headers[CONTENT_TYPE], "application/json");
            assert_eq!(value["jsonrpc"], "2.0");
            assert_eq!(value["id"], serde_json::Value::Null);
            assert_eq!(value["error"]["code"], -32700);
        }
    }

    #[tokio::test]
    async fn numbers_beyond_f64_are_a_parse_error_before_the_inner_service() {
        // Valid JSON grammar that `serde_json` (and so the service) cannot
        // read: answered here, never passed on (the inner service echoes).
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":1e400}}"#,
            r#"{"jsonrpc":"2.0","id":11111E711,"method":"ping"}"#,
            // The same for a lone surrogate escape.
            r#"{"jsonrpc":"2.0","id":"\ud9dd&","method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\udc00":1}}"#,
        ] {
            let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
            let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(value["error"]["code"], -32700, "{body}");
            assert_eq!(value["id"], serde_json::Value::Null, "{body}");
            assert!(
                value.get("method").is_none(),
                "reached the service: {value}"
            );
        }
    }

    #[tokio::test]
    async fn well_formed_bodies_reach_the_inner_service() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
        let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value["method"], "ping");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_before_the_inner_service() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
        let (status, _, value) = call(JsonRpcErrorsLayer::new().max_body_bytes(8), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(value["error"]["code"], -32000);
    }

    #[tokio::test]
    async fn plain_text_errors_become_json_rpc_errors() {
        for (answer, status, code) in [
            ("400 Bad Request: Session ID is required", 400, -32600),
            ("404 Not Found: Session not found", 404, -32001),
            ("405 Method Not Allowed", 405, -32000),
            ("406 Not Acceptable: \"both\"", 406, -32000),
            ("500 secret internals", 500, -32603),
        ] {
            let request = Request::get("/mcp")
                .header("x-answer", answer)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let (got, headers, value) = call(JsonRpcErrorsLayer::new(), request).await;
            assert_eq!(got.as_u16(), status, "{answer}");
            assert_eq!(headers[CONTENT_TYPE], "application/json");
            assert!(headers.get(CONTENT_LENGTH).is_none());
            assert_eq!(value["error"]["code"], code, "{answer}");
            let message = value["error"]["message"].as_str().unwrap();
            if status == 500 {
                assert_eq!(message, "Internal error");
            } else {
                assert_eq!(message, answer.split_once(' ').unwrap().1);
            }
        }
    }

    #[tokio::test]
    async fn undecodable_json_messages_are_invalid_requests_with_their_id() {
        let body = r#"{"jsonrpc":"2.0","id":"abc","nonsense":true}"#;
        let request = post(body)
            .header("x-answer", "415 fail to deserialize")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(value["id"], "abc");
        assert_eq!(value["error"]["code"], -32600);
        assert_eq!(
            value["error"]["message"],
            "Invalid Request: fail to deserialize"
        );
    }

    #[tokio::test]
    async fn wrong_media_type_stays_415_with_a_json_body() {
        let request = Request::post("/mcp")
            .header(CONTENT_TYPE, "text/plain")
            .header("x-answer", "415 Unsupported Media Type")
            .body(Full::new(Bytes::from("{")))
            .unwrap();
        let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(value["error"]["code"], -32000);
    }

    #[tokio::test]
    async fn long_and_empty_messages_are_bounded() {
        let long = format!("400 {}", "é".repeat(2000));
        let request = Request::get("/mcp")
            .header(
                "x-answer",
                HeaderValue::from_bytes(long.as_bytes()).unwrap(),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (_, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
        let message = value["error"]["message"].as_str().unwrap();
        assert!(message.len() <= MAX_MESSAGE_BYTES + 3);
        let request = Request::get("/mcp")
            .header("x-answer", "409 ")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (_, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(value["error"]["message"], "Conflict");
    }

    #[test]
    fn json_media_types() {
        let headers = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            h
        };
        assert!(is_json_media_type(&headers("application/json")));
        assert!(is_json_media_type(&headers(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json_media_type(&headers("application/problem+json")));
        assert!(!is_json_media_type(&headers("text/event-stream")));
        assert!(!is_json_media_type(&headers("application/jsonx")));
        assert!(!is_json_media_type(&headers("+json")));
        assert!(!is_json_media_type(&HeaderMap::new()));
    }
}
