//! [`JsonRpcBody`], and the rewrite of a plain-text error answer into it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::code::ErrorCode;
use crate::body::ResponseBody;
use crate::mcp::buffer::is_json_media_type;
use crate::mcp::json;

/// The most of an inner plain-text error message that is kept.
pub(super) const MAX_MESSAGE_BYTES: usize = 1024;

/// Rewrites a plain-text error answer into a JSON-RPC error object.
pub(super) fn shape<B>(
    response: Response<B>,
    json_body: bool,
    id: Option<&str>,
) -> Response<JsonRpcBody<B>> {
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
    /// Response body of [`JsonRpcErrors`](crate::mcp::JsonRpcErrors): the inner body, a JSON-RPC error
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
    pub(super) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Plain {
                body: ResponseBody::inner(body),
            },
        }
    }

    pub(super) fn fixed(bytes: Bytes) -> Self {
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
