//! [`ResponseFuture`] of [`JsonRpcErrors`](crate::mcp::JsonRpcErrors).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{JsonRpcBody, shape};
use super::code::{ErrorCode, error_response, internal_error, unreadable_body};
use crate::mcp::buffer::{Buffered, RequestBody, Unread};
use crate::mcp::json;

pin_project! {
    /// Response future of [`JsonRpcErrors`](crate::mcp::JsonRpcErrors): reads a JSON body, then awaits
    /// the inner service. Never boxed.
    pub struct ResponseFuture<S, B, F> {
        #[pin]
        state: State<S, B, F>,
        json_body: bool,
        id: Option<String>,
    }
}

impl<S, B, F> ResponseFuture<S, B, F> {
    pub(super) fn new(state: State<S, B, F>, json_body: bool) -> Self {
        Self {
            state,
            json_body,
            id: None,
        }
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<S, B, F> {
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
