//! Per-tool authorization: which scopes a caller needs to call (and to see)
//! each MCP tool.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::errors::{
    Buffered, ErrorCode, RequestBody, Unread, internal_error, is_json_media_type, unreadable_body,
};
use super::json;
use crate::ConfigError;
use crate::audit;
use crate::body::ResponseBody;
use crate::principal::{McpCall, Principal};
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};
use crate::tool_rules::{ANY_TOOL, ToolRules};

/// The environment variable [`ToolPolicy::try_from_json`] reads its
/// configuration from; configuration errors name it.
const ENV_VAR: &str = "MCP_TOOL_SCOPES";

/// The default cap on buffered request and response bodies.
const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The most characters of a (caller-chosen) tool name repeated in a
/// rejection detail or an audit event.
const MAX_TOOL_NAME_CHARS: usize = 64;

type Scopes = Box<[Box<str>]>;

/// Tool rule → scopes, matched by the one tool-rule matcher
/// ([`ToolRules`]) that `MCP_TOOL_RATE_LIMITS` uses too.
type Rules = ToolRules<Scopes>;

/// Which scopes a caller needs to call each MCP tool.
///
/// A listed tool needs every scope listed for it. A tool that is not listed
/// needs the [`default_scopes`](Self::default_scopes) — none unless set, so
/// that unlisted tools are open to every caller that got past
/// authentication. Listing a tool with no scopes opens it even when a
/// default is set.
///
/// A tool is listed under its exact name, or as `*.<tool>`: `<tool>` behind
/// any server name (`<server_name>.<tool>`, as the gateway names an
/// upstream's tools), so that renaming a connection cannot escape the rule.
/// The exact name wins over `*.<tool>`, which wins over the default `*`;
/// see [`ToolRules`], the matcher `MCP_TOOL_RATE_LIMITS` uses too.
///
/// Scopes are checked with [`Principal::has_scope`], so granted wildcards
/// count: `*` grants everything, `tools:*` grants `tools:echo`.
///
/// Clones are cheap and share the rules.
///
/// ```
/// use tower_warden::mcp::ToolPolicy;
/// use tower_warden::principal::{AuthMethod, Principal};
///
/// let policy = ToolPolicy::new()
///     .require("echo", ["tools:echo"])
///     .require("add", ["tools:add", "math"]);
/// let caller = Principal::builder("alice", AuthMethod::Jwt)
///     .scopes(["tools:echo", "tools:add"])
///     .build();
/// assert!(policy.allows(&caller, "echo"));
/// assert_eq!(policy.missing(&caller, "add"), ["math"]);
/// assert!(policy.allows(&caller, "not-listed"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ToolPolicy(Arc<Rules>);

fn boxed_scopes<I, T>(scopes: I) -> Scopes
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    let mut out: Vec<Box<str>> = Vec::new();
    for scope in scopes {
        let scope = scope.into().into_boxed_str();
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    out.into_boxed_slice()
}

/// Whether `scope` is an RFC 6750 `scope-token`: printable ASCII without
/// space, `"` or `\`, so that it can be quoted in `WWW-Authenticate`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

impl ToolPolicy {
    /// A policy that lists no tool: every tool is open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires every scope in `scopes` to call `tool` (replacing what was
    /// required of it before). No scopes at all opens the tool, whatever the
    /// default. `tool` is a [`ToolRules`] key: a name, `*.<name>` (that
    /// name on any server), or `*` (the [default](Self::default_scopes)).
    pub fn require<I, T>(mut self, tool: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.0).insert(tool, boxed_scopes(scopes));
        self
    }

    /// Requires every scope in `scopes` to call a tool that is not listed
    /// with [`require`](Self::require).
    pub fn default_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.0).insert(ANY_TOOL, boxed_scopes(scopes));
        self
    }

    /// Reads the policy from the value of `MCP_TOOL_SCOPES`: a JSON object
    /// from tool name to the scopes it requires, each an array of strings or
    /// one space-separated string. The key `"*"` sets the
    /// [`default_scopes`](Self::default_scopes), and a key `*.<tool>` is
    /// `<tool>` on any gateway connection (`<server_name>.<tool>`); see
    /// [`ToolRules`].
    ///
    /// ```
    /// use tower_warden::mcp::ToolPolicy;
    ///
    /// # fn main() -> Result<(), tower_warden::ConfigError> {
    /// let policy = ToolPolicy::try_from_json(
    ///     r#"{"echo": ["tools:echo"], "add": "tools:add math", "*": "tools:admin"}"#,
    /// )?;
    /// assert_eq!(policy.required_scopes("add").collect::<Vec<_>>(), ["tools:add", "math"]);
    /// assert_eq!(policy.required_scopes("reset").collect::<Vec<_>>(), ["tools:admin"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `MCP_TOOL_SCOPES` when the text is not JSON,
    /// not an object, names an empty tool, or gives a tool something other
    /// than scopes (scopes are RFC 6750 scope tokens: printable ASCII
    /// without space, `"` or `\`).
    pub fn try_from_json(text: &str) -> Result<Self, ConfigError> {
        Self::try_from_entries(crate::config::parse_tool_scopes(text)?)
    }

    /// Builds the policy from `MCP_TOOL_SCOPES` entries as
    /// [`WardenConfig::tool_scopes`](crate::config::WardenConfig::tool_scopes)
    /// holds them: tool name → scopes, where the key `"*"` sets the
    /// [`default_scopes`](Self::default_scopes). [`try_from_json`](Self::try_from_json)
    /// and [`WardenLayer::from_config`](crate::stack::WardenLayer) both read
    /// the setting through it, so `"*"` means the same everywhere.
    ///
    /// ```
    /// use tower_warden::mcp::ToolPolicy;
    ///
    /// # fn main() -> Result<(), tower_warden::ConfigError> {
    /// let policy = ToolPolicy::try_from_entries([("*", ["tools:call"])])?;
    /// assert_eq!(policy.required_scopes("any-tool").collect::<Vec<_>>(), ["tools:call"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `MCP_TOOL_SCOPES` when a tool name is empty
    /// or a scope is not an RFC 6750 scope token (printable ASCII without
    /// space, `"` or `\`).
    pub fn try_from_entries<E, T, I, S>(entries: E) -> Result<Self, ConfigError>
    where
        E: IntoIterator<Item = (T, I)>,
        T: Into<String>,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut policy = Self::new();
        for (tool, scopes) in entries {
            let tool: String = tool.into();
            if tool.is_empty() {
                return Err(ConfigError::new(ENV_VAR, "a tool name is empty"));
            }
            let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
            if let Some(bad) = scopes.iter().find(|scope| !is_scope_token(scope)) {
                return Err(ConfigError::new(
                    ENV_VAR,
                    format!(
                        "`{}` is not a scope (of tool `{}`): scopes are printable ASCII without \
                         spaces, quotes or backslashes",
                        display_name(bad),
                        display_name(&tool)
                    ),
                ));
            }
            // `"*"` is the default, `*.<tool>` any server's `<tool>`.
            policy = policy.require(tool, scopes);
        }
        Ok(policy)
    }

    /// The scopes required to call `tool`, in the order configured.
    pub fn required_scopes(&self, tool: &str) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.requirement(tool).iter().map(|s| &**s)
    }

    /// The scopes required to call `tool` that `principal` was not granted,
    /// in the order configured. Empty when the call is allowed.
    #[must_use]
    pub fn missing<'a>(&'a self, principal: &Principal, tool: &str) -> Vec<&'a str> {
        self.missing_for(Some(principal), tool)
    }

    /// Whether `principal` may call `tool`.
    #[must_use]
    pub fn allows(&self, principal: &Principal, tool: &str) -> bool {
        self.allows_for(Some(principal), tool)
    }

    fn requirement(&self, tool: &str) -> &[Box<str>] {
        self.0.find(tool).map_or(&[], |(_, scopes)| scopes)
    }

    /// [`missing`](Self::missing) for a caller that may be absent; an absent
    /// caller has no scopes.
    fn missing_for<'a>(&'a self, principal: Option<&Principal>, tool: &str) -> Vec<&'a str> {
        self.requirement(tool)
            .iter()
            .map(|s| &**s)
            .filter(|scope| !principal.is_some_and(|p| p.has_scope(scope)))
            .collect()
    }

    /// The 403 `insufficient_scope` answer (with its `WWW-Authenticate`
    /// challenge) when `principal` may not call `tool`, as
    /// [`McpPolicyLayer`] answers a `tools/call`; `None` when it may.
    pub(crate) fn refusal(&self, principal: Option<&Principal>, tool: &str) -> Option<Rejection> {
        let missing = self.missing_for(principal, tool);
        (!missing.is_empty()).then(|| insufficient_scope(&[(tool, missing)]))
    }

    pub(crate) fn allows_for(&self, principal: Option<&Principal>, tool: &str) -> bool {
        self.requirement(tool)
            .iter()
            .all(|scope| principal.is_some_and(|p| p.has_scope(scope)))
    }
}

/// A caller-chosen name made safe to repeat: at most
/// [`MAX_TOOL_NAME_CHARS`] characters, control characters replaced.
fn display_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(MAX_TOOL_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if name.chars().nth(MAX_TOOL_NAME_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    request: usize,
    response: usize,
}

/// Enforces a [`ToolPolicy`] on MCP `tools/call` requests and filters
/// `tools/list` answers down to the tools the caller may call.
///
/// For a `POST` whose `Content-Type` is JSON the layer buffers the body (at
/// most [`max_body_bytes`](Self::max_body_bytes), 4 MiB by default; more is
/// refused with 413 `payload_too_large`) and reads the JSON-RPC message — or
/// every message of a JSON array batch:
///
/// * it leaves an [`McpCall`] (method and tool name) in the request
///   extensions for the first message that has a method, and the
///   [`ToolPolicy`] itself, so that a server's own handlers can consult it;
/// * a `tools/call` whose tool needs scopes the caller's [`Principal`] lacks
///   is refused with 403 `insufficient_scope` and
///   `WWW-Authenticate: Bearer error="insufficient_scope", scope="<missing
///   scopes>"`, logged once on the [audit target](crate::audit). In a batch,
///   one forbidden call refuses the whole batch. The inner service is not
///   called;
/// * the answer to a `tools/list` (JSON, or an SSE stream of JSON-RPC
///   messages) is rewritten so that `result.tools` keeps only the tools the
///   caller may call (see below).
///
/// The [`Principal`] is read from the request extensions, where an
/// authentication layer outside this one put it. A request without one is
/// treated as a caller with no scopes: it may call only the tools that
/// require none. (The anonymous principal of a server without
/// authentication has every scope, `*`.)
///
/// Bodies that are not JSON POSTs stream through untouched. A body that is
/// not valid JSON is passed on unchanged for the server (or a
/// [`JsonRpcErrorsLayer`](super::JsonRpcErrorsLayer) inside) to answer with
/// a parse error. The inner service receives a [`RequestBody`].
///
/// # Filtering `tools/list`
///
/// Only the answer to a request that carried a `tools/list` is touched, and
/// only when it is `application/json` or `text/event-stream`; every other
/// answer streams through with no buffering. The answer's `Content-Length`
/// is removed (the length changes). A JSON answer is buffered whole; an
/// event stream is read event by event, every event is passed on
/// byte-for-byte except the one whose JSON-RPC `id` is the `tools/list`
/// request's (its `data` is re-serialized), and once that event has passed
/// the rest of the stream is not looked at. The filtering is done in the
/// response body, so the status and headers reach the client at once.
///
/// The answer is buffered up to [`max_response_bytes`](Self::max_response_bytes)
/// (4 MiB by default; for an event stream, per event). Past that, or when
/// the answer carries a `Content-Encoding` this layer cannot read, the layer
/// **fails closed**: instead of an unfiltered list the client receives a
/// JSON-RPC error (`-32603`, for the request's id) — the whole JSON body, or
/// one last event that ends the stream. Put compression outside this layer.
///
/// # Order
///
/// Inside authentication (it reads the [`Principal`]) and outside
/// [`JsonRpcErrorsLayer`](super::JsonRpcErrorsLayer), which then still
/// answers malformed bodies with JSON-RPC parse errors.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_warden::mcp::{McpPolicyLayer, RequestBody, ToolPolicy};
/// use tower_warden::principal::{AuthMethod, Principal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = ToolPolicy::new().require("add", ["tools:add"]);
/// let service = ServiceBuilder::new()
///     .layer(McpPolicyLayer::new(policy))
///     .service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
///     });
///
/// let mut request = Request::post("/mcp")
///     .header("content-type", "application/json")
///     .body(Full::new(Bytes::from_static(
///         br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#,
///     )))?;
/// let caller = Principal::builder("bob", AuthMethod::ApiKey).scopes(["tools:echo"]).build();
/// request.extensions_mut().insert(caller);
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer error="insufficient_scope", scope="tools:add""#
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct McpPolicyLayer<R = DefaultResponder> {
    policy: ToolPolicy,
    limits: Limits,
    responder: R,
    /// `false`: every request streams through unread (the layer is off).
    inspect: bool,
}

impl McpPolicyLayer {
    /// Enforces `policy`, buffering at most 4 MiB of request and of
    /// `tools/list` response.
    pub fn new(policy: ToolPolicy) -> Self {
        Self {
            policy,
            limits: Limits {
                request: DEFAULT_MAX_BYTES,
                response: DEFAULT_MAX_BYTES,
            },
            responder: DefaultResponder,
            inspect: true,
        }
    }

    /// A layer that reads nothing and checks nothing: every request streams
    /// through. For stacks that hold the layer whether or not a policy is
    /// configured.
    pub(crate) fn pass_through() -> Self {
        Self {
            inspect: false,
            ..Self::new(ToolPolicy::new())
        }
    }
}

impl<R> McpPolicyLayer<R> {
    /// The largest request body read; a longer one is refused with 413
    /// `payload_too_large`.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.limits.request = max;
        self
    }

    /// The most of a `tools/list` answer buffered (for an event stream, of
    /// one event); past it the client gets a JSON-RPC error instead of the
    /// list.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.limits.response = max;
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> McpPolicyLayer<R2> {
        McpPolicyLayer {
            policy: self.policy,
            limits: self.limits,
            responder,
            inspect: self.inspect,
        }
    }

    /// The policy enforced.
    pub fn policy(&self) -> &ToolPolicy {
        &self.policy
    }
}

impl<S, R: Clone> Layer<S> for McpPolicyLayer<R> {
    type Service = McpPolicy<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        McpPolicy {
            inner,
            layer: self.clone(),
        }
    }
}

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
            return ResponseFuture {
                state: State::Calling { future },
                filter: None,
            };
        }
        let limit = self.layer.limits.request;
        if request.body().size_hint().lower() > limit as u64 {
            let response = too_large(&self.layer.responder, &request);
            return ResponseFuture {
                state: State::Answered {
                    response: Some(response),
                },
                filter: None,
            };
        }
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        let (parts, body) = request.into_parts();
        ResponseFuture {
            state: State::Buffering {
                body: Buffered::new(body, limit),
                pending: Some(Pending {
                    parts,
                    service,
                    layer: self.layer.clone(),
                }),
            },
            filter: None,
        }
    }
}

fn too_large<R: Respond, B>(responder: &R, request: &Request<B>) -> Response<Bytes> {
    reject::render(responder, Rejection::new(Reason::PayloadTooLarge), request)
}

/// What a buffering future needs once the body is read.
struct Pending<S, R> {
    parts: Parts,
    service: S,
    layer: McpPolicyLayer<R>,
}

pin_project! {
    /// Response future of [`McpPolicy`]: reads a JSON body, checks it, then
    /// awaits the inner service. A hand-written state machine, never boxed.
    pub struct ResponseFuture<S, B, R, F> {
        #[pin]
        state: State<S, B, R, F>,
        filter: Option<Filter>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, R, F> {
        Buffering {
            #[pin]
            body: Buffered<B>,
            pending: Option<Pending<S, R>>,
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
                                too_large(&p.layer.responder, &Request::from_parts(p.parts, ()))
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
                    Ok(bytes) => match pending.take() {
                        Some(Pending {
                            parts,
                            mut service,
                            layer,
                        }) => match admit(&layer, parts, bytes) {
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

/// What [`admit`] decided.
enum Admission<B> {
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
fn admit<B, R: Respond>(layer: &McpPolicyLayer<R>, mut parts: Parts, bytes: Bytes) -> Admission<B> {
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

/// The 403 for calls of tools whose scopes the caller lacks.
fn insufficient_scope(denied: &[(&str, Vec<&str>)]) -> Rejection {
    let mut scopes: Vec<&str> = Vec::new();
    let mut detail = String::new();
    for (tool, missing) in denied {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        let _ = write!(
            detail,
            "tool `{}` requires {} the caller was not granted: {}",
            display_name(tool),
            if missing.len() == 1 {
                "a scope"
            } else {
                "scopes"
            },
            missing.join(" ")
        );
        for scope in missing {
            if !scopes.contains(scope) {
                scopes.push(scope);
            }
        }
    }
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\"",
        scopes.join(" ")
    );
    // Scopes built in code may hold characters a header cannot; then the
    // challenge goes without them (the detail still names them).
    let challenge = HeaderValue::from_str(&challenge)
        .ok()
        .filter(|_| scopes.iter().all(|s| is_scope_token(s)))
        .unwrap_or_else(|| HeaderValue::from_static("Bearer error=\"insufficient_scope\""));
    Rejection::new(Reason::InsufficientScope)
        .with_detail(detail)
        .with_header(WWW_AUTHENTICATE, challenge)
}

/// Whether `headers` announce an event stream.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

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
fn filter_response<B>(response: Response<B>, filter: Option<Filter>) -> Response<McpPolicyBody<B>> {
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

/// The `tools/list` requests whose answers are still to be filtered, and
/// for whom.
#[derive(Clone, Debug)]
struct Filter {
    ids: Vec<Value>,
    principal: Option<Principal>,
    policy: ToolPolicy,
    limit: usize,
}

impl Filter {
    /// Filters `message` if it answers an outstanding `tools/list`; returns
    /// whether it changed.
    fn rewrite(&mut self, message: &mut Value) -> bool {
        let Some(id) = message.get("id") else {
            return false;
        };
        let Some(index) = self.ids.iter().position(|wanted| wanted == id) else {
            return false;
        };
        self.ids.swap_remove(index);
        let Some(tools) = message
            .get_mut("result")
            .and_then(|result| result.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = tools.len();
        let principal = self.principal.as_ref();
        tools.retain(|tool| {
            tool.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| self.policy.allows_for(principal, name))
        });
        tools.len() != before
    }

    /// Filters a whole JSON answer (one message or a batch).
    fn rewrite_json(&mut self, bytes: Bytes) -> Bytes {
        let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
            return bytes;
        };
        let changed = match &mut value {
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.rewrite(item) | changed),
            single => self.rewrite(single),
        };
        if !changed {
            return bytes;
        }
        serde_json::to_vec(&value).map_or_else(|_| self.error_object(), Bytes::from)
    }

    /// Filters one SSE event (its bytes through the blank line that ends
    /// it); `None` when it is passed on unchanged.
    fn rewrite_event(&mut self, event: &[u8]) -> Option<Bytes> {
        let lines = sse_lines(event);
        let mut data: Vec<u8> = Vec::new();
        let mut has_data = false;
        for line in &lines {
            if let Some(value) = data_value(line) {
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                has_data = true;
            }
        }
        if data.is_empty() {
            return None;
        }
        let mut message = serde_json::from_slice::<Value>(&data).ok()?;
        if !self.rewrite(&mut message) {
            return None;
        }
        let json = serde_json::to_vec(&message).ok()?;
        let mut out = Vec::with_capacity(event.len());
        let mut written = false;
        for line in &lines {
            if data_value(line).is_some() {
                if !written {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&json);
                    out.push(b'\n');
                    written = true;
                }
            } else if !line.is_empty() {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        out.push(b'\n');
        Some(Bytes::from(out))
    }

    /// The JSON-RPC error that replaces a list that cannot be filtered.
    fn error_object(&self) -> Bytes {
        let id = self
            .ids
            .first()
            .and_then(|id| serde_json::to_string(id).ok());
        Bytes::from(json::error_object(
            id.as_deref(),
            ErrorCode::InternalError.code(),
            "Internal error: the tools/list answer could not be filtered",
        ))
    }

    /// [`error_object`](Self::error_object) as a final SSE event.
    fn error_event(&self) -> Bytes {
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(&self.error_object());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// The lines of an SSE event (without their CR, LF or CRLF endings).
fn sse_lines(event: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < event.len() {
        match event[i] {
            b'\n' => {
                lines.push(&event[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&event[start..i]);
                i += if event.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < event.len() {
        lines.push(&event[start..]);
    }
    lines
}

/// The value of a `data` field line, `None` for any other line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Where the search for the end of the first buffered SSE event stopped.
#[derive(Clone, Copy, Debug, Default)]
struct Scan {
    pos: usize,
    line_start: usize,
}

impl Scan {
    /// The length of the first complete event in `buffer` (through the
    /// blank line that ends it), resuming where the last call stopped.
    fn complete_event(&mut self, buffer: &[u8]) -> Option<usize> {
        while self.pos < buffer.len() {
            let i = self.pos;
            let end = match buffer[i] {
                b'\n' => i + 1,
                b'\r' => match buffer.get(i + 1) {
                    // Wait for the byte after a final CR: it may be an LF.
                    None => return None,
                    Some(b'\n') => i + 2,
                    Some(_) => i + 1,
                },
                _ => {
                    self.pos = buffer[i..]
                        .iter()
                        .position(|b| matches!(b, b'\n' | b'\r'))
                        .map_or(buffer.len(), |n| i + n);
                    continue;
                }
            };
            let blank = i == self.line_start;
            self.pos = end;
            self.line_start = end;
            if blank {
                *self = Self::default();
                return Some(end);
            }
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Json,
    Sse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the inner body to find the `tools/list` answer.
    Filtering,
    /// The answer has passed: the rest streams through.
    Passthrough,
    /// The inner body has ended (or the stream was cut off after an error
    /// event); what is queued is all that is left.
    Ended,
}

#[derive(Debug)]
struct FilterState {
    filter: Filter,
    mode: Mode,
    buffer: BytesMut,
    scan: Scan,
    out: VecDeque<Bytes>,
    phase: Phase,
    trailers: Option<HeaderMap>,
}

impl FilterState {
    /// Moves what can be decided from the buffer to the output queue.
    /// `eof`: the inner body has no more data.
    fn process(&mut self, eof: bool) {
        match self.mode {
            Mode::Json => {
                if eof {
                    let bytes = mem::take(&mut self.buffer).freeze();
                    let bytes = self.filter.rewrite_json(bytes);
                    self.queue(bytes);
                } else if self.buffer.len() > self.filter.limit {
                    self.fail(Mode::Json);
                }
            }
            Mode::Sse => self.process_events(eof),
        }
    }

    fn process_events(&mut self, eof: bool) {
        let mut passed = 0;
        while !self.filter.ids.is_empty() {
            let Some(len) = self.scan.complete_event(&self.buffer[passed..]) else {
                break;
            };
            if len > self.filter.limit {
                let done = self.buffer.split_to(passed).freeze();
                self.queue(done);
                self.fail(Mode::Sse);
                return;
            }
            let event = &self.buffer[passed..passed + len];
            match self.filter.rewrite_event(event) {
                None => passed += len,
                Some(rewritten) => {
                    let before = self.buffer.split_to(passed).freeze();
                    self.queue(before);
                    self.buffer.advance(len);
                    self.queue(rewritten);
                    passed = 0;
                }
            }
        }
        if self.filter.ids.is_empty() {
            // Every answer has passed: the rest goes on as it is.
            let rest = self.buffer.split().freeze();
            self.queue(rest);
            if self.phase == Phase::Filtering {
                self.phase = Phase::Passthrough;
            }
            return;
        }
        let done = self.buffer.split_to(passed).freeze();
        self.queue(done);
        if self.buffer.len() > self.filter.limit {
            self.fail(Mode::Sse);
        } else if eof {
            // An unterminated last event is read as if it were terminated.
            let rest = self.buffer.split().freeze();
            self.scan = Scan::default();
            match self.filter.rewrite_event(&rest) {
                Some(rewritten) => self.queue(rewritten),
                None => self.queue(rest),
            }
        }
    }

    fn queue(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.out.push_back(bytes);
        }
    }

    /// Fails closed: the unfiltered rest is dropped, a JSON-RPC error takes
    /// its place, and the stream ends.
    fn fail(&mut self, mode: Mode) {
        tracing::warn!(
            target: "tower_warden",
            limit = self.filter.limit,
            "a tools/list answer is too large to filter; answering with an error"
        );
        self.buffer.clear();
        let error = match mode {
            Mode::Json => self.filter.error_object(),
            Mode::Sse => self.filter.error_event(),
        };
        self.queue(error);
        self.phase = Phase::Ended;
    }
}

pin_project! {
    /// Response body of [`McpPolicy`]: the inner body streamed through, a
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

    fn fixed(bytes: Bytes) -> Self {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http::StatusCode;
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::principal::AuthMethod;

    /// A body sent in the given chunks; `Pending` after them when `endless`.
    struct Chunks {
        chunks: VecDeque<Bytes>,
        endless: bool,
    }

    impl Chunks {
        fn of<I: IntoIterator<Item = T>, T: Into<Bytes>>(chunks: I) -> Self {
            Self {
                chunks: chunks.into_iter().map(Into::into).collect(),
                endless: false,
            }
        }

        fn endless(first: &'static str) -> Self {
            Self {
                chunks: VecDeque::from([Bytes::from_static(first.as_bytes())]),
                endless: true,
            }
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.chunks.pop_front() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None if self.endless => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    /// What the inner service saw.
    #[derive(Clone, Default)]
    struct Probe {
        calls: Arc<AtomicUsize>,
        call: Arc<Mutex<Option<McpCall>>>,
        policy: Arc<Mutex<Option<ToolPolicy>>>,
        body: Arc<Mutex<Option<Bytes>>>,
    }

    /// What the inner service answers: a content type and body chunks.
    #[derive(Clone)]
    struct Answer {
        content_type: &'static str,
        chunks: Vec<&'static str>,
        extra: Option<(&'static str, &'static str)>,
    }

    impl Answer {
        fn json(body: &'static str) -> Self {
            Self {
                content_type: "application/json",
                chunks: vec![body],
                extra: None,
            }
        }

        fn sse(chunks: Vec<&'static str>) -> Self {
            Self {
                content_type: "text/event-stream",
                chunks,
                extra: None,
            }
        }
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        rejection: Option<Rejection>,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    async fn run_with<B>(
        layer: McpPolicyLayer,
        request: Request<B>,
        answer: Answer,
    ) -> (Reply, Probe)
    where
        B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
    {
        let probe = Probe::default();
        let p = probe.clone();
        let service = ServiceBuilder::new().layer(layer).service_fn(
            move |request: Request<RequestBody<B>>| {
                let p = p.clone();
                let answer = answer.clone();
                async move {
                    p.calls.fetch_add(1, Ordering::SeqCst);
                    *p.call.lock().unwrap() = request.extensions().get::<McpCall>().cloned();
                    *p.policy.lock().unwrap() = request.extensions().get::<ToolPolicy>().cloned();
                    if request.method() == Method::POST {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        *p.body.lock().unwrap() = Some(body);
                    }
                    let length: usize = answer.chunks.iter().map(|c| c.len()).sum();
                    let mut response = Response::new(Chunks::of(answer.chunks));
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
                    if let Some((name, value)) = answer.extra {
                        headers.insert(name, HeaderValue::from_static(value));
                    }
                    Ok::<_, Infallible>(response)
                }
            },
        );
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let reply = Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            rejection: parts.extensions.get::<Rejection>().cloned(),
        };
        (reply, probe)
    }

    async fn run(
        layer: McpPolicyLayer,
        request: Request<Chunks>,
        answer: Answer,
    ) -> (Reply, Probe) {
        run_with(layer, request, answer).await
    }

    fn policy() -> ToolPolicy {
        ToolPolicy::new()
            .require("echo", ["tools:echo"])
            .require("add", ["tools:add", "math"])
    }

    fn caller(scopes: &[&str]) -> Principal {
        Principal::builder("bob", AuthMethod::ApiKey)
            .scopes(scopes.iter().copied())
            .key_id("key-1")
            .build()
    }

    fn post(body: impl Into<Bytes>, principal: Option<Principal>) -> Request<Chunks> {
        let mut request = Request::post("/mcp")
            .header(CONTENT_TYPE, "application/json")
            .body(Chunks::of([body.into()]))
            .unwrap();
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        request
    }

    fn call(id: u32, tool: &str) -> Value {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
    }

    async fn call_tool(tool: &str, principal: Option<Principal>) -> (Reply, Probe) {
        let request = post(call(1, tool).to_string(), principal);
        run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await
    }

    #[test]
    fn policy_from_json_takes_arrays_strings_and_a_default() {
        let policy = ToolPolicy::try_from_json(
            r#"{"echo":["tools:echo"],"add":" tools:add  math ","open":[],"*":"tools:admin"}"#,
        )
        .unwrap();
        let scopes = |tool| policy.required_scopes(tool).collect::<Vec<_>>();
        assert_eq!(scopes("echo"), ["tools:echo"]);
        assert_eq!(scopes("add"), ["tools:add", "math"]);
        assert!(scopes("open").is_empty());
        assert_eq!(scopes("reset"), ["tools:admin"]);
        assert_eq!(
            policy,
            ToolPolicy::new()
                .require("echo", ["tools:echo"])
                .require("add", ["tools:add", "math"])
                .require("open", Vec::<String>::new())
                .default_scopes(["tools:admin"])
        );
        assert!(format!("{policy:?}").contains("tools:admin"));
    }

    #[test]
    fn policy_from_json_names_the_variable_on_bad_input() {
        for text in [
            "",
            "not json",
            "[]",
            r#""echo""#,
            r#"{"echo":1}"#,
            r#"{"echo":[1]}"#,
            r#"{"echo":{"a":"b"}}"#,
            r#"{"":["x"]}"#,
            r#"{"echo":["has space"]}"#,
            r#"{"echo":["quo\"te"]}"#,
            r#"{"echo":[""]}"#,
        ] {
            let error = ToolPolicy::try_from_json(text).unwrap_err();
            assert_eq!(error.setting(), "MCP_TOOL_SCOPES", "{text}");
            assert!(error.to_string().starts_with("invalid MCP_TOOL_SCOPES: "));
        }
    }

    #[test]
    fn policy_honours_granted_wildcards() {
        let policy = policy().default_scopes(["tools:other"]);
        assert!(policy.allows(&caller(&["tools:echo"]), "echo"));
        assert!(policy.allows(&caller(&["tools:*"]), "echo"));
        assert!(policy.allows(&caller(&["*"]), "add"));
        assert!(policy.allows(&Principal::anonymous(), "anything"));
        assert_eq!(policy.missing(&caller(&["tools:*"]), "add"), ["math"]);
        assert_eq!(policy.missing(&caller(&[]), "unlisted"), ["tools:other"]);
        assert!(ToolPolicy::new().allows(&caller(&[]), "anything"));
    }

    #[tokio::test]
    async fn calls_are_allowed_with_exact_wildcard_and_star_scopes() {
        for scopes in [&["tools:echo"][..], &["tools:*"], &["*"]] {
            let (reply, probe) = call_tool("echo", Some(caller(scopes))).await;
            assert_eq!(reply.status, StatusCode::OK, "{scopes:?}");
            assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
        }
        let (reply, _) = call_tool("add", Some(Principal::anonymous())).await;
        assert_eq!(reply.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn missing_scopes_are_refused_with_a_challenge() {
        let (reply, probe) = call_tool("add", Some(caller(&["tools:echo", "math"]))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0, "inner not called");
        assert_eq!(
            reply.headers[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="tools:add""#
        );
        assert_eq!(reply.headers[CONTENT_TYPE], "application/problem+json");
        let problem = reply.json();
        assert_eq!(problem["code"], "insufficient_scope");
        assert_eq!(problem["status"], 403);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("`add`") && detail.contains("tools:add"),
            "{detail}"
        );
        assert_eq!(reply.rejection.unwrap().reason(), Reason::InsufficientScope);

        let (reply, _) = call_tool("add", Some(caller(&[]))).await;
        assert_eq!(
            reply.headers[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="tools:add math""#
        );
    }

    #[tokio::test]
    async fn a_request_without_a_principal_has_no_scopes() {
        let (reply, probe) = call_tool("echo", None).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        assert_eq!(reply.json()["code"], "insufficient_scope");
    }

    #[tokio::test]
    async fn unlisted_tools_are_open_unless_a_default_is_set() {
        let (reply, probe) = call_tool("whoami", Some(caller(&[]))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);

        let layer = McpPolicyLayer::new(policy().default_scopes(["tools:rest"]));
        let request = post(call(1, "whoami").to_string(), Some(caller(&["tools:echo"])));
        let (reply, _) = run(layer, request, Answer::json("{}")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(
            reply.headers[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="tools:rest""#
        );
    }

    #[tokio::test]
    async fn one_forbidden_call_refuses_a_batch() {
        let batch = json!([
            {"jsonrpc":"2.0","method":"notifications/initialized"},
            call(1, "echo"),
            call(2, "add"),
        ]);
        let request = post(batch.to_string(), Some(caller(&["tools:echo"])));
        let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("[]")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        assert_eq!(
            reply.headers[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="tools:add math""#
        );

        let batch = json!([call(1, "echo"), {"jsonrpc":"2.0","id":2,"method":"ping"}]);
        let request = post(batch.to_string(), Some(caller(&["tools:echo"])));
        let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("[]")).await;
        assert_eq!(reply.status, StatusCode::OK);
        let call = probe.call.lock().unwrap().clone().unwrap();
        assert_eq!((call.method(), call.tool()), ("tools/call", Some("echo")));
    }

    #[tokio::test]
    async fn the_inner_service_sees_the_call_the_policy_and_the_same_body() {
        let body = call(7, "echo").to_string();
        let request = post(body.clone(), Some(caller(&["tools:echo"])));
        let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "{}");
        assert_eq!(
            probe.call.lock().unwrap().clone(),
            Some(McpCall::new("tools/call", Some("echo".into())))
        );
        assert_eq!(probe.policy.lock().unwrap().clone(), Some(policy()));
        assert_eq!(probe.body.lock().unwrap().clone().unwrap(), body);

        let request = post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, None);
        let (_, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await;
        assert_eq!(
            probe.call.lock().unwrap().clone(),
            Some(McpCall::new("ping", None))
        );
    }

    #[tokio::test]
    async fn other_requests_stream_through_unbuffered() {
        // An endless body: a layer that buffered it would never answer.
        let requests = [
            Request::get("/mcp")
                .header(CONTENT_TYPE, "application/json")
                .body(Chunks::endless("{"))
                .unwrap(),
            Request::post("/mcp")
                .header(CONTENT_TYPE, "text/plain")
                .body(Chunks::endless("{"))
                .unwrap(),
            Request::post("/mcp").body(Chunks::endless("{")).unwrap(),
        ];
        for request in requests {
            let probe = Probe::default();
            let p = probe.clone();
            let service = McpPolicyLayer::new(policy()).layer(tower::service_fn(
                move |request: Request<RequestBody<Chunks>>| {
                    p.calls.fetch_add(1, Ordering::SeqCst);
                    *p.call.lock().unwrap() = request.extensions().get::<McpCall>().cloned();
                    async { Ok::<_, Infallible>(Response::new(Chunks::of(["ok"]))) }
                },
            ));
            let response = tokio::time::timeout(Duration::from_secs(5), service.oneshot(request))
                .await
                .expect("answered without reading the body")
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
            assert!(probe.call.lock().unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_with_413() {
        let layer = || McpPolicyLayer::new(policy()).max_body_bytes(16);
        let body = call(1, "echo").to_string();
        // Known length (size hint) and streamed chunks without one.
        let known = post(body.clone(), Some(caller(&["*"])));
        let streamed = Request::post("/mcp")
            .header(CONTENT_TYPE, "application/json")
            .body(Chunks::of(
                body.as_bytes()
                    .chunks(10)
                    .map(Bytes::copy_from_slice)
                    .collect::<Vec<_>>(),
            ))
            .unwrap();
        for request in [known, streamed] {
            let (reply, probe) = run(layer(), request, Answer::json("{}")).await;
            assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(reply.json()["code"], "payload_too_large");
            assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        }
    }

    #[tokio::test]
    async fn malformed_json_is_passed_through_untouched() {
        for body in ["{\"jsonrpc\":", "not json", "", "[1,]"] {
            let request = post(body, None);
            let (reply, probe) =
                run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{body}");
            assert_eq!(probe.body.lock().unwrap().clone().unwrap(), body);
            assert!(probe.call.lock().unwrap().is_none());
        }
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"add","inputSchema":{}},{"name":"whoami","inputSchema":{}}]}}"#;

    fn names(message: &Value) -> Vec<&str> {
        message["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap())
            .collect()
    }

    fn list(id: u32, principal: Option<Principal>) -> Request<Chunks> {
        post(
            json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}).to_string(),
            principal,
        )
    }

    #[tokio::test]
    async fn tools_list_json_answers_show_only_callable_tools() {
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(3, Some(caller(&["tools:echo"]))),
            Answer::json(TOOLS),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.headers.get(CONTENT_LENGTH).is_none());
        let message = reply.json();
        assert_eq!(names(&message), ["echo", "whoami"]);
        assert_eq!(message["id"], 3);

        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(3, Some(caller(&["*"]))),
            Answer::json(TOOLS),
        )
        .await;
        assert_eq!(reply.body, TOOLS, "nothing removed: the bytes are kept");

        // A tool without a name cannot be checked, so it is never shown.
        let nameless =
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"title":"?"}]}}"#;
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(3, Some(caller(&["*"]))),
            Answer::json(nameless),
        )
        .await;
        assert_eq!(names(&reply.json()), ["echo"]);
    }

    #[tokio::test]
    async fn answers_for_another_id_are_left_alone() {
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(4, Some(caller(&[]))),
            Answer::json(TOOLS),
        )
        .await;
        assert_eq!(reply.body, TOOLS);

        let events = ["data: ", TOOLS, "\n\n"].concat().leak();
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(4, Some(caller(&[]))),
            Answer::sse(vec![events]),
        )
        .await;
        assert_eq!(reply.body, *events);
    }

    #[tokio::test]
    async fn tools_list_event_streams_keep_every_other_event_byte_for_byte() {
        let priming = "id: 0\r\nretry: 3000\r\ndata:\r\n\r\n";
        let progress = ": keep-alive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\n";
        let progress_end = "data: \"params\":{}}\n\n";
        let after = "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n";
        let target = ["id: 7\ndata: ", TOOLS, "\n\n"].concat().leak();
        // The answer arrives split mid-line, and a CRLF split between chunks.
        let (head, tail) = target.split_at(20);
        let chunks = vec![
            &priming[..priming.len() - 1],
            &priming[priming.len() - 1..],
            progress,
            progress_end,
            head,
            tail,
            after,
        ];
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(3, Some(caller(&["tools:echo"]))),
            Answer::sse(chunks),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers[CONTENT_TYPE], "text/event-stream");
        assert!(reply.headers.get(CONTENT_LENGTH).is_none());
        let text = std::str::from_utf8(&reply.body).unwrap();
        let prefix = [priming, progress, progress_end].concat();
        assert!(text.starts_with(&prefix), "{text}");
        assert!(text.ends_with(after), "{text}");
        let rewritten = &text[prefix.len()..text.len() - after.len()];
        let data = rewritten
            .strip_prefix("id: 7\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("{rewritten:?}"));
        let message: Value = serde_json::from_str(data).unwrap();
        assert_eq!(names(&message), ["echo", "whoami"]);
    }

    #[tokio::test]
    async fn an_unterminated_last_event_is_filtered_too() {
        let events = ["data: ", TOOLS].concat().leak();
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(3, None),
            Answer::sse(vec![events]),
        )
        .await;
        let text = std::str::from_utf8(&reply.body).unwrap();
        let message: Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(names(&message), ["whoami"]);
    }

    #[tokio::test]
    async fn lists_too_large_to_filter_fail_closed() {
        let layer = || McpPolicyLayer::new(policy()).max_response_bytes(64);
        let (reply, _) = run(layer(), list(3, Some(caller(&[]))), Answer::json(TOOLS)).await;
        let error = reply.json();
        assert_eq!(error["id"], 3);
        assert_eq!(error["error"]["code"], -32603);
        assert!(!reply.body.windows(4).any(|w| w == b"echo"));

        let events = ["data: ", TOOLS, "\n\n"].concat().leak();
        let (reply, _) = run(
            layer(),
            list(3, Some(caller(&[]))),
            Answer::sse(vec!["data: {}\n\n", events]),
        )
        .await;
        let text = std::str::from_utf8(&reply.body).unwrap();
        let error = text
            .strip_prefix("data: {}\n\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("{text}"));
        let error: Value = serde_json::from_str(error).unwrap();
        assert_eq!(error["error"]["code"], -32603);
        assert_eq!(error["id"], 3);
    }

    #[tokio::test]
    async fn compressed_lists_fail_closed() {
        let mut answer = Answer::json(TOOLS);
        answer.extra = Some(("content-encoding", "gzip"));
        let (reply, _) = run(
            McpPolicyLayer::new(policy()),
            list(3, Some(caller(&[]))),
            answer,
        )
        .await;
        assert!(reply.headers.get(CONTENT_ENCODING).is_none());
        assert_eq!(reply.json()["error"]["code"], -32603);
    }

    #[tokio::test]
    async fn answers_to_other_methods_are_not_touched() {
        let request = post(call(3, "echo").to_string(), Some(caller(&["*"])));
        let (reply, _) = run(McpPolicyLayer::new(policy()), request, Answer::json(TOOLS)).await;
        assert_eq!(reply.body, TOOLS);
        assert_eq!(
            reply.headers[CONTENT_LENGTH],
            TOOLS.len().to_string().as_str()
        );
    }

    #[test]
    fn events_end_at_a_blank_line_whatever_the_line_endings() {
        for (text, end) in [
            ("data: a\n\nrest", Some(9)),
            ("data: a\r\n\r\nrest", Some(11)),
            ("data: a\r\rrest", Some(9)),
            ("\n", Some(1)),
            ("data: a\r\n\r", None),
            ("data: a\n", None),
        ] {
            assert_eq!(
                Scan::default().complete_event(text.as_bytes()),
                end,
                "{text:?}"
            );
        }
        let mut scan = Scan::default();
        assert_eq!(scan.complete_event(b"data: a\r"), None);
        assert_eq!(scan.complete_event(b"data: a\r\n"), None);
        assert_eq!(scan.complete_event(b"data: a\r\n\n"), Some(10));
    }

    #[test]
    fn tool_names_in_details_are_bounded_and_printable() {
        let name = format!("a\nb{}", "x".repeat(100));
        let shown = display_name(&name);
        assert!(shown.starts_with("a\u{fffd}b"));
        assert_eq!(shown.chars().count(), MAX_TOOL_NAME_CHARS + 1);
    }
}
