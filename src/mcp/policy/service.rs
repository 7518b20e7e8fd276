//! [`McpPolicy`], the service, and the check of a buffered request.

use std::mem;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body;
use serde_json::Value;
use tower_service::Service;

use super::body::McpPolicyBody;
use super::future::{Pending, ResponseFuture, State};
use super::layer::McpPolicyLayer;
use super::rules::{ToolPolicy, insufficient_scope};
use super::tools_list::Filter;
use crate::audit;
use crate::mcp::buffer::{Buffered, RequestBody, is_json_media_type};
use crate::principal::{McpCall, Principal};
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// The service made by [`McpPolicyLayer`]. Clones share the policy.
#[derive(Clone, Debug)]
pub struct McpPolicy<S, R = DefaultResponder> {
    inner: S,
    layer: McpPolicyLayer<R>,
}

impl McpPolicy<(), DefaultResponder> {
    /// The layer that enforces `policy`; see [`McpPolicyLayer::new`].
    pub fn layer(policy: ToolPolicy) -> McpPolicyLayer {
        McpPolicyLayer::new(policy)
    }
}

impl<S, R> McpPolicy<S, R> {
    pub(super) fn new(inner: S, layer: McpPolicyLayer<R>) -> Self {
        Self { inner, layer }
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

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for McpPolicy<S, R>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    R: Respond,
    ReqBody: Body,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<McpPolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !self.layer.inspect
            || request.method() != Method::POST
            || !is_json_media_type(request.headers())
        {
            let future = self.inner.call(request.map(RequestBody::streaming));
            return ResponseFuture::new(State::Calling { future });
        }
        let limit = self.layer.limits.request;
        if request.body().size_hint().lower() > limit as u64 {
            let response = too_large(&self.layer.responder, &request);
            return ResponseFuture::new(State::Answered {
                response: Some(response),
            });
        }
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        let (parts, body) = request.into_parts();
        ResponseFuture::new(State::Buffering {
            body: Buffered::new(body, limit),
            pending: Some(Pending {
                parts,
                service,
                layer: self.layer.clone(),
            }),
        })
    }
}

pub(super) fn too_large<R: Respond, B>(responder: &R, request: &Request<B>) -> Response<Bytes> {
    reject::render(responder, Rejection::new(Reason::PayloadTooLarge), request)
}

/// What [`admit`] decided.
pub(super) enum Admission<B> {
    /// Call the inner service; filter its answer when `filter` is set.
    Call {
        request: Request<RequestBody<B>>,
        filter: Option<Filter>,
    },
    /// Answer with this refusal.
    Refuse(Response<Bytes>),
}

/// Reads the JSON-RPC message(s) of a buffered body, checks every
/// `tools/call`, and either builds the request for the inner service (plus
/// the `tools/list` filter its answer needs) or the refusal.
pub(super) fn admit<B, R: Respond>(
    layer: &McpPolicyLayer<R>,
    mut parts: Parts,
    bytes: Bytes,
) -> Admission<B> {
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        // Not JSON: the server answers with a parse error.
        return Admission::Call {
            request: Request::from_parts(parts, RequestBody::full(bytes)),
            filter: None,
        };
    };
    let messages = match &value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    let policy = &layer.policy;
    let principal = parts.extensions.get::<Principal>();
    let mut call = None;
    let mut denied: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut lists = Vec::new();
    for message in messages {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            continue;
        };
        let tool = match method {
            "tools/call" => message
                .get("params")
                .and_then(|params| params.get("name"))
                .and_then(Value::as_str),
            "tools/list" => {
                if let Some(id) = message.get("id").filter(|id| !id.is_null()) {
                    lists.push(id.clone());
                }
                None
            }
            _ => None,
        };
        if call.is_none() {
            call = Some(McpCall::new(method, tool.map(str::to_owned)));
        }
        if let Some(tool) = tool {
            let missing = policy.missing_for(principal, tool);
            if !missing.is_empty() {
                denied.push((tool, missing));
            }
        }
    }

    if !denied.is_empty() {
        let rejection = insufficient_scope(&denied);
        audit::denied(
            Reason::InsufficientScope,
            &parts.extensions,
            principal.map(Principal::subject),
            principal.and_then(Principal::key_id),
            rejection.detail(),
        );
        let request = Request::from_parts(parts, ());
        return Admission::Refuse(reject::render(&layer.responder, rejection, &request));
    }

    let filter = (!lists.is_empty()).then(|| Filter {
        ids: lists,
        principal: principal.cloned(),
        policy: policy.clone(),
        limit: layer.limits.response,
    });
    if let Some(call) = call {
        parts.extensions.insert(call);
    }
    parts.extensions.insert(policy.clone());
    Admission::Call {
        request: Request::from_parts(parts, RequestBody::full(bytes)),
        filter,
    }
}
