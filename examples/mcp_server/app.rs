//! The reference server's application: the `/mcp` endpoint (rmcp's
//! Streamable HTTP service behind tower-warden's layers), `/health`, and
//! serving with graceful shutdown.
//!
//! The integration tests include this file, so they run exactly this code.

#[path = "tools.rs"]
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_warden::ConfigError;
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_cert::ClientCertLayer;
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::config::WardenConfig;
use tower_warden::ip_filter::{IpFilterLayer, IpSet};
use tower_warden::mcp::{HostOriginLayer, JsonRpcErrorsLayer};

/// Builds the whole application from validated settings.
///
/// Layers around `/mcp`, outermost first: `ClientIpLayer` (only with
/// `MCP_TRUST_X_FORWARDED=true`) → `IpFilterLayer` → `ClientCertLayer`
/// (only with `MCP_CLIENT_CERT_REQUIRED=true`) → `BodyLimitLayer` →
/// `HostOriginLayer` → `JsonRpcErrorsLayer` → rmcp. `/health` is not
/// guarded, so that load balancers and orchestrators can probe it.
///
/// Cancelling `shutdown` ends every MCP session and open event stream.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn router(config: &WardenConfig, shutdown: &CancellationToken) -> Result<Router, ConfigError> {
    let max_body = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let mcp = StreamableHttpService::new(
        || Ok(tools::Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_cancellation_token(shutdown.child_token())
            .with_max_request_body_bytes(max_body)
            // `HostOriginLayer` checks both, answering with problem JSON.
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );

    let host_origin = HostOriginLayer::new()
        .try_allowed_hosts(&config.allowed_hosts)
        .map_err(|e| e.for_setting("MCP_ALLOWED_HOSTS"))?
        .try_allowed_origins(&config.allowed_origins)
        .map_err(|e| e.for_setting("MCP_ALLOWED_ORIGINS"))?;

    // `route_layer`: the last one added is the outermost.
    let mcp_routes = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(JsonRpcErrorsLayer::new().max_body_bytes(max_body))
        .route_layer(host_origin);
    let mut mcp_routes = guards(mcp_routes, config)?;
    if config.trust_x_forwarded {
        let client_ip = ClientIpLayer::new()
            .try_trusted_proxies(config.trusted_proxies.iter().map(ToString::to_string))
            .map_err(|e| e.for_setting("MCP_TRUSTED_PROXIES"))?
            .depth(config.trusted_proxy_depth);
        mcp_routes = mcp_routes.route_layer(client_ip);
    }

    let health = Router::new()
        .route("/health", get(health))
        .with_state(Arc::new(Instant::now()));
    Ok(health
        .merge(mcp_routes)
        .layer(axum::middleware::map_request(peer_address)))
}

/// Adds, outermost first, `IpFilterLayer` → `ClientCertLayer` (only when
/// required) → `BodyLimitLayer` around the MCP routes.
fn guards(mcp_routes: Router, config: &WardenConfig) -> Result<Router, ConfigError> {
    // `route_layer`: the last one added is the outermost.
    let mut mcp_routes = mcp_routes.route_layer(BodyLimitLayer::new(config.max_body_bytes));
    if config.client_cert_required {
        let client_cert = ClientCertLayer::new()
            .try_header(&config.client_cert_header, &config.client_cert_header_value)
            .map_err(|e| {
                let setting = if e.setting() == "client_cert_header" {
                    "MCP_CLIENT_CERT_HEADER"
                } else {
                    "MCP_CLIENT_CERT_HEADER_VALUE"
                };
                e.for_setting(setting)
            })?
            .try_trusted_proxies(config.trusted_proxies.iter().map(ToString::to_string))
            .map_err(|e| e.for_setting("MCP_TRUSTED_PROXIES"))?;
        mcp_routes = mcp_routes.route_layer(client_cert);
    }
    if !config.allowed_ips.is_empty() || !config.blocked_ips.is_empty() {
        let set = IpSet::builder()
            .allow_nets(config.allowed_ips.iter().copied())
            .deny_nets(config.blocked_ips.iter().copied())
            .build();
        mcp_routes = mcp_routes.route_layer(IpFilterLayer::new(set));
    }
    Ok(mcp_routes)
}

/// Copies axum's connect info into a plain `SocketAddr` extension, which the
/// tower-warden layers read whatever their cargo features.
async fn peer_address(mut request: Request) -> Request {
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(addr);
    }
    request
}

/// `GET /health`.
async fn health(State(started): State<Arc<Instant>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": started.elapsed().as_secs(),
    }))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits
/// for the open connections to finish (event streams end at once: rmcp's
/// token is a child of `shutdown`).
///
/// # Errors
///
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
