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
use tower_warden::auth::{Algorithm, ApiKeys, AuthLayer, JwksUrl, JwtAuth};
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::circuit_breaker::{BreakerState, CircuitBreaker, CircuitBreakers};
use tower_warden::client_cert::ClientCertLayer;
use tower_warden::config::WardenConfig;
use tower_warden::config::{AuthMode, Environment, RateLimitStorage, SessionStorage};
use tower_warden::ip_filter::{IpFilterLayer, IpSet, IpSetHandle};
use tower_warden::mcp::{
    HostOriginLayer, JsonRpcErrorsLayer, McpPolicyLayer, SessionBindingLayer, ToolPolicy,
};
use tower_warden::principal::{AuthMethod, Principal};
use tower_warden::rate_limit::{KeyBy, MemoryStore, Quota, RateLimitLayer, Store};
use tower_warden::reload::ReloadHandle;

/// How `/mcp` authenticates, built from the settings.
pub struct Auth {
    /// The layer in front of `/mcp`.
    pub layer: AuthLayer,
    /// The JWT verifier, when JWTs are accepted.
    pub jwt: Option<JwtAuth>,
    /// The API keys, when they are accepted.
    pub api_keys: Option<ApiKeys>,
    /// Their salt (configured, or drawn at start), for reloads.
    api_key_salt: Vec<u8>,
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

/// The rate limits of the settings (`MCP_RATE_LIMIT_*`), sharing one store.
pub struct Limits {
    /// Per client address, before authentication.
    per_ip: Option<RateLimitLayer>,
    /// Per principal subject, after authentication.
    per_principal: Option<RateLimitLayer>,
    /// Per principal and tool (`MCP_TOOL_RATE_LIMITS`).
    per_tool: Option<RateLimitLayer>,
    /// The per-principal quota and its store, for each WebSocket message.
    per_principal_quota: Option<(Arc<dyn Store>, Quota)>,
    /// What `/health` reports.
    pub health: LimitHealth,
}

/// The limiter's state, for `/health`.
#[derive(Clone, Debug, Default)]
pub struct LimitHealth {
    enabled: bool,
    storage: &'static str,
    #[cfg(feature = "redis")]
    redis: Option<tower_warden::rate_limit::RedisHealth>,
}

impl LimitHealth {
    /// `true` while a shared store decides without its backend.
    pub fn is_degraded(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            return redis.is_degraded();
        }
        false
    }

    fn to_json(&self) -> serde_json::Value {
        if !self.enabled {
            return serde_json::json!({"enabled": false});
        }
        serde_json::json!({
            "enabled": true,
            "storage": self.storage,
            "degraded": self.is_degraded(),
        })
    }
}

/// Builds the rate limits of `config`: the same quota per client address
/// (before authentication) and per principal (after it), plus per-tool
/// quotas per principal. One store serves all three; their keys never
/// collide.
///
/// # Errors
///
/// A setting the limiters cannot use, by variable name.
#[cfg_attr(not(feature = "redis"), allow(clippy::needless_update))]
pub fn limits(config: &WardenConfig) -> Result<Limits, ConfigError> {
    let mut health = LimitHealth {
        enabled: config.rate_limit_enabled,
        storage: config.rate_limit_storage.as_str(),
        ..LimitHealth::default()
    };
    if !config.rate_limit_enabled {
        return Ok(Limits {
            per_ip: None,
            per_principal: None,
            per_tool: None,
            per_principal_quota: None,
            health,
        });
    }
    let local: Arc<dyn Store> = Arc::new(MemoryStore::with_max_keys(config.rate_limit_max_keys));
    let store = match config.rate_limit_storage {
        RateLimitStorage::Redis => redis_store(config, local, &mut health)?,
        _ => local,
    };
    let quota = config.rate_limit_quota.to_quota()?;
    let per_ip = RateLimitLayer::new(
        quota,
        KeyBy::client_ip_v6_prefix(config.rate_limit_ipv6_prefix),
        Arc::clone(&store),
    )
    .policy_name("ip");
    let per_principal =
        RateLimitLayer::new(quota, KeyBy::Subject, Arc::clone(&store)).policy_name("principal");
    let per_principal_quota = Some((Arc::clone(&store), quota));
    let per_tool = if config.tool_rate_limits.is_empty() {
        None
    } else {
        let tools = config
            .tool_rate_limits
            .iter()
            .map(|(tool, rpm)| {
                Quota::per_minute(*rpm)
                    .map(|quota| (tool.clone(), quota))
                    .map_err(|e| e.for_setting("MCP_TOOL_RATE_LIMITS"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(RateLimitLayer::per_tool(tools, KeyBy::Subject, store))
    };
    Ok(Limits {
        per_ip: Some(per_ip),
        per_principal: Some(per_principal),
        per_tool,
        per_principal_quota,
        health,
    })
}

/// The Redis store of `MCP_REDIS_URL`, falling back to `local` as
/// `MCP_RATE_LIMIT_FAIL_MODE` says.
#[cfg(feature = "redis")]
fn redis_store(
    config: &WardenConfig,
    local: Arc<dyn Store>,
    health: &mut LimitHealth,
) -> Result<Arc<dyn Store>, ConfigError> {
    let url = config.redis_url.as_deref().ok_or_else(|| {
        ConfigError::new("MCP_REDIS_URL", "MCP_RATE_LIMIT_STORAGE=redis needs it")
    })?;
    let store = tower_warden::rate_limit::RedisStore::new(url)?
        .prefix(config.rate_limit_redis_prefix.clone())
        .fail_mode(config.rate_limit_fail_mode.into())
        .fallback(local);
    health.redis = Some(store.health());
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn redis_store(
    _: &WardenConfig,
    _: Arc<dyn Store>,
    _: &mut LimitHealth,
) -> Result<Arc<dyn Store>, ConfigError> {
    Err(ConfigError::new(
        "MCP_RATE_LIMIT_STORAGE",
        "redis needs the `redis` feature: cargo run --features redis --example mcp_server",
    ))
}

/// The seconds a development token stays valid.
const DEV_TOKEN_SECONDS: u64 = 24 * 3600;

fn random_bytes<const N: usize>() -> Result<[u8; N], ConfigError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        ConfigError::new(
            "MCP_JWT_SECRET",
            format!("no random source for an ephemeral secret: {e}"),
        )
    })?;
    Ok(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `MCP_RESOURCE_URL`, or `http://<host>:<port>/mcp`.
fn resource_url(config: &WardenConfig) -> String {
    if let Some(url) = &config.resource_url {
        return url.clone();
    }
    let host = match config.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        host => host,
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("http://{host}:{}/mcp", config.port)
}

/// RFC 9728 §3.1: the well-known path inserted between host and path.
fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("https", resource));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource")
    } else {
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource/{path}")
    }
}

/// Builds the authentication of `/mcp` from the settings: the JWT verifier
/// (with an ephemeral secret and a printed token in development when no key
/// is configured), the API keys, and the challenge's metadata URL.
///
/// # Errors
///
/// A key that cannot be read or parsed, by variable name.
pub fn auth(config: &WardenConfig) -> Result<Auth, ConfigError> {
    let resource_url = resource_url(config);
    let metadata_url = metadata_url(&resource_url);
    let mut warnings = Vec::new();
    let mut dev_token = None;
    let jwt = if config.auth_mode.jwt() {
        let mut builder = JwtAuth::builder()
            .leeway(std::time::Duration::from_secs(config.jwt_leeway_seconds))
            .issuer(config.jwt_issuers.iter().cloned());
        let audiences: Vec<String> = if !config.jwt_audiences.is_empty() {
            config.jwt_audiences.clone()
        } else {
            config.resource_url.iter().cloned().collect()
        };
        // The development secret (no key source at all) pins its own audience.
        let has_key_source = config.jwt_secret.is_some()
            || config.jwt_public_key_file.is_some()
            || config.jwks_file.is_some()
            || config.jwks_url.is_some();
        if audiences.is_empty() && has_key_source {
            warnings.push(
                "token audiences (aud) are not checked: set MCP_RESOURCE_URL or MCP_JWT_AUDIENCE"
                    .to_owned(),
            );
        }
        builder = builder.audience(audiences);
        let algorithm = |default: Algorithm| -> Result<Algorithm, ConfigError> {
            match &config.jwt_algorithm {
                Some(name) => name.parse().map_err(|_| {
                    ConfigError::new("MCP_JWT_ALGORITHM", format!("`{name}` is not supported"))
                }),
                None => Ok(default),
            }
        };
        let (builder, setting) = if let Some(secret) = &config.jwt_secret {
            let mut b = builder.hmac_secret(secret, algorithm(Algorithm::HS256)?);
            if secret.len() < tower_warden::config::MIN_JWT_SECRET_BYTES {
                warnings.push(format!(
                    "MCP_JWT_SECRET is {} bytes; production requires at least {}",
                    secret.len(),
                    tower_warden::config::MIN_JWT_SECRET_BYTES
                ));
                b = b.allow_short_secret();
            }
            (b, "MCP_JWT_SECRET")
        } else if let Some(path) = &config.jwt_public_key_file {
            (
                builder.public_key_file(path, algorithm(Algorithm::RS256)?),
                "MCP_JWT_PUBLIC_KEY_FILE",
            )
        } else if let Some(path) = &config.jwks_file {
            (builder.jwks_file(path), "MCP_JWKS_FILE")
        } else if let Some(url) = &config.jwks_url {
            (builder.jwks_url(JwksUrl::new(url.clone())), "MCP_JWKS_URL")
        } else {
            // Development with nothing configured: an ephemeral secret, and a
            // token for it that the operator can paste into a client.
            let secret = random_bytes::<32>()?;
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
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .map_err(|e| {
                ConfigError::new(
                    "MCP_JWT_SECRET",
                    format!("cannot sign the development token: {e}"),
                )
            })?;
            dev_token = Some(token);
            (
                builder
                    .hmac_secret(secret, Algorithm::HS256)
                    .audience([resource_url.clone()]),
                "MCP_JWT_SECRET",
            )
        };
        Some(builder.build().map_err(|e| e.for_setting(setting))?)
    } else {
        None
    };
    let (api_keys, api_key_salt) = if config.auth_mode.api_key() {
        let salt = match &config.api_key_salt {
            Some(salt) => salt.as_bytes().to_vec(),
            None => random_bytes::<32>()?.to_vec(),
        };
        (Some(api_keys(config, &salt)?), salt)
    } else {
        (None, Vec::new())
    };
    let layer = match (config.auth_mode, jwt.clone(), api_keys.clone()) {
        (AuthMode::None, ..) => {
            warnings
                .push("MCP_AUTH_MODE=none: every caller is admitted with every scope".to_owned());
            AuthLayer::anonymous()
        }
        (_, Some(jwt), Some(keys)) => AuthLayer::jwt_or_api_key(jwt, keys),
        (_, Some(jwt), None) => AuthLayer::jwt(jwt),
        (_, None, Some(keys)) => AuthLayer::api_keys(keys),
        (mode, None, None) => {
            return Err(ConfigError::new(
                "MCP_AUTH_MODE",
                format!("`{mode}` is not supported by this server"),
            ));
        }
    };
    let layer = layer
        .resource_metadata(metadata_url.clone())
        .allow_query_credentials(config.ws_allow_query_auth);
    if config.environment == Environment::Development && dev_token.is_some() {
        warnings.push(
            "no JWT key configured: using an ephemeral development secret (set MCP_JWT_SECRET to keep tokens across restarts)"
                .to_owned(),
        );
    }
    Ok(Auth {
        layer,
        jwt,
        api_keys,
        api_key_salt,
        dev_token,
        warnings,
        resource_url,
        metadata_url,
    })
}

/// The API keys of `config` (`MCP_API_KEYS`, each with every scope, and
/// `MCP_API_KEYS_FILE`) under `salt`.
fn api_keys(config: &WardenConfig, salt: &[u8]) -> Result<ApiKeys, ConfigError> {
    let keys = ApiKeys::new(salt).map_err(|e| e.for_setting("MCP_API_KEY_SALT"))?;
    for (n, key) in config.api_keys.iter().enumerate() {
        let id = format!("api-key-{}", n + 1);
        let principal = Principal::builder(id.clone(), AuthMethod::ApiKey)
            .key_id(id)
            .scopes(["*"])
            .build();
        keys.insert_key(key, principal)
            .map_err(|e| e.for_setting("MCP_API_KEYS"))?;
    }
    if let Some(path) = &config.api_keys_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "MCP_API_KEYS_FILE",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        keys.load_lines(&text)
            .map_err(|e| e.for_setting("MCP_API_KEYS_FILE"))?;
    }
    Ok(keys)
}

/// Where a reload reads the settings again: the environment and
/// `MCP_CONFIG_FILE` in the server, anything in tests.
pub type Loader = Arc<dyn Fn() -> Result<WardenConfig, ConfigError> + Send + Sync>;

/// The hot reloads of the reference server (SIGHUP): the IP allow and deny
/// lists (from the settings file), the API keys (`MCP_API_KEYS` and the
/// `MCP_API_KEYS_FILE`), and the `MCP_JWKS_FILE` keys. Each part is read
/// and checked whole before it is swapped in; a bad part is logged and the
/// old one stays.
pub fn reloads(auth: &Auth, ip_lists: IpSetHandle, load: Loader) -> ReloadHandle {
    let mut handle = ReloadHandle::new().step("ip lists", {
        let load = Arc::clone(&load);
        move || {
            let config = load()?;
            ip_lists.replace(ip_set(&config));
            Ok(format!(
                "{} allowed, {} blocked",
                config.allowed_ips.len(),
                config.blocked_ips.len()
            ))
        }
    });
    if let Some(keys) = auth.api_keys.clone() {
        let salt = auth.api_key_salt.clone();
        let load = Arc::clone(&load);
        handle = handle.step("api keys", move || {
            let config = load()?;
            let fresh = api_keys(&config, &salt)?;
            let n = keys
                .replace_from(&fresh)
                .map_err(|e| e.for_setting("MCP_API_KEY_SALT"))?;
            Ok(format!("{n} keys"))
        });
    }
    if let Some(jwt) = auth.jwt.clone() {
        handle = handle.step("jwks file", move || {
            let config = load()?;
            let Some(path) = &config.jwks_file else {
                return Ok("no MCP_JWKS_FILE".to_owned());
            };
            let json = std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    "MCP_JWKS_FILE",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            jwt.replace_jwks(&json)
                .map_err(|e| e.for_setting("MCP_JWKS_FILE"))?;
            Ok(path.display().to_string())
        });
    }
    handle
}

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
            let store = sessions::RedisSessions::new(url)?;
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

/// The allow and deny lists of `config`.
fn ip_set(config: &WardenConfig) -> IpSet {
    IpSet::builder()
        .allow_nets(config.allowed_ips.iter().copied())
        .deny_nets(config.blocked_ips.iter().copied())
        .build()
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
        store,
        upstreams: upstream::Upstreams::new(
            breakers,
            upstream::Reach {
                allow_private: config.gateway_allow_private_upstreams,
            },
        ),
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

/// A breaker's state for `/health`.
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
    let policy = (!config.tool_scopes.is_empty()).then(|| {
        config
            .tool_scopes
            .iter()
            .fold(ToolPolicy::new(), |policy, (tool, scopes)| {
                policy.require(tool.clone(), scopes.clone())
            })
    });
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

    // Origins granted CORS may also call: the browser sends their `Origin`.
    let any_origin = config.cors_origins.iter().any(|o| o == "*");
    let origins = config
        .allowed_origins
        .iter()
        .chain(config.cors_origins.iter().filter(|_| !any_origin));
    let mut host_origin = HostOriginLayer::new()
        .try_allowed_hosts(&config.allowed_hosts)
        .map_err(|e| e.for_setting("MCP_ALLOWED_HOSTS"))?
        .try_allowed_origins(origins)
        .map_err(|e| e.for_setting("MCP_ALLOWED_ORIGINS"))?;
    if any_origin {
        host_origin = host_origin.allow_any_origin();
    }

    // `route_layer`: the last one added is the outermost. The request
    // timeout is innermost: it bounds the service, not the checks.
    let mcp_routes = ops::timeout(Router::new().route_service("/mcp", mcp), config)
        // Sessions are bound to the principal that opened them. Another
        // principal's session id is answered exactly as rmcp answers an
        // unknown one, which `JsonRpcErrorsLayer` then turns into the same
        // JSON-RPC error (-32001) either way.
        .route_layer(binding.clone())
        .route_layer(JsonRpcErrorsLayer::new().max_body_bytes(max_body));
    // Several instances: who owns a session travels with it.
    let mcp_routes = match shared_sessions {
        Some((_, owners)) => mcp_routes.route_layer(tower_warden::mcp::SharedSessionsLayer::new(
            binding.sessions(),
            owners,
        )),
        None => mcp_routes,
    };
    let limits = limits(config)?;
    let ip_lists = IpSetHandle::new(ip_set(config));
    // WebSocket sessions: behind the same layers as `/mcp` (added below).
    let mut mcp_routes = mcp_routes.merge(
        Router::new()
            .route("/mcp/ws", get(ws::upgrade))
            .with_state(Arc::new(ws::WsState {
                tools: Arc::clone(&make_tools),
                ip_lists: ip_lists.clone(),
                quota: limits.per_principal_quota.clone(),
                ping_interval: config.ws_ping_interval,
                ping_timeout: config.ws_ping_timeout,
                max_message: max_body,
                sessions: shutdown.child_token(),
            })),
    );
    let mut api_routes = ops::timeout(gateway::routes(Arc::clone(&gateway)), config);
    if let Some(per_principal) = limits.per_principal {
        mcp_routes = mcp_routes.route_layer(per_principal.clone());
        api_routes = api_routes.route_layer(per_principal);
    }
    if let Some(per_tool) = &limits.per_tool {
        mcp_routes = mcp_routes.route_layer(per_tool.clone());
    }
    // Per-tool scopes (`MCP_TOOL_SCOPES`): calls refused with 403
    // insufficient_scope, `tools/list` filtered to what the caller may call.
    // Per-tool quotas need the tool name this layer finds, so it is there
    // (with no scopes required) for them too.
    if policy.is_some() || limits.per_tool.is_some() {
        let policy = policy.unwrap_or_default();
        mcp_routes = mcp_routes.route_layer(McpPolicyLayer::new(policy).max_body_bytes(max_body));
    }
    let mcp_routes = mcp_routes
        .merge(api_routes)
        .route_layer(host_origin)
        .route_layer(auth.layer.clone());
    let reload = reloads(auth, ip_lists.clone(), load);
    let mut mcp_routes = guards(mcp_routes, config, limits.per_ip.clone(), &ip_lists)?;
    if config.trust_x_forwarded {
        mcp_routes = mcp_routes.route_layer(ops::client_ip(config)?);
    }

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
        limits: limits.health,
        gateway,
    });
    let metrics = tower_warden::metrics::MetricsLayer::new();
    // `/status` sits behind the same checks as `/mcp`, then the admin role.
    let status = ops::status_routes(
        config,
        auth.layer.clone(),
        ops::StatusState {
            metrics: metrics.clone(),
            jwt: auth.jwt.clone(),
            config: config.redacted_json(),
            health: Box::new({
                let state = Arc::clone(&health_state);
                move || health_json(&state)
            }),
        },
    );
    let mut status = guards(status, config, limits.per_ip, &ip_lists)?;
    if config.trust_x_forwarded {
        status = status.route_layer(ops::client_ip(config)?);
    }
    let mut router = Router::new()
        .route("/health", get(health))
        .with_state(health_state)
        .merge(well_known)
        .merge(status)
        .merge(mcp_routes);
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

/// Adds, outermost first, `IpFilterLayer` → `ClientCertLayer` (only when
/// required) → the per-address rate limit → `BodyLimitLayer` around the MCP
/// routes.
fn guards(
    mcp_routes: Router,
    config: &WardenConfig,
    per_ip: Option<RateLimitLayer>,
    ip_lists: &IpSetHandle,
) -> Result<Router, ConfigError> {
    // `route_layer`: the last one added is the outermost.
    let mut mcp_routes = mcp_routes.route_layer(BodyLimitLayer::new(config.max_body_bytes));
    if let Some(per_ip) = per_ip {
        mcp_routes = mcp_routes.route_layer(per_ip);
    }
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
    // Always present, so that a reload may add lists where there were none.
    mcp_routes = mcp_routes.route_layer(IpFilterLayer::with_handle(ip_lists.clone()));
    Ok(mcp_routes)
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
    limits: LimitHealth,
    gateway: Arc<gateway::Gateway>,
}

/// `GET /health`: always 200 while the process serves; `status` is
/// `degraded` while the rate limiter decides without Redis (each instance
/// then limits on its own).
async fn health(State(state): State<Arc<HealthState>>) -> Json<serde_json::Value> {
    Json(health_json(&state))
}

fn health_json(state: &HealthState) -> serde_json::Value {
    let status = if state.limits.is_degraded() {
        "degraded"
    } else {
        "healthy"
    };
    serde_json::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "rate_limit": state.limits.to_json(),
        "upstreams": state
            .gateway
            .upstreams
            .states()
            .into_iter()
            .map(|(id, breaker)| serde_json::json!({"connection_id": id, "breaker": breaker_json(&breaker)}))
            .collect::<Vec<_>>(),
    })
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
