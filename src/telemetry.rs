//! Events the layers report to the [`metrics`](crate::metrics) facade; each
//! function compiles to nothing without the `metrics` feature.

#![allow(dead_code, unused_variables)]
// which callers exist depends on the features
// The metric names are public through `crate::metrics` (feature `metrics`).
#![cfg_attr(not(feature = "metrics"), allow(unreachable_pub))]

// The metric names: always compiled, so that the events below and the
// `metrics` module both take them from here.

/// Requests every layer admitted.
pub const REQUESTS_ADMITTED: &str = "tower_warden_requests_admitted_total";
/// Refused requests, labelled `layer` and `reason`.
pub const REQUESTS_REJECTED: &str = "tower_warden_requests_rejected_total";
/// Authentication failures, labelled `reason`.
pub const AUTH_FAILURES: &str = "tower_warden_auth_failures_total";
/// Seconds from request to response head, labelled `outcome`.
pub const REQUEST_DURATION: &str = "tower_warden_request_duration_seconds";
/// Rate-limit decisions, labelled `policy` and `decision`.
pub const RATE_LIMIT_DECISIONS: &str = "tower_warden_rate_limit_decisions_total";
/// 1 while a shared rate-limit store decides without its backend.
pub const RATE_LIMIT_DEGRADED: &str = "tower_warden_rate_limit_degraded";
/// A circuit breaker's state (0 closed, 1 half-open, 2 open), labelled
/// `breaker`.
pub const BREAKER_STATE: &str = "tower_warden_circuit_breaker_state";
/// Circuit-breaker state changes, labelled `breaker` and `to`.
pub const BREAKER_TRANSITIONS: &str = "tower_warden_circuit_breaker_transitions_total";
/// JWKS fetches and reloads, labelled `result`.
pub const JWKS_REFRESHES: &str = "tower_warden_jwks_refreshes_total";
/// Verified-token cache lookups, labelled `result`.
pub const TOKEN_CACHE: &str = "tower_warden_token_cache_total";

/// The `tracing` target of each layer's decision on a request: `admitted`
/// (field `layer`) or `refused` (fields `layer` and `reason`), at DEBUG
/// level, inside the request's span.
pub const DECISIONS: &str = "tower_warden::decision";

/// Whether anything may listen at `level`: one relaxed load, so that with
/// no subscriber (or none that verbose) the calls below cost a branch.
#[inline(always)]
fn listened(level: tracing::Level) -> bool {
    level <= tracing::level_filters::LevelFilter::current()
}

/// `layer` admitted the request; nothing for an empty name.
#[inline(always)]
pub(crate) fn admitted(layer: &'static str) {
    if listened(tracing::Level::DEBUG) && !layer.is_empty() {
        tracing::debug!(target: DECISIONS, layer, "admitted");
    }
}

/// The request's principal, on the request span (`enduser.id`); the
/// subject only, never a credential.
#[inline]
pub(crate) fn subject(subject: &str) {
    if !listened(tracing::Level::INFO) {
        return;
    }
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("enduser.id", subject);
    }
}

/// The JSON-RPC message of the request, on the request span: the method,
/// the tool of a `tools/call`, the request id; the span is renamed
/// `{method} {tool}` as the MCP conventions name server spans.
#[inline]
pub(crate) fn mcp_message(method: &str, tool: Option<&str>, id: Option<&serde_json::Value>) {
    if !listened(tracing::Level::INFO) {
        return;
    }
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let method = bounded(method);
    span.record("mcp.method.name", method);
    let tool = tool.map(bounded);
    if let Some(tool) = tool {
        span.record("gen_ai.tool.name", tool);
    }
    rename(&span, method, tool);
    match id {
        Some(serde_json::Value::String(id)) => {
            span.record("jsonrpc.request.id", bounded(id));
        }
        Some(serde_json::Value::Number(id)) => {
            span.record("jsonrpc.request.id", tracing::field::display(id));
        }
        _ => {}
    }
}

/// Renames an OpenTelemetry span already started (recording `otel.name`
/// only names a span before it starts); nothing without an OpenTelemetry
/// layer.
#[inline]
fn rename(span: &tracing::Span, method: &str, tool: Option<&str>) {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let context = span.context();
        let started = context.span();
        if started.span_context().is_valid() {
            started.update_name(match tool {
                Some(tool) => format!("{method} {tool}"),
                None => method.to_owned(),
            });
        }
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, method, tool);
}

/// At most 128 bytes of a caller's text (cut at a character boundary), so
/// a span attribute stays small whatever the message said.
pub(crate) fn bounded(text: &str) -> &str {
    const MAX: usize = 128;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A circuit breaker's state as a gauge value: 0 closed, 1 half-open, 2 open.
#[inline]
pub(crate) fn breaker_state(breaker: &str, state: &'static str, value: f64) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::gauge!(BREAKER_STATE, "breaker" => breaker.to_owned()).set(value);
        ::metrics::counter!(BREAKER_TRANSITIONS, "breaker" => breaker.to_owned(), "to" => state)
            .increment(1);
    }
}

/// A shared rate-limit store lost or regained its backend.
#[inline]
pub(crate) fn rate_limit_degraded(degraded: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(RATE_LIMIT_DEGRADED).set(if degraded { 1.0 } else { 0.0 });
}

/// A JWKS fetch or reload, successful or not.
#[inline]
pub(crate) fn jwks_refresh(ok: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(JWKS_REFRESHES, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Lookups in one verified-token cache, as hits and misses; the counters
/// are resolved once (on first use, so after the application installed its
/// recorder), not on every lookup.
#[derive(Default)]
pub(crate) struct CacheLookups {
    #[cfg(feature = "metrics")]
    counters: std::sync::OnceLock<[::metrics::Counter; 2]>,
}

impl CacheLookups {
    /// One lookup.
    #[inline]
    pub(crate) fn record(&self, hit: bool) {
        #[cfg(feature = "metrics")]
        {
            let [hits, misses] = self.counters.get_or_init(|| {
                [
                    ::metrics::counter!(TOKEN_CACHE, "result" => "hit"),
                    ::metrics::counter!(TOKEN_CACHE, "result" => "miss"),
                ]
            });
            if hit { hits } else { misses }.increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = hit;
    }
}

/// Per-policy rate-limit counters, resolved once (on first use, so after
/// the application installed its recorder).
#[derive(Default)]
pub(crate) struct Decisions {
    #[cfg(feature = "metrics")]
    counters: std::sync::OnceLock<[::metrics::Counter; 2]>,
}

impl Decisions {
    /// One decision of the policy `policy`.
    #[inline]
    pub(crate) fn record(&self, policy: &str, allowed: bool) {
        #[cfg(feature = "metrics")]
        {
            let [allow, limit] = self.counters.get_or_init(|| {
                let name = RATE_LIMIT_DECISIONS;
                [
                    ::metrics::counter!(name, "policy" => policy.to_owned(), "decision" => "allowed"),
                    ::metrics::counter!(name, "policy" => policy.to_owned(), "decision" => "limited"),
                ]
            });
            if allowed { allow } else { limit }.increment(1);
        }
    }
}
