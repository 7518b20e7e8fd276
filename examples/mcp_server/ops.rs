//! What an operator of the reference server needs around the MCP endpoint:
//! logs (text or JSON, with a request id on every line, and an audit file),
//! request ids, Prometheus metrics, the admin `/status` page, CORS, security
//! headers and the request timeout.
//!
//! Everything here is tower-http (request id, trace, CORS, headers,
//! timeout), `tracing-subscriber`, and the `metrics` facade with its
//! Prometheus exporter, configured from the server's [`Settings`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_warden::ConfigError;
use tower_warden::auth::{JwtAuth, RequireLayer};
use tower_warden::ip_filter::{IpFilterLayer, IpSet};
use tower_warden::metrics::{MetricsLayer, REQUEST_DURATION};
use tower_warden::otel::{self, Tracing};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

use super::problem::problem;
use super::serving::{peer_address, serve};
use super::settings::{LogFormat, Settings};

/// The request-id header, set on every request and response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The log subscriber of `config`: `MCP_LOG_LEVEL` (else `RUST_LOG`, else
/// `info`) in `MCP_LOG_FORMAT` to `console`, plus every audit event as a JSON
/// line in `MCP_AUDIT_LOG_FILE` whatever the level, plus the spans of
/// `traces` (OpenTelemetry, when configured). Lines logged while a
/// request is served carry its `request_id` (in JSON, under `span`).
///
/// # Errors
///
/// `MCP_LOG_LEVEL` is not a valid filter, or the audit file cannot be
/// opened for appending.
pub fn log_subscriber<W>(
    settings: &Settings,
    console: W,
    traces: Option<&Tracing>,
) -> Result<impl tracing::Subscriber + Send + Sync + 'static, ConfigError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let logs = &settings.logs;
    let filter = match &logs.level {
        Some(level) => EnvFilter::try_new(level)
            .map_err(|e| ConfigError::new("MCP_LOG_LEVEL", format!("is not a log filter: {e}")))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let console = match logs.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(console)
            .with_filter(filter)
            .boxed(),
        _ => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(console)
            .with_filter(filter)
            .boxed(),
    };
    let audit = match &logs.audit_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    ConfigError::new(
                        "MCP_AUDIT_LOG_FILE",
                        format!("cannot open {} for appending: {e}", path.display()),
                    )
                })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(Mutex::new(file))
                    .with_filter(filter_fn(|meta| {
                        // Spans too, so each line carries its request id.
                        meta.is_span() || meta.target() == tower_warden::audit::TARGET
                    }))
                    .boxed(),
            )
        }
        None => None,
    };
    Ok(tracing_subscriber::registry()
        .with(console)
        .with(audit)
        .with(traces.map(|traces| traces.layer())))
}

/// Request ids: a random per-process prefix and a counter, so ids are
/// unique across restarts and instances without a random draw per request.
#[derive(Clone)]
struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let mut bytes = [0u8; 8];
        // Without a random source the prefix is the start time: still unique
        // enough to tell instances apart.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos as u64).to_be_bytes();
        }
        Self {
            prefix: u64::from_be_bytes(bytes),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}{n:08x}", self.prefix);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Keeps a caller's (or proxy's) `X-Request-Id` only when it is a plain
/// token of at most 128 characters; anything else is replaced by a fresh id.
async fn sanitize_request_id(mut request: Request) -> Request {
    let plain = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    let values = request.headers().get_all(&X_REQUEST_ID);
    let keep = values.iter().count() == 1 && values.iter().all(plain);
    if !keep {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

/// The layers around the whole router, outermost first: sensitive headers
/// hidden from logs → request id (kept if plain, else made) → trace span
/// with the id → the id copied to the response → security headers → CORS
/// (`MCP_CORS_ORIGINS`) → `metrics`.
///
/// # Errors
///
/// A CORS origin that is not a header value.
pub fn around(
    router: Router,
    settings: &Settings,
    metrics: MetricsLayer,
) -> Result<Router, ConfigError> {
    let router = router.layer(metrics);
    let router = match cors(settings)? {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let mut headers = vec![
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    if behind_tls(settings) {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ));
    }
    let router = headers.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    });
    // The request span: a child of the caller's `traceparent`, or linked
    // to it (`MCP_TRACE_INCOMING`); filled in by the layers (subject, MCP
    // method and tool, each decision).
    let incoming = settings.traces.incoming;
    let trace = TraceLayer::new_for_http()
        .make_span_with(move |request: &http::Request<Body>| incoming.request_span(request))
        .on_request(())
        .on_response(
            |response: &http::Response<Body>, latency: Duration, span: &tracing::Span| {
                otel::record_response(span, response);
                let status = response.status().as_u16();
                let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                // A refusal is one line per request an attacker controls:
                // DEBUG, like the rejection itself; the audit trail keeps a
                // bounded record and the metrics count every one.
                if response
                    .extensions()
                    .get::<tower_warden::reject::Rejection>()
                    .is_some()
                {
                    tracing::debug!(status, latency_ms, "refused request");
                } else {
                    tracing::info!(status, latency_ms, "finished processing request");
                }
            },
        );
    Ok(router.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
                header::PROXY_AUTHORIZATION,
                HeaderName::from_static("x-api-key"),
            ]))
            .layer(axum::middleware::map_request(sanitize_request_id))
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, RequestIds::new()))
            .layer(trace)
            .layer(axum::middleware::map_request(remember_span))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID)),
    ))
}

/// Keeps the trace context of the request's span in its extensions
/// (`otel::TraceContext`), so that work done for it elsewhere (an MCP tool
/// call, run by the session's task) continues its trace. The context, not
/// the span: a span kept by a long-lived task would never end, and never
/// be exported.
async fn remember_span(mut request: Request) -> Request {
    if let Some(context) = otel::TraceContext::of(&tracing::Span::current()) {
        request.extensions_mut().insert(context);
    }
    request
}

/// Whether clients reach this server over TLS (the resource URL is
/// `https://`): then responses carry HSTS.
fn behind_tls(settings: &Settings) -> bool {
    settings
        .warden
        .resource_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
}

/// The CORS layer of `MCP_CORS_ORIGINS` (none when it is empty). Preflights
/// are answered here, before authentication, since browsers send them
/// without credentials; a refused origin gets no `Access-Control-Allow-*`.
fn cors(settings: &Settings) -> Result<Option<CorsLayer>, ConfigError> {
    let origins = &settings.http.cors_origins;
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| {
                    ConfigError::new(
                        "MCP_CORS_ORIGINS",
                        format!("`{origin}` is not a header value"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let name = HeaderName::from_static;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                name("mcp-session-id"),
                name("mcp-protocol-version"),
                name("last-event-id"),
                name("x-api-key"),
            ])
            .expose_headers([
                name("mcp-session-id"),
                header::WWW_AUTHENTICATE,
                header::RETRY_AFTER,
                name("ratelimit"),
                name("ratelimit-policy"),
                X_REQUEST_ID,
            ])
            .max_age(Duration::from_secs(600)),
    ))
}

/// `MCP_REQUEST_TIMEOUT` for a group of routes: tower-http's timeout
/// answering 504, given a problem body here. It bounds the time to the
/// response head, reading the request body included when the layers that
/// read it are inside; an event stream that has started is not cut.
pub fn timeout(router: Router, settings: &Settings) -> Router {
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            settings.http.request_timeout,
        ))
        .layer(axum::middleware::map_response(timeout_problem))
}

/// Gives tower-http's bodiless 504 a problem body; other responses pass.
async fn timeout_problem(response: Response) -> Response {
    if response.status() != StatusCode::GATEWAY_TIMEOUT
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "request_timeout",
        "the request took longer than the server allows (MCP_REQUEST_TIMEOUT)",
    )
}

/// How often the Prometheus recorder folds the histogram samples recorded
/// since into its buckets, scraped or not.
pub const METRICS_UPKEEP: Duration = Duration::from_secs(1);

/// The latency buckets (seconds) of every histogram.
const LATENCY_BUCKETS: [f64; 11] = [
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// The reference server's Prometheus exporter: every histogram is a fixed
/// set of bucket counters (no quantile summaries, whose state grows with
/// the samples). `None` if the buckets are refused.
pub fn prometheus_builder() -> Option<PrometheusBuilder> {
    PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &LATENCY_BUCKETS)
        .ok()
}

/// Runs the recorder's upkeep every `every` on a thread of its own, for as
/// long as the process lives: it drains the histogram samples recorded
/// since the last run into their buckets. Without it the samples wait for
/// a scrape, and memory grows with every request when nobody scrapes.
/// The thread holds only a handle, so it outlives any one async runtime.
pub fn keep_up(handle: PrometheusHandle, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the metrics upkeep thread");
    }
}

/// The process-wide Prometheus recorder, installed on first use with its
/// upkeep ([`keep_up`] every [`METRICS_UPKEEP`]). `None` when another
/// recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = prometheus_builder()?.install_recorder().ok()?;
            keep_up(handle.clone(), METRICS_UPKEEP);
            Some(handle)
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format, for the clients of
/// `MCP_METRICS_ALLOWED_IPS` only (403 `ip_denied` for others; through
/// `MCP_TRUSTED_PROXIES` the real client counts, not the proxy).
///
/// # Errors
///
/// A trusted-proxy setting the client-address layer cannot use.
pub fn metrics_routes(settings: &Settings) -> Result<Router, ConfigError> {
    let handle = prometheus();
    // An empty allow set admits everyone, so an empty list (which the
    // loader refuses, but a hand-built config may hold) denies everyone.
    let allowed = if settings.metrics.allowed_ips.is_empty() {
        IpSet::builder()
            // `0.0.0.0/0` and `::/0`.
            .deny_nets([
                ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
                ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
            ])
            .build()
    } else {
        IpSet::builder()
            .allow_nets(settings.metrics.allowed_ips.iter().copied())
            .build()
    };
    let mut routes = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(handle)
        .route_layer(IpFilterLayer::new(allowed));
    if settings.warden.trust_x_forwarded {
        routes = routes.route_layer(tower_warden::stack::client_ip(&settings.warden));
    }
    Ok(routes)
}

/// Serves only `/metrics` (`MCP_METRICS_PORT`) on `listener` until
/// `shutdown` is cancelled.
///
/// # Errors
///
/// A trusted-proxy setting the client-address layer cannot use.
pub fn serve_metrics(
    settings: &Settings,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, ConfigError> {
    let routes = metrics_routes(settings)?.layer(axum::middleware::map_request(peer_address));
    Ok(async move {
        if let Err(error) = serve(listener, routes, shutdown).await {
            tracing::error!(%error, "the metrics listener failed");
        }
    })
}

async fn render_metrics(State(handle): State<Option<PrometheusHandle>>) -> Response {
    match handle {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "another metrics recorder is installed in this process",
        ),
    }
}

/// What `/status` reads besides `/health`'s state.
pub struct StatusState {
    /// Request counts.
    pub metrics: MetricsLayer,
    /// The JWT verifier, for its keys and cache.
    pub jwt: Option<JwtAuth>,
    /// The effective settings, secrets redacted.
    pub config: serde_json::Value,
    /// `/health`'s document.
    pub health: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
}

/// `GET /status` for callers with the `MCP_ADMIN_ROLE` role: version,
/// uptime, request counts, rate limiter and breakers (as `/health`), JWT
/// keys and token cache, and the effective settings with secrets redacted.
/// Put it behind the perimeter, which authenticates the caller.
pub fn status_routes(settings: &Settings, state: StatusState) -> Router {
    Router::new()
        .route("/status", get(status))
        .with_state(Arc::new(state))
        .route_layer(RequireLayer::role(settings.http.admin_role.clone()))
}

async fn status(State(state): State<Arc<StatusState>>) -> axum::Json<serde_json::Value> {
    let counts = state.metrics.counts();
    let rejected: serde_json::Map<String, serde_json::Value> = counts
        .rejections()
        .map(|(reason, n)| (reason.code().to_owned(), n.into()))
        .collect();
    let jwt = state.jwt.as_ref().map(|jwt| {
        let (hits, misses) = jwt.cache_stats();
        serde_json::json!({
            "keys_loaded_at": jwt.keys_loaded_at().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            "cached_tokens": jwt.cached_tokens(),
            "cache_hits": hits,
            "cache_misses": misses,
        })
    });
    let mut document = (state.health)();
    if let Some(object) = document.as_object_mut() {
        object.insert(
            "requests".to_owned(),
            serde_json::json!({
                "admitted": counts.admitted(),
                "rejected": counts.total_rejected(),
                "rejected_by_reason": rejected,
                "errors": counts.errors(),
            }),
        );
        object.insert("jwt".to_owned(), jwt.unwrap_or(serde_json::Value::Null));
        object.insert("config".to_owned(), state.config.clone());
    }
    axum::Json(document)
}
