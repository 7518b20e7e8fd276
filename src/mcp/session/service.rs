//! [`SessionBinding`], the service: checks the presented session id
//! against the table, then lets the future update it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_service::Service;

use super::future::{After, ResponseFuture};
use super::header::{Presented, presented};
use super::table::{Caller, Lookup, SessionTable};
use crate::audit;
use crate::body::ResponseBody;
use crate::principal::Principal;
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// The service made by [`SessionBindingLayer`](crate::mcp::SessionBindingLayer). Clones share its table.
#[derive(Clone)]
pub struct SessionBinding<S, R = DefaultResponder> {
    inner: S,
    table: SessionTable,
    responder: R,
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for SessionBinding<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBinding")
            .field("inner", &self.inner)
            .field("sessions", &self.table)
            .field("responder", &self.responder)
            .finish()
    }
}

impl<S, R> SessionBinding<S, R> {
    pub(super) fn new(inner: S, table: SessionTable, responder: R) -> Self {
        Self {
            inner,
            table,
            responder,
        }
    }

    /// The bindings table.
    #[must_use]
    pub fn sessions(&self) -> &SessionTable {
        &self.table
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for SessionBinding<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Respond,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let principal = request.extensions().get::<Principal>();
        let (detail, presented_id) = match presented(request.headers()) {
            Presented::None => {
                let after = After::Bind {
                    table: Arc::clone(&self.table.0),
                    principal: principal.cloned(),
                };
                return ResponseFuture::inner(self.inner.call(request), after);
            }
            Presented::Several => ("more than one Mcp-Session-Id header was sent", None),
            Presented::One(value) => {
                let lookup = match value.to_str() {
                    Ok(id) => self.table.0.lookup(id, Caller::of(principal)),
                    Err(_) => Lookup::Unknown,
                };
                match lookup {
                    Lookup::Owner(id) => {
                        let after = After::Owned {
                            table: Arc::clone(&self.table.0),
                            id,
                            delete: request.method() == Method::DELETE,
                        };
                        return ResponseFuture::inner(self.inner.call(request), after);
                    }
                    Lookup::Other => ("the session is bound to another principal", Some(value)),
                    Lookup::Unknown => ("unknown or expired session", Some(value)),
                }
            }
        };
        let audit_detail: Cow<'static, str> = match presented_id {
            Some(id) => {
                let fingerprint = self.table.0.fingerprint(id.as_bytes());
                Cow::Owned(format!("{detail} (session fingerprint {fingerprint})"))
            }
            None => Cow::Borrowed(detail),
        };
        audit::denied(
            Reason::SessionNotFound,
            request.extensions(),
            principal.map(Principal::subject),
            principal.and_then(Principal::key_id),
            &audit_detail,
        );
        // The client learns only what an unknown session would tell it.
        let rejection = Rejection::new(Reason::SessionNotFound);
        ResponseFuture::reject(reject::render(&self.responder, rejection, &request))
    }
}
