//! [`McpPolicyBody`]: the inner answer streamed through, or rewritten when
//! it answers a `tools/list`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::tools_list::{Filter, FilterState, Mode, Phase};
use crate::body::ResponseBody;
use crate::mcp::buffer::is_json_media_type;
use crate::mcp::sse::{Scan, is_event_stream};

/// Whether the body is encoded (compressed) beyond reading.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        value.to_str().map_or(true, |v| {
            v.split(',')
                .any(|c| !c.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

/// Wraps the inner answer: untouched, or filtered when it answers a
/// `tools/list`.
pub(super) fn filter_response<B>(
    response: Response<B>,
    filter: Option<Filter>,
) -> Response<McpPolicyBody<B>> {
    let Some(filter) = filter else {
        return response.map(McpPolicyBody::inner);
    };
    let mode = if is_json_media_type(response.headers()) {
        Mode::Json
    } else if is_event_stream(response.headers()) {
        Mode::Sse
    } else {
        return response.map(McpPolicyBody::inner);
    };
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    if is_encoded(&parts.headers) {
        tracing::warn!(
            target: "tower_warden",
            "a tools/list answer is compressed and cannot be filtered; answering with an error"
        );
        parts.headers.remove(CONTENT_ENCODING);
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Response::from_parts(parts, McpPolicyBody::fixed(filter.error_object()));
    }
    Response::from_parts(
        parts,
        McpPolicyBody {
            kind: Kind::Filtering {
                body,
                state: Box::new(FilterState {
                    filter,
                    mode,
                    buffer: BytesMut::new(),
                    scan: Scan::default(),
                    out: VecDeque::new(),
                    phase: Phase::Filtering,
                    trailers: None,
                }),
            },
        },
    )
}

pin_project! {
    /// Response body of [`McpPolicy`](crate::mcp::McpPolicy): the inner body streamed through, a
    /// `tools/list` answer being filtered, or a refusal.
    #[derive(Debug)]
    pub struct McpPolicyBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Plain { #[pin] body: ResponseBody<B> },
        Filtering { #[pin] body: B, state: Box<FilterState> },
    }
}

impl<B> McpPolicyBody<B> {
    fn inner(body: B) -> Self {
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

impl<B> Body for McpPolicyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Plain { body } => body.poll_frame(cx),
            KindProj::Filtering { mut body, state } => loop {
                if let Some(bytes) = state.out.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                match state.phase {
                    Phase::Ended => {
                        return Poll::Ready(state.trailers.take().map(|t| Ok(Frame::trailers(t))));
                    }
                    Phase::Passthrough => return body.as_mut().poll_frame(cx),
                    Phase::Filtering => {}
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            let limit = state.filter.limit;
                            if state.mode == Mode::Json
                                && data.len() > limit.saturating_sub(state.buffer.len())
                            {
                                state.fail(Mode::Json);
                                continue;
                            }
                            state.buffer.extend_from_slice(&data);
                            state.process(false);
                        }
                        Err(frame) => {
                            // Trailers end the data: finish, then send them.
                            state.trailers = frame.into_trailers().ok();
                            state.process(true);
                            state.phase = Phase::Ended;
                        }
                    },
                    Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                    None => {
                        state.process(true);
                        state.phase = Phase::Ended;
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Filtering { body, state } => match state.phase {
                Phase::Ended => state.out.is_empty() && state.trailers.is_none(),
                Phase::Passthrough => state.out.is_empty() && body.is_end_stream(),
                Phase::Filtering => false,
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Filtering { .. } => SizeHint::default(),
        }
    }
}
