//! Helpers shared by the fuzz targets: a recording inner service, a body of
//! chunks, and a poll-to-completion executor (every future here is ready
//! without I/O).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower_warden::principal::McpCall;
use tower_warden::mcp::{McpPolicyLayer, ToolPolicy};
use tower_warden::principal::{AuthMethod, Principal};

/// A body that yields the given chunks, one frame each.
#[derive(Debug, Default)]
pub struct Chunks(pub VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// What the inner service saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Whether it was called.
    pub called: bool,
    /// The `McpCall` the policy layer left.
    pub call: Option<McpCall>,
    /// The `Principal` authentication left.
    pub principal: Option<Principal>,
}

/// An inner service that records what reached it and answers with a fixed
/// content type and body chunks.
#[derive(Clone)]
pub struct Inner {
    pub seen: Arc<Mutex<Seen>>,
    pub content_type: &'static str,
    pub chunks: Arc<Mutex<Vec<Bytes>>>,
}

impl<B> tower_service::Service<Request<B>> for Inner {
    type Response = Response<Chunks>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Chunks>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut seen = self.seen.lock().unwrap();
        seen.called = true;
        seen.call = request.extensions().get::<McpCall>().cloned();
        seen.principal = request.extensions().get::<Principal>().cloned();
        let chunks = std::mem::take(&mut *self.chunks.lock().unwrap());
        let response = Response::builder()
            .header(http::header::CONTENT_TYPE, self.content_type)
            .body(Chunks(chunks.into()))
            .unwrap();
        std::future::ready(Ok(response))
    }
}

/// Tools: `secret` and `d\u{e9}j\u{e0}` need `admin`, `open` needs nothing,
/// every other tool needs `tools:call`.
pub fn policy() -> ToolPolicy {
    ToolPolicy::new()
        .require("secret", ["admin"])
        .require("d\u{e9}j\u{e0}", ["admin"])
        .require("open", Vec::<String>::new())
        .default_scopes(["tools:call"])
}

/// A caller holding `tools:call` but not `admin`.
pub fn caller() -> Principal {
    Principal::builder("fuzz", AuthMethod::Jwt)
        .scopes(["tools:call"])
        .build()
}

/// The policy layer around [`Inner`].
pub fn layer() -> McpPolicyLayer {
    McpPolicyLayer::new(policy())
}

/// Polls `future` to completion on this thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

/// Collects a body's data, bounded.
pub fn collect<B>(body: B) -> Bytes
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    block_on(body.collect()).unwrap().to_bytes()
}
