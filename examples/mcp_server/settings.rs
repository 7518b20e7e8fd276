//! The reference server's settings: the one place that reads what the
//! server needs besides the perimeter, and hands it out by idea.
//!
//! Today every value still comes from [`WardenConfig`] (the `MCP_*`
//! environment variables and `MCP_CONFIG_FILE`, with their rules and error
//! messages). The rest of the server reads these types, never the
//! server-only fields of `WardenConfig`, so that moving those fields into a
//! settings type of the server changes this file only.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use tower_warden::config::{LogFormat, SessionStorage, WardenConfig};

/// Everything the reference server reads.
#[derive(Clone)]
pub struct Settings {
    /// The perimeter: what `WardenLayer::from_config` builds, reloads and
    /// shows (redacted) on `/status`.
    pub warden: WardenConfig,
    /// Where the server listens.
    pub listen: Listen,
    /// `/metrics`.
    pub metrics: Metrics,
    /// The HTTP surface around the routes.
    pub http: Http,
    /// `/mcp/ws`.
    pub websocket: WebSocket,
    /// The MCP session store.
    pub sessions: Sessions,
    /// The gateway and its connection store.
    pub gateway: Gateway,
    /// The RFC 9728 metadata of `/mcp`.
    pub metadata: Metadata,
}

impl Settings {
    /// The settings `config` holds.
    #[must_use]
    pub fn read(config: &WardenConfig) -> Self {
        Self {
            warden: config.clone(),
            listen: Listen::of(config),
            metrics: Metrics::of(config),
            http: Http::of(config),
            websocket: WebSocket::of(config),
            sessions: Sessions::of(config),
            gateway: Gateway::of(config),
            metadata: Metadata::of(config),
        }
    }
}

/// Where the server listens.
#[derive(Clone, Debug)]
pub struct Listen {
    /// `MCP_HOST`.
    pub host: String,
    /// `MCP_PORT`.
    pub port: u16,
    /// `MCP_CONFIG_FILE`, if the settings were read from a file.
    pub config_file: Option<PathBuf>,
    /// Whether `MCP_ALLOWED_HOSTS` is left at its default (loopback names
    /// only).
    pub loopback_hosts_only: bool,
}

impl Listen {
    /// The listening settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            host: config.host.clone(),
            port: config.port,
            config_file: config.config_file.clone(),
            loopback_hosts_only: config.allowed_hosts == WardenConfig::default().allowed_hosts,
        }
    }
}

/// Logs and the audit file. Read on their own ([`Logs::of`]): the log
/// subscriber is installed before anything else.
#[derive(Clone, Debug)]
pub struct Logs {
    /// `MCP_LOG_LEVEL` (else `RUST_LOG`, else `info`).
    pub level: Option<String>,
    /// `MCP_LOG_FORMAT`.
    pub format: LogFormat,
    /// `MCP_AUDIT_LOG_FILE`.
    pub audit_file: Option<PathBuf>,
}

impl Logs {
    /// The log settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            level: config.log_level.clone(),
            format: config.log_format,
            audit_file: config.audit_log_file.clone(),
        }
    }
}

/// `/metrics`.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `MCP_METRICS_PORT`: a listener of its own, else on the main one.
    pub port: Option<u16>,
    /// `MCP_METRICS_ALLOWED_IPS`.
    pub allowed_ips: Vec<IpNet>,
}

impl Metrics {
    /// The metrics settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            port: config.metrics_port,
            allowed_ips: config.metrics_allowed_ips.clone(),
        }
    }
}

/// The HTTP surface around the routes.
#[derive(Clone, Debug)]
pub struct Http {
    /// `MCP_REQUEST_TIMEOUT`: one request, and the drain at shutdown.
    pub request_timeout: Duration,
    /// `MCP_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    /// `MCP_ADMIN_ROLE`: who may read `/status`.
    pub admin_role: String,
}

impl Http {
    /// The HTTP settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            request_timeout: config.request_timeout,
            cors_origins: config.cors_origins.clone(),
            admin_role: config.admin_role.clone(),
        }
    }
}

/// `/mcp/ws`.
#[derive(Clone, Copy, Debug)]
pub struct WebSocket {
    /// `MCP_WS_PING_INTERVAL`.
    pub ping_interval: Duration,
    /// `MCP_WS_PING_TIMEOUT`.
    pub ping_timeout: Duration,
}

impl WebSocket {
    /// The WebSocket settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            ping_interval: config.ws_ping_interval,
            ping_timeout: config.ws_ping_timeout,
        }
    }
}

/// The MCP session store.
#[derive(Clone, Copy, Debug)]
pub struct Sessions {
    /// `MCP_SESSION_STORE` (`redis` uses `MCP_REDIS_URL`, a perimeter
    /// setting shared with the rate limiter).
    pub store: SessionStorage,
}

impl Sessions {
    /// The session settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            store: config.session_store,
        }
    }
}

/// The gateway and its connection store.
#[derive(Clone)]
pub struct Gateway {
    /// `MCP_DATABASE_URL`.
    pub database_url: String,
    /// `MCP_GATEWAY_SCOPE`: the scope every connection route requires.
    pub scope: String,
    /// `MCP_ADMIN_ROLE` when it is set: the role that works in every
    /// namespace (`None`: no role crosses namespaces).
    pub cross_namespace_role: Option<String>,
    /// `MCP_GATEWAY_MAX_CONNECTIONS`, per namespace.
    pub max_connections: u32,
    /// `MCP_GATEWAY_CREDENTIAL_KEY` (a secret).
    pub credential_key: Option<[u8; 32]>,
    /// Whether the server runs in development (an ephemeral credential key
    /// is allowed there).
    pub development: bool,
    /// `MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS`.
    pub allow_private_upstreams: bool,
    /// `MCP_GATEWAY_TOOLS_CACHE_TTL`.
    pub tools_cache_ttl: Duration,
    /// `MCP_GATEWAY_FANOUT`.
    pub fanout: usize,
    /// `CIRCUIT_BREAKER_FAILURE_THRESHOLD`, per upstream.
    pub breaker_failure_threshold: u32,
    /// `CIRCUIT_BREAKER_RESET_TIMEOUT`, per upstream.
    pub breaker_reset_timeout: Duration,
}

impl Gateway {
    /// The gateway settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            database_url: config.database_url.clone(),
            scope: config.gateway_scope.clone(),
            cross_namespace_role: config.cross_namespace_role.clone(),
            max_connections: config.gateway_max_connections,
            credential_key: config.gateway_credential_key,
            development: !config.environment.follows_production_rules(),
            allow_private_upstreams: config.gateway_allow_private_upstreams,
            tools_cache_ttl: config.gateway_tools_cache_ttl,
            fanout: config.gateway_fanout,
            breaker_failure_threshold: config.circuit_breaker_failure_threshold,
            breaker_reset_timeout: config.circuit_breaker_reset_timeout,
        }
    }
}

/// The RFC 9728 metadata of `/mcp`.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// `MCP_OAUTH_AUTHORIZATION_SERVERS`.
    pub authorization_servers: Vec<String>,
}

impl Metadata {
    /// The metadata settings of `config`.
    #[must_use]
    pub fn of(config: &WardenConfig) -> Self {
        Self {
            authorization_servers: config.oauth_authorization_servers.clone(),
        }
    }
}
