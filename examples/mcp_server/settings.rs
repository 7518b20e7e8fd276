//! The reference server's settings: the one place that reads what the
//! server needs besides the perimeter, and hands it out by idea.
//!
//! Everything comes through one [`Source`] (the `MCP_*` environment
//! variables over `MCP_CONFIG_FILE`, with the perimeter's rules and error
//! messages): the perimeter's settings as a [`WardenConfig`], the server's
//! own ([`NAMES`]) read here. An `MCP_*` name that neither reads stops
//! start-up. A few settings the server uses are the perimeter's and are
//! handed out from `WardenConfig`: the listening address (the perimeter
//! derives the resource URL from it), `MCP_CORS_ORIGINS`, `MCP_ADMIN_ROLE`
//! (the role `NamespaceLayer` lets cross namespaces, in any app) and
//! `MCP_REQUEST_TIMEOUT` (the bound any app puts around the perimeter). The
//! rest of the server reads only these types.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};
use tower_warden::ConfigError;
use tower_warden::config::{Source, WardenConfig, redact_url};
use tower_warden::mcp::tool_integrity::ToolScreen;
use tower_warden::otel::{Incoming, OtelConfig};

/// The settings only the reference server reads, beside the perimeter's
/// `tower_warden::config::VARIABLES`.
pub const NAMES: &[&str] = &[
    "MCP_LOG_LEVEL",
    "MCP_LOG_FORMAT",
    "MCP_AUDIT_LOG_FILE",
    "MCP_METRICS_ALLOWED_IPS",
    "MCP_METRICS_PORT",
    "MCP_WS_PING_INTERVAL",
    "MCP_WS_PING_TIMEOUT",
    "MCP_SESSION_STORE",
    "MCP_OAUTH_AUTHORIZATION_SERVERS",
    "MCP_DATABASE_URL",
    "MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS",
    "MCP_GATEWAY_MAX_CONNECTIONS",
    "MCP_GATEWAY_TOOLS_CACHE_TTL",
    "MCP_GATEWAY_FANOUT",
    "MCP_GATEWAY_CREDENTIAL_KEY",
    "MCP_GATEWAY_SCOPE",
    "MCP_GATEWAY_TOOL_SCREEN",
    "MCP_GATEWAY_TOOL_SCREEN_PHRASES",
    "MCP_WEBHOOK_SECRETS",
    "MCP_WEBHOOK_SCHEME",
    "MCP_WEBHOOK_TOLERANCE_SECONDS",
    "MCP_TRACE_INCOMING",
];

/// Default `MCP_DATABASE_URL`: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/mcp.db";
/// The scope the gateway's connection API requires unless
/// `MCP_GATEWAY_SCOPE` names another.
pub const DEFAULT_GATEWAY_SCOPE: &str = "gateway:connections";

/// Everything the reference server reads (`Debug` hides secrets and URL
/// passwords, as [`Settings::redacted_json`] does).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The perimeter: what `WardenLayer::from_config` builds, reloads and
    /// shows (redacted) on `/status`.
    pub warden: WardenConfig,
    /// Where the server listens.
    pub listen: Listen,
    /// Logs and the audit file.
    pub logs: Logs,
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
    /// Signed webhooks (`POST /webhooks`).
    pub webhooks: Webhooks,
    /// OpenTelemetry traces.
    pub traces: Traces,
}

impl Settings {
    /// The settings of the process environment and `MCP_CONFIG_FILE`.
    ///
    /// # Errors
    ///
    /// The first invalid setting, or an unknown `MCP_*` name.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut settings = Self::read(&Source::from_env(NAMES)?)?;
        settings.traces.export = OtelConfig::from_env()?;
        Ok(settings)
    }

    /// The settings of `(name, value)` pairs (and the settings file they
    /// name).
    ///
    /// # Errors
    ///
    /// The first invalid setting, or an unknown `MCP_*` name.
    #[allow(dead_code)] // the integration tests build the server through it
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let mut settings = Self::read(&Source::from_vars(vars.iter().cloned(), NAMES)?)?;
        settings.traces.export = OtelConfig::from_vars(vars)?;
        Ok(settings)
    }

    /// The perimeter's settings alone, read again from the environment and
    /// the settings file: what a reload swaps (the server's own settings
    /// hold until a restart).
    ///
    /// # Errors
    ///
    /// As [`Settings::from_env`].
    pub fn perimeter_from_env() -> Result<WardenConfig, ConfigError> {
        Source::from_env(NAMES)?.warden()
    }

    /// Every setting of `source`.
    ///
    /// # Errors
    ///
    /// The first invalid setting.
    pub fn read(source: &Source) -> Result<Self, ConfigError> {
        let config = source.warden()?;
        let production = config.environment.follows_production_rules();
        Ok(Self {
            listen: Listen::of(&config),
            logs: Logs::read(source, production)?,
            metrics: Metrics::read(source)?,
            http: Http::of(&config),
            websocket: WebSocket::read(source)?,
            sessions: Sessions::read(source, &config)?,
            gateway: Gateway::read(source, &config)?,
            metadata: Metadata::read(source, production)?,
            webhooks: Webhooks::read(source, &config)?,
            warden: config,
            traces: Traces::read(source)?,
        })
    }

    /// Every setting in effect, secrets hidden and URL passwords redacted:
    /// the perimeter's view (`WardenConfig::redacted_json`) with the
    /// server's own settings beside it.
    #[must_use]
    pub fn redacted_json(&self) -> Value {
        let mut all = self.warden.redacted_json();
        if let Value::Object(map) = &mut all {
            let nets = |items: &[IpNet]| items.iter().map(ToString::to_string).collect::<Vec<_>>();
            let servers = self.metadata.authorization_servers.iter();
            map.extend([
                ("log_level".to_owned(), json!(self.logs.level)),
                ("log_format".to_owned(), json!(self.logs.format.as_str())),
                (
                    "otel_traces_endpoint".to_owned(),
                    json!(
                        self.traces
                            .export
                            .as_ref()
                            .map(|t| redact_url(t.endpoint()))
                    ),
                ),
                (
                    "trace_incoming".to_owned(),
                    json!(self.traces.incoming.as_str()),
                ),
                ("audit_log_file".to_owned(), json!(self.logs.audit_file)),
                (
                    "metrics_allowed_ips".to_owned(),
                    json!(nets(&self.metrics.allowed_ips)),
                ),
                ("metrics_port".to_owned(), json!(self.metrics.port)),
                (
                    "ws_ping_interval".to_owned(),
                    json!(self.websocket.ping_interval.as_secs()),
                ),
                (
                    "ws_ping_timeout".to_owned(),
                    json!(self.websocket.ping_timeout.as_secs()),
                ),
                (
                    "session_store".to_owned(),
                    json!(self.sessions.store.as_str()),
                ),
                (
                    "oauth_authorization_servers".to_owned(),
                    json!(servers.map(|url| redact_url(url)).collect::<Vec<_>>()),
                ),
            ]);
            map.extend(self.gateway.redacted());
            // The scheme only: the secrets are never shown.
            let scheme = self.webhooks.layer.as_ref().map(|l| l.scheme().as_str());
            map.insert("webhook_scheme".to_owned(), json!(scheme));
        }
        all
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

/// OpenTelemetry traces.
#[derive(Clone, Debug, Default)]
pub struct Traces {
    /// Where spans go: the standard `OTEL_*` variables; `None` (off) unless
    /// an OTLP endpoint is set.
    pub export: Option<OtelConfig>,
    /// `MCP_TRACE_INCOMING`: what a request's span makes of the caller's
    /// `traceparent` (`continue`, the default, or `link`).
    pub incoming: Incoming,
}

impl Traces {
    /// `MCP_TRACE_INCOMING` of `source` (the `OTEL_*` variables are read
    /// beside it, from the environment).
    ///
    /// # Errors
    ///
    /// A value other than `continue` or `link`.
    pub fn read(source: &Source) -> Result<Self, ConfigError> {
        let incoming = match source.get("MCP_TRACE_INCOMING") {
            None => Incoming::default(),
            Some(text) => text
                .parse()
                .map_err(|e: String| source.error("MCP_TRACE_INCOMING", e))?,
        };
        Ok(Self {
            export: None,
            incoming,
        })
    }
}

/// How the server writes its logs (`MCP_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The setting's name for it: `text` or `json`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// Logs and the audit file.
#[derive(Clone, Debug)]
pub struct Logs {
    /// `MCP_LOG_LEVEL` (else `RUST_LOG`, else `info`).
    pub level: Option<String>,
    /// `MCP_LOG_FORMAT` (`text` in development, else `json`).
    pub format: LogFormat,
    /// `MCP_AUDIT_LOG_FILE`.
    pub audit_file: Option<PathBuf>,
}

impl Logs {
    /// The log settings of `source`.
    ///
    /// # Errors
    ///
    /// A level that is not a level or `tracing` directives, an unknown
    /// format, or an audit file that is a directory.
    pub fn read(source: &Source, production: bool) -> Result<Self, ConfigError> {
        let level = match source.get("MCP_LOG_LEVEL") {
            Some(level) => {
                let allowed = |c: char| c.is_ascii_alphanumeric() || "_:=,.-[]{}*\"".contains(c);
                if level.len() > 1024 || !level.chars().all(allowed) {
                    return Err(source.error(
                        "MCP_LOG_LEVEL",
                        "is not a level (error, warn, info, debug, trace) or tracing directives \
                         such as `info,tower_warden=debug`",
                    ));
                }
                Some(level.to_owned())
            }
            None => None,
        };
        let format = match source.get("MCP_LOG_FORMAT").map(str::to_ascii_lowercase) {
            None if production => LogFormat::Json,
            None => LogFormat::Text,
            Some(text) => match text.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(source.error(
                        "MCP_LOG_FORMAT",
                        format!("`{text}` is not one of text, json"),
                    ));
                }
            },
        };
        let audit_file = source.path("MCP_AUDIT_LOG_FILE");
        if let Some(file) = &audit_file
            && file.is_dir()
        {
            return Err(source.error(
                "MCP_AUDIT_LOG_FILE",
                format!("`{}` is a directory, not a file", file.display()),
            ));
        }
        Ok(Self {
            level,
            format,
            audit_file,
        })
    }
}

/// `/metrics`.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `MCP_METRICS_PORT`: a listener of its own, else on the main one.
    pub port: Option<u16>,
    /// `MCP_METRICS_ALLOWED_IPS` (loopback by default; never empty when
    /// read, and an empty list built by hand admits no one).
    pub allowed_ips: Vec<IpNet>,
}

impl Metrics {
    /// The metrics settings of `source`.
    ///
    /// # Errors
    ///
    /// A port out of range, or an allow list that is set but empty or holds
    /// something other than addresses and prefixes.
    pub fn read(source: &Source) -> Result<Self, ConfigError> {
        let loopback = || {
            vec![
                IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8).trunc()),
                IpNet::V6(ipnet::Ipv6Net::new_assert(
                    std::net::Ipv6Addr::LOCALHOST,
                    128,
                )),
            ]
        };
        Ok(Self {
            port: source.whole("MCP_METRICS_PORT", 1, u16::MAX)?,
            allowed_ips: source
                .nets("MCP_METRICS_ALLOWED_IPS")?
                .unwrap_or_else(loopback),
        })
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
    /// `MCP_WS_PING_INTERVAL` (seconds; 30 by default).
    pub ping_interval: Duration,
    /// `MCP_WS_PING_TIMEOUT` (seconds; 10 by default).
    pub ping_timeout: Duration,
}

impl WebSocket {
    /// The WebSocket settings of `source`.
    ///
    /// # Errors
    ///
    /// A number of seconds out of 1–3600.
    pub fn read(source: &Source) -> Result<Self, ConfigError> {
        let seconds = |name, default| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(
                source.whole(name, 1, 3600)?.unwrap_or(default),
            ))
        };
        Ok(Self {
            ping_interval: seconds("MCP_WS_PING_INTERVAL", 30)?,
            ping_timeout: seconds("MCP_WS_PING_TIMEOUT", 10)?,
        })
    }
}

/// Where MCP sessions are kept (`MCP_SESSION_STORE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStorage {
    /// In this process: a session works on the instance that opened it.
    Memory,
    /// In Redis (`MCP_REDIS_URL`): any instance serves any session.
    Redis,
}

impl SessionStorage {
    /// The setting's name for it: `memory` or `redis`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
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
    /// The session settings of `source`.
    ///
    /// # Errors
    ///
    /// An unknown store, or `redis` without `MCP_REDIS_URL`.
    pub fn read(source: &Source, config: &WardenConfig) -> Result<Self, ConfigError> {
        let store = match source.get("MCP_SESSION_STORE").map(str::to_ascii_lowercase) {
            None => SessionStorage::Memory,
            Some(text) => match text.as_str() {
                "memory" => SessionStorage::Memory,
                "redis" => SessionStorage::Redis,
                _ => {
                    return Err(source.error(
                        "MCP_SESSION_STORE",
                        format!("`{text}` is not one of memory, redis"),
                    ));
                }
            },
        };
        if store == SessionStorage::Redis && config.redis_url.is_none() {
            return Err(source.error(
                "MCP_REDIS_URL",
                "MCP_SESSION_STORE=redis needs the server's URL (redis://)",
            ));
        }
        Ok(Self { store })
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
    /// `MCP_GATEWAY_TOOL_SCREEN`: whether a tool the screen flags is
    /// quarantined (`true`, the default) or only logged.
    pub quarantine: bool,
    /// `MCP_GATEWAY_TOOL_SCREEN_PHRASES`: the screen (its phrases replace
    /// the default ones).
    pub screen: ToolScreen,
    /// The rules on tool annotations (`MCP_TOOL_ANNOTATION_SCOPES`,
    /// `MCP_TOOL_ANNOTATIONS_OFF`), for the built-in tools and the
    /// upstreams' alike.
    pub annotations: std::sync::Arc<tower_warden::tool_rules::AnnotationPolicy>,
    /// `MCP_TOKEN_EXCHANGE_*`: how connections that ask for it exchange
    /// the caller's token for the upstream's (`None`: they cannot be
    /// registered).
    pub token_exchange: Option<tower_warden::auth::TokenExchange>,
    /// `CIRCUIT_BREAKER_FAILURE_THRESHOLD`, per upstream.
    pub breaker_failure_threshold: u32,
    /// `CIRCUIT_BREAKER_RESET_TIMEOUT`, per upstream.
    pub breaker_reset_timeout: Duration,
}

impl Gateway {
    /// The gateway settings of `source`; `config` is the perimeter read from
    /// the same source (its environment decides the defaults).
    ///
    /// # Errors
    ///
    /// The first invalid gateway setting, by variable name.
    pub fn read(source: &Source, config: &WardenConfig) -> Result<Self, ConfigError> {
        let development = !config.environment.follows_production_rules();
        let database_url = match source.get("MCP_DATABASE_URL") {
            Some(url) => {
                let known = ["sqlite:", "postgres://", "postgresql://"];
                if !known.iter().any(|p| url.starts_with(p)) {
                    return Err(source.error(
                        "MCP_DATABASE_URL",
                        "expected sqlite://path, sqlite::memory: or postgres://user:password@host/db",
                    ));
                }
                url.to_owned()
            }
            None => DEFAULT_DATABASE_URL.to_owned(),
        };
        let scope = match source.raw("MCP_GATEWAY_SCOPE") {
            Some(scope) => {
                let scope = scope.trim();
                // RFC 6750 scope-token: it is named in `WWW-Authenticate`.
                let token = |b: u8| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e);
                if scope.is_empty() || !scope.bytes().all(token) {
                    return Err(source.error(
                        "MCP_GATEWAY_SCOPE",
                        "expected one scope (printable ASCII without spaces, quotes or \
                         backslashes); unset, it is gateway:connections",
                    ));
                }
                scope.to_owned()
            }
            None => DEFAULT_GATEWAY_SCOPE.to_owned(),
        };
        let day_ms = 24 * 60 * 60 * 1000;
        let quarantine = match source
            .get("MCP_GATEWAY_TOOL_SCREEN")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("quarantine") => true,
            Some("log") => false,
            Some(_) => {
                return Err(source.error(
                    "MCP_GATEWAY_TOOL_SCREEN",
                    "expected quarantine (hide and refuse a flagged tool) or log",
                ));
            }
        };
        let screen = match source.list("MCP_GATEWAY_TOOL_SCREEN_PHRASES")? {
            Some(phrases) => ToolScreen::new()
                .try_phrases(phrases)
                .map_err(|e| source.error("MCP_GATEWAY_TOOL_SCREEN_PHRASES", e.to_string()))?,
            None => ToolScreen::new(),
        };
        Ok(Self {
            token_exchange: tower_warden::stack::token_exchange(config)?,
            database_url,
            scope,
            cross_namespace_role: config.cross_namespace_role.clone(),
            max_connections: source
                .whole("MCP_GATEWAY_MAX_CONNECTIONS", 1, 10_000)?
                .unwrap_or(32),
            credential_key: source.hex("MCP_GATEWAY_CREDENTIAL_KEY")?,
            development,
            allow_private_upstreams: source
                .boolean("MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS")?
                .unwrap_or(development),
            tools_cache_ttl: Duration::from_millis(
                source
                    .whole("MCP_GATEWAY_TOOLS_CACHE_TTL", 0, day_ms)?
                    .unwrap_or(60_000),
            ),
            fanout: source.whole("MCP_GATEWAY_FANOUT", 1, 256)?.unwrap_or(8),
            quarantine,
            screen,
            annotations: std::sync::Arc::new(
                tower_warden::tool_rules::AnnotationPolicy::try_from_entries(
                    &config.tool_annotation_scopes,
                    &config.tool_annotations_off,
                )?,
            ),
            breaker_failure_threshold: config.circuit_breaker_failure_threshold,
            breaker_reset_timeout: config.circuit_breaker_reset_timeout,
        })
    }

    /// The gateway's own settings as `/status` shows them: the database
    /// URL without its password, the credential key never.
    fn redacted(&self) -> serde_json::Map<String, Value> {
        let millis = u64::try_from(self.tools_cache_ttl.as_millis()).unwrap_or(u64::MAX);
        let view = json!({
            "database_url": redact_url(&self.database_url),
            "gateway_allow_private_upstreams": self.allow_private_upstreams,
            "gateway_max_connections": self.max_connections,
            "gateway_tools_cache_ttl": millis,
            "gateway_fanout": self.fanout,
            "gateway_credential_key": self.credential_key.map(|_| "<redacted>"),
            "gateway_scope": self.scope,
            "gateway_tool_screen": if self.quarantine { "quarantine" } else { "log" },
        });
        match view {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

/// The RFC 9728 metadata of `/mcp`.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// `MCP_OAUTH_AUTHORIZATION_SERVERS`.
    pub authorization_servers: Vec<String>,
}

impl Metadata {
    /// The metadata settings of `source`.
    ///
    /// # Errors
    ///
    /// A list that is set but empty, or an entry that is not an `https://`
    /// URL (`http://` in development or to a loopback host).
    pub fn read(source: &Source, production: bool) -> Result<Self, ConfigError> {
        Ok(Self {
            authorization_servers: source
                .urls("MCP_OAUTH_AUTHORIZATION_SERVERS", production)?
                .unwrap_or_default(),
        })
    }
}

/// Signed webhooks: `POST /webhooks`, verified by a `SignatureLayer`.
#[derive(Clone, Debug)]
pub struct Webhooks {
    /// The verifier of `MCP_WEBHOOK_SECRETS` (scheme `MCP_WEBHOOK_SCHEME`,
    /// tolerance `MCP_WEBHOOK_TOLERANCE_SECONDS`); `None`: no webhook
    /// route. Its `Debug` never shows a secret.
    pub layer: Option<tower_warden::signature::SignatureLayer>,
}

impl Webhooks {
    /// The webhook settings of `source`.
    ///
    /// # Errors
    ///
    /// An unknown scheme, an unusable secret, a tolerance outside 1–3600 s,
    /// or a scheme or tolerance without secrets (set for nothing).
    pub fn read(source: &Source, config: &WardenConfig) -> Result<Self, ConfigError> {
        use tower_warden::signature::{SignatureLayer, SignatureScheme};
        let scheme = match source.raw("MCP_WEBHOOK_SCHEME").map(str::trim) {
            None => None,
            Some("github") => Some(SignatureScheme::GitHub),
            Some("standard") => Some(SignatureScheme::Standard),
            Some(other) => {
                return Err(source.error(
                    "MCP_WEBHOOK_SCHEME",
                    format!("`{other}` is not one of github, standard"),
                ));
            }
        };
        let tolerance = source.whole("MCP_WEBHOOK_TOLERANCE_SECONDS", 1, 3600)?;
        let Some(secrets) = source.list("MCP_WEBHOOK_SECRETS")? else {
            if scheme.is_some() || tolerance.is_some() {
                let set = if scheme.is_some() {
                    "MCP_WEBHOOK_SCHEME"
                } else {
                    "MCP_WEBHOOK_TOLERANCE_SECONDS"
                };
                return Err(source.error(set, "is set, but MCP_WEBHOOK_SECRETS is not"));
            }
            return Ok(Self { layer: None });
        };
        let scheme = scheme.unwrap_or(SignatureScheme::GitHub);
        // Never the value in the message: these are secrets.
        let layer = SignatureLayer::new(scheme, &secrets).map_err(|_| {
            source.error(
                "MCP_WEBHOOK_SECRETS",
                match scheme {
                    SignatureScheme::Standard => {
                        "each secret must be `whsec_` and base64, none empty"
                    }
                    _ => "each secret must be non-empty",
                },
            )
        })?;
        Ok(Self {
            layer: Some(
                layer
                    .tolerance(Duration::from_secs(tolerance.unwrap_or(300)))
                    .max_body_bytes(config.max_body_bytes),
            ),
        })
    }
}
