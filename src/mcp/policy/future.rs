//! [`ResponseFuture`] of [`McpPolicy`](crate::mcp::McpPolicy).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::admit::{Admission, Config, admit, too_large};
use super::body::{McpPolicyBody, filter_response};
use super::tools_list::Filter;
use crate::mcp::buffer::{Buffered, RequestBody, Unread};
use crate::mcp::errors::code::{internal_error, unreadable_body};
use crate::reject::Respond;

/// What a buffering future needs once the body is read.
pub(super) struct Pending<S, R> {
    pub(super) parts: Parts,
    pub(super) service: S,
    pub(super) config: Config<R>,
}

pin_project! {
    /// Response future of [`McpPolicy`](crate::mcp::McpPolicy): reads a JSON body, checks it, then
    /// awaits the inner service. A hand-written state machine, never boxed.
    pub struct ResponseFuture<S, B, R, F> {
        #[pin]
        state: State<S, B, R, F>,
        filter: Option<Filter>,
    }
}

impl<S, B, R, F> ResponseFuture<S, B, R, F> {
    pub(super) fn new(state: State<S, B, R, F>) -> Self {
        Self {
            state,
            filter: None,
        }
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<S, B, R, F> {
        Buffering {
            #[pin]
            body: Buffered<B>,
            pending: Option<Box<Pending<S, R>>>,
        },
        Calling { #[pin] future: F },
        Answered { response: Option<Response<Bytes>> },
    }
}

impl<S, B, R, F> std::fmt::Debug for ResponseFuture<S, B, R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Buffering { .. } => "buffering",
            State::Calling { .. } => "calling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("filters_tools_list", &self.filter.is_some())
            .finish()
    }
}

impl<S, B, R, F, ResBody, E> std::future::Future for ResponseFuture<S, B, R, F>
where
    S: Service<Request<RequestBody<B>>, Future = F>,
    F: std::future::Future<Output = Result<Response<ResBody>, E>>,
    B: Body,
    R: Respond,
{
    type Output = Result<Response<McpPolicyBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Buffering { body, pending } => match ready!(body.poll_read(cx)) {
                    Err(Unread::TooLarge) => {
                        let response = match pending.take() {
                            Some(p) => {
                                too_large(&p.config.responder, &Request::from_parts(p.parts, ()))
                            }
                            None => internal_error(),
                        };
                        State::Answered {
                            response: Some(response),
                        }
                    }
                    Err(Unread::Unreadable) => State::Answered {
                        response: Some(unreadable_body()),
                    },
                    Ok(bytes) => match pending.take().map(|p| *p) {
                        Some(Pending {
                            parts,
                            mut service,
                            config,
                        }) => match admit(&config, parts, bytes) {
                            Admission::Call { request, filter } => {
                                *this.filter = filter;
                                State::Calling {
                                    future: service.call(request),
                                }
                            }
                            Admission::Refuse(response) => State::Answered {
                                response: Some(response),
                            },
                        },
                        None => State::Answered {
                            response: Some(internal_error()),
                        },
                    },
                },
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(filter_response(response, this.filter.take())));
                }
                StateProj::Answered { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(McpPolicyBody::fixed)));
                }
            };
            this.state.set(next);
        }
    }
}
