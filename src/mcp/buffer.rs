//! Request buffering shared by the MCP layers that read a JSON-RPC body
//! ([`JsonRpcErrorsLayer`](super::JsonRpcErrorsLayer) and
//! [`McpPolicyLayer`](super::McpPolicyLayer)): which requests are read, the
//! bounded read itself, and the [`RequestBody`] the inner service receives.

use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Whether `headers` name a JSON media type (`application/json` or
/// `application/*+json`): the requests the MCP layers read, and the answers
/// they leave alone or rewrite.
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
