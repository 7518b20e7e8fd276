//! The reference server's application: the `/mcp` endpoint (rmcp's
//! Streamable HTTP service behind tower-warden's layers), `/health`, and
//! serving with graceful shutdown.
//!
//! The integration tests include this file, so they run exactly this code.

#[path = "gateway.rs"]
pub mod gateway;
#[path = "ops.rs"]
pub mod ops;
#[cfg(feature = "redis")]
#[path = "sessions.rs"]
pub mod sessions;
#[path = "store.rs"]
pub mod store;
#[path = "tools.rs"]
pub mod tools;
#[path = "upstream.rs"]
pub mod upstream;
#[path = "ws.rs"]
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_warden::ConfigError;
use tower_warden::auth::JwtAuth;
use tower_warden::circuit_breaker::{BreakerState, CircuitBreaker, CircuitBreakers};
use tower_warden::config::SessionStorage;
use tower_warden::config::WardenConfig;
use tower_warden::mcp::{JsonRpcErrorsLayer, SessionBindingLayer};
use tower_warden::reload::ReloadHandle;
use tower_warden::stack::{RateLimitInfo, WardenLayer};

/// The perimeter of the settings, and how `/mcp` authenticates.
pub struct Auth {
    /// Every layer the settings turn on (`tower_warden::stack`).
    pub warden: WardenLayer,
    /// The JWT verifier, when JWTs are accepted.
    pub jwt: Option<JwtAuth>,
    /// A token for the ephemeral development secret (only when nothing was
    /// configured in development).
    pub dev_token: Option<String>,
    /// Warnings to print at start-up.
    pub warnings: Vec<String>,
    /// The MCP endpoint as clients name it.
    pub resource_url: String,
    /// Where the RFC 9728 metadata of `/mcp` is published.
    pub metadata_url: String,
}

/// The seconds a development token stays valid.
const DEV_TOKEN_SECONDS: u64 = 24 * 3600;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds the perimeter of the settings (`WardenLayer::from_config`). In
/// development with JWT authentication and no key configured, it makes an
/// ephemeral secret and a token for it (every scope, the admin role, the
/// `default` namespace, valid 24 h) that the operator can paste into a
/// client.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn auth(config: &WardenConfig) -> Result<Auth, ConfigError> {
    let mut effective = config.clone();
    let mut warnings = Vec::new();
    let mut dev_token = None;
    let has_key_source = config.jwt_secret.is_some()
        || config.jwt_public_key_file.is_some()
        || config.jwks_file.is_some()
        || config.jwks_url.is_some();
    if config.auth_mode.jwt() && !has_key_source && !config.environment.follows_production_rules() {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| {
            ConfigError::new(
                "MCP_JWT_SECRET",
                format!("no random source for an ephemeral secret: {e}"),
            )
        })?;
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let resource_url = tower_warden::stack::resource_url(config);
        let iat = now();
        let claims = serde_json::json!({
            "sub": "developer",
            "scope": "*",
            "roles": [config.admin_role],
            "namespace": "default",
            "aud": resource_url,
            "iat": iat,
            "exp": iat + DEV_TOKEN_SECONDS,
        });
        tower_warden::auth::install_crypto_provider();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .map_err(|e| {
            ConfigError::new(
                "MCP_JWT_SECRET",
                format!("cannot sign the development token: {e}"),
            )
        })?;
        dev_token = Some(token);
        effective.jwt_secret = Some(secret);
        // The development secret pins its own audience.
        effective.jwt_audiences = vec![resource_url];
        warnings.push(
            "no JWT key configured: using an ephemeral development secret (set MCP_JWT_SECRET to keep tokens across restarts)"
                .to_owned(),
        );
    }
    let warden = WardenLayer::from_config(&effective)?;
    warnings.extend(warden.warnings().iter().cloned());
    Ok(Auth {
        jwt: warden.jwt().cloned(),
        dev_token,
        warnings,
        resource_url: warden.resource_url().to_owned(),
        metadata_url: warden.metadata_url().to_owned(),
        warden,
    })
}

/// Where a reload reads the settings again: the environment and
/// `MCP_CONFIG_FILE` in the server, anything in tests.
pub type Loader = Arc<dyn Fn() -> Result<WardenConfig, ConfigError> + Send + Sync>;

/// The session stores of `MCP_SESSION_STORE=redis`: rmcp's (to restore a
/// session on any instance) and tower-warden's (who owns it).
type SessionStores = (
    Arc<dyn rmcp::transport::streamable_http_server::session::store::SessionStore>,
    Arc<dyn tower_warden::mcp::SharedSessions>,
);

#[cfg(feature = "redis")]
fn shared_sessions(config: &WardenConfig) -> Result<Option<SessionStores>, ConfigError> {
    match (config.session_store, &config.redis_url) {
        (SessionStorage::Redis, Some(url)) => {
            let ca = config.redis_ca_pem()?;
            let store = sessions::RedisSessions::new(url, ca.as_deref())?;
            Ok(Some((Arc::new(store.clone()), Arc::new(store))))
        }
        (SessionStorage::Redis, None) => Err(ConfigError::new(
            "MCP_REDIS_URL",
            "MCP_SESSION_STORE=redis needs it",
        )),
        _ => Ok(None),
    }
}

#[cfg(not(feature = "redis"))]
fn shared_sessions(config: &WardenConfig) -> Result<Option<SessionStores>, ConfigError> {
    match config.session_store {
        SessionStorage::Redis => Err(ConfigError::new(
            "MCP_SESSION_STORE",
            "redis needs the `redis` feature: cargo run --features redis --example mcp_server",
        )),
        _ => Ok(None),
    }
}

/// The RFC 9728 protected-resource metadata of `/mcp`.
fn protected_resource_metadata(config: &WardenConfig, auth: &Auth) -> serde_json::Value {
    let mut scopes: Vec<&str> = config
        .tool_scopes
        .iter()
        .flat_map(|(_, scopes)| scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    serde_json::json!({
        "resource": auth.resource_url,
        "authorization_servers": config.oauth_authorization_servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "tower-warden reference MCP server",
    })
}

/// Builds the whole application from validated settings.
///
/// Layers around `/mcp`, outermost first: `ClientIpLayer` (only with
/// `MCP_TRUST_X_FORWARDED=true`) → `IpFilterLayer` → `ClientCertLayer`
/// (only with `MCP_CLIENT_CERT_REQUIRED=true`) → `RateLimitLayer` per
/// address → `BodyLimitLayer` → `AuthLayer` → `HostOriginLayer` →
/// `McpPolicyLayer` (with `MCP_TOOL_SCOPES` or `MCP_TOOL_RATE_LIMITS`) →
/// `RateLimitLayer` per tool (with `MCP_TOOL_RATE_LIMITS`) →
/// `RateLimitLayer` per principal → `JsonRpcErrorsLayer` →
/// `SessionBindingLayer` → rmcp. The rate limits are on unless
/// `MCP_RATE_LIMIT_ENABLED=false`.
/// `/health` and the RFC 9728 metadata
/// (`/.well-known/oauth-protected-resource[/mcp]`) are not guarded, so
/// that probes and OAuth clients can read them.
///
/// Cancelling `shutdown` ends every MCP session and open event stream.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
#[allow(dead_code)] // the integration tests build the app through it
pub async fn router(
    config: &WardenConfig,
    shutdown: &CancellationToken,
) -> Result<Router, ConfigError> {
    let gateway = gateway(config).await?;
    router_with(config, shutdown, &auth(config)?, gateway)
}

/// The gateway of `config`: its connection store (`MCP_DATABASE_URL`,
/// migrated at start-up) and one circuit breaker per upstream.
///
/// # Errors
///
/// The store cannot be opened or migrated (`MCP_DATABASE_URL`), or a
/// breaker setting is unusable.
pub async fn gateway(config: &WardenConfig) -> Result<Arc<gateway::Gateway>, ConfigError> {
    let store = store::ConnectionStore::connect(&config.database_url)
        .await
        .map_err(|e| ConfigError::new("MCP_DATABASE_URL", e.to_string()))?;
    let breakers = breakers(config)?;
    Ok(Arc::new(gateway::Gateway {
        store: store
            .with_max_per_namespace(config.gateway_max_connections)
            .with_credential_key(
                store::credential_key(
                    config.gateway_credential_key,
                    !config.environment.follows_production_rules(),
                )
                .map_err(|e| ConfigError::new("MCP_GATEWAY_CREDENTIAL_KEY", e.to_string()))?,
            ),
        upstreams: upstream::Upstreams::new(
            breakers,
            upstream::Reach {
                allow_private: config.gateway_allow_private_upstreams,
            },
        )
        .tools_cache_ttl(config.gateway_tools_cache_ttl)
        .fanout(config.gateway_fanout),
    }))
}

/// One breaker per upstream connection, from `CIRCUIT_BREAKER_*`.
fn breakers(config: &WardenConfig) -> Result<CircuitBreakers, ConfigError> {
    CircuitBreakers::new(
        CircuitBreaker::builder("upstream")
            .failure_threshold(config.circuit_breaker_failure_threshold)
            .reset_timeout(config.circuit_breaker_reset_timeout),
    )
    .map_err(|e| {
        let setting = if e.setting() == "reset_timeout" {
            "CIRCUIT_BREAKER_RESET_TIMEOUT"
        } else {
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD"
        };
        e.for_setting(setting)
    })
}

/// A breaker's state for `/status`.
fn breaker_json(state: &BreakerState) -> serde_json::Value {
    match state {
        BreakerState::Open { retry_after } => serde_json::json!({
            "state": state.as_str(),
            "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
        }),
        _ => serde_json::json!({ "state": state.as_str() }),
    }
}

/// [`router`] with authentication and the gateway already built (to print
/// the development token, or prefetch keys).
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn router_with(
    config: &WardenConfig,
    shutdown: &CancellationToken,
    auth: &Auth,
    gateway: Arc<gateway::Gateway>,
) -> Result<Router, ConfigError> {
    let same = config.clone();
    let (router, _) = build(
        config,
        shutdown,
        auth,
        gateway,
        Arc::new(move || Ok(same.clone())),
    )?;
    Ok(router)
}

/// [`router_with`], and the [`reloads`] of the app, which read the settings
/// again through `load`.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn build(
    config: &WardenConfig,
    shutdown: &CancellationToken,
    auth: &Auth,
    gateway: Arc<gateway::Gateway>,
    load: Loader,
) -> Result<(Router, ReloadHandle), ConfigError> {
    let max_body = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let source: Arc<dyn tools::ToolSource> = gateway.clone();
    let warden = &auth.warden;
    let policy = warden.tool_policy().cloned();
    let make_tools: Arc<dyn Fn() -> tools::Tools + Send + Sync> = {
        let policy = policy.clone();
        Arc::new(move || tools::Tools::with_source(Arc::clone(&source)).with_policy(policy.clone()))
    };
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(max_body)
        // `HostOriginLayer` checks both, answering with problem JSON.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let shared_sessions = shared_sessions(config)?;
    if let Some((state, _)) = &shared_sessions {
        mcp_config.session_store = Some(Arc::clone(state));
    }
    let mcp = StreamableHttpService::new(
        {
            let make_tools = Arc::clone(&make_tools);
            move || Ok(make_tools())
        },
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let binding = SessionBindingLayer::new().responder(like_unknown_session);

    // `route_layer`: the last one added is the outermost. This request
    // timeout bounds the service; another one around the perimeter (below)
    // bounds the whole request, checks and body included.
    let mcp_routes = ops::timeout(Router::new().route_service("/mcp", mcp), config)
        // Sessions are bound to the principal that opened them. Another
        // principal's session id is answered exactly as rmcp answers an
        // unknown one, which `JsonRpcErrorsLayer` then turns into the same
        // JSON-RPC error (-32001) either way.
        .route_layer(binding.clone())
        .route_layer(JsonRpcErrorsLayer::new().max_body_bytes(max_body));
    // Several instances: who owns a session travels with it.
    let mcp_routes = match shared_sessions {
        Some((_, owners)) => mcp_routes.route_layer(tower_warden::mcp::ShareSessionsLayer::new(
            binding.sessions(),
            owners,
        )),
        None => mcp_routes,
    };
    // WebSocket sessions: behind the same layers as `/mcp` (added below).
    let reloaded = Arc::new(tokio::sync::Notify::new());
    let ws_routes = Router::new()
        .route("/mcp/ws", get(ws::upgrade))
        .with_state(Arc::new(ws::WsState {
            tools: Arc::clone(&make_tools),
            warden: warden.clone(),
            reloaded: Arc::clone(&reloaded),
            ping_interval: config.ws_ping_interval,
            ping_timeout: config.ws_ping_timeout,
            max_message: max_body,
            sessions: shutdown.child_token(),
        }));
    let api_routes = ops::timeout(
        gateway::routes(Arc::clone(&gateway), gateway::Access::of(config, warden)),
        config,
    );
    // Last: open WebSocket sessions check their address against the new
    // lists, and their credential against the new keys, at once.
    let reload = warden
        .reload_handle(load)
        .step("websocket sessions", move || {
            reloaded.notify_waiters();
            Ok("addresses and credentials checked again".to_owned())
        });

    let metadata = Arc::new(protected_resource_metadata(config, auth));
    let metadata_path = auth.metadata_url.split_once("/.well-known/").map_or(
        "/.well-known/oauth-protected-resource".to_owned(),
        |(_, p)| format!("/.well-known/{p}"),
    );
    let mut well_known = Router::new().route(
        "/.well-known/oauth-protected-resource",
        get({
            let m = metadata.clone();
            move || async move { Json((*m).clone()) }
        }),
    );
    if metadata_path != "/.well-known/oauth-protected-resource" {
        well_known = well_known.route(
            &metadata_path,
            get(move || async move { Json((*metadata).clone()) }),
        );
    }
    let health_state = Arc::new(HealthState {
        started: Instant::now(),
        limits: warden.rate_limit().clone(),
        gateway,
    });
    let metrics = tower_warden::metrics::MetricsLayer::new();
    let status = ops::status_routes(
        config,
        ops::StatusState {
            metrics: metrics.clone(),
            jwt: auth.jwt.clone(),
            config: config.redacted_json(),
            health: Box::new({
                let state = Arc::clone(&health_state);
                move || status_json(&state)
            }),
        },
    );
    // Everything but the probes and the metadata sits behind the perimeter
    // (`WardenLayer`), each route with its own inner layers.
    let guarded = mcp_routes
        .merge(ws_routes)
        .merge(api_routes)
        .merge(status)
        .route_layer(warden.clone());
    // The whole request, reading its body included (the perimeter's MCP
    // peek and `JsonRpcErrorsLayer` read it before the service), is
    // bounded by `MCP_REQUEST_TIMEOUT`: a slowly sent body cannot hold a
    // connection past it.
    let guarded = ops::timeout(guarded, config);
    let mut router = Router::new()
        .route("/health", get(health))
        .with_state(health_state)
        .merge(well_known)
        .merge(guarded);
    if config.metrics_port.is_none() {
        router = router.merge(ops::metrics_routes(config)?);
    }
    let router = ops::around(
        router.layer(axum::middleware::map_request(peer_address)),
        config,
        metrics,
    )?;
    Ok((router, reload))
}

/// rmcp's answer to a session id it does not know: 404, plain text.
fn like_unknown_session(
    _: &tower_warden::Rejection,
    _: &tower_warden::reject::RequestHead<'_>,
) -> http::Response<bytes::Bytes> {
    let mut response =
        http::Response::new(bytes::Bytes::from_static(b"Not Found: Session not found"));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response
}

/// Copies axum's connect info into a plain `SocketAddr` extension, which the
/// tower-warden layers read whatever their cargo features.
pub async fn peer_address(mut request: Request) -> Request {
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(addr);
    }
    request
}

/// What `/health` reads.
struct HealthState {
    started: Instant,
    limits: RateLimitInfo,
    gateway: Arc<gateway::Gateway>,
}

/// The limiter's state for `/health`.
fn limits_json(limits: &RateLimitInfo) -> serde_json::Value {
    if !limits.enabled() {
        return serde_json::json!({"enabled": false});
    }
    serde_json::json!({
        "enabled": true,
        "storage": limits.storage(),
        "degraded": limits.is_degraded(),
    })
}

/// `GET /health`: always 200 while the process serves; `status` is
/// `degraded` while the rate limiter decides without Redis (each instance
/// then limits on its own).
async fn health(State(state): State<Arc<HealthState>>) -> Json<serde_json::Value> {
    Json(health_json(&state))
}

/// `/health`'s document: aggregates only, since anyone may read it. The
/// upstream breakers are counted by state; which connection is in which
/// state (connection ids belong to tenants) is on `/status`.
fn health_json(state: &HealthState) -> serde_json::Value {
    let status = if state.limits.is_degraded() {
        "degraded"
    } else {
        "healthy"
    };
    let (mut closed, mut half_open, mut open) = (0u64, 0u64, 0u64);
    for (_, breaker) in state.gateway.upstreams.states() {
        match breaker {
            BreakerState::Closed => closed += 1,
            BreakerState::HalfOpen => half_open += 1,
            // Open, or a state this server does not know: not serving.
            _ => open += 1,
        }
    }
    serde_json::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "rate_limit": limits_json(&state.limits),
        "upstreams": {
            "total": closed + half_open + open,
            "closed": closed,
            "half_open": half_open,
            "open": open,
        },
    })
}

/// `/status`'s view of the process (admins only): `/health`'s document
/// plus each upstream connection's breaker, by connection id.
fn status_json(state: &HealthState) -> serde_json::Value {
    let mut document = health_json(state);
    if let Some(object) = document.as_object_mut() {
        object.insert(
            "connections".to_owned(),
            state
                .gateway
                .upstreams
                .states()
                .into_iter()
                .map(|(id, breaker)| {
                    serde_json::json!({"connection_id": id, "breaker": breaker_json(&breaker)})
                })
                .collect(),
        );
    }
    document
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits
/// for the open connections to finish; MCP sessions (the token the router
/// was built with) end at once.
///
/// # Errors
///
/// The listener failed.
#[allow(dead_code)] // the integration tests serve through it
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_draining(listener, router, shutdown.clone(), shutdown, Duration::ZERO).await
}

/// Serves `router` on `listener` until `shutdown` is cancelled. Then it
/// accepts no new connection, lets requests in flight finish (a tool call
/// answering on an event stream included), and after `grace` cancels
/// `sessions` (the token the router was built with), which ends the
/// remaining MCP sessions and their idle event streams. It returns once
/// every connection is closed.
///
/// # Errors
///
/// The listener failed.
pub async fn serve_draining(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    sessions: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let ending = sessions.clone();
    let signal = async move {
        shutdown.cancelled().await;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "draining: no new connections; requests in flight may finish"
        );
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            ending.cancel();
        });
    };
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await;
    sessions.cancel();
    served
}

/// Registers for SIGHUP now, and returns the future that runs `reload` on
/// each one (for ever).
///
/// # Errors
///
/// The signal handler cannot be installed.
#[cfg(unix)]
pub fn reload_on_sighup(
    reload: ReloadHandle,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading IP lists, API keys and the JWKS file");
            // Each failure is logged by the handle; the old settings stay.
            let _ = reload.reload();
        }
    })
}

/// Registers for SIGINT (Ctrl-C) and SIGTERM now, and returns the future
/// that cancels `shutdown` when either arrives.
///
/// # Errors
///
/// The signal handlers cannot be installed.
pub fn cancel_on_signal(
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        let which = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        #[cfg(not(unix))]
        let which = match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        };
        tracing::info!(signal = which, "shutting down");
        shutdown.cancel();
    })
}
