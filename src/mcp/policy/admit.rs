//! The check of a buffered request: what the layer gives its services,
//! and the decision on a JSON-RPC body once it is read.

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use serde_json::Value;

use super::rules::ToolPolicy;
use super::tools_list::Filter;
use crate::mcp::buffer::RequestBody;
use crate::principal::{McpCall, Principal, called_tool};
use crate::reject::{self, Reason, Rejection, Respond};
use crate::{audit, telemetry};

/// How much of a request, and of a `tools/list` answer, is buffered.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) request: usize,
    pub(super) response: usize,
}

/// What a [`McpPolicyLayer`](crate::mcp::McpPolicyLayer) gives each of its
/// services: the policy, the limits, the responder, and whether requests
/// are inspected at all.
#[derive(Clone, Debug)]
pub(super) struct Config<R> {
    pub(super) policy: ToolPolicy,
    pub(super) limits: Limits,
    pub(super) responder: R,
    pub(super) inspect: bool,
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
    config: &Config<R>,
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
    let policy = &config.policy;
    let principal = parts.extensions.get::<Principal>();
    let mut call = None;
    let mut denied: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut lists = Vec::new();
    let mut traced = false;
    for message in messages {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            continue;
        };
        if method == "tools/list"
            && let Some(id) = message.get("id").filter(|id| !id.is_null())
        {
            lists.push(id.clone());
        }
        let tool = called_tool(message);
        if !traced {
            // The request span names the first message of a batch.
            telemetry::mcp_message(method, tool, message.get("id"));
            traced = true;
        }
        if call.is_none() {
            call = McpCall::of_message(message);
        }
        if let Some(tool) = tool {
            let missing = policy.missing_for(principal, tool);
            if !missing.is_empty() {
                denied.push((tool, missing));
            }
        }
    }

    if !denied.is_empty() {
        let rejection = policy.insufficient_scope(&denied);
        audit::denied(
            Reason::InsufficientScope,
            &parts.extensions,
            principal.map(Principal::subject),
            principal.and_then(Principal::key_id),
            rejection.detail(),
        );
        let request = Request::from_parts(parts, ());
        return Admission::Refuse(reject::render(&config.responder, rejection, &request));
    }

    let filter = (!lists.is_empty()).then(|| Filter {
        ids: lists,
        principal: principal.cloned(),
        policy: policy.clone(),
        limit: config.limits.response,
    });
    if let Some(call) = call {
        parts.extensions.insert(call);
    }
    parts.extensions.insert(policy.clone());
    telemetry::admitted("mcp_policy");
    Admission::Call {
        request: Request::from_parts(parts, RequestBody::full(bytes)),
        filter,
    }
}
