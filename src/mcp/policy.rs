//! Per-tool authorization: which scopes a caller needs to call (and to see)
//! each MCP tool.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::errors::{ErrorCode, RequestBody, is_json_media_type};
use super::json;
use crate::ConfigError;
use crate::audit;
use crate::principal::{McpCall, Principal};
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// The environment variable [`ToolPolicy::try_from_json`] reads its
/// configuration from; configuration errors name it.
const ENV_VAR: &str = "MCP_TOOL_SCOPES";

/// The default cap on buffered request and response bodies.
const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The most characters of a (caller-chosen) tool name repeated in a
/// rejection detail or an audit event.
const MAX_TOOL_NAME_CHARS: usize = 64;

/// The key of an [`MCP_TOOL_SCOPES`](ToolPolicy::try_from_json) object that
/// sets the requirement for tools not listed.
const DEFAULT_KEY: &str = "*";

type Scopes = Box<[Box<str>]>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rules {
    tools: BTreeMap<Box<str>, Scopes>,
    default: Option<Scopes>,
}

/// Which scopes a caller needs to call each MCP tool.
///
/// A listed tool needs every scope listed for it. A tool that is not listed
/// needs the [`default_scopes`](Self::default_scopes) — none unless set, so
/// that unlisted tools are open to every caller that got past
/// authentication. Listing a tool with no scopes opens it even when a
/// default is set.
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
    /// default.
    pub fn require<I, T>(mut self, tool: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.0)
            .tools
            .insert(tool.into().into_boxed_str(), boxed_scopes(scopes));
        self
    }

    /// Requires every scope in `scopes` to call a tool that is not listed
    /// with [`require`](Self::require).
    pub fn default_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.0).default = Some(boxed_scopes(scopes));
        self
    }

    /// Reads the policy from the value of `MCP_TOOL_SCOPES`: a JSON object
    /// from tool name to the scopes it requires, each an array of strings or
    /// one space-separated string. The key `"*"` sets the
    /// [`default_scopes`](Self::default_scopes).
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
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::new(ENV_VAR, format!("not valid JSON: {e}")))?;
        let Value::Object(entries) = value else {
            return Err(ConfigError::new(
                ENV_VAR,
                "expected a JSON object from tool name to scopes, such as \
                 {\"echo\": [\"tools:echo\"]}",
            ));
        };
        let mut policy = Self::new();
        for (tool, scopes) in entries {
            if tool.is_empty() {
                return Err(ConfigError::new(ENV_VAR, "a tool name is empty"));
            }
            let scopes = parse_scopes(&tool, &scopes)?;
            policy = if tool == DEFAULT_KEY {
                policy.default_scopes(scopes)
            } else {
                policy.require(tool, scopes)
            };
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
        match self.0.tools.get(tool) {
            Some(scopes) => scopes,
            None => self.0.default.as_deref().unwrap_or(&[]),
        }
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

    fn allows_for(&self, principal: Option<&Principal>, tool: &str) -> bool {
        self.requirement(tool)
            .iter()
            .all(|scope| principal.is_some_and(|p| p.has_scope(scope)))
    }
}

/// The scopes of one `MCP_TOOL_SCOPES` entry.
fn parse_scopes(tool: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let shape = || {
        ConfigError::new(
            ENV_VAR,
            format!(
                "the scopes of `{}` must be an array of strings or a space-separated string",
                display_name(tool)
            ),
        )
    };
    let scopes: Vec<String> = match value {
        Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(shape))
            .collect::<Result<_, _>>()?,
        _ => return Err(shape()),
    };
    if let Some(bad) = scopes.iter().find(|scope| !is_scope_token(scope)) {
        return Err(ConfigError::new(
            ENV_VAR,
            format!(
                "`{}` is not a scope (of tool `{}`): scopes are printable ASCII without \
                 spaces, quotes or backslashes",
                display_name(bad),
                display_name(tool)
            ),
        ));
    }
    Ok(scopes)
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
        if request.method() != Method::POST || !is_json_media_type(request.headers()) {
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
                body,
                buffer: BytesMut::new(),
                limit,
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
            body: B,
            buffer: BytesMut,
            limit: usize,
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

/// A JSON-RPC error response built by this layer (for a request body that
/// could not be read).
fn json_rpc_error(status: StatusCode, code: ErrorCode, message: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(json::error_object(None, code.code(), message)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
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
                StateProj::Buffering {
                    mut body,
                    buffer,
                    limit,
                    pending,
                } => match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let Ok(mut data) = frame.into_data() else {
                            continue;
                        };
                        if data.remaining() > limit.saturating_sub(buffer.len()) {
                            let response = match pending.take() {
                                Some(p) => {
                                    too_large(&p.layer.responder, &Request::from_parts(p.parts, ()))
                                }
                                None => internal_error(),
                            };
                            State::Answered {
                                response: Some(response),
                            }
                        } else {
                            while data.has_remaining() {
                                let chunk = data.chunk();
                                let len = chunk.len();
                                buffer.extend_from_slice(chunk);
                                data.advance(len);
                            }
                            continue;
                        }
                    }
                    Some(Err(_)) => State::Answered {
                        response: Some(json_rpc_error(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::InvalidRequest,
                            "Invalid Request: the request body could not be read",
                        )),
                    },
                    None => {
                        let bytes = mem::take(buffer).freeze();
                        match pending.take() {
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
                        }
                    }
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

fn internal_error() -> Response<Bytes> {
    json_rpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InternalError,
        "Internal error",
    )
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
        if eof {
            // An unterminated last event is read as if it were terminated.
            let rest = self.buffer.split().freeze();
            self.scan = Scan::default();
            match self.filter.rewrite_event(&rest) {
                Some(rewritten) => self.queue(rewritten),
                None => self.queue(rest),
            }
        } else if self.buffer.len() > self.filter.limit {
            self.fail(Mode::Sse);
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
        Inner { #[pin] body: B },
        Filtering { #[pin] body: B, state: Box<FilterState> },
        Fixed { bytes: Option<Bytes> },
    }
}

impl<B> McpPolicyBody<B> {
    #[inline]
    fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    fn fixed(bytes: Bytes) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        Self {
            kind: Kind::Fixed { bytes },
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
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Fixed { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
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
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Filtering { body, state } => match state.phase {
                Phase::Ended => state.out.is_empty() && state.trailers.is_none(),
                Phase::Passthrough => state.out.is_empty() && body.is_end_stream(),
                Phase::Filtering => false,
            },
            Kind::Fixed { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Filtering { .. } => SizeHint::default(),
            Kind::Fixed { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
