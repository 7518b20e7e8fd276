//! OpenTelemetry traces (feature `otel`): one span per request that says
//! what each layer decided, exported over OTLP/HTTP as the standard
//! `OTEL_*` environment variables say, and W3C trace context read from
//! requests and passed on to upstream calls.
//!
//! # The request span
//!
//! [`request_span`] opens the span of one request: a child of the caller's
//! trace when the request carries a valid `traceparent` (and `tracestate`)
//! header, a new trace otherwise; [`Incoming::Link`] starts a new trace in
//! any case and links the caller's span, for callers who should not pick
//! the trace nor switch sampling off. Give it to tower-http's `TraceLayer`
//! (`make_span_with`) outside the perimeter, and [`record_response`] to its
//! `on_response`. While the request is served, the layers fill the span in:
//!
//! | attribute | set by | value |
//! |---|---|---|
//! | `http.request.method`, `url.path`, `request_id` | [`request_span`] | from the request (`x-request-id`) |
//! | `enduser.id` | `AuthLayer` | the principal's subject; never a credential |
//! | `mcp.method.name`, `gen_ai.tool.name`, `jsonrpc.request.id` | `McpPolicyLayer` | the JSON-RPC message; the span is renamed `{method} {tool}` |
//! | `tower_warden.decision` | [`record_response`] | `admitted` or `refused` |
//! | `tower_warden.layer`, `tower_warden.reason` | [`record_response`] | the layer that refused and its reason code |
//! | `http.response.status_code`, `error.type` | [`record_response`] | the status; `error.type` for 5xx |
//!
//! and each guard records its decision as an event of the span on the
//! target [`DECISIONS`] (`admitted` with the `layer` field, or `refused` with
//! `layer` and `reason`), at DEBUG level so that log output at INFO stays
//! one line per request.
//!
//! With no OpenTelemetry subscriber installed all of this is the cost of a
//! `tracing` span and a few disabled events.
//!
//! # Export
//!
//! [`OtelConfig::from_env`] reads the standard variables and is `None`
//! unless an OTLP endpoint is set, so tracing is off unless configured;
//! [`OtelConfig::install`] starts the exporter (batches, on its own thread)
//! and gives the `tracing-subscriber` layer to add to the application's
//! subscriber.
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full URL traces are sent to (`http://collector:4318/v1/traces`) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL; `/v1/traces` is appended |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` | `http/protobuf` (the default and the only one) |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` | milliseconds per export (default 10 000) |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` | headers for the collector (`key=value,...`), read by the exporter |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource, read by the SDK |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | the sampler, read by the SDK (default: parent-based, always on) |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | batching, read by the SDK (5 000 ms, 2 048 spans, 512 per export); a full queue drops spans |
//! | `OTEL_TRACES_EXPORTER` | `otlp` (default) or `none` (off) |
//! | `OTEL_SDK_DISABLED` | `true`: off |
//!
//! A value this crate cannot honour (another protocol or exporter, an
//! endpoint that is not an `http`/`https` URL, a timeout that is not a
//! number) is a [`ConfigError`] at start-up, never a silent default.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http::trace::TraceLayer;
//! use tower_warden::otel::{self, OtelConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Off: no endpoint configured.
//! assert!(OtelConfig::from_vars([("OTEL_SERVICE_NAME", "mcp")])?.is_none());
//! // On: spans batched to the collector.
//! let config = OtelConfig::from_vars([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])?
//!     .expect("an endpoint is set");
//! assert_eq!(config.endpoint(), "http://127.0.0.1:4318/v1/traces");
//!
//! let service = ServiceBuilder::new()
//!     .layer(
//!         TraceLayer::new_for_http()
//!             .make_span_with(otel::request_span)
//!             .on_response(|response: &Response<_>, _, span: &tracing::Span| {
//!                 otel::record_response(span, response)
//!             }),
//!     )
//!     .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//! let request = Request::builder()
//!     .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
//!     .body(String::new())?;
//! service.oneshot(request).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ConfigError;
use crate::reject::Rejection;

pub use crate::telemetry::DECISIONS;

/// The `tracing` target of request spans.
pub const TARGET: &str = "tower_warden::request";

/// The default time one export may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The W3C trace-context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The W3C trace-state header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

const REQUEST_ID: &str = "x-request-id";

/// The variables that configure traces: those [`OtelConfig`] reads, then
/// those the exporter and the SDK read themselves (headers, resource,
/// sampler, batching).
pub const VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
];

/// Where and how traces are exported, read from the `OTEL_*` variables
/// (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct OtelConfig {
    endpoint: String,
    timeout: Duration,
}

impl fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The endpoint may carry credentials in its user info.
        f.debug_struct("OtelConfig")
            .field("endpoint", &crate::url_text::redact(&self.endpoint))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtelConfig {
    /// Reads the process environment; `None` when tracing is off.
    ///
    /// # Errors
    ///
    /// A variable this crate cannot honour, named in the error.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `vars` as if they were the environment; `None` when tracing is
    /// off. Empty values count as unset, as the specification says.
    ///
    /// # Errors
    ///
    /// A variable this crate cannot honour, named in the error.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Option<Self>, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.as_ref().starts_with("OTEL_"))
            .filter(|(_, v)| !v.as_ref().trim().is_empty())
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().trim().to_owned()))
            .collect();
        let get = |name: &str| vars.get(name).map(String::as_str);

        if let Some(disabled) = get("OTEL_SDK_DISABLED") {
            match disabled.to_ascii_lowercase().as_str() {
                "true" => return Ok(None),
                "false" => {}
                _ => {
                    return Err(ConfigError::new(
                        "OTEL_SDK_DISABLED",
                        "must be true or false",
                    ));
                }
            }
        }
        match get("OTEL_TRACES_EXPORTER") {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_EXPORTER",
                    format!("{other:?} is not supported: otlp (over HTTP) or none"),
                ));
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = get(name) {
                if protocol != "http/protobuf" {
                    return Err(ConfigError::new(
                        name,
                        format!("{protocol:?} is not supported: http/protobuf"),
                    ));
                }
                break;
            }
        }
        let endpoint = if let Some(url) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            checked_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?.to_owned()
        } else if let Some(base) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = checked_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
            format!("{}/v1/traces", base.trim_end_matches('/'))
        } else {
            return Ok(None);
        };
        let mut timeout = DEFAULT_TIMEOUT;
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ] {
            if let Some(millis) = get(name) {
                timeout = millis
                    .parse::<u64>()
                    .ok()
                    .filter(|&ms| ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        ConfigError::new(name, "must be a positive number of milliseconds")
                    })?;
                break;
            }
        }
        Ok(Some(Self { endpoint, timeout }))
    }

    /// The URL spans are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The time one export may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Starts the exporter: spans are batched and sent from a thread of
    /// their own, so a slow or absent collector never holds a request (a
    /// full queue drops spans). Also installs the W3C trace-context
    /// propagator as OpenTelemetry's global one.
    ///
    /// # Errors
    ///
    /// The exporter cannot be built (named by the endpoint's variable).
    pub fn install(&self) -> Result<Tracing, ConfigError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(self.endpoint.clone())
            .with_timeout(self.timeout)
            .build()
            .map_err(|e| {
                ConfigError::new(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("cannot start the trace exporter: {e}"),
                )
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Tracing::from_provider(provider))
    }
}

/// An `http` or `https` URL with a host, as the exporter will read it.
fn checked_url<'a>(name: &'static str, url: &'a str) -> Result<&'a str, ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ConfigError::new(name, "is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(url),
        _ => Err(ConfigError::new(
            name,
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// A running trace exporter: the `tracing-subscriber` layer that feeds it,
/// and [`shutdown`](Self::shutdown) to send what is still queued.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl fmt::Debug for Tracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

impl Tracing {
    /// Feeds `provider` instead of the OTLP exporter of
    /// [`OtelConfig::install`]: another exporter, sampler or processor,
    /// with the same [`layer`](Self::layer).
    pub fn from_provider(provider: SdkTracerProvider) -> Self {
        Self {
            tracer: provider.tracer("tower-warden"),
            provider,
        }
    }

    /// The layer to add to the application's subscriber. It exports spans
    /// at INFO and above from every crate, and the layers' decision events
    /// (DEBUG, on [`DECISIONS`]) whatever the log level.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                *meta.level() <= tracing::Level::INFO || meta.target() == DECISIONS
            }))
    }

    /// Sends the spans finished so far, and waits until they are sent (up
    /// to the export timeout); blocking, as [`shutdown`](Self::shutdown).
    ///
    /// # Errors
    ///
    /// The export failed or timed out.
    pub fn force_flush(&self) -> Result<(), opentelemetry_sdk::error::OTelSdkError> {
        self.provider.force_flush()
    }

    /// Sends the spans still queued and stops the exporter; call it once,
    /// when the application ends (it blocks for up to the export timeout;
    /// from async code, run it with `spawn_blocking`).
    ///
    /// # Errors
    ///
    /// The last export failed or timed out.
    pub fn shutdown(self) -> Result<(), opentelemetry_sdk::error::OTelSdkError> {
        self.provider.shutdown()
    }
}

/// Opens the span of one request (see the [module docs](self)): the
/// `traceparent` header, when valid, makes it a child of the caller's span
/// ([`Incoming::Continue`]). Its signature fits tower-http's
/// `TraceLayer::make_span_with`.
pub fn request_span<B>(request: &Request<B>) -> Span {
    Incoming::Continue.request_span(request)
}

/// What a request's span makes of the trace context the caller sent
/// (`traceparent`, `tracestate`).
///
/// A caller that may set `traceparent` chooses the trace its requests are
/// recorded in, and with a parent-based sampler (the default) whether they
/// are recorded at all: the sampled flag `00` turns tracing off for its
/// requests, refusals included. Where callers are not trusted with that,
/// [`Link`](Self::Link) keeps their context as a link only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Incoming {
    /// The request's span is a child of the caller's span: one trace from
    /// the caller on (W3C Trace Context's way).
    #[default]
    Continue,
    /// The request's span starts a trace of this process's own, sampled by
    /// its sampler, and links the caller's span.
    Link,
}

impl Incoming {
    /// The setting's name for it: `continue` or `link`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::Link => "link",
        }
    }

    /// Opens the span of one request (see the [module docs](self)), with
    /// the caller's trace context taken as `self` says.
    pub fn request_span<B>(self, request: &Request<B>) -> Span {
        let method = request.method().as_str();
        // What the caller wrote, bounded before it becomes an attribute.
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(bounded);
        let path = bounded(request.uri().path());
        let span = tracing::info_span!(
            target: TARGET,
            "request",
            otel.name = method,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            url.path = path,
            request_id,
            enduser.id = Empty,
            mcp.method.name = Empty,
            gen_ai.tool.name = Empty,
            jsonrpc.request.id = Empty,
            tower_warden.decision = Empty,
            tower_warden.layer = Empty,
            tower_warden.reason = Empty,
            http.response.status_code = Empty,
            error.type = Empty,
        );
        if !span.is_disabled()
            && request.headers().contains_key(TRACEPARENT)
            && let Some(caller) = remote(request.headers())
        {
            match self {
                // Only fails when no OpenTelemetry layer is installed.
                Self::Continue => drop(span.set_parent(caller)),
                Self::Link => span.add_link(caller.span().span_context().clone()),
            }
        }
        span
    }
}

impl std::str::FromStr for Incoming {
    type Err = String;

    /// `continue` or `link`, in any case.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "continue" => Ok(Self::Continue),
            "link" => Ok(Self::Link),
            _ => Err(format!("`{text}` is not one of continue, link")),
        }
    }
}

/// Records on `span` how the request ended: the status, and whether the
/// perimeter admitted it or which layer refused it and why (the
/// [`Rejection`] the refusal carries). Fits tower-http's
/// `TraceLayer::on_response`, with the latency argument dropped.
pub fn record_response<B>(span: &Span, response: &Response<B>) {
    if span.is_disabled() {
        return;
    }
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    match response.extensions().get::<Rejection>() {
        Some(rejection) => {
            let reason = rejection.reason();
            span.record("tower_warden.decision", "refused");
            span.record("tower_warden.layer", reason.layer());
            span.record("tower_warden.reason", reason.code());
        }
        None => {
            span.record("tower_warden.decision", "admitted");
        }
    }
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// A W3C trace context as text: `traceparent`, and `tracestate` when not
/// empty. What a span passes on ([`TraceContext::of`]), and what an MCP
/// message's `_meta` carries (SEP-414).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The `traceparent` value.
    pub traceparent: String,
    /// The `tracestate` value; `None` when empty.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context `traceparent` (with `tracestate`) names, as carried in
    /// the `_meta` of an MCP message; checked where it is used.
    pub fn new(traceparent: impl Into<String>, tracestate: Option<&str>) -> Self {
        Self {
            traceparent: traceparent.into(),
            tracestate: tracestate.filter(|s| !s.is_empty()).map(str::to_owned),
        }
    }

    /// The context of `span`, to pass its trace on: in the headers of an
    /// upstream request, or in the `_meta` of an MCP message. `None` when
    /// the span is not traced.
    pub fn of(span: &Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut fields = Fields::default();
        TraceContextPropagator::new().inject_context(&context, &mut fields);
        Some(Self::new(fields.traceparent?, fields.tracestate.as_deref()))
    }

    /// The remote context it names, when valid.
    fn remote(&self) -> Option<opentelemetry::Context> {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(&self.traceparent).ok()?);
        if let Some(value) = self
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert(TRACESTATE, value);
        }
        remote(&headers)
    }
}

/// Puts the trace context of `span` in `headers` (`traceparent`, and
/// `tracestate` when not empty), replacing what was there. Nothing when
/// the span is not traced.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if let Some(context) = TraceContext::of(span) {
        if let Ok(value) = HeaderValue::from_str(&context.traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        match context
            .tracestate
            .and_then(|s| HeaderValue::from_str(&s).ok())
        {
            Some(value) => headers.insert(TRACESTATE, value),
            None => headers.remove(TRACESTATE),
        };
    }
}

/// Makes `span` a child of `parent` (from an MCP message's `_meta`, say);
/// call it before the span is first entered. Whether it did: `false` for
/// an invalid `traceparent` or when no OpenTelemetry layer is installed.
pub fn set_parent(span: &Span, parent: &TraceContext) -> bool {
    if span.is_disabled() {
        return false;
    }
    parent
        .remote()
        .is_some_and(|parent| span.set_parent(parent).is_ok())
}

/// The span of one MCP tool call, `tools/call {tool}`, for the task that
/// runs it (not the request's: an MCP session's task outlives requests).
/// A child of `request`, the context of the HTTP request that carried the
/// call; or of `message`, the message's `_meta` context, when that names
/// another trace than the request's (then linked to the request's span).
pub fn tool_span(
    tool: &str,
    request: Option<&TraceContext>,
    message: Option<&TraceContext>,
) -> Span {
    let tool = bounded(tool);
    let span = tracing::info_span!(
        parent: None,
        "tool call",
        otel.name = format!("tools/call {tool}"),
        mcp.method.name = "tools/call",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
    );
    if span.is_disabled() {
        return span;
    }
    let trace = |context: &opentelemetry::Context| context.span().span_context().trace_id();
    let request = request.and_then(TraceContext::remote);
    match (message.and_then(TraceContext::remote), request) {
        (Some(message), request) if request.as_ref().map(trace) != Some(trace(&message)) => {
            // Only fails when no OpenTelemetry layer is installed.
            let _ = span.set_parent(message);
            if let Some(request) = request {
                span.add_link(request.span().span_context().clone());
            }
        }
        (_, Some(request)) => {
            let _ = span.set_parent(request);
        }
        _ => {}
    }
    span
}

/// At most 128 bytes of a caller's text (cut at a character boundary), so
/// that a span attribute stays small whatever the caller sent.
pub fn bounded(text: &str) -> &str {
    crate::telemetry::bounded(text)
}

/// The remote context `headers` carry (`traceparent`, `tracestate`), when
/// valid.
fn remote(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    context.span().span_context().is_valid().then_some(context)
}

/// Headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The two fields the propagator writes.
#[derive(Default)]
struct Fields {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" => self.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
