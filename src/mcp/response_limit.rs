//! Caps on what a service answers: [`ResponseLimitLayer`].
//!
//! An MCP gateway forwards what its upstream servers answer, and an
//! upstream can answer too much: a JSON body of gigabytes, an event stream
//! that never ends, one event of a hundred megabytes, or a flood of small
//! events. Each ties up the gateway's memory and the caller's model. This
//! layer caps every response it wraps:
//!
//! | limit | default | over it |
//! |---|---|---|
//! | [body bytes](ResponseLimitLayer::max_body_bytes) (any response but an event stream) | 10 MiB | a declared length over it: the answer is replaced by a JSON-RPC error (502); a streamed body: it ends with an error (the connection is cut, never a silently shortened body) |
//! | [bytes per event](ResponseLimitLayer::max_event_bytes) (`text/event-stream`) | 1 MiB | the stream ends with a JSON-RPC error event |
//! | [bytes per stream](ResponseLimitLayer::max_stream_bytes) | 64 MiB | the same |
//! | [events per stream](ResponseLimitLayer::max_events) | 10,000 | the same |
//! | [duration](ResponseLimitLayer::max_duration), from the response head | 10 minutes | the same (a body that is not an event stream ends with an error) |
//!
//! An event stream is passed on whole events at a time (an event is
//! forwarded once its closing blank line has arrived), so a cut never
//! leaves half an event: the caller sees complete events, then one last
//! event whose data is a JSON-RPC error response
//! (`{"jsonrpc":"2.0","id":…,"error":{"code":-32000,"message":…}}`), then
//! the end of the stream. Its `id` is the request's when an
//! [`McpCall`] with an [id](McpCall::id) is in the request extensions
//! (put there by [`McpPolicyLayer`](super::McpPolicyLayer)), otherwise
//! `null`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::mcp::ResponseLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(ResponseLimitLayer::new().max_body_bytes(16).max_duration(Duration::from_secs(30)))
//!     .service_fn(|_: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; 1024]))))
//!     });
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! // A declared length over the cap: the answer is replaced.
//! assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(body.starts_with(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000"#));
//! # }
//! ```
//!
//! Put it where the answers come in: around the client that calls an
//! upstream, or around a service whose answers you do not control.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::ErrorCode;
use super::json::error_object;
use super::sse::{Scan, is_event_stream};
use crate::principal::McpCall;

/// The error a capped body ends with (its `Display` says which limit).
type BoxError = Box<dyn StdError + Send + Sync>;

/// Which limit a response went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseLimitExceeded {
    /// The body (not an event stream) is larger than
    /// [`max_body_bytes`](ResponseLimitLayer::max_body_bytes).
    Body,
    /// One event is larger than
    /// [`max_event_bytes`](ResponseLimitLayer::max_event_bytes).
    Event,
    /// The stream is larger than
    /// [`max_stream_bytes`](ResponseLimitLayer::max_stream_bytes).
    Stream,
    /// The stream has more events than
    /// [`max_events`](ResponseLimitLayer::max_events).
    Events,
    /// The response lasted longer than
    /// [`max_duration`](ResponseLimitLayer::max_duration).
    Duration,
}

impl ResponseLimitExceeded {
    /// Every limit.
    pub const ALL: [Self; 5] = [
        Self::Body,
        Self::Event,
        Self::Stream,
        Self::Events,
        Self::Duration,
    ];

    /// The JSON-RPC error response a cut answer ends with:
    /// `{"jsonrpc":"2.0","id":…,"error":{"code":-32000,"message":…}}`, the
    /// message saying which limit. `id` is the request's id as JSON text
    /// (`"7"`, `"\"a\""`); `None` writes `null`.
    #[must_use]
    pub fn json_rpc_error(self, id: Option<&str>) -> Vec<u8> {
        error_object(id, ErrorCode::ServerError.code(), self.message())
    }

    /// The limit whose message (the `Display` text, and the `message` of
    /// [`json_rpc_error`](Self::json_rpc_error)) is `message`: what a client
    /// reading a cut answer learns from the error it ends with.
    #[must_use]
    pub fn from_message(message: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|limit| limit.message() == message)
    }

    fn message(self) -> &'static str {
        match self {
            Self::Body => "the answer is larger than this server forwards",
            Self::Event => "an event of the answer is larger than this server forwards",
            Self::Stream => "the answer stream is larger than this server forwards",
            Self::Events => "the answer stream has more events than this server forwards",
            Self::Duration => "the answer lasted longer than this server waits",
        }
    }
}

impl fmt::Display for ResponseLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl StdError for ResponseLimitExceeded {}

/// One event stream counted against the limits of a
/// [`ResponseLimitLayer`] ([`ResponseLimitLayer::stream_budget`]): for code
/// that receives events already split (an MCP client's event stream, say)
/// and caps them as the layer caps the bytes it forwards.
///
/// ```
/// use tower_warden::mcp::{ResponseLimitExceeded, ResponseLimitLayer};
///
/// let mut budget = ResponseLimitLayer::new().max_events(2).stream_budget();
/// assert_eq!(budget.admit(100), Ok(()));
/// assert_eq!(budget.admit(100), Ok(()));
/// assert_eq!(budget.admit(100), Err(ResponseLimitExceeded::Events));
/// ```
#[derive(Clone, Debug)]
pub struct StreamBudget {
    limits: Limits,
    events: u64,
    bytes: u64,
}

impl StreamBudget {
    /// Counts one event of `bytes`, or answers the limit it would cross
    /// (then it is not counted): the event size, the number of events,
    /// the bytes of the stream, checked in that order.
    ///
    /// # Errors
    ///
    /// The limit the event would cross.
    pub fn admit(&mut self, bytes: usize) -> Result<(), ResponseLimitExceeded> {
        if bytes > self.limits.event_bytes {
            return Err(ResponseLimitExceeded::Event);
        }
        if self.events >= self.limits.events {
            return Err(ResponseLimitExceeded::Events);
        }
        if self.bytes + bytes as u64 > self.limits.stream_bytes {
            return Err(ResponseLimitExceeded::Stream);
        }
        self.events += 1;
        self.bytes += bytes as u64;
        Ok(())
    }

    /// The largest event, in bytes.
    #[must_use]
    pub fn max_event_bytes(&self) -> usize {
        self.limits.event_bytes
    }

    /// How long the stream may last.
    #[must_use]
    pub fn max_duration(&self) -> Duration {
        self.limits.duration
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Limits {
    body_bytes: u64,
    event_bytes: usize,
    stream_bytes: u64,
    events: u64,
    duration: Duration,
}

/// Caps response bodies and event streams; see the [module docs](self).
///
/// Clones share their limits.
#[derive(Clone, Debug)]
#[must_use]
pub struct ResponseLimitLayer {
    limits: Arc<Limits>,
}

impl Default for ResponseLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseLimitLayer {
    /// The default limits: 10 MiB per body, 1 MiB per event, 64 MiB and
    /// 10,000 events per stream, 10 minutes.
    pub fn new() -> Self {
        Self {
            limits: Arc::new(Limits {
                body_bytes: 10 << 20,
                event_bytes: 1 << 20,
                stream_bytes: 64 << 20,
                events: 10_000,
                duration: Duration::from_secs(600),
            }),
        }
    }

    fn set(mut self, f: impl FnOnce(&mut Limits)) -> Self {
        f(Arc::make_mut(&mut self.limits));
        self
    }

    /// The largest body, in bytes, of a response that is not an event
    /// stream.
    pub fn max_body_bytes(self, bytes: u64) -> Self {
        self.set(|l| l.body_bytes = bytes)
    }

    /// The largest event of an event stream, in bytes (its lines and the
    /// blank line that ends it).
    pub fn max_event_bytes(self, bytes: usize) -> Self {
        self.set(|l| l.event_bytes = bytes)
    }

    /// The most bytes one event stream may carry.
    pub fn max_stream_bytes(self, bytes: u64) -> Self {
        self.set(|l| l.stream_bytes = bytes)
    }

    /// The most events one event stream may carry.
    pub fn max_events(self, events: u64) -> Self {
        self.set(|l| l.events = events)
    }

    /// How long a response body may last, from its head. `Duration::MAX`
    /// sets no limit.
    pub fn max_duration(self, duration: Duration) -> Self {
        self.set(|l| l.duration = duration)
    }

    /// A fresh count of one event stream against these limits.
    #[must_use]
    pub fn stream_budget(&self) -> StreamBudget {
        StreamBudget {
            limits: Limits::clone(&self.limits),
            events: 0,
            bytes: 0,
        }
    }
}

impl<S> Layer<S> for ResponseLimitLayer {
    type Service = ResponseLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseLimit {
            inner,
            limits: Arc::clone(&self.limits),
        }
    }
}

/// The service of [`ResponseLimitLayer`].
#[derive(Clone, Debug)]
pub struct ResponseLimit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl ResponseLimit<()> {
    /// A [`ResponseLimitLayer`] with the default limits.
    pub fn layer() -> ResponseLimitLayer {
        ResponseLimitLayer::new()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseLimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let id = request
            .extensions()
            .get::<McpCall>()
            .and_then(McpCall::id)
            .map(Box::<str>::from);
        ResponseFuture {
            inner: self.inner.call(request),
            limits: Some((Arc::clone(&self.limits), id)),
        }
    }
}

pin_project! {
    /// The response future of [`ResponseLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        limits: Option<(Arc<Limits>, Option<Box<str>>)>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseLimitBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let (limits, id) = this
            .limits
            .take()
            .expect("ResponseFuture polled after it completed");
        Poll::Ready(Ok(limit(response, &limits, id)))
    }
}

/// `response` with its body capped by `limits`.
fn limit<B: Body>(
    response: Response<B>,
    limits: &Limits,
    id: Option<Box<str>>,
) -> Response<ResponseLimitBody<B>> {
    let (mut parts, body) = response.into_parts();
    let deadline = Instant::now()
        .checked_add(limits.duration)
        .map(|at| Box::pin(tokio::time::sleep_until(at)));
    let kind = if is_event_stream(&parts.headers) {
        Kind::Events(Box::new(Events {
            pending: BytesMut::new(),
            scan: Scan::default(),
            budget: StreamBudget {
                limits: limits.clone(),
                events: 0,
                bytes: 0,
            },
            id,
            ending: None,
            done: false,
        }))
    } else {
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            .max(body.size_hint().lower());
        if declared > limits.body_bytes {
            let answer = Bytes::from(ResponseLimitExceeded::Body.json_rpc_error(id.as_deref()));
            parts.status = StatusCode::BAD_GATEWAY;
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            parts.headers.remove(http::header::CONTENT_ENCODING);
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(answer.len()));
            Kind::Replaced(Some(answer))
        } else {
            Kind::Plain {
                seen: 0,
                max: limits.body_bytes,
            }
        }
    };
    Response::from_parts(
        parts,
        ResponseLimitBody {
            inner: body,
            kind,
            deadline,
        },
    )
}

pin_project! {
    /// The body of a [`ResponseLimit`] response: the inner body, capped.
    /// `Unpin` when the inner body is.
    pub struct ResponseLimitBody<B> {
        #[pin]
        inner: B,
        kind: Kind,
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> fmt::Debug for ResponseLimitBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseLimitBody").finish_non_exhaustive()
    }
}

enum Kind {
    /// Counted against the body limit.
    Plain { seen: u64, max: u64 },
    /// An event stream, passed on whole events at a time.
    Events(Box<Events>),
    /// The answer that replaced an over-long body.
    Replaced(Option<Bytes>),
}

struct Events {
    /// Bytes of events not yet complete.
    pending: BytesMut,
    /// How far `pending` has been searched for the end of an event.
    scan: Scan,
    budget: StreamBudget,
    id: Option<Box<str>>,
    /// The error event still to send.
    ending: Option<Bytes>,
    done: bool,
}

impl Events {
    /// Takes in `data`; returns the complete events it may pass on, and
    /// sets `ending` when a limit is crossed.
    fn push(&mut self, data: &[u8]) -> Option<Bytes> {
        self.pending.extend_from_slice(data);
        let mut ready = 0;
        let mut crossed = None;
        while let Some(len) = self.scan.complete_event(&self.pending[ready..]) {
            if let Err(limit) = self.budget.admit(len) {
                crossed = Some(limit);
                break;
            }
            ready += len;
        }
        if crossed.is_none() && self.pending.len() - ready > self.budget.max_event_bytes() {
            crossed = Some(ResponseLimitExceeded::Event);
        }
        let out = self.pending.split_to(ready).freeze();
        if let Some(crossed) = crossed {
            self.end(crossed);
        }
        (!out.is_empty()).then_some(out)
    }

    /// Ends the stream with the error event for `crossed`.
    fn end(&mut self, crossed: ResponseLimitExceeded) {
        self.pending = BytesMut::new();
        self.scan = Scan::default();
        let mut event = b"event: message\ndata: ".to_vec();
        event.extend_from_slice(&crossed.json_rpc_error(self.id.as_deref()));
        event.extend_from_slice(b"\n\n");
        self.ending = Some(Bytes::from(event));
        tracing::warn!(limit = ?crossed, "response limit: an event stream was cut");
    }
}

impl<B> Body for ResponseLimitBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let expired = this
            .deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
        match this.kind {
            Kind::Replaced(answer) => Poll::Ready(answer.take().map(|a| Ok(Frame::data(a)))),
            Kind::Plain { seen, max } => {
                if expired {
                    *this.deadline = None;
                    return Poll::Ready(Some(Err(ResponseLimitExceeded::Duration.into())));
                }
                match ready!(this.inner.poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            *seen += data.len() as u64;
                            if *seen > *max {
                                tracing::warn!(
                                    limit = ?ResponseLimitExceeded::Body,
                                    "response limit: a body was cut"
                                );
                                return Poll::Ready(Some(Err(ResponseLimitExceeded::Body.into())));
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(error)) => Poll::Ready(Some(Err(error.into()))),
                    None => Poll::Ready(None),
                }
            }
            Kind::Events(events) => {
                if events.done {
                    return Poll::Ready(None);
                }
                if expired && events.ending.is_none() {
                    *this.deadline = None;
                    events.end(ResponseLimitExceeded::Duration);
                }
                if let Some(ending) = events.ending.take() {
                    events.done = true;
                    return Poll::Ready(Some(Ok(Frame::data(ending))));
                }
                loop {
                    match ready!(this.inner.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                if let Some(out) = events.push(&data) {
                                    return Poll::Ready(Some(Ok(Frame::data(out))));
                                }
                                if let Some(ending) = events.ending.take() {
                                    events.done = true;
                                    return Poll::Ready(Some(Ok(Frame::data(ending))));
                                }
                            }
                            Err(frame) => return Poll::Ready(Some(Ok(frame))),
                        },
                        Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                        None => {
                            events.done = true;
                            // What the upstream sent after its last whole
                            // event goes on as it is: the stream ends there.
                            let rest = std::mem::take(&mut events.pending).freeze();
                            return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Replaced(answer) => answer.is_none(),
            Kind::Plain { .. } => self.inner.is_end_stream(),
            Kind::Events(events) => events.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Replaced(answer) => {
                SizeHint::with_exact(answer.as_ref().map_or(0, |a| a.len() as u64))
            }
            Kind::Plain { .. } => self.inner.size_hint(),
            Kind::Events(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "response_limit/tests.rs"]
mod tests;
