//! The tools of the reference server: `echo`, `add`, `sleep`, `whoami`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use tower_warden::client_cert::ClientCertInfo;
use tower_warden::client_ip::{ClientIp, peer_ip};
use tower_warden::mcp::ToolPolicy;
use tower_warden::otel;
use tower_warden::principal::Principal;
use tower_warden::tool_rules::{AnnotationPolicy, ToolRules};
use tracing::Instrument as _;

/// The longest `sleep` accepted, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// Arguments of `echo`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `add`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// The first number.
    pub a: f64,
    /// The second number.
    pub b: f64,
}

/// Arguments of `sleep`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds (at most 10 000).
    pub ms: u64,
}

/// More tools, found per caller (the gateway's upstream tools). Boxed
/// futures: called once per `tools/list` or routed `tools/call`.
pub trait ToolSource: Send + Sync + 'static {
    /// The tools `namespace` may use, listed for the caller whose request
    /// extensions are `caller` (its principal, and its access token when
    /// the auth layer keeps it).
    fn tools_for<'a>(
        &'a self,
        namespace: &'a str,
        caller: Option<&'a http::Extensions>,
    ) -> BoxFuture<'a, Vec<Tool>>;

    /// Runs `name` for `caller` in `namespace`; `None` when `name` is not
    /// one of this source's tools. A refusal by the tool rules is an `Err`
    /// (a JSON-RPC error, as the handler's own refusals are).
    fn call<'a>(
        &'a self,
        namespace: &'a str,
        caller: Option<&'a http::Extensions>,
        name: &'a str,
        arguments: Option<JsonObject>,
    ) -> BoxFuture<'a, Option<Result<CallToolResult, ErrorData>>>;
}

/// How long one call of each tool may run (`MCP_TOOL_TIMEOUTS`, else
/// `MCP_REQUEST_TIMEOUT`): the whole call, on every transport, a result
/// streamed over SSE or sent on a WebSocket included.
#[derive(Clone, Debug)]
pub struct Deadlines {
    rules: ToolRules<Duration>,
    default: Duration,
}

impl Deadlines {
    /// `rules` by tool rule, `default` for every tool no rule matches.
    pub fn new(rules: &[(String, Duration)], default: Duration) -> Self {
        let mut table = ToolRules::new();
        for (tool, deadline) in rules {
            table.insert(tool.clone(), *deadline);
        }
        Self {
            rules: table,
            default,
        }
    }

    /// How long a call of `tool` may run.
    pub fn of(&self, tool: &str) -> Duration {
        self.rules
            .find(tool)
            .map_or(self.default, |(_, deadline)| *deadline)
    }
}

/// The JSON-RPC error code of a call cut at its deadline (the one MCP SDKs
/// use for a request that timed out).
pub const TIMED_OUT: ErrorCode = ErrorCode(-32001);

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The MCP server handler: one per session (or per stateless request).
#[derive(Clone)]
pub struct Tools {
    tool_router: ToolRouter<Self>,
    more: Option<Arc<dyn ToolSource>>,
    /// Per-tool scopes, checked here too, so that every transport (the
    /// WebSocket one included) enforces them.
    policy: Option<ToolPolicy>,
    /// How long each tool may run; unbounded when `None`.
    deadlines: Option<Arc<Deadlines>>,
    /// Rules on tool annotations (`MCP_TOOL_ANNOTATION_SCOPES`,
    /// `MCP_TOOL_ANNOTATIONS_OFF`), checked beside `policy`.
    annotations: Option<Arc<AnnotationPolicy>>,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("more", &self.more.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Tools {
    fn default() -> Self {
        Self::new()
    }
}

impl Tools {
    /// A handler with every built-in tool.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            more: None,
            policy: None,
            deadlines: None,
            annotations: None,
        }
    }

    /// A handler that also offers `more`'s tools to each caller.
    pub fn with_source(more: Arc<dyn ToolSource>) -> Self {
        Self {
            tool_router: Self::tool_router(),
            more: Some(more),
            policy: None,
            deadlines: None,
            annotations: None,
        }
    }

    /// The same handler, hiding and refusing the tools `policy` does not
    /// allow the caller.
    #[must_use]
    pub fn with_policy(mut self, policy: Option<ToolPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The same handler, cutting each tool call at its deadline: the caller
    /// gets a JSON-RPC error ([`TIMED_OUT`]) on whatever carries the
    /// answer, the call's work is dropped and its cancellation token
    /// cancelled, and an upstream tool's call is abandoned (rmcp's client
    /// then sends the upstream `notifications/cancelled`).
    #[must_use]
    pub fn with_deadlines(mut self, deadlines: Option<Arc<Deadlines>>) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// The same handler, hiding and refusing tools by their annotations
    /// as `annotations` says.
    #[must_use]
    pub fn with_annotations(mut self, annotations: Option<Arc<AnnotationPolicy>>) -> Self {
        self.annotations = annotations;
        self
    }

    /// Whether the caller of `context` may see and call `tool`. Without a
    /// principal (no auth layer in front) the policy cannot admit anyone.
    fn allowed(&self, context: &RequestContext<RoleServer>, tool: &str) -> bool {
        let Some(policy) = &self.policy else {
            return true;
        };
        caller(context).is_some_and(|principal| policy.allows(principal, tool))
    }

    /// Why the caller of `context` may not see or call a tool with these
    /// annotations, if it may not.
    fn annotation_refusal(
        &self,
        context: &RequestContext<RoleServer>,
        annotations: Option<&ToolAnnotations>,
    ) -> Option<String> {
        let policy = self.annotations.as_deref()?;
        let annotations = annotations.and_then(|a| serde_json::to_value(a).ok());
        policy.refusal(caller(context), annotations.as_ref())
    }
}

impl Tools {
    /// Runs a call the caller may make: a built-in tool, else one of the
    /// source's.
    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.allowed(&context, &request.name) {
            return Err(ErrorData::invalid_request(
                format!(
                    "insufficient_scope: the caller may not call {}",
                    request.name
                ),
                None,
            ));
        }
        if let Some(tool) = self.tool_router.get(&request.name) {
            if let Some(refusal) = self.annotation_refusal(&context, tool.annotations.as_ref()) {
                return Err(ErrorData::invalid_request(refusal, None));
            }
            let call = ToolCallContext::new(self, request, context);
            return self.tool_router.call(call).await;
        }
        // The source checks the annotations of its tools as it lists them.
        if let (Some(more), Some(namespace)) = (&self.more, namespace_of(&context))
            && let Some(answer) = more
                .call(
                    &namespace,
                    caller_extensions(&context),
                    &request.name,
                    request.arguments.clone(),
                )
                .await
        {
            return answer.map(Into::into);
        }
        Err(ErrorData::invalid_params(
            format!("tool not found: {}", request.name),
            None,
        ))
    }

    /// A call under its deadline, when deadlines are set.
    async fn timed(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(deadlines) = &self.deadlines else {
            return self.dispatch(request, context).await;
        };
        let deadline = deadlines.of(&request.name);
        let name = request.name.clone();
        let cancel = context.ct.clone();
        match tokio::time::timeout(deadline, self.dispatch(request, context)).await {
            Ok(answer) => answer,
            Err(_) => {
                cancel.cancel();
                tracing::info!(tool = %name, deadline_ms = deadline.as_millis(), "tool call cut at its deadline");
                Err(ErrorData::new(
                    TIMED_OUT,
                    format!(
                        "the call of {name} ran past its deadline of {} ms and was cancelled",
                        deadline.as_millis()
                    ),
                    None,
                ))
            }
        }
    }
}

/// The span of one tool call, in the trace of the HTTP request that
/// carried it, or of the message's `_meta.traceparent` (`otel::tool_span`).
fn tool_span(tool: &str, context: &RequestContext<RoleServer>) -> tracing::Span {
    let request = caller_extensions(context).and_then(|e| e.get::<otel::TraceContext>());
    let message = context
        .meta
        .get_traceparent()
        .map(|parent| otel::TraceContext::new(parent, context.meta.get_tracestate()));
    otel::tool_span(tool, request, message.as_ref())
}

/// A request from a gateway (this one or another) gets no upstream tools:
/// this stops a gateway registered as its own upstream, or a loop of
/// gateways, from recursing.
pub const GATEWAY_HOP: &str = "x-mcp-gateway-hop";

/// The extensions of the caller's HTTP request, as the layers left them.
fn caller_extensions(context: &RequestContext<RoleServer>) -> Option<&http::Extensions> {
    context
        .extensions
        .get::<http::request::Parts>()
        .map(|parts| &parts.extensions)
}

/// The caller, as the auth layer left it.
fn caller(context: &RequestContext<RoleServer>) -> Option<&Principal> {
    caller_extensions(context)?.get::<Principal>()
}

/// The caller's namespace, from the principal the auth layer left; `None`
/// for a gateway's own call.
fn namespace_of(context: &RequestContext<RoleServer>) -> Option<String> {
    let parts = context.extensions.get::<http::request::Parts>()?;
    if parts.headers.contains_key(GATEWAY_HOP) {
        return None;
    }
    let principal = parts.extensions.get::<Principal>()?;
    principal
        .namespace()
        .filter(|ns| tower_warden::namespace::is_valid(ns))
        .map(str::to_owned)
}

fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

#[tool_router]
impl Tools {
    #[tool(
        description = "Return the given text unchanged",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn echo(&self, Parameters(EchoArgs { text: t }): Parameters<EchoArgs>) -> CallToolResult {
        text(t)
    }

    #[tool(
        description = "Add two numbers",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let sum = a + b;
        if !sum.is_finite() {
            return Err(ErrorData::invalid_params(
                "the sum is not a finite number",
                None,
            ));
        }
        Ok(text(sum.to_string()))
    }

    #[tool(
        description = "Wait the given number of milliseconds (at most 10000), then answer",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if ms > MAX_SLEEP_MS {
            return Err(ErrorData::invalid_params(
                format!("ms must be at most {MAX_SLEEP_MS}"),
                None,
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(text(format!("slept {ms} ms"))),
            () = context.ct.cancelled() => Err(ErrorData::internal_error("the call was cancelled", None)),
        }
    }

    #[tool(
        description = "What the server knows about the caller: client address (and later certificate and principal)",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn whoami(&self, context: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let parts = context.extensions.get::<http::request::Parts>();
        let client_ip = parts.and_then(|p| ClientIp::of(&p.extensions));
        let peer = parts.and_then(|p| {
            p.extensions
                .get::<SocketAddr>()
                .map(|addr| addr.ip())
                .or_else(|| peer_ip(&p.extensions))
        });
        // Present only when `ClientCertLayer` admitted the request.
        let client_cert = parts
            .and_then(|p| p.extensions.get::<ClientCertInfo>())
            .map(|info| serde_json::json!({ "verified": true, "subject": info.subject() }));
        let report = serde_json::json!({
            "client_ip": client_ip.map(|ip| ip.to_string()),
            "peer_ip": peer.map(|ip| ip.to_string()),
            "client_cert": client_cert,
        });
        Ok(text(report.to_string()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        // Filtered by the caller's scopes, namespace or upstreams: the list
        // is the caller's own, never to be shared by a cache.
        let mut per_caller = self.policy.is_some() || self.annotations.is_some();
        if let (Some(more), Some(namespace)) = (&self.more, namespace_of(&context)) {
            tools.extend(
                more.tools_for(&namespace, caller_extensions(&context))
                    .await,
            );
            per_caller = true;
        }
        let cache_hints = context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
        tools.retain(|tool| {
            self.allowed(&context, &tool.name)
                && self
                    .annotation_refusal(&context, tool.annotations.as_ref())
                    .is_none()
        });
        let mut result = ListToolsResult::with_all_items(tools);
        if cache_hints {
            result.ttl_ms = Some(0);
            // Each caller's list is its own once upstream tools are in it.
            result.cache_scope = Some(if per_caller {
                CacheScope::Private
            } else {
                CacheScope::Public
            });
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = tool_span(&request.name, &context);
        self.timed(request, context).instrument(span).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "tower-warden-mcp-server",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Reference MCP server of tower-warden: echo, add, sleep and whoami tools.",
            )
    }
}
