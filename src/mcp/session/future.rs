//! [`ResponseFuture`] of [`SessionBinding`](crate::mcp::SessionBinding),
//! and the table update it makes once the server has answered.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::header::{Presented, presented};
use super::table::{Caller, Table};
use crate::body::ResponseBody;
use crate::guard;
use crate::principal::Principal;

/// What to do with the table once the inner service has answered.
pub(super) enum After {
    /// The request carried no session id: bind the one a 2xx answer issues
    /// to the caller.
    Bind {
        table: Arc<Table>,
        principal: Option<Principal>,
    },
    /// The request used a session bound to its caller.
    Owned {
        table: Arc<Table>,
        id: Arc<str>,
        delete: bool,
    },
}

impl After {
    fn apply<B>(self, response: &Response<B>) {
        let status = response.status();
        match self {
            Self::Bind { table, principal } => {
                if !status.is_success() {
                    return;
                }
                if let Presented::One(value) = presented(response.headers())
                    && let Ok(id) = value.to_str()
                {
                    table.bind(id, Caller::of(principal.as_ref()).to_owner());
                }
            }
            Self::Owned { table, id, delete } => {
                if (delete && status.is_success()) || status == StatusCode::NOT_FOUND {
                    table.remove(&id);
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`SessionBinding`](crate::mcp::SessionBinding): the guard future (inner
    /// service, or a refusal ready at once), then, for admitted requests,
    /// the table update. Never boxed.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: guard::ResponseFuture<F>,
        then: Then,
    }
}

/// What [`ResponseFuture`] does once the guard future has answered.
enum Then {
    /// Update the table from the inner service's answer.
    Apply(After),
    /// A refusal, not answered yet.
    Refuse,
    /// The refusal was answered: polled again, an empty 404 rather than
    /// the guard future's panic.
    Refused,
    /// Nothing left to do.
    Done,
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(future: F, after: After) -> Self {
        Self {
            inner: guard::ResponseFuture::inner(future),
            then: Then::Apply(after),
        }
    }

    pub(super) fn reject(response: Response<Bytes>) -> Self {
        Self {
            inner: guard::ResponseFuture::reject(response),
            then: Then::Refuse,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.then {
            Then::Apply(_) | Then::Done => "inner",
            Then::Refuse | Then::Refused => "reject",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Then::Refused = this.then {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
        }
        let response = ready!(this.inner.poll(cx))?;
        match std::mem::replace(this.then, Then::Done) {
            Then::Apply(after) => after.apply(&response),
            Then::Refuse => *this.then = Then::Refused,
            Then::Refused | Then::Done => {}
        }
        Poll::Ready(Ok(response))
    }
}
