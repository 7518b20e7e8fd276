//! The security recipe: what wraps what around rmcp's Streamable HTTP
//! service, read top to bottom in [`build`].
//!
//! ```text
//! ops::around: sensitive headers, request id, trace, security headers,
//!              CORS, metrics
//! └─ serving::peer_address
//!    ├─ /health, /.well-known/oauth-protected-resource[/mcp]   (unguarded)
//!    ├─ /metrics, unless MCP_METRICS_PORT        (its own IP allow list)
//!    ├─ /webhooks, with MCP_WEBHOOK_SECRETS       (SignatureLayer: the
//!    │           signature is the credential; MCP_REQUEST_TIMEOUT)
//!    └─ ops::timeout: MCP_REQUEST_TIMEOUT over the whole request
//!       └─ WardenLayer: client address → IP filter → client certificate →
//!          rate limit per address → body cap → authentication →
//!          Host/Origin → tool policy → rate limits per tool, per principal
//!          ├─ /mcp     [ShareSessionsLayer →] JsonRpcErrorsLayer →
//!          │           SessionBindingLayer → ops::timeout → rmcp
//!          ├─ /mcp/ws  every message checked again by the perimeter (ws)
//!          ├─ /api/v1/mcp/connections...  ops::timeout → scope →
//!          │           NamespaceLayer → the connection API (gateway)
//!          └─ /status  the admin role (ops)
//! ```

use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower_warden::ConfigError;
use tower_warden::auth::JwtAuth;
use tower_warden::config::WardenConfig;
use tower_warden::mcp::{JsonRpcErrorsLayer, SessionBindingLayer};
use tower_warden::reload::ReloadHandle;
use tower_warden::stack::WardenLayer;

use super::gateway::Gateway;
use super::health::{HealthState, health, status_json};
use super::settings::{SessionStorage, Settings};
use super::tools::{Deadlines, ToolSource, Tools};
use super::{dev_token, ops, serving, ws};

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

/// Builds the perimeter of the settings (`WardenLayer::from_config`). In
/// development with JWT authentication and no key configured, it makes an
/// ephemeral secret and a token for it ([`dev_token`]).
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn auth(settings: &Settings) -> Result<Auth, ConfigError> {
    let config = &settings.warden;
    let mut effective = config.clone();
    let mut warnings = Vec::new();
    let dev = dev_token::needed(config, &settings.http.admin_role)?;
    if let Some(dev) = &dev {
        effective.jwt_secret = Some(dev.secret.clone());
        // The development secret pins its own audience.
        effective.jwt_audiences = vec![dev.audience.clone()];
        warnings.push(dev_token::WARNING.to_owned());
    }
    let warden = WardenLayer::from_config(&effective)?;
    warnings.extend(warden.warnings().iter().cloned());
    Ok(Auth {
        jwt: warden.jwt().cloned(),
        dev_token: dev.map(|dev| dev.token),
        warnings,
        resource_url: warden.resource_url().to_owned(),
        metadata_url: warden.metadata_url().to_owned(),
        warden,
    })
}

/// Where a reload reads the settings again: the environment and
/// `MCP_CONFIG_FILE` in the server, anything in tests.
pub type Loader = Arc<dyn Fn() -> Result<WardenConfig, ConfigError> + Send + Sync>;

/// Builds the whole application from validated settings (see the module
/// docs for what wraps what). The rate limits are on unless
/// `MCP_RATE_LIMIT_ENABLED=false`. `/health` and the RFC 9728 metadata
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
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<Router, ConfigError> {
    let gateway = gateway(settings).await?;
    router_with(settings, shutdown, &auth(settings)?, gateway)
}

/// The gateway of `settings`: its connection store (`MCP_DATABASE_URL`,
/// migrated at start-up) and one circuit breaker per upstream.
///
/// # Errors
///
/// The store cannot be opened or migrated (`MCP_DATABASE_URL`), or a
/// breaker setting is unusable.
pub async fn gateway(settings: &Settings) -> Result<Arc<Gateway>, ConfigError> {
    super::gateway::open(&settings.gateway).await
}

/// [`router`] with authentication and the gateway already built (to print
/// the development token, or prefetch keys).
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn router_with(
    settings: &Settings,
    shutdown: &CancellationToken,
    auth: &Auth,
    gateway: Arc<Gateway>,
) -> Result<Router, ConfigError> {
    let same = settings.warden.clone();
    let (router, _) = build(
        settings,
        shutdown,
        auth,
        gateway,
        Arc::new(move || Ok(same.clone())),
    )?;
    Ok(router)
}

/// [`router_with`], and the reload handle of the app, which reads the
/// settings again through `load`.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn build(
    settings: &Settings,
    shutdown: &CancellationToken,
    auth: &Auth,
    gateway: Arc<Gateway>,
    load: Loader,
) -> Result<(Router, ReloadHandle), ConfigError> {
    let warden = &auth.warden;
    let max_body = usize::try_from(settings.warden.max_body_bytes).unwrap_or(usize::MAX);

    // How long each tool call may run, however it is reached (MCP over
    // HTTP or WebSocket, the REST API).
    let deadlines = Arc::new(Deadlines::new(
        &settings.warden.tool_timeouts,
        settings.warden.request_timeout,
    ));
    // One rmcp handler per session, offering the gateway's tools too, with
    // the tool policy that filters `tools/list`.
    let make_tools: Arc<dyn Fn() -> Tools + Send + Sync> = {
        let source: Arc<dyn ToolSource> = gateway.clone();
        let policy = warden.tool_policy().cloned();
        let deadlines = Arc::clone(&deadlines);
        let annotations = (!settings.gateway.annotations.is_empty())
            .then(|| Arc::clone(&settings.gateway.annotations));
        Arc::new(move || {
            Tools::with_source(Arc::clone(&source))
                .with_policy(policy.clone())
                .with_deadlines(Some(Arc::clone(&deadlines)))
                .with_annotations(annotations.clone())
        })
    };

    // `/mcp`. `route_layer`: the last one added is the outermost. This
    // request timeout bounds the service; another one around the perimeter
    // (below) bounds the whole request, checks and body included.
    let shared_sessions = shared_sessions(settings)?;
    let mcp = mcp_service(&make_tools, shutdown, max_body, shared_sessions.as_ref());
    let binding = SessionBindingLayer::new().responder(like_unknown_session);
    let mcp_routes = ops::timeout(Router::new().route_service("/mcp", mcp), settings)
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

    // `/mcp/ws`: behind the same layers as `/mcp` (added below).
    let reloaded = Arc::new(tokio::sync::Notify::new());
    let ws_routes = Router::new()
        .route("/mcp/ws", get(ws::upgrade))
        .with_state(Arc::new(ws::WsState {
            tools: Arc::clone(&make_tools),
            warden: warden.clone(),
            reloaded: Arc::clone(&reloaded),
            ping_interval: settings.websocket.ping_interval,
            ping_timeout: settings.websocket.ping_timeout,
            max_message: max_body,
            sessions: shutdown.child_token(),
        }));

    // The REST connection API: its scope and namespace rule inside, the
    // same tool policy and quotas as `/mcp` through `WardenLayer::check_call`.
    let api_routes = ops::timeout(
        super::gateway::routes(
            Arc::clone(&gateway),
            super::gateway::Access::of(&settings.gateway, warden, deadlines),
        ),
        settings,
    );

    // A reload swaps the perimeter's lists and keys. Last: open WebSocket
    // sessions check their address against the new lists, and their
    // credential against the new keys, at once.
    let reload = warden
        .reload_handle(load)
        .step("websocket sessions", move || {
            reloaded.notify_waiters();
            Ok("addresses and credentials checked again".to_owned())
        });

    // `/status`, for the admin role.
    let health_state = Arc::new(HealthState {
        started: Instant::now(),
        limits: warden.rate_limit().clone(),
        gateway,
    });
    let metrics = tower_warden::metrics::MetricsLayer::new();
    let status = ops::status_routes(
        settings,
        ops::StatusState {
            metrics: metrics.clone(),
            jwt: auth.jwt.clone(),
            config: settings.redacted_json(),
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
    let guarded = ops::timeout(guarded, settings);
    let mut router = Router::new()
        .route("/health", get(health))
        .with_state(health_state)
        .merge(well_known(settings, auth))
        .merge(guarded);
    // Signed webhooks: their senders hold no token; the signature is the
    // credential, checked before the body reaches anything.
    if let Some(signed) = &settings.webhooks.layer {
        let hooks = Router::new().route_service(
            "/webhooks",
            tower::ServiceBuilder::new()
                .layer(signed.clone())
                .service_fn(webhook),
        );
        router = router.merge(ops::timeout(hooks, settings));
    }
    if settings.metrics.port.is_none() {
        router = router.merge(ops::metrics_routes(settings)?);
    }
    let router = ops::around(
        router.layer(axum::middleware::map_request(serving::peer_address)),
        settings,
        metrics,
    )?;
    Ok((router, reload))
}

/// `POST /webhooks`, once its signature is verified: one audit line (the
/// delivery's id and event, never its body), then 204.
async fn webhook(
    request: axum::http::Request<axum::body::Body>,
) -> Result<axum::http::Response<axum::body::Body>, std::convert::Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect::<String>())
    };
    let delivery = header("webhook-id").or_else(|| header("x-github-delivery"));
    let event = header("x-github-event");
    tracing::info!(
        target: tower_warden::audit::TARGET,
        event = "webhook_received",
        delivery = delivery.as_deref().unwrap_or("-"),
        kind = event.as_deref().unwrap_or("-"),
        "a signed webhook was received"
    );
    let mut response = axum::http::Response::new(axum::body::Body::empty());
    *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
    Ok(response)
}

/// rmcp's Streamable HTTP service: one [`Tools`] per session, ended by
/// `shutdown`. Host and `Origin` are checked by the perimeter
/// (`HostOriginLayer`), which answers with problem JSON.
fn mcp_service(
    make_tools: &Arc<dyn Fn() -> Tools + Send + Sync>,
    shutdown: &CancellationToken,
    max_body: usize,
    shared_sessions: Option<&SessionStores>,
) -> StreamableHttpService<Tools, LocalSessionManager> {
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(max_body)
        .disable_allowed_hosts()
        .disable_allowed_origins();
    if let Some((state, _)) = shared_sessions {
        mcp_config.session_store = Some(Arc::clone(state));
    }
    let make_tools = Arc::clone(make_tools);
    StreamableHttpService::new(
        move || Ok(make_tools()),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    )
}

/// rmcp's answer to a session id it does not know: 404, plain text.
fn like_unknown_session(
    _: &tower_warden::reject::Rejection,
    _: &tower_warden::reject::RequestHead<'_>,
) -> http::Response<bytes::Bytes> {
    let mut response =
        http::Response::new(bytes::Bytes::from_static(b"Not Found: Session not found"));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response
}

/// The session stores of `MCP_SESSION_STORE=redis`: rmcp's (to restore a
/// session on any instance) and tower-warden's (who owns it).
type SessionStores = (
    Arc<dyn rmcp::transport::streamable_http_server::session::store::SessionStore>,
    Arc<dyn tower_warden::mcp::SharedSessions>,
);

#[cfg(feature = "redis")]
fn shared_sessions(settings: &Settings) -> Result<Option<SessionStores>, ConfigError> {
    match (settings.sessions.store, &settings.warden.redis_url) {
        (SessionStorage::Redis, Some(url)) => {
            let ca = settings.warden.redis_ca_pem()?;
            let store = super::sessions::RedisSessions::new(url, ca.as_deref())?;
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
fn shared_sessions(settings: &Settings) -> Result<Option<SessionStores>, ConfigError> {
    match settings.sessions.store {
        SessionStorage::Redis => Err(ConfigError::new(
            "MCP_SESSION_STORE",
            "redis needs the `redis` feature: cargo run --features redis --example mcp_server",
        )),
        _ => Ok(None),
    }
}

/// The RFC 9728 protected-resource metadata of `/mcp`, at
/// `/.well-known/oauth-protected-resource` and at the path its URL names.
fn well_known(settings: &Settings, auth: &Auth) -> Router {
    let metadata = Arc::new(protected_resource_metadata(settings, auth));
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
    well_known
}

/// The RFC 9728 protected-resource metadata document of `/mcp`.
fn protected_resource_metadata(settings: &Settings, auth: &Auth) -> serde_json::Value {
    // Every scope a rule on tools asks for; never `offline_access`
    // (refresh tokens are the client's business with its authorization
    // server, not a need of this resource).
    let mut scopes: Vec<&str> = settings
        .warden
        .tool_scopes
        .iter()
        .chain(&settings.warden.tool_annotation_scopes)
        .flat_map(|(_, scopes)| scopes.iter().map(String::as_str))
        .filter(|scope| *scope != "offline_access")
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    serde_json::json!({
        "resource": auth.resource_url,
        "authorization_servers": settings.metadata.authorization_servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "tower-warden reference MCP server",
    })
}
